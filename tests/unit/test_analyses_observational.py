"""pipeline.analyses.observational: the weighted comparison family on a synthetic
observational study: both columns (weighted, unadjusted) for every outcome, E-values for
every ratio, and public diagnostics that pass the output policy (no small count, no
individual value)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline import output_policy
from pipeline.analyses.observational import weighting
from pipeline.errors import OdevalError
from pipeline.plan import OUTCOMES, parse

sys.path.insert(0, str(Path(__file__).parent / "stats"))
from test_weighting_coverage import sample  # noqa: E402

PLAN = {"design": {"type": "observational", "unit": "person", "strata": "site_id",
                   "covariates": ["sex", "age_at_index", "diagnosis_group",
                                  "prior_admissions_2y"],
                   "secondary": ["involuntary_admission", "return_to_work"]}}
WEIGHTED = ("primary", "secondary", "observational_weighted")


def person_frame(r: int) -> pd.DataFrame:
    """Replicate ``r`` of the coverage study as analyse's person frame: the rate's
    person-time under the plan's column name (follow-up, derive's default), the two
    baseline columns the generator's outcomes-only mode leaves out."""
    exposure = OUTCOMES["involuntary_admission"].column("exposure")
    return sample(r).assign(**{exposure: lambda x: x["py"]}, ethnicity_group="white",
                            baseline_activity="unemployed")


@pytest.fixture(scope="module")
def result():
    from pipeline.analyse import prepare, resolve_params

    d = person_frame(9001)
    plan = parse(PLAN)
    cfg = output_policy.settings({"disclosure": {}})
    res = weighting(prepare(d, plan), plan, resolve_params(None), cfg)
    return res, plan, cfg


def test_every_outcome_has_a_weighted_and_an_unadjusted_estimate(result):
    res, plan, _ = result
    rows = pd.DataFrame(res.estimates)
    for op in plan.outcomes:
        got = rows[rows["outcome"] == op.name]
        assert set(got["analysis"]) >= {"observational_unadjusted"}
        assert set(got["analysis"]) & set(WEIGHTED)
    w = rows[rows["analysis"].isin(WEIGHTED)]
    assert w["estimand"].str.contains("not a randomised comparison|unmeasured", case=False).all()
    hr = rows[rows["measure"] == "hazard ratio"].set_index("analysis")["estimate"]
    # the planted confounding flatters Open Dialogue: the weighted ratio is nearer 1
    assert hr["observational_unadjusted"] < hr["primary"]
    ev = res.public["weighting_evalues"]
    assert set(ev["measure"]) >= {"hazard ratio", "rate ratio", "risk ratio"}
    assert (ev["evalue_estimate"] >= 1).all()


def test_the_weighted_estimates_are_the_plans_primary_and_secondary_ones(result):
    res, plan, _ = result
    rows = pd.DataFrame(res.estimates)
    roles = rows.groupby("analysis")["measure"].apply(set)
    assert roles["primary"] == {"hazard ratio"}
    # every measure the plan reports of an outcome takes its role (binary: RD and RR);
    # the relapse risks by day 365 and 730 stay beside them
    assert roles["secondary"] == {"rate ratio", "risk difference", "risk ratio"}
    assert all(m.startswith(("risk difference by day", "risk ratio by day"))
               for m in roles["observational_weighted"])
    assert rows[rows["analysis"].isin(WEIGHTED)]["method"].str.contains("propensity").all()
    # the secondary family is tested in order on the weighted p-values
    mt = res.public["multiplicity"]
    assert list(mt["outcome"]) == ["relapse", "involuntary_admission", "return_to_work"]
    p_w = rows.set_index(["analysis", "outcome", "measure"])["p"]
    assert mt["p"].iloc[0] == p_w[("primary", "relapse", "hazard ratio")]
    assert mt["p"].iloc[1] == p_w[("secondary", "involuntary_admission", "rate ratio")]
    tested = rows[(rows["analysis"] == "secondary") & (rows["measure"] != "risk ratio")]
    assert tested["notes"].str.contains(r"Multiplicity \(hierarchical\)").all()


def test_people_without_a_binary_outcome_are_named_in_the_plans_words(result):
    # about 60% of the study lack the 2-year work record: both columns say who was left
    # out as the plan's outcome definition words it (AnalysisPlan.with_definitions)
    res, plan, _ = result
    rows = pd.DataFrame(res.estimates)
    op = next(op for op in plan.outcomes if op.name == "return_to_work")
    rtw = rows[rows["outcome"] == "return_to_work"]
    assert len(rtw) >= 4
    assert rtw["notes"].str.contains(f"people {op.outcome.missing} left out",
                                     regex=False).all()


