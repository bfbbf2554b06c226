"""ICCs against R: the ANOVA ICC with Searle's interval (mean squares of ``lm(y ~ group +
cluster)`` by formula) and the shared gamma frailty variance of
``coxph(... + frailty(cluster))``.

Golden values come from ``tests/reference/icc/make_icc_goldens.R`` (R 4.2.2, survival
3.5-3) on lme4 ``Dyestuff`` (balanced, 6 batches), lme4 ``sleepstudy``, the simulated
cluster trials of ``tests/reference/clustered/`` (binary outcome, clusters within arm or
arm and site), survival ``rats`` (100 litters) and ``kidney`` (38 patients). For the
frailty, R's integrated log-likelihood ``history[[1]]$c.loglik`` at fixed theta
(``frailty(cluster, theta = )``), theta maximising it (``optimize`` to 1e-10 on
sqrt(theta); R's own ``frailty(cluster, eps = 1e-10)`` agrees to 1e-6, 4e-4 for the
pair-matched trial) and the
profile-likelihood interval (``uniroot`` to 1e-12). Tolerances: 1e-9 relative for
likelihoods and ANOVA quantities; theta and its interval 1e-5 relative, because each is
the argument of a maximum or a root whose R value is known to the optimiser's tolerance
(1e-10 in sqrt(theta)) on a flat function; coefficients see the test's docstring.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.stats.icc import _FrailtyModel, frailty_variance, icc_anova

HERE = Path(__file__).parent / "icc"
GOLD = json.loads((HERE / "icc_goldens.json").read_text())


def _data(g):
    d = pd.read_csv(HERE / g["data"])
    return d[d.design == g["design"]] if "design" in g else d


@pytest.mark.parametrize("case", list(GOLD["icc"]))
def test_anova_icc_and_searle_interval_match_r(case):
    """R: ``anova(lm(y ~ group + factor(cluster)))`` mean squares; ICC, n0 and Searle's
    F interval by formula in the script."""
    g = GOLD["icc"][case]
    res = icc_anova(_data(g), g["outcome"], g["cluster"], within=g["within"] or None,
                    conf_level=g.get("conf_level", 0.95))
    s = res.summary.iloc[0]
    for k in ("msb", "msw", "n0", "F"):
        np.testing.assert_allclose(s[k], g[k], rtol=1e-9)
    assert s.df_between == g["df_between"] and s.df_within == g["df_within"]
    np.testing.assert_allclose(s.icc_raw, g["icc_raw"], rtol=1e-9)
    np.testing.assert_allclose([s.lower, s.upper], np.clip([g["lower_raw"], g["upper_raw"]], 0, 1),
                               rtol=1e-9)


def test_the_binary_effects_module_uses_the_same_anova_icc():
    """``binary.risk_difference(cluster=)`` inflates by the ICC of the same ANOVA (clusters
    within arms), truncated at 0."""
    from pipeline.stats.binary import risk_difference

    g = GOLD["icc"]["paired_binary_arm"]
    d = _data(g)
    rd = risk_difference(d.assign(arm=d.arm.map({0: "c", 1: "t"})), "yb", "arm", "c", cluster="cluster")
    np.testing.assert_allclose(rd.icc, max(g["icc_raw"], 0), rtol=1e-9)


def _inputs(g):
    d = _data(g)
    X = d[g["covariates"] if isinstance(g["covariates"], list) else [g["covariates"]]].to_numpy(float)
    s = pd.factorize(d[g["strata"]], sort=True)[0] if g.get("strata") else np.zeros(len(d), np.int64)
    cl = pd.factorize(d[g["cluster"]], sort=True)[0]
    return d[g["duration"]].to_numpy(float), d[g["event"]].to_numpy(bool), X, s, cl


def _model(g, efron=True):
    return _FrailtyModel(*_inputs(g), efron)


def _dense(t, e, X, s, cl, efron=True):
    """The plain Cox model's sorted data with one indicator column per cluster: the
    frailty model written out, which _FrailtyModel never builds."""
    from pipeline.stats.coxph import _prepare

    Z = (cl[:, None] == np.arange(cl.max() + 1)).astype(float)
    return _prepare(np.column_stack([X, Z]), t, e, s, efron)


def _assert_terms_equal_the_dense_ones(m, beta, dense_sd, step_atol=1e-10):
    """_FrailtyTerms of ``m`` at ``beta`` against the Cox terms of the dense cluster columns
    (``dense_sd``): log-likelihood, score, information, and the penalised Newton step
    (through the strata's blocks when clusters are nested); ``step_atol`` relative to the
    step's largest entry."""
    from pipeline.stats.coxph import _Terms
    from pipeline.stats.icc import _FrailtyTerms

    ours, dense = _FrailtyTerms(beta, m), _Terms(beta, dense_sd)
    np.testing.assert_allclose(ours.loglik, dense.loglik, rtol=1e-12)
    np.testing.assert_allclose(ours.score, dense.score, rtol=1e-9, atol=1e-9)
    info = dense.information()
    np.testing.assert_allclose(ours.information(), info, rtol=1e-9, atol=1e-9 * np.abs(info).max())
    pen = np.exp(beta[m.p:]) / 0.7
    step = np.linalg.solve(info + np.diag(np.r_[np.zeros(m.p), pen]), dense.score)
    np.testing.assert_allclose(ours.newton_step(dense.score, pen), step, rtol=1e-8,
                               atol=step_atol * np.abs(step).max())


@pytest.mark.parametrize("efron", [True, False])
@pytest.mark.parametrize("case", list(GOLD["frailty"]))
def test_frailty_terms_equal_the_cox_terms_of_the_dense_cluster_columns(case, efron):
    """The log-likelihood, score and information of the frailty model (clusters as sums
    over their rows) are those of the Cox model with a column per cluster, at a point
    away from the estimate, with Efron's and Breslow's ties."""
    g = GOLD["frailty"][case]
    m = _model(g, efron)
    beta = np.random.default_rng(1).normal(0, 0.3, m.p + m.C)
    _assert_terms_equal_the_dense_ones(m, beta, _dense(*_inputs(g), efron))


def test_frailty_terms_with_clusters_crossing_strata_equal_the_dense_cox_terms():
    """Clusters that span strata (not nested): the same check, through the dense solve."""
    rng = np.random.default_rng(7)
    n, C = 300, 9
    t, e = rng.integers(1, 40, n).astype(float), rng.random(n) < 0.6
    X, s, cl = rng.normal(size=(n, 2)), rng.integers(0, 3, n), rng.integers(0, C, n)
    m = _FrailtyModel(t, e, X, s, cl, True)
    assert not m.nested
    beta = rng.normal(0, 0.3, 2 + C)
    _assert_terms_equal_the_dense_ones(m, beta, _dense(t, e, X, s, cl), step_atol=0.0)


@pytest.mark.parametrize("efron", [True, False])
def test_frailty_terms_with_repeated_rows_equal_the_dense_cox_terms(efron):
    """Rows alike in tie group, event status, cluster and covariates are kept once with
    their count, and a cell (group, status, cluster) holds several distinct rows when the
    covariates vary within clusters: the terms are still those of the Cox model with a
    column per cluster (strata of unequal numbers of clusters: the per-stratum solves are
    padded)."""
    rng = np.random.default_rng(11)
    n, C = 400, 8
    t, e = rng.integers(1, 12, n).astype(float), rng.random(n) < 0.5
    X, cl = rng.integers(0, 2, (n, 2)).astype(float), rng.integers(0, C, n)
    s = (cl < 3).astype(int)  # clusters nested in two strata, of 3 and 5 clusters
    m = _FrailtyModel(t, e, X, s, cl, efron)
    assert m.nested and (m.u_n > 1).any() and len(m.cell_g) < len(m.u_n) < n
    beta = rng.normal(0, 0.3, 2 + C)
    _assert_terms_equal_the_dense_ones(m, beta, _dense(t, e, X, s, cl, efron))


def test_frailty_terms_with_more_stratum_cluster_pairs_than_rows_equal_the_dense_cox_terms():
    """Few rows, many strata and clusters (the (stratum, cluster) pairs are then found by
    sorting, not by a table of every pair): the same check against the dense Cox terms."""
    rng = np.random.default_rng(13)
    n, C = 40, 20
    t, e = rng.integers(1, 10, n).astype(float), rng.random(n) < 0.5
    X, cl = rng.normal(size=(n, 1)), np.r_[np.arange(C), rng.integers(0, C, n - C)]
    s = cl % 10  # 10 strata of 2 clusters
    assert 10 * C > 4 * n
    m = _FrailtyModel(t, e, X, s, cl, True)
    beta = rng.normal(0, 0.3, 1 + C)
    _assert_terms_equal_the_dense_ones(m, beta, _dense(t, e, X, s, cl))


def test_a_theta_is_fitted_once_and_the_order_of_the_fits_does_not_matter():
    """Each fit starts from the converged fit at the nearest theta fitted before, and a
    theta asked for again returns its fit: fitting the same thetas in the opposite order
    (each from another neighbour, or from zero) gives the same integrated likelihood and
    estimates, to far within the tolerances against R."""
    g = GOLD["frailty"]["kidney"]
    thetas = [0.01, 0.1, 0.4, 2.0, 20.0]
    up, down = _model(g), _model(g)
    a = {th: up.integrated(th) for th in thetas}
    b = {th: down.integrated(th) for th in thetas[::-1]}
    for th in thetas:
        np.testing.assert_allclose(a[th][0], b[th][0], rtol=1e-13)
        np.testing.assert_allclose(a[th][1], b[th][1], rtol=0, atol=1e-7)
        again = up.integrated(th)
        assert again[0] == a[th][0] and again[1] is a[th][1]


@pytest.mark.parametrize("case", list(GOLD["frailty"]))
def test_integrated_likelihood_at_fixed_theta_matches_coxph(case):
    """R: ``coxph(Surv ~ x + frailty(cluster, theta = th))``: ``history[[1]]$c.loglik`` at
    three thetas (1e-9 relative), ``coef`` and ``frail``.

    R stops its inner Newton loop when the penalised log-likelihood changes by less than
    ``eps`` (1e-12 relative); where the arm is constant within clusters (the pair-matched
    trial) the penalised likelihood is nearly flat along arm-versus-frailties, and R's
    coefficients stop up to 6e-5 from the maximum. So the coefficients are checked to 1e-4
    absolute, and our maximum must be at least as high as R's coefficients give (to
    1e-10 relative): ours is the better maximum, not just another point near it."""
    from pipeline.stats.coxph import _Terms

    g = GOLD["frailty"][case]
    m, dense = _model(g), _dense(*_inputs(g))
    p = m.p
    for fx in g["fixed"]:
        th = fx["theta"]
        ll, beta = m.integrated(th)
        np.testing.assert_allclose(ll, fx["c_loglik"], rtol=1e-9)
        r = np.r_[fx["coef"], fx["frail"]]
        np.testing.assert_allclose(beta, r, rtol=0, atol=1e-4)
        pen = lambda b: _Terms(b, dense).loglik - np.sum(np.exp(b[p:]) - b[p:] - 1) / th  # noqa: E731
        assert pen(beta) >= pen(r) - 1e-10 * abs(pen(r))


@pytest.mark.parametrize("case", list(GOLD["frailty"]))
def test_frailty_variance_and_profile_interval_match_r(case):
    """R: theta maximising c.loglik (``optimize``), the interval where ``2 (l_max - l) <=
    qchisq(0.95, 1)`` (``uniroot``), and the plain Cox log-likelihood at theta = 0."""
    g = GOLD["frailty"][case]
    cov = g["covariates"] if isinstance(g["covariates"], list) else [g["covariates"]]
    res = frailty_variance(_data(g), g["duration"], g["event"], cov, g["cluster"], strata=g.get("strata"))
    s = res.summary.iloc[0]
    np.testing.assert_allclose(s.loglik_0, g["loglik_0"], rtol=1e-9)
    np.testing.assert_allclose(s.loglik, g["loglik"], rtol=1e-9)
    np.testing.assert_allclose([s.theta, s.upper], [g["theta"], g["upper"]], rtol=1e-5)
    np.testing.assert_allclose(s.lower, g["lower"], rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(s.tau, g["theta"] / (g["theta"] + 2), rtol=1e-5)
    # R's own search (frailty(cluster, eps = 1e-10)) stops by the relative change in
    # c.loglik, which on the nearly flat likelihood of the pair-matched trial leaves its
    # theta 4e-4 (relative) from the maximum that optimize() finds
    np.testing.assert_allclose(s.theta, g["theta_em"], rtol=1e-3)
