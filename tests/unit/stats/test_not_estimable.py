"""Where the data hold no estimate, the estimators say why (``NotEstimable``, a
``ValueError``) instead of failing inside numpy or scipy; the analyse stage turns that
into "not estimated: <why>" in the report. Each case below raised a numpy or pandas error
before (issue 17)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.stats import NotEstimable, aalen_johansen, funnel, rate_ratio
from pipeline.stats.coxph import cox


def test_cox_with_one_arm_at_risk_at_every_event_time_is_not_estimable():
    """Per-site Cox on 4 people: each event happens when only its own arm is still at
    risk, so the data carry no information on the arm (was LinAlgError: Singular matrix)."""
    df = pd.DataFrame({"t": [1, 2, 5, 9], "e": [1, 0, 1, 0], "od": [1, 0, 0, 1]})
    # t=1: all four at risk, mixed arms -> information > 0 at beta = 0; but stratified so
    # that each stratum holds one arm, there is none
    df["s"] = df["od"]
    with pytest.raises(NotEstimable, match="singular"):
        cox(df, "t", "e", ["od"], strata="s")


def test_cox_without_events_is_not_estimable_and_still_a_value_error():
    df = pd.DataFrame({"t": [1, 2, 3], "e": [0, 0, 0], "x": [0, 1, 0]})
    with pytest.raises(NotEstimable, match="no events") as info:
        cox(df, "t", "e", ["x"])
    assert isinstance(info.value, ValueError)


def test_aalen_johansen_without_any_event_is_an_empty_table_with_a_note():
    """All censored (was ValueError: No objects to concatenate from pandas)."""
    df = pd.DataFrame({"t": [3, 5, 8, 9], "e": [0, 0, 0, 0], "g": ["a", "a", "b", "b"]})
    aj = aalen_johansen(df, "t", "e", group="g")
    assert aj.table.empty and "cif" in aj.table.columns
    assert any("no events" in n for n in aj.notes)


def test_funnel_of_proportions_without_any_event_is_not_estimable():
    """Every site 0 of n (was ValueError: target must be positive)."""
    with pytest.raises(NotEstimable, match="overall proportion is 0"):
        funnel([0, 0, 0], [10, 12, 9], kind="proportion")
    with pytest.raises(NotEstimable, match="overall proportion is 1"):
        funnel([10, 12, 9], [10, 12, 9], kind="proportion")


@pytest.mark.parametrize("family", ["poisson", "negbin"])
def test_rate_ratio_with_every_count_zero_is_not_estimable(family):
    """Two sites of two people without a detention: the negative binomial theta search
    failed inside scipy ("f(a) and f(b) must have different signs"), Poisson gave log(0)."""
    df = pd.DataFrame({"y": [0, 0, 0, 0], "pt": [1.31, 1.13, 2.0, 2.0],
                       "arm": ["uc", "uc", "od", "od"], "site": ["S1", "S2", "S2", "S1"]})
    with pytest.raises(NotEstimable, match="every y is 0"):
        rate_ratio(df, "y", "pt", ["arm", "site"], family=family)
