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
    for site, sd in d.groupby("site_id", sort=True):
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
                                   if several else "model-based (one cluster per arm)"),
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


def funnels(met: metrics.MetricsResult, p, cfg) -> AnalysisResult:
    """Funnel plots of the Open Dialogue arm per site: first meeting within 24 h, relapse by
    the landmark day. Counts come from the public metrics tables, so a cell hidden there is
    hidden here."""
    from pipeline.stats import funnel

    out = AnalysisResult("site_comparison")
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
            out.not_shown.append(dict(item=f"funnel_{name}", reason=str(exc)))
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
