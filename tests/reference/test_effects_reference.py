"""pipeline.stats rates, binary and tableone against R (goldens in tests/reference/effects/).

R (see make_effects_goldens.R for the full script)::

    glm(Claims ~ District + Group + Age + offset(log(Holders)), family = poisson,
        data = Insurance)                          # unordered factors
    glm.nb(Days ~ Eth + Sex + Age + Lrn, data = quine)
    sandwich::vcovCL(fit, cluster = ~site, type = "HC0")   # and "HC1"
    prop.test(x, n, correct = FALSE)$conf.int      # Wilson; Newcombe method 10 by hand
    # Table 1 on survival::pbc with tableone's formulas coded by hand (Yang & Dalton 2012)

Numbers are compared to 1e-6 relative (absolute floor 1e-12 for values near zero);
counts exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.stats import odds_ratio, rate_ratio, risk_difference, risk_ratio, table_one

HERE = Path(__file__).parent / "effects"
GOLD = json.loads((HERE / "effects_goldens.json").read_text())
RTOL, ATOL = 1e-6, 1e-12


def close(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------------------ rate ratios


def _compare_glm(summary, gold):
    assert list(summary.index) == gold["terms"]
    for col in ("coef", "se", "rr", "rr_lower", "rr_upper", "z", "p"):
        close(summary[col].to_numpy(), gold[col])


@pytest.fixture(scope="module")
def insurance():
    g = GOLD["poisson"]
    df = pd.read_csv(HERE / g["data"])
    for col, levels in g["levels"].items():
        df[col] = pd.Categorical(df[col].astype(str), categories=levels)
    return df


@pytest.fixture(scope="module")
def quine():
    return pd.read_csv(HERE / GOLD["negbin"]["data"])


@pytest.mark.parametrize("variant", ["model", "model_90", "cluster_HC0", "cluster_HC1"])
def test_poisson_rate_ratios_match_glm(insurance, variant):
    g = GOLD["poisson"]
    kw = {"conf_level": 0.90} if variant == "model_90" else {}
    if variant.startswith("cluster"):
        kw = {"cluster": "site", "cluster_type": variant.split("_")[1]}
    res = rate_ratio(insurance, g["count"], g["person_time"], g["covariates"], **kw)
    _compare_glm(res.summary, g[variant])
    close(res.loglik, g["loglik"])
    assert np.isnan(res.theta)


@pytest.mark.parametrize("variant", ["model", "cluster_HC0", "cluster_HC1", "cluster_jackknife"])
def test_negbin_rate_ratios_match_glm_nb(quine, variant):
    g = GOLD["negbin"]
    kw = {"cluster": "site", "cluster_type": variant.split("_")[1]} if variant != "model" else {}
    res = rate_ratio(quine, g["count"], None, g["covariates"], family="negbin", **kw)
    _compare_glm(res.summary, g[variant])
    close(res.theta, g["theta"])
    close(res.se_theta, g["se_theta"])
    close(res.loglik, g["loglik"])


def test_negbin_with_a_level_without_events_matches_glm_nb_on_the_other_terms(quine):
    """R: quine with ``Days`` set to 0 for age group F3, ``glm.nb(Days ~ Eth + Sex + Age +
    Lrn)``. F3's coefficient has its maximum at minus infinity (R stops near -40 with a
    standard error of 1e7; the fit here runs further): every other coefficient, its
    standard error, and theta agree."""
    g = GOLD["negbin_level_without_events"]
    z = g["zero_level"]
    q = quine.assign(Days=quine["Days"].where(quine[z["column"]] != z["level"], 0))
    res = rate_ratio(q, "Days", None, GOLD["negbin"]["covariates"], family="negbin")
    m = g["model"]
    flat = m["terms"].index(f"{z['column']}{z['level']}")
    keep = [i for i in range(len(m["terms"])) if i != flat]
    s = res.summary.iloc[keep]
    for col in ("coef", "se", "rr", "rr_lower", "rr_upper", "z", "p"):
        close(s[col].to_numpy(), [m[col][i] for i in keep])
    close(res.theta, g["theta"])
    assert res.summary["coef"].iloc[flat] < -30


# ------------------------------------------------------------------------ binary effects


def _binary_case(case, res_rd, res_rr, res_or):
    arms = res_rd.arms
    close(arms.risk.to_numpy(), [case["p1"], case["p0"]])
    close(arms[["lower", "upper"]].to_numpy(), [case["wilson1"], case["wilson0"]])
    wald, newc = res_rd.summary.iloc[0], res_rd.summary.iloc[1]
    assert (wald.method, newc.method) == ("Wald", "Newcombe hybrid score")
    close(wald[["estimate", "se", "z", "p"]].to_numpy(float),
          [case["rd"], case["rd_se"], case["rd_z"], case["rd_p"]])
    close(wald[["lower", "upper"]].to_numpy(float), case["rd_wald"])
    close(newc[["estimate", "lower", "upper"]].to_numpy(float), [case["rd"], *case["rd_newcombe"]])
    rr = res_rr.summary.iloc[0]
    close(rr[["estimate", "se", "lower", "upper", "p"]].to_numpy(float),
          [case["rr"], case["log_rr_se"], *case["rr_ci"], case["rr_p"]])
    o = res_or.summary.iloc[0]
    close(o[["estimate", "se", "lower", "upper", "p"]].to_numpy(float),
          [case["or"], case["log_or_se"], *case["or_ci"], case["or_p"]])


@pytest.mark.parametrize("conf", ["conf95", "conf90"])
def test_binary_effects_match_hand_coded_r(conf):
    g = GOLD["binary"]
    df = pd.read_csv(HERE / g["data"])
    level = 0.95 if conf == "conf95" else 0.90
    args = (df, g["outcome"], g["group"], g["reference"])
    rd, rr, orr = (f(*args, conf_level=level) for f in (risk_difference, risk_ratio, odds_ratio))
    assert list(rd.arms.group) == [g["comparison"], g["reference"]]
    assert list(rd.arms.events) == [g["x1"], g["x0"]] and list(rd.arms.n) == [g["n1"], g["n0"]]
    _binary_case(g[conf], rd, rr, orr)


@pytest.mark.parametrize("icc", [None, 0.05])
def test_cluster_adjusted_binary_effects_match_hand_coded_r(icc):
    g = GOLD["binary_cluster"]
    df = pd.read_csv(HERE / g["data"])
    args = (df, g["outcome"], g["group"], g["reference"])
    kw = {"cluster": g["cluster"], "icc": icc}
    rd, rr, orr = (f(*args, **kw) for f in (risk_difference, risk_ratio, odds_ratio))
    if icc is None:
        close(rd.icc, g["icc"])
        close(rd.arms.design_effect.to_numpy(),
              [g["design_effect"]["comparison"], g["design_effect"]["reference"]])
        _binary_case(g["conf95"], rd, rr, orr)
    else:
        assert rd.icc == GOLD["binary_cluster_icc005"]["icc"]
        _binary_case(GOLD["binary_cluster_icc005"]["conf95"], rd, rr, orr)


# ------------------------------------------------------------------------ Table 1


@pytest.mark.parametrize("which", ["table_one", "table_one_3groups"])
def test_table_one_matches_tableone_formulas(which):
    g = GOLD[which]
    df = pd.read_csv(HERE / "pbc.csv")
    if which == "table_one_3groups":
        df["edema"] = "edema " + df["edema"].map("{:g}".format)
    variables = g["continuous"] + g["nonnormal"] + g["categorical"]
    res = table_one(df, g["group"], variables, categorical=g["categorical"],
                    nonnormal=g["nonnormal"])
    assert res.groups == g["groups"]
    for grp, n in g["n"].items():
        assert res.formatted.loc["n", grp] == str(n)
    t = res.table.set_index(["variable", "level", "group"])
    for row in g["rows"]:
        got = t.loc[(row["variable"], row.get("level", ""), row["group"])]
        if "level" in row:
            assert (got["count"], got["missing"]) == (row["count"], row["missing"])
            close(got["pct"], row["pct"])
        else:
            assert (got["n"], got["missing"]) == (row["n"], row["missing"])
            close(got[["mean", "sd", "median", "q1", "q3"]].to_numpy(float),
                  [row[k] for k in ("mean", "sd", "median", "q1", "q3")])
    n_expected = len(g["rows"])
    assert len(res.table) == n_expected
    close(res.smd[list(g["smd"])].to_numpy(), list(g["smd"].values()))


def test_categorical_smd_with_a_level_in_one_group_only_uses_the_generalised_inverse():
    """R: ``smd_cat`` of make_effects_goldens.R, i.e. ``MASS::ginv`` of the singular S
    (level 'c' only in group B), as tableone computes it."""
    g = GOLD["smd_singular"]
    res = table_one(pd.DataFrame({"g": g["g"], "x": g["x"]}), "g", ["x"])
    close(res.smd["x"], g["smd"])
