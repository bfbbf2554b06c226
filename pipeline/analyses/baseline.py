"""Cluster-level Table 1: the randomised clusters by arm (CONSORT-cluster item 15).

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

from pipeline import disclosure
from pipeline.analyses import AnalysisResult
from pipeline.plan import AnalysisPlan, cluster_covariate_frame

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
