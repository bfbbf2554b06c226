"""Missing outcome data, estimands and sensitivity analyses of the time-to-event outcomes
(ICH E9(R1)).

Three things, all from the person frame and the plan (``analyse.run`` name
``sensitivity``, options ``analyse.sensitivity``):

* **estimands** (public table ``estimands``): each outcome's estimand in one sentence
  (:meth:`pipeline.plan.AnalysisPlan.estimands`: population, variable, intercurrent events
  and the strategy for each, summary measure);
* **missing data** (table ``missing_data``, public ``missing_data_public`` with every count
  rounded by :func:`pipeline.disclosure.round_count`): per outcome and arm, the people,
  those analysed, and those whose outcome is missing or whose follow-up was cut short
  before the horizon, by why: not followed long enough (recruited late for the data cut),
  died, transferred out, left the service (withdrawal or another recorded reason), reason
  not recorded; for return to work also no status recorded (imputed). A **flag** marks an
  outcome whose share missing or cut short differs between arms: by at least
  ``differential_pp`` percentage points (5 by default: a difference that size can move a
  risk difference of the order the trial is powered for, whatever its p-value) or with a
  design-respecting test rejecting at ``differential_alpha`` (the cluster-level t-test of
  the clusters' shares, stratified as randomised, when there are clusters; else the
  chi-square test of the 2 x 2 table). Either alone can miss: the test has little power
  with few clusters, and a threshold ignores noise;
* **sensitivity analyses** of each time-to-event outcome (rows of
  ``results.analysis_estimates`` with the ``analysis`` labels of :data:`LABELS`), beside
  the plan's (primary) estimate and its unadjusted one (:mod:`~pipeline.analyses.
  trial_effects`):

  - proportional hazards: the Grambsch-Therneau score test of the arm term
    (:meth:`pipeline.stats.coxph.CoxResult.ph_test`, KM time transform, as R ``cox.zph``)
    of the site-stratified adjusted Cox model, and the hazard ratio per period of follow-up
    (``ph_periods``; table ``sensitivity_ph_periods``, drawn by the report) with the
    design's variance;
  - restricted mean survival time (RMST) difference at each of ``rmst_days`` (days free of
    the outcome gained; needs no proportional hazards; deaths censored as in the primary
    analysis);
  - admissions only (relapse): the first admission alone as the event, because Open
    Dialogue teams give crisis care themselves and may record crisis episodes differently
    from usual care (differential ascertainment); the plan's analysis and method;
  - Fine-Gray subdistribution hazard ratio (death competing, people who died kept in the
    risk set), arm, site and the plan's covariates;
  - transfer out counted as the event (the people transferred out assumed to have had it
    on the day their records end: the worst case for the hypothetical strategy); the plan's
    analysis and method.

Variance that respects the design. The Cox-based rows (admissions only, transfer out) use
the plan's few-cluster method exactly as the primary analysis does. RMST and Fine-Gray
have no sandwich shown to work with few clusters, so they use the delete-one-group
jackknife (:func:`pipeline.stats.jackknife.group_jackknife`, t on G - 1 df) over the unit
:func:`jackknife_unit` chooses by simulation: the site for the RMST, the cluster for
Fine-Gray, the site for both when the plan's method is the site jackknife, none
(model-based) without clusters under the plan's ``model``. Measured under the null
(:mod:`pipeline.simulation.sensitivity_coverage`): the Fine-Gray sandwich and the RMST's
model-based errors, which treat people as independent, covered 54-73%; the chosen
jackknifes 94.0-97.0% (``docs/sensitivity.md`` has the table; the light check runs in
``tests/unit/stats/test_sensitivity_coverage.py``, the 1,000-replicate one is marked slow).

References: ICH E9(R1) addendum (2019). Grambsch PM, Therneau TM. Biometrika 1994;81:515-26.
Royston P, Parmar MKB. BMC Med Res Methodol 2013;13:152. Fine JP, Gray RJ. JASA
1999;94:496-509. Hayes RJ, Moulton LH. Cluster Randomised Trials, 2nd ed. CRC 2017.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from pipeline import disclosure
from pipeline.analyses import AnalysisResult, with_columns
from pipeline.analyses.covariates import adjustment, with_cluster_covariates
from pipeline.analyses.trial_effects import (_NOT_ESTIMABLE, effects, has_clusters,
                                             not_estimated, row)
from pipeline.plan import AnalysisPlan, OutcomePlan

LABELS = {
    "ph": "sensitivity: proportional hazards",
    "rmst": "sensitivity: restricted mean survival time",
    "admissions": "sensitivity: admissions only",
    "fine_gray": "sensitivity: Fine-Gray",
    "transfer": "sensitivity: transfer out as the event",
}
DEFAULTS: dict[str, Any] = {
    "rmst_days": [365, 730],
    "ph_periods": [0, 90, 180, 365, 730],   # period boundaries (days) of the hazard ratios
    "differential_pp": 5.0,                 # flag: shares differ by >= this (percentage points)
    "differential_alpha": 0.05,             # ... or the design's test rejects at this level
}
#: why follow-up for an outcome ended before the horizon (or the outcome is missing)
REASONS = {
    "not_long_enough": "not followed long enough",
    "died": "died",
    "transferred_out": "transferred out",
    "left_service": "left the service",
    "reason_not_recorded": "records end, reason not recorded",
    "no_record": "no status recorded (imputed)",
}


def settings(p: dict[str, Any]) -> dict[str, Any]:
    from pipeline import params as params_mod

    return params_mod.merged("analyse.sensitivity", p.get("sensitivity"), DEFAULTS)


def end_reason(d: pd.DataFrame) -> pd.Series:
    """Why each person's follow-up ends: ``complete`` (followed to the plan's horizon) or a
    key of :data:`REASONS` (``derived.people.end_reason`` with ``data_end_reason``)."""
    er = d["end_reason"].astype(str)
    der = (d["data_end_reason"] if "data_end_reason" in d else pd.Series(None, index=d.index))
    der = der.astype(object).where(der.notna(), None)
    out = pd.Series("complete", index=d.index, dtype=object)
    data_end = er == "data_end"
    out[er == "death"] = "died"
    out[data_end & (der == "transfer_out")] = "transferred_out"
    out[data_end & der.isin(["withdrawal", "other", "death"])] = "left_service"
    out[data_end & der.isin(["end_of_extract", "end_of_follow_up"])] = "not_long_enough"
    out[data_end & der.isna()] = "reason_not_recorded"
    return out


# --------------------------------------------------------------------------- missing data

def _missing_rows(d: pd.DataFrame, plan: AnalysisPlan, op: OutcomePlan, why: pd.Series,
                  in_arm: dict[str, pd.Series]) -> tuple[pd.DataFrame, pd.Series]:
    """Per arm (``in_arm``: each arm's members): people, analysed, and the reasons; and
    each person's 'missing or cut short' indicator (NaN for people outside the outcome's
    population)."""
    o = op.outcome
    if op.kind == "time_to_event":
        analysed = pd.Series(True, index=d.index)
        short = (d[o.column("event")] != 1) & (why != "complete")
        reason = why.where(short)
    elif op.kind == "count":
        analysed = d[o.column("exposure")] > 0
        short = why != "complete"
        reason = why.where(short)
    elif op.name == "return_to_work" and "window_reached" in d:
        reached = d["window_reached"].fillna(False).astype(bool)
        died = d["died_before_window"].fillna(False).astype(bool) & reached
        # composite: a death is a value (not working), not missing
        from pipeline.analyses.return_to_work import in_population

        analysed = in_population(d, plan.rtw_deaths)
        no_rec = reached & ~died & d["rtw_2y"].isna()
        reason = why.where(~reached)
        reason = reason.where(reason != "complete", "not_long_enough")
        if plan.rtw_deaths != "composite":
            reason[died] = "died"
        reason[no_rec] = "no_record"
        short = reason.notna()
    else:
        y = d[o.column("outcome")]
        analysed = y.notna()
        reason = why.where(~analysed)
        reason = reason.where(reason != "complete", "reason_not_recorded")
        short = ~analysed
    rows = []
    for a in (plan.comparison_arm, plan.reference_arm):
        m = in_arm[a]
        r = dict(outcome=op.name, arm=a, people=int(m.sum()),
                 analysed=int((analysed & m).sum()),
                 missing_or_cut_short=int((short & m).sum()))
        counts = reason[m].value_counts()   # one pass, not one comparison per reason
        for k in REASONS:
            r[k] = int(counts.get(k, 0))
        rows.append(r)
    return pd.DataFrame(rows), short.astype(float)


def flag_indicator(op: OutcomePlan, short: pd.Series, why: pd.Series) -> pd.Series:
    """What the differential flag compares between the arms: the outcome's 'missing or cut
    short' indicator, except for a time to event, whose people cut short are only those
    without the event (who had it are not missing). Their share is larger in the arm with
    fewer events whatever the follow-up, so the flag compares instead everyone's follow-up
    ending before the horizon, event or not (the censoring the two arms are exposed to)."""
    if op.kind == "time_to_event":
        return (why != "complete").astype(float)
    return short


def _differential(d: pd.DataFrame, short: pd.Series, plan: AnalysisPlan, s: dict,
                  clustered: bool, design=None) -> dict[str, Any]:
    """Difference in the share missing or cut short (comparison - reference), the design's
    test and the flag. ``clustered``: the test is the cluster-level one (at least 4
    clusters); ``design``: the stratum term of its first stage (:func:`_shares_design`)."""
    x = with_columns(d, __short=short.to_numpy())
    shares = x.groupby("od")["__short"].mean()
    if len(shares) < 2:
        return dict(difference=np.nan, p=np.nan, test="one arm only", flag=False)
    diff = float(shares.get(1) - shares.get(0))
    if clustered:
        from pipeline.stats import cluster_level

        try:
            r = cluster_level(x, "binary", cluster="cluster_id", arm="od",
                              strata=plan.design.strata, outcome="__short", scale="difference",
                              conf_level=plan.conf_level,
                              design=design if design is not None and short.notna().all()
                              else None)
            pv, test = float(r.summary.iloc[0]["p"]), ("cluster-level t-test of the "
                                                       "clusters' shares")
        except _NOT_ESTIMABLE:
            pv, test = np.nan, "cluster-level test not computable"
    else:
        tab = pd.crosstab(x["od"], x["__short"] > 0)
        if tab.shape == (2, 2):
            pv = float(stats.chi2_contingency(tab, correction=False)[1])
        else:
            pv = 1.0  # nobody (or everybody) missing: the shares cannot differ
        test = "chi-square test of the 2 x 2 table"
    flag = bool(abs(diff) * 100 >= float(s["differential_pp"])
                or (np.isfinite(pv) and pv < float(s["differential_alpha"])))
    return dict(difference=diff, p=pv, test=test, flag=flag)


def _shares_design(d: pd.DataFrame, plan: AnalysisPlan):
    """The model matrix of the stratum term (:func:`pipeline.stats.glm_design`) that the
    first stage of the cluster-level test of every outcome's share missing fits, built once
    for all of them: None without strata or when a person lacks a cluster, arm or stratum
    (then each test drops its own rows and builds its own, as does a test whose indicator
    is missing for someone)."""
    from pipeline.stats import glm_design

    strata = plan.design.strata
    if not strata or d[["cluster_id", "od", strata]].isna().any(axis=None):
        return None
    return glm_design(d[[strata]], [strata])


def _arm_members(d: pd.DataFrame, arms) -> dict[str, pd.Series]:
    """``{a: d["arm"].astype(str) == a}`` for each of ``arms``; for a categorical arm
    without missing values from its categories' names (a string per category, not one per
    person: 0.3 CPU s over a national extract)."""
    arm = d["arm"]
    if isinstance(arm.dtype, pd.CategoricalDtype) and arm.notna().all():
        names = np.asarray(arm.cat.categories.astype(str))
        codes = arm.cat.codes.to_numpy()
        return {a: pd.Series(np.isin(codes, np.flatnonzero(names == a)), index=d.index)
                for a in arms}
    arm = arm.astype(str)
    return {a: arm == a for a in arms}


def missing_data(d: pd.DataFrame, plan: AnalysisPlan, s: dict, cfg: dict
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(exact table, public table): per outcome of the plan and arm, who is analysed and
    who is missing or cut short and why, with the differential flag per outcome."""
    why = end_reason(d)
    in_arm = _arm_members(d, (plan.comparison_arm, plan.reference_arm))
    clustered = has_clusters(d) and d["cluster_id"].nunique() >= 4
    design = _shares_design(d, plan) if clustered else None
    parts, tested = [], []   # tested: (indicator, its test) of the outcomes so far
    for op in plan.outcomes:
        t, short = _missing_rows(d, plan, op, why, in_arm)
        # outcomes missing for the same people (the same indicator) have the same test
        ind = flag_indicator(op, short, why)
        dif = next((r for x, r in tested
                    if np.array_equal(x, ind.to_numpy(), equal_nan=True)), None)
        if dif is None:
            dif = _differential(d, ind, plan, s, clustered, design)
            tested.append((ind.to_numpy(), dif))
        for k, v in dif.items():
            t[k] = v
        if op.kind == "time_to_event" and dif["test"] != "one arm only":
            t["test"] = f"{dif['test']}, of follow-up ending early (event or not)"
        parts.append(t)
    exact = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return exact, protect_missing(exact, cfg)


