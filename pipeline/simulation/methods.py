"""The candidate analyses of each outcome, as the simulation study runs them.

Each method takes a person-level trial (:func:`pipeline.simulation.draw.draw_trial`'s
frame) and returns the arm effect on the analysis scale: ``coef`` (log hazard ratio, log
rate ratio, log odds ratio, or risk difference for the cluster-level binary analysis),
``lower``, ``upper`` (95%) and ``p``; ``None`` where the method does not apply to the
design (no clusters). The estimators are those of :mod:`pipeline.stats`; nothing here
computes a statistic of its own.

Outcomes and models (as the analyse stage fits them):

* ``relapse``: Cox model of time to first relapse (deaths censored), arm, one baseline
  hazard per site (Efron ties);
* ``involuntary``: negative binomial rate model of involuntary detentions, arm and site,
  offset log person-years (people with follow-up), theta estimated once per trial;
* ``rtw``: logistic model of being in work or education at 2 years, arm and site (people
  with the outcome recorded).

Methods (variance and reference distribution of the arm coefficient):

========================  ===============================================================
``model``                 model-based (inverse information), normal
``CR1``                   cluster-robust sandwich x G/(G-1), t on G-1 df
``CR2``                   bias-reduced sandwich (Bell-McCaffrey), Satterthwaite df (GLMs)
``MD``                    Mancl-DeRouen (= CR3), t on K-p df (GLMs)
``KC``                    Kauermann-Carroll, t on K-p df (GLMs)
``jackknife-cluster``     delete-one-cluster jackknife, t on G-1 df
``jackknife-site``        delete-one-site jackknife, t on S-1 df (also without clusters)
``cluster-level``         two-stage cluster-level analysis, t on C-S-1 df
``permutation``           stratified permutation test on the cluster-level summaries,
                          interval by inversion (exact up to 10,000 allocations, else
                          999 random allocations)
========================  ===============================================================
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.stats._eff_design import design_matrix
from pipeline.stats.clustered import _nb_theta, glm_clustered
from pipeline.stats.coxph import cox
from pipeline.stats.two_stage import cluster_level, permutation_test

__all__ = ["OUTCOMES", "METHODS", "SCALES", "analyse_trial"]

OUTCOMES = ("relapse", "involuntary", "rtw")
METHODS = ("model", "CR1", "CR2", "MD", "KC", "jackknife-cluster", "jackknife-site", "cluster-level",
           "permutation")
#: the scale of each (outcome, method) estimate, for the truth it is compared with
SCALES = {("rtw", "cluster-level"): "risk difference", ("rtw", "permutation"): "risk difference"}
DEFAULT_SCALE = {"relapse": "log hazard ratio", "involuntary": "log rate ratio", "rtw": "log odds ratio"}
#: how many random allocations the simulation's permutation test draws when it cannot
#: enumerate them (kept small for speed; the p-value's Monte Carlo error adds to the test's)
N_PERM = 999
MAX_EXACT = 10_000


def scale_of(outcome: str, method: str) -> str:
    return SCALES.get((outcome, method), DEFAULT_SCALE[outcome])


def _row(coef, lower, upper, p) -> dict:
    return {"coef": float(coef), "lower": float(lower), "upper": float(upper), "p": float(p)}


def _cox(d, method):
    kw = {"model": {}, "CR1": dict(cluster="cluster_id", small_sample="cr1"),
          "jackknife-cluster": dict(cluster="cluster_id", small_sample="jackknife"),
          "jackknife-site": dict(cluster="site_id", small_sample="jackknife")}[method]
    s = cox(d, "relapse_time", "relapse_only", ["od"], strata="site_id", **kw).summary.loc["od"]
    return _row(s.coef, np.log(s.hr_lower), np.log(s.hr_upper), s.p)


def _glm(d, outcome, method, theta=None):
    if outcome == "involuntary":
        kw = dict(family="negbin", offset="person_years", theta=theta)
        y = "involuntary_count"
    else:
        kw = dict(family="binomial")
        y = "rtw_2y"
    vc = {"model": dict(vcov="model"), "CR1": dict(vcov="CR1", cluster="cluster_id", df_method="K-1"),
          "CR2": dict(vcov="CR2", cluster="cluster_id"), "MD": dict(vcov="MD", cluster="cluster_id"),
          "KC": dict(vcov="KC", cluster="cluster_id"),
          "jackknife-cluster": dict(vcov="jackknife", cluster="cluster_id"),
          "jackknife-site": dict(vcov="jackknife", cluster="site_id")}[method]
    s = glm_clustered(d, y, ["od", "site_id"], **kw, **vc).summary.loc["od"]
    return _row(s.coef, s.lower, s.upper, s.p)


def _two_stage(res, method, seed):
    """The cluster-level t-test or the permutation test on its cluster summaries."""
    f = np.log if res.scale == "ratio" else (lambda x: x)
    if method == "cluster-level":
        s = res.summary.iloc[0]
        return _row(s.coef, f(s.lower), f(s.upper), s.p)
    cl = res.clusters
    s = permutation_test(cl["value"], cl["arm"], cl["stratum"], scale=res.scale, max_exact=MAX_EXACT,
                         n_perm=N_PERM, seed=seed).summary.iloc[0]
    with np.errstate(divide="ignore"):
        return _row(s.coef, f(s.lower), f(s.upper), s.p)


def analyse_trial(d: pd.DataFrame, clustered: bool, outcomes=OUTCOMES, methods=METHODS,
                  seed: int = 0) -> list[dict]:
    """Every (outcome, method) on one trial: a list of rows ``outcome, method, coef, lower,
    upper, p`` (``error`` with the message where a method failed on this trial, e.g. a
    jackknife replicate without events; the study counts those). ``seed`` seeds the
    permutation test's random allocations when it cannot enumerate them."""
    rows = []

    def run(outcome, method, f):
        try:
            r = f()
        except (ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:
            r = {"coef": np.nan, "lower": np.nan, "upper": np.nan, "p": np.nan, "error": str(exc)[:200]}
        if r is not None:
            rows.append({"outcome": outcome, "method": method, **r})

    per_cluster = {"CR1", "CR2", "MD", "KC", "jackknife-cluster", "cluster-level", "permutation"}
    for outcome in outcomes:
        if outcome == "relapse":
            dd = d
        elif outcome == "involuntary":
            dd = d[d.person_years > 0]
        else:
            dd = d[d.rtw_2y.notna()]
        theta = None
        if outcome == "involuntary":
            X = design_matrix(dd, ["od", "site_id"]).to_numpy(float)
            theta, _ = _nb_theta(dd.involuntary_count.to_numpy(float), X, np.log(dd.person_years.to_numpy(float)))
        two_stage = None  # the cluster-level fit, shared by the t-test and the permutation test
        for method in methods:
            if method in per_cluster and not clustered:
                continue
            if outcome == "relapse" and method in ("CR2", "MD", "KC"):
                continue  # bias-reduced sandwiches are defined for GLMs, not the Cox model
            if method in ("cluster-level", "permutation"):
                if two_stage is None:
                    kw = {"relapse": dict(kind="survival", duration="relapse_time", event="relapse_only"),
                          "involuntary": dict(kind="count", outcome="involuntary_count", person_time="person_years"),
                          "rtw": dict(kind="binary", outcome="rtw_2y")}[outcome]
                    memo: dict = {}

                    def two_stage(kw=kw, memo=memo, dd=dd):
                        if "fit" not in memo:
                            memo["fit"] = cluster_level(dd, cluster="cluster_id", arm="od", strata="site_id", **kw)
                        return memo["fit"]
                run(outcome, method, lambda m=method, ts=two_stage: _two_stage(ts(), m, seed))
                continue
            if outcome == "relapse":
                run(outcome, method, lambda m=method: _cox(dd, m))
            else:
                run(outcome, method, lambda m=method, o=outcome, th=theta: _glm(dd, o, m, th))
    return rows
