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
    assert sum(len(c.get_offsets()) for c in ax.collections) == 5
    assert len(ax.lines) == 5  # 4 limit curves and the target line



# --------------------------------------------------------------------------- estimates

def _km_at(times, events, t):
    """Kaplan-Meier 1 - S(t) and its Greenwood standard error, by hand."""
    import numpy as np

    order = np.argsort(times, kind="stable")
    times, events = np.asarray(times)[order], np.asarray(events)[order]
    s, v = 1.0, 0.0
    for u in np.unique(times[(events == 1) & (times <= t)]):
        n = np.sum(times >= u)
        d = np.sum((times == u) & (events == 1))
        s *= 1 - d / n
        v += d / (n * (n - d))
    return 1 - s, s * np.sqrt(v)


def test_an_estimate_without_censoring_has_its_people_as_effective_n():
    """Kaplan-Meier without censoring before t is the plain proportion, its Greenwood
    variance p(1 - p)/n: the effective n is n, and the funnel is the binomial one with
    normal limits."""
    import numpy as np

    from pipeline.stats import funnel_estimates

    rng = np.random.default_rng(7)
    est, se, ns, ev = [], [], [], []
    for n in (40, 80, 120, 200):
        t = rng.exponential(300, n)
        p_, s_ = _km_at(np.minimum(t, 1000), (t < 1000).astype(int), 365)
        est.append(p_), se.append(s_), ns.append(n), ev.append(int(np.sum(t <= 365)))
    res = funnel_estimates(est, se, labels=list("abcd"))
    np.testing.assert_allclose(res.table["denominator"], ns, rtol=1e-9)
    np.testing.assert_allclose(res.table["observed"], ev, rtol=1e-9)
    assert res.limits_used == "normal"
    # the binomial funnel's z-scores (same transform and s) at the same target
    b = funnel(ev, ns, target=res.target)
    np.testing.assert_allclose(res.table["z"], b.table["z"], rtol=1e-9)


def test_censoring_lowers_the_effective_n_below_the_people():
    import numpy as np

    from pipeline.stats import funnel_estimates

    rng = np.random.default_rng(3)
    est, se = [], []
    for n in (60, 90, 150):
        t = rng.exponential(400, n)
        c = rng.uniform(50, 800, n)
        p_, s_ = _km_at(np.minimum(t, c), (t <= c).astype(int), 365)
        est.append(p_), se.append(s_)
    res = funnel_estimates(est, se)
    assert (res.table["denominator"].to_numpy() < [60, 90, 150]).all()


def test_estimates_at_0_or_1_have_no_effective_n_and_are_dropped_and_named():
    from pipeline.stats import funnel_estimates

    res = funnel_estimates([0.0, 0.2, 0.3, 1.0], [0.0, 0.05, 0.04, 0.0], labels=list("abcd"))
    assert list(res.table["label"]) == ["b", "c"]
    assert "a, d" in res.notes[0]
    with pytest.raises(st.NotEstimable):
        funnel_estimates([0.2, 1.0], [0.05, 0.0])


def test_a_mean_is_plotted_against_its_precision_with_normal_limits():
    import numpy as np

    from pipeline.stats import funnel_estimates

    res = funnel_estimates([0.5, 0.6, 0.7], [0.1, 0.05, 0.02], kind="mean", target=0.6)
    np.testing.assert_allclose(res.table["denominator"], [100, 400, 2500])
    np.testing.assert_allclose(res.table["z"], [-1, 0, 5])
    np.testing.assert_allclose(res.table["upper_95"], 0.6 + 1.959963985 * np.array([0.1, 0.05, 0.02]))
    assert list(res.table["flag"]) == ["within", "within", "high_998"]


def test_dispersion_given_is_used_and_the_overdispersion_test_is_chi_square():
    import numpy as np
    from scipy import stats

    ev, n = [10, 30, 50, 20, 60], [100, 100, 150, 120, 130]
    own = funnel(ev, n, overdispersion="additive")
    assert own.phi_p == pytest.approx(stats.chi2.sf(5 * own.phi, 4))
    given = funnel(ev, n, overdispersion="additive", dispersion=(own.phi, 2 * own.tau2))
    assert given.tau2 == 2 * own.tau2
    wider = given.table["upper_95"] - given.table["lower_95"]
    assert (wider > own.table["upper_95"] - own.table["lower_95"]).all()
    flags = own.limits_at(n, np.asarray(ev) / np.asarray(n))["flag"]
    assert list(flags) == list(own.table["flag"])


# --------------------------------------------------------------------------- figures

def _texts(fig):
    return [t.get_text() for t in fig.axes[0].texts]


def test_every_site_is_labelled_and_the_legend_is_outside_the_axes():
    res = funnel([5, 9, 30, 12, 2, 40], [40, 80, 150, 90, 60, 100],
                 labels=["S1", "S2", "S3", "S4", "S5", "S6"])
    fig = plot_funnel(res, multiplier=100)
    assert {"S1", "S2", "S3", "S4", "S5", "S6"} <= set(_texts(fig))
    ax = fig.axes[0]
    fig.canvas.draw()
    leg = ax.get_legend().get_window_extent()
    assert leg.x0 >= ax.get_window_extent().x1  # right of the data, not on it
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "Overall (all sites)" in labels and "Target" not in labels


def test_colours_and_words_follow_the_measures_direction():
    from pipeline.stats._style import PALETTE

    res = funnel([5, 60, 30, 30, 30], [100, 100, 100, 100, 100], labels=list("abcde"))
    assert set(res.table["flag"]) >= {"low_998", "high_998"}
    for hib, low_word in ((True, "Worse"), (False, "Better")):
        fig = plot_funnel(res, higher_is_better=hib)
        ax = fig.axes[0]
        legend = {t.get_text().split(" ")[0]: h for t, h in
                  zip(ax.get_legend().get_texts(), ax.get_legend().legend_handles)}
        assert {"Better", "Worse"} <= set(legend)
        low = [c for c in ax.collections if len(c.get_offsets()) == 1
               and c.get_offsets()[0][1] == 0.05][0]
        colour = PALETTE[1] if low_word == "Worse" else PALETTE[2]
        import matplotlib.colors as mc

        assert mc.to_hex(low.get_facecolor()[0]) == colour.lower()
    neutral = plot_funnel(res)
    words = {t.get_text().split(" ")[0] for t in neutral.axes[0].get_legend().get_texts()}
    assert {"Above", "Below"} <= words and not {"Better", "Worse"} & words