def constraints(r: pd.Series | dict) -> list[tuple[str, list[str]]]:
    """The sums a row of the missing-data table holds: the reasons add up to the people
    missing or cut short; for an outcome whose missing people are not analysed (binary),
    analysed and missing add up to the people. (:mod:`pipeline.attack` audits the same.)"""
    out = [("missing_or_cut_short", list(REASONS))]
    if int(r["analysed"]) + int(r["missing_or_cut_short"]) == int(r["people"]):
        out.append(("people", ["analysed", "missing_or_cut_short"]))
    return out


def protect_missing(exact: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    """The public missing-data table (:mod:`pipeline.output_policy`): counts of 1 to
    ``suppress_max`` hidden, with complementary suppression over each row's sums
    (:func:`pipeline.disclosure.secondary_suppress`), the rest rounded; the share
    difference left out (the report computes it from the rounded counts); the test's
    p-value to two significant digits and the flag."""
    from pipeline import output_policy

    pub = exact.drop(columns=["difference"]).copy().astype(object)
    cols = ["people", "analysed", "missing_or_cut_short", *REASONS]
    for i, r in exact.iterrows():
        counts = {c: int(r[c]) for c in cols}
        small = {c for c, v in counts.items()
                 if cfg["suppress_min"] <= v <= cfg["suppress_max"]}
        hide = disclosure.secondary_suppress(counts, constraints(r), small, cfg=cfg)
        for c in cols:
            pub.at[i, c] = None if c in hide else output_policy.count(counts[c], cfg)
    pub["p"] = [float(f"{v:.2g}") if np.isfinite(v) else np.nan for v in exact["p"]]
    return pub


# --------------------------------------------------------------------------- estimates

def jackknife_unit(d: pd.DataFrame, plan: AnalysisPlan, op: OutcomePlan,
                   estimator: str) -> tuple[str | None, str]:
    """The column whose groups the jackknife of ``estimator`` (``rmst``, ``cif`` or
    ``fine_gray``) deletes, and why in words.

    Chosen by the coverage simulation (:mod:`pipeline.simulation.sensitivity_coverage`,
    1,000 null trials per shape, ICC 0.05; Monte Carlo se 0.007): the RMST difference
    covered 94.0-95.6% with the site jackknife and 96.7-98.4% (over-covering) with the
    cluster jackknife, in the pair-matched and the 6 x 3 shape; the Fine-Gray ratio covered
    95.7% (6 x 3) and 97.0% (pair-matched, conservative) with the cluster jackknife and
    93.0-93.7% (under-covering) with the site jackknife. The Aalen-Johansen cumulative
    incidence difference (``cif``: return to work's time to first return) behaves as the
    RMST: 94.0-94.9% with the site jackknife, 96.4-97.5% with the cluster jackknife and
    59.5-75.5% with each arm's infinitesimal jackknife (people independent). So: RMST and
    cumulative incidence by site, Fine-Gray by cluster; the plan's ``jackknife-site`` is
    followed for all; no clusters and the plan's ``model``: none (people independent)."""
    method = plan.method(op.name)
    strata = plan.design.strata
    sites = bool(strata) and d[strata].nunique() >= 3
    clusters = has_clusters(d) and d["cluster_id"].nunique() >= 3
    if method == "jackknife-site" and sites:
        return strata, "the plan's method is the site jackknife"
    if method == "model" or not (clusters or (sites and method != "model")):
        return None, "no clusters: people independent"
    if estimator in ("rmst", "cif") and sites:
        return strata, ("the site jackknife (each site's clusters deleted together) covered "
                        "at 95% in simulation, the cluster jackknife above it")
    if clusters:
        return "cluster_id", ("people are clustered; the cluster jackknife covered at or above "
                              "95% in simulation, the site jackknife below it")
    return strata, "the plan's method needs groups and the sites are the only ones"


def _variance_words(unit: str | None, g: int | None) -> str:
    if unit is None:
        return "model-based variance (people independent)"
    what = "cluster" if unit == "cluster_id" else "site"
    return f"delete-one-{what} jackknife ({g} {what}s), t on {g - 1} df"


def _model_frame(d: pd.DataFrame, plan: AnalysisPlan, cols: list[str], *columns: str
                 ) -> pd.DataFrame:
    """The columns of ``d`` that the plan's analyses (:func:`pipeline.analyses.
    trial_effects.effects`) read: ``columns`` (the outcome's), arm, covariates ``cols``,
    strata and clusters; each cluster named by its number in the names' sorted order when
    no one lacks one (the same people together, the same order, the same count: every fit
    is the one on the names). Subsets and refits of it copy and count a few numeric
    columns, not the person frame and a million cluster names. The columns are ``d``'s own,
    in ``d``'s order (selecting them, ``d[keep]``, copied 0.25 GB at national size)."""
    keep = {c for c in [*columns, "od", *cols, plan.design.strata, "cluster_id"]
            if c is not None}
    out = d.copy(deep=False)
    for c in [c for c in d.columns if c not in keep]:
        del out[c]   # (deleting a column leaves the others' data where they are)
    if "cluster_id" in out and out["cluster_id"].notna().all():
        out = with_columns(out, cluster_id=pd.factorize(out["cluster_id"].to_numpy(),
                                                        sort=True)[0])
    return out


def _ph(d, plan, op, p, cols, s, res) -> None:
    """The PH score test of the arm term and the hazard ratio per period (``d``: the
    outcome's :func:`_model_frame`)."""
    from pipeline.stats import cox

    o = op.outcome
    t, e = o.column("time"), o.column("event")
    dd = with_columns(d, __e=(d[e] == 1).astype(int))
    strata = plan.design.strata
    fit = cox(dd, t, "__e", ["od", *cols], strata=strata, ties=p["ties"],
              conf_level=plan.conf_level)
    ph = fit.ph_test("km")
    arm = ph.loc["od"]
    glob = ph.loc["GLOBAL"]
    res.estimates.append(row(
        LABELS["ph"], op.name, "proportional-hazards chi-square (arm)",
        f"Test that the hazard ratio of {o.what} does not change with time since index.",
        float(arm.chisq), np.nan, np.nan, float(arm.p), np.nan,
        f"Grambsch-Therneau score test (R cox.zph, Kaplan-Meier time transform) of the "
        f"{'site-stratified ' if strata else ''}Cox model{', adjusted' if cols else ''}, "
        "model-based information (people independent: with clustering the p-value is too "
        "small, so read it with the hazard ratio per period)",
        fit.n, fit.n_events, None,
        [f"Global test over every term: chi-square {glob.chisq:.2f} on {int(glob.df)} df, "
         f"p = {glob.p:.2g}."], 1.0))
    del fit   # its sorted rows (0.2 GB at national size): the periods' fits do not read them
    # hazard ratio per period: people at risk at the period's start, time from it, by the
    # plan's analysis and few-cluster method (as the primary estimate)
    method = plan.method(op.name)
    cuts = sorted(float(x) for x in s["ph_periods"])
    rows = [_period_hr(dd, plan, op, p, cols, method, a, b) for a, b in zip(cuts[:-1], cuts[1:])]
    tab = pd.DataFrame(rows)
    res.tables[f"sensitivity_ph_periods_{op.name}"] = tab
    res.public[f"sensitivity_ph_periods_{op.name}"] = tab.round(6)


def _period_hr(dd, plan, op, p, cols, method, a, b) -> dict[str, Any]:
    """The row of :func:`_ph`'s table for the period (``a``, ``b``] of follow-up (``dd``:
    the model frame with the event indicator ``__e``). A function of its own so that the
    period's rows and fit are freed before the next period's are made."""
    o = op.outcome
    t = o.column("time")
    at_risk = dd[t] > a
    at = dd if at_risk.all() else dd[at_risk]   # the first period: everyone, not a copy
    sub = with_columns(at, __t=np.minimum(at[t], b) - a,
                       __pe=((at["__e"] == 1) & (at[t] <= b)).astype(int))
    per = replace(op, outcome=replace(o, columns=(("time", "__t"), ("event", "__pe"))))
    label = f"days {int(a) + 1}-{int(b)}"
    try:
        with np.errstate(all="ignore"):
            e0 = effects(sub, plan, per, p, cols, method)[0]
        return dict(outcome=op.name, period=label, start=a, end=b, hr=e0.estimate,
                    lower=e0.lower, upper=e0.upper, p=e0.p, method=e0.method)
    except _NOT_ESTIMABLE as exc:
        return dict(outcome=op.name, period=label, start=a, end=b, hr=np.nan,
                    lower=np.nan, upper=np.nan, p=np.nan, method=f"not estimated: {exc}")


def _rmst(d, plan, op, s, res) -> None:
    from pipeline.stats.rmst import rmst_difference

    o = op.outcome
    dd = with_columns(d, __e=(d[o.column("event")] == 1).astype(int))
    unit, why = jackknife_unit(d, plan, op, "rmst")
    r = rmst_difference(dd, o.column("time"), "__e", s["rmst_days"], "od", cluster=unit,
                        conf_level=plan.conf_level)
    for x in r.summary.itertuples():
        res.estimates.append(row(
            LABELS["rmst"], op.name, f"RMST difference at {int(x.tau)} days",
            f"Difference in the mean days free of {o.event} over the first {int(x.tau)} days "
            f"(restricted mean survival time, deaths censored), {plan.contrast}.",
            x.estimate, x.lower, x.upper, x.p, x.se,
            f"Kaplan-Meier areas by arm, unadjusted; {_variance_words(unit, r.n_clusters)}",
            r.n, int(dd["__e"].sum()), r.n_clusters,
            [f"RMST {x.rmst_1:.1f} days ({plan.comparison_arm.replace('_', ' ')}) and "
             f"{x.rmst_0:.1f} days ({plan.reference_arm.replace('_', ' ')}).",
             f"Variance unit: {why}."], x.df))


def _fine_gray(d, plan, op, cols, res) -> None:
    from pipeline.stats import fine_gray

    o = op.outcome
    unit, why = jackknife_unit(d, plan, op, "fine_gray")
    strata = [plan.design.strata] if plan.design.strata else []
    fit = fine_gray(d, o.column("time"), o.column("event"), 1, ["od", *strata, *cols],
                    conf_level=plan.conf_level, cluster=unit)
    r = fit.summary.loc["od"]
    res.results[f"{op.name}_fine_gray"] = fit
    res.estimates.append(row(
        LABELS["fine_gray"], op.name, "subdistribution hazard ratio",
        f"Subdistribution hazard ratio of {o.what} (death a competing event, people who died "
        f"kept in the risk set), {plan.contrast}"
        + (f", conditional on {plan.design.strata.replace('_id', '')}" if strata else "")
        + (", adjusted for the plan's covariates" if cols else "") + ".",
        r.hr, r.hr_lower, r.hr_upper, r.p, r.se,
        f"Fine-Gray model, arm{', site' if strata else ''}{', covariates' if cols else ''}; "
        f"{_variance_words(unit, fit.n_clusters)}",
        fit.n, fit.n_events, fit.n_clusters,
        [f"Fine and Gray's sandwich standard error (people independent) would be "
         f"{r.se_sandwich:.3f} against {r.se:.3f}." if unit else "",
         f"Variance unit: {why}.", *fit.notes], fit.df))


def _plan_analysis(label, d, plan, op, p, cols, clusters, res, outcome_what, notes) -> None:
    """The plan's analysis and few-cluster method on a redefined event."""
    method = plan.method(op.name)
    effs = effects(d, plan, op, p, cols, method)
    est = plan.estimand(op).replace(op.outcome.what, outcome_what)
    for e in effs:
        res.estimates.append(row(label, op.name, e.measure, est, e.estimate, e.lower,
                                 e.upper, e.p, e.se, e.method, e.n, e.events, e.n_clusters,
                                 [*notes, *e.notes], e.df))


def time_to_event(d, plan, op, p, clusters, s, res) -> None:
    """Every sensitivity analysis of one time-to-event outcome (each guarded: one that
    cannot be estimated says why and the rest go on)."""
    names = [*plan.covariates, *plan.cluster_covariates]
    dd, cols, _ = (adjustment(with_cluster_covariates(d, plan, clusters), names)
                   if names else (d, [], []))
    o = op.outcome
    why = end_reason(dd)
    t_col, e_col = o.column("time"), o.column("event")
    adm_cols = (["admission_time", "admission_event"]
                if op.name == "relapse" and "admission_time" in dd else [])
    mf = _model_frame(dd, plan, cols, t_col, e_col, *adm_cols)

    def guarded(label, measure, fn):
        try:
            fn()
        except _NOT_ESTIMABLE as exc:
            res.estimates.append(not_estimated(label, op.name, measure, plan.estimand(op),
                                               str(exc), n=len(dd)))

    guarded(LABELS["ph"], "proportional-hazards chi-square (arm)",
            lambda: _ph(mf, plan, op, p, cols, s, res))
    guarded(LABELS["rmst"], "RMST difference", lambda: _rmst(dd, plan, op, s, res))
    if adm_cols:
        adm = replace(op, outcome=replace(o, columns=(("time", "admission_time"),
                                                      ("event", "admission_event")),
                                          event="admission"))
        guarded(LABELS["admissions"], op.measure, lambda: _plan_analysis(
            LABELS["admissions"], mf, plan, adm, p, cols, clusters, res,
            "first admission (crisis episodes and detentions without admission not counted)",
            ["The first inpatient admission alone is the event: crisis episodes, which Open "
             "Dialogue teams may record differently from usual care, are not counted."]))
    unit, _ = jackknife_unit(dd, plan, op, "fine_gray")
    many = unit == "cluster_id" and dd["cluster_id"].nunique() > int(p["jackknife_max_clusters"])
    if many:
        # a refit per cluster: about 10 CPU s each over a national extract's million rows,
        # 1,000 of them; no cluster-robust variance for Fine-Gray is implemented instead
        res.not_shown.append({
            "item": f"{LABELS['fine_gray']} ({op.name})",
            "reason": f"{dd['cluster_id'].nunique()} clusters, more than analyse."
                      f"jackknife_max_clusters ({p['jackknife_max_clusters']}): its variance "
                      "is the delete-one-cluster jackknife, one refit per cluster; raise the "
                      "cap to compute it"})
    else:
        guarded(LABELS["fine_gray"], "subdistribution hazard ratio",
                lambda: _fine_gray(dd, plan, op, cols, res))
    moved = (why == "transferred_out") & (dd[e_col] == 0)
    tr = with_columns(mf, __tr_event=np.where(moved, 1, mf[e_col]))
    tr_op = replace(op, outcome=replace(o, columns=(("time", t_col), ("event", "__tr_event"))))
    guarded(LABELS["transfer"], op.measure, lambda: _plan_analysis(
        LABELS["transfer"], tr, plan, tr_op, p, cols, clusters, res,
        f"{o.what} or transfer out",
        [f"{int(moved.sum())} people transferred out before {o.event or 'the event'} "
         "counted as having it on the day their records end."]))


def sensitivity(d: pd.DataFrame, plan: AnalysisPlan, p: dict[str, Any],
                clusters: pd.DataFrame | None, cfg: dict[str, Any]) -> AnalysisResult:
    """The family (see the module): estimands, missing data, the sensitivity analyses."""
    s = settings(p)
    res = AnalysisResult("sensitivity")
    res.public["estimands"] = pd.DataFrame(
        [(e.outcome, e.population, e.variable, e.summary, e.sentence)
         for e in plan.estimands()],
        columns=["outcome", "population", "variable", "summary", "sentence"])
    if "end_reason" in d:
        exact, pub = missing_data(d, plan, s, cfg)
        res.tables["missing_data"] = exact
        res.public["missing_data"] = pub
    for op in plan.outcomes:
        if op.kind == "time_to_event":
            time_to_event(d, plan, op, p, clusters, s, res)
    return res


