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
    pois = rate_ratio(people, "admissions", "years", ["arm"])
    nb = rate_ratio(people, "admissions", "years", ["arm"], family="negbin")
    assert nb.theta > 5
    assert nb.summary.loc["armtau", "rr"] == pytest.approx(pois.summary.loc["armtau", "rr"], rel=0.02)
