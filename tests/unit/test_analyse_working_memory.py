"""Analyses that keep less in memory at once give the same results: the sensitivity
analyses' model frame shares the person frame's columns instead of copying them, and the
trial effects and subgroup families without ``keep_results`` hold no fitted model (each
freed before the next is fitted) and give the same rows and tables; so do the subgroups
computed one at a time (the parts analyse's two processes share) and put together."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline import plan as plan_mod
from pipeline.analyses import sensitivity as sens
from pipeline.analyses import trial_effects
from pipeline.analyses import subgroups
from pipeline.analyses.subgroups import subgroup_effects
from pipeline.simulation.draw import Shape, draw_trial

P = {"ties": "efron", "jackknife_max_clusters": 200}


def _trial(seed=4):
    d = draw_trial(Shape("t", sites=5, clusters_per_arm=2, people=900), seed)
    rng = np.random.default_rng(seed)
    return d.assign(arm=np.where(d.od == 1, "open_dialogue", "usual_care"),
                    relapse_event=d.relapse_only, age_at_index=rng.normal(40, 10, len(d)),
                    diagnosis_group=rng.choice(["g0", "g1", "g2"], len(d)),
                    sex=rng.choice(["f", "m"], len(d)))


def _plan(d):
    return plan_mod.parse({"design": {
        "type": "cluster_randomised", "unit": "cluster", "strata": "site_id",
        "secondary": [], "subgroups": ["diagnosis_group", "sex"]}}).check_data(d)


def test_model_frame_shares_the_frames_columns():
    d = _trial()
    plan = _plan(d)
    mf = sens._model_frame(d, plan, ["age_at_index"], "relapse_time", "relapse_event")
    assert set(mf.columns) == {"relapse_time", "relapse_event", "od", "age_at_index", "site_id",
                               "cluster_id"}
    for c in ["relapse_time", "relapse_event", "od", "age_at_index"]:
        assert np.shares_memory(mf[c].to_numpy(), d[c].to_numpy()), c
        pd.testing.assert_series_equal(mf[c], d[c], check_exact=True)
    # clusters numbered in their names' sorted order
    assert (np.asarray(sorted(d["cluster_id"].unique()))[mf["cluster_id"]]
            == d["cluster_id"].to_numpy()).all()
    assert len(d.columns) > len(mf.columns)   # d itself unchanged
    assert "diagnosis_group" in d


def test_subgroups_without_results_kept_are_the_same():
    d = _trial()
    plan = _plan(d)
    kept = subgroup_effects(d, plan, P, {"suppress_max": 0})
    freed = subgroup_effects(d, plan, P, {"suppress_max": 0}, keep_results=False)
    assert set(kept.results) == {"subgroup_diagnosis_group", "subgroup_sex"}
    assert freed.results == {}
    assert kept.tables.keys() == freed.tables.keys()
    for k in kept.tables:
        pd.testing.assert_frame_equal(kept.tables[k], freed.tables[k], check_exact=True)
    pd.testing.assert_frame_equal(pd.DataFrame(kept.estimates), pd.DataFrame(freed.estimates),
                                  check_exact=True)


def test_subgroups_in_parts_are_the_subgroups_whole():
    d = _trial()
    plan = _plan(d)
    whole = subgroup_effects(d, plan, P, {"suppress_max": 0})
    assert subgroups.parts(plan) == [("diagnosis_group",), ("sex",)]
    got = subgroups.combine([subgroup_effects(d, plan, P, {"suppress_max": 0}, only=only)
                             for only in subgroups.parts(plan)])
    assert got.results.keys() == whole.results.keys()
    for kind in ("tables", "public"):
        assert getattr(got, kind).keys() == getattr(whole, kind).keys()
        for k, t in getattr(whole, kind).items():
            pd.testing.assert_frame_equal(getattr(got, kind)[k], t, check_exact=True)
    pd.testing.assert_frame_equal(pd.DataFrame(got.estimates), pd.DataFrame(whole.estimates),
                                  check_exact=True)
    assert len(whole.tables["subgroup_tests"]) == 2
    # a plan whose primary outcome is not analysed by subgroup: one part, the whole
    assert subgroups.parts(plan_mod.parse({"design": {"subgroups": []}})) == [None]


def test_trial_effects_without_results_kept_are_the_same():
    d = _trial().assign(arm=lambda x: pd.Categorical(x["arm"], ["usual_care", "open_dialogue"]),
                        person_years=lambda x: x["person_years"],
                        involuntary_person_years=lambda x: x["person_years"])
    plan = plan_mod.parse({"design": {
        "type": "cluster_randomised", "unit": "cluster", "strata": "site_id",
        "secondary": ["involuntary_admission"],
        "covariates": ["age_at_index", "sex"]}}).check_data(d)
    p = {**P, "rate_family": "negbin"}
    kept = trial_effects.outcomes(d, plan, p, None)
    freed = trial_effects.outcomes(d, plan, p, None, keep_results=False)
    assert len(kept.results) == 4 and freed.results == {}
    pd.testing.assert_frame_equal(pd.DataFrame(kept.estimates), pd.DataFrame(freed.estimates),
                                  check_exact=True)
    assert kept.tables.keys() == freed.tables.keys()
    for k in kept.tables:
        pd.testing.assert_frame_equal(kept.tables[k], freed.tables[k], check_exact=True)
