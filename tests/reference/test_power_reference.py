"""Analytic power and sample size (``pipeline.stats.sample_size``) against R and a
published table.

* Two proportions: R ``power.prop.test(strict = TRUE)`` (pooled variance under the null,
  unpooled under the alternative, both tails); the t reference: R ``power.t.test(type =
  "two.sample", strict = TRUE)`` (noncentral t). Goldens from
  ``tests/reference/power/make_power_goldens.R`` (R 4.2.2); tolerance 1e-9 relative (both
  sides evaluate the same closed forms with double-precision normal and t quantiles).
* Schoenfeld's events formula against Table 1 of Trials 2015;16:213
  (doi:10.1186/s13063-015-0727-9): the total sample size from Schoenfeld's formula for a
  hazard ratio of 1.25, 1.5, 1.75 and 2 (5% two-sided, 80% power, equal allocation, half
  of the people censored) is 1,264, 384, 204 and 132: the events rounded up to a whole
  number per arm, divided by 0.5.
* The design effect with variable cluster sizes is exact for a size-weighted analysis:
  ``(cv^2 + 1) m = sum m_j^2 / sum m_j`` with the population CV (a check of the CV's
  definition, the usual slip being the n - 1 SD).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from pipeline.stats.sample_size import (design_effect, normal_power, schoenfeld_events, schoenfeld_power,
                                        two_proportions_power)

GOLD = json.loads((Path(__file__).parent / "power" / "power_goldens.json").read_text())


@pytest.mark.parametrize("g", GOLD["power_prop_test"], ids=lambda g: f"n{g['n']}_{g['p1']}_{g['p2']}")
def test_two_proportions_power_matches_r_power_prop_test(g):
    ours = two_proportions_power(g["n"], g["n"], g["p1"], g["p2"], alpha=g["sig.level"])
    assert ours == pytest.approx(g["power"], rel=1e-9)


@pytest.mark.parametrize("g", GOLD["power_t_test"], ids=lambda g: f"n{g['n']}_d{g['delta']}")
def test_t_reference_power_matches_r_power_t_test(g):
    assert normal_power(g["ncp"], g["sig.level"], df=g["df"]) == pytest.approx(g["power"], rel=1e-9)


@pytest.mark.parametrize("hr, n_total", [(1.25, 1264), (1.5, 384), (1.75, 204), (2.0, 132)])
def test_schoenfeld_events_reproduce_the_published_sample_sizes(hr, n_total):
    d = schoenfeld_events(hr, power=0.8, alpha=0.05)
    assert 2 * math.ceil(d / 2) / 0.5 == n_total
    # and the power those events give is the 80% asked for (the inverse of the formula)
    assert schoenfeld_power(d, hr) == pytest.approx(0.8, abs=1e-4)  # the far tail adds < 1e-4
    assert schoenfeld_power(d, 1 / hr) == pytest.approx(schoenfeld_power(d, hr), rel=1e-12)


def test_design_effect_with_variable_cluster_sizes_is_sum_of_squares_over_sum():
    rng = np.random.default_rng(3)
    m = rng.gamma(2.0, 40.0, 30).round() + 1
    cv = m.std() / m.mean()  # population SD
    rho = 0.04
    assert design_effect(m.mean(), rho, cv) == pytest.approx(1 + (np.sum(m**2) / np.sum(m) - 1) * rho, rel=1e-12)
    assert design_effect(50, 0.05) == pytest.approx(3.45)  # equal clusters: 1 + (m - 1) rho
    with pytest.raises(ValueError):
        design_effect(50, 1.2)


def test_a_design_effect_or_a_t_reference_only_lowers_power():
    base = two_proportions_power(300, 300, 0.25, 0.35)
    assert two_proportions_power(300, 300, 0.25, 0.35, design_effect=2.0) < base
    assert two_proportions_power(300, 300, 0.25, 0.35, df=6) < base
    # with many degrees of freedom the t reference is the normal one
    assert two_proportions_power(300, 300, 0.25, 0.35, df=1e6) == pytest.approx(base, abs=1e-5)
