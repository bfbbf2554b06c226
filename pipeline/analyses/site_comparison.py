"""Site comparison: how the sites' effects differ, and where they stand.

* Per-site hazard ratios of relapse: one Cox model per site (Open Dialogue against usual
  care, deaths censored). The variance respects the clusters within a site where it can:
  with at least two clusters per arm in the site, the cluster-robust sandwich with the
  G/(G-1) correction (t on G-1 df); with one cluster per arm (the pair-matched design) no
  between-cluster variance is estimable within the site, and the model-based variance is
  used and stated: it takes the two clusters as two groups of independent people, so the
  site's interval is too narrow by the design effect, and the heterogeneity between sites
  (tau^2) absorbs the cluster variance.
* Random-effects meta-analysis of the site log hazard ratios (``analyse.meta_method``,
  ``meta_test``) with the prediction interval on t(k - 2) (Higgins, Thompson and
  Spiegelhalter 2009) and the Q-profile interval of tau^2 (Viechtbauer 2007), both as
  metafor computes them.
* Funnel plots of the Open Dialogue arm per site, and the meta-regression of the site log
  hazard ratios on the Open Dialogue arm's fidelity.

Published site values go through :mod:`pipeline.output_policy`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline import disclosure, metrics, output_policy
from pipeline.analyses import AnalysisResult
from pipeline.analyses.trial_effects import not_estimated, row
from pipeline.stats._result import NotEstimable


def site_effects(d: pd.DataFrame, p: dict[str, Any], cfg: dict[str, Any], out: AnalysisResult) -> pd.DataFrame:
    """Site-specific hazard ratios of relapse (one Cox model per site; the variance as the
    module docstring says, named in ``variance``); sites without one are listed with why in
    ``out.site_notes``."""
    from pipeline.stats import cox

    rows, left_out = [], {}
    used = [c for c in ("site_id", "od", "relapse_time", "relapse_only", "cluster_id") if c in d]
    for site, sd in d[used].groupby("site_id", sort=True):   # each site's rows of these alone
        ev = sd.groupby("od")["relapse_only"].sum()
        if len(ev) < 2:
            left_out.setdefault("people in one arm only", []).append(site)
            continue
        if (ev == 0).any() or (ev == sd.groupby("od").size()).any():
            left_out.setdefault("an arm without relapses (or without people free of "
                                "relapse)", []).append(site)
            continue
        several = "cluster_id" in sd and sd["cluster_id"].notna().all() and (
            sd.groupby("od")["cluster_id"].nunique() >= 2).all()
        try:
            fit = cox(sd, "relapse_time", "relapse_only", ["od"], ties=p["ties"],
                      conf_level=float(p["conf_level"]),
                      **(dict(cluster="cluster_id", small_sample="cr1") if several else {}))
        except NotEstimable as exc:
            left_out.setdefault(str(exc), []).append(site)
            continue
        s = fit.summary.loc["od"]
        n_arm = sd.groupby("od").size()
        rows.append(dict(site_id=site, log_hr=s.coef, se=s.se, hr=s.hr, lower=s.hr_lower,
                         upper=s.hr_upper, n=len(sd), events=int(sd["relapse_only"].sum()),
                         variance=(f"cluster-robust CR1, t on {fit.n_clusters - 1} df"
                                   if several else "model-based (one cluster per arm)"
                                   if "cluster_id" in sd and sd["cluster_id"].notna().all()
                                   else "model-based (people independent)"),
                         cells=[int(n_arm.get(1, 0)), int(n_arm.get(0, 0)), int(ev.get(1, 0)),
                                int(ev.get(0, 0))]))
    out.site_notes = [f"{len(sites)} site{'s' if len(sites) > 1 else ''} without a hazard ratio, "
                      f"left out of the meta-analysis ({why}): {', '.join(sites)}."
                      for why, sites in left_out.items()]
    out.notes += out.site_notes
    return pd.DataFrame(rows, columns=["site_id", "log_hr", "se", "hr", "lower", "upper", "n",
                                       "events", "variance", "cells"])


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


def site_meta(d, p, cfg, met: metrics.MetricsResult | None = None) -> AnalysisResult:
    """Per-site hazard ratios and their random-effects meta-analysis."""
    from pipeline.stats import meta_analysis

    out = AnalysisResult("site_comparison")
    se = site_effects(d, p, cfg, out)
    out.public["site_effects"] = public_site_effects(se, met, cfg)
    se = se.drop(columns="cells", errors="ignore")
    out.tables["site_effects"] = se
    estimand = ("Mean of the distribution of site-specific hazard ratios of relapse (random "
                "effects); the prediction interval is where a new site's hazard ratio is "
                "expected to lie")
    if len(se) < 2:
        out.estimates.append(not_estimated("site_comparison", "relapse", "pooled hazard ratio", estimand,
                       f"{len(se)} site{'' if len(se) == 1 else 's'} with a hazard ratio; a "
                       "meta-analysis needs two or more. " + " ".join(out.site_notes)))
        return out
    ma = meta_analysis(se["log_hr"], se["se"] ** 2, method=p["meta_method"], test=p["meta_test"],
                       conf_level=float(p["conf_level"]), labels=list(se["site_id"]),
                       prediction="higgins")
    out.results["site_meta"] = ma
    pi = (f"prediction interval on t({ma.k - 2}) {np.exp(ma.pi[0]):.2f} to "
          f"{np.exp(ma.pi[1]):.2f}" if np.isfinite(ma.pi[0]) else "no prediction interval "
          "(fewer than 3 sites)")
    out.estimates.append(row(
        "site_comparison", "relapse", "pooled hazard ratio", estimand,
        np.exp(ma.estimate), np.exp(ma.ci[0]), np.exp(ma.ci[1]), ma.p, ma.se,
        f"{p['meta_method']} tau^2, {p['meta_test']} test; tau^2 = {ma.tau2:.3g} "
        f"(Q-profile 95% CI {ma.tau2_ci[0]:.3g} to {ma.tau2_ci[1]:.3g}), I^2 = {ma.i2:.0f}%; "
        f"{pi}; site variances: {'; '.join(sorted(set(se['variance'])))}", None, None, ma.k,
        [*ma.notes, *out.site_notes], df=float(ma.k - 1) if p["meta_test"] == "knha" else np.inf))
    out.tables["site_meta"] = pd.DataFrame([dict(
        estimate=np.exp(ma.estimate), lower=np.exp(ma.ci[0]), upper=np.exp(ma.ci[1]),
        pi_lower=np.exp(ma.pi[0]), pi_upper=np.exp(ma.pi[1]), pi_df=ma.pi_df, tau2=ma.tau2,
        tau2_lower=ma.tau2_ci[0], tau2_upper=ma.tau2_ci[1], i2=ma.i2, i2_lower=ma.i2_ci[0],
        i2_upper=ma.i2_ci[1], q=ma.q, q_p=ma.q_p, k=ma.k)])
    out.public["site_meta"] = out.tables["site_meta"]
    return out


#: Which way is better, per funnel measure (Open Dialogue arm): fidelity indicators are
#: standards to meet (higher is better); of the outcomes, fewer relapses, involuntary
#: admissions and antipsychotic prescriptions (Open Dialogue aims to use them less) and
#: more people in work or education are better.
HIGHER_IS_BETTER = {
    "p1_within_24h": True, "p1_hours_to_first_meeting": False,
    "p2_share_network_present": True, "p3_share_home_or_choice": True,
    "p4_first_contact_at_first_meeting": True, "p5_share_two_clinical": True,
    "p5_core_team_continuity": True, "p5_peer_worker_present": True,
    "p7_share_person_present": True, "discharge_by_network": True,
    "relapse": False, "involuntary_admission": False, "antipsychotic": False,
    "antipsychotic_last_days": False, "return_to_work": True,
}

#: Binary outcomes drawn as binomial funnels: (outcome, metric, funnel name, direction key).
_BINARY_OUTCOMES = (("involuntary_admission", "any", "any_involuntary_admission",
                     "involuntary_admission"),
                    ("antipsychotic", "any", "any_antipsychotic", "antipsychotic"),
                    ("antipsychotic", "last_days", "antipsychotic_last_days",
                     "antipsychotic_last_days"),
                    ("return_to_work", "at_2y", "in_work_at_2y", "return_to_work"))

#: Readers' names of the outcome funnels (fidelity funnels take the indicator's label).
OUTCOME_FUNNEL_LABELS = {
    "relapse_by_day_365": "Relapse by day 365 (Aalen-Johansen)",
    "any_involuntary_admission": "Any involuntary admission",
    "any_antipsychotic": "Any antipsychotic",
    "antipsychotic_last_days": "Antipsychotic in the last days",
    "in_work_at_2y": "In work or education at 2 years",
}

FUNNEL_COLUMNS = ["indicator", "title", "kind", "higher_is_better", "site_id", "events", "n",
                  "value", "se", "denominator", "flag", "assessment", "target", "limits_used",
                  "phi", "tau2", "phi_p"]


def assessment(flag: str, higher_is_better: bool) -> str:
    """A funnel flag in words for the measure's direction: ``better`` or ``worse`` (outside
    the inner limits), ``within``, or the flag itself (``suppressed``)."""
    if flag in ("within", "suppressed", "") or not isinstance(flag, str):
        return flag
    high = flag.startswith("high")
    return "better" if high == bool(higher_is_better) else "worse"


def funnel_of(rows: pd.DataFrame, limits, overdispersion, dispersion=None):
    """The funnel of one measure's published rows (``kind`` binomial: ``events``/``n``;
    time_to_event: proportion ``value`` with ``se``; mean: ``value`` with ``se``), around
    the published ``target``. Everything comes from published values, so anyone can redraw
    it and its flags give back nothing the tables hide."""
    from pipeline.stats import funnel, funnel_estimates

    kind = rows["kind"].iloc[0]
    target = rows["target"].iloc[0]
    target = None if target is None or pd.isna(target) else float(target)
    args = dict(overdispersion=overdispersion, limits=tuple(limits), labels=list(rows["site_id"]),
                target=target, dispersion=dispersion)
    if kind == "binomial":
        return funnel(rows["events"].astype(float), rows["n"].astype(float), kind="proportion",
                      **args)
    if kind == "mean":  # a mean of shares: limits cut at 0 and 1
        return funnel_estimates(rows["value"].astype(float), rows["se"].astype(float),
                                kind="mean", bounds=(0.0, 1.0), **args)
    return funnel_estimates(rows["value"].astype(float), rows["se"].astype(float),
                            kind="proportion", **args)


def funnels(met: metrics.MetricsResult, p, cfg) -> AnalysisResult:
    """Funnel plots of the Open Dialogue arm per site, one per measure: every fidelity
    indicator with a per-referral value (binary indicators as binomial proportions, shares
    as means against their precision), every binary outcome, and relapse by the landmark
    day from the Aalen-Johansen estimator (death competing) with its variance, plotted
    against its effective number of people (:func:`pipeline.stats.funnel_estimates`).

    Every number comes from the public metrics tables (rounded counts; curve points
    re-estimated from the rounded curves; the standard error of an Aalen-Johansen point
    from its published log-scale lower limit), and so do the target (the overall value of
    those published numbers), the overdispersion and the flags: anyone can recompute them,
    so they give back no hidden or rounded count. A site hidden there is not drawn here
    (``flag`` ``suppressed``); a measure that cannot be drawn is listed in
    ``out.not_shown`` with why."""
    from scipy import stats as sps

    from pipeline.metrics import FIDELITY_LABELS

    out = AnalysisResult("site_comparison")
    comp = p["comparison_arm"]
    conf = float(met.params.get("conf_level", 0.95))
    z = sps.norm.ppf(0.5 + conf / 2)
    specs = []  # (name, title, kind, higher_is_better, public rows, why not drawn or None)
    f_pub = met.fidelity_public
    f_pub = f_pub[(f_pub.arm == comp) & (f_pub.site_id != "all")]
    f_all = met.fidelity_public
    f_all = f_all[(f_all.arm == comp) & (f_all.site_id == "all")].set_index("indicator")
    for ind, (_, label) in FIDELITY_LABELS.items():
        g = f_pub[f_pub.indicator == ind]
        title = f"{label} (Open Dialogue arm)"
        if g.empty:
            continue
        kind = g["kind"].iloc[0]
        hib = HIGHER_IS_BETTER.get(ind, True)
        if kind == "binary":
            rows = g[["site_id", "events", "n"]].assign(value=np.nan, se=np.nan)
            specs.append((ind, title, "binomial", hib, rows, None))
        elif kind == "share":
            # the mean share's standard error from its published t interval
            # (mean +/- t(n-1) sd / sqrt(n), clipped to [0, 1]: the half-width on the side
            # that was not clipped)
            rows = g[["site_id", "n", "estimate", "lower", "upper"]].copy()
            nn = rows["n"].astype(float)
            tq = sps.t.ppf(0.5 + conf / 2, np.maximum(nn - 1, 1))
            half = np.where(rows["upper"].astype(float) < 1,
                            rows["upper"].astype(float) - rows["estimate"].astype(float),
                            rows["estimate"].astype(float) - rows["lower"].astype(float))
            rows = rows.assign(events=np.nan, value=rows["estimate"].astype(float),
                               se=half / tq)[["site_id", "events", "n", "value", "se"]]
            tgt = f_all.at[ind, "estimate"] if ind in f_all.index else np.nan
            specs.append((ind, title, "mean", hib, rows.assign(target=tgt), None))
        elif kind == "not_measurable":
            specs.append((ind, title, "none", hib, None, "not measurable from service "
                          "records (needs observation or a fidelity scale)."))
        else:
            specs.append((ind, title, "none", hib, None, "a median of hours per referral, "
                          "which has no standard error here; principle 1 is drawn as the "
                          "percent of first meetings within 24 hours."))
    o_pub = met.outcomes_public
    o_site = o_pub[(o_pub.dimension == "site") & (o_pub.arm == comp)]
    landmark = int(met.params.get("landmark_days", 365))
    sel = o_site[(o_site.outcome == "relapse") & (o_site.metric == f"aj_{landmark}d")]
    title = f"Relapse by day {landmark}, Aalen-Johansen (Open Dialogue arm)"
    if sel.empty:
        specs.append((f"relapse_by_day_{landmark}", title, "none", False, None,
                      f"day {landmark} is not one of the metrics' horizons (metrics."
                      "horizons_days), so no Aalen-Johansen estimate per site exists."))
    else:
        allr = sel[sel.level == "all"]
        g = sel[sel.level != "all"]
        est, lo = g["estimate"].astype(float), g["lower"].astype(float)
        # the published interval is exp(log p -/+ z se / p): se = p (log p - log lower) / z
        with np.errstate(divide="ignore", invalid="ignore"):
            se = est * (np.log(est) - np.log(lo)) / z
        rows = pd.DataFrame(dict(site_id=g["level"].to_numpy(), events=np.nan,
                                 n=g["n"].to_numpy(), value=est.to_numpy(), se=se.to_numpy(),
                                 target=(float(allr["estimate"].iloc[0]) if len(allr)
                                         and pd.notna(allr["estimate"].iloc[0]) else np.nan)))
        specs.append((f"relapse_by_day_{landmark}", title, "time_to_event", False, rows, None))
    for outcome, metric, name, key in _BINARY_OUTCOMES:
        g = o_site[(o_site.outcome == outcome) & (o_site.metric == metric) & (o_site.level != "all")]
        if g.empty:
            continue
        rows = g.rename(columns={"level": "site_id"})[["site_id", "events", "n"]].assign(
            value=np.nan, se=np.nan)
        specs.append((name, f"{g['label'].iloc[0]} (Open Dialogue arm)", "binomial",
                      HIGHER_IS_BETTER[key], rows, None))

    out_rows = []
    for name, title, kind, hib, rows, why in specs:
        if why is not None:
            out.not_shown.append(dict(item=f"funnel_{name}", reason=why))
            continue
        rows = rows.sort_values("site_id").reset_index(drop=True)
        shown = (rows["n"].notna() & (rows["events"].notna() if kind == "binomial"
                                      else rows["value"].notna() & rows["se"].notna()))
        if kind == "binomial":
            shown &= rows["n"].astype(float).fillna(0) > 0
            ev, nn = (rows.loc[shown, c].astype(float) for c in ("events", "n"))
            tgt = float(ev.sum() / nn.sum()) if shown.any() and nn.sum() > 0 else np.nan
            rows["target"] = tgt
        pubrows = rows[shown].assign(kind=kind)
        if shown.sum() < 2:
            k_all = len(rows)
            out.not_shown.append(dict(item=f"funnel_{name}", reason=(
                f"{int(shown.sum())} of {k_all} site{'' if k_all == 1 else 's'} with values "
                "that can be shown (small counts are suppressed); a funnel plot needs two or "
                "more")))
            continue
        try:
            if kind == "binomial" and not 0 < rows["target"].iloc[0] < 1:
                raise NotEstimable("the overall percent of the published counts is "
                                   f"{100 * rows['target'].iloc[0]:g}% (no site shows "
                                   "an event, or every site only events): control limits "
                                   "around it are not defined")
            fr = funnel_of(pubrows, p["funnel_limits"], p["funnel_overdispersion"])
        except NotEstimable as exc:
            out.not_shown.append(dict(item=f"funnel_{name}", reason=str(exc)))
            continue
        out.results[f"funnel_{name}"] = fr
        flags = dict(zip(fr.table["label"], fr.table["flag"]))
        dens = dict(zip(fr.table["label"], fr.table["denominator"]))
        for _, r in rows.iterrows():  # noqa: B007 (the index is used)
            fl = flags.get(r.site_id, "not drawn" if shown[_] else "suppressed")
            value = (r.events / r.n if kind == "binomial" and r.site_id in flags else
                     r.value if r.site_id in flags else np.nan)
            out_rows.append(dict(
                indicator=name, title=title, kind=kind, higher_is_better=bool(hib),
                site_id=r.site_id,
                events=int(r.events) if kind == "binomial" and r.site_id in flags else None,
                n=int(r.n) if pd.notna(r.n) else None, value=value,
                se=r.se if kind != "binomial" and r.site_id in flags else np.nan,
                denominator=dens.get(r.site_id, np.nan), flag=fl,
                assessment=assessment(fl, hib), target=fr.target,
                limits_used=fr.limits_used, phi=fr.phi, tau2=fr.tau2, phi_p=fr.phi_p))
    out.public["funnel"] = pd.DataFrame(out_rows, columns=FUNNEL_COLUMNS)
    return out


def fidelity_meta_regression(met: metrics.MetricsResult, p, cfg,
                             sites: AnalysisResult) -> AnalysisResult:
    """Site log hazard ratios (from :func:`site_meta`'s result ``sites``) against the Open
    Dialogue arm's fidelity."""
    from pipeline.stats import meta_regression

    out = AnalysisResult("site_comparison")
    se = sites.tables.get("site_effects")
    if se is None or len(se) < 3:
        for ind in p["moderators"]:
            out.estimates.append(not_estimated("fidelity", "relapse",
                           f"change in log hazard ratio per unit of {ind}",
                           f"Meta-regression of site log hazard ratios of relapse on the Open "
                           f"Dialogue arm's {ind}", "fewer than three sites with a hazard "
                           f"ratio ({0 if se is None else len(se)}); a meta-regression needs "
                           "three or more."))
        return out
    # fitted on the published values (site log HRs and ses as shown, moderators from the
    # rounded counts), sites with any of them hidden left out: anyone can refit it, so its
    # coefficients give back no hidden or rounded count (fitted on exact fidelity they did)
    pse = sites.public.get("site_effects")
    if pse is None or len(pse) != len(se):
        out.notes.append("no published site hazard ratios: no meta-regression.")
        return out
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
        return out
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
        out.estimates.append(row(
            "fidelity", "relapse", f"change in log hazard ratio per unit of {ind}",
            f"Meta-regression of site log hazard ratios of relapse on the Open Dialogue arm's "
            f"{ind} (share 0 to 1): change in log HR from 0 to 1", r.coef, r.ci_lower, r.ci_upper,
            r.p, r.se, f"{p['meta_method']} mixed-effects meta-regression, {p['meta_test']} test;"
            f" R^2 = {mr.r2:.0f}%", None, None, len(se), mr.notes))
    return out