def test_the_plan_and_the_other_families_say_what_is_adjusted(result):
    from pipeline.analyses import AnalysisResult
    from pipeline.analyses.observational import (ADJUSTED_ONLY, UNADJUSTED, as_sensitivity,
                                                 unadjusted)

    _, plan, _ = result
    rows = dict(plan.describe())
    assert "propensity-score weighted" in rows["Primary outcome"]
    assert "sensitivity analysis: outcome regression" in rows["Secondary 1"]
    assert rows["Confounding adjustment (primary)"].startswith("propensity score: logistic")
    off = dict(plan.describe(weighted=False))   # analyse.run without weighting
    assert "Confounding adjustment (primary)" not in off and "propensity" not in str(off)
    trial = parse({"design": {}})
    assert "Confounding adjustment (primary)" not in dict(trial.describe())
    # outcome regressions become sensitivity rows, their unadjusted rows go (the weighting
    # family has its own)
    fx = AnalysisResult("trial_effects", estimates=[
        dict(analysis="primary", outcome="relapse", measure="hazard ratio", notes="n."),
        dict(analysis="sensitivity", outcome="relapse", measure="hazard ratio")])
    got = as_sensitivity(fx, plan).estimates
    assert [r["analysis"] for r in got] == ["outcome_regression"]
    assert got[0]["notes"].startswith("Sensitivity analysis: outcome regression")
    site = AnalysisResult("site_comparison", estimates=[dict(estimand="Mean of ...")])
    assert unadjusted(site, plan).estimates[0]["estimand"] == UNADJUSTED + "Mean of ..."
    assert unadjusted(site, plan).estimates[0]["estimand"].count(UNADJUSTED) == 1
    # a model adjusted for the plan's covariates (its estimand names them) is adjusted by
    # outcome regression, not "not adjusted for confounding"
    adj = AnalysisResult("return_to_work", estimates=[
        dict(estimand="Marginal risk difference ..., adjusted for sex, age at referral.")])
    got = unadjusted(adj, plan).estimates[0]["estimand"]
    assert got.startswith(ADJUSTED_ONLY) and UNADJUSTED not in got
    same = AnalysisResult("site_comparison", estimates=[dict(estimand="Mean of ...")])
    assert unadjusted(same, trial).estimates[0]["estimand"] == "Mean of ..."


def test_public_diagnostics_follow_the_output_policy(result):
    out, _, cfg = result
    h = out.public["weighting_histogram"]
    step = 10
    assert (h["count"] % step == 0).all()
    w = out.public["weighting_weights"]
    for v in [*w["n"], *w["ess"]]:
        assert v is None or output_policy.disclosure.allowed(int(v), cfg)
    assert "weight" not in set(out.public["weighting_balance"].columns)
    for f in out.public["weighting_flags"]["flag"]:
        assert "common support" not in f  # no minimum or maximum score
    b = out.public["weighting_balance"]
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


def test_sites_with_one_arm_are_left_out_and_without_any_the_report_says_what_to_declare(result):
    from pipeline.analyse import prepare, resolve_params

    _, plan, cfg = result
    d = person_frame(9001)
    # an Open Dialogue team's site against usual care elsewhere: every site one arm
    by_arm = d.assign(site_id=d["arm"].map({"open_dialogue": "S01", "usual_care": "S02"}))
    res = weighting(prepare(by_arm, plan), plan, resolve_params(None), cfg)
    flags = list(res.public["weighting_flags"]["flag"])
    assert flags[0].startswith("positivity: 2 site(s) with people in one arm only (S01, S02")
    assert flags[-1] == ("weighting not done: no site has people in both arms; a comparison "
                         "across sites declares design.strata: null")
    rows = pd.DataFrame(res.estimates)
    assert (rows["method"] == "not estimated").all()
    assert set(rows[rows["analysis"] == "primary"]["measure"]) == {"hazard ratio"}
    # declared as a comparison across sites, the same people are weighted
    across = parse({"design": {**PLAN["design"], "strata": None}})
    res = weighting(prepare(by_arm, across), across, resolve_params(None), cfg)
    hr = pd.DataFrame(res.estimates).set_index("analysis").loc["primary"]
    assert hr["method"].startswith("weighted Cox") and 0 < hr["estimate"] < 1


def test_site_variances_say_people_independent_without_clusters():
    """A design without clusters has no 'one cluster per arm': each site's hazard ratio is
    model-based with people independent, and its variance column says so."""
    from pipeline.analyses import AnalysisResult
    from pipeline.analyses.site_comparison import site_effects
    from pipeline.simulation.draw import Shape, draw_trial

    d = draw_trial(Shape("t", sites=3, clusters_per_arm=1, people=600), 5)
    d["relapse_only"] = (d["relapse_event"] == 1).astype(int)
    p = {"ties": "efron", "conf_level": 0.95}
    with_clusters = site_effects(d, p, {}, AnalysisResult("site_comparison"))
    assert (with_clusters["variance"] == "model-based (one cluster per arm)").all()
    d["cluster_id"] = None
    without = site_effects(d, p, {}, AnalysisResult("site_comparison"))
    assert (without["variance"] == "model-based (people independent)").all()
    # and the plan does not call observed people randomised
    d["arm"] = d["od"].map({1: "open_dialogue", 0: "usual_care"})
    obs = parse({"design": {"type": "observational", "unit": "person"}}).check_data(d)
    assert dict(obs.describe())["Shape of the data"] == "people compared one by one (no clusters)"
    ind = parse({"design": {"type": "individually_randomised", "unit": "person"}}).check_data(d)
    assert dict(ind.describe())["Shape of the data"] == \
        "people randomised one by one (no clusters)"
