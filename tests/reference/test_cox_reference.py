"""Cox regression against R's survival (``coxph``, ``cox.zph``, ``concordance``) and sandwich.

Golden values come from ``tests/reference/survival/make_golden.R`` (R 4.2.2, survival
3.5-3, sandwich); the exact R call of each case is stored as ``call`` in ``cox.json`` and
quoted in the test docstrings. Regenerate with ``Rscript make_golden.R`` in that folder.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.stats.coxph import cox
from tests.reference.survival._golden import assert_close, data, golden

COX = golden("cox.json")

VET = ["trt", "karno", "age", "diagtime", "prior"]
COLON = ["rxLev", "rxLev5FU", "sex", "age", "nodes"]
CASES = {
    # case: (dataset, covariates, kwargs)
    "veteran_efron": ("veteran", VET, {"ties": "efron"}),
    "veteran_breslow": ("veteran", VET, {"ties": "breslow"}),
    "veteran_strata": ("veteran", ["trt", "karno", "age"], {"strata": "celltype"}),
    "lung_missing": ("lung", ["age", "sex", "ph.ecog", "wt.loss"], {}),
    "colon_cluster_efron": ("colon", COLON, {"cluster": "id"}),
    "colon_cluster_breslow": ("colon", COLON, {"cluster": "id", "ties": "breslow"}),
    "colon_cluster_strata": ("colon", ["rxLev", "rxLev5FU", "age"], {"cluster": "id", "strata": "sex"}),
    # the trial's primary analysis in miniature: a binary covariate, strata, 18 clusters
    "lung_inst_strata_binary": ("lung", ["female"], {"cluster": "inst", "strata": "ph.ecog"}),
    # text columns entered as factors, as coxph does with a character column: levels sorted,
    # the first the reference (celltype: 'adeno'; rx: 'Lev', not the trial's 'Obs')
    "veteran_celltype_factor": ("veteran", ["trt", "celltype", "karno"], {}),
    "colon_rx_factor_cluster": ("colon", ["rx", "sex", "age"], {"cluster": "id"}),
}


def r_name(term: str) -> str:
    """R's name of a model-matrix column: ``celltype[T.large]`` is R's ``celltypelarge``."""
    return term.replace("[T.", "").replace("]", "")


def fit(case):
    dataset, covs, kw = CASES[case]
    df = data(dataset)
    if case == "lung_inst_strata_binary":
        df = df[df["inst"].notna() & df["ph.ecog"].notna()].assign(female=lambda x: (x["sex"] == 2).astype(int))
    return cox(df, "time", "status", covs, **kw)


@pytest.fixture(scope="module")
def fits():
    return {case: fit(case) for case in CASES}


@pytest.mark.parametrize("case", list(CASES))
def test_coefficients_se_and_wald_match_coxph(fits, case):
    """R: ``summary(<cox.json[case].call>)``: coef, se (robust se with cluster), z, p, 95% CI.

    Covers Efron and Breslow ties, ``strata()``, rows dropped for NA, ``cluster = id``, and
    character columns as factors (treatment contrasts against the first sorted level).
    """
    g, res = COX[case], fits[case]
    s = res.summary
    assert [r_name(t) for t in s.index] == g["term"]
    assert res.n == g["n"] and res.n_events == g["nevent"]
    assert_close(s["coef"], g["coef"])
    assert_close(s["se"], g["se"])
    assert_close(s["z"], g["z"])
    assert_close(s["p"], g["p"])
    assert_close(s["hr_lower"], g["ci_lower"])
    assert_close(s["hr_upper"], g["ci_upper"])
    if "se_naive" in g:
        assert_close(s["se_naive"], g["se_naive"])


@pytest.mark.parametrize("case", list(CASES))
def test_loglik_and_likelihood_ratio_match_coxph(fits, case):
    """R: ``fit$loglik`` (null, final) and ``2 * diff(fit$loglik)`` on ``length(coef)`` df."""
    g, res = COX[case], fits[case]
    assert_close(res.loglik, g["loglik"])
    assert_close(res.lr_test["chisq"], g["lr_chisq"])
    assert res.lr_test["df"] == g["lr_df"]


@pytest.mark.parametrize("case", list(CASES))
def test_score_tests_match_coxph(fits, case):
    """R: ``summary(fit)$sctest`` and, with ``cluster =``, ``summary(fit)$robscore``.

    The robust score test is the log-rank test for clustered data (Lin & Wei 1989): the
    score at beta = 0 against the per-cluster sums of the score residuals there.
    """
    g, res = COX[case], fits[case]
    for name in ("score_test", "robust_score_test"):
        got = getattr(res, name)
        if name not in g:
            assert got is None
            continue
        assert_close(got["chisq"], g[name]["chisq"])
        assert got["df"] == g[name]["df"]
        assert_close(got["p"], g[name]["p"])


@pytest.mark.parametrize("case", list(CASES))
def test_concordance_matches_r_concordance(fits, case):
    """R: ``cc <- concordance(fit); cc$concordance; sqrt(cc$var)`` (within strata if any)."""
    g, res = COX[case], fits[case]
    assert_close(res.concordance["concordance"], g["concordance"])
    assert_close(res.concordance["se"], g["concordance_se"])


@pytest.mark.parametrize("case", [c for c in CASES if "zph" in COX[c]])
def test_ph_test_matches_cox_zph(fits, case):
    """R: ``cox.zph(fit)$table`` (transform = "km"): chisq, df, p per term and GLOBAL (a
    factor is one term on levels - 1 df)."""
    g, res = COX[case], fits[case]
    z = res.ph_test()
    assert list(z.index) == g["zph"]["term"]
    assert_close(z["chisq"], g["zph"]["chisq"])
    assert_close(z["df"], g["zph"]["df"])
    assert_close(z["p"], g["zph"]["p"])


def test_few_clusters_sandwich_matches_vcovcl():
    """R (18 institutions of lung):

    ``f0 <- coxph(Surv(time, status) ~ age + sex + ph.ecog, data = d)`` and
    ``vcovCL(f0, cluster = inst, type = "HC0", cadjust = FALSE)`` equals the robust
    variance of ``coxph(..., cluster = inst)``; ``cadjust = TRUE`` adds G/(G-1), which is
    ``small_sample = "cr1"``.
    """
    g = COX["lung_inst_small"]
    df = data("lung")
    df = df[df["inst"].notna()]
    covs = ["age", "sex", "ph.ecog"]
    plain = cox(df, "time", "status", covs, cluster="inst")
    cr1 = cox(df, "time", "status", covs, cluster="inst", small_sample="cr1")
    assert plain.n_clusters == g["n_clusters"]
    assert_close(plain.summary["coef"], g["coef"])
    assert_close(plain.summary["se"], g["se"])
    assert_close(plain.vcov.ravel(), np.ravel(g["vcov_hc0"]))  # symmetric: order moot
    assert_close(cr1.vcov.ravel(), np.ravel(g["vcov_cr1"]))


@pytest.mark.parametrize("case", ["lung_inst_small", "lung_inst_strata_binary"])
def test_jackknife_matches_refits_by_coxph(fits, case):
    """R: ``coxph`` refitted without each institution, ``(G - 1) / G * crossprod(b_g -
    mean b)`` (``jackknife_vcov`` in make_golden.R); t on G - 1 df for the interval."""
    from scipy import stats

    g = COX[case]
    df = data("lung")
    df = df[df["inst"].notna()]
    if case == "lung_inst_small":
        covs, kw = ["age", "sex", "ph.ecog"], {}
    else:
        df = df[df["ph.ecog"].notna()].assign(female=lambda x: (x["sex"] == 2).astype(int))
        covs, kw = ["female"], {"strata": "ph.ecog"}
    res = cox(df, "time", "status", covs, cluster="inst", small_sample="jackknife", **kw)
    assert_close(res.summary["coef"], g["coef"])
    assert_close(res.vcov.ravel(), np.ravel(g["vcov_jackknife"]))
    q = stats.t.ppf(0.975, res.n_clusters - 1)
    se = np.sqrt(np.diag(np.atleast_2d(g["vcov_jackknife"])))
    assert_close(res.summary["hr_upper"], np.exp(np.asarray(g["coef"]) + q * se))


def test_jackknife_robust_score_test_matches_r():
    """R: the score at beta = 0 (``residuals(type = "score")`` of ``coxph(..., init = 0,
    iter.max = 0)``, summed) and its delete-one-institution jackknife variance
    (``jackknife_score_var`` in make_golden.R); the test refers chisq / df to F(df, G - 1)."""
    from scipy import stats

    g = COX["lung_inst_strata_binary"]
    df = data("lung")
    df = df[df["inst"].notna() & df["ph.ecog"].notna()].assign(female=lambda x: (x["sex"] == 2).astype(int))
    res = cox(df, "time", "status", ["female"], strata="ph.ecog", cluster="inst",
              small_sample="jackknife")
    u, v = g["score_at_0"], np.ravel(g["score_var_jackknife"])[0]
    assert_close(res.robust_score_test["chisq"], u * u / v)
    assert_close(res.robust_score_test["p"], stats.f.sf(u * u / v, 1, res.n_clusters - 1))
