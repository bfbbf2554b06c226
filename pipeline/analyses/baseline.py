"""Table 1: the people by arm, and the randomised clusters by arm (CONSORT-cluster item 15).

One row per characteristic and arm: the number of clusters, people recruited per cluster,
and each cluster-level covariate of the plan and of the clusters table (list size,
deprivation decile, any other column): mean (SD) for numbers, counts of clusters per level
for text, with the standardised difference between the arms (clusters as the unit).
People per cluster are counts of people: they are shown as the mean from the arm's rounded
total, never per cluster, and only when that total is shown.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline import disclosure, output_policy
from pipeline.analyses import AnalysisResult, with_columns
from pipeline.plan import AnalysisPlan, cluster_covariate_frame
from pipeline.stats._result import NotEstimable

_NOT_COVARIATES = {"cluster_id", "site_id", "arm", "listed", "n_people", "randomised_on"}


def cluster_table_one(d: pd.DataFrame, clusters: pd.DataFrame | None, plan: AnalysisPlan,
                      cfg: dict[str, Any]) -> AnalysisResult:
    """Table 1 of the clusters (empty result without clusters): exact and public tables
    ``cluster_table_one`` with columns ``variable, level, kind, arm, value, smd``."""
    res = AnalysisResult("baseline")
    if clusters is None or not len(clusters) or not plan.design.clustered:
        return res
    cl = cluster_covariate_frame(clusters).assign(arm=lambda x: x["arm"].astype(str))
    arms = [plan.comparison_arm, plan.reference_arm]
    n_people = d.groupby("cluster_id").size()
    cl["people"] = cl["cluster_id"].map(n_people).fillna(0).astype(int)
    rows, pub = [], []
    for a in arms:
        m = cl["arm"] == a
        rows.append(dict(variable="clusters", level="", kind="n", arm=a,
                         value=float(m.sum()), smd=np.nan))
        pub.append(rows[-1].copy())
        total = int(cl.loc[m, "people"].sum())
        rows.append(dict(variable="people per cluster", level="", kind="mean", arm=a,
                         value=total / m.sum() if m.sum() else np.nan, smd=np.nan))
        shown = disclosure.round_count(total, cfg)
        pub.append(dict(rows[-1], value=round(shown / m.sum(), 1)
                        if shown is not None and m.sum() else None))
    covs = list(dict.fromkeys([*plan.cluster_covariates,
                               *(c for c in cl if c not in _NOT_COVARIATES and c != "people")]))
    for c in covs:
        x = cl[c]
        if x.isna().all():
            continue
        if pd.api.types.is_numeric_dtype(x):
            means = [x[cl["arm"] == a].mean() for a in arms]
            sds = [x[cl["arm"] == a].std(ddof=1) for a in arms]
            pooled = np.sqrt((sds[0] ** 2 + sds[1] ** 2) / 2)
            smd = abs(means[0] - means[1]) / pooled if pooled and np.isfinite(pooled) else np.nan
            for a, mu, sd in zip(arms, means, sds):
                r = dict(variable=c, level="", kind="mean (SD)", arm=a, value=mu, sd=sd,
                         smd=smd)
                rows.append(r)
                pub.append(r.copy())
        else:
            levels = sorted(x.dropna().astype(str).unique())
            for lv in levels:
                for a in arms:
                    n = int((x[cl["arm"] == a].astype(str) == lv).sum())
                    r = dict(variable=c, level=lv, kind="clusters", arm=a, value=float(n),
                             smd=np.nan)
                    rows.append(r)
                    pub.append(r.copy())
    res.tables["cluster_table_one"] = pd.DataFrame(rows)
    res.public["cluster_table_one"] = pd.DataFrame(pub)
    return res


def table_one(d: pd.DataFrame, p: dict[str, Any], cfg: dict[str, Any]) -> AnalysisResult:
    """Table 1 of the people by arm (``analyse.table_one`` variables), exact and protected."""
    from pipeline.stats import table_one as t1

    out = AnalysisResult("baseline")
    variables = list(p["table_one"])
    dd = with_columns(d, arm=d["arm"].astype(str))
    num = [v for v in variables if pd.api.types.is_numeric_dtype(dd[v])]
    try:
        res = t1(dd, "arm", variables, categorical=[v for v in variables if v not in num],
                 nonnormal=[v for v in p["nonnormal"] if v in variables])
    except NotEstimable as exc:
        out.not_shown.append(dict(item="table_one", reason=f"Table 1 compares the arms: {exc}"))
        return out
    out.results["table_one"] = res
    out.tables["table_one"] = res.table
    out.public["table_one"] = protect_table_one(res, dd, cfg, list(p["nonnormal"]))
    return out


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
