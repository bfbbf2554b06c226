"""The analysis-plan layer's own computations against R (goldens in tests/reference/analyses/,
script make_analyses_goldens.R):

* the standardised (g-computation) marginal risk difference and log risk ratio of a
  logistic model with a CR2 covariance, delta-method standard errors (R: ``glm``,
  ``clubSandwich::vcovCR(type = "CR2")``, the gradient both analytic and by central
  differences), on ``lme4::cbpp`` expanded to animals (15 herds);
* the subgroup interaction test and per-level hazard ratios (R: ``coxph(Surv(time, status)
  ~ od * celltype, data = veteran)``, Wald chi-square of the interaction terms).

Compared to 1e-6 relative (the numeric gradient to 1e-6 too: its error is ~1e-10).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import plan as plan_mod
from pipeline.analyses.subgroups import subgroup_effects
from pipeline.analyses.trial_effects import _standardised
from pipeline.stats import glm_clustered

HERE = Path(__file__).parent / "analyses"
GOLD = json.loads((HERE / "analyses_goldens.json").read_text())


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12)


def test_standardised_risk_difference_and_ratio_match_r():
    g = GOLD["standardised"]
    d = pd.read_csv(HERE / "cbpp_people.csv", dtype={"herd": str})
    fit = glm_clustered(d, "y", ["od", "size"], family="binomial", cluster="herd", vcov="CR2")
    close(fit.summary["coef"], g["coef"])
    (rd, se_rd), (lrr, se_lrr) = _standardised(fit, d, ["size"], 0.95, float("nan"))
    close([rd, lrr], [g["rd"], g["log_rr"]])
    close([se_rd, se_lrr], [g["se_rd"], g["se_log_rr"]])
    close([se_rd, se_lrr], [g["se_rd_numeric"], g["se_log_rr_numeric"]])


def test_subgroup_interaction_test_and_level_ratios_match_coxph():
    g = GOLD["subgroup"]
    v = pd.read_csv(HERE / "veteran.csv")
    d = pd.DataFrame({"relapse_time": v["time"], "relapse_event": v["status"], "od": v["od"],
                      "arm": np.where(v["od"] == 1, "open_dialogue", "usual_care"),
                      "diagnosis_group": v["celltype"], "site_id": "S1"})
    plan = plan_mod.parse({"design": {"type": "individually_randomised", "unit": "person",
                                      "strata": None, "secondary": [],
                                      "subgroups": ["diagnosis_group"]}}).check_data(d)
    res = subgroup_effects(d, plan, {"ties": "efron", "jackknife_max_clusters": 200},
                           {"suppress_max": 0})
    row, test = res.estimates[0], res.tables["subgroup_tests"].iloc[0]
    close(test["statistic"], g["wald_chisq"])
    close([row["p"], test["p"]], [g["p"], g["p"]])
    assert row["df"] == test["df1"] == g["df"] and "chi-square on 3 df" in row["method"]
    assert np.isnan(row["estimate"])   # three interactions: no single ratio
    t = res.tables["subgroups"].set_index("level")
    for lv, (hr, lo, hi) in g["hr"].items():
        close(t.loc[lv, ["hr", "lower", "upper"]].to_numpy(float), [hr, lo, hi])
