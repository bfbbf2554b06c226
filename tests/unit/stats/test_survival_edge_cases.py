"""Edge cases of the survival estimators not covered by the R reference tests."""

from __future__ import annotations

import matplotlib.figure
import numpy as np
import pandas as pd
import pytest

from pipeline.stats import aalen_johansen, fine_gray, gray_test, kaplan_meier, logrank
from pipeline.stats.coxph import cox
from pipeline.stats.figures_survival import plot_cumulative_incidence, plot_kaplan_meier


def frame(rows: str) -> pd.DataFrame:
    """Small ASCII table: header line then whitespace-separated rows."""
    lines = [ln.split() for ln in rows.strip().splitlines()]
    df = pd.DataFrame(lines[1:], columns=lines[0])
    for col in df.columns:
        try:
            df[col] = pd.to_numeric(df[col])
        except ValueError:
            pass
    return df


def test_km_all_censored_stays_at_one_with_undefined_median_and_a_note():
    df = frame("""
        t  e  g
        1  0  a
        2  0  a
        3  0  a
    """)
    km = kaplan_meier(df, "t", "e", conf_type="log-log")
    assert (km.table["survival"] == 1).all()
    assert (km.table["se"] == 0).all()
    # S = 1: log-log limits are undefined, as R's survfit_confint makes them (NA)
    assert km.table["lower"].isna().all() and km.table["upper"].isna().all()
    assert np.isnan(km.median["median"].iloc[0])
    assert any("no events" in n for n in km.notes)


def test_km_ties_of_events_and_censoring_at_one_time():
    # at t=2: two events and one censoring among 4 at risk -> S = 1 * (1 - 2/4)
    df = frame("""
        t  e
        2  1
        2  1
        2  0
        5  1
    """)
    tab = kaplan_meier(df, "t", "e").table
    assert tab["n_risk"].tolist() == [4, 1]
    assert tab["n_event"].tolist() == [2, 1]
    assert tab["n_censor"].tolist() == [1, 0]
    np.testing.assert_allclose(tab["survival"], [0.5, 0.0])
    # where S reaches 0 the standard error and limits are undefined, as in R
    assert np.isnan(tab["lower"].iloc[-1])


def test_km_flat_at_one_half_gives_midpoint_median():
    # S drops to exactly 0.5 at t=2 and stays until t=6: median is (2 + 6) / 2
    df = frame("""
        t  e
        2  1
        2  1
        6  1
        7  1
    """)
    assert kaplan_meier(df, "t", "e").median["median"].iloc[0] == pytest.approx(4.0)


def test_km_group_with_one_person_and_missing_rows_noted():
    df = frame("""
        t  e  g
        1  1  a
        2  0  a
        3  1  a
        4  1  b
    """)
    df.loc[len(df)] = [np.nan, 1, "a"]
    km = kaplan_meier(df, "t", "e", group="g")
    b = km.table[km.table["group"] == "b"]
    assert b["survival"].tolist() == [0.0]
    assert any("1 of 5 rows dropped" in n and "t: 1" in n for n in km.notes)


def test_km_rejects_bad_input():
    df = frame("""
        t  e
        1  2
    """)
    with pytest.raises(ValueError, match="0 .censored. or 1"):
        kaplan_meier(df, "t", "e")
    with pytest.raises(KeyError, match="'nope'"):
        kaplan_meier(df, "t", "nope")
    with pytest.raises(ValueError, match="conf_type"):
        kaplan_meier(df, "t", "e", conf_type="plain")


def test_logrank_stratum_without_events_is_noted_and_ignored():
    df = frame("""
        t  e  g  s
        1  1  a  x
        2  1  b  x
        3  0  a  x
        4  1  b  x
        5  0  a  y
        6  0  b  y
    """)
    res = logrank(df, "t", "e", group="g", strata="s")
    plain = logrank(df[df["s"] == "x"], "t", "e", group="g")
    assert res.chisq == pytest.approx(plain.chisq)
    assert any("without events" in n for n in res.notes)


def test_logrank_single_group_with_events_gives_no_test():
    df = frame("""
        t    e  g
        1    1  a
        0.5  0  b
    """)
    res = logrank(df, "t", "e", group="g")
    assert res.df == 0 and np.isnan(res.p)


