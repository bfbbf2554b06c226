"""Edge cases of pipeline.stats.tableone not covered by the R goldens."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.stats import table_one


def test_constant_variable_has_smd_zero():
    df = pd.DataFrame({"g": ["A", "A", "B", "B"], "age": [30.0] * 4, "sex": ["f"] * 4})
    res = table_one(df, "g", ["age", "sex"])
    assert res.smd["age"] == 0 and res.smd["sex"] == 0


def test_rows_with_missing_group_are_dropped_and_categorical_defaults_to_non_numeric():
    df = pd.DataFrame({"g": ["A", "B", None, "A", "B"], "age": [1.0, 2, 3, 4, 5],
                       "sex": ["f", "m", "f", "m", "f"]})
    res = table_one(df, "g", ["age", "sex"])
    assert "1 row(s) dropped" in res.notes[0]
    assert set(res.table.loc[res.table.variable == "sex", "kind"]) == {"categorical"}
    assert res.formatted.loc["n"].tolist()[:2] == ["2", "2"]


def test_a_variable_cannot_be_both_categorical_and_nonnormal():
    df = pd.DataFrame({"g": ["A", "B"], "x": [1.0, 2.0]})
    with pytest.raises(ValueError, match="both"):
        table_one(df, "g", ["x"], categorical=["x"], nonnormal=["x"])
