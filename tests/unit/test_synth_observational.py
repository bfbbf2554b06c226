"""The observational design of the generator: arms follow the covariates that also drive
the outcomes, the other designs are unchanged, and truth.json carries the marginal effects
from both potential outcomes (their recovery by weighting: tests/unit/stats/
test_weighting_coverage.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.synth import generate_study
from pipeline.synth.params import resolve
from pipeline.synth.simulate import simulate_chunk
from pipeline.synth.study import build_study


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("obs")
    generate_study(out, people=1500, sites=4, seed=8, design="observational")
    people = pd.read_parquet(out / "people.parquet")
    return json.loads((out / "truth.json").read_text()), people


def test_arms_follow_the_confounders_which_are_fully_recorded(study):
    _, p = study
    assert p["cluster_id"].isna().all()
    assert p["birth_year"].notna().all() and p["prior_admissions_2y"].notna().all()
    od = p["arm"] == "open_dialogue"
    assert 0.3 < od.mean() < 0.7
    # Open Dialogue: fewer prior admissions, more psychosis, younger (the defaults' signs)
    assert p.loc[od, "prior_admissions_2y"].mean() < p.loc[~od, "prior_admissions_2y"].mean() - 0.15
    psy = p["diagnosis_group"] == "psychosis"
    assert psy[od].mean() > psy[~od].mean() + 0.08
    assert p.loc[od, "birth_year"].mean() > p.loc[~od, "birth_year"].mean() + 1


def test_truth_states_conditional_and_marginal_effects(study):
    t, _ = study
    o = t["observational"]
    assert o["conditional_effects"]["hr_admission"] == 0.6
    m = o["marginal_effects"]
    # the marginal hazard ratio is attenuated towards 1 from the conditional 0.6, and the
    # unadjusted comparison (confounded) flatters Open Dialogue beyond it
    assert 0.6 < m["relapse_hazard_ratio"] < 0.7
    assert o["unadjusted_expected"]["relapse_hazard_ratio"] < m["relapse_hazard_ratio"] - 0.05
    assert m["rtw_2y"]["risk_difference"] > 0 and m["relapse_log_hr_mc_se"] < 0.02
    for h in (365, 730):
        r = m[f"relapse_risk_by_day_{h}"]
        assert r["risk_difference"] == pytest.approx(r["open_dialogue"] - r["usual_care"], abs=2e-5)


def test_potential_outcomes_keep_the_people_and_change_only_the_arm():
    st = build_study(people=800, sites=3, seed=4, design="observational", effects=resolve())
    seen = simulate_chunk(st, 0)
    ones = simulate_chunk(st, 0, arm=1, outcomes_only=True)
    zeros = simulate_chunk(st, 0, arm=0, outcomes_only=True)
    cols = ["person_id", "site_id", "sex", "birth_year", "diagnosis_group", "prior_admissions_2y"]
    base = seen.tables["people"].select(cols)
    assert ones.tables["people"].select(cols).equals(base)
    assert zeros.tables["people"].select(cols).equals(base)
    assert set(ones.truth.column("arm").to_pylist()) == {"open_dialogue"}
    assert set(zeros.truth.column("arm").to_pylist()) == {"usual_care"}
    # outcomes_only stops early but draws the same truth
    assert simulate_chunk(st, 0, outcomes_only=True).truth.equals(seen.truth)
    # treated everyone relapses less: the conditional hazard ratio is 0.6
    r1 = np.mean(np.array(ones.truth.column("relapse_event").to_pylist()) == 1)
    r0 = np.mean(np.array(zeros.truth.column("relapse_event").to_pylist()) == 1)
    assert r1 < r0
