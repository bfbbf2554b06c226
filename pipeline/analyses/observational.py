"""Observational comparison: propensity-score weighting with its diagnostics, weighted
outcome analyses beside the unadjusted ones, and E-values.

For a plan whose ``design.type`` is ``observational`` (arms not allocated at random: an
Open Dialogue team's people against usual care elsewhere in the trust, or before and
after), the analyse stage runs this family as the primary analysis:

1. a logistic propensity model of the arm on the plan's baseline covariates with site
   (``design.weighting``: estimand, splines, interactions, trimming), its weights, and the
   diagnostics an evaluator checks first: standardised differences before and after
   weighting (love plot), the overlap of the scores (figure), effective sample sizes, the
   share of each arm's weight its largest weights carry, and flags where balance or
   overlap fail;
2. every outcome of the plan by the weighted estimator (marginal hazard ratio and
   Aalen-Johansen risks by the curve times for relapse, rate ratio for involuntary
   admissions, risk difference and ratio for the binary outcomes, by weighting or the
   doubly robust augmented estimator), intervals carrying the estimation of the weights
   (:mod:`pipeline.stats.weighting`); the same estimator with every weight 1 beside it
   (the unadjusted comparison);
3. E-values of every weighted ratio and its confidence limit (VanderWeele & Ding 2017).

Wording: the weighted estimates are associations adjusted for the measured
covariates; they estimate the effect of Open Dialogue only if there is no unmeasured
confounding, every kind of person could have been in either arm (positivity) and the
propensity model is right. The estimands, notes and the report say so.

Public tables go through :mod:`pipeline.output_policy`: standardised differences before
weighting are computed from the published (rounded) counts, means and SDs, as Table 1's;
after weighting to two decimals; no individual value (a weight, a score's minimum or
maximum) is published: the largest weights as the share of the arm's weight they carry
(at least ``suppress_max + 1`` people), the overlap as a histogram of cumulative counts
rounded to the curve step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline import disclosure, output_policy

HIST_BINS = 20
TOP_WEIGHTS = 10
HORIZONS = (365.0, 730.0)  # relapse risks compared by day 365 and 730 (metrics.horizons_days)
CAUTION = ("An association adjusted for the measured covariates, not a randomised "
           "comparison: it estimates the effect of Open Dialogue only if no unmeasured "
           "characteristic drives both the arm and the outcome, every kind of person could "
           "have been in either arm, and the propensity model is right.")


# --------------------------------------------------------------------------- public tables

def public_balance(res, d: pd.DataFrame, cov: pd.DataFrame, treated: np.ndarray,
                   cfg: dict[str, Any]) -> pd.DataFrame:
    """The balance table for people: SMDs before weighting from published counts (each
    arm's count of every level, protected with its arm total) or published means and SDs;
    after weighting to two decimals; variance ratios to two decimals."""
    tab = res.balance.table
    arms = {"treated": treated, "control": ~treated}
    n_arm = {a: int(m.sum()) for a, m in arms.items()}
    n_pub = {a: output_policy.count(n, cfg) for a, n in n_arm.items()}
    rows = []
    for var, tv in tab.groupby("variable", sort=False):
        if (tv["level"] != "").any():
            # every level of a categorical covariate: counts per arm, levels add up to the arm
            vals, cons = {}, []
            levels = list(tv["level"])
            x = cov[var].astype(str).to_numpy()
            for a, m in arms.items():
                for lv in levels:
                    vals[(a, lv)] = int(np.sum(x[m] == lv))
                vals[(a, "(all)")] = n_arm[a]
                cons.append(((a, "(all)"), [(a, lv) for lv in levels]))
            hidden = disclosure.secondary_suppress(vals, cons, disclosure.primary(vals, cfg))
            for lv, (_, r) in zip(levels, tv.iterrows()):
                p = {}
                for a in arms:
                    c = None if (a, lv) in hidden else output_policy.count(vals[(a, lv)], cfg)
                    p[a] = None if c is None or not n_pub[a] else c / n_pub[a]
                if p["treated"] is None or p["control"] is None:
                    smd_b = None
                else:
                    v1, v0 = p["treated"] * (1 - p["treated"]), p["control"] * (1 - p["control"])
                    sd = np.sqrt(v1) if res.estimand == "ATT" else np.sqrt((v1 + v0) / 2)
                    diff = p["treated"] - p["control"]
                    smd_b = 0.0 if diff == 0 else (diff / sd if sd > 0 else None)
                rows.append(_bal_row(r, smd_b, None))
        else:
            r = tv.iloc[0]
            x = cov[var].to_numpy(float)
            whole = bool(np.all(x == np.round(x)))
            m_ = {a: output_policy.mean(x[m].mean(), n_pub[a], cfg, whole) for a, m in arms.items()}
            s_ = {a: output_policy.mean(x[m].std(ddof=1), n_pub[a], cfg, whole) for a, m in arms.items()}
            if None in m_.values() or None in s_.values():
                smd_b = vr_b = None
            else:
                sd = (s_["treated"] if res.estimand == "ATT"
                      else np.sqrt((s_["treated"] ** 2 + s_["control"] ** 2) / 2))
                diff = m_["treated"] - m_["control"]
                smd_b = 0.0 if diff == 0 else (diff / sd if sd > 0 else None)
                vr_b = s_["treated"] ** 2 / s_["control"] ** 2 if s_["control"] else None
            rows.append(_bal_row(r, smd_b, vr_b))
    return pd.DataFrame(rows)


def _r2(v):
    return None if v is None or (isinstance(v, float) and not np.isfinite(v)) else round(float(v), 2)


def _bal_row(r, smd_before, vr_before) -> dict:
    return dict(term=output_policy.text(r["term"]), variable=r["variable"], level=r["level"],
                type=r["type"], smd_before=_r2(smd_before), smd_after=_r2(r["smd_after"]),
                vr_before=_r2(vr_before), vr_after=_r2(r["vr_after"]), flag=r["flag"])


def public_weights(res, cfg: dict[str, Any]) -> pd.DataFrame:
    """Per arm: people (rounded), Kish effective sample size (rounded like a count), the
    share of the arm's weight carried by its ``TOP_WEIGHTS`` largest weights and by its
    largest 1% (when that is more than ``suppress_max`` people)."""
    a = res.treated.to_numpy()
    w = res.weights.to_numpy()
    rows = []
    for arm, m in (("treated", a), ("control", ~a)):
        ww = np.sort(w[m])[::-1]
        k1 = int(np.floor(0.01 * len(ww)))
        top = max(TOP_WEIGHTS, cfg["suppress_max"] + 1)
        rows.append(dict(
            arm=arm, n=output_policy.count(int(m.sum()), cfg),
            ess=output_policy.count(int(round((ww.sum() ** 2) / np.sum(ww**2))), cfg),
            top_weights=top, share_top_weights=round(100 * ww[:top].sum() / ww.sum(), 1)
            if len(ww) > top else None,
            share_top_1pct=round(100 * ww[:k1].sum() / ww.sum(), 1)
            if k1 > cfg["suppress_max"] else None))
    return pd.DataFrame(rows)


def public_histogram(res, cfg: dict[str, Any]) -> pd.DataFrame:
    """The score histogram per arm (all people before any trimming), counts from
    :func:`pipeline.output_policy.histogram`."""
    from pipeline.stats.figures_weighting import score_histogram

    h = score_histogram(res.ps_all, res.treated_all, bins=HIST_BINS)
    out = []
    for arm, g in h.groupby("arm", sort=False):
        out.append(g.assign(count=output_policy.histogram(g["count"].tolist(), cfg)))
    return pd.concat(out, ignore_index=True)


def public_flags(res, cfg: dict[str, Any]) -> list[str]:
    """The flags in words for people: counts rounded, no score minimum or maximum."""
    flags = [f for f in res.flags if f.startswith(("balance", "weights"))]
    ov = res.overlap
    n_out = output_policy.count(ov["treated_outside"] + ov["control_outside"], cfg)
    raw_out = ov["treated_outside"] + ov["control_outside"]
    if raw_out:
        flags.append("overlap: " + (f"about {n_out}" if n_out else "a few") + " people have a "
                     "propensity score outside the range of the other arm's")
    if ov["extreme_scores"] and res.estimand != "ATO":
        n_ext = output_policy.count(ov["extreme_scores"], cfg)
        flags.append("overlap: " + (f"about {n_ext}" if n_ext else "a few") + " people have a "
                     "score below 0.05 or above 0.95, where inverse probability weights become "
                     "extreme")
    # ESS in the words of the public table (rounded)
    out = []
    for f in flags:
        if f.startswith("weights:"):
            arm = "treated" if "treated" in f else "control"
            r = res.ess[res.ess["arm"] == arm].iloc[0]
            f = (f"weights: the effective sample size of the {arm} arm is about "
                 f"{output_policy.count(int(round(r['ess'])), cfg)}, under half its "
                 f"{output_policy.count(int(r['n']), cfg)} people")
        out.append(output_policy.text(f))
    return out


# --------------------------------------------------------------------------- analysis

def run_weighting(d: pd.DataFrame, plan, cfg: dict[str, Any], cluster: str | None = None,
                  curve_times: tuple[float, ...] = HORIZONS) -> dict[str, Any]:
    """The propensity model, its diagnostics and the weighted and unadjusted estimates of
    every outcome of ``plan`` (:class:`pipeline.plan.AnalysisPlan`; its
    ``design.weighting``, strata, covariates and arms).

    ``d``: the person frame (analyse's ``prepare``: ``arm``, ``od``, the outcome columns
    of :data:`pipeline.plan.OUTCOMES`). An outcome that cannot be estimated (no event in
    an arm, a ratio of 0 or infinity, a model that fails) gets "not estimated" rows with
    the reason; a propensity model that cannot be fitted raises
    :class:`~pipeline.stats._result.NotEstimable` (the caller reports every outcome as not
    estimated). Returns ``{"ps", "rows", "tables", "public", "results", "notes"}``.
    """
    from pipeline.analyses.trial_effects import _NOT_ESTIMABLE, _why_not, not_estimated
    from pipeline.plan import WEIGHTING_WORDS
    from pipeline.stats import (evalue, propensity_weights, weighted_cox, weighted_curves,
                                weighted_rate_ratio, weighted_risk)
    from pipeline.stats._result import NotEstimable

    wplan, strata = plan.weighting, plan.design.strata
    covs = plan.weighting_covariates
    dd = d.assign(arm=d["arm"].astype(str))
    try:
        ps = propensity_weights(dd, "arm", list(covs), treated_level=plan.comparison_arm,
                                strata=strata, estimand=wplan.estimand,
                                splines=list(wplan.splines),
                                interactions=list(wplan.interactions), trim=wplan.trim)
    except _NOT_ESTIMABLE as exc:
        raise NotEstimable(f"the propensity model could not be fitted ({exc})") from None
    unit = ps.unweighted()
    kept = dd.loc[ps.weights.index]
    a = ps.treated.to_numpy()
    labels = (plan.comparison_arm, plan.reference_arm)
    results: dict[str, Any] = {"propensity": ps}
    rows, evs = [], []
    who = WEIGHTING_WORDS[wplan.estimand]
    method_ps = wplan.describe(covs, strata)

    def estimand(words, measure, which):
        return (f"Marginal {measure} of {words}, {plan.contrast}, in {who}: "
                + ("weighted for the measured covariates. " + CAUTION if which == "weighted"
                   else "NOT adjusted for the measured covariates. Confounded: shown for "
                        "comparison."))

    def not_est(name, words, measures, reason, n=None):
        for measure in measures:
            for which in ("weighted", "unadjusted"):
                rows.append({**not_estimated(f"observational_{which}", name, measure,
                                             estimand(words, measure, which), reason, n=n),
                             "n_clusters": None})

    def add(name, words, measure, kind, w_res, u_res, row_measure, n, events, log_ratio):
        got = {which: res_.summary.set_index("measure").loc[row_measure]
               for which, res_ in (("weighted", w_res), ("unadjusted", u_res))}
        if not all(np.isfinite([float(r[k]) for r in got.values()
                                for k in ("estimate", "lower", "upper")])):
            not_est(name, words, [measure], "the estimate or its interval is not finite (an "
                    "arm in which no one, or everyone, has the outcome)", n)
            return
        if not all(float(r["se"]) > 0 for r in got.values()):
            not_est(name, words, [measure], "its variance is 0 (too few events or people "
                    "followed up for an interval)", n)
            return
        for which, res_ in (("weighted", w_res), ("unadjusted", u_res)):
            r = got[which]
            rows.append(dict(
                analysis=f"observational_{which}", outcome=name, measure=measure,
                estimand=estimand(words, measure, which),
                estimate=float(r["estimate"]), lower=float(r["lower"]), upper=float(r["upper"]),
                p=float(r["p"]) if "p" in r and pd.notna(r.get("p")) else np.nan,
                se=float(r["se"]),
                method=(f"{res_.method}; {method_ps}" if which == "weighted" else
                        "the same estimator with every weight 1 (robust variance)"),
                n=n, events=events, n_clusters=None,
                notes=_public_notes(getattr(res_, "notes", []) or [], cfg)))
        if log_ratio:
            r = got["weighted"]
            rare = kind == "time_to_event" and events is not None and n and events / n < 0.15
            mname = {"hazard ratio": "HR", "rate ratio": "rate ratio",
                     "risk ratio": "RR"}[measure.split(" by ")[0]]
            ev = evalue(r["estimate"], r["lower"], r["upper"], measure=mname, rare=bool(rare))
            evs.append(dict(outcome=name, measure=measure, estimate=r["estimate"],
                            lower=r["lower"], upper=r["upper"],
                            evalue_estimate=ev.evalue_estimate, evalue_ci=ev.evalue_ci,
                            note=" ".join(ev.notes)))

    for op in plan.outcomes:
        o, name, kind = op.outcome, op.name, op.kind
        words = o.what + (" (deaths censored)" if kind == "time_to_event" else "")
        measures = list(o.measures)
        if kind == "time_to_event":
            measures += [f"{m} by day {int(t)}" for t in curve_times
                         for m in ("risk difference", "risk ratio")]
        why = _why_not(kept, op, plan)
        if why:
            not_est(name, words, measures, why, len(kept))
            continue
        try:
            if kind == "time_to_event":
                sub = kept.assign(_ev=(kept[o.column("event")] == 1).astype(int))
                time = o.column("time")
                w_cox = weighted_cox(sub, ps, time, "_ev", cluster=cluster)
                u_cox = weighted_cox(sub, unit, time, "_ev", cluster=cluster)
                results[f"{name}_weighted_cox"] = w_cox
                ev_n = int(sub["_ev"].sum())
                add(name, words, "hazard ratio", kind, w_cox, u_cox, "hazard ratio",
                    len(sub), ev_n, True)
                w_aj = weighted_curves(sub, ps, time, o.column("event"), cause=1,
                                       times=curve_times, cluster=cluster, labels=labels)
                u_aj = weighted_curves(sub, unit, time, o.column("event"), cause=1,
                                       times=curve_times, cluster=cluster, labels=labels)
                results[f"{name}_weighted_aj"] = w_aj
                for t in curve_times:
                    for meas in ("risk difference", "risk ratio"):
                        wr = _curve_effect(w_aj, t, meas, w_cox.method)
                        ur = _curve_effect(u_aj, t, meas, "")
                        at = f"{meas} by day {int(t)}"
                        if wr is None or ur is None:
                            not_est(name, words, [at], f"no one followed up to day {int(t)} "
                                    "in an arm", len(sub))
                            continue
                        add(name, o.what + f" by day {int(t)} (death competing)", at, kind,
                            wr, ur, meas, len(sub), ev_n, meas == "risk ratio")
            elif kind == "count":
                count, exposure = o.column("count"), o.column("exposure")
                w_rr = weighted_rate_ratio(kept, ps, count, exposure, cluster=cluster)
                u_rr = weighted_rate_ratio(kept, unit, count, exposure, cluster=cluster)
                results[f"{name}_weighted_rate_ratio"] = w_rr
                add(name, words, "rate ratio", kind, w_rr, u_rr, "rate ratio", len(kept),
                    int(kept[count].sum()), True)
            else:
                sub = kept.assign(_y=kept[o.column("outcome")].astype(float))
                method = "aipw" if wplan.augmented else "ipw"
                w_b = weighted_risk(sub, ps, "_y", method=method, cluster=cluster,
                                    outcome_covariates=list(covs), missing_words=o.missing)
                u_b = weighted_risk(sub, unit, "_y", cluster=cluster, missing_words=o.missing)
                results[f"{name}_weighted_risk"] = w_b
                have = sub["_y"].notna()
                for meas in ("risk difference", "risk ratio"):
                    add(name, words, meas, kind, w_b, u_b, meas, int(have.sum()),
                        int(sub.loc[have, "_y"].sum()), meas == "risk ratio")
        except _NOT_ESTIMABLE as exc:
            done = {r["measure"] for r in rows if r["outcome"] == name}
            not_est(name, words, [m for m in measures if m not in done], str(exc), len(kept))

    cov, _names = _covariate_frame(kept, covs, strata)
    tables = {"weighting_balance": ps.balance.table, "weighting_ess": ps.ess,
              "weighting_largest": ps.largest,
              "weighting_model": ps.coef.reset_index()}
    public = {"weighting_balance": public_balance(ps, kept, cov, a, cfg),
              "weighting_weights": public_weights(ps, cfg),
              "weighting_histogram": public_histogram(ps, cfg),
              "weighting_flags": pd.DataFrame({"flag": public_flags(ps, cfg)}, dtype=object),
              "weighting_evalues": _public_evalues(_evalue_frame(evs), cfg)}
    tables["weighting_evalues"] = _evalue_frame(evs)
    return {"ps": ps, "rows": rows, "tables": tables, "public": public, "results": results,
            "notes": list(ps.notes)}


def _public_notes(notes: list[str], cfg: dict[str, Any]) -> str:
    """An estimator's notes for a published row, counts of people rounded as every other
    count is ("about N", or "a few" where the count would be suppressed)."""
    import re

    def c(v: str) -> str:
        n = int(v)
        r = output_policy.count(n, cfg)
        return "0" if n == 0 else f"about {r}" if r else "a few"

    return " ".join(re.sub(r"\b(\d+)(?: of (\d+))? people\b",
                           lambda m: c(m[1]) + (f" of {c(m[2])}" if m[2] else "") + " people", n)
                    for n in notes)


def _covariate_frame(kept, covs, strata):
    from pipeline.stats.propensity import _prepare_covariates

    notes: list[str] = []
    cov, names = _prepare_covariates(kept, covs, "indicator", notes)
    if strata:
        cov[strata] = kept[strata].astype(str)
        names.append(strata)
    return cov, names


EVALUE_COLUMNS = ["outcome", "measure", "estimate", "lower", "upper", "evalue_estimate",
                  "evalue_ci", "note"]


def _evalue_frame(evs: list[dict]) -> pd.DataFrame:
    """The E-values' table, with its columns when no estimate has one (a table without
    columns cannot be stored: a five-site study of three people a site stopped there)."""
    return pd.DataFrame(evs, columns=EVALUE_COLUMNS)


def _public_evalues(ev: pd.DataFrame, cfg) -> pd.DataFrame:
    if ev.empty:
        return ev
    d = int(cfg.get("effect_digits", 3))
    out = ev.copy()
    for c in ("estimate", "lower", "upper", "evalue_estimate", "evalue_ci"):
        out[c] = [output_policy.significant(float(v), d) for v in ev[c]]
    return out


class _Row:
    """A one-row effect for :func:`run_weighting`'s ``add`` from a curve comparison."""

    def __init__(self, frame, method):
        self.summary = frame
        self.method = method
        self.notes = []


