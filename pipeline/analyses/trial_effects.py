"""Trial effects: each outcome of the plan, Open Dialogue against usual care, with the
design's variance, adjusted for the plan's covariates (the unadjusted estimate as a
sensitivity analysis), and the secondary outcomes tested in the plan's order.

Per outcome kind, with the plan's few-cluster method (:data:`pipeline.plan.METHODS`;
``auto`` is the default for the data's shape):

* time to event: Cox model of the cause-specific hazard (deaths censored), one baseline
  hazard per stratum (site), arm plus covariates (:func:`pipeline.stats.cox`); or the
  two-stage cluster-level analysis / permutation test of observed over expected events
  (:func:`pipeline.stats.cluster_level`).
* count: negative binomial (or Poisson, ``analyse.rate_family``) log-linear model with
  site fixed effects and log person-years as offset (:func:`pipeline.stats.glm_clustered`),
  or the cluster-level analysis of rates.
* binary: logistic model with site and covariates (:func:`pipeline.stats.glm_clustered`);
  the marginal risk difference (the tested measure) and risk ratio are obtained by
  standardisation over the people analysed (g-computation: the mean predicted risk with
  everyone in each arm), their variance by the delta method from the model's few-cluster
  covariance, on the arm coefficient's degrees of freedom; or the cluster-level analysis of
  risks.

Every estimate row says what it estimates (from the plan: an observational design reads as
an association), the method with its degrees of freedom in words, and its notes. Where the
data hold no estimate (an arm without events, a singular model) the row says "not
estimated" and why, and the rest of the analyses go on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import special

from pipeline.analyses import AnalysisResult, with_columns
from pipeline.analyses.covariates import adjustment, with_cluster_covariates
from pipeline.analyses.multiplicity import test_in_order
from pipeline.plan import METHODS, AnalysisPlan, OutcomePlan

if TYPE_CHECKING:
    from pipeline.stats.clustered import GLMDesign

GRAY_WITH_CLUSTERS = ("Gray's test of the cumulative incidence is not reported: it treats "
                      "people as independent, and the data are clustered.")
#: the plan's GLM methods as :func:`pipeline.stats.glm_clustered` takes them:
#: (vcov, the column whose groups are deleted or summed, df_method)
GLM_VCOV = {"model": ("model", None, None), "CR1": ("CR1", "cluster_id", "K-1"),
            "CR2": ("CR2", "cluster_id", None), "MD": ("MD", "cluster_id", None),
            "KC": ("KC", "cluster_id", None), "jackknife-cluster": ("jackknife", "cluster_id", None),
            "jackknife-site": ("jackknife", "site_id", None)}
_NOT_ESTIMABLE = (ValueError, ArithmeticError, np.linalg.LinAlgError)


def has_clusters(d: pd.DataFrame) -> bool:
    return ("cluster_id" in d and d["cluster_id"].notna().all()
            and d["cluster_id"].nunique() > 1)


def row(analysis, outcome, measure, estimand, est, lo, hi, p=np.nan, se=np.nan, method="",
        n=None, events=None, n_clusters=None, notes=(), df=np.nan) -> dict[str, Any]:
    """One row of ``results.analysis_estimates``."""
    return dict(analysis=analysis, outcome=outcome, measure=measure, estimand=estimand,
                estimate=float(est), lower=float(lo), upper=float(hi), p=float(p),
                se=float(se), method=method, n=n, events=events, n_clusters=n_clusters,
                notes=" ".join(n for n in notes if n), df=float(df))


def not_estimated(analysis, outcome, measure, estimand, reason, n=None, events=None):
    return row(analysis, outcome, measure, estimand, np.nan, np.nan, np.nan,
               method="not estimated", n=n, events=events,
               notes=[f"Not estimated: {reason.rstrip('.')}."])


@dataclass
class Effect:
    """One arm contrast: estimate on its natural scale (ratio or difference) with interval,
    p-value, standard error (of the log ratio or of the difference) and df."""

    measure: str
    estimate: float
    lower: float
    upper: float
    p: float
    se: float
    df: float
    method: str
    n: int
    events: int | None
    n_clusters: int | None
    notes: list[str] = field(default_factory=list)
    result: Any = None


def _t_interval(est, se, df, conf, log):
    # stats.t.ppf and .sf (stats.norm's where df is not finite) by the special functions
    # they call: the same numbers, without rv_continuous's per-call overhead (four calls a
    # fit of the tipping map's 500)
    q = special.ndtri(1 - (1 - conf) / 2) if not np.isfinite(df) else \
        special.stdtrit(df, 1 - (1 - conf) / 2)
    lo, hi = est - q * se, est + q * se
    p = np.nan
    if se > 0:
        z = abs(est / se)
        p = float(2 * (special.stdtr(df, -z) if np.isfinite(df) else special.ndtr(-z)))
    f = np.exp if log else (lambda x: x)
    return float(f(est)), float(f(lo)), float(f(hi)), p


def _words(kind: str, method: str, n_clusters: int | None, df: float) -> str:
    words = METHODS[kind].get(method, method)
    if method == "model":
        return words
    bits = [f"{n_clusters} {'sites' if method == 'jackknife-site' else 'clusters'}"
            ] if n_clusters else []
    if np.isfinite(df):
        bits.append(f"{df:.3g} df")
    return f"{words} ({', '.join(bits)})" if bits else words


# --------------------------------------------------------------------------- per kind

def _cox(d, time, event, cols, method, p, plan) -> Effect:
    from pipeline.stats import cox

    notes = []
    strata = plan.design.strata
    if method == "jackknife-site" and strata and d[strata].nunique() > 2:
        cluster, small = strata, "jackknife"
    elif method in ("CR1", "jackknife-cluster") and has_clusters(d):
        cluster, small = "cluster_id", ("cr1" if method == "CR1" else "jackknife")
    else:
        if method != "model":
            notes.append(f"{method}: not possible with these data (no clusters, or fewer than "
                         "three strata); model-based variance.")
        cluster, small, method = None, None, "model"
    if small == "jackknife" and cluster == "cluster_id" and \
            d["cluster_id"].nunique() > int(p["jackknife_max_clusters"]):
        small, method = "cr1", "CR1"
        notes.append(f"{d['cluster_id'].nunique()} clusters, more than analyse."
                     f"jackknife_max_clusters ({p['jackknife_max_clusters']}): CR1 instead "
                     "of the jackknife.")
    kw = dict(strata=strata, cluster=cluster, ties=p["ties"], conf_level=plan.conf_level)
    try:
        fit = cox(d, time, event, ["od", *cols], small_sample=small, **kw)
    except _NOT_ESTIMABLE as exc:
        if small != "jackknife" or cluster != "cluster_id":
            raise
        small, method = "cr1", "CR1"
        notes.append(f"The jackknife is not computable ({exc}): CR1 instead.")
        fit = cox(d, time, event, ["od", *cols], small_sample=small, **kw)
    s = fit.summary.loc["od"]
    df = float(fit.n_clusters - 1) if small else np.inf
    words = (f"Cox, {p['ties'].capitalize()} ties, {'site strata' if strata else 'no strata'}"
             f"{', adjusted' if cols else ''}; {_words('time_to_event', method, fit.n_clusters, df)}")
    return Effect("hazard ratio", s.hr, s.hr_lower, s.hr_upper, s.p, s.se, df, words, fit.n,
                  fit.n_events, fit.n_clusters, [*fit.notes, *notes], fit)


def _two_stage(d, kind, cols, method, plan, **cols_of) -> list[Effect]:
    """The cluster-level analysis (or the permutation test on its summaries)."""
    from pipeline.stats import cluster_level

    scales = ["difference", "ratio"] if kind == "binary" else ["ratio"]
    out = []
    for scale in scales:
        res = cluster_level(d, kind, cluster="cluster_id", arm="od", strata=plan.design.strata,
                            covariates=cols, scale=scale, conf_level=plan.conf_level,
                            permutation=method == "permutation", **cols_of)
        s = (res.permutation if method == "permutation" else res).summary.iloc[0]
        df = float(res.summary.iloc[0]["df"]) if method == "cluster-level" else np.nan
        se = float(res.summary.iloc[0]["se"])
        measure = {"survival": "hazard ratio", "count": "rate ratio"}.get(
            kind, "risk difference" if scale == "difference" else "risk ratio")
        words = re.sub(r"adjusted for cov__[^;]*", "adjusted for the plan's covariates",
                       f"{res.method}; {_words(_KIND[kind], method, res.n_clusters, df)}")
        notes = list(res.notes)
        if kind == "survival":
            notes.append("The cluster-level analysis estimates the ratio of the arms' observed "
                         "to expected events, each cluster counted once: an approximation of "
                         "the hazard ratio that does not assume it is the same in every "
                         "cluster.")
        out.append(Effect(measure, float(s.estimate), float(s.lower), float(s.upper),
                          float(s.p), se, df, words, res.n, None, res.n_clusters,
                          notes, res))
    return out


_KIND = {"survival": "time_to_event", "count": "count", "binary": "binary"}


def _variance_choice(d, method, plan, p):
    """The variance the plan's ``method`` comes to on the rows ``d``: ``(vcov, the column
    whose groups are deleted or summed, df_method, the method as used, notes)``."""
    vcov, by, dfm = GLM_VCOV[method]
    notes = []
    if method == "jackknife-site":   # the plan's strata are the sites deleted one at a time
        by = plan.design.strata if plan.design.strata and d[plan.design.strata].nunique() > 2 \
            else None
    if by is None and vcov != "model":
        vcov, dfm, method = "model", None, "model"
        notes.append("Fewer than three strata: no site jackknife; model-based variance.")
    if by == "cluster_id" and not has_clusters(d):
        vcov, by, dfm, method = "model", None, None, "model"
    # Many clusters: the jackknife (a refit per cluster) costs more than the rest of the
    # analysis together, and the small-sample corrections of the jackknife, CR2, KC and MD
    # (of order p/J; each a p x p eigenproblem per cluster at least) have vanished by
    # then; CR1 on J - 1 df, as the Cox models do
    if vcov in ("jackknife", "CR2", "KC", "MD") and by == "cluster_id" and \
            d["cluster_id"].nunique() > int(p["jackknife_max_clusters"]):
        notes.append(f"{d['cluster_id'].nunique()} clusters, more than analyse."
                     f"jackknife_max_clusters ({p['jackknife_max_clusters']}): CR1 instead of "
                     f"{'the jackknife' if vcov == 'jackknife' else vcov}.")
        vcov, dfm, method = "CR1", "K-1", "CR1"
    return vcov, by, dfm, method, notes


def _glm(d, y, cols, method, plan, p, family, offset=None, start=None):
    return _fit_glm(d, y, cols, _variance_choice(d, method, plan, p), plan, family,
                    offset=offset, start=start)


def _fit_glm(d, y, cols, choice, plan, family, offset=None, start=None, design=None):
    """The GLM of ``y`` on arm, site and ``cols`` with the variance ``choice``
    (:func:`_variance_choice`); ``design``: its model matrix and clusters already built
    (:func:`pipeline.stats.glm_design`, with ``choice``'s cluster column)."""
    from pipeline.stats import glm_clustered

    vcov, by, dfm, method, notes = choice
    notes = list(notes)
    strata = [plan.design.strata] if plan.design.strata else []
    kw = dict(family=family, cluster=by, vcov=vcov, df_method=dfm, conf_level=plan.conf_level,
              start=start, design=design)
    if offset:
        kw["offset"] = offset
    try:
        fit = glm_clustered(d, y, ["od", *strata, *cols], **kw)
    except _NOT_ESTIMABLE as exc:
        if vcov != "jackknife":
            raise
        notes.append(f"The jackknife is not computable ({exc}): CR2 instead.")
        method = "CR2"
        fit = glm_clustered(d, y, ["od", *strata, *cols], **{**kw, "vcov": "CR2",
                                                                "df_method": None})
    return fit, method, notes


def _standardised(fit, d: pd.DataFrame, covariates: list[str], conf: float, df: float,
                  ) -> tuple[tuple, tuple]:
    """Marginal risk difference and log risk ratio by standardisation (g-computation) from
    a logistic ``fit``: everyone's predicted risk with ``od`` set to 1 and to 0, averaged;
    delta-method variance from the fit's covariance. Returns ``((rd, se), (log rr, se))``."""
    return _standardise(fit, *_model_matrix(d, covariates, list(fit.summary.index)))


def _model_matrix(d: pd.DataFrame, covariates: list[str], names: list[str]):
    """The model matrix of ``d`` (terms ``names``) and its ``od`` column, for
    :func:`_standardise`."""
    from pipeline.stats._eff_design import design_matrix

    X = design_matrix(d, ["od", *covariates])[names].to_numpy(float)
    return X, X[:, names.index("od")]


def _standardise(fit, X, x_od: np.ndarray) -> tuple[tuple, tuple]:
    """:func:`_standardised` from the model matrix ``X`` of the people standardised over (an
    array, or a design's factor block: anything with ``X @ b`` and ``X.T @ v``) and its
    ``od`` column ``x_od``. Everyone's linear predictor with ``od`` set to 1 (to 0) is ``X b``
    with ``od``'s term replaced, and the gradient's ``od`` entry is the sum of the
    weights (zero), so the two counterfactual matrices are never built."""
    b = fit.summary["coef"].to_numpy(float)
    V = np.asarray(fit.vcov, dtype=float)
    j = list(fit.summary.index).index("od")
    eta0 = X @ b - x_od * b[j]
    p1, p0 = 1 / (1 + np.exp(-(eta0 + b[j]))), 1 / (1 + np.exp(-eta0))
    m1, m0 = p1.mean(), p0.mean()
    n = len(x_od)
    v1, v0 = p1 * (1 - p1), p0 * (1 - p0)
    g1, g0 = X.T @ v1, X.T @ v0
    g1[j], g0[j] = v1.sum(), 0.0
    g1, g0 = g1 / n, g0 / n
    g_rd = g1 - g0
    g_lrr = g1 / m1 - g0 / m0
    return ((m1 - m0, float(np.sqrt(g_rd @ V @ g_rd))),
            (np.log(m1 / m0), float(np.sqrt(g_lrr @ V @ g_lrr))))


def effects(d: pd.DataFrame, plan: AnalysisPlan, op: OutcomePlan, p: dict[str, Any],
            cols: list[str], method: str, start=None) -> list[Effect]:
    """The arm effect(s) of one outcome on the person frame ``d`` (with the covariate
    columns ``cols``) by ``method``: one Effect (hazard or rate ratio), or two for a binary
    outcome (risk difference, then risk ratio). ``start``: starting coefficients for a
    binary outcome's logistic model (:func:`warm_start` of a fit to a dataset that differs
    only in some outcomes)."""
    o = op.outcome
    if op.kind == "time_to_event":
        ev = f"__{o.name}_event"
        dd = with_columns(d, **{ev: (d[o.column("event")] == 1).astype(int)})
        if method in ("cluster-level", "permutation"):
            return _two_stage(dd, "survival", cols, method, plan, duration=o.column("time"),
                              event=ev)
        return [_cox(dd, o.column("time"), ev, cols, method, p, plan)]
    if op.kind == "count":
        y, t = o.column("count"), o.column("exposure")
        dd = d if bool((d[t] > 0).all()) else d[d[t] > 0]
        if method in ("cluster-level", "permutation"):
            return _two_stage(dd, "count", cols, method, plan, outcome=y, person_time=t)
        fit, used, notes = _glm(dd, y, cols, method, plan, p, p["rate_family"], offset=t)
        s = fit.summary.loc["od"]
        est, lo, hi, pv = _t_interval(s.coef, s.se, float(s.df), plan.conf_level, log=True)
        words = (f"{p['rate_family']} log-linear model, "
                 f"{'site fixed effects, ' if plan.design.strata else ''}offset log "
                 f"person-years{', adjusted' if cols else ''}; "
                 f"{_words('count', used, fit.n_clusters, float(s.df))}")
        return [Effect("rate ratio", est, lo, hi, pv, float(s.se), float(s.df), words, fit.n,
                       int(dd[y].sum()), fit.n_clusters, [*fit.notes, *notes], fit)]
    y = o.column("outcome")
    dd = with_columns(d[d[y].notna()] if d[y].isna().any() else d,
                      **{y: lambda x: x[y].astype(int)})
    if method in ("cluster-level", "permutation"):
        return _two_stage(dd, "binary", cols, method, plan, outcome=y)
    out = binary_effects(binary_model(dd, plan, op, p, cols, method), dd[y], start=start)
    if d[y].isna().any():
        for e in out:
            e.notes.insert(0, f"{int(d[y].isna().sum())} people {o.missing} left out "
                              "(complete cases).")
    return out


@dataclass(frozen=True, eq=False)
class BinaryModel:
    """The logistic model :func:`effects` fits to a binary outcome, built once for the rows
    analysed (:func:`binary_model`): the variance the plan's method comes to on them, the
    model matrix and clusters (:class:`pipeline.stats.clustered.GLMDesign`) and the
    standardisation's model matrix and ``od`` column (:func:`_standardise`). Fits of
    outcomes that differ only in some values (multiple imputation's completed datasets)
    share it (:func:`binary_effects`)."""

    outcome: str
    cols: list[str]
    strata: list[str]
    choice: tuple
    design: GLMDesign
    X: Any      # ndarray, or the design's factor block (pipeline.stats.clustered)
    x_od: np.ndarray
    plan: AnalysisPlan


def binary_model(d: pd.DataFrame, plan: AnalysisPlan, op: OutcomePlan, p: dict[str, Any],
                 cols: list[str], method: str) -> BinaryModel:
    """:class:`BinaryModel` of ``op``'s outcome on the rows ``d`` (every one analysed: the
    outcome is not read here) with the covariate columns ``cols``, by a GLM ``method``
    (not the cluster-level analysis). Raises as the fit would on a singular model."""
    from pipeline.stats import glm_design

    strata = [plan.design.strata] if plan.design.strata else []
    choice = _variance_choice(d, method, plan, p)
    design = glm_design(d, ["od", *strata, *cols], cluster=choice[1])
    # the design's matrix (or its factor block: a million rows at national size) is d's
    # when it kept every row
    if design.rows is None:
        X = design.X if design.block is None else design.block
        x_od = design.column(design.terms.index("od"))
    else:
        X, x_od = _model_matrix(d, [*strata, *cols], design.terms)
    return BinaryModel(op.outcome.column("outcome"), list(cols), strata, choice, design,
                       X, x_od, plan)


def binary_effects(model: BinaryModel, y, start=None) -> list[Effect]:
    """Risk difference and risk ratio (:func:`effects` for a binary outcome) with the
    outcome ``y`` (0/1, one per row of the model's frame, none missing)."""
    plan = model.plan
    y = np.asarray(y).astype(int)
    frame = pd.DataFrame({model.outcome: y}, index=model.design.source_index)
    fit, used, notes = _fit_glm(frame, model.outcome, model.cols, model.choice, plan,
                                "binomial", start=start, design=model.design)
    s = fit.summary.loc["od"]
    df = float(s.df)
    (rd, se_rd), (lrr, se_lrr) = _standardise(fit, model.X, model.x_od)
    words = (f"logistic model, {'site, ' if model.strata else ''}"
             f"{'covariates, ' if model.cols else ''}standardised over the people analysed "
             f"(delta method); {_words('binary', used, fit.n_clusters, df)}")
    out = []
    for measure, est, se, log in (("risk difference", rd, se_rd, False),
                                  ("risk ratio", lrr, se_lrr, True)):
        e, lo, hi, pv = _t_interval(est, se, df, plan.conf_level, log=log)
        out.append(Effect(measure, e, lo, hi, pv, se, df, words, fit.n, int(y.sum()),
                          fit.n_clusters, [*fit.notes, *notes], fit))
    return out


def warm_start(effs: list[Effect]):
    """The coefficients of the logistic model behind binary ``effs`` (for
    :func:`effects`' ``start``), or None (another model, or the cluster-level analysis)."""
    r = effs[0].result if effs else None
    summ = getattr(r, "summary", None)
    if getattr(r, "family", None) != "binomial" or summ is None or "coef" not in summ:
        return None
    return summ["coef"].to_numpy(float)


def _why_not(d: pd.DataFrame, op: OutcomePlan, plan: AnalysisPlan) -> str | None:
    """Why an arm contrast of ``op`` cannot be estimated from ``d``, or None."""
    o = op.outcome
    arm = d["arm"]   # text or categorical: compared with each arm's name
    if op.kind == "time_to_event":
        x = (d[o.column("event")] == 1).astype(float)
    elif op.kind == "count":
        x = d[o.column("count")].where(d[o.column("exposure")] > 0)
    else:
        x = d[o.column("outcome")].astype(float)
    for a in (plan.comparison_arm, plan.reference_arm):
        words = {"open_dialogue": "Open Dialogue", "usual_care": "usual care"}.get(a, a)
        xa = x[arm == a].dropna()
        if not len(xa):
            return f"no one in the {words} arm has this outcome recorded"
        if op.kind != "binary" and xa.sum() == 0:
            return f"no {o.event} in the {words} arm: the ratio would be 0 or infinite"
    if plan.design.strata and not (d.groupby(plan.design.strata, observed=True)["od"]
                                   .nunique() == 2).any():
        return ("no stratum has people in both arms, so an arm contrast within strata has no "
                "information")
    return None


def outcome(d: pd.DataFrame, plan: AnalysisPlan, op: OutcomePlan, p: dict[str, Any],
            clusters: pd.DataFrame | None, role: str, keep_results: bool = True
            ) -> AnalysisResult:
    """One outcome: the plan's (adjusted) estimate as ``role`` (primary or secondary), and
    the unadjusted estimate as a sensitivity analysis when the plan has covariates.
    ``keep_results``: keep the fitted models in ``results`` (False: each is freed before
    the next is fitted; a national Cox model holds 0.2 GB of sorted rows)."""
    res = AnalysisResult("trial_effects")
    names = [*plan.covariates, *plan.cluster_covariates]
    dd, cols, cov_notes = (adjustment(with_cluster_covariates(d, plan, clusters), names)
                           if names else (d, [], []))
    method = plan.method(op.name)
    estimand = plan.estimand(op)
    unadj_estimand = "Unadjusted: " + estimand.split(", adjusted for")[0].rstrip(".") + "."
    why = _why_not(d, op, plan)
    for label, frame, use in (("plan", dd, cols), *((("unadjusted", d, []),) if cols else ())):
        analysis = role if label == "plan" else "sensitivity"
        measures = op.outcome.measures
        if why:
            res.estimates += [not_estimated(analysis, op.name, m, estimand, why, n=len(d))
                              for m in measures]
            continue
        try:
            effs = effects(frame, plan, op, p, use, method)
        except _NOT_ESTIMABLE as exc:
            res.estimates += [not_estimated(analysis, op.name, m, estimand, str(exc), n=len(d))
                              for m in measures]
            continue
        for e in effs:
            if keep_results:
                res.results[f"{op.name}_{e.measure.replace(' ', '_')}"
                            + ("" if label == "plan" else "_unadjusted")] = e.result
            est_words = estimand if label == "plan" else unadj_estimand
            if e.measure != op.measure and op.kind == "binary":
                est_words = est_words.replace(f"Marginal {op.measure}", f"Marginal {e.measure}")
            extra = []
            if label == "plan" and role == "primary" and op.kind == "time_to_event" \
                    and e.n_clusters and method not in ("model", "jackknife-site"):
                extra = [GRAY_WITH_CLUSTERS]
            res.estimates.append(row(
                analysis, op.name, e.measure, est_words, e.estimate, e.lower, e.upper, e.p,
                e.se, e.method, e.n, e.events, e.n_clusters,
                [*e.notes, *(cov_notes if label == "plan" else []), *extra], e.df))
        effs = e = None   # (the fits freed before the unadjusted model is fitted)
    return res


def outcomes(d: pd.DataFrame, plan: AnalysisPlan, p: dict[str, Any],
             clusters: pd.DataFrame | None, run_primary: bool = True,
             run_secondary: bool = True, test_family: bool = True,
             keep_results: bool = True) -> AnalysisResult:
    """Every outcome of the plan (primary first), then the secondary family tested in the
    plan's order with its multiplicity method (table ``multiplicity``; the adjusted
    p-value in each tested secondary row's notes). ``test_family=False``: these estimates
    are not the tested ones (an observational design's weighted estimates are).
    ``keep_results``: as :func:`outcome`'s."""
    res = AnalysisResult("trial_effects")
    todo = [(plan.primary, "primary")] if run_primary else []
    todo += [(op, "secondary") for op in plan.secondary] if run_secondary else []
    for op, role in todo:
        part = outcome(d, plan, op, p, clusters, role, keep_results)
        res.estimates += part.estimates
        res.results.update(part.results)
        res.notes += part.notes
    if run_primary and run_secondary and test_family:
        mt = test_in_order(res.estimates, plan)
        if mt is not None:
            res.tables["multiplicity"] = res.public["multiplicity"] = mt
    return res
