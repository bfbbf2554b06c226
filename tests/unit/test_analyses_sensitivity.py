"""pipeline.analyses.sensitivity on small trials drawn from the generator's model: why
follow-up ends (a spec table), the missing-data table (its sums, the differential flag, the
public version's suppression), the sensitivity rows and their labels, the plan's estimands
and intercurrent events, and no traceback for an individually randomised design."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline import plan as plan_mod
from pipeline.analyses import sensitivity as sens
from pipeline.errors import OdevalError
from pipeline.simulation.draw import Shape, draw_trial

CFG = {"suppress_min": 1, "suppress_max": 7, "round_to": 5}
P = {"ties": "efron", "jackknife_max_clusters": 200, "rate_family": "negbin",
     "sensitivity": {"rmst_days": [365, 730], "ph_periods": [0, 180, 730]}}


def _frame(seed=3, people=900, clusters_per_arm=2, transfer=0.08) -> pd.DataFrame:
    """A drawn trial with the person-frame columns the family reads."""
    d = draw_trial(Shape("t", sites=5, clusters_per_arm=clusters_per_arm, people=people), seed)
    rng = np.random.default_rng(seed)
    n = len(d)
    d["arm"] = pd.Categorical(np.where(d["od"] == 1, "open_dialogue", "usual_care"),
                              categories=["usual_care", "open_dialogue"])
    died = d["relapse_event"] == 2
    short = (d["fu_end_day"] < 730) & ~died
    d["end_reason"] = np.where(died, "death", np.where(short, "data_end", "end_of_follow_up"))
    moved = short & (rng.random(n) < transfer * 4)
    d["data_end_reason"] = np.where(moved, "transfer_out", "end_of_extract")
    d["admission_time"] = d["relapse_time"]
    d["admission_event"] = np.where((d["relapse_event"] == 1) & (rng.random(n) < 0.6), 1,
                                    np.where(d["relapse_event"] == 1, 0, d["relapse_event"]))
    d["ap_any_use"] = np.where(d["fu_end_day"] >= 730, rng.random(n) < 0.5, np.nan)
    return d


def _plan(d, **design):
    design.setdefault("secondary", ["antipsychotic_any"])
    return plan_mod.parse({"design": design}).check_data(d)


def test_why_follow_up_ends_spec():
    """end_reason x data_end_reason -> the reason the report names."""
    spec = pd.DataFrame([
        ("end_of_follow_up", "end_of_extract", "complete"),
        ("death", "end_of_extract", "died"),
        ("death", "transfer_out", "died"),          # death first: it ends follow-up
        ("data_end", "transfer_out", "transferred_out"),
        ("data_end", "withdrawal", "left_service"),
        ("data_end", "other", "left_service"),
        ("data_end", "end_of_extract", "not_long_enough"),
        ("data_end", "end_of_follow_up", "not_long_enough"),
        ("data_end", None, "reason_not_recorded"),
    ], columns=["end_reason", "data_end_reason", "expected"])
    assert sens.end_reason(spec).tolist() == spec["expected"].tolist()
    # an extract without the column: every early data end is "reason not recorded"
    assert sens.end_reason(spec.drop(columns="data_end_reason")).tolist()[-3:] == \
        ["reason_not_recorded"] * 3


def test_missing_data_table_adds_up_and_flags_a_difference_between_arms():
    d = _frame()
    plan = _plan(d)
    s = sens.settings(P)
    exact, pub = sens.missing_data(d, plan, s, CFG)
    assert set(exact["outcome"]) == {"relapse", "antipsychotic_any"}
    reasons = list(sens.REASONS)
    assert (exact[reasons].sum(axis=1) == exact["missing_or_cut_short"]).all()
    ap = exact[exact["outcome"] == "antipsychotic_any"]
    assert (ap["analysed"] + ap["missing_or_cut_short"] == ap["people"]).all()
    rel = exact[exact["outcome"] == "relapse"]
    assert (rel["analysed"] == rel["people"]).all()
    # cut follow-up short in one arm only: flagged, by the cluster-level test's design
    od = d["od"] == 1
    d2 = d.copy()
    cut = od & (d2["fu_end_day"] >= 730) & (np.arange(len(d2)) % 3 == 0)
    d2.loc[cut, ["end_reason", "data_end_reason"]] = ["data_end", "transfer_out"]
    d2.loc[cut, "ap_any_use"] = np.nan
    ex2, _ = sens.missing_data(d2, plan, s, CFG)
    a2 = ex2[ex2["outcome"] == "antipsychotic_any"].iloc[0]
    assert a2["difference"] > 0.05 and a2["flag"]
    assert "cluster-level" in a2["test"]


def test_the_missing_data_tests_share_a_design_and_repeat_none_without_changing_them():
    """missing_data builds the stratum term of the cluster-level tests once and tests an
    indicator once for every outcome missing for the same people: each outcome's row is
    what its own test, building its own design, gives (to the bit)."""
    d = _frame(clusters_per_arm=3)
    d["ap_use_last_days"] = d["ap_any_use"]   # a second outcome missing for the same people
    plan = _plan(d, secondary=["antipsychotic_any", "antipsychotic_last_days"])
    s = sens.settings(P)
    exact, _ = sens.missing_data(d, plan, s, CFG)
    assert "cluster-level" in exact["test"].iloc[0]
    why = sens.end_reason(d)
    in_arm = {a: d["arm"].astype(str) == a for a in (plan.comparison_arm, plan.reference_arm)}
    assert all(m.equals(sens._arm_members(d, list(in_arm))[a]) for a, m in in_arm.items())
    for op in plan.outcomes:
        rows, short = sens._missing_rows(d, plan, op, why, in_arm)
        own = sens._differential(d, sens.flag_indicator(op, short, why), plan, s,
                                 clustered=True, design=None)
        got = exact[exact["outcome"] == op.name]
        assert {k: got.iloc[0][k] for k in own if k != "test"} == \
            {k: v for k, v in own.items() if k != "test"}
        assert got.iloc[0]["test"].startswith(own["test"])
        pd.testing.assert_frame_equal(got[rows.columns].reset_index(drop=True), rows)


def test_a_time_to_event_is_not_flagged_for_having_fewer_events_in_one_arm():
    """Only people without the event can be cut short, so the arm with fewer events has
    more of them whatever its follow-up: the flag compares everyone's follow-up ending
    early instead (the same in both arms here), and says so."""
    d = _frame(clusters_per_arm=3)
    od = (d["od"] == 1).to_numpy()
    rng = np.random.default_rng(7)
    # half of Open Dialogue's relapses never happen (follow-up and its end unchanged)
    gone = od & (d["relapse_event"] == 1).to_numpy() & (rng.random(len(d)) < 0.5)
    d.loc[gone, "relapse_event"] = 0
    plan = _plan(d)
    exact, _ = sens.missing_data(d, plan, sens.settings(P), CFG)
    rel = exact[exact["outcome"] == "relapse"].set_index("arm")
    share = rel["missing_or_cut_short"] / rel["people"]
    assert share["open_dialogue"] - share["usual_care"] > 0.05   # the old flag's reason
    early = (sens.end_reason(d) != "complete").groupby(d["od"]).mean()
    assert rel["difference"].iloc[0] == pytest.approx(early[1] - early[0])
    assert abs(early[1] - early[0]) < 0.05 and not rel["flag"].any()
    assert rel["test"].iloc[0].endswith("of follow-up ending early (event or not)")


def test_public_missing_table_hides_small_counts_and_their_complements():
    exact = pd.DataFrame([dict(outcome="relapse", arm="usual_care", people=200, analysed=200,
                               missing_or_cut_short=43, not_long_enough=40, died=3,
                               transferred_out=0, left_service=0, reason_not_recorded=0,
                               no_record=0, difference=0.01, p=0.4321, test="t", flag=False)])
    pub = sens.protect_missing(exact, CFG)
    r = pub.iloc[0]
    assert r["died"] is None                       # 3: primary suppression
    assert r["not_long_enough"] is None            # else 43 - 40 = 3 is worked out
    assert r["people"] == 200 and r["missing_or_cut_short"] == 45
    assert "difference" not in pub and r["p"] == 0.43


def test_sensitivity_rows_labels_and_transfer_out_events():
    d = _frame()
    plan = _plan(d, covariates=[])
    res = sens.sensitivity(d, plan, P, None, CFG)
    est = pd.DataFrame(res.estimates)
    got = set(zip(est["analysis"], est["measure"]))
    assert got >= {(sens.LABELS["ph"], "proportional-hazards chi-square (arm)"),
                   (sens.LABELS["rmst"], "RMST difference at 365 days"),
                   (sens.LABELS["rmst"], "RMST difference at 730 days"),
                   (sens.LABELS["admissions"], "hazard ratio"),
                   (sens.LABELS["fine_gray"], "subdistribution hazard ratio"),
                   (sens.LABELS["transfer"], "hazard ratio")}
    assert est["estimate"].notna().all(), est[est["estimate"].isna()][["analysis", "notes"]]
    # 2 clusters per arm per site: the cluster jackknife, t on G - 1 df
    fg = est[est["analysis"] == sens.LABELS["fine_gray"]].iloc[0]
    assert "delete-one-cluster jackknife (20 clusters), t on 19 df" in fg["method"]
    assert fg["df"] == 19
    moved = ((sens.end_reason(d) == "transferred_out") & (d["relapse_event"] == 0)).sum()
    tr = est[est["analysis"] == sens.LABELS["transfer"]].iloc[0]
    assert moved > 0 and f"{moved} people transferred out" in tr["notes"]
    assert tr["events"] == int((d["relapse_event"] == 1).sum() + moved)
    periods = res.public["sensitivity_ph_periods_relapse"]
    assert periods["period"].tolist() == ["days 1-180", "days 181-730"]
    assert periods["hr"].notna().all()
    assert list(res.public["estimands"]["outcome"]) == ["relapse", "antipsychotic_any"]


@pytest.mark.parametrize(("small_sample", "words", "df"), [
    ("model", "model-based variance (people independent)", np.inf),
    ("jackknife-site", "delete-one-site jackknife (5 sites), t on 4 df", 4.0)])
def test_individually_randomised_follows_the_plans_method(small_sample, words, df):
    d = _frame(clusters_per_arm=None)
    plan = _plan(d, type="individually_randomised", unit="person",
                 primary={"outcome": "relapse", "small_sample": small_sample})
    res = sens.sensitivity(d, plan, P, None, CFG)
    est = pd.DataFrame(res.estimates)
    for label in ("rmst", "fine_gray"):
        r = est[est["analysis"] == sens.LABELS[label]].iloc[0]
        assert words in r["method"] and r["df"] == df
    md = res.tables["missing_data"]
    assert md["test"].str.contains("chi-square").all()


def test_plan_declares_intercurrent_events_and_reads_rtw_deaths_from_one_place():
    base = {"design": {"secondary": ["return_to_work"]}}
    p = plan_mod.parse(base)
    assert dict(p.intercurrent) == {"death": "competing", "transfer_out": "censor",
                                    "left_service": "censor"}
    sent = {e.outcome: e.sentence for e in p.estimands()}
    assert "death is a competing event" in sent["relapse"]
    assert "transfer out counted as the event" in sent["relapse"]
    assert "counts as not in work or education (composite" in sent["return_to_work"]
    alive = plan_mod.parse({**base, "analyse": {"rtw": {"deaths": "while_alive"}}})
    assert "leaves the person out (while alive)" in \
        {e.outcome: e.sentence for e in alive.estimands()}["return_to_work"]
    with pytest.raises(OdevalError, match="design.intercurrent.transfer_out: 'composite' is "
                                          "not implemented"):
        plan_mod.parse({"design": {"intercurrent": {"transfer_out": "composite"}}})
    with pytest.raises(OdevalError, match="unknown event 'discharge'"):
        plan_mod.parse({"design": {"intercurrent": {"discharge": "censor"}}})


def test_fine_gray_is_not_shown_above_jackknife_max_clusters_and_says_why():
    """Its variance is the cluster jackknife (a refit per cluster): with more clusters than
    the cap it is listed as not shown with the reason, and the other rows are there."""
    d = _frame()
    plan = _plan(d, covariates=[])
    res = sens.sensitivity(d, plan, {**P, "jackknife_max_clusters": 19}, None, CFG)
    est = pd.DataFrame(res.estimates)
    assert sens.LABELS["fine_gray"] not in set(est["analysis"])
    assert {sens.LABELS["rmst"], sens.LABELS["transfer"]} <= set(est["analysis"])
    why = [x for x in res.not_shown if x["item"].startswith(sens.LABELS["fine_gray"])]
    assert len(why) == 1 and "20 clusters, more than analyse.jackknife_max_clusters (19)" \
        in why[0]["reason"]
