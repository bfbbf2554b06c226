"""Propensity weights, balance, weighted outcomes and E-values against R.

Goldens from ``tests/reference/weighting/make_weighting_goldens.R`` (survival 3.5, survey,
sandwich, numDeriv); the R call of each case is in the script and quoted below::

    glm(hormon ~ age + meno + size + nodes + pgr + er + chemo + year + factor(grade), binomial)
    coxph(Surv(rtime, recur) ~ hormon, weights = w, cluster = year)     # robust se
    svycoxph(Surv(rtime, recur) ~ hormon, svydesign(ids = ~year, weights = ~w))
    survfit(Surv(rtime, recur) ~ hormon, weights = w, influence = TRUE)  # IJ se
    survfit(Surv(etime, factor(ev)) ~ hormon, weights = w, influence = TRUE)
    glm(recur ~ hormon + offset(log(years)), quasipoisson, weights = w); sandwich::vcovHC
    glm(employed ~ treat, gaussian / quasipoisson / quasibinomial, weights = w)  # lalonde
    # carried variance: dfbeta (or estfun %*% bread / n) + phi %*% t(numDeriv::jacobian(...))

Every estimate and standard error is compared to 1e-6 relative: they are deterministic,
and the fits converge to 1e-12 on both sides. The carried standard errors rest on
numerical derivatives on both sides (central differences here, numDeriv's Richardson
extrapolation in R), which agree to 1e-7 (see ``pipeline.stats.weighting._jacobian``), so
1e-6 holds for them too. Balance statistics that are zero up to rounding (overlap weights
balance the model's covariates exactly) are compared with an absolute 1e-10.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.stats.coxph import cox
from pipeline.stats.evalues import evalue
from pipeline.stats.propensity import propensity_weights
from pipeline.stats.weighting import weighted_cox, weighted_curves, weighted_rate_ratio, weighted_risk

HERE = Path(__file__).parent / "weighting"
GOLD = json.loads((HERE / "weighting_goldens.json").read_text())
RTOL = 1e-6


def close(actual, expected, rtol=RTOL, atol=0.0):
    exp = np.array([np.nan if v is None else v for v in np.atleast_1d(expected)], float)
    np.testing.assert_allclose(np.asarray(actual, float), exp, rtol=rtol, atol=atol)


@pytest.fixture(scope="module")
def rot():
    return pd.read_csv(HERE / "data" / "rotterdam.csv")


@pytest.fixture(scope="module")
def lal():
    return pd.read_csv(HERE / "data" / "lalonde.csv")


@pytest.fixture(scope="module")
def ps(rot):
    g = GOLD["ps_linear"]
    return {e: propensity_weights(rot, g["treatment"], g["covariates"], strata=g["strata"],
                                  estimand=e) for e in ("ATE", "ATT", "ATO")}


# ------------------------------------------------------------------ propensity and weights

def test_propensity_model_and_weights_match_glm(ps):
    """R: ``glm(hormon ~ ... + factor(grade), binomial)``; weights by WeightIt's formulas
    (ATE stabilised by the share treated, ATT, overlap)."""
    g = GOLD["ps_linear"]
    p = ps["ATE"]
    assert list(p.coef.index) == [t.replace("grade_f", "grade") for t in g["terms"]]
    close(p.coef["coef"], g["coef"])
    close(p.coef["se"], g["se"])
    close(p.ps, g["ps"])
    for e in ("ATE", "ATT", "ATO"):
        close(ps[e].weights, g[f"w_{e}"])


def test_unstabilised_ate_weights(rot):
    g = GOLD["ps_linear"]
    p = propensity_weights(rot, "hormon", g["covariates"], strata="grade", stabilised=False)
    close(p.weights, g["w_ATE_unstabilised"])


def test_spline_and_interaction_terms_give_the_same_scores_as_ns(rot):
    """R: ``ns(age, knots = kn[2:3], Boundary.knots = kn[c(1, 4)]) + ... + meno:nodes``,
    knots at Harrell's quantiles (.05, .35, .65, .95): the restricted cubic spline basis
    spans the same space, so the fitted scores agree."""
    g = GOLD["ps_linear"]
    p = propensity_weights(rot, "hormon", g["covariates"], strata="grade", splines={"age": 4},
                           interactions=[("meno", "nodes")])
    close(p.ps, GOLD["ps_spline"]["ps"])
    assert "rcs(age)1" in p.coef.index and "meno:nodes" in p.coef.index


def test_trimming_drops_the_same_people_and_refits(rot):
    """R: keep scores in [0.05, 0.95], refit the same glm on the people kept."""
    g = GOLD["ps_linear"]
    p = propensity_weights(rot, "hormon", g["covariates"], strata="grade", trim=0.05)
    assert np.flatnonzero(p.kept.to_numpy()).tolist() == GOLD["ps_trimmed"]["kept"]
    close(p.coef["coef"], GOLD["ps_trimmed"]["coef"])
    close(p.ps, GOLD["ps_trimmed"]["ps"])
    assert any("trimmed" in n for n in p.notes)


@pytest.mark.parametrize("estimand", ["ATE", "ATT", "ATO"])
def test_balance_statistics_match_cobalt_formulas(ps, estimand):
    """SMD before and after weighting, variance ratios and Kish ESS as cobalt computes
    them (coded in the R script: pooled unweighted SD, treated SD for the ATT)."""
    g = GOLD["balance"][estimand]
    tab = ps[estimand].balance.table
    assert tab["term"].tolist() == g["term"]
    close(tab["smd_before"], g["smd_before"])
    close(tab["smd_after"], g["smd_after"], atol=1e-10)
    close(tab["vr_before"], g["vr_before"])
    close(tab["vr_after"], g["vr_after"])
    close(ps[estimand].ess["ess"], g["ess"])


# ------------------------------------------------------------------ Cox

COX_CASES = {"ATE_efron": ("ATE", "efron", None), "ATE_breslow": ("ATE", "breslow", None),
             "ATE_efron_cluster": ("ATE", "efron", "year"), "ATT_efron": ("ATT", "efron", None),
             "ATO_efron_cluster": ("ATO", "efron", "year")}


@pytest.mark.parametrize("case", list(COX_CASES))
def test_weighted_cox_matches_coxph_and_the_carried_variance(rot, ps, case):
    """R: ``coxph(Surv(rtime, recur) ~ hormon, weights = w[, cluster = year])``: coefficient,
    robust and naive se; ``se`` adds the propensity model (dfbeta + phi J', J by numDeriv)."""
    estimand, ties, cluster = COX_CASES[case]
    g = GOLD["cox"][case]
    r = weighted_cox(rot, ps[estimand], "rtime", "recur", cluster=cluster, ties=ties)
    s = r.summary.iloc[0]
    close(np.log(s["estimate"]), g["coef"])
    close(s["se_known"], g["se_robust"])
    close(s["se_known"], g["se_known"])
    close(r.fit.summary["se_naive"], g["se_naive"])
    close(r.fit.loglik, g["loglik"])
    close(s["se"], g["se_carried"])


def test_cox_weights_with_strata_covariates_and_dfbeta(rot, ps):
    """R: ``coxph(Surv(rtime, recur) ~ hormon + age + nodes + strata(grade), weights = w,
    cluster = year)`` and ``residuals(fit, "dfbeta", weighted = TRUE)``."""
    g = GOLD["cox_strata"]
    d = rot.assign(w=ps["ATE"].weights)
    f = cox(d, "rtime", "recur", ["hormon", "age", "nodes"], strata="grade", weights="w",
            cluster="year")
    close(f.summary["coef"], g["coef"])
    close(f.summary["se"], g["se"])
    close(f.summary["se_naive"], g["se_naive"])
    close(f.dfbeta.to_numpy()[:5], g["dfbeta_first"])


def test_svycoxph_is_the_cr1_corrected_robust_variance(rot, ps):
    """R: ``svycoxph(..., svydesign(ids = ~year, weights = ~w))``: its variance is the
    robust one times G / (G - 1), i.e. ``cox(..., small_sample="cr1")``."""
    g = GOLD["svycoxph"]
    d = rot.assign(w=ps["ATE"].weights)
    f = cox(d, "rtime", "recur", ["hormon"], weights="w", cluster="year", small_sample="cr1")
    close(f.summary["coef"], g["coef"])
    close(f.summary["se"], g["se"])
    assert f.n_clusters == g["n_clusters"]


# ------------------------------------------------------------------ curves

CURVE_CASES = {"km_ATE": ("ATE", False, None), "km_ATE_cluster": ("ATE", False, "year"),
               "aj_ATE": ("ATE", True, None), "aj_ATO": ("ATO", True, None)}


@pytest.mark.parametrize("case", list(CURVE_CASES))
def test_weighted_curves_match_survfit(rot, ps, case):
    """R: ``survfit(Surv(rtime, recur) ~ hormon, weights = w[, cluster = year])`` (Kaplan-
    Meier) and ``survfit(Surv(etime, factor(ev)) ~ hormon, weights = w)`` (Aalen-Johansen,
    cause 1): estimates, infinitesimal-jackknife se (survfit's std.err), weighted numbers
    at risk (Kaplan-Meier), and the se with the propensity model carried."""
    estimand, competing, cluster = CURVE_CASES[case]
    r = weighted_curves(rot, ps[estimand], "etime" if competing else "rtime",
                        "ev" if competing else "recur", cause=1 if competing else None,
                        cluster=cluster, labels=("hormon1", "hormon0"))
    for lab in ("hormon0", "hormon1"):
        g = GOLD["curves"][case][lab]
        tab = r.table[r.table["group"] == lab]
        close(tab["time"], g["time"])
        close(tab["estimate"], g["estimate"])
        se_survfit = np.array(g["se_survfit"], float) * (np.array(g["estimate"]) if g["logse"] else 1)
        close(tab["se_known"], se_survfit, atol=1e-15)
        close(tab["se_known"], g["se_known"], atol=1e-15)
        close(tab["se"], g["se_carried"], atol=1e-15)
        if not competing:
            close(tab["n_risk"], g["n_risk"])


def test_risk_difference_at_a_time_is_the_difference_of_the_curves(rot, ps):
    r = weighted_curves(rot, ps["ATE"], "rtime", "recur", times=[1000.0],
                        labels=("hormon1", "hormon0"))
    at = r.at.set_index("measure")
    risk = {}
    for lab in ("hormon1", "hormon0"):
        tab = r.table[(r.table["group"] == lab) & (r.table["time"] <= 1000)]
        risk[lab] = 1 - tab["estimate"].iloc[-1]
        assert at.loc[f"risk {lab}", "estimate"] == pytest.approx(risk[lab], rel=1e-12)
    assert at.loc["risk difference", "estimate"] == pytest.approx(risk["hormon1"] - risk["hormon0"])
    assert at.loc["risk ratio", "estimate"] == pytest.approx(risk["hormon1"] / risk["hormon0"])


# ------------------------------------------------------------------ rates and risks

@pytest.mark.parametrize("case,estimand,cluster", [("ATE", "ATE", None), ("ATT_cluster", "ATT", "year")])
def test_weighted_rate_ratio_matches_weighted_poisson_sandwich(rot, ps, case, estimand, cluster):
    """R: ``glm(recur ~ hormon + offset(log(years)), quasipoisson, weights = w)`` with
    ``vcovHC(type = "HC0")`` / ``vcovCL(cluster = ~year, type = "HC0", cadjust = FALSE)``."""
    g = GOLD["rate"][case]
    r = weighted_rate_ratio(rot, ps[estimand], "recur", "years", cluster=cluster)
    s = r.summary.iloc[0]
    close(np.log(s["estimate"]), g["coef"])
    close(s["se_known"], g["se_sandwich"])
    close(s["se"], g["se_carried"])


def test_weighted_rate_ratio_equals_svyglm_up_to_its_n_over_n_minus_1(rot, ps):
    """R: ``svyglm(..., svydesign(ids = ~1, weights = ~w), quasipoisson)``, whose variance
    is the HC0 sandwich times n / (n - 1)."""
    g = GOLD["rate"]["svyglm"]
    r = weighted_rate_ratio(rot, ps["ATE"], "recur", "years")
    n = len(rot)
    close(np.log(r.summary["estimate"].iloc[0]), g["coef"])
    close(r.summary["se_known"].iloc[0] * np.sqrt(n / (n - 1)), g["se"])


@pytest.mark.parametrize("estimand", ["ATE", "ATT", "ATO"])
def test_weighted_risks_match_weighted_glms(lal, estimand):
    """R (lalonde, employed in 1978): ``glm(employed ~ treat, weights = w)`` with identity,
    log (quasipoisson) and logit links, HC0 sandwich; weights from ``glm(treat ~ age +
    educ + race + married + nodegree + re74 + re75, binomial)``."""
    g = GOLD["binary"]
    p = propensity_weights(lal, g["treatment"], g["covariates"], estimand=estimand)
    close(p.coef["coef"], g["ps_coef"])
    r = weighted_risk(lal, p, g["outcome"])
    s = r.summary
    close([s["estimate"].iloc[0], np.log(s["estimate"].iloc[1]), np.log(s["estimate"].iloc[2])],
          g[estimand]["coef"])
    close(s["se_known"], g[estimand]["se_known"])
    close(s["se_known"], g[estimand]["se_hc0"])
    close(s["se"], g[estimand]["se_carried"])
    close(r.arms["risk"], g[estimand]["risks"])


def test_augmented_estimator_matches_the_hand_coded_one(lal):
    """R: AIPW with a logistic outcome model per arm, coded by hand; se with every nuisance
    model carried (numDeriv)."""
    g = GOLD["binary"]
    p = propensity_weights(lal, g["treatment"], g["covariates"])
    r = weighted_risk(lal, p, g["outcome"], method="aipw")
    s = r.summary
    close(r.arms["risk"], g["AIPW"]["risks"])
    close([s["estimate"].iloc[0], np.log(s["estimate"].iloc[1]), np.log(s["estimate"].iloc[2])],
          g["AIPW"]["coef"])
    close(s["se_known"], g["AIPW"]["se_known"])
    close(s["se"], g["AIPW"]["se_carried"])


# ------------------------------------------------------------------ E-values

@pytest.mark.parametrize("k", range(len(GOLD["evalue"])))
def test_evalues_match_the_evalue_package_formulas(k):
    """EValue ``evalues.RR/HR/OR`` (threshold, toRR) coded in R; the first case is
    VanderWeele & Ding's (2017) leukaemia example, E = 1.81 and 1.43 for its CI."""
    g = GOLD["evalue"][k]
    r = evalue(g["estimate"], g["lower"], g["upper"], measure=g["measure"], rare=g["rare"])
    close(r.table[["rr", "rr_lower", "rr_upper"]].to_numpy()[0], g["rr"])
    close(r.evalue_estimate, g["evalue_estimate"])
    close(r.evalue_ci, g["evalue_ci"])
    if k == 0:
        assert round(r.evalue_estimate, 2) == 1.81 and round(r.evalue_ci, 2) == 1.43