def _curve_effect(res, t: float, measure: str, method: str):
    at = res.at
    sel = at[(at["time"] == t) & (at["measure"] == measure)]
    if sel.empty:
        return None
    r = sel.iloc[0]
    from scipy import stats as st

    log = measure == "risk ratio"
    z = np.log(r["estimate"]) / r["se"] if log else r["estimate"] / r["se"]
    frame = pd.DataFrame([dict(measure=measure, estimate=r["estimate"], lower=r["lower"],
                               upper=r["upper"], se=r["se"], se_known=r["se_known"], z=z,
                               p=2 * st.norm.sf(abs(z)))])
    return _Row(frame, f"weighted Aalen-Johansen (death competing); {method}".strip("; "))


# --------------------------------------------------------------------------- family

def weighting(d: pd.DataFrame, plan, p: dict[str, Any], cfg: dict[str, Any]):
    """The observational family (``analyse.run`` name ``weighting``): nothing for a
    randomised design; otherwise :func:`run_weighting` on the plan's outcomes, its weighted
    estimates of each outcome's measures (as the outcome regression reports them) as that
    outcome's ``primary`` or ``secondary`` rows (the relapse risks by day 365 and 730
    ``observational_weighted``), the unadjusted ones as ``observational_unadjusted``, and
    the secondary outcomes tested in the plan's order on the weighted p-values.

    Sites (strata) with people in one arm only are left out first: no one there could
    have been in the other arm (positivity fails by design), and a site fixed effect
    would give them scores of 0 or 1. A propensity model that cannot be fitted leaves
    every outcome "not estimated" with the reason, in the rows and the public flags."""
    from pipeline.analyses import AnalysisResult
    from pipeline.analyses.multiplicity import test_in_order
    from pipeline.analyses.trial_effects import has_clusters, not_estimated
    from pipeline.stats._result import NotEstimable

    res = AnalysisResult("observational")
    if plan.design.randomised:
        return res
    cfg = output_policy.settings(cfg)
    cluster = "cluster_id" if plan.design.clustered and has_clusters(d) else None
    strata, flags = plan.design.strata, []
    if strata:
        both = d.groupby(strata, observed=True)["od"].nunique() == 2
        one = sorted(map(str, both.index[~both]))
        if one:
            n = output_policy.count(int(d[strata].astype(str).isin(one).sum()), cfg)
            flags.append(f"positivity: {len(one)} site(s) with people in one arm only "
                         f"({', '.join(one)}; {f'about {n}' if n else 'a few'} people) left "
                         "out of the weighted comparison: no one there could have been in "
                         "the other arm. The estimates are of the sites with both arms.")
            d = d[~d[strata].astype(str).isin(one)]
    role = {plan.primary.name: "primary", **{op.name: "secondary" for op in plan.secondary}}
    try:
        if strata and d.empty:
            raise NotEstimable("no site has people in both arms; a comparison across sites "
                               "declares design.strata: null")
        out = run_weighting(d, plan, cfg, cluster=cluster)
    except NotEstimable as exc:
        why = str(exc)
        for op in plan.outcomes:
            for m in op.outcome.measures:
                for analysis in (role[op.name], "observational_unadjusted"):
                    res.estimates.append({**not_estimated(analysis, op.name, m, CAUTION, why),
                                          "n_clusters": None})
        res.public["weighting_flags"] = pd.DataFrame(
            {"flag": [*flags, f"weighting not done: {why}"]}, dtype=object)
        res.notes.append(f"Weighting not done: {why}")
    else:
        measures = {op.name: op.outcome.measures for op in plan.outcomes}
        for r in out["rows"]:
            if r["analysis"] == "observational_weighted" and \
                    r["measure"] in measures.get(r["outcome"], ()):
                r["analysis"] = role[r["outcome"]]
        res.estimates = out["rows"]
        res.results.update(out["results"])
        res.tables.update(out["tables"])
        res.public.update(out["public"])
        res.public["weighting_flags"] = pd.DataFrame(
            {"flag": [*flags, *out["public"]["weighting_flags"]["flag"]]}, dtype=object)
        res.notes += out["notes"]
    for r in res.estimates:
        r.setdefault("df", np.nan)
    mt = test_in_order(res.estimates, plan)
    if mt is not None:
        res.tables["multiplicity"] = res.public["multiplicity"] = mt
    return res


