"""Edge cases of pipeline.stats.funnel (module funnel_limits) not covered by the R goldens."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure

import pipeline.stats as st
from pipeline.stats import funnel, plot_funnel


def test_funnel_stays_the_function_after_its_module_is_imported():
    # a module named like its function would rebind pipeline.stats.funnel to the module
    import pipeline.stats.funnel_limits  # noqa: F401

    assert callable(st.funnel) and st.funnel.__module__ == "pipeline.stats.funnel_limits"
    res = st.funnel([5, 10], [50, 100])
    assert res.table.shape[0] == 2
    assert funnel([5, 10], [50, 100]).target == pytest.approx(15 / 150)


def test_no_overdispersion_falls_back_to_exact_limits():
    # every unit exactly on target: z = 0, phi = 0
    res = funnel([10, 20, 40], [100, 200, 400], overdispersion="additive")
    assert res.phi == 0 and res.limits_used == "exact"
    assert any("no overdispersion" in n for n in res.notes)
    assert set(res.table.flag) == {"within"}


def test_invalid_units_are_dropped_and_named():
    res = funnel([3, 12, 5, -1, 4], [10, 10, 0, 10, 20], labels=list("abcde"))
    assert list(res.table.label) == ["a", "e"]
    assert "3 unit(s) dropped" in res.notes[0] and "b, c, d" in res.notes[0]


def test_other_limit_levels_are_named_by_their_percentage():
    res = funnel([5, 9, 30, 12], [40.0, 80.0, 150.0, 90.0], kind="ratio",
                 overdispersion="multiplicative", limits=(0.9, 0.99))
    curve = res.limits_curve([50.0, 100.0])
    for frame in (res.table, curve):
        assert {"lower_90", "upper_90", "lower_99", "upper_99"} <= set(frame.columns)


def test_plot_funnel_draws_units_target_and_two_pairs_of_limits():
    res = funnel([5, 9, 30, 12, 2], [40, 80, 150, 90, 60])
    fig = plot_funnel(res, multiplier=100)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.collections[0].get_offsets()) == 5
    assert len(ax.lines) == 5  # 4 limit curves and the target line
