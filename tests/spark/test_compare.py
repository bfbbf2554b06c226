"""The comparison the engine-equality tests rely on can fail (no Spark needed)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from tests.spark.compare import assert_same_rows

BASE = {"person_id": ["p2", "p1"], "day": [3, 1], "mean": [0.1 + 0.2, 1.0],
        "on": [dt.date(2021, 1, 2), None], "rules": [["a", "b"], None]}


def table(**changes):
    return pa.table({**BASE, **changes})


def test_same_rows_in_any_order_pass():
    assert_same_rows(table(), table().take([1, 0]))


@pytest.mark.parametrize("changes", [
    {"day": [3, 2]},                                  # one integer
    {"mean": [0.3, 1.0]},                             # the last bit of a double
    {"on": [dt.date(2021, 1, 2), dt.date(2021, 1, 1)]},  # a NULL that is not NULL
    {"rules": [["b", "a"], None]},                    # list order
    {"day": pa.array([3, 1], pa.int32())},            # the type
])
def test_any_difference_fails(changes):
    with pytest.raises(AssertionError):
        assert_same_rows(table(), table(**changes))


def test_tolerance_only_on_the_named_column_and_only_that_small():
    close = 1.0 * (1 + 1e-15)
    assert_same_rows(table(), table(mean=[0.1 + 0.2, close]), tolerance={"mean": 1e-12})
    with pytest.raises(AssertionError):
        assert_same_rows(table(), table(mean=[0.1 + 0.2, 1.0 + 1e-9]), tolerance={"mean": 1e-12})
    with pytest.raises(AssertionError):
        assert_same_rows(table(), table(day=[3, 2]), tolerance={"mean": 1e-12})


def test_columns_must_match_in_order():
    with pytest.raises(AssertionError):
        assert_same_rows(table(), table().select(["day", "person_id", "mean", "on", "rules"]))
