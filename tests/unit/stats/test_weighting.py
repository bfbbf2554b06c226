"""pipeline.stats.propensity, .weighting and .evalue: behaviour R cannot show (errors,
missing values, invariances). Agreement with R is in tests/reference/test_weighting_reference.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.stats import cox, evalue, propensity_weights, weighted_cox, weighted_risk
from pipeline.stats.propensity import rcs_basis
from pipeline.stats.tableone import smd_continuous


@pytest.fixture(scope="module")
def people():
    rng = np.random.default_rng(7)
    n = 600
    x = rng.normal(size=n)
    grp = rng.choice(["a", "b", "c"], size=n)
    site = rng.choice(["s1", "s2"], size=n)
    p = 1 / (1 + np.exp(-(0.8 * x + (grp == "b") - 0.3)))
    arm = np.where(rng.random(n) < p, "od", "uc")
    t = rng.exponential(1 / np.exp(0.5 * x - 0.4 * (arm == "od")))
    e = (t < 1.5).astype(int)
    return pd.DataFrame({"x": x, "grp": grp, "site": site, "arm": arm,
                         "time": np.minimum(t, 1.5), "event": e, "y": (t < 0.7).astype(int)})


def test_weights_of_one_reproduce_the_unweighted_cox_model(people):
    d = people.assign(w=1.0, od=(people["arm"] == "od").astype(int), id=np.arange(len(people)))
    plain = cox(d, "time", "event", ["od", "x"], cluster="id")
    weighted = cox(d, "time", "event", ["od", "x"], weights="w")
    np.testing.assert_allclose(weighted.summary[["coef", "se", "se_naive"]],
                               plain.summary[["coef", "se", "se_naive"]], rtol=1e-12)
    with pytest.raises(ValueError, match="weights > 0"):
        cox(d.assign(w=-1.0), "time", "event", ["od"], weights="w")


def test_unweighted_smd_is_the_table_one_smd_with_a_sign(people):
    ps = propensity_weights(people, "arm", ["x", "grp"], treated_level="od")
    row = ps.balance.table.set_index("term").loc["x"]
    expected = smd_continuous(people["x"], people["arm"], ["od", "uc"])
    assert abs(row["smd_before"]) == pytest.approx(expected, rel=1e-12)
    assert row["mean_treated"] > row["mean_control"] and row["smd_before"] > 0


def test_overlap_weights_balance_the_model_terms_exactly(people):
    ps = propensity_weights(people, "arm", ["x", "grp"], treated_level="od", estimand="ATO")
    assert ps.balance.table["smd_after"].abs().max() < 1e-10
    assert not any(f.startswith("balance") for f in ps.flags)


def test_missing_covariates_get_a_level_or_an_indicator(people):
    d = people.copy()
    d.loc[:19, "x"] = np.nan
    d.loc[20:29, "grp"] = None
    ps = propensity_weights(d, "arm", ["x", "grp"], treated_level="od")
    assert len(ps.weights) == len(d)
    assert "x_missing" in ps.coef.index and "grp(missing)" in ps.coef.index
    assert any("x: 20 missing" in n for n in ps.notes)
    dropped = propensity_weights(d, "arm", ["x", "grp"], treated_level="od", missing="drop")
    assert len(dropped.weights) == len(d) - 30


def test_clear_errors(people):
    with pytest.raises(ValueError, match="both arms"):
        propensity_weights(people.assign(arm="od"), "arm", ["x"], treated_level="od")
    with pytest.raises(ValueError, match="estimand"):
        propensity_weights(people, "arm", ["x"], treated_level="od", estimand="ATC")
    with pytest.raises(ValueError, match="not among the covariates"):
        propensity_weights(people, "arm", ["x"], treated_level="od", splines=["grp"])
    with pytest.raises(ValueError, match="ATE"):
        ps = propensity_weights(people, "arm", ["x"], treated_level="od", estimand="ATT")
        weighted_risk(people, ps, "y", method="aipw")
    with pytest.raises(ValueError, match="inside its confidence interval"):
        evalue(2.0, 2.5, 3.0)


def test_rcs_basis_is_linear_beyond_the_outer_knots():
    knots = [0.0, 1.0, 2.0, 3.0]
    x = np.array([3.0, 4.0, 5.0, 6.0])
    b = rcs_basis(x, knots)
    assert np.allclose(np.diff(b, n=2, axis=0), 0, atol=1e-12)
    assert np.allclose(rcs_basis(np.array([-1.0, 0.0]), knots), 0)


def test_evalue_is_symmetric_and_one_when_the_interval_crosses_the_null():
    a, b = evalue(0.5, 0.3, 0.8), evalue(2.0, 1.25, 1 / 0.3)
    assert a.evalue_estimate == pytest.approx(b.evalue_estimate)
    assert a.evalue_ci == pytest.approx(b.evalue_ci)
    assert evalue(1.3, 0.9, 1.8).evalue_ci == 1.0


def test_the_carried_variance_is_used_for_the_interval(people):
    ps = propensity_weights(people, "arm", ["x", "grp"], strata="site", treated_level="od")
    r = weighted_cox(people, ps, "time", "event")
    s = r.summary.iloc[0]
    assert s["se"] != s["se_known"]
    assert np.log(s["upper"] / s["estimate"]) == pytest.approx(1.959964 * s["se"], rel=1e-6)
