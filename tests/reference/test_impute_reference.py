"""Multiple imputation of a binary variable and Rubin's rules against R mice 3.15.

Goldens from ``tests/reference/impute/make_impute_goldens.R`` (which also writes the
dataset, ``rtw_mi.csv``: 600 people, two arms, ``y`` missing at random by arm and the last
status before the window)::

    aug <- mice:::augment(y, ry, x, !ry)                       # per arm
    glm.fit(cbind(1, aug$x)[aug$ry, ], aug$y[aug$ry], weights = aug$w[aug$ry],
            family = quasibinomial())                          # as mice.impute.logreg
    pool.scalar(Q, U, n = dfcom, k = 0)
    imp <- rbind(mice(d[arm == 0, ], m = 1000, method = "logreg", maxit = 1),
                 mice(d[arm == 1, ], m = 1000, method = "logreg", maxit = 1))
    pool.scalar(<difference in proportions>, <its binomial variance>)
    pool.scalar(<coef of arm in glm(y ~ arm + age, binomial)>, <its variance>)

The augmented fit and ``pool.scalar`` are deterministic: compared to 1e-8 relative (IRLS
converged to 1e-14 on both sides). The whole imputation is random on both sides (different
generators): the pooled estimate from m = 1000 imputations each has Monte Carlo standard
error ``sqrt(B / m)``, so Python minus R has ``sqrt(B_py / m + B_R / m)``; they must agree
within 4 of those (a false alarm once in 16,000 runs) -- and the between- and
within-imputation variances within 4 Monte Carlo standard errors of a variance
(``B sqrt(2 / (m - 1))``), and relative 1% (the within-imputation variance varies little).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from pipeline.stats.impute import _design, augment, fit_logistic, impute_binary, rubin

HERE = Path(__file__).parent / "impute"
GOLD = json.loads((HERE / "impute_goldens.json").read_text())
PRED = ["site", "last", "age"]


@pytest.fixture(scope="module")
def d():
    return pd.read_csv(HERE / "rtw_mi.csv")


@pytest.mark.parametrize("arm", [0, 1])
def test_augmented_logistic_fit_equals_mice(d, arm):
    sub = d[d["arm"] == arm]
    X = _design(sub, PRED).to_numpy(float)
    ry = sub["y"].notna().to_numpy()
    yo = sub["y"].to_numpy()[ry]
    Xa, ya, wa = augment(X, yo)
    g = GOLD["fits"][f"arm{arm}"]
    assert len(ya) == g["n_aug"]
    Xf = np.column_stack([np.ones(ry.sum() + len(ya)), np.vstack([X[ry], Xa])])
    b, V = fit_logistic(Xf, np.concatenate([yo, ya]), np.concatenate([np.ones(ry.sum()), wa]))
    np.testing.assert_allclose(b, g["coef"], rtol=1e-8)
    np.testing.assert_allclose(V, np.array(g["cov_unscaled"]), rtol=1e-8)


@pytest.mark.parametrize("case,dfcom", [("inf", np.inf), ("df100", 100), ("df6", 6)])
def test_rubin_equals_pool_scalar(case, dfcom):
    g = GOLD["pool_scalar"]
    r = g["results"][case]
    p = rubin(g["Q"], g["U"], dfcom=dfcom)
    got = dict(qbar=p.estimate, t=p.total, df=p.df, fmi=p.fmi, b=p.between, ubar=p.within,
               r=p.riv)
    for k, v in r.items():
        np.testing.assert_allclose(got[k], v, rtol=1e-8, err_msg=k)


def test_pooled_estimates_agree_with_mice_within_monte_carlo_error(d):
    m = GOLD["mi"]["m"]
    imp = impute_binary(d, "y", PRED, m=m, by="arm", seed=20261206)
    arm = d["arm"].to_numpy()
    n1, n0 = (arm == 1).sum(), (arm == 0).sum()
    rd, lor = [], []
    X = sm.add_constant(d[["arm", "age"]].to_numpy(float))
    for j in range(m):
        y = imp.completed(j).to_numpy()
        p1, p0 = y[arm == 1].mean(), y[arm == 0].mean()
        rd.append((p1 - p0, p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0))
        f = sm.GLM(y, X, family=sm.families.Binomial()).fit()
        lor.append((f.params[1], f.cov_params()[1, 1]))
    for name, qs in (("rd", rd), ("log_or", lor)):
        q, u = np.array(qs).T
        p = rubin(q, u)
        g = GOLD["mi"][name]
        mc = np.sqrt(p.between / m + g["b"] / m)
        assert abs(p.estimate - g["qbar"]) < 4 * mc, (name, p.estimate, g["qbar"], mc)
        mc_b = np.sqrt(2 / (m - 1)) * np.hypot(p.between, g["b"])
        assert abs(p.between - g["b"]) < 4 * mc_b, (name, p.between, g["b"])
        np.testing.assert_allclose(p.within, g["ubar"], rtol=0.01, err_msg=name)
