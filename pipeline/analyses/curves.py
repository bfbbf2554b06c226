"""The primary time-to-event outcome's curves by arm and its other tests.

Kaplan-Meier (deaths censored) and Aalen-Johansen (death competing) curves by arm, and the
rounded counts behind every published curve. The log-rank test (stratified by site; with
clusters, the robust score test of the Cox model, Lin and Wei 1989) and, without clusters,
Gray's test of the cumulative incidence are reported as *sensitivity* analyses: the plan
names one primary test (:mod:`pipeline.analyses.trial_effects`), and a second p-value for
the same outcome is not a second chance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline import disclosure
from pipeline.analyses import AnalysisResult, with_columns
from pipeline.analyses.trial_effects import has_clusters, row
from pipeline.plan import AnalysisPlan


def primary_curves(d: pd.DataFrame, plan: AnalysisPlan, p: dict[str, Any],
                   cfg: dict[str, Any]) -> AnalysisResult:
    """Curves of the primary outcome by arm and its log-rank (and Gray) tests."""
    from pipeline.stats import aalen_johansen, cox, gray_test, kaplan_meier, logrank

    res = AnalysisResult("curves")
    op = plan.primary
    if op.kind != "time_to_event":
        return res
    o = op.outcome
    time, status = o.column("time"), o.column("event")
    dd = with_columns(d, __ev=(d[status] == 1).astype(int))
    times = [float(t) for t in p["curve_times"]]
    res.results["primary_km"] = kaplan_meier(dd, time, "__ev", group="arm",
                                             conf_level=plan.conf_level, times=times)
    res.results["primary_aj"] = aalen_johansen(dd, time, status, group="arm",
                                               conf_level=plan.conf_level)
    rc = disclosure.rounded_curve_data(with_columns(dd, arm=dd["arm"].astype(str)), time, status,
                                       cfg, "arm")
    counts = rc.groupby(["arm", time, status]).size().rename("count").reset_index()
    counts.insert(0, "outcome", o.name)
    res.public["curve_counts"] = counts.rename(columns={"arm": "group", time: "time",
                                                        status: "event"})
    strata = plan.design.strata
    if dd.groupby("od")["__ev"].sum().min() == 0 or dd["od"].nunique() < 2:
        return res
    try:
        if has_clusters(dd) and plan.method(o.name) != "model":
            fit = cox(dd, time, "__ev", ["od"], strata=strata, cluster="cluster_id",
                      ties=p["ties"], conf_level=plan.conf_level)
            rs = fit.robust_score_test
            res.results["primary_logrank"] = rs
            res.estimates.append(row(
                "sensitivity", o.name, "log-rank chi-square",
                f"Stratified log-rank test of equal {o.what} hazards, robust to clustering "
                "(score test of the Cox model with the cluster-robust variance of the score, "
                "Lin and Wei 1989): a second test of the primary outcome, not the plan's",
                rs["chisq"], np.nan, np.nan, rs["p"], method=f"{rs['df']} df, chi-square",
                n_clusters=fit.n_clusters, df=float(rs["df"])))
        else:
            lr = logrank(dd, time, "__ev", "arm", strata=strata)
            res.results["primary_logrank"] = lr
            res.estimates.append(row(
                "sensitivity", o.name, "log-rank chi-square",
                f"Stratified log-rank test of equal {o.what} hazards: a second test of the "
                "primary outcome, not the plan's", lr.chisq, np.nan, np.nan, lr.p,
                method=f"{lr.df} df", df=float(lr.df)))
            gray = gray_test(dd, time, status, "arm", cause=1, strata=strata)
            g = gray.table.iloc[0]
            res.results["primary_gray"] = gray
            res.estimates.append(row(
                "sensitivity", o.name, "Gray chi-square",
                f"Gray's test of equal cumulative incidence of {o.what} (death competing)",
                g["stat"], np.nan, np.nan, g["p"], method=f"{int(g['df'])} df",
                df=float(g["df"])))
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
        res.notes.append(f"Log-rank test not computed: {exc}")
    return res
