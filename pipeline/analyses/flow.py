"""CONSORT-cluster flow: clusters and people per arm, from allocation to each analysis, and
recruitment per cluster with an imbalance flag.

CONSORT 2010 extension to cluster randomised trials (Campbell et al. BMJ 2012;345:e5661),
items 13a-b and figure: the numbers of clusters and of people randomised (allocated),
receiving the intervention, lost to follow-up and analysed, per arm. In a cluster trial
people are usually recruited *after* their cluster was randomised, by staff who know the
arm, so recruitment that differs between arms is a warning of identification or
recruitment bias (Eldridge et al., Clin Trials 2008;5:1-10; Hahn et al., BMJ 2005;330:
1175): the flow shows recruitment per cluster and flags a site whose arms recruited at rates
more than :data:`IMBALANCE_RATIO` apart (per 1,000 registered people where the clusters
table gives list sizes, else per cluster), with a cluster-level test of the arms'
recruitment rates.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from pipeline import disclosure
from pipeline.analyses import AnalysisResult
from pipeline.plan import ARM_WORDS, AnalysisPlan

#: A site's arms recruiting at rates more than this factor apart are flagged.
IMBALANCE_RATIO = 2.0

#: People stages of the flow, in order, with their words.
PEOPLE_STAGES = {
    "with_records": "People with records (recruited)",
    "died": "Died during follow-up",
    "ended_early": "Follow-up ended early (transfer out, withdrawal or end of the extract)",
    "completed": "Completed follow-up",
}


def _analysed(d: pd.DataFrame, plan: AnalysisPlan) -> dict[str, pd.Series]:
    """Per outcome of the plan: who is in its analysis (True/False per person)."""
    out = {}
    for op in plan.outcomes:
        o = op.outcome
        if o.kind == "time_to_event":
            out[o.name] = d[o.column("time")].notna() & d[o.column("event")].notna()
        elif o.kind == "count":
            out[o.name] = d[o.column("count")].notna() & (d[o.column("exposure")] > 0)
        elif op.name == "return_to_work" and "window_reached" in d:
            # the imputation's population, as its tested rows (missing statuses imputed)
            from pipeline.analyses.return_to_work import in_population

            out[o.name] = in_population(d, plan.rtw_deaths)
        else:
            out[o.name] = d[o.column("outcome")].notna()
    return out


def consort_flow(d: pd.DataFrame, clusters: pd.DataFrame | None, plan: AnalysisPlan,
                 cfg: dict[str, Any]) -> AnalysisResult:
    """The flow table (exact and public) and recruitment per cluster.

    Parameters
    ----------
    d : the prepared person frame (``arm``, ``site_id``, ``cluster_id``, ``end_reason``,
        the outcome columns).
    clusters : ``derived.clusters`` (None or empty without clusters).
    plan : the checked analysis plan.
    cfg : disclosure settings.

    Returns
    -------
    AnalysisResult with tables ``flow`` (one row per stage, unit and arm: ``stage, unit,
    label, arm, n``) and ``recruitment`` (one row per cluster), their public copies (people
    counts rounded or suppressed, with secondary suppression within each arm's flow; cluster
    counts as they are, in ``clusters``) and ``recruitment_sites`` (per site: rates and the imbalance flag).
    """
    res = AnalysisResult("flow")
    arms = [plan.comparison_arm, plan.reference_arm]
    arm = d["arm"].astype(str)
    rows = []
    clustered = plan.design.clustered and "cluster_id" in d and d["cluster_id"].notna().any()
    if clustered:
        cl = clusters if clusters is not None and len(clusters) else (
            d.groupby("cluster_id", as_index=False).agg(site_id=("site_id", "first"),
                                                        arm=("arm", "first"))
            .assign(listed=False, n_people=d.groupby("cluster_id").size().to_numpy()))
        cl = cl.assign(arm=cl["arm"].astype(str))
        n_people = d.groupby("cluster_id").size()
        with_people = cl["cluster_id"].map(n_people).fillna(0) > 0
        for a in arms:
            m = cl["arm"] == a
            rows += [
                dict(stage="allocated", unit="clusters", label="Clusters randomised"
                     if plan.design.randomised else "Clusters", arm=a, n=int(m.sum())),
                dict(stage="with_people", unit="clusters", label="Clusters with people "
                     "recruited", arm=a, n=int((m & with_people).sum())),
                dict(stage="without_people", unit="clusters", label="Clusters without anyone "
                     "recruited", arm=a, n=int((m & ~with_people).sum())),
            ]
    ended = d["end_reason"].astype(str) if "end_reason" in d else pd.Series("", index=d.index)
    analysed = _analysed(d, plan)
    for a in arms:
        m = arm == a
        people = dict(with_records=int(m.sum()), died=int((m & (ended == "death")).sum()),
                      ended_early=int((m & (ended == "data_end")).sum()),
                      completed=int((m & (ended == "end_of_follow_up")).sum()))
        rows += [dict(stage=k, unit="people", label=PEOPLE_STAGES[k], arm=a, n=v)
                 for k, v in people.items()]
        for op in plan.outcomes:
            rtw = op.name == "return_to_work" and "window_reached" in d
            rows.append(dict(stage=f"analysed:{op.name}", unit="people",
                             label=f"Analysed for {op.outcome.what}" + (
                                 " (records reaching its window; missing statuses imputed)"
                                 if rtw else ""), arm=a,
                             n=int((m & analysed[op.name]).sum())))
    flow = pd.DataFrame(rows)
    res.tables["flow"] = flow
    res.public["flow"] = _protect_flow(flow, plan, cfg)
    if clustered:
        rec, sites = recruitment(d, cl, plan)
        res.tables["recruitment"] = rec
        res.public["recruitment"] = pub = _protect_recruitment(rec, cfg)
        res.tables["recruitment_sites"] = sites
        # published rates come from the published (rounded) counts: exact rates times the
        # published list sizes would give the exact counts back; the flag is the exact one
        res.public["recruitment_sites"] = _site_rates(
            pub.rename(columns={"n": "people"}), plan).assign(imbalanced=sites["imbalanced"])
        flagged = sites[sites["imbalanced"]]
        if len(flagged):
            res.notes.append(
                f"Recruitment differs between the arms by more than {IMBALANCE_RATIO:g}-fold "
                f"at {len(flagged)} site(s) ({', '.join(map(str, flagged['site_id']))}): people "
                "were recruited after their cluster was randomised, so recruitment bias is "
                "possible; the adjusted analysis and Table 1 are the check.")
        # from the published counts too: the exact ones, to six digits, gave every
        # cluster's count back, the hidden ones with them (an attacker's search)
        test = recruitment_test(rec.assign(people=pd.to_numeric(pub["n"]).to_numpy()), plan)
        if test is not None:
            res.estimates.append(test)
    return res


def _protect_flow(flow: pd.DataFrame, plan: AnalysisPlan, cfg: dict[str, Any]) -> pd.DataFrame:
    """People counts rounded or suppressed; within an arm ``with_records = died +
    ended_early + completed``, and an analysed count whose complement (people not analysed)
    is small is hidden; cluster counts are not counts of people and stay as they are."""
    pub = flow.drop(columns="n").copy()
    ppl = flow[flow["unit"] == "people"]
    vals = {(r.arm, r.stage): int(r.n) for r in ppl.itertuples()}
    totals = {(r.arm, r.stage): vals[(r.arm, "with_records")] for r in ppl.itertuples()
              if r.stage.startswith("analysed:")}
    hidden = disclosure.primary(vals, cfg, totals)
    cons = [((a, "with_records"), [(a, "died"), (a, "ended_early"), (a, "completed")])
            for a in dict.fromkeys(ppl["arm"])]
    # an outcome analysed among the people followed for the whole window counts the same
    # people as 'completed' (or another part): the same number under another name, so the
    # two are hidden together (an attacker read 'completed' there and narrowed 'died')
    cons += [((a, part), [(a, st)]) for (a, st), n in vals.items() if st.startswith("analysed:")
             for part in ("died", "ended_early", "completed") if vals.get((a, part)) == n]
    hidden = disclosure.secondary_suppress(vals, cons, hidden)
    # people in ``n`` (checked as counts by check-outputs); clusters, not people, apart
    pub["n"] = [None if r.unit == "clusters" or (r.arm, r.stage) in hidden
                else disclosure.round_count(r.n, cfg) for r in flow.itertuples()]
    pub["clusters"] = [r.n if r.unit == "clusters" else None for r in flow.itertuples()]
    pub["suppressed"] = [r.unit == "people" and (r.arm, r.stage) in hidden
                         for r in flow.itertuples()]
    pub["arm_label"] = pub["arm"].map(lambda a: ARM_WORDS.get(a, a))
    return pub


def recruitment(d: pd.DataFrame, cl: pd.DataFrame, plan: AnalysisPlan
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """People recruited per cluster (exact), and per site the arms' recruitment rates with
    the imbalance flag.

    Rates are people per 1,000 on the clusters' lists where every cluster of the site has a
    list size, else people per cluster. A site is flagged when one arm's rate is more than
    :data:`IMBALANCE_RATIO` times the other's (or one arm recruited no one)."""
    n_people = d.groupby("cluster_id").size()
    rec = cl[["cluster_id", "site_id", "arm"]].copy()
    rec["people"] = rec["cluster_id"].map(n_people).fillna(0).astype(int)
    rec["list_size"] = cl["list_size"] if "list_size" in cl else np.nan
    rec = rec.sort_values(["site_id", "arm", "cluster_id"]).reset_index(drop=True)
    rec["cluster"] = rec.groupby(["site_id", "arm"]).cumcount() + 1
    return rec, _site_rates(rec, plan)


