"""The subgroup interaction test (:func:`pipeline.analyses.subgroups.interaction_test`).

With a few-cluster variance on eta df, the Wald statistic's covariance is estimated, not
known. Under the model the Hotelling T^2 correction assumes (b ~ N(0, S), the estimated
covariance eta V ~ Wishart(eta, S), independent) its type I error is exactly the nominal
level; W/q on F(q, eta), used before, is not. 20,000 draws per cell: Monte Carlo SE of a
5 % rate 0.15 percentage points, so the band 5 % +- 2.576 SE is 4.6-5.4 %; the old test's
rates on these cells (about 8-20 %) are far outside it. The end-to-end check on drawn
trials (Cox fits, site jackknife) is tests/unit/test_subgroup_size_slow.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from pipeline.analyses.subgroups import interaction_test

REPS = 20_000


def _null_rate(q: int, eta: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(q, q))
    sigma = a @ a.T + q * np.eye(q)          # an arbitrary covariance, not the identity
    chol = np.linalg.cholesky(sigma)
    rejected = 0
    for _ in range(REPS):
        b = chol @ rng.normal(size=q)
        z = chol @ rng.normal(size=(q, eta))
        v = z @ z.T / eta                     # Wishart(eta, sigma) / eta
        rejected += interaction_test(b, v, eta, 0.95)[4] < 0.05
    return rejected / REPS


@pytest.mark.parametrize("q,eta", [(2, 6), (3, 6), (2, 10)])
def test_hotelling_interaction_test_holds_its_level_when_the_covariance_has_few_df(q, eta):
    se = math.sqrt(0.05 * 0.95 / REPS)
    rate = _null_rate(q, eta, seed=100 * q + eta)
    assert abs(rate - 0.05) <= 2.576 * se, rate


def test_one_interaction_is_the_t_test_and_too_many_terms_get_no_test():
    b, v = np.array([0.8]), np.array([[0.16]])
    w, test, df1, df2, p, crit = interaction_test(b, v, 6, 0.95)
    assert w == pytest.approx(4.0) and (df1, df2) == (1.0, 6.0) and test == "Wald F(1, 6)"
    assert p == pytest.approx(2 * stats.t.sf(2.0, 6)) and crit == pytest.approx(stats.t.ppf(0.975, 6))
    b4, v4 = np.full(4, 0.3), np.eye(4) * 0.04
    w, test, df1, df2, p, _ = interaction_test(b4, v4, 6, 0.95)     # 4 > 6 / 2
    assert math.isnan(p) and test.startswith("no test") and w == pytest.approx(9.0)
    w, test, df1, df2, p, _ = interaction_test(b4[:3], v4[:3, :3], 6, 0.95)
    assert test == "Hotelling T^2, F(3, 4)" and p == pytest.approx(stats.f.sf(6.75 * 4 / 18, 3, 4))


def test_without_few_cluster_df_the_test_is_chi_square():
    b, v = np.array([0.2, -0.5]), np.array([[0.04, 0.01], [0.01, 0.09]])
    w, test, df1, df2, p, crit = interaction_test(b, v, None, 0.9)
    assert w == pytest.approx(float(b @ np.linalg.solve(v, b)))
    assert p == pytest.approx(stats.chi2.sf(w, 2)) and math.isnan(df2)
    assert test == "Wald chi-square on 2 df" and crit == pytest.approx(stats.norm.ppf(0.95))


def test_a_singular_variance_gives_no_statistic_and_no_test():
    """A site jackknife over G sites has rank at most G - 1: with as many interaction terms
    as sites, b' V^-1 b is rounding noise (-1.6e15 was published on a 6-site study), so W
    is NaN and no test is made, with or without few-cluster df."""
    rng = np.random.default_rng(3)
    reps = rng.normal(size=(4, 4))                      # 4 sites' replicates, 4 terms
    dev = reps - reps.mean(axis=0)
    v = dev.T @ dev * 3 / 4                              # rank 3
    b = np.array([0.3, -0.2, 0.1, 0.4])
    for eta in (3, None):
        w, test, df1, df2, p, crit = interaction_test(b, v, eta, 0.95)
        assert math.isnan(w) and math.isnan(p) and test == "no test (4 terms, variance of rank 3)"
        assert df1 == 4.0 and math.isnan(df2)
        assert crit == pytest.approx(stats.t.ppf(0.975, 3) if eta else stats.norm.ppf(0.975))


def test_a_variance_that_is_not_finite_gives_no_test_and_does_not_raise():
    """A jackknife replicate without a level's rows leaves NaN in the variance (matrix_rank
    would raise on it): no statistic, no test, one line saying why."""
    v = np.array([[0.04, np.nan], [np.nan, 0.09]])
    w, test, df1, df2, p, crit = interaction_test(np.array([0.2, 0.1]), v, 6, 0.95)
    assert math.isnan(w) and math.isnan(p) and test == "no test (2 terms, variance not finite)"
