"""Few-cluster inference against R: clubSandwich (CR1, CR2, CR3 and Satterthwaite df),
the Mancl-DeRouen and Kauermann-Carroll corrections on geepack fits, and delete-one-site
jackknives refitted in R (glm, glm with ``negative.binomial(theta)``, coxph).

Golden values come from ``tests/reference/clustered/make_clustered_goldens.R`` (R 4.2.2,
clubSandwich 0.5.8, geepack 1.3.9, survival 3.5-3) on public data sets: lme4 ``cbpp``
(one row per animal, 15 herds), lme4 ``sleepstudy`` (18 subjects), MASS ``epil`` (59
subjects), glmmTMB ``Salamanders`` (the 12 unmined sites) and survival ``lung`` (18
institutions). Regenerate with ``Rscript make_clustered_goldens.R`` in that folder.
Deterministic estimators: 1e-6 relative (the project's tolerance for agreement with R).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.stats import cox, rate_ratio
from pipeline.stats.clustered import glm_clustered

HERE = Path(__file__).parent / "clustered"
GOLD = json.loads((HERE / "clustered_goldens.json").read_text())
RTOL = 1e-6


def _data(name: str) -> pd.DataFrame:
    d = pd.read_csv(HERE / name)
    if name == "cbpp_animals.csv":
        d["period"] = d["period"].astype(str)
        d["herd_f"] = pd.Categorical(d["herd"])
    return d


def close(actual, expected, rtol=RTOL):
    np.testing.assert_allclose(np.asarray(actual, float), np.asarray(expected, float), rtol=rtol)


CS_CASES = ["cbpp_logit", "cbpp_log", "sleep_gaussian", "epil_poisson", "salamander_negbin"]


def _fit(case: str, vcov: str, **kw):
    g = GOLD[case]
    return glm_clustered(_data(g["data"]), g["outcome"], g["covariates"], family=g["family"],
                         link=g["link"], cluster=g["cluster"], vcov=vcov, **kw)


@pytest.mark.parametrize("case", CS_CASES)
def test_coefficients_and_model_se_match_glm(case):
    """R: ``coef(fit)``, ``sqrt(diag(vcov(fit)))`` of ``glm`` / ``MASS::glm.nb``
    (theta estimated jointly)."""
    g = GOLD[case]
    res = _fit(case, "model")
    assert list(res.summary.index) == g["terms"]
    close(res.summary["coef"], g["coef"])
    close(res.summary["se"], g["se_model"])
    if g["family"] == "negbin":
        close(res.theta, g["theta"])


@pytest.mark.parametrize("vcov", ["CR1", "CR2", "CR3"])
@pytest.mark.parametrize("case", CS_CASES)
def test_cluster_robust_variance_and_satterthwaite_df_match_clubsandwich(case, vcov):
    """R: ``V <- vcovCR(fit, cluster = <cluster>, type = <vcov>)``; ``coef_test(fit, vcov = V,
    test = "Satterthwaite")``: whole covariance, SE, df and p."""
    g = GOLD[case][vcov]
    res = _fit(case, vcov, df_method="satterthwaite")
    close(res.vcov.to_numpy(), g["vcov"])
    close(res.summary["se"], g["se"])
    close(res.summary["df"], g["df_satterthwaite"])
    close(res.summary["p"], g["p_satterthwaite"])


@pytest.mark.parametrize("case", ["cbpp_logit", "epil_poisson"])
def test_mancl_derouen_and_kauermann_carroll_match_the_gee_formulas(case):
    """R: ``geeglm(..., corstr = "independence")`` and the geesmv formulas
    ``M sum D'V^-1 A r r' A' V^-1 D M`` with ``A = (I - H)^-1`` (MD) or ``(I - H)^-1/2``
    (KC) coded in the script; CR0 equals geeglm's robust se."""
    g = GOLD[case]["gee"]
    close(_fit(case, "CR0").summary["se"], g["se_geeglm"])
    close(_fit(case, "CR0").vcov.to_numpy(), g["CR0"]["vcov"])
    for kind in ("MD", "KC"):
        res = _fit(case, kind)
        close(res.vcov.to_numpy(), g[kind]["vcov"])
        J, p = res.n_clusters, len(res.summary)
        assert np.all(res.summary["df"] == J - p), "MD and KC default to t on K - p df"


def test_delete_one_site_jackknife_of_a_logistic_model_matches_refits():
    """R: ``glm(y ~ period + herd, binomial)`` refitted without each herd;
    ``(J - 1) / J sum (b_j - mean b)^2`` for the period terms. The herd terms have no
    jackknife se (a herd's own term is not estimable without it)."""
    g = GOLD["cbpp_site_jackknife"]
    res = glm_clustered(_data(g["data"]), g["outcome"], g["covariates"], family="binomial",
                        cluster=g["cluster"], vcov="jackknife")
    s = res.summary.loc[g["terms"]]
    close(s["coef"], g["coef"])
    close(res.vcov.loc[g["terms"], g["terms"]].to_numpy(), g["vcov"])
    assert np.all(s["df"] == 14)
    assert res.summary.filter(like="herd_f", axis=0)["se"].isna().all()


def test_delete_one_site_jackknife_of_the_rate_ratio_matches_refits():
    """R: ``glm.nb(count ~ spp + site)``; ``glm(..., family = negative.binomial(theta))``
    refitted without each site, theta held at the full fit's, as ``rate_ratio`` does."""
    g = GOLD["salamander_site_jackknife"]
    res = rate_ratio(_data(g["data"]), "count", None, ["spp", "site"], family="negbin",
                     cluster="site", cluster_type="jackknife")
    s = res.summary.loc[g["terms"]]
    close(s["coef"], g["coef"])
    close(res.vcov.loc[g["terms"], g["terms"]].to_numpy(), g["vcov"])
    close(s["se"], g["se"])


def test_delete_one_site_jackknife_of_the_cox_model_matches_refits():
    """R: ``coxph(Surv(time, status) ~ female + age + strata(inst))`` refitted without
    each institution (stratum and cluster at once)."""
    g = GOLD["lung_site_jackknife"]
    res = cox(_data(g["data"]), "time", "status", g["covariates"], strata="inst",
              cluster="inst", small_sample="jackknife")
    close(res.summary["coef"], g["coef"])
    close(res.vcov, g["vcov"])
    close(res.summary["se"], g["se"])