def _site_rates(rec: pd.DataFrame, plan: AnalysisPlan) -> pd.DataFrame:
    """Per site, each arm's recruitment rate, their ratio and the flag (a hidden count
    leaves the site's rates unknown)."""
    site_rows = []
    for site, g in rec.groupby("site_id", sort=True):
        by_list = g["list_size"].notna().all() and (g["list_size"] > 0).all()
        rate = {}
        for a in (plan.comparison_arm, plan.reference_arm):
            ga = g[g["arm"] == a]
            denom = ga["list_size"].sum() / 1000 if by_list else len(ga)
            known = ga["people"].notna().all()
            rate[a] = ga["people"].sum() / denom if denom and known else np.nan
        rc, rr = rate[plan.comparison_arm], rate[plan.reference_arm]
        # a hidden count leaves a rate unknown (NaN, which is truthy): no ratio then
        ratio = (np.nan if not (np.isfinite(rc) and np.isfinite(rr)) else rc / rr if rr > 0
                 else np.inf if rc else np.nan)
        imbalanced = bool(np.isfinite(rc) and np.isfinite(rr) and (
            ratio > IMBALANCE_RATIO or ratio < 1 / IMBALANCE_RATIO or not np.isfinite(ratio)))
        site_rows.append(dict(site_id=site, per="1,000 registered" if by_list else "cluster",
                              rate_comparison=rc, rate_reference=rr, ratio=ratio,
                              imbalanced=imbalanced))
    return pd.DataFrame(site_rows)


