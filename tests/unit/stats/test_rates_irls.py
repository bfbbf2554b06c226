"""The sparse IRLS behind rate_ratio against statsmodels' GLM (the library it replaces for
speed; R goldens for rate_ratio itself are in tests/reference/test_effects_reference.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from pipeline.stats._eff_design import design_matrix, sparse_design, sparse_rank
from pipeline.stats.rates import _glm


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    n = 3000
    df = pd.DataFrame({
        "site": rng.choice([f"s{i:02d}" for i in range(12)], n),
        "arm": rng.choice(["open_dialogue", "usual_care"], n),
        "age": rng.normal(35, 10, n),
        "t": rng.uniform(0.2, 2.0, n),
    })
    eta = np.log(df["t"]) - 1 + 0.3 * (df["arm"] == "open_dialogue") + 0.01 * (df["age"] - 35)
    mu = np.exp(eta + rng.normal(0, 0.2, 12)[df["site"].str[1:].astype(int)])
    df["y"] = rng.negative_binomial(2.0, 2.0 / (2.0 + mu))
    return df


def test_design_is_r_model_matrix_and_rank_is_numpys(data):
    tiny = pd.DataFrame({"arm": ["b", "a", "c", "a"], "flag": [True, False, True, True],
                         "age": [30.0, 41.5, 22.0, 35.0]})
    names, X = sparse_design(tiny, ["arm", "flag", "age"])
    # R: model.matrix(~ arm + flag + age, tiny)
    assert names == ["(Intercept)", "armb", "armc", "flagTRUE", "age"]
    np.testing.assert_array_equal(X.toarray(), [[1, 1, 0, 1, 30.0], [1, 0, 0, 0, 41.5],
                                                [1, 0, 1, 1, 22.0], [1, 0, 0, 1, 35.0]])
    dense = design_matrix(data, ["arm", "site", "age"]).to_numpy(float)
    assert sparse_rank(sparse_design(data, ["arm", "site", "age"])[1], chunk=700) == \
        np.linalg.matrix_rank(dense) == dense.shape[1]
    collinear = sparse_design(data.assign(age2=data["age"] * 2), ["age", "age2"])[1]
    assert sparse_rank(collinear, chunk=700) == 2


@pytest.mark.parametrize("theta", [None, 0.7, 2.0, 50.0])
def test_irls_equals_statsmodels_glm(data, theta):
    names, X = sparse_design(data, ["arm", "site", "age"])
    y, off = data["y"].to_numpy(float), np.log(data["t"].to_numpy())
    fam = sm.families.Poisson() if theta is None else sm.families.NegativeBinomial(alpha=1 / theta)
    model = sm.GLM(y, X.toarray(), family=fam, offset=off)
    ref = model.fit(tol=1e-14, maxiter=200, scale=1.0)
    # statsmodels stops on the deviance alone, which for NB2 (Fisher scoring converges
    # linearly) leaves the coefficients ~1e-8 short; restarting it from its own answer
    # takes it to machine precision, the reference we compare with
    for _ in range(3):
        ref = model.fit(start_params=ref.params, tol=1e-14, maxiter=200, scale=1.0)
    ours = _glm(y, X, off, theta=theta)
    assert ours.converged
    np.testing.assert_allclose(ours.params, ref.params, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.fittedvalues, ref.fittedvalues, rtol=1e-9)
    assert ours.llf == pytest.approx(ref.llf, rel=1e-12)
    # warm start from elsewhere reaches the same point
    warm = _glm(y, X, off, theta=theta, start=np.asarray(ref.params) + 0.05)
    np.testing.assert_allclose(warm.params, ref.params, rtol=1e-9, atol=1e-12)
