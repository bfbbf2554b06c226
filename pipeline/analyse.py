"""Analyse stage: the primary and secondary analyses, Table 1, the site comparison, fidelity
against outcome and the outcomes by ethnicity group.

Every analysis is a call into :mod:`pipeline.stats` on a person-level frame
(:func:`pipeline.metrics.person_frame`); which analyses run and their options come from
``params.yaml`` ``analyse:``. Results go to the ``results`` schema: exact estimates in
``results.analysis_estimates`` (one row per analysis and measure, with the estimand in
words), and, for people, disclosure-controlled tables (``*_public``) and the rounded counts
behind every curve (``results.analysis_curve_counts``).

Estimands (arm contrast: ``open_dialogue`` against the ``reference_arm``, usual care):

* primary: the cause-specific hazard ratio of first relapse (deaths censored), conditional
  on site (Cox model stratified by site: one baseline hazard per site), with a
  cluster-robust interval by cluster (the unit of randomisation, e.g. GP practice) where
  the data have clusters: by default the delete-one-cluster jackknife with t on G - 1 df
  (``small_sample``; the sandwich, even with CR1, is biased narrow with few clusters per
  site: 82% coverage of a 95% interval with 2 clusters per site in the synthetic trial),
  CR1 above ``jackknife_max_clusters``. Kaplan-Meier (death censored) and
  Aalen-Johansen (death competing) curves by arm. The log-rank test stratified by site:
  with clusters, the robust score test of the Cox model (Lin and Wei 1989), and no Gray's
  test (it assumes independent people); without clusters, the log-rank and Gray's tests.
* involuntary admissions: rate ratio from a negative binomial model with site as a fixed
  effect and log person-years as offset (conditional on site); with clusters the same
  ``small_sample`` choice: the delete-one-cluster jackknife (t on G - 1 df) by default,
  else the HC0 sandwich (74% coverage of a 95% interval with 2 clusters per site in the
  synthetic trial; the jackknife 98%).
* antipsychotic use and back at work or education at 2 years: marginal risk difference
  and risk ratio, variances inflated by the design effect of the clusters.
* site comparison: the site-specific hazard ratios pooled by random-effects meta-analysis
  (the mean of the distribution of site hazard ratios) with a prediction interval (where
  the hazard ratio of a new site is expected to lie).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from pipeline import disclosure, output_policy, metrics
from pipeline import params as params_mod
from pipeline.errors import OdevalError
from pipeline.stats._result import NotEstimable

DEFAULTS: dict[str, Any] = {
    "run": ["primary", "secondary", "table_one", "site_meta", "funnel",
            "fidelity_meta_regression", "ethnicity"],
    "conf_level": 0.95,
    "reference_arm": "usual_care",
    "comparison_arm": "open_dialogue",
    "ties": "efron",
    "small_sample": "jackknife",     # null | t | cr1 | jackknife (only with clusters)
    "jackknife_max_clusters": 200,   # above it the jackknife gives way to cr1
    "rate_family": "negbin",         # poisson | negbin
    "table_one": ["sex", "age_at_index", "ethnicity_group", "diagnosis_group",
                  "prior_admissions_2y", "baseline_activity"],
    "nonnormal": ["prior_admissions_2y"],
    "meta_method": "REML",
    "meta_test": "knha",
    "funnel_overdispersion": None,   # null | multiplicative | additive
    "funnel_limits": [0.95, 0.998],
    "moderators": ["p1_within_24h"],  # open-dialogue-arm fidelity indicators per site
    "curve_times": [0, 90, 180, 365, 545, 730],
}

Progress = Callable[[int, int, str], None]

PRIMARY_ESTIMAND = (
    "Cause-specific hazard ratio of first relapse (acute-care episode), Open "
    "Dialogue vs usual care, conditional on site (Cox model stratified by site); deaths "
    "censored.")


def resolve_params(params: dict | None) -> dict[str, Any]:
    p = params_mod.merged("analyse", params, DEFAULTS)
    bad = sorted(set(p["run"]) - set(DEFAULTS["run"]))
    if bad:
        raise OdevalError(f"analyse.run: unknown analyses {bad}; known: {DEFAULTS['run']}",
                          rule="analyse.params.run", file="params.yaml")
    if p["small_sample"] not in (None, "t", "cr1", "jackknife"):
        raise OdevalError("analyse.small_sample must be null, t, cr1 or jackknife",
                          rule="analyse.params.small_sample", file="params.yaml")
    return p


def _small_sample(p: dict[str, Any], d: pd.DataFrame) -> tuple[str | None, list[str]]:
    """The few-cluster correction for the Cox models on ``d`` (None without clusters), and
    a note when the jackknife gives way to cr1: past ``jackknife_max_clusters`` its G
    refits cost more than the bias they remove (the sandwich's bias shrinks with the
    number of clusters per site)."""
    if not _has_clusters(d):
        return None, []
    g = d["cluster_id"].nunique()
    if p["small_sample"] == "jackknife" and g > int(p["jackknife_max_clusters"]):
        return "cr1", [f"{g} clusters, more than analyse.jackknife_max_clusters "
                       f"({p['jackknife_max_clusters']}): cr1 instead of the jackknife."]
    return p["small_sample"], []


@dataclass
class Analyses:
    """Everything the analyse stage found: result objects (for notebooks) and tidy tables."""

    params: dict[str, Any]
    estimates: pd.DataFrame
    results: dict[str, Any] = field(default_factory=dict)        # pipeline.stats results
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # exact, warehouse only
    public: dict[str, pd.DataFrame] = field(default_factory=dict)  # disclosure-controlled
    notes: list[str] = field(default_factory=list)
    site_notes: list[str] = field(default_factory=list)  # sites without a hazard ratio, why
    not_shown: list[dict] = field(default_factory=list)  # figures and tables not built, why


def _has_clusters(df: pd.DataFrame) -> bool:
    return "cluster_id" in df and df["cluster_id"].notna().all() and df["cluster_id"].nunique() > 1


def _row(analysis, outcome, measure, estimand, est, lo, hi, p=np.nan, se=np.nan, method="",
         n=None, events=None, n_clusters=None, notes=()):
    return dict(analysis=analysis, outcome=outcome, measure=measure, estimand=estimand,
                estimate=float(est), lower=float(lo), upper=float(hi), p=float(p),
                se=float(se), method=method, n=n, events=events, n_clusters=n_clusters,
                notes=" ".join(notes))


def _not_estimated(out: "Analyses", analysis: str, outcome: str, measure: str, estimand: str,
                   reason: str, n=None, events=None) -> None:
    """An estimate the data do not hold: a row with no value, ``method`` "not estimated" and
    the reason in ``notes`` (the report prints it where the estimate would be)."""
    out.estimates.loc[len(out.estimates)] = _row(
        analysis, outcome, measure, estimand, np.nan, np.nan, np.nan, method="not estimated",
        n=n, events=events, notes=[f"Not estimated: {reason}"])


def _arms_without(d: pd.DataFrame, events: pd.Series, what: str) -> str | None:
    """Why a ratio of the arms cannot be estimated from ``events`` (per person, aligned with
    ``d``), or None: an arm without people or without a single event."""
    p_arm = d["arm"].astype(str)
    for arm in d["arm"].cat.categories:
        n = int((p_arm == arm).sum())
        if n == 0:
            return f"no one in the {_ARM_WORDS.get(arm, arm)} arm"
        if float(events[p_arm == arm].sum()) == 0:
            return (f"no {what} in the {_ARM_WORDS.get(arm, arm)} arm: the ratio would be 0 "
                    "or infinite")
    return None


def _not_shown(out: "Analyses", item: str, reason: str) -> None:
    """Why a figure or table of the report is not built (``results.analysis_not_shown_public``,
    one row per item; the report prints the reason where the item would be)."""
    out.not_shown.append(dict(item=item, reason=reason))


def _no_site_with_both_arms(d: pd.DataFrame) -> str | None:
    """Why an arm contrast conditional on site has no information, or None."""
    if (d.groupby("site_id", observed=True)["od"].nunique() == 2).any():
        return None
    return ("no site has people in both arms, so an arm contrast within sites (conditional "
            "on site) has no information (e.g. one cluster per site)")


_ARM_WORDS = {"open_dialogue": "Open Dialogue", "usual_care": "usual care"}


def _cox_arm(d: pd.DataFrame, p: dict[str, Any], clusters: bool):
    """The Cox model of relapse on arm, stratified by site, with the few-cluster choice of
    :func:`_small_sample`: ``(fit, correction used, notes)``. Where the jackknife cannot be
    computed (e.g. a cluster holding every event of an arm) it gives way to cr1, noted."""
    from pipeline.stats import cox

    small, notes = _small_sample(p, d) if clusters else (None, [])
    kw = dict(strata="site_id", cluster="cluster_id" if clusters else None, ties=p["ties"],
              conf_level=float(p["conf_level"]))
    try:
        fit = cox(d, "relapse_time", "relapse_only", ["od"], small_sample=small, **kw)
    except ValueError as exc:
        if small != "jackknife":
            raise
        small, notes = "cr1", [*notes, f"The jackknife is not computable ({exc}): cr1 instead."]
        fit = cox(d, "relapse_time", "relapse_only", ["od"], small_sample=small, **kw)
    return fit, small, notes


_GRAY_WITH_CLUSTERS = ("Gray's test of the cumulative incidence is not reported: it treats "
                       "people as independent, and the data are clustered.")


def prepare(persons: pd.DataFrame, p: dict[str, Any]) -> pd.DataFrame:
    d = persons.copy()
    arms = sorted(d["arm"].unique())
    # one of the two arms alone is a study too (a pilot site offering only Open Dialogue):
    # its comparisons are "not estimated", with the reason; any other arm is an error
    if not arms or not set(arms) <= {p["reference_arm"], p["comparison_arm"]}:
        raise OdevalError(f"the analyses compare {p['comparison_arm']} with {p['reference_arm']}; "
                          f"the data have arms {arms}", rule="analyse.arms")
    d["od"] = (d["arm"] == p["comparison_arm"]).astype(int)
    d["relapse_only"] = (d["relapse_event"] == 1).astype(int)
    d["arm"] = pd.Categorical(d["arm"], categories=[p["reference_arm"], p["comparison_arm"]])
    return d


# --------------------------------------------------------------------------- analyses

def primary(d: pd.DataFrame, p: dict[str, Any], cfg: dict[str, Any], out: Analyses) -> None:
    """The primary Cox model and tests, and the curves by arm (drawn whether or not the
    hazard ratio can be estimated)."""
    from pipeline.stats import aalen_johansen, gray_test, kaplan_meier, logrank

    conf = float(p["conf_level"])
    clusters = _has_clusters(d)
    times = [float(t) for t in p["curve_times"]]
    out.results["primary_km"] = kaplan_meier(d, "relapse_time", "relapse_only", group="arm",
                                             conf_level=conf, times=times)
    out.results["primary_aj"] = aalen_johansen(d, "relapse_time", "relapse_event", group="arm",
                                               conf_level=conf)
    rc = disclosure.rounded_curve_data(d.assign(arm=d["arm"].astype(str)), "relapse_time",
                                       "relapse_event", cfg, "arm")
    counts = (rc.groupby(["arm", "relapse_time", "relapse_event"]).size()
              .rename("count").reset_index())
    counts.insert(0, "outcome", "relapse")
    out.public["curve_counts"] = counts.rename(columns={"arm": "group", "relapse_time": "time",
                                                        "relapse_event": "event"})
    why = _arms_without(d, d["relapse_only"], "relapse") or _no_site_with_both_arms(d)
    try:
        if why:
            raise NotEstimable(why)
        fit, small, small_note = _cox_arm(d, p, clusters)
    except NotEstimable as exc:
        _not_estimated(out, "primary", "relapse", "hazard ratio", PRIMARY_ESTIMAND, str(exc),
                       len(d), int(d["relapse_only"].sum()))
        return
    s = fit.summary.loc["od"]
    kind = "jackknife (delete one cluster)" if small == "jackknife" else "cluster-robust"
    se_kind = (f"{kind} by cluster ({fit.n_clusters} clusters"
               + (f", {small} correction)" if small else ")")
               if clusters else "model-based (no clusters in the data)")
    out.results["primary_cox"] = fit
    out.estimates.loc[len(out.estimates)] = _row(
        "primary", "relapse", "hazard ratio", PRIMARY_ESTIMAND, s.hr, s.hr_lower, s.hr_upper,
        s.p, s.se, f"Cox, {p['ties'].capitalize()} ties, site strata; {se_kind} interval",
        fit.n, fit.n_events, fit.n_clusters,
        [*fit.notes, *small_note, *([_GRAY_WITH_CLUSTERS] if clusters else [])])
    if clusters:
        # people in a cluster are not independent: the log-rank test is the score test of
        # the stratified Cox model with the cluster-robust variance of the score
        rs = fit.robust_score_test
        out.results["primary_logrank"] = rs
        dist = (f"; p from F({rs['df']}, {fit.n_clusters - 1}) after the "
                f"{small!r} correction" if small else "")
        out.estimates.loc[len(out.estimates)] = _row(
            "primary", "relapse", "log-rank chi-square", "Stratified (site) log-rank test of "
            "equal relapse hazards, robust to clustering (score test of the primary Cox model "
            f"with the {'jackknife' if small == 'jackknife' else 'cluster-robust'} variance "
            "of the score, Lin and Wei 1989)", rs["chisq"], np.nan, np.nan,
            rs["p"], method=f"{rs['df']} df{dist}", n_clusters=fit.n_clusters)
    else:
        lr = logrank(d, "relapse_time", "relapse_only", "arm", strata="site_id")
        out.results["primary_logrank"] = lr
        out.estimates.loc[len(out.estimates)] = _row(
            "primary", "relapse", "log-rank chi-square", "Stratified (site) log-rank test of "
            "equal relapse hazards", lr.chisq, np.nan, np.nan, lr.p, method=f"{lr.df} df")
        gray = gray_test(d, "relapse_time", "relapse_event", "arm", cause=1, strata="site_id")
        g = gray.table.iloc[0]
        out.results["primary_gray"] = gray
        out.estimates.loc[len(out.estimates)] = _row(
            "primary", "relapse", "Gray chi-square", "Gray's test of equal cumulative incidence "
            "of relapse (death competing), stratified by site", g["stat"], np.nan, np.nan,
            g["p"], method=f"{int(g['df'])} df")


def _binary(d, outcome_col, label, estimand_what, p, out, clusters,
            missing_why="without the outcome recorded"):
    from pipeline.stats import risk_difference, risk_ratio

    conf = float(p["conf_level"])
    dd = d[d[outcome_col].notna()].assign(**{outcome_col: lambda x: x[outcome_col].astype(int)})
    dd = dd.assign(arm=dd["arm"].astype(str))
    kw = dict(group="arm", reference=p["reference_arm"], conf_level=conf,
              cluster="cluster_id" if clusters else None)
    note = [f"{int(d[outcome_col].isna().sum())} people {missing_why} left out."
            ] if d[outcome_col].isna().any() else []
    adj = "design-effect inflated (clusters)" if clusters else "no clustering"
    for fn, measure, line in ((risk_difference, "risk difference", 1), (risk_ratio, "risk ratio", 0)):
        estimand = (f"Marginal {measure} of {estimand_what}, Open Dialogue vs usual care")
        missing = [a for a in (p["comparison_arm"], p["reference_arm"]) if not (dd["arm"] == a).any()]
        try:
            if missing:
                raise NotEstimable(f"no one in the {_ARM_WORDS.get(missing[0], missing[0])} arm "
                                   "has this outcome recorded" + (f" ({note[0]})" if note else ""))
            if measure == "risk ratio":
                why = _arms_without(dd.assign(arm=pd.Categorical(
                    dd["arm"], categories=[p["reference_arm"], p["comparison_arm"]])),
                    dd[outcome_col], estimand_what)
                if why:
                    raise NotEstimable(why)
            res = fn(dd, outcome_col, **kw)
        except NotEstimable as exc:
            _not_estimated(out, "secondary", label, measure, estimand, str(exc), len(dd),
                           int(dd[outcome_col].sum()))
            continue
        out.results[f"{label}_{'rd' if line else 'rr'}"] = res
        row = res.summary.iloc[line]
        out.estimates.loc[len(out.estimates)] = _row(
            "secondary", label, measure, estimand, row.estimate, row.lower, row.upper, row.p, row.se,
            f"{row.method}; {adj}", len(dd), int(dd[outcome_col].sum()),
            dd["cluster_id"].nunique() if clusters else None, [*note, *res.notes])


def secondary(d: pd.DataFrame, p: dict[str, Any], out: Analyses,
              words: dict[str, str] | None = None) -> None:
    """``words``: :func:`pipeline.metrics.denominators` of the derive definitions (what an
    involuntary admission is, the rate's person-time, the binary outcomes' denominator)."""
    from pipeline.stats import rate_ratio

    words = words or metrics.denominators({})
    conf = float(p["conf_level"])
    clusters = _has_clusters(d)
    dd = d[d["involuntary_person_years"] > 0]
    small, small_note = _small_sample(p, dd)
    kind = "jackknife" if small == "jackknife" else "HC0"
    estimand = (f"Rate ratio of involuntary admissions ({words['involuntary']} with a detention "
                f"under the involuntary sections) {words['involuntary_time']}, Open Dialogue vs "
                "usual care, conditional on site")
    try:
        why = (_arms_without(dd, dd["involuntary_count"], "involuntary admission")
               or _no_site_with_both_arms(dd))
        if why:
            raise NotEstimable(why)
        rr = rate_ratio(dd, "involuntary_count", "involuntary_person_years", ["arm", "site_id"],
                        family=p["rate_family"], cluster="cluster_id" if clusters else None,
                        cluster_type=kind, conf_level=conf)
    except NotEstimable as exc:
        _not_estimated(out, "secondary", "involuntary_admission", "rate ratio", estimand,
                       str(exc), len(dd), int(dd["involuntary_count"].sum()))
        rr = None
    if rr is not None:
        _rate_ratio_row(rr, dd, p, clusters, kind, small_note, estimand, out,
                        words["involuntary_time"])
    why = ("not followed for the whole window (status not known)"
           if words["window"] != "in follow-up" else "without the outcome recorded")
    _binary(d, "ap_any_use", "antipsychotic_any",
            f"any antipsychotic use {words['window']} ({words['binary']})", p, out, clusters, why)
    _binary(d, "ap_use_last_days", "antipsychotic_last_days",
            f"antipsychotic use in the last days {words['window']} ({words['binary']})", p, out,
            clusters, why)
    _binary(d, "rtw_2y", "return_to_work", "being in work or education at 2 years", p, out,
            clusters)


def _rate_ratio_row(rr, dd, p, clusters, kind, small_note, estimand, out: Analyses,
                    person_time: str = "per person-year of follow-up") -> None:
    term = f"arm{p['comparison_arm']}"
    s = rr.summary.loc[term]
    out.results["involuntary_rate_ratio"] = rr
    out.estimates.loc[len(out.estimates)] = _row(
        "secondary", "involuntary_admission", "rate ratio", estimand,
        s.rr, s.rr_lower, s.rr_upper, s.p, s.se,
        f"{p['rate_family']} log-linear model, site fixed effects, offset log person-years "
        f"({person_time.removeprefix('per ')}); "
        + ((f"{'jackknife (delete one cluster)' if kind == 'jackknife' else 'cluster-robust'} "
            "interval") if clusters else "model-based interval"),
        rr.n, int(dd["involuntary_count"].sum()), rr.n_clusters, [*rr.notes, *small_note])


def table_one(d: pd.DataFrame, p: dict[str, Any], cfg: dict[str, Any], out: Analyses) -> None:
    from pipeline.stats import table_one as t1

    variables = list(p["table_one"])
    dd = d.assign(arm=d["arm"].astype(str))
    num = [v for v in variables if pd.api.types.is_numeric_dtype(dd[v])]
    try:
        res = t1(dd, "arm", variables, categorical=[v for v in variables if v not in num],
                 nonnormal=[v for v in p["nonnormal"] if v in variables])
    except NotEstimable as exc:
        _not_shown(out, "table_one", f"Table 1 compares the arms: {exc}")
        return
    out.results["table_one"] = res
    out.tables["table_one"] = res.table
    out.public["table_one"] = protect_table_one(res, dd, cfg, list(p["nonnormal"]))


def protect_table_one(res, d: pd.DataFrame, cfg: dict[str, Any],
                      nonnormal_vars: list[str] = ()) -> pd.DataFrame:
    """Table 1 for people, long (one row per variable, level and arm): counts rounded or
    suppressed (the levels and missing of a variable add up to the arm's people: secondary
    suppression within each), percentages from the rounded counts, summaries of continuous
    variables to 1 decimal, SMD per variable from the published values
    (:func:`pipeline.output_policy.smd_from_public`: hidden levels pooled into one, and
    :func:`~pipeline.output_policy.smd_continuous_public`), so it gives no cell back."""
    t = res.table
    groups = list(res.groups)
    n_arm = d.groupby("arm").size().to_dict()
    n_r = {g: disclosure.round_count(n_arm[g], cfg) for g in groups}
    rows = [dict(variable="people", level="", kind="n", arm=g, n=n_r[g], percent=None,
                 summary="", smd=np.nan) for g in groups]
    for var, tv in t.groupby("variable", sort=False):
        kind = tv["kind"].iloc[0]
        smd = float(res.smd.get(var, np.nan))
        miss = {g: int(tv[tv["group"] == g]["missing"].iloc[0]) for g in groups}
        if kind == "categorical":
            levels = list(dict.fromkeys(tv["level"]))
            vals, cons = {}, []
            for g in groups:
                tg = tv[tv["group"] == g].set_index("level")
                for lv in levels:
                    vals[(g, lv)] = int(tg.at[lv, "count"]) if lv in tg.index else 0
                vals[(g, "(missing)")] = miss[g]
                vals[(g, "(all)")] = n_arm[g]
                cons.append(((g, "(all)"), [(g, lv) for lv in [*levels, "(missing)"]]))
            hidden = disclosure.secondary_suppress(vals, cons, disclosure.primary(vals, cfg))
            shown = levels + (["(missing)"] if any(miss.values()) else [])
            pub = {(g, lv): None if (g, lv) in hidden else disclosure.round_count(vals[(g, lv)], cfg)
                   for g in groups for lv in shown}
            smd = output_policy.smd_from_public(
                [[pub[(g, lv)] for lv in levels] for g in groups],
                [None if n_r[g] is None else n_r[g] - (pub.get((g, "(missing)")) or 0)
                 for g in groups])
            for i, lv in enumerate(shown):
                for g in groups:
                    c = pub[(g, lv)]
                    pct = None if c is None or not n_r[g] else round(100 * c / n_r[g], 1)
                    rows.append(dict(variable=var, level=lv, kind="n (%)", arm=g, n=c,
                                     percent=pct, summary="", smd=smd if i == 0 else np.nan))
        else:
            nonnormal = var in nonnormal_vars
            # the SMD from the means and SDs as shown (1 decimal), as anyone can recompute it
            sh = {g: tv[tv["group"] == g].iloc[0] for g in groups}
            smd = output_policy.smd_continuous_public(
                [round(float(sh[g]["mean"]), 1) for g in groups],
                [round(float(sh[g]["sd"]), 1) for g in groups])
            for g in groups:
                r = tv[tv["group"] == g].iloc[0]
                summary = (f"{r['median']:.1f} [{r['q1']:.1f}, {r['q3']:.1f}]" if nonnormal
                           else f"{r['mean']:.1f} ({r['sd']:.1f})")
                rows.append(dict(variable=var, level="", arm=g, n=None, percent=None,
                                 kind="median [IQR]" if nonnormal else "mean (SD)",
                                 summary=summary, smd=smd))
            if any(miss.values()):
                vals = {g: miss[g] for g in groups}
                for g in groups:
                    rows.append(dict(variable=var, level="(missing)", kind="n", arm=g,
                                     n=disclosure.round_count(vals[g], cfg), percent=None,
                                     summary="", smd=np.nan))
    out = pd.DataFrame(rows)
    out["suppressed"] = out["kind"].str.startswith("n") & out["n"].isna()
    return out


def site_effects(d: pd.DataFrame, p: dict[str, Any], cfg: dict[str, Any], out: Analyses) -> pd.DataFrame:
    """Site-specific hazard ratios of relapse (one Cox model per site, model-based se: within
    a site each arm is usually one cluster, so a robust variance is not estimable)."""
    from pipeline.stats import cox

    rows, left_out = [], {}
    for site, sd in d.groupby("site_id", sort=True):
        ev = sd.groupby("od")["relapse_only"].sum()
        if len(ev) < 2:
            left_out.setdefault("people in one arm only", []).append(site)
            continue
        if (ev == 0).any() or (ev == sd.groupby("od").size()).any():
            left_out.setdefault("an arm without relapses (or without people free of "
                                "relapse)", []).append(site)
            continue
        try:
            fit = cox(sd, "relapse_time", "relapse_only", ["od"], ties=p["ties"],
                      conf_level=float(p["conf_level"]))
        except NotEstimable as exc:
            left_out.setdefault(str(exc), []).append(site)
            continue
        s = fit.summary.loc["od"]
        n_arm = sd.groupby("od").size()
        rows.append(dict(site_id=site, log_hr=s.coef, se=s.se, hr=s.hr, lower=s.hr_lower,
                         upper=s.hr_upper, n=len(sd), events=int(sd["relapse_only"].sum()),
                         cells=[int(n_arm.get(1, 0)), int(n_arm.get(0, 0)), int(ev.get(1, 0)),
                                int(ev.get(0, 0))]))
    out.site_notes = [f"{len(sites)} site{'s' if len(sites) > 1 else ''} without a hazard ratio, "
                      f"left out of the meta-analysis ({why}): {', '.join(sites)}."
                      for why, sites in left_out.items()]
    out.notes += out.site_notes
    return pd.DataFrame(rows, columns=["site_id", "log_hr", "se", "hr", "lower", "upper", "n",
                                       "events", "cells"])


def site_cells(met: metrics.MetricsResult | None, site: str, exact_cells, cfg) -> list:
    """The counts a site's hazard ratio rests on, as they could be published: people and
    first relapses per arm (``exact_cells``, rounded or None where small), and the people
    per arm of the site as the public tables show them (None where hidden there)."""
    cells = [disclosure.round_count(v, cfg) for v in exact_cells]
    if met is None:
        return [*cells, None]
    o = met.outcomes_public
    sel = o[(o.dimension == "site") & (o.level == site) & (o.outcome == "relapse")
            & (o.metric == "rate") & (o.arm != "all")]
    return [*cells, *sel["n"]] if len(sel) == 2 else [*cells, None]


def public_site_effects(se: pd.DataFrame, met, cfg: dict[str, Any]) -> pd.DataFrame:
    """Site hazard ratios for people: a site's only when every count it rests on could be
    shown (people and first relapses per arm above ``suppress_max``, people per arm shown
    in the tables; :func:`pipeline.output_policy.meta_input`), to 3 significant digits;
    counts rounded."""
    pol = output_policy.settings(cfg)
    pub = se.drop(columns="cells")
    for i, r in se.iterrows():
        cells = site_cells(met, r.site_id, r.cells, cfg)
        log_hr, s = output_policy.meta_input(r.log_hr, r.se, cells, pol)
        hr, lo, hi = output_policy.effect(r.hr, r.lower, r.upper, cells, pol)
        pub.loc[i, ["log_hr", "se", "hr", "lower", "upper"]] = [
            np.nan if v is None else v for v in (log_hr, s, hr, lo, hi)]
    pub["n"] = [disclosure.round_count(v, cfg) for v in se["n"]]
    pub["events"] = [disclosure.round_count(v, cfg) for v in se["events"]]
    pub["suppressed"] = pub["log_hr"].isna()
    return pub


def site_meta(d, p, cfg, out: Analyses, met: metrics.MetricsResult | None = None) -> None:
    from pipeline.stats import meta_analysis

    se = site_effects(d, p, cfg, out)
    out.public["site_effects"] = public_site_effects(se, met, cfg)
    se = se.drop(columns="cells", errors="ignore")
    out.tables["site_effects"] = se
    estimand = ("Mean of the distribution of site-specific hazard ratios of relapse (random "
                "effects); the prediction interval is where a new site's hazard ratio is "
                "expected to lie")
    if len(se) < 2:
        _not_estimated(out, "site_comparison", "relapse", "pooled hazard ratio", estimand,
                       f"{len(se)} site{'' if len(se) == 1 else 's'} with a hazard ratio; a "
                       "meta-analysis needs two or more. " + " ".join(out.site_notes))
        return
    ma = meta_analysis(se["log_hr"], se["se"] ** 2, method=p["meta_method"], test=p["meta_test"],
                       conf_level=float(p["conf_level"]), labels=list(se["site_id"]))
    out.results["site_meta"] = ma
    out.estimates.loc[len(out.estimates)] = _row(
        "site_comparison", "relapse", "pooled hazard ratio", estimand,
        np.exp(ma.estimate), np.exp(ma.ci[0]), np.exp(ma.ci[1]), ma.p, ma.se,
        f"{p['meta_method']} tau^2, {p['meta_test']} test; tau^2 = {ma.tau2:.3g}, "
        f"I^2 = {ma.i2:.0f}%; prediction interval {np.exp(ma.pi[0]):.2f} to "
        f"{np.exp(ma.pi[1]):.2f}", None, None, ma.k, [*ma.notes, *out.site_notes])
    out.tables["site_meta"] = pd.DataFrame([dict(
        estimate=np.exp(ma.estimate), lower=np.exp(ma.ci[0]), upper=np.exp(ma.ci[1]),
        pi_lower=np.exp(ma.pi[0]), pi_upper=np.exp(ma.pi[1]), tau2=ma.tau2, i2=ma.i2, q=ma.q,
        q_p=ma.q_p, k=ma.k)])
    out.public["site_meta"] = out.tables["site_meta"]


def funnels(met: metrics.MetricsResult, p, cfg, out: Analyses) -> None:
    """Funnel plots of the Open Dialogue arm per site: first meeting within 24 h, relapse by
    the landmark day. Counts come from the public metrics tables, so a cell hidden there is
    hidden here."""
    from pipeline.stats import funnel

    comp = p["comparison_arm"]
    specs = []
    f_ex, f_pub = met.fidelity, met.fidelity_public
    sel = (f_ex.indicator == "p1_within_24h") & (f_ex.arm == comp) & (f_ex.site_id != "all")
    specs.append(("first_meeting_24h", "First network meeting within 24 h (Open Dialogue arm)",
                  f_ex[sel], f_pub[sel]))
    o_ex, o_pub = met.outcomes, met.outcomes_public
    sel = ((o_ex.dimension == "site") & (o_ex.metric == "by_landmark") & (o_ex.arm == comp)
           & (o_ex.level != "all"))
    specs.append(("relapse_by_landmark", f"Relapse by day {met.params['landmark_days']} "
                  "(Open Dialogue arm)", o_ex[sel].rename(columns={"level": "site_id"}),
                  o_pub[sel].rename(columns={"level": "site_id"})))
    rows = []
    for name, title, ex, pub in specs:
        ok = ex[(ex["n"] > 0)]
        # the target from the published (rounded) counts of the sites shown: anyone can
        # recompute it, so it gives back no total (an exact target would)
        pubs = pub.set_index("site_id").loc[list(ok["site_id"])]
        shown_ = pubs["n"].notna() & pubs["events"].notna()
        tgt = (float(pubs.loc[shown_, "events"].astype(float).sum())
               / float(pubs.loc[shown_, "n"].astype(float).sum())) if shown_.any() else None
        try:
            if tgt is not None and not 0 < tgt < 1:
                raise NotEstimable(f"the overall proportion of the published counts is {tgt:g} "
                                   "(no site shows an event, or every site only events): "
                                   "control limits around it are not defined")
            fr = funnel(ok["events"].astype(float), ok["n"].astype(float), kind="proportion",
                        overdispersion=p["funnel_overdispersion"],
                        limits=tuple(p["funnel_limits"]), labels=list(ok["site_id"]), target=tgt)
        except NotEstimable as exc:
            _not_shown(out, f"funnel_{name}", str(exc))
            continue
        out.results[f"funnel_{name}"] = fr
        pubi = pub.set_index("site_id")
        for (_, r), (_, fx) in zip(ok.iterrows(), fr.table.iterrows()):
            pr = pubi.loc[r.site_id]
            shown = pr["events"] is not None and pr["n"] is not None and not pd.isna(pr["n"]) \
                and not pd.isna(pr["events"])
            rows.append(dict(indicator=name, title=title, site_id=r.site_id,
                             events=int(pr["events"]) if shown else None,
                             n=int(pr["n"]) if shown else None,
                             value=(pr["events"] / pr["n"]) if shown and pr["n"] else np.nan,
                             flag=fx["flag"] if shown else "suppressed",
                             target=fr.target, limits_used=fr.limits_used))
    out.public["funnel"] = pd.DataFrame(rows, columns=[
        "indicator", "title", "site_id", "events", "n", "value", "flag", "target", "limits_used"])


def fidelity_meta_regression(met: metrics.MetricsResult, p, cfg, out: Analyses) -> None:
    from pipeline.stats import meta_regression

    se = out.tables.get("site_effects")
    if se is None or len(se) < 3:
        for ind in p["moderators"]:
            _not_estimated(out, "fidelity", "relapse",
                           f"change in log hazard ratio per unit of {ind}",
                           f"Meta-regression of site log hazard ratios of relapse on the Open "
                           f"Dialogue arm's {ind}", "fewer than three sites with a hazard "
                           f"ratio ({0 if se is None else len(se)}); a meta-regression needs "
                           "three or more.")
        return
    # fitted on the published values (site log HRs and ses as shown, moderators from the
    # rounded counts), sites with any of them hidden left out: anyone can refit it, so its
    # coefficients give back no hidden or rounded count (fitted on exact fidelity they did)
    pse = out.public.get("site_effects")
    if pse is None or len(pse) != len(se):
        out.notes.append("no published site hazard ratios: no meta-regression.")
        return
    f = met.fidelity_public
    mods = {}
    for ind in p["moderators"]:
        sel = f[(f.indicator == ind) & (f.arm == p["comparison_arm"])].set_index("site_id")
        mods[ind] = [sel.at[s, "estimate"] if s in sel.index else np.nan for s in se["site_id"]]
    keep = (pse["log_hr"].notna() & pse["se"].notna()).to_numpy() & pd.DataFrame(
        mods).notna().all(axis=1).to_numpy()
    if keep.sum() < 3:
        out.notes.append("fewer than three sites with a published hazard ratio and fidelity: "
                         "no meta-regression.")
        return
    se = pse[keep].reset_index(drop=True).astype({"log_hr": float, "se": float})
    mod = pd.DataFrame(mods)[keep].reset_index(drop=True).astype(float)
    mr = meta_regression(se["log_hr"].to_numpy(), (se["se"] ** 2).to_numpy(), mod,
                         method=p["meta_method"], test=p["meta_test"],
                         conf_level=float(p["conf_level"]))
    out.results["fidelity_meta_regression"] = mr
    tab = mr.summary.reset_index().rename(columns={"index": "term"})
    tab["tau2"], tab["qm_p"], tab["r2"] = mr.tau2, mr.qm_p, mr.r2
    out.tables["fidelity_meta_regression"] = tab
    out.public["fidelity_meta_regression"] = tab
    out.public["fidelity_by_site_outcome"] = pd.concat(
        [se[["site_id", "log_hr", "se", "hr"]].reset_index(drop=True), mod], axis=1)
    for ind in p["moderators"]:
        r = mr.summary.loc[ind]
        out.estimates.loc[len(out.estimates)] = _row(
            "fidelity", "relapse", f"change in log hazard ratio per unit of {ind}",
            f"Meta-regression of site log hazard ratios of relapse on the Open Dialogue arm's "
            f"{ind} (share 0 to 1): change in log HR from 0 to 1", r.coef, r.ci_lower, r.ci_upper,
            r.p, r.se, f"{p['meta_method']} mixed-effects meta-regression, {p['meta_test']} test;"
            f" R^2 = {mr.r2:.0f}%", None, None, len(se), mr.notes)


def ethnicity(d, p, cfg, out: Analyses) -> None:
    """Hazard ratio of relapse within each ethnicity group (site-stratified Cox), where
    both arms have more than ``suppress_max`` events."""
    clusters = _has_clusters(d)
    rows = []
    for grp, gd in d.groupby("ethnicity_group", sort=True):
        ev = gd.groupby("od")["relapse_only"].sum()
        if len(ev) < 2 or (ev <= cfg["suppress_max"]).any():
            rows.append(dict(ethnicity_group=grp, hr=np.nan, lower=np.nan, upper=np.nan,
                             note="too few events in an arm for a hazard ratio"))
            continue
        try:
            fit, _, small_note = _cox_arm(gd, p, clusters)
        except ValueError as exc:
            rows.append(dict(ethnicity_group=grp, hr=np.nan, lower=np.nan, upper=np.nan,
                             note=str(exc)))
            continue
        s = fit.summary.loc["od"]
        rows.append(dict(ethnicity_group=grp, hr=s.hr, lower=s.hr_lower, upper=s.hr_upper,
                         note=" ".join([*fit.notes, *small_note])))
    out.public["ethnicity_hr"] = out.tables["ethnicity_hr"] = pd.DataFrame(rows)


# --------------------------------------------------------------------------- stage

def compute(con: duckdb.DuckDBPyConnection, params: dict | None = None,
            progress: Progress | None = None, met: metrics.MetricsResult | None = None) -> Analyses:
    """Run the analyses named in ``analyse.run`` (``params`` is the whole params.yaml).

    ``met``: the metrics stage's result for the same warehouse and parameters, when the
    caller has it (``odeval run``); computed here otherwise.
    """
    from pipeline import runstate

    params = params or {}
    runstate.require(con, ["derive"], command="analyse")
    p = resolve_params(params.get("analyse"))
    cfg = disclosure.settings(params)
    if met is None:
        met = metrics.compute(con, params.get("metrics"), cfg)
    persons = con.execute("select * from person_outcomes order by person_id").df()
    d = prepare(persons, p)
    from pipeline.derive import definitions

    words = metrics.denominators(definitions(con))
    out = Analyses(p, pd.DataFrame(columns=list(_row("", "", "", "", 0, 0, 0))))
    steps = [("primary", lambda: primary(d, p, cfg, out)),
             ("secondary", lambda: secondary(d, p, out, words)),
             ("table_one", lambda: table_one(d, p, cfg, out)),
             ("site_meta", lambda: site_meta(d, p, cfg, out, met)),
             ("funnel", lambda: funnels(met, p, cfg, out)),
             ("fidelity_meta_regression", lambda: fidelity_meta_regression(met, p, cfg, out)),
             ("ethnicity", lambda: ethnicity(d, p, cfg, out))]
    todo = [(n, f) for n, f in steps if n in p["run"]]
    for i, (name, fn) in enumerate(todo, start=1):
        fn()
        if progress:
            progress(i, len(todo), name)
    out.metrics = met
    out.public["estimates"] = protect_estimates(out.estimates, cfg)
    out.public["not_shown"] = pd.DataFrame(out.not_shown, columns=["item", "reason"])
    return out


def protect_estimates(est: pd.DataFrame, cfg: dict[str, Any]) -> pd.DataFrame:
    pub = est.copy()
    pub["n"] = [disclosure.round_count(v, cfg) if v is not None and not pd.isna(v) else None
                for v in est["n"]]
    pub["events"] = [disclosure.round_count(v, cfg) if v is not None and not pd.isna(v) else None
                     for v in est["events"]]
    return pub.rename(columns={"n_clusters": "clusters"})


def write_results(con: duckdb.DuckDBPyConnection, res: Analyses,
                  params: dict | None = None) -> dict[str, int]:
    """Store exact and public tables in the ``results`` schema, and the analyse stage's
    build record (:mod:`pipeline.runstate`; ``params``: what it ran with), in one transaction."""
    from pipeline import runstate
    from pipeline.warehouse import transaction

    tables = {"analysis_estimates": res.estimates}
    tables.update({f"analysis_{k}": v for k, v in res.tables.items()})
    tables.update({f"analysis_{k}_public": v for k, v in res.public.items()
                   if k != "curve_counts"})
    if "curve_counts" in res.public:
        tables["analysis_curve_counts"] = res.public["curve_counts"]
    with transaction(con):
        con.execute("create schema if not exists results")
        for name in [r[0] for r in con.execute(
                "select table_name from information_schema.tables where table_schema = "
                "'results' and table_name like 'analysis_%'").fetchall()]:
            con.execute(f"drop table results.{name}")
        for name, df in tables.items():
            con.register("_frame", metrics._for_duckdb(df))
            con.execute(f"create table results.{name} as select * from _frame")
            con.unregister("_frame")
        runstate.record(con, "analyse", params if params is not None else res.params)
    return {k: len(v) for k, v in tables.items()}


def run(con: duckdb.DuckDBPyConnection, params: dict, progress: Progress | None = None,
        met: metrics.MetricsResult | None = None) -> Analyses:
    """The ``odeval analyse`` stage: compute and store in ``results`` (``met``: see :func:`compute`)."""
    res = compute(con, params, progress, met)
    write_results(con, res, {k: (params or {}).get(k) for k in ("analyse", "metrics", "disclosure")})
    return res
