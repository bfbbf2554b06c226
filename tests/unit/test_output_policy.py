"""The output policy (``pipeline.output_policy``): what each kind of statistic needs and at
what precision it is shown; CSV injection."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipeline import disclosure, output_policy
from pipeline.check_outputs import check

CFG = output_policy.settings(dict(disclosure.DEFAULTS))


@pytest.mark.parametrize("value,formula", [
    ("=HYPERLINK(\"http://x\")", True), ("+cmd|' /C calc'!A0", True), ("@SUM(A1)", True),
    ("-2+3", True), ("\tx", True), ("\rx", True), ("-5", False), ("+1.5e3", False),
    ("-0.25", False), ("S01", False), ("", False), ("a=b", False)])
def test_owasp_formula_rule_leaves_numbers_alone(value, formula):
    assert output_policy.is_formula(value) is formula
    assert output_policy.text(value) == ("'" + value if formula else value)


def test_write_table_neutralises_formula_cells_and_check_outputs_refuses_raw_ones(tmp_path):
    from pipeline.report import write_table

    df = pd.DataFrame({"site_id": ["=HYPERLINK(\"http://x\")", "S2"], "n": [10, 15],
                       "estimate": [-0.5, 0.25]})
    write_table(df, tmp_path / "t.csv")
    text = (tmp_path / "t.csv").read_text()
    assert text.splitlines()[1].startswith('"\'=HYPERLINK(""http://x"")",10,-0.5')
    assert not [b for b in check(tmp_path, CFG) if b.rule == "injection.formula"]
    (tmp_path / "raw.csv").write_text("site_id,n\n+cmd|' /C calc'!A0,10\n")
    (tmp_path / "raw.json").write_text('{"sites": [{"site_id": "@SUM(1)"}]}')
    rules = {(b.file, b.rule) for b in check(tmp_path, CFG)}
    assert {("raw.csv", "injection.formula"), ("raw.json", "injection.formula")} <= rules


def test_mean_decimals_keep_every_n_of_the_rounding_interval_consistent():
    """For any whole total S and any n in the interval, the shown mean of S/n is consistent
    with every other n of the interval: some whole total fits it."""
    rng = np.random.default_rng(1)
    for shown in (10, 15, 55, 95, 100, 605, 1400):
        iv = output_policy.rounding_interval(shown, CFG)
        d = output_policy.mean_decimals(shown, CFG)
        for _ in range(200):
            n = int(rng.integers(iv.start, iv.stop))
            s = int(rng.integers(0, 30 * n))
            m = round(s / n, d)
            h = 0.5 * 10.0 ** -d
            for other in iv:
                assert math.floor((m + h) * other) >= math.ceil((m - h) * other)


def test_protection_interval():
    assert not output_policy.protected("[c]", [4], CFG)
    assert not output_policy.protected("[c]", [1, 2, 3, 4], CFG)
    assert output_policy.protected("[c]", range(0, 8), CFG)
    assert not output_policy.protected("100", [99, 100, 101, 102], CFG)
    assert output_policy.protected("100", range(98, 103), CFG)
    assert output_policy.protected("10", range(8, 13), CFG)


def test_effects_need_every_cell_shown_and_come_to_three_digits():
    assert output_policy.effect(0.561375, 0.298816, 1.05464, [85, None], CFG) == (None,) * 3
    assert output_policy.effect(0.561375, 0.298816, 1.05464, [85, 40], CFG) == (0.561, 0.299, 1.05)


def test_curve_point_flags():
    assert output_policy.curve_point(1.0, 0.585, np.nan, np.nan, CFG)[1].startswith("rounded curve")
    assert output_policy.curve_point(0.7, 0.6, 0.5, 0.8, CFG)[0] is None
    assert output_policy.curve_point(0.62, 0.6, 0.5, 0.8, CFG) == (0.62, "")


def test_smd_from_public_pools_hidden_levels():
    from pipeline.stats.tableone import smd_from_counts

    got = output_policy.smd_from_public([[360, 420, None], [270, 310, 10]], [795, 605])
    assert got == pytest.approx(smd_from_counts(np.array([[360, 420, 15], [270, 310, 25]], float)))


def test_histogram_bars_come_from_rounded_cumulative_counts():
    bars = output_policy.histogram([0, 3, 4, 12, 1, 0, 30], CFG)
    assert all(b % 10 == 0 for b in bars)
    # cumulative 0, 3, 7, 19, 20, 20, 50 -> rounded 0, 0, 10, 20, 20, 20, 50
    assert bars == [0, 0, 10, 10, 0, 0, 30]
    assert sum(bars) == 50


def test_counts_in_notes_are_rounded_and_small_ones_hidden():
    from pipeline.output_policy import note_counts

    cfg = {"suppress_min": 1, "suppress_max": 7, "round_to": 5}
    assert note_counts("Covariate age: 37 missing values set to the mean.", cfg) == \
        "Covariate age: 35 missing values set to the mean."
    assert note_counts("1,404 people left out; 12 clusters; 3 deaths; 0 events", cfg) == \
        "1,405 people left out; 12 clusters; fewer than 8 deaths; 0 events"
    # already protected wording and numbers that are not counts of people stay as they are
    for t in ("Fewer than 8 statuses imputed.", "at most 7 events", "S1-2 rows", "F(3, 4)"):
        assert note_counts(t, cfg) == t
    assert note_counts(None, cfg) is None
