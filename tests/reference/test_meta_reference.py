"""pipeline.stats.meta against metafor 3.8-1 (goldens in tests/reference/meta/).

R (see make_meta_goldens.R for the full script)::

    dat <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
    fit <- rma(yi, vi, data = dat, method = "REML", test = "knha",
               control = list(threshold = 1e-12, tol = 1e-14))
    predict(fit); weights(fit)
    confint(fit, control = list(tol = 1e-14))      # Q-profile CI of tau^2, I^2, H^2
    pred +/- qt(.975, k - 2) * sqrt(se^2 + tau2)   # Higgins et al. 2009 prediction interval
    rma(yi, vi, mods = ~ ablat + year, data = dat, method = "PM", test = "knha")

Every number is compared to 1e-6 relative (p-values and near-zero values with an absolute
floor of 1e-12).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.stats import meta_analysis, meta_regression

HERE = Path(__file__).parent / "meta"
GOLD = json.loads((HERE / "meta_goldens.json").read_text())
DATA = {"bcg": pd.read_csv(HERE / "bcg.csv", dtype={"label": str}), "hine1989": pd.read_csv(HERE / "hine1989.csv", dtype={"label": str})}
RTOL, ATOL = 1e-6, 1e-12


def close(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL)


def _id(case):
    return f"{case['dataset']}-{case['method']}-{case['test']}-{case['conf_level']}"


@pytest.mark.parametrize("case", GOLD["meta_analysis"], ids=_id)
def test_meta_analysis_matches_metafor(case):
    d = DATA[case["dataset"]]
    res = meta_analysis(d.yi, d.vi, method=case["method"], test=case["test"],
                        conf_level=case["conf_level"], labels=d.label)
    close(res.estimate, case["estimate"])
    close(res.se, case["se"])
    close(res.z, case["zval"])
    close(res.p, case["pval"])
    close(res.ci, [case["ci_lb"], case["ci_ub"]])
    close(res.pi, [case["pi_lb"], case["pi_ub"]])
    close(res.tau2, case["tau2"])
    close(res.i2, case["I2"])
    close(res.h2, case["H2"])
    close(res.q, case["QE"])
    close(res.q_p, case["QEp"])
    close(res.table["weight"].to_numpy(), case["weights"])
    assert list(res.table["label"]) == list(d.label)
    if case.get("qprofile"):  # metafor::confint (Q-profile), not defined for FE
        close(res.tau2_ci, case["qprofile"]["tau2"])
        close(res.i2_ci, case["qprofile"]["I2"])
        close(res.h2_ci, case["qprofile"]["H2"])
    higgins = meta_analysis(d.yi, d.vi, method=case["method"], test=case["test"],
                            conf_level=case["conf_level"], prediction="higgins")
    close(higgins.pi, case["pi_higgins"])
    assert higgins.pi_df == len(d) - 2


def _rid(case):
    return f"{case['dataset']}-{'+'.join(case['moderators'])}-{case['method']}-{case['test']}"


@pytest.mark.parametrize("case", GOLD["meta_regression"], ids=_rid)
def test_meta_regression_matches_metafor(case):
    d = DATA[case["dataset"]]
    mods = d[case["moderators"]]
    res = meta_regression(d.yi, d.vi, mods, method=case["method"], test=case["test"])
    # metafor names the intercept intrcpt and a factor term factor(alloc)random; odeval
    # names them (Intercept) and allocrandom, as R's model.matrix does
    terms = ["(Intercept)" if t == "intrcpt" else t.replace("factor(", "").replace(")", "", 1)
             for t in case["terms"]]
    assert list(res.summary.index) == terms
    s = res.summary
    close(s["coef"].to_numpy(), case["coef"])
    close(s["se"].to_numpy(), case["se"])
    close(s["z"].to_numpy(), case["zval"])
    close(s["p"].to_numpy(), case["pval"])
    close(s["ci_lower"].to_numpy(), case["ci_lb"])
    close(s["ci_upper"].to_numpy(), case["ci_ub"])
    close(res.tau2, case["tau2"])
    close(res.qm, case["QM"])
    close(res.qm_p, case["QMp"])
    close(res.qe, case["QE"])
    close(res.qe_p, case["QEp"])
    close(res.r2, case["R2"])
    close(res.i2, case["I2"])
    close(res.h2, case["H2"])
