"""The analysis families of pipeline/analyses/ on small trials drawn from the generator's
model (pipeline.simulation.draw): what each returns, the plan's choices honoured, the
multiplicity rules, covariate columns, the CONSORT flow's counts and protection, and
'not estimated' instead of a traceback where the data hold no estimate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline import plan as plan_mod
from pipeline.analyses import covariates, flow, icc, multiplicity, trial_effects
from pipeline.simulation.draw import Shape, draw_trial

CFG = {"suppress_min": 1, "suppress_max": 7, "round_to": 5}
P = {"ties": "efron", "jackknife_max_clusters": 200, "rate_family": "negbin",
     "curve_times": [0, 365, 730]}


def _frame(clusters_per_arm=1, seed=3, people=700) -> pd.DataFrame:
    d = draw_trial(Shape("t", sites=5, clusters_per_arm=clusters_per_arm, people=people), seed)
    rng = np.random.default_rng(seed)
    n = len(d)
    d["arm"] = pd.Categorical(np.where(d["od"] == 1, "open_dialogue", "usual_care"),
                              categories=["usual_care", "open_dialogue"])
    d["sex"] = rng.choice(["female", "male"], n)
    d["age_at_index"] = np.where(rng.random(n) < 0.05, np.nan, rng.integers(18, 65, n))
    d["diagnosis_group"] = rng.choice(["psychosis", "bipolar", "depression"], n)
    d["end_reason"] = np.where(d["fu_end_day"] >= 730, "end_of_follow_up", "data_end")
    d["ap_any_use"] = rng.random(n) < np.where(d["od"] == 1, 0.3, 0.5)
    d["ap_use_last_days"] = rng.random(n) < 0.2
    d["involuntary_person_years"] = d["person_years"]  # derive.rate_person_time: follow_up
    return d


def _plan(d, **design):
    return plan_mod.parse({"design": design}).check_data(d)


def test_every_outcome_gets_the_plans_estimate_and_an_unadjusted_sensitivity_row():
    d = _frame()
    plan = _plan(d, covariates=["sex", "age_at_index"])
    res = trial_effects.outcomes(d, plan, P, None)
    est = pd.DataFrame(res.estimates)
    prim = est[est.analysis == "primary"].iloc[0]
    assert prim.measure == "hazard ratio" and "adjusted" in prim.method
    assert "Covariate age_at_index" in prim.notes and np.isfinite(prim.df)
    assert "Open Dialogue vs usual care" in prim.estimand and "adjusted for sex" in prim.estimand
    sens = est[(est.analysis == "sensitivity") & (est.measure == "hazard ratio")].iloc[0]
    assert sens.estimand.startswith("Unadjusted") and "adjusted" not in sens.method
    for o in plan.secondary:
        assert ((est.analysis == "secondary") & (est.outcome == o.name)).any(), o.name
    assert list(res.tables["multiplicity"].outcome) == [plan.primary.name,
                                                       *[o.name for o in plan.secondary]]


@pytest.mark.parametrize("method", ["jackknife-site", "cluster-level", "CR1"])
def test_an_explicit_method_is_used_and_named(method):
    d = _frame(clusters_per_arm=2)
    plan = _plan(d, primary={"outcome": "relapse", "small_sample": method}, secondary=[])
    row = trial_effects.outcome(d, plan, plan.primary, P, None, "primary").estimates[0]
    assert plan_mod.METHODS["time_to_event"][method].split(" (")[0].split(",")[0] in row["method"]
    assert 0 < row["estimate"] < 10 and row["lower"] < row["estimate"] < row["upper"]


def test_an_arm_without_events_is_not_estimated_with_the_reason():
    d = _frame()
    d.loc[d.od == 1, "involuntary_count"] = 0
    plan = _plan(d, secondary=["involuntary_admission"])
    rows = trial_effects.outcomes(d, plan, P, None).estimates
    r = next(r for r in rows if r["outcome"] == "involuntary_admission")
    assert r["method"] == "not estimated" and "Open Dialogue arm" in r["notes"]


def test_hierarchical_testing_stops_at_the_first_secondary_that_does_not_reject():
    t = multiplicity.secondary_tests(0.01, [("a", 0.02), ("b", 0.30), ("c", 0.001)],
                                     "hierarchical")
    assert t.rejected.tolist() == [True, True, False, False]
    assert t.confirmatory.tolist() == [True, True, True, False]
    np.testing.assert_allclose(t.p_adjusted, [0.01, 0.02, 0.30, 0.30])


def test_holm_is_statsmodels_holm_and_needs_the_primary_to_reject():
    from statsmodels.stats.multitest import multipletests

    ps = [0.01, 0.04, 0.03]
    t = multiplicity.secondary_tests(0.001, [("a", ps[0]), ("b", ps[1]), ("c", ps[2])], "holm")
    np.testing.assert_allclose(t.p_adjusted[1:], multipletests(ps, method="holm")[1])
    gated = multiplicity.secondary_tests(0.2, [("a", 0.001)], "holm")
    assert not gated.rejected[1] and "descriptive" in gated.note[1]


def test_covariates_missing_indicator_reference_level_and_constant_columns():
    d = pd.DataFrame({"x": [1.0, np.nan, 3.0, 5.0], "g": ["a", "b", "b", None],
                      "k": ["same"] * 4})
    out, cols, notes = covariates.adjustment(d, ["x", "g", "k"])
    assert cols == ["cov__x", "cov__x__missing", "cov__g__missing", "cov__g__a"] or \
        set(cols) == {"cov__x", "cov__x__missing", "cov__g__missing", "cov__g__a"}
    assert out["cov__x"].tolist() == [1.0, 3.0, 3.0, 5.0]   # the mean of the others
    assert "cov__g__b" not in cols                          # b is the most common: reference
    assert any("missing values set to the mean" in n for n in notes)


def test_consort_flow_adds_up_and_protects_small_counts():
    d = _frame()
    d.loc[d.index[:3], "end_reason"] = "death"
    plan = _plan(d)
    clusters = (d.groupby("cluster_id", as_index=False)
                .agg(site_id=("site_id", "first"), arm=("arm", "first"))
                .assign(listed=True, n_people=0, list_size=8000.0, extra_columns=None))
    clusters = pd.concat([clusters, pd.DataFrame([dict(cluster_id="S9-X", site_id="S1",
                                                       arm="usual_care", listed=True,
                                                       n_people=0, list_size=5000.0)])])
    res = flow.consort_flow(d, clusters, plan, CFG)
    f = res.tables["flow"].set_index(["arm", "stage"])["n"]
    for arm in ("open_dialogue", "usual_care"):
        assert f[(arm, "with_records")] == f[(arm, "died")] + f[(arm, "ended_early")] + \
            f[(arm, "completed")]
    assert f[("usual_care", "without_people")] == 1    # the listed cluster nobody joined
    pub = res.public["flow"].set_index(["arm", "stage"])
    died = [a for a in ("open_dialogue", "usual_care") if 1 <= f[(a, "died")] <= 7]
    for a in died:  # hidden, and a second cell of the same sum hidden with it
        assert pd.isna(pub.loc[(a, "died"), "n"])
        assert pub.loc[[(a, s) for s in ("ended_early", "completed")], "n"].isna().sum() >= 1
    # an outcome analysed among the people followed for the whole window counts the
    # 'completed' ones: when that is hidden, so is the analysed count (an attacker read it
    # there and narrowed 'died' below its protection range)
    od = (d["od"] == 1).to_numpy()
    d2 = d.copy()
    d2["end_reason"] = "data_end"
    d2.loc[d2.index[od][:3], "end_reason"] = "death"              # 3 died: hidden
    d2.loc[d2.index[od][3:23], "end_reason"] = "end_of_follow_up"   # 20 completed
    d2.loc[d2.index[~od][:30], "end_reason"] = "end_of_follow_up"
    d2["ap_any_use"] = d2["ap_any_use"].where(d2["end_reason"] == "end_of_follow_up")
    p2 = _plan(d2, secondary=["antipsychotic_any"])
    r2 = flow.consort_flow(d2, clusters, p2, CFG)
    f2 = r2.tables["flow"].set_index(["arm", "stage"])["n"]
    pub2 = r2.public["flow"].set_index(["arm", "stage"])
    assert f2[("open_dialogue", "analysed:antipsychotic_any")] == \
        f2[("open_dialogue", "completed")] == 20
    # 'died' hidden, 'completed' (the smallest other part) hidden to protect it ...
    assert pd.isna(pub2.loc[("open_dialogue", "died"), "n"])
    assert pd.isna(pub2.loc[("open_dialogue", "completed"), "n"])
    # ... and the same 20 under the analysed outcome's name with it
    assert pd.isna(pub2.loc[("open_dialogue", "analysed:antipsychotic_any"), "n"])
    assert pub.loc[("usual_care", "allocated"), "clusters"] == 6 and \
        pd.isna(pub.loc[("usual_care", "allocated"), "n"])
    assert set(res.public["recruitment"].columns) >= {"site_id", "arm", "cluster", "n"}
    assert "cluster_id" not in res.public["recruitment"]


def test_the_recruitment_test_rests_on_the_published_counts_alone():
    """An attacker solved the exact recruitment test (six digits) for every cluster's count,
    hidden ones included. The test is now a function of the published counts: moving a
    cluster's exact count inside its rounding interval, and a hidden one inside its range,
    leaves the row as it was; the hidden cluster is left out, as its notes say."""
    from pipeline import disclosure

    d = _frame()
    uc1 = d[(d.site_id == "S1") & (d.od == 0)].index
    d = d.drop(uc1[3:])                        # S1 usual care: 3 people, hidden
    plan = _plan(d)

    def test_row(frame):
        est = pd.DataFrame(flow.consort_flow(frame, None, plan, CFG).estimates)
        return est[est["measure"] == "recruitment rate ratio"].iloc[0]

    c = d[d.site_id == "S2"]["cluster_id"].iloc[0]
    rows = d[d.cluster_id == c]
    n = len(rows)
    same = [k for k in (-1, 1) if disclosure.round_count(n + k, CFG) ==
            disclosure.round_count(n, CFG)]
    moved = d.drop(rows.index[:1]) if same[0] == -1 else pd.concat([d, rows.iloc[:1]])
    moved = pd.concat([moved, d.loc[uc1[:1]]])  # the hidden cluster: 3 -> 4 people
    before, after = test_row(d), test_row(moved)
    for k in ("estimate", "lower", "upper", "p", "se"):
        assert after[k] == before[k], k
    assert "left out, 1 of them with the count hidden" in before["notes"]


def test_a_site_with_a_hidden_cluster_count_has_no_published_ratio():
    """A hidden count leaves that arm's published rate unknown (NaN, which is truthy): the
    ratio was printed as inf in 125 of 374 reports of an outside fuzzing run."""
    d = _frame()
    uc1 = d[(d.site_id == "S1") & (d.od == 0)].index
    d = d.drop(uc1[3:])                        # S1 usual care: 3 people, hidden
    res = flow.consort_flow(d, None, _plan(d), CFG)
    pub = res.public["recruitment_sites"].set_index("site_id")
    assert np.isnan(pub.loc["S1", "rate_reference"]) and np.isnan(pub.loc["S1", "ratio"])
    assert np.isfinite(pub["ratio"].drop("S1")).all()


def test_recruitment_imbalance_is_flagged():
    d = _frame()
    s1 = d[(d.site_id == "S1") & (d.od == 0)].index
    d = d.drop(s1[: int(len(s1) * 0.8)])
    res = flow.consort_flow(d, None, _plan(d), CFG)
    sites = res.tables["recruitment_sites"].set_index("site_id")
    assert sites.loc["S1", "imbalanced"] and any("Recruitment differs" in n for n in res.notes)


def test_iccs_for_every_outcome_of_a_cluster_design():
    d = _frame(clusters_per_arm=2)
    plan = _plan(d)
    t = icc.outcome_iccs(d, plan).tables["icc"].set_index("outcome")
    assert list(t.index) == [o.name for o in plan.outcomes]
    assert t.loc["relapse", "measure"] == "frailty variance"
    assert (t["estimate"].dropna() >= 0).all() and (t["lower"] <= t["estimate"]).all()
