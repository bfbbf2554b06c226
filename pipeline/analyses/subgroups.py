"""Pre-specified subgroups: does the effect on the primary outcome differ between them?

For each subgroup variable of the plan, one model of the primary outcome (time to event:
the site-stratified Cox model of the primary analysis) with arm, the subgroup's levels and
their interaction with arm, and the plan's variance. Reported: the interaction test (Wald,
on F(q, G - 1) with the few-cluster corrections, else chi-square on q df; q = levels - 1)
and the hazard ratio within each level from the same model (for a forest plot). The
interaction test is the inference; the per-level ratios are description (Wang et al.,
NEJM 2007;357:2189-94; Rothwell, Lancet 2005;365:176-86): a difference between two
levels' intervals is not evidence of a difference in effect.

Levels in which an arm has at most ``disclosure.suppress_max`` events are pooled into one
level ("other (small groups)") before the model: their ratios would be unstable, and their
event counts are not published. With fewer than two levels left, no test is made.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from pipeline.analyses import AnalysisResult
from pipeline.analyses.covariates import MISSING, _safe
from pipeline.analyses.trial_effects import _cox, row as _row
from pipeline.plan import AnalysisPlan

POOLED = "other (small groups)"


def subgroup_effects(d: pd.DataFrame, plan: AnalysisPlan, p: dict[str, Any],
                     cfg: dict[str, Any]) -> AnalysisResult:
    """Interaction tests and per-level effects of the primary outcome for every subgroup
    of the plan (time-to-event primary outcomes; others are noted as not analysed)."""
    res = AnalysisResult("subgroups")
    op = plan.primary
    if not plan.subgroups:
        return res
    if op.kind != "time_to_event":
        res.notes.append(f"Subgroup analyses are made for a time-to-event primary outcome; "
                         f"{op.name} is {op.kind}.")
        return res
    o = op.outcome
    ev = (d[o.column("event")] == 1).astype(int)
    rows = []
    for var in plan.subgroups:
        g = d[var].astype(object).where(d[var].notna(), MISSING).astype(str)
        ev_arm = pd.crosstab(g, d["od"], values=ev, aggfunc="sum").fillna(0)
        small = [lv for lv in ev_arm.index
                 if ev_arm.shape[1] < 2 or (ev_arm.loc[lv] <= cfg["suppress_max"]).any()]
        g = g.where(~g.isin(small), POOLED)
        levels = list(g.value_counts().index)   # most common first: the reference
        estimand = (f"Ratio of the {op.measure}s of {o.what} between levels of {var} "
                    f"(arm x {var} interaction), {plan.contrast}")
        if len(levels) < 2:
            res.estimates.append(_row("subgroup", o.name, f"interaction with {var}", estimand,
                                      np.nan, np.nan, np.nan, method="not estimated",
                                      notes=[f"Not estimated: fewer than two levels of {var} "
                                             "with enough events in both arms."]))
            continue
        ref = levels[0]
        dd = d.assign(__ev=ev)
        lv_cols, int_cols = [], []
        for lv in levels[1:]:
            c = f"sg__{_safe(lv)}"
            dd[c] = (g == lv).astype(float)
            dd[f"{c}__x"] = dd[c] * dd["od"]
            lv_cols.append(c)
            int_cols.append(f"{c}__x")
        method, notes = plan.method(o.name), []
        if method in ("cluster-level", "permutation"):  # no interactions in a two-stage test
            method = "jackknife-site" if plan.design.strata else "model"
            notes.append(f"The primary method ({plan.method(o.name)}) has no interaction "
                         f"model: the {method} variance instead.")
        try:
            eff = _cox(dd, o.column("time"), "__ev", [*lv_cols, *int_cols], method, p, plan)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            res.estimates.append(_row("subgroup", o.name, f"interaction with {var}", estimand,
                                      np.nan, np.nan, np.nan, method="not estimated",
                                      notes=[f"Not estimated: {exc}"]))
            continue
        fit, corrected = eff.result, np.isfinite(eff.df)
        notes += eff.notes[len(fit.notes):]
        names = list(fit.summary.index)
        b = fit.summary["coef"].to_numpy()
        V = np.asarray(fit.vcov)
        ii = [names.index(c) for c in int_cols]
        w = float(b[ii] @ np.linalg.solve(V[np.ix_(ii, ii)], b[ii]))
        q = len(ii)
        if corrected:
            df2 = int(eff.df)
            pval = float(stats.f.sf(w / q, q, df2))
            test = f"Wald F({q}, {df2})"
            crit = stats.t.ppf(1 - (1 - plan.conf_level) / 2, df2)
        else:
            pval = float(stats.chi2.sf(w, q))
            test = f"Wald chi-square on {q} df"
            crit = stats.norm.ppf(1 - (1 - plan.conf_level) / 2)
        res.results[f"subgroup_{var}"] = fit
        res.estimates.append(_row(
            "subgroup", o.name, f"interaction with {var}", estimand, w, np.nan, np.nan, pval,
            method=f"{eff.method.replace('Cox,', f'Cox with arm x {var},', 1).replace(', adjusted;', ';')}; {test}",
            n=fit.n, events=fit.n_events, n_clusters=fit.n_clusters,
            notes=[*notes, *([f"Pooled into '{POOLED}' (an arm with at most "
                              f"{cfg['suppress_max']} events): {', '.join(small)}."]
                             if small else [])],
            df=float(q)))
        iod = names.index("od")
        ev_lv = pd.crosstab(g, d["od"], values=ev, aggfunc="sum").fillna(0)
        for lv in levels:
            if lv == ref:
                est, var_ = b[iod], V[iod, iod]
            else:
                j = names.index(f"sg__{_safe(lv)}__x")
                est, var_ = b[iod] + b[j], V[iod, iod] + V[j, j] + 2 * V[iod, j]
            se = float(np.sqrt(var_))
            rows.append(dict(subgroup=var, level=lv, reference=lv == ref,
                             hr=float(np.exp(est)), lower=float(np.exp(est - crit * se)),
                             upper=float(np.exp(est + crit * se)), log_hr=float(est), se=se,
                             interaction_p=pval, test=test,
                             shown=bool(ev_lv.shape[1] == 2
                                        and (ev_lv.loc[lv] > cfg["suppress_max"]).all())))
    table = pd.DataFrame(rows, columns=["subgroup", "level", "reference", "hr", "lower",
                                        "upper", "log_hr", "se", "interaction_p", "test",
                                        "shown"])
    res.tables["subgroups"] = table
    # public: ratios of levels whose arms all have more than suppress_max events (a pooled
    # level too can have few; its members are named in the notes, its counts never shown)
    pub = table.drop(columns=["log_hr", "se"])
    pub.loc[~pub["shown"], ["hr", "lower", "upper"]] = np.nan
    res.public["subgroups"] = pub.assign(suppressed=~pub["shown"]).drop(columns="shown")
    return res