def test_cox_without_events_or_with_constant_covariate_raises_clearly():
    df = frame("""
        t  e  x  k
        1  0  1  1
        2  0  2  1
        3  1  3  1
    """)
    with pytest.raises(ValueError, match="no events"):
        cox(df.assign(e=0), "t", "e", ["x"])
    with pytest.raises(ValueError, match="constant.*k"):
        cox(df, "t", "e", ["x", "k"])
    with pytest.raises(ValueError, match="cluster"):
        cox(df, "t", "e", ["x"], small_sample="t")


def test_cox_small_sample_t_widens_interval_but_keeps_se():
    rng = np.random.default_rng(3)
    n = 120
    df = pd.DataFrame({"x": rng.normal(size=n), "site": np.repeat(np.arange(8), n // 8)})
    df["t"] = rng.exponential(1 / np.exp(0.5 * df["x"]))
    df["e"] = (rng.uniform(size=n) < 0.8).astype(int)
    z = cox(df, "t", "e", ["x"], cluster="site")
    t = cox(df, "t", "e", ["x"], cluster="site", small_sample="t")
    assert t.summary["se"].iloc[0] == pytest.approx(z.summary["se"].iloc[0])
    assert t.summary["p"].iloc[0] > z.summary["p"].iloc[0]
    assert t.summary["hr_upper"].iloc[0] > z.summary["hr_upper"].iloc[0]
    assert any("7 df" in n for n in t.notes)


def test_cox_with_fewer_clusters_than_coefficients_fits_but_makes_no_robust_score_test():
    """Seven coefficients, four clusters: the robust score covariance has rank at most 3.
    The fit and its (jackknife) variance stand; the global robust score test is not made."""
    rng = np.random.default_rng(4)
    n = 400
    df = pd.DataFrame(rng.normal(size=(n, 7)), columns=[f"x{i}" for i in range(7)])
    df["site"] = np.repeat(np.arange(4), n // 4)
    df["t"] = rng.exponential(1.0, n)
    df["e"] = 1
    fit = cox(df, "t", "e", [f"x{i}" for i in range(7)], cluster="site", small_sample="jackknife")
    assert np.isfinite(fit.summary["se"]).all()
    assert np.isnan(fit.robust_score_test["chisq"]) and np.isnan(fit.robust_score_test["p"])
    assert np.isfinite(fit.score_test["p"])


def test_cox_stratum_without_events_is_noted_and_does_not_change_fit():
    rng = np.random.default_rng(4)
    n = 60
    df = pd.DataFrame({"x": rng.normal(size=n), "t": rng.exponential(size=n), "e": 1, "s": "a"})
    extra = pd.DataFrame({"x": [0.3, -1.0], "t": [1.0, 2.0], "e": [0, 0], "s": ["z", "z"]})
    base = cox(df, "t", "e", ["x"], strata="s")
    more = cox(pd.concat([df, extra]), "t", "e", ["x"], strata="s")
    assert more.summary["coef"].iloc[0] == pytest.approx(base.summary["coef"].iloc[0], rel=1e-10)
    assert any("without events" in n and "z" in n for n in more.notes)


def test_cumulative_incidences_and_survival_add_to_one():
    rng = np.random.default_rng(5)
    n = 200
    df = pd.DataFrame({"t": rng.integers(1, 30, n), "e": rng.integers(0, 3, n)})
    aj = aalen_johansen(df, "t", "e").table
    km = kaplan_meier(df.assign(any=(df["e"] > 0).astype(int)), "t", "any").table
    total = aj.pivot(index="time", columns="cause", values="cif").sum(axis=1).to_numpy()
    np.testing.assert_allclose(total + km["survival"].to_numpy(), 1.0)


def test_aalen_johansen_unobserved_cause_is_zero_and_noted():
    df = frame("""
        t  e
        1  1
        2  0
        3  1
    """)
    res = aalen_johansen(df, "t", "e", cause=[1, 2])
    assert (res.table.loc[res.table["cause"] == 2, "cif"] == 0).all()
    assert any("never observed" in n for n in res.notes)


def test_fine_gray_without_competing_events_equals_breslow_cox():
    # with no competing events the Fine-Gray risk set is the Cox risk set
    rng = np.random.default_rng(6)
    n = 80
    df = pd.DataFrame({"x": rng.normal(size=n), "t": rng.integers(1, 20, n), "e": rng.integers(0, 2, n)})
    fg = fine_gray(df, "t", "e", 1, ["x"])
    cx = cox(df, "t", "e", ["x"], ties="breslow")
    assert fg.summary["coef"].iloc[0] == pytest.approx(cx.summary["coef"].iloc[0], rel=1e-8)
    with pytest.raises(ValueError, match="no events of cause 3"):
        fine_gray(df, "t", "e", 3, ["x"])


def test_gray_test_needs_two_groups():
    df = frame("""
        t  e  g
        1  1  a
        2  2  a
    """)
    with pytest.raises(ValueError, match="two groups"):
        gray_test(df, "t", "e", group="g")


def test_figures_return_figures_with_risk_table():
    df = frame("""
        t  e  g
        1  1  a
        2  0  a
        3  1  b
        4  2  b
        5  0  b
    """)
    km = kaplan_meier(df.assign(e=(df["e"] > 0).astype(int)), "t", "e", group="g")
    fig = plot_kaplan_meier(km, times=[0, 2, 4])
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 2
    numbers = [t.get_text() for t in fig.axes[1].texts]
    assert numbers == ["2", "1", "0", "3", "3", "2"]
    fig2 = plot_cumulative_incidence(aalen_johansen(df, "t", "e", group="g"), risk_table=False)
    assert isinstance(fig2, matplotlib.figure.Figure) and len(fig2.axes) == 1


def test_cox_stays_the_function_after_its_module_is_imported():
    import pipeline.stats as st
    import pipeline.stats.coxph  # noqa: F401

    assert st.cox is cox


def test_text_covariates_enter_cox_and_fine_gray_as_factors_or_are_named():
    """Text columns are factors (R's treatment contrasts; the R goldens check the numbers):
    the reference level is named in a note, a ``Categorical`` chooses it, a single level is
    a constant covariate, and a column that is neither numbers nor text is refused in one
    line naming it."""
    rng = np.random.default_rng(7)
    n = 120
    df = pd.DataFrame({"t": rng.integers(1, 40, n), "e": rng.integers(0, 3, n),
                       "age": rng.choice(["adult", "child", "older"], n),
                       "x": rng.normal(size=n)})
    df["e1"] = (df["e"] > 0).astype(int)
    fit = cox(df, "t", "e1", ["x", "age"])
    assert list(fit.summary.index) == ["x", "age[T.child]", "age[T.older]"]
    assert any("'adult'" in n and "reference" in n for n in fit.notes)
    # the same fit with the indicators made by hand
    hand = df.assign(child=(df["age"] == "child").astype(int), older=(df["age"] == "older").astype(int))
    np.testing.assert_allclose(fit.summary["coef"], cox(hand, "t", "e1", ["x", "child", "older"]).summary["coef"],
                               rtol=1e-10)
    assert fit.ph_test().loc["age", "df"] == 2
    # a Categorical's order sets the reference
    cat = df.assign(age=pd.Categorical(df["age"], categories=["older", "adult", "child"]))
    assert list(cox(cat, "t", "e1", ["age"]).summary.index) == ["age[T.adult]", "age[T.child]"]
    fg = fine_gray(df, "t", "e", 1, ["age"])
    assert list(fg.summary.index) == ["age[T.child]", "age[T.older]"]
    with pytest.raises(ValueError, match=r"constant.*\bage\b"):
        cox(df.assign(age="adult"), "t", "e1", ["x", "age"])
    with pytest.raises(ValueError, match=r"^covariate 'when' is neither numeric nor text") as exc:
        cox(df.assign(when=pd.Timestamp("2026-01-01")), "t", "e1", ["when"])
    assert "\n" not in str(exc.value)
    with pytest.raises(ValueError, match=r"covariate 'mixed'"):
        fine_gray(df.assign(mixed=["a", 1] * (n // 2)), "t", "e", 1, ["mixed"])


def test_aalen_johansen_at_carries_the_curve_and_counts_events_between_times():
    df = frame("""
        t  e  g
        2  1  a
        3  2  a
        5  1  a
        6  0  a
        4  1  b
    """)
    res = aalen_johansen(df, "t", "e", group="g")
    at = res.at([1, 2, 5, 10])
    a1 = at[(at["group"] == "a") & (at["cause"] == 1)]
    assert a1["cif"].tolist() == pytest.approx([0, 0.25, 0.25 + 0.5 * 0.5, 0.5])
    assert a1["n_event"].tolist() == [0, 1, 1, 0]
    assert a1["n_risk"].tolist() == [4, 4, 2, 0]
    b2 = at[(at["group"] == "b") & (at["cause"] == 2)]
    assert b2["cif"].tolist() == [0, 0, 0, 0]


def test_frailty_variance_without_covariates_starts_from_the_null_partial_likelihood():
    """With no covariates the frailty search starts from the Cox partial likelihood of no
    covariates (it failed on an unbound import before), which is any Cox model's at beta = 0."""
    from pipeline.stats import frailty_variance

    rng = np.random.default_rng(3)
    n = 400
    d = pd.DataFrame({"t": rng.exponential(1, n).round(1) + 0.1, "e": rng.integers(0, 2, n),
                      "cl": rng.integers(0, 10, n), "x": rng.normal(size=n),
                      "s": rng.integers(0, 2, n)})
    f = frailty_variance(d, "t", "e", [], "cl", strata="s").summary.iloc[0]
    np.testing.assert_allclose(f.loglik_0, cox(d, "t", "e", ["x"], strata="s").loglik[0],
                               rtol=1e-12)
    assert f.loglik >= f.loglik_0 and 0 <= f.lower <= f.theta <= f.upper


@pytest.mark.parametrize("weighted", [False, True])
def test_efron_coefficients_from_precomputed_steps_are_the_same_to_the_bit(weighted):
    """``coxph._group_coefficients`` with the Efron sub-steps computed once
    (``_efron_steps``, as the frailty fits do) and without them, and its two halves
    ``_efron_first`` and ``_efron_second``, give the same numbers, to the bit, as the
    expansion written out with the mean event weight in every term."""
    from pipeline.stats.coxph import (_efron_first, _efron_second, _efron_steps, _group_coefficients,
                                      _prepare)

    rng = np.random.default_rng(5)
    n = 300
    t, e = rng.integers(1, 30, n).astype(float), rng.random(n) < 0.6
    w = rng.uniform(0.5, 2, n) if weighted else None
    sd = _prepare(rng.normal(size=(n, 1)), t, e, rng.integers(0, 3, n), True, w)
    G = len(sd.g_first)
    S0, E0 = rng.uniform(5, 50, G), rng.uniform(0.5, 2, G)
    idx, starts = sd.ev_g, sd.ev_starts
    start = np.repeat(starts, np.diff(np.r_[starts, len(idx)]))
    f = (np.arange(len(idx)) - start) / sd.d[idx]
    D = S0[idx] - f * E0[idx]
    mw = sd.dw[idx] / sd.d[idx]
    written = [np.bincount(idx, weights=x, minlength=G)
               for x in (mw / D, mw * f / D, mw / D**2, mw * f / D**2, mw * f**2 / D**2)]
    written.append((mw * np.log(D)).sum())
    steps = _efron_steps(sd.d, sd.dw, idx, starts)
    assert (steps[1] is None) == (not weighted)
    for got in (_group_coefficients(S0, E0, sd.d, sd.dw, idx, starts, True),
                _group_coefficients(S0, E0, sd.d, sd.dw, idx, starts, True, steps=steps)):
        for x, y in zip(got, written):
            np.testing.assert_array_equal(x, y)
    a, b = _group_coefficients(S0, E0, sd.d, sd.dw, idx, starts, True, second=False, steps=steps)
    np.testing.assert_array_equal(a, written[0])
    np.testing.assert_array_equal(b, written[1])
    # the first-order sums alone (every evaluation of a frailty fit), the second-order
    # ones later from their D (only for a Newton step)
    a, b, logterm, D1 = _efron_first(S0, E0, idx, steps)
    for x, y in zip((a, b, *_efron_second(D1, idx, steps, G), logterm), written):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("efron,weighted", [(True, False), (True, True), (False, True)])
def test_per_cluster_score_sums_are_the_summed_score_residuals(efron, weighted):
    """``_Terms.cluster_scores`` (the robust variance's per-cluster sums, without the n x p
    residuals) equals the weighted score residuals summed per cluster, to rounding."""
    from pipeline.stats.coxph import _prepare, _Terms

    rng = np.random.default_rng(8)
    n, C = 400, 23
    t, e = rng.integers(1, 40, n).astype(float), rng.random(n) < 0.5
    w = rng.uniform(0.5, 2, n) if weighted else None
    sd = _prepare(rng.normal(size=(n, 3)), t, e, rng.integers(0, 3, n), efron, w)
    cl = rng.integers(0, C, n)
    terms = _Terms(np.array([0.3, -0.2, 0.1]), sd)
    L = terms.score_residuals() * sd.w[:, None]
    want = np.array([L[cl == c].sum(axis=0) for c in range(C)])
    np.testing.assert_allclose(terms.cluster_scores(cl, C), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("efron,weighted", [(True, False), (True, True), (False, True)])
def test_information_from_distinct_covariate_rows_equals_the_sum_over_every_row(efron, weighted):
    """``_Terms.information`` with the rows that share covariate values merged
    (``_Sorted.patterns``, as ``_prepare`` finds them) equals the plain sum over every row
    to rounding, with and without tie-group weights (``ph_test``), and so does a jackknife
    replicate's (the full data's distinct rows, indexed by the kept rows). With every row
    distinct ``_row_patterns`` leaves the plain sum in place (None), and the merged sum
    forced on those rows still equals it."""
    from dataclasses import replace

    from pipeline.stats.coxph import _prepare, _row_patterns, _structure, _Terms

    rng = np.random.default_rng(11)
    n = 400
    t, e = rng.integers(1, 40, n).astype(float), rng.random(n) < 0.5
    w = rng.uniform(0.5, 2, n) if weighted else None
    s = rng.integers(0, 3, n)
    beta = np.array([0.3, -0.2, 0.4])
    repeated = np.c_[rng.integers(0, 2, n), rng.integers(0, 3, n), rng.choice([-1.5, 0.25, 2.0], n)]
    sd = _prepare(repeated.astype(float), t, e, s, efron, w)
    Xu, key = sd.patterns
    assert len(Xu) == len(np.unique(sd.X, axis=0)) <= 18
    np.testing.assert_array_equal(Xu[key], sd.X)
    plain = replace(sd, patterns=None)
    gk = rng.uniform(0.5, 2, len(sd.g_first))
    for weights in (None, gk):
        merged = _Terms(beta, sd).information(weights)
        np.testing.assert_allclose(merged, _Terms(beta, plain).information(weights), rtol=1e-12)
    keep = np.flatnonzero(rng.integers(0, 10, n) != 0)
    args = (sd.X[keep], sd.time[keep], sd.event[keep], sd.strata[keep], sd.order[keep], efron,
            None if w is None else sd.w[keep])
    rep = _structure(*args, centred=True, patterns=(Xu, key[keep]))
    np.testing.assert_allclose(_Terms(beta, rep).information(),
                               _Terms(beta, _structure(*args, centred=True)).information(), rtol=1e-12)

    sd = _prepare(rng.normal(size=(n, 3)), t, e, s, efron, w)
    assert sd.patterns is None and _row_patterns(sd.X[:, :1]) is None
    Xu, key = np.unique(sd.X, axis=0, return_inverse=True)
    assert len(Xu) == n
    forced = replace(sd, patterns=(Xu, key.ravel()))
    np.testing.assert_allclose(_Terms(beta, forced).information(), _Terms(beta, sd).information(),
                               rtol=1e-12)


def test_fine_gray_information_from_distinct_covariate_rows_equals_the_sum_over_every_row():
    """Fine-Gray's information with the rows that share covariate values merged (the
    patterns ``fine_gray`` finds once and its jackknife refits reuse) equals the plain sum
    over every row to rounding, for the full data and for a refit's kept rows."""
    from pipeline.stats.competing import _fg_setup, _FGFixed, _FGTerms
    from pipeline.stats.coxph import _row_patterns

    rng = np.random.default_rng(12)
    n = 500
    t = np.sort(rng.integers(1, 60, n).astype(float))
    e = rng.choice([0, 1, 2], n, p=[0.4, 0.4, 0.2])
    X = np.c_[rng.integers(0, 2, n), rng.integers(0, 3, n), rng.choice([-1.5, 0.25, 2.0], n)].astype(float)
    pat = _row_patterns(X)
    assert pat is not None and len(pat[0]) <= 18
    beta = np.array([0.3, -0.2, 0.4])
    for keep in (np.ones(n, dtype=bool), rng.integers(0, 10, n) != 0):
        args = _fg_setup(X[keep], t[keep], e[keep], 1, ["a", "b", "c"])
        X_, t_, kind, _, uk = args[:5]
        merged = _FGTerms(beta, *args, fixed=_FGFixed(X_, t_, kind, uk, (pat[0], pat[1][keep]))).info
        np.testing.assert_allclose(merged, _FGTerms(beta, *args).info, rtol=1e-12)
