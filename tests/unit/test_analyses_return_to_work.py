"""pipeline.analyses.return_to_work on small trials drawn from the generator's model
(pipeline.simulation.draw), with the activity columns derive adds (last status before the
window, records reaching it, death before it, time to first return): the rows and labels
it writes, the population it analyses, and no traceback for a cluster, an individually
randomised, a single-site or an observational design, an arm where nobody returns, or
nothing missing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline import plan as plan_mod
from pipeline.analyses import return_to_work as rtw
from pipeline.analyses import trial_effects
from pipeline.simulation.draw import Shape, draw_trial

CFG = {"suppress_min": 1, "suppress_max": 7, "round_to": 5}
P = {"ties": "efron", "jackknife_max_clusters": 200, "rate_family": "negbin",
     "curve_times": [0, 365, 730], "rtw": {"imputations": 5, "deltas": [-1, 0, 1]}}


def _frame(sites=5, clusters_per_arm=1, seed=3, people=700) -> pd.DataFrame:
    d = draw_trial(Shape("t", sites=sites, clusters_per_arm=clusters_per_arm, people=people),
                   seed)
    rng = np.random.default_rng(seed)
    n = len(d)
    d["arm"] = pd.Categorical(np.where(d["od"] == 1, "open_dialogue", "usual_care"),
                              categories=["usual_care", "open_dialogue"])
    d["sex"] = rng.choice(["female", "male"], n)
    d["age_at_index"] = np.where(rng.random(n) < 0.05, np.nan, rng.integers(18, 65, n))
    d["diagnosis_group"] = rng.choice(["psychosis", "bipolar", "depression"], n)
    d["baseline_activity"] = rng.choice(["unemployed", "long_term_sick", "employed", None], n,
                                        p=[0.5, 0.3, 0.1, 0.1])
    y = d["rtw_2y"]
    prev = np.where(y.fillna(pd.Series(rng.random(n) < 0.3, index=y.index).astype(float)).astype(bool),
                    rng.random(n) < 0.8, rng.random(n) < 0.15)
    d["last_status_pre"] = np.where(prev, "employed", "unemployed")
    d["window_reached"] = d["fu_end_day"] >= 640
    d["died_before_window"] = d["window_reached"] & (rng.random(n) < 0.02)
    d.loc[d["died_before_window"], "rtw_2y"] = np.nan
    d["rtw_time"] = np.minimum(rng.exponential(900, n).round() + 1, d["fu_end_day"])
    d["rtw_event"] = np.where(d["rtw_time"] < d["fu_end_day"], 1, 0)
    return d


def _plan(d, **design):
    design.setdefault("secondary", ["return_to_work"])
    return plan_mod.parse({"design": design}).check_data(d)


def _run(d, plan, p=P):
    return rtw.return_to_work(d, plan, p, None, CFG)


def test_labels_population_and_tipping_table():
    d = _frame()
    plan = _plan(d, covariates=["sex", "age_at_index"])
    res = _run(d, plan)
    est = pd.DataFrame(res.estimates)
    assert set(rtw.LABELS.values()) <= set(est["analysis"])
    mi = est[(est.analysis == rtw.LABELS["mi"]) & (est.measure == "risk difference")].iloc[0]
    assert np.isfinite(mi.estimate) and mi.lower < mi.estimate < mi.upper
    assert "m = 5" in mi.method and "Rubin" in mi.method and np.isfinite(mi.df)
    pop = res.tables["rtw_population"]
    assert (pop["people"] == pop["not_reaching_window"] + pop["died_before_window"]
            + pop["status_recorded"] + pop["status_missing"]).all()
    assert pop["status_missing"].sum() > 0
    pub = res.public["rtw_population"]
    assert all(v is None or v % 5 == 0 for c in pub.columns[1:] for v in pub[c])
    tip = res.tables["rtw_tipping"]
    assert len(tip) == 9 and set(tip.columns) >= {"delta_od", "delta_uc", "estimate",
                                                   "significant"}
    # no shift reproduces the primary pooled risk difference
    zero = tip[(tip.delta_od == 0) & (tip.delta_uc == 0)].iloc[0]
    assert np.isclose(zero.estimate, mi.estimate)
    # raising the imputed log-odds in the comparison arm raises the difference
    assert tip.groupby("delta_od")["estimate"].mean().is_monotonic_increasing


def test_the_tipping_map_above_its_size_limit_is_listed_as_not_shown():
    d = _frame()
    plan = _plan(d)
    pop = rtw.population(d)
    small = _run(d, plan, {**P, "rtw": {**P["rtw"], "tipping_max_people": len(pop)}})
    assert len(small.tables["rtw_tipping"]) == 9
    big = _run(d, plan, {**P, "rtw": {**P["rtw"], "tipping_max_people": len(pop) - 1}})
    assert "rtw_tipping" not in big.tables and "rtw_tipping" not in big.public
    (why,) = [x["reason"] for x in big.not_shown if "tipping" in x["item"]]
    assert "45 refits" in why and f"{len(pop):,} people" in why
    # the rest of the analysis is unchanged
    assert pd.DataFrame(big.estimates).equals(pd.DataFrame(small.estimates))


def test_the_tipping_map_made_in_parts_is_the_map_made_whole(monkeypatch):
    # the analyse stage's two processes share the map's parts: the imputations made again
    # from the seed, each part from its own starts, give the same numbers to the bit
    d = _frame()
    plan = _plan(d, covariates=["sex"])
    whole = _run(d, plan)
    parts = [rtw.tipping_part(d, plan, P, None, CFG, k) for k in range(rtw.TIPPING_PARTS)]
    assert [len(x) for x in parts] == [4, 5]   # 9 cells, row by row
    split = rtw.with_tipping(rtw.return_to_work(d, plan, P, None, CFG, tipping_map=False),
                             parts)
    assert split.tables["rtw_tipping"].equals(whole.tables["rtw_tipping"])
    assert split.public["rtw_tipping"].equals(whole.public["rtw_tipping"])
    assert pd.DataFrame(split.estimates).equals(pd.DataFrame(whole.estimates))
    # above the size limit a part is nothing, and the whole analysis lists why
    limit = {**P, "rtw": {**P["rtw"], "tipping_max_people": len(rtw.population(d)) - 1}}
    assert rtw.tipping_part(d, plan, limit, None, CFG, 0) is None
    # no map beside a primary imputation that was not estimated, whatever the parts hold
    no_mi = rtw.return_to_work(d, plan, P, None, CFG, tipping_map=False)
    for r in no_mi.estimates:
        if r["analysis"] == rtw.LABELS["mi"]:
            r["estimate"] = np.nan
    assert "rtw_tipping" not in rtw.with_tipping(no_mi, parts).tables
    # a cell that cannot be estimated: the map is listed as not shown, nothing crashes
    def no_variance(*args, **kwargs):
        raise ValueError("no variance")

    monkeypatch.setattr(rtw, "_rd_only", no_variance)
    assert rtw.tipping_part(d, plan, P, None, CFG, 1) == "no variance"
    for res in (_run(d, plan), rtw.with_tipping(
            rtw.return_to_work(d, plan, P, None, CFG, tipping_map=False),
            [parts[0], "no variance"])):
        assert "rtw_tipping" not in res.tables and "rtw_tipping" not in res.public
        (why,) = [x["reason"] for x in res.not_shown if "tipping" in x["item"]]
        assert why == "a cell of the map is not estimable: no variance"
        assert pd.DataFrame(res.estimates).equals(pd.DataFrame(whole.estimates))


def test_complete_case_is_the_plans_analysis_of_the_people_with_a_status():
    d = _frame()
    plan = _plan(d)
    est = pd.DataFrame(_run(d, plan).estimates)
    cc = est[(est.analysis == rtw.LABELS["cc"]) & (est.measure == "risk difference")].iloc[0]
    pop = rtw.population(d)
    sub = pop[pop["rtw_y"].notna()].assign(rtw_2y=lambda x: x["rtw_y"])
    op = rtw._op(plan)
    e = trial_effects.effects(sub, plan, op, P, [], plan.method(op.name))[0]
    assert np.isclose(cc.estimate, e.estimate) and np.isclose(cc.se, e.se)


def test_no_known_status_in_an_arm_leaves_every_analysis_not_estimated_not_a_crash():
    """A tiny study (the property test's one site of two people) where an arm has nobody
    with a status at 2 years: the complete-case analysis is 'not estimated' with the
    reason, as the imputations already were; before, the covariates of an empty frame
    raised IndexError and stopped analyse."""
    d = _frame()
    plan = _plan(d)
    d.loc[d["od"] == 1, "rtw_2y"] = np.nan
    d.loc[d["od"] == 1, "died_before_window"] = False   # (a death counts as not working)
    est = pd.DataFrame(_run(d, plan).estimates)
    cc = est[est.analysis == rtw.LABELS["cc"]]
    assert len(cc) and cc["estimate"].isna().all()
    assert all("an arm has no one with a status recorded" in str(n) for n in cc["notes"])


def test_the_covariates_of_no_one_are_a_clear_error():
    from pipeline.analyses.covariates import adjustment

    with pytest.raises(ValueError, match="no one to analyse"):
        adjustment(_frame().iloc[:0], ["sex", "age_at_index"])


def test_deaths_before_the_window_count_as_not_working_or_are_left_out():
    d = _frame()
    comp, alive = rtw.population(d, "composite"), rtw.population(d, "while_alive")
    died = comp["died_before_window"]
    assert died.any() and (comp.loc[died, "rtw_y"] == 0).all()
    assert len(alive) == len(comp) - died.sum()
    assert not d.loc[~d["window_reached"]].index.isin(comp.index).any()


@pytest.mark.parametrize("case", ["individual", "single_site", "observational"])
def test_other_designs_run(case):
    if case == "individual":
        d = _frame(clusters_per_arm=1)
        d["cluster_id"] = None
        plan = _plan(d, type="individually_randomised", unit="person")
    elif case == "single_site":
        d = _frame(sites=1, clusters_per_arm=4, people=500)
        plan = _plan(d, strata=None)
    else:
        d = _frame()
        d["cluster_id"] = None
        plan = _plan(d, type="observational", unit="person")
    est = pd.DataFrame(_run(d, plan).estimates)
    mi = est[est.analysis == rtw.LABELS["mi"]]
    assert len(mi) == 2 and np.isfinite(mi["estimate"]).all(), mi[["method", "notes"]]


def test_an_arm_where_nobody_returns_and_nothing_missing():
    d = _frame()
    d.loc[d["od"] == 1, "rtw_2y"] = d.loc[d["od"] == 1, "rtw_2y"] * 0
    plan = _plan(d)
    est = pd.DataFrame(_run(d, plan).estimates)   # no traceback
    assert (est.analysis == rtw.LABELS["mi"]).any()
    full = _frame()
    full["rtw_2y"] = full["rtw_2y"].fillna(0.0)
    full["died_before_window"] = False
    est = pd.DataFrame(_run(full, _plan(full)).estimates)
    mi = est[(est.analysis == rtw.LABELS["mi"]) & (est.measure == "risk difference")].iloc[0]
    cc = est[(est.analysis == rtw.LABELS["cc"]) & (est.measure == "risk difference")].iloc[0]
    assert np.isclose(mi.estimate, cc.estimate)   # nothing to impute: the same


def test_without_the_outcome_in_the_plan_nothing_runs():
    d = _frame()
    plan = _plan(d, secondary=["antipsychotic_any"])
    res = _run(d, plan)
    assert res.estimates == [] and res.not_shown


@pytest.mark.parametrize("method", ["KC", "CR2", "CR1", "jackknife-cluster", "jackknife-site",
                                    "model"])
def test_the_model_built_once_analyses_each_completed_dataset_as_effects_does(method):
    """The completed datasets share one logistic model (model matrix, clusters,
    standardisation matrices): each analysis is effects' on the completed frame, to the
    last bit, warm starts included."""
    d = _frame(sites=4, clusters_per_arm=2)
    plan = _plan(d, covariates=["sex", "age_at_index"])
    op = rtw._op(plan)
    pop = rtw.population(d)
    s = rtw.settings(P)
    imp, (frame, cols, _, _), _ = rtw._mi(pop, plan, op, P, None, s, 1)
    model = rtw._model(frame, plan, op, P, cols, method)
    start = None
    for j in range(imp.m):
        y = imp.completed(j, {"1": 0.5, "0": -0.5} if j % 2 else 0.0)
        slow = rtw._analyse_completed(frame, y, plan, op, P, cols, method, start=start)
        fast = rtw._analyse_completed(frame, y, plan, op, P, cols, method, start=start,
                                      model=model)
        for a, b in zip(slow, fast, strict=True):
            np.testing.assert_equal(   # exact, NaN equal to NaN
                (a.measure, a.estimate, a.lower, a.upper, a.p, a.se, a.df, a.method, a.n,
                 a.events, a.n_clusters, a.notes),
                (b.measure, b.estimate, b.lower, b.upper, b.p, b.se, b.df, b.method, b.n,
                 b.events, b.n_clusters, b.notes))
            pd.testing.assert_frame_equal(a.result.summary, b.result.summary, check_exact=True)
        start = trial_effects.warm_start(fast)


def test_time_to_first_return_has_the_designs_variance_not_people_independent():
    """With clusters in sites the time to first return's interval is the delete-one-site
    jackknife of the difference (t on sites - 1 df), whose replicates are Aalen-Johansen
    refitted without each site; people-independent errors covered 59.5-75.5 % in the
    coverage simulation (pipeline.simulation.sensitivity_coverage)."""
    from scipy import stats

    from pipeline.analyses.return_to_work import WORK, _status_group
    from pipeline.stats import aalen_johansen, jackknife

    d = _frame(sites=5, clusters_per_arm=2)
    plan = _plan(d)
    rows = pd.DataFrame(rtw.time_to_return(d, plan, plan.secondary[0], rtw.settings(P)))
    assert len(rows) == 2 and (rows["df"] == 4).all()
    assert rows["method"].str.contains("delete-one-site jackknife of the difference "
                                       r"\(5 sites\), t on 4 df").all()
    nw = d[(_status_group(d["baseline_activity"], WORK) == "not_working").to_numpy()]
    times = [float(t) for t in rtw.settings(P)["cif_times"]]

    def diff(x):
        at = aalen_johansen(x, "rtw_time", "rtw_event", cause=1, group="od").at(times)
        a = at[at["cause"] == 1].set_index(["group", "time"])["cif"]
        return np.array([a[(1, t)] - a[(0, t)] for t in times])

    v, _, g = jackknife.group_jackknife(nw, "site_id", diff)
    se = np.sqrt(np.diag(v))
    np.testing.assert_allclose(rows["estimate"], diff(nw), rtol=1e-12)
    np.testing.assert_allclose(rows["se"], se, rtol=1e-10)
    q = stats.t.ppf(0.975, g - 1)
    np.testing.assert_allclose(rows["upper"] - rows["lower"], 2 * q * se, rtol=1e-10)
    # without clusters or sites to delete (one site, individually randomised): people
    # independent, as the method says
    one = _frame(sites=1, clusters_per_arm=1)
    one["cluster_id"] = None
    p1 = _plan(one, type="individually_randomised", unit="person", strata=None)
    r1 = pd.DataFrame(rtw.time_to_return(one, p1, p1.secondary[0], rtw.settings(P)))
    assert r1["method"].str.contains("people independent").all() and r1["df"].isna().all()