def recruitment_test(rec: pd.DataFrame, plan: AnalysisPlan) -> dict | None:
    """A cluster-level test that the arms recruit at the same rate: the log of people per
    1,000 registered (per cluster without list sizes; 0.5 added to every count), compared
    between arms by a t-test paired within sites when the clusters are pair-matched, else
    Welch's. An estimates row (``analysis = flow``), or None with fewer than 2 clusters an
    arm. The counts are the published ones (rounded; a hidden cluster, NaN, is left out
    with its pair when pair-matched, and the notes say how many)."""
    per_1000 = rec["list_size"].notna().all() and (rec["list_size"] > 0).all()
    hidden = int(rec["people"].isna().sum())
    g = rec.assign(rate=np.log((rec["people"].astype(float) + 0.5) /
                               ((rec["list_size"] / 1000) if per_1000 else 1.0)))
    g = g[g["rate"].notna()]
    c, r = plan.comparison_arm, plan.reference_arm
    xc, xr = g[g["arm"] == c], g[g["arm"] == r]
    if len(xc) < 2 or len(xr) < 2:
        return None
    if plan.shape == "pair_matched":
        m = xc.set_index("site_id")["rate"].sub(xr.set_index("site_id")["rate"]).dropna()
        if len(m) < 2 or m.std() == 0:
            return None
        t = stats.ttest_1samp(m, 0.0)
        est, df, how = float(m.mean()), len(m) - 1, "paired within sites"
        used = 2 * len(m)
    else:
        t = stats.ttest_ind(xc["rate"], xr["rate"], equal_var=False)
        est, df, how = float(xc["rate"].mean() - xr["rate"].mean()), float(t.df), "Welch"
        used = len(xc) + len(xr)
    q = stats.t.ppf(1 - (1 - plan.conf_level) / 2, df)
    se = est / t.statistic if t.statistic else np.nan
    per = "per 1,000 registered" if per_1000 else "per cluster"
    notes = ("From the published people per cluster (rounded); "
             + (f"{len(rec) - used} cluster(s) left out, {hidden} of them with the count "
                "hidden." if used < len(rec) else "every cluster in."))
    return dict(analysis="flow", outcome="recruitment", measure="recruitment rate ratio",
                estimand=f"Ratio of the arms' geometric mean recruitment {per}, "
                         f"{plan.contrast} (clusters)",
                estimate=float(np.exp(est)), lower=float(np.exp(est - q * se)),
                upper=float(np.exp(est + q * se)), p=float(t.pvalue), se=float(se),
                method=f"t-test on log recruitment rates, {how}, {df:.3g} df", n=None,
                events=None, n_clusters=int(used), notes=notes, df=float(df))


