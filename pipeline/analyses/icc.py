"""Intracluster correlation of every outcome of the plan, with its 95% interval
(CONSORT-cluster item 17a), for the report to show beside each outcome.

* binary and count outcomes: the one-way ANOVA ICC with clusters nested in the arms (and
  in the sites when a site has several clusters per arm), with Searle's F interval
  (:func:`pipeline.stats.icc_anova`); a count is taken as it is (involuntary admissions per
  person with follow-up);
* time to event: the variance of a gamma frailty shared by a cluster's people in the
  primary Cox model (arm, site strata), as R ``coxph(... + frailty(cluster))`` estimates
  it, with a profile-likelihood interval and Kendall's tau between two people of a cluster
  (:func:`pipeline.stats.frailty_variance`).

Only for a design with clusters; an outcome whose ICC cannot be estimated gets a row with
the reason.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.analyses import AnalysisResult, with_columns
from pipeline.analyses.trial_effects import has_clusters
from pipeline.plan import AnalysisPlan


def outcome_iccs(d: pd.DataFrame, plan: AnalysisPlan) -> AnalysisResult:
    """Table ``icc`` (exact and public, the same: an ICC is not a count): one row per
    outcome: ``outcome, measure, estimate, lower, upper, kendall_tau, method, note``."""
    from pipeline.stats import frailty_variance, icc_anova

    res = AnalysisResult("icc")
    if not plan.design.clustered or not has_clusters(d):
        return res
    strata = plan.design.strata
    several = strata and (d.groupby([strata, "arm"], observed=True)["cluster_id"].nunique()
                          > 1).any()
    within = ["arm", strata] if several else ["arm"]
    rows = []
    for op in plan.outcomes:
        o = op.outcome
        r = dict(outcome=op.name, measure="", estimate=np.nan, lower=np.nan, upper=np.nan,
                 kendall_tau=np.nan, method="", note="")
        try:
            if op.kind == "time_to_event":
                dd = with_columns(d, __ev=(d[o.column("event")] == 1).astype(int))
                f = frailty_variance(dd, o.column("time"), "__ev", ["od"], "cluster_id",
                                     strata=strata, conf_level=plan.conf_level)
                s = f.summary.iloc[0]
                res.results[f"icc_{op.name}"] = f
                r.update(measure="frailty variance", estimate=s.theta, lower=s.lower,
                         upper=s.upper, kendall_tau=s.tau, method=f.method,
                         note=" ".join(f.notes))
            else:
                col = o.column("count" if op.kind == "count" else "outcome")
                # the columns the ICC reads, not a copy of the whole frame per outcome
                used = list(dict.fromkeys([col, "cluster_id", *within]
                                          + ([o.column("exposure")] if op.kind == "count" else [])))
                dd = d.loc[d[col].notna(), used]
                if op.kind == "count":
                    dd = dd[dd[o.column("exposure")] > 0]
                dd = dd.assign(**{col: dd[col].astype(float), "arm": dd["arm"].astype(str)})
                ic = icc_anova(dd, col, "cluster_id", within=within,
                               conf_level=plan.conf_level)
                s = ic.summary.iloc[0]
                res.results[f"icc_{op.name}"] = ic
                r.update(measure="ICC", estimate=s.icc, lower=s.lower, upper=s.upper,
                         method=ic.method, note=" ".join(ic.notes))
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            r.update(measure="ICC" if op.kind != "time_to_event" else "frailty variance",
                     method="not estimated", note=f"Not estimated: {exc}")
        rows.append(r)
    tab = pd.DataFrame(rows)
    res.tables["icc"] = tab
    res.public["icc"] = tab
    return res
