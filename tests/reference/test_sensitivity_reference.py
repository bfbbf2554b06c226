"""RMST and the Fine-Gray model as the sensitivity analyses use them, against R.

Golden values come from ``tests/reference/sensitivity/make_sensitivity_goldens.R`` (R
4.2.2, survival 3.5-3, cmprsk 2.2-11); each case stores its R call as ``call`` in
``sensitivity.json``. Data: ``survival::lung`` and ``sensitivity/trial.csv`` (a synthetic
trial with 6 sites x 3 clusters per arm, written once by ``make_trial_csv.py``). Every
quantity is deterministic (the jackknife included: R refits without each group in turn),
so the tolerance is the golden files' 1e-6 relative.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.stats import fine_gray
from pipeline.stats.rmst import rmst, rmst_difference
from tests.reference.survival._golden import assert_close
from tests.reference.survival._golden import data as survival_data

HERE = Path(__file__).parent / "sensitivity"
G = json.loads((HERE / "sensitivity.json").read_text())


@pytest.fixture(scope="module")
def trial() -> pd.DataFrame:
    d = pd.read_csv(HERE / "trial.csv")
    return d.assign(rel=(d["relapse_event"] == 1).astype(int))


@pytest.mark.parametrize(("case", "tau", "group"), [("rmst_lung_sex_365", 365, "sex"),
                                                    ("rmst_lung_all_400", 400, None),
                                                    ("rmst_lung_sex_1100", 1100, "sex")])
def test_rmst_matches_print_survfit_rmean(case, tau, group):
    """R: ``summary(survfit(Surv(time, status) ~ sex | 1, lung), rmean = tau)$table``:
    ``rmean`` and ``se(rmean)``; tau 1100 lies past the last time of both groups."""
    res = rmst(survival_data("lung"), "time", "status", tau, group=group)
    assert_close(res.table["rmst"], G[case]["rmean"])
    assert_close(res.table["se"], G[case]["se"])


@pytest.mark.parametrize("tau", [365, 730])
def test_rmst_difference_and_its_cluster_jackknife_match_r(trial, tau):
    """The difference Open Dialogue minus usual care (ties at tau and integer days), its
    model-based standard error (R's two per-arm ones), the delete-one-cluster jackknife
    with its t interval on G - 1 = 35 df, and the delete-one-site jackknife."""
    g = G[f"rmst_trial_{tau}"]
    m = rmst_difference(trial, "relapse_time", "rel", [tau], "od").summary.iloc[0]
    assert_close([m.rmst_1, m.rmst_0, m.estimate, m.se], [g["rmst_1"], g["rmst_0"], g["diff"],
                                                         g["se_model"]])
    assert np.isinf(m.df)
    c = rmst_difference(trial, "relapse_time", "rel", [tau], "od", cluster="cluster_id")
    r = c.summary.iloc[0]
    assert_close([r.estimate, r.se, r.lower, r.upper],
                 [g["diff"], g["se_jk_cluster"], g["lower_jk_cluster"], g["upper_jk_cluster"]])
    assert r.df == g["G_cluster"] - 1 and c.n_clusters == g["G_cluster"]
    s = rmst_difference(trial, "relapse_time", "rel", [tau], "od", cluster="site_id").summary
    assert_close(s["se"], g["se_jk_site"])


def test_fine_gray_with_site_and_its_jackknife_match_crr(trial):
    """R: ``crr(relapse_time, relapse_event, cov1 = model.matrix(~ od + site_id)[, -1],
    failcode = 1, gtol = 1e-12)``: coefficients and sandwich standard errors; the od
    coefficient's delete-one-cluster jackknife (crr refitted 36 times) with its t interval
    and p-value on 35 df, and the delete-one-site jackknife."""
    g = G["fine_gray_trial"]
    fit = fine_gray(trial, "relapse_time", "relapse_event", 1, ["od", "site_id"],
                    cluster="cluster_id")
    assert [t.replace("[T.", "").replace("]", "") for t in fit.summary.index] == g["term"]
    assert_close(fit.summary["coef"], g["coef"])
    assert_close(fit.summary["se_sandwich"], g["se_sandwich"])
    od = fit.summary.loc["od"]
    assert_close([od.se, od.hr_lower, od.hr_upper, od.p],
                 [g["se_jk_cluster"], g["hr_lower_jk_cluster"], g["hr_upper_jk_cluster"],
                  g["p_jk_cluster"]])
    assert fit.n_clusters == g["G_cluster"] and fit.df == g["G_cluster"] - 1
    site = fine_gray(trial, "relapse_time", "relapse_event", 1, ["od", "site_id"],
                     cluster="site_id").summary.loc["od"]
    assert_close(site.se, g["se_jk_site"])
