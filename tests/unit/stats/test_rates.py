"""Edge cases of pipeline.stats.rates not covered by the R goldens."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.stats import rate_ratio


@pytest.fixture
def people():
    rng = np.random.default_rng(7)
    n = 200
    df = pd.DataFrame({"arm": rng.choice(["od", "tau"], n), "years": rng.uniform(0.2, 2.0, n),
                       "site": rng.choice(list("ABCDE"), n)})
    df["admissions"] = rng.poisson(0.8 * df.years * np.where(df.arm == "od", 0.6, 1.0))
    return df


def test_two_group_poisson_rate_ratio_is_the_ratio_of_crude_rates(people):
    # with a single binary covariate the Poisson MLE is the ratio of crude rates
    res = rate_ratio(people, "admissions", "years", ["arm"])
    crude = people.groupby("arm").admissions.sum() / people.groupby("arm").years.sum()
    assert res.summary.loc["armtau", "rr"] == pytest.approx(crude["tau"] / crude["od"], rel=1e-10)


def test_rows_with_missing_values_or_no_person_time_are_dropped_with_notes(people):
    df = people.copy()
    df.loc[0, "arm"] = None
    df.loc[1, "years"] = 0.0
    res = rate_ratio(df, "admissions", "years", ["arm"])
    assert res.n == len(df) - 2
    assert any("missing values in ['arm']" in n for n in res.notes)
    assert any("years <= 0" in n for n in res.notes)


def test_non_integer_counts_are_refused(people):
    df = people.assign(admissions=people.admissions + 0.5)
    with pytest.raises(ValueError, match="non-negative integer"):
        rate_ratio(df, "admissions", "years", ["arm"])


def test_missing_column_is_named(people):
    with pytest.raises(KeyError, match="ward"):
        rate_ratio(people, "admissions", "years", ["arm", "ward"])


def test_one_cluster_is_refused(people):
    with pytest.raises(ValueError, match="two clusters"):
        rate_ratio(people.assign(site="A"), "admissions", "years", ["arm"], cluster="site")


def test_negative_binomial_on_equidispersed_counts_has_large_theta_and_poisson_estimates(people):
    """Poisson counts: here theta's likelihood rises to the search's bound (1e7, noted), where
    the NB working weights differ from Poisson's by mu / theta < 1e-6, so the rate ratio
    equals Poisson's to that order."""
    pois = rate_ratio(people, "admissions", "years", ["arm"])
    nb = rate_ratio(people, "admissions", "years", ["arm"], family="negbin")
    assert nb.theta >= 1e7 and "no finite maximum" in nb.notes[0]
    assert nb.summary.loc["armtau", "rr"] == pytest.approx(pois.summary.loc["armtau", "rr"], rel=1e-6)


def _underdispersed(seed: int = 8) -> pd.DataFrame:
    """Binomial counts (variance below the mean): theta's likelihood rises to infinity."""
    rng = np.random.default_rng(seed)
    d = pd.DataFrame({"x": rng.integers(0, 2, 1000), "t": rng.uniform(0.5, 2, 1000)})
    return d.assign(y=rng.binomial(2, 0.05 * d.t))


def test_underdispersed_counts_end_at_the_poisson_fit_with_a_note_not_an_error():
    # seed 8 made Brent's method stop on a NaN: the textbook theta score is rounding noise
    # (about 1e-12, sign random) above theta ~ 1e6 on these data
    d = _underdispersed()
    nb = rate_ratio(d, "y", "t", ["x"], family="negbin")
    pois = rate_ratio(d, "y", "t", ["x"])
    assert "no finite maximum" in nb.notes[0] and np.isnan(nb.se_theta)
    np.testing.assert_allclose(nb.summary.coef, pois.summary.coef, rtol=0, atol=1e-8)


def test_theta_score_keeps_its_sign_at_large_theta():
    """d log L / d theta ~ -sum((y - mu)^2 - y) / (2 theta^2) as theta grows: positive for
    underdispersed counts, however large theta is."""
    from pipeline.stats.rates import _theta_score

    d = _underdispersed()
    y = d.y.to_numpy(float)
    mu = np.full(len(y), y.mean())
    lead = -np.sum((y - mu) ** 2 - y) / 2
    assert lead > 0
    for th in (1e4, 1e6, 1e8):
        assert _theta_score(th, y, mu) * th**2 == pytest.approx(lead, rel=1e-2 + 1e2 / th)


def test_a_level_without_events_leaves_the_other_terms_as_without_its_rows():
    """Rows with no events whose level's coefficient runs to minus infinity add nothing to
    the likelihood in the limit: the arm's rate ratio, its standard error and theta equal
    the fit without those rows. Here the reference site has no events, so the intercept
    and every other site's coefficient have no finite estimate (noted). Seed 8 raised
    before (a NaN in Brent's method, then a singular Newton system)."""
    rng = np.random.default_rng(8)
    n = 900
    d = pd.DataFrame({"site": rng.choice(list("ABCDE"), n), "arm": rng.choice(["od", "uc"], n),
                      "py": rng.uniform(0.3, 2.0, n)})
    mu = 0.15 * d.py * np.where(d.arm == "od", 0.6, 1.0)
    d["y"] = np.where(d.site == "A", 0, rng.negative_binomial(1.5, 1.5 / (1.5 + mu)))
    res = rate_ratio(d, "y", "py", ["arm", "site"], family="negbin")
    ref = rate_ratio(d[d.site != "A"], "y", "py", ["arm", "site"], family="negbin")
    for col in ("coef", "se"):
        assert res.summary.loc["armuc", col] == pytest.approx(ref.summary.loc["armuc", col], rel=1e-6)
    assert res.theta == pytest.approx(ref.theta, rel=1e-6)
    assert any("No finite estimate for (Intercept), siteB" in note for note in res.notes)
    assert res.summary.loc[["(Intercept)", "siteB"], "se"].isna().all()


def test_a_rare_level_without_events_has_no_variance_and_leaves_the_others_as_without_it():
    """A rare level (5 of 900 rows) without events: its information is ~1e-13 of the
    others' once the columns are at unit norm, which inv inverted without complaint (a
    finite SE for a coefficient at minus infinity); it is now not estimable (noted), and
    the arm's rate ratio and SE are the fit's without its rows."""
    rng = np.random.default_rng(4)
    n = 900
    d = pd.DataFrame({"site": rng.choice(list("ABCD"), n), "arm": rng.choice(["od", "uc"], n),
                      "py": rng.uniform(0.3, 2.0, n)})
    d.loc[:4, "site"] = "E"
    mu = 0.4 * d.py * np.where(d.arm == "od", 0.6, 1.0)
    d["y"] = np.where(d.site == "E", 0, rng.poisson(mu))
    res = rate_ratio(d, "y", "py", ["arm", "site"], family="poisson")
    ref = rate_ratio(d[d.site != "E"], "y", "py", ["arm", "site"], family="poisson")
    assert np.isnan(res.summary.loc["siteE", "se"])
    assert any("No finite estimate for siteE" in note for note in res.notes)
    for col in ("coef", "se"):
        assert res.summary.loc["armuc", col] == pytest.approx(ref.summary.loc["armuc", col], rel=1e-9)