UNADJUSTED = ("Not adjusted for confounding: in this observational design the arms differ "
              "in who they serve (the weighted comparison is the primary analysis). ")


ADJUSTED_ONLY = ("Adjusted for the measured covariates by outcome regression, not weighted: "
                 "in this observational design the arms differ in who they serve, so this is "
                 "an association after that adjustment (the weighted comparison is the primary "
                 "analysis). ")


def unadjusted(res, plan):
    """For an observational design, the estimands of a family that is not the weighted
    comparison say what they are: not adjusted for confounding when they compare the arms
    as they are (the primary outcome's log-rank and Gray tests, the subgroup models, the
    site comparison, the RMST), or adjusted by outcome regression only when the estimand
    names the plan's covariates (``, adjusted for ...``: return to work's imputation, the
    Fine-Gray and admissions-only models)."""
    if not plan.design.randomised:
        for r in res.estimates:
            e = str(r.get("estimand", ""))
            if not e.startswith((UNADJUSTED, ADJUSTED_ONLY)):
                r["estimand"] = (ADJUSTED_ONLY if ", adjusted for " in e else UNADJUSTED) + e
    return res


def as_sensitivity(effects, plan):
    """For an observational design, the plan's outcome-regression estimates (covariate
    adjusted, conditional on site) become a sensitivity analysis beside the weighted
    primary ones, and its unadjusted rows are dropped (the weighting family has its own;
    its multiplicity table tests the weighted p-values)."""
    if plan.design.randomised:
        return effects
    keep = []
    for r in effects.estimates:
        if r["analysis"] == "sensitivity":
            continue
        if r["analysis"] in ("primary", "secondary"):
            r = {**r, "analysis": "outcome_regression",
                 "notes": ("Sensitivity analysis: outcome regression adjusted for the plan's "
                           "covariates (conditional on them), beside the weighted primary "
                           "analysis. " + (r.get("notes") or "")).strip()}
        keep.append(r)
    effects.estimates = keep
    return effects
