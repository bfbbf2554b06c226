"""Edge cases of pipeline.stats.meta not covered by the metafor goldens."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from pipeline.stats import meta_analysis, meta_regression, plot_forest


def test_one_study_gives_its_own_estimate_and_no_heterogeneity():
    res = meta_analysis([0.4], [0.04], method="REML")
    assert res.estimate == pytest.approx(0.4)
    assert res.se == pytest.approx(0.2)
    assert res.ci == pytest.approx((0.4 - 1.959964 * 0.2, 0.4 + 1.959964 * 0.2), rel=1e-6)
    assert res.tau2 == 0 and res.i2 == 0 and res.h2 == 1 and np.isnan(res.q_p)
    assert res.pi == pytest.approx(res.ci)
    assert any("one study" in n.lower() for n in res.notes)


def test_knha_needs_residual_degrees_of_freedom():
    with pytest.raises(ValueError, match="knha"):
        meta_analysis([0.4], [0.04], test="knha")


def test_identical_estimates_give_tau2_zero_and_knha_se_zero():
    res = meta_analysis([0.3, 0.3, 0.3], [0.1, 0.2, 0.3], method="REML", test="knha")
    assert res.tau2 == 0 and res.q == pytest.approx(0)
    assert res.se == 0  # metafor sets s2 = 0 when the weighted RSS is ~0
    assert any("tau^2 estimated as 0" in n for n in res.notes)


def test_studies_with_missing_or_non_positive_variance_are_dropped_and_named():
    res = meta_analysis([0.1, 0.2, np.nan, 0.4], [0.1, 0.0, 0.1, 0.2], labels=list("abcd"))
    assert list(res.table.label) == ["a", "d"]
    assert "b, c" in res.notes[0]


def test_unknown_method_and_test_are_refused():
    with pytest.raises(ValueError, match="method"):
        meta_analysis([0.1, 0.2], [0.1, 0.1], method="SJ")
    with pytest.raises(ValueError, match="test"):
        meta_analysis([0.1, 0.2], [0.1, 0.1], test="t")


def test_r2_is_zero_when_there_is_no_heterogeneity_to_explain():
    res = meta_regression([0.1, 0.12, 0.11, 0.13], [0.5, 0.5, 0.5, 0.5],
                          pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]}))
    assert res.r2 == 0 and any("R^2 is set to 0" in n for n in res.notes)


def test_collinear_moderators_are_refused():
    mods = pd.DataFrame({"x": [1.0, 2, 3, 4], "y": [2.0, 4, 6, 8]})
    with pytest.raises(ValueError, match="collinear"):
        meta_regression([0.1, 0.3, 0.2, 0.5], [0.1, 0.1, 0.1, 0.1], mods)


def test_forest_plot_has_one_row_per_study_plus_pooled():
    res = meta_analysis([0.1, -0.3, 0.5], [0.04, 0.09, 0.05], labels=["A", "B", "C"])
    fig = plot_forest(res, exponentiate=True)
    assert isinstance(fig, Figure)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[:3] == ["A", "B", "C"] and labels[3].startswith("Pooled (REML")
    assert fig.axes[0].get_xscale() == "log"


def test_the_prediction_interval_has_its_own_row_and_tau2_zero_is_said():
    """With tau^2 = 0 the prediction interval is hardly wider than the diamond: on its own
    row it is still seen, and the footnote says it then shows only the mean's uncertainty."""
    res = meta_analysis([0.1, 0.12, 0.09, 0.11], [0.04, 0.05, 0.03, 0.04], labels=list("ABCD"))
    assert res.tau2 == 0
    fig = plot_forest(res)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[-1] == "Prediction interval"
    y_pi = ax.get_yticks()[-1]
    seg = [c for c in ax.collections if c.get_label().startswith("95% prediction interval")][0]
    (x0, y0), (x1, y1) = seg.get_segments()[0]
    assert y0 == y1 == y_pi and x0 == pytest.approx(res.pi[0]) and x1 == pytest.approx(res.pi[1])
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "τ² = 0: the prediction interval shows only the uncertainty of the mean" in texts
    two = plot_forest(meta_analysis([0.1, 0.3], [0.04, 0.05], labels=["A", "B"],
                                    prediction="higgins"))
    assert "Prediction interval" not in [t.get_text() for t in two.axes[0].get_yticklabels()]
    assert "no prediction interval (fewer than 3 studies)" in " ".join(
        t.get_text() for t in two.axes[0].texts)


def test_intervals_past_the_possible_range_are_cut_there_and_said():
    """Three sites' differences in percentage points: the prediction interval on t(1) runs
    past -100 (the demo's work forest printed [-104.16, 74.17]); drawn and printed cut at
    the bounds, with a footnote. Within the bounds nothing changes."""
    res = meta_analysis([-9.0, -25.0, -14.2], [25.0, 52.0, 53.0], labels=["S03", "S04", "S06"],
                        prediction="higgins")
    assert res.pi[0] < -100
    ax = plot_forest(res, bounds=(-100.0, 100.0)).axes[0]
    seg = [c for c in ax.collections if c.get_label().startswith("95% prediction interval")][0]
    (x0, _), (x1, _) = seg.get_segments()[0]
    assert x0 == -100 and x1 == pytest.approx(min(res.pi[1], 100))
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "[-100.00, " in texts and "intervals cut at -100 and 100, the possible range" in texts
    inside = plot_forest(res, bounds=(-1000.0, 1000.0)).axes[0]
    assert "cut at" not in " ".join(t.get_text() for t in inside.texts)
