"""The pure functions of pipeline/federated/: Table 1 sufficient statistics and their
pooling, quantiles from people per value, SMDs from sums, rounding, fidelity pooling.
Each is checked against the row-level computation it replaces (pipeline.stats,
numpy), on random data split into random sites."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import federated
from pipeline.stats import table_one


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 12), min_size=1, max_size=80),
       st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]))
def test_quantiles_from_people_per_value_equal_numpy_on_the_rows(xs, p):
    vals, counts = np.unique(xs, return_counts=True)
    got = federated.freq_quantiles(vals, counts, [p])[0]
    assert got == pytest.approx(float(np.quantile(np.array(xs, float), p)), abs=1e-12)


def test_quantiles_of_nothing_are_nan_and_zero_counts_are_ignored():
    assert all(np.isnan(federated.freq_quantiles([], [])))
    assert federated.freq_quantiles([1, 5, 9], [2, 0, 2], [0.5]) == [5.0]  # (1 + 9) / 2


def _persons(rng, n):
    d = pd.DataFrame({
        "arm": rng.choice(["open_dialogue", "usual_care"], n),
        "sex": rng.choice(["female", "male", "other", None], n, p=[0.45, 0.45, 0.05, 0.05]),
        "age_at_index": rng.normal(32, 10, n).round(),
        "prior_admissions_2y": rng.poisson(1.2, n).astype(float),
        "diagnosis_group": rng.choice(["psychosis", "bipolar", "depression", "other"], n),
    })
    d.loc[rng.random(n) < 0.05, "age_at_index"] = np.nan
    d.loc[rng.random(n) < 0.05, "prior_admissions_2y"] = np.nan
    return d


VARIABLES = ["sex", "age_at_index", "prior_admissions_2y", "diagnosis_group"]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6))
def test_table_one_pooled_from_site_sums_equals_table_one_of_all_rows(seed, k):
    """Split random people into k sites (a site may lack a level or be tiny): counts exact,
    means, SDs and SMDs to 1e-9, median and quartiles of the whole-number non-normal
    variable exact."""
    rng = np.random.default_rng(seed)
    d = _persons(rng, int(rng.integers(20, 300)))
    site = rng.integers(0, k, len(d))
    frames = [federated.table_one_stats(d[site == s], VARIABLES, ["prior_admissions_2y"])
              for s in range(k) if (site == s).any()]
    got = federated.pool_table_one(frames, VARIABLES, ["prior_admissions_2y"])
    ref = table_one(d, "arm", VARIABLES, categorical=["sex", "diagnosis_group"],
                    nonnormal=["prior_admissions_2y"])
    key = ["variable", "level", "group"]
    a, b = ref.table.set_index(key).sort_index(), got.table.set_index(key).sort_index()
    assert list(a.index) == list(b.index)
    for col in ("n", "missing", "count"):
        np.testing.assert_array_equal(b[col].to_numpy(float), a[col].to_numpy(float))
    for col in ("pct", "mean", "sd"):
        np.testing.assert_allclose(b[col].to_numpy(float), a[col].to_numpy(float), rtol=1e-9)
    nn = a["kind"] == "nonnormal"
    for col in ("median", "q1", "q3"):
        np.testing.assert_array_equal(b.loc[nn, col].to_numpy(float), a.loc[nn, col].to_numpy(float))
    np.testing.assert_allclose(got.smd[ref.smd.index].to_numpy(), ref.smd.to_numpy(), rtol=1e-9)
    assert got.nonnormal == ["prior_admissions_2y"] and got.notes == []


def test_a_non_whole_nonnormal_variable_is_pooled_as_mean_and_sd_and_says_so():
    rng = np.random.default_rng(3)
    d = _persons(rng, 120)
    d["prior_admissions_2y"] += 0.5
    t = federated.table_one_stats(d, VARIABLES, ["prior_admissions_2y"])
    assert not (t["kind"] == "value").any()
    got = federated.pool_table_one([t], VARIABLES, ["prior_admissions_2y"])
    assert got.nonnormal == []
    assert "median cannot be pooled" in got.notes[0]
    row = got.table[got.table["variable"] == "prior_admissions_2y"]
    assert (row["kind"] == "normal").all() and row["median"].isna().all()


def test_table_one_stats_rows_add_up_to_the_arms():
    rng = np.random.default_rng(7)
    d = _persons(rng, 90)
    t = federated.table_one_stats(d, VARIABLES, ["prior_admissions_2y"])
    assert list(t.columns) == list(federated.BUNDLE_SCHEMA[federated.TABLE_ONE])
    people = t[t["kind"] == "people"].set_index("arm")["n"]
    assert people.to_dict() == d.groupby("arm").size().to_dict()
    for (var, arm), g in t[t["kind"] != "people"].groupby(["variable", "arm"]):
        main = g[g["kind"].isin(["level", "continuous", "missing"])]["n"].sum()
        assert main == people[arm], var
        vals = g[g["kind"] == "value"]
        if len(vals):
            c = g[g["kind"] == "continuous"].iloc[0]
            assert vals["n"].sum() == c["n"]
            x = vals["level"].astype(float)
            assert (x * vals["n"]).sum() == pytest.approx(c["value_sum"], rel=1e-12)


@pytest.mark.parametrize("n,base,want", [(0, 5, 0), (2, 5, 0), (3, 5, 5), (12, 5, 10),
                                         (13, 5, 15), (17, 10, 20), (14, 10, 10), (7, 1, 7)])
def test_round_half_up(n, base, want):
    assert federated.round_half_up(n, base) == want


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=40), st.integers(0, 50))
def test_rescaled_sums_keep_the_mean_and_sd(xs, n_new):
    x = np.array(xs)
    s, s2 = federated.rescale_moments(len(x), x.sum(), (x * x).sum(), n_new)
    if n_new == 0:
        assert (s, s2) == (0.0, 0.0)
        return
    assert s / n_new == pytest.approx(x.mean(), abs=1e-12)
    if n_new > 1 and len(x) > 1:
        assert (s2 - s * s / n_new) / (n_new - 1) == pytest.approx(x.var(ddof=1), abs=1e-9)


def test_adds_up_exactly_or_within_the_rounding():
    assert federated._adds_up(10, [4, 6], 1) and not federated._adds_up(10, [4, 7], 1)
    # 3 parts of 2.4 each round to 0 while 7.2 rounds to 5: within (3 + 1) * 5 / 2
    assert federated._adds_up(5, [0, 0, 0], 5) and not federated._adds_up(15, [0, 0, 0], 5)


def test_pool_fidelity_sums_numerators_and_denominators_and_means_the_hours():
    site = lambda n24, n, hours: pd.DataFrame([  # noqa: E731
        dict(indicator="p1_within_24h", kind="binary", arm="open_dialogue", n_referrals=n,
             value_sum=float(n24), value_sum2=float(n24)),
        dict(indicator="p1_hours_to_first_meeting", kind="hours", arm="open_dialogue",
             n_referrals=len(hours), value_sum=float(sum(hours)),
             value_sum2=float(sum(h * h for h in hours)))])
    cells, exact = federated.pool_fidelity({"A": site(3, 10, [1, 2, 30]),
                                            "B": site(8, 20, [5, 100])}, 0.95)
    r = exact.set_index(["site_id", "arm", "indicator"])
    allp = r.loc[("all", "open_dialogue", "p1_within_24h")]
    assert (allp.n, allp.events, allp.estimate) == (30, 11, pytest.approx(11 / 30))
    h = r.loc[("all", "all", "p1_hours_to_first_meeting")]
    assert h.estimate == pytest.approx(138 / 5) and "mean" in h.label
    x = np.array([1, 2, 30, 5, 100.0])
    half = 2.7764451051977987 * x.std(ddof=1) / np.sqrt(5)  # t(4) 97.5% quantile
    assert (h.lower, h.upper) == (pytest.approx(x.mean() - half), pytest.approx(x.mean() + half))
    assert set(cells["site_id"]) == {"A", "B", "all"} and set(cells["arm"]) == {"open_dialogue", "all"}
