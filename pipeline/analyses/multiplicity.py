"""Testing the secondary outcomes in the plan's order with its multiplicity method.

The primary test is made at the full level ``alpha = 1 - conf_level``. The secondary
outcomes are a family tested only if the primary test rejected (a gatekeeper), then:

* ``hierarchical`` (fixed sequence): each at the full level, in the plan's order, until the
  first that does not reject; that one and every later one are not confirmatory. The
  sequence's adjusted p-value is the largest p-value so far (Westfall and Krishen 2001).
  The family-wise error rate is controlled at alpha with no loss of power for the earlier
  outcomes, which is why the order must be fixed before the data are seen.
* ``holm``: Holm's step-down adjustment over the secondary family (Holm 1979), computed by
  ``statsmodels.stats.multitest.multipletests``.
* ``none``: unadjusted p-values; no confirmatory claim is made for a secondary outcome.

References: Holm S. A simple sequentially rejective multiple test procedure. Scand J Stat
1979;6:65-70. Westfall PH, Krishen A. Optimally weighted, fixed sequence and gatekeeper
multiple testing procedures. J Stat Plan Inference 2001;99:25-40. EMA Guideline on
multiplicity issues in clinical trials (2017).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def secondary_tests(primary_p: float, secondary: list[tuple[str, float]], method: str,
                    alpha: float = 0.05) -> pd.DataFrame:
    """One row per outcome (primary first, then the secondary ones in the plan's order):
    ``outcome, role, order, p, p_adjusted, rejected, confirmatory, note``.

    ``rejected`` is the decision at ``alpha`` after the adjustment; ``confirmatory`` says
    whether the outcome's test is part of the error-controlled family (False: descriptive).
    A missing p-value (not estimated) stops a fixed sequence there.
    """
    rows = [dict(outcome=None, role="primary", order=0, p=primary_p, p_adjusted=primary_p,
                 rejected=bool(np.isfinite(primary_p) and primary_p <= alpha),
                 confirmatory=True, note="primary test, full level")]
    gate = rows[0]["rejected"]
    ps = np.array([p for _, p in secondary], dtype=float)
    adj = np.full(len(ps), np.nan)
    rej = np.zeros(len(ps), bool)
    conf = np.zeros(len(ps), bool)
    notes = [""] * len(ps)
    if method == "hierarchical":
        running, open_ = primary_p if np.isfinite(primary_p) else np.nan, gate
        for i, p in enumerate(ps):
            running = max(running, p) if np.isfinite(p) and np.isfinite(running) else np.nan
            adj[i] = running
            conf[i] = open_
            rej[i] = bool(open_ and np.isfinite(p) and p <= alpha)
            if open_ and not rej[i]:
                notes[i] = "fixed sequence stops here: this and later outcomes are descriptive"
            elif not open_:
                notes[i] = "not tested (an earlier test in the sequence did not reject)"
            open_ = rej[i]
    elif method == "holm":
        from statsmodels.stats.multitest import multipletests

        ok = np.isfinite(ps)
        if ok.any():
            r, a, _, _ = multipletests(ps[ok], alpha=alpha, method="holm")
            adj[ok], rej[ok] = a, r & gate
        conf[:] = gate
        for i in range(len(ps)):
            notes[i] = ("Holm-adjusted" if gate else
                        "descriptive: the primary test did not reject")
    else:
        adj[:] = ps
        notes = ["unadjusted, descriptive"] * len(ps)
    for i, (name, p) in enumerate(secondary):
        rows.append(dict(outcome=name, role="secondary", order=i + 1, p=p, p_adjusted=adj[i],
                         rejected=bool(rej[i]), confirmatory=bool(conf[i]), note=notes[i]))
    return pd.DataFrame(rows)


def test_in_order(estimates: list[dict], plan) -> pd.DataFrame | None:
    """The plan's secondary family tested in order on the ``primary`` and ``secondary``
    rows of ``estimates`` (each outcome's first measure): the table (``outcome, role,
    method, order, p, p_adjusted, ...``), and in each tested secondary row's notes its
    adjusted p-value and what the method decided (after the row's own notes, so a "Not
    estimated: ..." reason stays first). None when the plan has no secondary outcome."""
    if not plan.secondary:
        return None
    tested = {(r["outcome"], r["measure"]): r["p"] for r in estimates
              if r["analysis"] in ("primary", "secondary")}
    p0 = tested.get((plan.primary.name, plan.primary.measure), np.nan)
    sec = [(op.name, tested.get((op.name, op.measure), np.nan)) for op in plan.secondary]
    mt = secondary_tests(p0, sec, plan.multiplicity, alpha=1 - plan.conf_level)
    mt.loc[0, "outcome"] = plan.primary.name
    mt.insert(2, "method", plan.multiplicity)
    tested_measure = {op.name: op.measure for op in plan.secondary}
    for r in estimates:
        if r["analysis"] == "secondary" and tested_measure.get(r["outcome"]) == r["measure"]:
            m = mt[mt.outcome == r["outcome"]].iloc[0]
            adjusted = (f"adjusted p = {m.p_adjusted:.3g}" if np.isfinite(m.p_adjusted)
                        else "no adjusted p (no p-value)")
            extra = (f"Multiplicity ({plan.multiplicity}): {adjusted}; {m.note}."
                     if plan.multiplicity != "none"
                     else "Unadjusted p-value (no multiplicity method declared): "
                          "descriptive.")
            r["notes"] = f"{r.get('notes') or ''} {extra}".strip()
    return mt
