"""Metrics stage, one rule each: how a cell's estimate and interval follow from its rows.

    person  relapses  person-years
    a       0         1
    b       2         2
    c       4         1
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.metrics import mean_ci, rate_ci, wilson

Y, T = [0, 2, 4], [1.0, 2.0, 1.0]


def test_rate_is_events_per_person_year_with_a_robust_interval_allowing_repeat_events():
    r, lo, hi = rate_ci(sum(Y), sum(y * y for y in Y), sum(y * t for y, t in zip(Y, T)),
                        sum(T), sum(t * t for t in T), 0.95)
    assert r == 1.5
    # var = sum (y - r t)^2 / T^2 = (2.25 + 1 + 6.25) / 16; interval on the log scale
    se_log = math.sqrt(9.5 / 16) / 1.5
    assert (lo, hi) == pytest.approx((1.5 * math.exp(-1.959964 * se_log),
                                      1.5 * math.exp(1.959964 * se_log)), rel=1e-6)


def test_a_rate_with_no_events_has_the_exact_poisson_upper_limit():
    assert rate_ci(0, 0, 0, 4.0, 6.0, 0.95) == pytest.approx((0.0, 0.0, 3.688879 / 4.0), rel=1e-6)


def test_proportions_have_wilson_intervals():
    from statsmodels.stats.proportion import proportion_confint  # an independent implementation

    for x, n in ((1, 10), (0, 25), (25, 25), (37, 120)):
        assert wilson(x, n, 0.95)[1:] == pytest.approx(
            proportion_confint(x, n, method="wilson"), rel=1e-9, abs=1e-12)


def test_means_have_the_t_interval_and_shares_are_clipped_to_0_1():
    from scipy import stats  # an independent implementation of the t interval

    x = [0.9, 1.0, 1.0]
    m, lo, hi = mean_ci(3, 2.9, 2.81, 0.95)
    t = stats.t.interval(0.95, 2, loc=np.mean(x), scale=stats.sem(x))
    assert (m, lo, hi) == pytest.approx((np.mean(x), *t), rel=1e-12)
    m, lo, hi = mean_ci(3, 2.9, 2.81, 0.95, clip=True)
    assert hi == 1.0 and lo == pytest.approx(t[0], rel=1e-12)
