"""Edge cases of pipeline.stats.binary not covered by the R goldens."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.stats import odds_ratio, risk_difference, risk_ratio


def two_arms(x1, n1, x0, n0):
    return pd.DataFrame({
        "arm": ["od"] * n1 + ["tau"] * n0,
        "relapse": [1] * x1 + [0] * (n1 - x1) + [1] * x0 + [0] * (n0 - x0),
    })


def test_zero_events_in_one_arm_adds_half_to_every_cell_for_ratios():
    df = two_arms(0, 20, 5, 20)
    rr = risk_ratio(df, "relapse", "arm", "tau")
    # (0.5 / 21) / (5.5 / 21)
    assert rr.summary.estimate[0] == pytest.approx(0.5 / 5.5)
    assert any("0.5 added" in n for n in rr.notes)
    orr = odds_ratio(df, "relapse", "arm", "tau")
    assert orr.summary.estimate[0] == pytest.approx((0.5 / 20.5) / (5.5 / 15.5))


def test_zero_events_in_one_arm_keeps_a_newcombe_interval_with_width():
    rd = risk_difference(two_arms(0, 20, 5, 20), "relapse", "arm", "tau")
    s = rd.summary.set_index("method")
    newc, wald = s.loc["Newcombe hybrid score"], s.loc["Wald"]
    # the Wald variance of the zero arm is 0; the score interval still reflects it
    assert newc.lower < -0.25 < newc.upper
    assert newc.upper - newc.lower > wald.upper - wald.lower


def test_no_events_anywhere_makes_ratios_undefined_and_wald_degenerate():
    df = two_arms(0, 10, 0, 12)
    assert np.isnan(risk_ratio(df, "relapse", "arm", "tau").summary.estimate[0])
    rd = risk_difference(df, "relapse", "arm", "tau")
    assert rd.summary.se[0] == 0 and np.isnan(rd.summary.p[0])
    assert any("Newcombe" in n for n in rd.notes)


def test_group_must_have_two_levels_and_contain_the_reference():
    df = two_arms(3, 10, 4, 10)
    with pytest.raises(ValueError, match="reference level"):
        risk_difference(df, "relapse", "arm", "usual care")
    df3 = pd.concat([df, pd.DataFrame({"arm": ["other"], "relapse": [1]})])
    with pytest.raises(ValueError, match="exactly two levels"):
        risk_difference(df3, "relapse", "arm", "tau")


def test_outcome_must_be_binary():
    df = two_arms(3, 10, 4, 10).assign(relapse=lambda d: d.relapse * 2)
    with pytest.raises(ValueError, match="0/1"):
        risk_ratio(df, "relapse", "arm", "tau")


def test_icc_zero_gives_the_unclustered_answer():
    df = two_arms(6, 30, 11, 30)
    df["team"] = np.arange(len(df)) % 6
    plain = odds_ratio(df, "relapse", "arm", "tau").summary
    clustered = odds_ratio(df, "relapse", "arm", "tau", cluster="team", icc=0.0)
    pd.testing.assert_frame_equal(plain, clustered.summary)
    assert list(clustered.arms.design_effect) == [1.0, 1.0]
    assert any("contain both groups" in n for n in clustered.notes)
