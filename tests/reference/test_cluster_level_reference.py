"""Cluster-level (two-stage) analysis and the stratified permutation test against R.

Golden values come from ``tests/reference/clustered/make_cluster_level_goldens.R`` (R
4.2.2, survival 3.5-3) on two cluster-randomised trials simulated there
(``cluster_trials.csv``): 7 sites with one cluster per arm ("paired", 2^7 = 128
allocations) and 4 sites with 2 clusters per arm ("stratified", 6^4 = 1,296). R computes
each person's expected events from ``coxph(..., ties = "breslow")`` martingale residuals or
``glm`` fitted values, the cluster summaries, ``lm(value ~ arm + factor(site))`` with its
t-test and interval, and the permutation test by refitting ``lm`` under every allocation;
the permutation interval's ends by bisection (60 halvings) on whether each hypothesised
effect is rejected, independently of the breakpoint computation in Python.
Deterministic values: 1e-6 relative; the bisection ends: 1e-9 absolute.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.stats.two_stage import cluster_level

HERE = Path(__file__).parent / "clustered"
GOLD = json.loads((HERE / "cluster_level_goldens.json").read_text())
DATA = pd.read_csv(HERE / "cluster_trials.csv")
CASES = [k for k, v in GOLD.items() if isinstance(v, dict)]


def _fit(case: str):
    g = GOLD[case]
    d = DATA[DATA.design == g["design"]]
    cov = g["covariates"] if isinstance(g["covariates"], list) else [g["covariates"]]
    kw = {"survival": dict(duration="time", event="status"),
          "count": dict(outcome="count", person_time="pt"),
          "binary": dict(outcome="yb")}[g["kind"]]
    return cluster_level(d, g["kind"], cluster="cluster", arm="arm", strata="site", covariates=cov,
                         scale=g["scale"], permutation=True, **kw)


@pytest.fixture(scope="module")
def fits():
    return {case: _fit(case) for case in CASES}


@pytest.mark.parametrize("case", CASES)
def test_cluster_summaries_match_r(fits, case):
    """R: expected events per person (martingale residuals / fitted values) summed per
    cluster; ``log(O / E)`` or ``(O - E) / m``."""
    g, cl = GOLD[case], fits[case].clusters
    assert list(cl["cluster"]) == g["clusters"]
    np.testing.assert_allclose(cl["observed"], g["observed"], rtol=1e-12)
    np.testing.assert_allclose(cl["expected"], g["expected"], rtol=1e-6)
    np.testing.assert_allclose(cl["value"], g["value"], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("case", CASES)
def test_two_stage_t_test_matches_lm(fits, case):
    """R: ``summary(lm(value ~ arm + factor(site)))`` arm row and ``confint``; t on
    clusters - sites - 1 df."""
    g, s = GOLD[case], fits[case].summary.iloc[0]
    assert s["df"] == g["df"]
    for k in ("coef", "se", "t", "p"):
        np.testing.assert_allclose(s[k], g[k], rtol=1e-6)
    back = np.exp if g["scale"] == "ratio" else (lambda x: x)
    np.testing.assert_allclose([s["lower"], s["upper"]], back(np.array([g["lower"], g["upper"]])), rtol=1e-6)


@pytest.mark.parametrize("case", CASES)
def test_exact_permutation_p_value_matches_enumeration(fits, case):
    """R: every within-site allocation (128 or 1,296), ``lm`` refitted for each."""
    g, perm = GOLD[case], fits[case].permutation
    assert perm.exact and perm.n_allocations == g["n_allocations"]
    np.testing.assert_allclose(perm.summary.iloc[0]["p"], g["perm_p"], rtol=1e-12)


@pytest.mark.parametrize("case", [c for c in CASES if GOLD[c]["perm_lower"] is not None])
def test_permutation_interval_matches_bisection(fits, case):
    """R: the ends of {delta: p(delta) > 0.05} found by bisection, p(delta) by refitting
    every allocation on ``value - delta * arm``."""
    g, s = GOLD[case], fits[case].permutation.summary.iloc[0]
    ends = np.array([s["lower"], s["upper"]])
    ends = np.log(ends) if g["scale"] == "ratio" else ends
    np.testing.assert_allclose(ends, [g["perm_lower"], g["perm_upper"]], rtol=0, atol=1e-9)