def _protect_recruitment(rec: pd.DataFrame, cfg: dict[str, Any]) -> pd.DataFrame:
    """People per cluster rounded or suppressed, with secondary suppression so that no hidden
    cluster count follows from its site and arm's total (published in the metrics); clusters
    are numbered within site and arm, never named (a practice code could identify it)."""
    vals = {(r.site_id, r.arm, r.cluster): int(r.people) for r in rec.itertuples()}
    totals = rec.groupby(["site_id", "arm"])["people"].sum()
    for (s, a), n in totals.items():
        vals[(s, a, 0)] = int(n)
    hidden = disclosure.primary(vals, cfg)
    cons = [((s, a, 0), [(s, a, k) for k in rec[(rec.site_id == s) & (rec.arm == a)]["cluster"]])
            for s, a in totals.index]
    # hide another cluster rather than the site and arm's total, which the metrics publish
    hidden = disclosure.secondary_suppress(vals, cons, hidden,
                                           priority=lambda c: 1 if c[2] == 0 else 0)
    pub = rec.drop(columns=["cluster_id", "people"]).copy()
    pub["n"] = [None if (r.site_id, r.arm, r.cluster) in hidden
                else disclosure.round_count(r.people, cfg) for r in rec.itertuples()]
    ls = rec["list_size"]
    pub["per_1000"] = [None if p is None or not (isinstance(x, int | float) and x > 0)
                       else round(1000 * p / x, 1) for p, x in zip(pub["n"], ls)]
    return pub
