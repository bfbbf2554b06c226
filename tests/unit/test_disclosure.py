"""Disclosure control: rounding, secondary suppression and rounded curves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline import disclosure
from pipeline.stats import aalen_johansen, kaplan_meier

CFG = dict(disclosure.DEFAULTS)


@pytest.mark.parametrize("n, shown", [(0, 0), (1, None), (7, None), (8, 10), (12, 10), (13, 15),
                                      (1402, 1400)])
def test_small_counts_are_suppressed_and_others_rounded_to_5(n, shown):
    assert disclosure.round_count(n, CFG) == shown


def test_thresholds_come_from_the_settings():
    cfg = {**CFG, "suppress_max": 10, "round_to": 10}
    assert disclosure.round_count(10, cfg) is None
    assert disclosure.round_count(14, cfg) == 10
    assert disclosure.curve_step(cfg) == 20
    assert disclosure.curve_step(CFG) == 10


def test_a_lone_suppressed_cell_gets_a_complement_so_totals_do_not_reveal_it():
    #            OD   UC   all
    #   S1       40    3    43
    #   S2       50   60   110
    #   all      90   63   153
    counts = {("S1", "OD"): 40, ("S1", "UC"): 3, ("S1", "all"): 43,
              ("S2", "OD"): 50, ("S2", "UC"): 60, ("S2", "all"): 110,
              ("all", "OD"): 90, ("all", "UC"): 63, ("all", "all"): 153}
    cons = disclosure.grid_constraints(["S1", "S2"], ["OD", "UC"])
    hidden = disclosure.secondary_suppress(counts, cons, disclosure.primary(counts, CFG))
    assert ("S1", "UC") in hidden
    for total, parts in cons:  # no sum has exactly one unknown
        assert sum(c in hidden for c in [total, *parts]) != 1


def test_all_but_a_few_is_suppressed_too():
    assert disclosure.primary({"a": 95}, CFG, totals={"a": 100}) == {"a"}
    assert disclosure.primary({"a": 50}, CFG, totals={"a": 100}) == set()


def test_rounded_curves_are_monotone_with_steps_and_numbers_at_risk_in_multiples_of_the_step():
    rng = np.random.default_rng(3)
    n = 437
    df = pd.DataFrame({"t": rng.integers(1, 730, n), "e": rng.choice([0, 1, 2], n, p=[.5, .4, .1]),
                       "g": rng.choice(["a", "b"], n)})
    r = disclosure.rounded_curve_data(df, "t", "e", CFG, "g")
    step = disclosure.curve_step(CFG)
    assert (r.groupby(["g", "t", "e"]).size() % step == 0).all()
    km = kaplan_meier(r.assign(ev=(r.e == 1).astype(int)), "t", "ev", group="g")
    for _, tab in km.table.groupby("group"):
        assert (np.diff(tab["survival"].to_numpy()) <= 0).all()
        assert (tab["n_risk"] % step == 0).all()
        assert not tab["n_event"].between(1, CFG["suppress_max"]).any()
    aj = aalen_johansen(r, "t", "e", cause=1, group="g").table
    for _, tab in aj.groupby("group"):
        assert (np.diff(tab["cif"].to_numpy()) >= 0).all()
    # the rounded curve stays close to the exact one (error of at most step/2 per count)
    exact = kaplan_meier(df.assign(ev=(df.e == 1).astype(int)), "t", "ev", group="g")
    s_exact = exact.risk_table([365]).set_index("group")["survival"]
    s_round = km.risk_table([365]).set_index("group")["survival"]
    assert (abs(s_exact - s_round) < 0.05).all()
