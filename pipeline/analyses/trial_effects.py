"""Trial effects: each outcome of the plan, Open Dialogue against usual care, with the
design's variance, adjusted for the plan's covariates (the unadjusted estimate as a
sensitivity analysis), and the secondary outcomes tested in the plan's order.

Per outcome kind:

* time to event: Cox model of the cause-specific hazard (deaths censored), stratified by
  site (one baseline hazard per stratum), arm plus the plan's covariates; the variance is
  the plan's small-sample method for the data's shape (:data:`pipeline.plan.METHODS`).
* count: negative binomial (or Poisson, ``analyse.rate_family``) log-linear model with site
  fixed effects and log person-years as offset, arm plus covariates; same choice of variance.
* binary: marginal risk difference and risk ratio with the design effect of the clusters
  (unadjusted for now: the adjusted, standardised estimate needs the GEE estimators of the
  few-cluster work, which the plan will call when they land).

Every estimate row says what it estimates (from the plan, so an observational design reads
as an association), the method and its degrees of freedom in words, and its notes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline.analyses import AnalysisResult
from pipeline.analyses.covariates import adjustment, with_cluster_covariates
from pipeline.analyses.multiplicity import secondary_tests
from pipeline.plan import METHODS, AnalysisPlan, OutcomePlan

#: The plan's method as :func:`pipeline.stats.cox` and :func:`pipeline.stats.rate_ratio`
#: name their variance options.
COX_SMALL_SAMPLE = {"model": None, "cr1": "cr1", "jackknife_cluster": "jackknife"}
RATE_CLUSTER_TYPE = {"model": None, "cr0": "HC0", "jackknife_cluster": "jackknife"}

GRAY_WITH_CLUSTERS = ("Gray's test of the cumulative incidence is not reported: it treats "
                      "people as independent, and the data are clustered.")


def has_clusters(d: pd.DataFrame) -> bool:
    return ("cluster_id" in d and d["cluster_id"].notna().all()
            and d["cluster_id"].nunique() > 1)


def _row(analysis, outcome, measure, estimand, est, lo, hi, p=np.nan, se=np.nan, method="",
         n=None, events=None, n_clusters=None, notes=(), df=np.nan) -> dict[str, Any]:
    return dict(analysis=analysis, outcome=outcome, measure=measure, estimand=estimand,
                estimate=float(est), lower=float(lo), upper=float(hi), p=float(p),
                se=float(se), method=method, n=n, events=events, n_clusters=n_clusters,
                notes=" ".join(n for n in notes if n), df=float(df))


def _adjusted_frame(d, plan, clusters):
    names = [*plan.covariates, *plan.cluster_covariates]
    if not names:
        return d, [], []
    return adjustment(with_cluster_covariates(d, plan, clusters), names)


def _cox_fit(d, time, event, cols, method, p, plan):
    """The site-stratified Cox model of ``event`` on arm (``od``) and ``cols`` with the
    plan's variance; the jackknife gives way to cr1 above ``jackknife_max_clusters`` or
    where it cannot be computed (noted). Returns ``(fit, method used, notes)``."""
    from pipeline.stats import cox

    clusters = method != "model" and has_clusters(d)
    small = COX_SMALL_SAMPLE[method] if clusters else None
    notes = []
    if small == "jackknife" and d["cluster_id"].nunique() > int(p["jackknife_max_clusters"]):
        small = "cr1"
        notes.append(f"{d['cluster_id'].nunique()} clusters, more than "
                     f"analyse.jackknife_max_clusters ({p['jackknife_max_clusters']}): cr1 "
                     "instead of the jackknife.")
    kw = dict(strata=plan.design.strata, cluster="cluster_id" if clusters else None,
              ties=p["ties"], conf_level=plan.conf_level)
    try:
        fit = cox(d, time, event, ["od", *cols], small_sample=small, **kw)
    except ValueError as exc:
        if small != "jackknife":
            raise
        small = "cr1"
        notes.append(f"The jackknife is not computable ({exc}): cr1 instead.")
        fit = cox(d, time, event, ["od", *cols], small_sample=small, **kw)
    used = {None: "model", "cr1": "cr1", "jackknife": "jackknife_cluster"}[small]
    return fit, used, notes


def _method_words(kind: str, method: str, n_clusters: int | None, df: float) -> str:
    words = METHODS[kind].get(method, method)
    if method == "model" or n_clusters is None:
        return words
    return f"{words} ({n_clusters} clusters" + (f", {df:g} df)" if np.isfinite(df) else ")")


def time_to_event(d: pd.DataFrame, plan: AnalysisPlan, op: OutcomePlan, p: dict[str, Any],
                  clusters: pd.DataFrame | None, role: str) -> AnalysisResult:
    """The Cox analysis of one time-to-event outcome: adjusted (the plan's estimate) and
    unadjusted (sensitivity); for the primary outcome the plan's named test."""
    res = AnalysisResult("trial_effects")
    o = op.outcome
    time, ev = o.column("time"), f"__{o.name}_event"
    d = d.assign(**{ev: (d[o.column("event")] == 1).astype(int)})
    dd, cols, cov_notes = _adjusted_frame(d, plan, clusters)
    adjusted = bool(cols)
    for label, frame, use in (("adjusted" if adjusted else "plan", dd, cols),
                              *((("unadjusted", d, []),) if adjusted else ())):
        fit, used, notes = _cox_fit(frame, time, ev, use, plan.method(o.name), p, plan)
        s = fit.summary.loc["od"]
        df = float(fit.n_clusters - 1) if fit.n_clusters and used != "model" else np.inf
        method = (f"Cox, {p['ties'].capitalize()} ties, "
                  f"{'site strata' if plan.design.strata else 'no strata'}"
                  f"{', adjusted' if use else ''}; {_method_words(o.kind, used, fit.n_clusters, df)}")
        if label == "unadjusted":
            res.estimates.append(_row(
                "sensitivity", o.name, op.measure, "Unadjusted: " + plan.estimand(
                    op).split(", adjusted for")[0].rstrip(".") + ".",
                s.hr, s.hr_lower, s.hr_upper, s.p, s.se, method, fit.n, fit.n_events,
                fit.n_clusters, fit.notes, df))
            res.results[f"{o.name}_cox_unadjusted"] = fit
            continue
        extra = [GRAY_WITH_CLUSTERS] if role == "primary" and fit.n_clusters else []
        res.results[f"{o.name}_cox"] = fit
        test_p, test_words = s.p, "Wald test of the arm coefficient"
        if role == "primary" and op.test == "score":
            rs = fit.robust_score_test if fit.robust_score_test else fit.score_test
            test_p, test_words = rs["p"], "robust score (log-rank) test"
        res.estimates.append(_row(
            role, o.name, op.measure, plan.estimand(op), s.hr, s.hr_lower, s.hr_upper,
            test_p, s.se, f"{method}; p: {test_words}", fit.n, fit.n_events, fit.n_clusters,
            [*fit.notes, *notes, *cov_notes, *extra], df))
    return res


def count(d: pd.DataFrame, plan: AnalysisPlan, op: OutcomePlan, p: dict[str, Any],
          clusters: pd.DataFrame | None, role: str) -> AnalysisResult:
    """The rate-ratio analysis of one count outcome (adjusted, and unadjusted as a
    sensitivity analysis)."""
    from pipeline.stats import rate_ratio

    res = AnalysisResult("trial_effects")
    o = op.outcome
    y, t = o.column("count"), o.column("exposure")
    d = d[d[t] > 0]
    dd, cols, cov_notes = _adjusted_frame(d, plan, clusters)
    method = plan.method(o.name)
    clustered = method != "model" and has_clusters(d)
    ctype = RATE_CLUSTER_TYPE[method] if clustered else None
    small_note = []
    if ctype == "jackknife" and d["cluster_id"].nunique() > int(p["jackknife_max_clusters"]):
        ctype, small_note = "HC0", [f"{d['cluster_id'].nunique()} clusters, more than "
                                    "analyse.jackknife_max_clusters: HC0 instead of the "
                                    "jackknife."]
    strata = [plan.design.strata] if plan.design.strata else []
    term = f"arm{plan.comparison_arm}"
    for label, frame, use in (("plan", dd, cols), *((("unadjusted", d, []),) if cols else ())):
        rr = rate_ratio(frame, y, t, ["arm", *strata, *use], family=p["rate_family"],
                        cluster="cluster_id" if clustered else None,
                        cluster_type=ctype or "HC0", conf_level=plan.conf_level)
        s = rr.summary.loc[term]
        used = {None: "model", "HC0": "cr0", "jackknife": "jackknife_cluster"}[ctype]
        df = float(rr.n_clusters - 1) if ctype == "jackknife" else np.inf
        words = (f"{p['rate_family']} log-linear model, "
                 f"{'site fixed effects, ' if strata else ''}offset log person-years"
                 f"{', adjusted' if use else ''}; "
                 f"{_method_words(o.kind, used, rr.n_clusters, df)}")
        if label == "unadjusted":
            res.estimates.append(_row(
                "sensitivity", o.name, op.measure, "Unadjusted: " + plan.estimand(op).split(
                    ", adjusted for")[0].rstrip(".") + ".", s.rr, s.rr_lower, s.rr_upper, s.p,
                s.se, words, rr.n, int(frame[y].sum()), rr.n_clusters, rr.notes, df))
            res.results[f"{o.name}_rate_ratio_unadjusted"] = rr
            continue
        res.results[f"{o.name}_rate_ratio"] = rr
        res.estimates.append(_row(
            role, o.name, op.measure, plan.estimand(op), s.rr, s.rr_lower, s.rr_upper, s.p,
            s.se, words, rr.n, int(frame[y].sum()), rr.n_clusters,
            [*rr.notes, *small_note, *cov_notes], df))
    return res


def binary(d: pd.DataFrame, plan: AnalysisPlan, op: OutcomePlan, p: dict[str, Any],
           clusters: pd.DataFrame | None, role: str) -> AnalysisResult:
    """Marginal risk difference (the tested measure) and risk ratio of one binary outcome,
    unadjusted, with the design effect of the clusters where the plan's method says so."""
    from pipeline.stats import risk_difference, risk_ratio

    res = AnalysisResult("trial_effects")
    o = op.outcome
    col = o.column("outcome")
    dd = d[d[col].notna()].assign(**{col: lambda x: x[col].astype(int)})
    dd = dd.assign(arm=dd["arm"].astype(str))
    method = plan.method(o.name)
    clustered = method == "design_effect" and has_clusters(dd)
    kw = dict(group="arm", reference=plan.reference_arm, conf_level=plan.conf_level,
              cluster="cluster_id" if clustered else None)
    rd = risk_difference(dd, col, **kw)
    rr = risk_ratio(dd, col, **kw)
    res.results[f"{o.name}_rd"], res.results[f"{o.name}_rr"] = rd, rr
    notes = ([f"{int(d[col].isna().sum())} people without the outcome recorded left out."]
             if d[col].isna().any() else [])
    if plan.covariates or plan.cluster_covariates:
        notes.append("Not adjusted for the plan's covariates: the adjusted (standardised) "
                     "estimate awaits the GEE estimators of the few-cluster work.")
    words = METHODS[o.kind][method if clustered else "model"]
    for result, measure, row in ((rd, "risk difference", rd.summary.iloc[1]),
                                 (rr, "risk ratio", rr.summary.iloc[0])):
        res.estimates.append(_row(
            role, o.name, measure,
            plan.estimand(op, measure).split(", adjusted for")[0].rstrip(".") + ".",
            row.estimate, row.lower, row.upper, row.p, row.se, f"{row.method}; {words}",
            len(dd), int(dd[col].sum()), dd["cluster_id"].nunique() if clustered else None,
            [*notes, *result.notes]))
    return res


KINDS = {"time_to_event": time_to_event, "count": count, "binary": binary}


def outcomes(d: pd.DataFrame, plan: AnalysisPlan, p: dict[str, Any],
             clusters: pd.DataFrame | None, run_primary: bool = True,
             run_secondary: bool = True) -> AnalysisResult:
    """Every outcome of the plan (primary first), then the secondary family tested in the
    plan's order with its multiplicity method (``multiplicity`` table and the adjusted
    p-values in the secondary rows' notes)."""
    res = AnalysisResult("trial_effects")
    todo = [(plan.primary, "primary")] if run_primary else []
    todo += [(op, "secondary") for op in plan.secondary] if run_secondary else []
    for op, role in todo:
        part = KINDS[op.kind](d, plan, op, p, clusters, role)
        res.estimates += part.estimates
        res.results.update(part.results)
        res.notes += part.notes
    if run_primary and run_secondary:
        tested = {(r["outcome"], r["measure"]): r["p"] for r in res.estimates
                  if r["analysis"] in ("primary", "secondary")}
        p0 = tested.get((plan.primary.name, plan.primary.measure), np.nan)
        sec = [(op.name, tested.get((op.name, op.measure), np.nan)) for op in plan.secondary]
        mt = secondary_tests(p0, sec, plan.multiplicity, alpha=1 - plan.conf_level)
        mt.loc[0, "outcome"] = plan.primary.name
        mt.insert(2, "method", plan.multiplicity)
        res.tables["multiplicity"] = mt
        res.public["multiplicity"] = mt
        tested_measure = {op.name: op.measure for op in plan.secondary}
        for r in res.estimates:
            if r["analysis"] == "secondary" and tested_measure.get(r["outcome"]) == r["measure"]:
                m = mt[mt.outcome == r["outcome"]].iloc[0]
                extra = (f"Multiplicity ({plan.multiplicity}): adjusted p = "
                         f"{m.p_adjusted:.3g}; {m.note}.") if plan.multiplicity != "none" \
                    else "Unadjusted p-value (no multiplicity method declared): descriptive."
                r["notes"] = f"{extra} {r['notes']}".strip()
    return res
