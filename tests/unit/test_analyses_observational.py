"""pipeline.analyses.observational: the weighted comparison family on a synthetic
observational study: both columns (weighted, unadjusted) for every outcome, E-values for
every ratio, and public diagnostics that pass the output policy (no small count, no
individual value)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import output_policy
from pipeline.analyses.observational import run_weighting
from pipeline.errors import OdevalError
from pipeline.plan import WeightingPlan, parse

sys.path.insert(0, str(Path(__file__).parent / "stats"))
from test_weighting_coverage import sample  # noqa: E402

OUTCOMES = [("relapse", "time_to_event", "first relapse"),
            ("involuntary_admission", "count", "involuntary admissions"),
            ("return_to_work", "binary", "work or education at 2 years")]


@pytest.fixture(scope="module")
def result():
    d = sample(9001)
    d = d.assign(relapse_only=d["relapsed"], person_years=d["py"],
                 ethnicity_group="white", baseline_activity="unemployed")
    cfg = output_policy.settings({"disclosure": {}})
    return run_weighting(d, wplan=WeightingPlan(), covariates=("sex", "age_at_index",
                         "diagnosis_group", "prior_admissions_2y"), strata="site_id",
                         comparison_arm="open_dialogue", reference_arm="usual_care",
                         outcomes=OUTCOMES, cluster=None, cfg=cfg), cfg


def test_every_outcome_has_a_weighted_and_an_unadjusted_estimate(result):
    out, _ = result
    rows = pd.DataFrame(out["rows"])
    for name, _, _ in OUTCOMES:
        got = rows[rows["outcome"] == name]
        assert set(got["analysis"]) == {"observational_weighted", "observational_unadjusted"}
    w = rows[rows["analysis"] == "observational_weighted"]
    assert w["estimand"].str.contains("not a randomised comparison|unmeasured", case=False).all()
    hr = rows[rows["measure"] == "hazard ratio"].set_index("analysis")["estimate"]
    # the planted confounding flatters Open Dialogue: the weighted ratio is nearer 1
    assert hr["observational_unadjusted"] < hr["observational_weighted"]
    ev = out["public"]["weighting_evalues"]
    assert set(ev["measure"]) >= {"hazard ratio", "rate ratio", "risk ratio"}
    assert (ev["evalue_estimate"] >= 1).all()


def test_public_diagnostics_follow_the_output_policy(result):
    out, cfg = result
    h = out["public"]["weighting_histogram"]
    step = 10
    assert (h["count"] % step == 0).all()
    w = out["public"]["weighting_weights"]
    for v in [*w["n"], *w["ess"]]:
        assert v is None or output_policy.disclosure.allowed(int(v), cfg)
    assert "weight" not in set(out["public"]["weighting_balance"].columns)
    for f in out["public"]["weighting_flags"]["flag"]:
        assert "common support" not in f  # no minimum or maximum score
    b = out["public"]["weighting_balance"]
    assert b["smd_after"].dropna().abs().max() < 0.1
    assert (b["smd_after"].dropna().round(2) == b["smd_after"].dropna()).all()


def _weighting(**w):
    return parse({"design": {"type": "observational", "unit": "person", "weighting": w}}).weighting


def test_design_weighting_is_parsed_and_errors_name_the_key():
    assert _weighting(estimand="att", interactions=["sex:age_at_index"]).estimand == "ATT"
    with pytest.raises(OdevalError, match="design.weighting.trim"):
        _weighting(trim=0.7)
    with pytest.raises(OdevalError, match="design.weighting.augmented"):
        _weighting(estimand="ATO", augmented=True)
    with pytest.raises(OdevalError, match="design.weighting: unknown"):
        _weighting(estimnd="ATE")
    with pytest.raises(OdevalError, match="design.weighting.splines"):
        _weighting(splines=["sex"])
    with pytest.raises(OdevalError, match="design.weighting.interactions"):
        _weighting(covariates=["sex", "age_at_index"], interactions=["sex:diagnosis_group"])
