"""``odeval power`` (pipeline.simulation.power), light: what ``make test`` runs (~30 s).

The heavy checks (1,000 trials per scenario: the formula and the simulation agreeing with
many clusters, type I error of the demo's default at 1,000 trials) are in
``tests/unit/test_power_slow.py`` (marker ``slow``, ``make test-slow``).

Monte Carlo tolerances: a rejection rate P over R trials has SE sqrt(P (1 - P) / R).

* No effect, 200 trials of the demo's shape with its default analysis (cluster-level,
  t on 6 df, which the simulation study found nominal: 4.2-4.9% over 1,000 trials): the
  type I error must be within 3 SE of 5% (SE 0.0154: 0.4% to 9.6%); a method known to be
  invalid there (model-based Cox: 17-42% in the study) must be caught by the same check.
* Hazard ratio 0.3 (every trial of 1,400 people should reject: the formula gives power
  > 0.9999 even on 6 df): at least 39 of 40 trials significant.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import OdevalError
from pipeline.simulation import power as pw
from pipeline.simulation.draw import draw_trial
from pipeline.synth.params import resolve

SE200 = math.sqrt(0.05 * 0.95 / 200)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("power_cache")


def test_type_one_error_of_the_default_is_nominal_and_an_invalid_method_is_caught(cache):
    r = pw.power(pw.DEMO, hr=0.3, reps=40, null=True, processes=1, cache=cache, in_process=True)
    row = r.primary
    assert row.method == "cluster-level"  # the simulation study's default for the demo's shape
    assert row.power >= 39 / 40
    # the null scenario needs more trials than the effect: run it on its own at 200
    null = pw._cells(pw.DEMO, {"null": pw.arm_effects(pw.DEMO)}, {"relapse": "cluster-level"}, pw.DEFAULT_SEED)
    rows, _ = pw.simulate(list(null.values()), 200, processes=1, cache=cache, in_process=True)
    t1 = pw._summarise(rows, 0.05).iloc[0]
    assert t1.replicates == 200 and t1.failed == 0
    assert abs(t1.reject - 0.05) <= 3 * SE200, t1.reject
    # the model-based Cox model ignores the clusters (ICC 0.05): far above 5% + 3 SE
    bad = pw._cells(pw.DEMO.replace(icc=0.05), {"null": pw.arm_effects(pw.DEMO)}, {"relapse": "model"},
                    pw.DEFAULT_SEED)
    rows, _ = pw.simulate(list(bad.values()), 100, processes=1, cache=cache, in_process=True)
    assert pw._summarise(rows, 0.05).iloc[0].reject > 0.05 + 3 * math.sqrt(0.05 * 0.95 / 100)


def test_the_result_reports_events_the_formula_and_the_run(cache):
    # cached by the test above when it ran first in this process (pytest-xdist may have
    # given it to another): computed here then, and read from the cache the second time
    pw.power(pw.DEMO, hr=0.3, reps=40, processes=1, cache=cache, in_process=True)
    r = pw.power(pw.DEMO, hr=0.3, reps=40, processes=1, cache=cache, in_process=True)
    row = r.primary
    assert r.run["blocks_computed"] == 0 and r.run["blocks_cached"] == 4
    # expected events: the usual-care arm of 700 people relapses about half the time
    assert 250 < row.events_uc < 450 and row.events_od < row.events_uc
    assert row.events_od_null == pytest.approx(row.events_uc_null, rel=0.15)
    # the formula beside: Schoenfeld with the design effect of the simulated cluster sizes
    assert row.formula == "Schoenfeld x design effect" and row.df == 6
    assert row.power_formula > 0.999 and row.design_effect > 1
    text = r.markdown()
    assert "cluster-level" in text and "Cox HR" in text
    # the method says where it comes from: the plan's auto for the design's shape
    assert "analysis plan's auto for one cluster per arm" in r.method_sources["relapse"]


def test_same_seed_same_trials_whatever_the_processes(tmp_path):
    cells = list(pw._cells(pw.DEMO, {"effect": pw.arm_effects(pw.DEMO, 0.8)}, {"relapse": "cluster-level"},
                           7).values())
    one, info1 = pw.simulate(cells, 50, processes=1, cache=tmp_path / "a", in_process=True)
    two, info2 = pw.simulate(cells, 50, processes=2, cache=tmp_path / "b")
    assert info1["blocks_computed"] == info2["blocks_computed"] == 2
    pd.testing.assert_frame_equal(one.sort_values("rep").reset_index(drop=True),
                                  two.sort_values("rep").reset_index(drop=True))
    again, info3 = pw.simulate(cells, 50, processes=2, cache=tmp_path / "b")
    assert info3["blocks_computed"] == 0
    pd.testing.assert_frame_equal(again, two)
    # the cache folder says what it holds
    assert (tmp_path / "b" / cells[0].key / "cell.json").exists()


def test_a_changed_design_effect_or_method_is_a_new_cache_key():
    base = pw._cells(pw.DEMO, {"e": pw.arm_effects(pw.DEMO, 0.8)}, {"relapse": "cluster-level"}, 1)["e"]
    for other in (pw._cells(pw.DEMO.replace(icc=0.05), {"e": pw.arm_effects(pw.DEMO, 0.8)},
                            {"relapse": "cluster-level"}, 1)["e"],
                  pw._cells(pw.DEMO, {"e": pw.arm_effects(pw.DEMO, 0.7)}, {"relapse": "cluster-level"}, 1)["e"],
                  pw._cells(pw.DEMO, {"e": pw.arm_effects(pw.DEMO, 0.8)}, {"relapse": "permutation"}, 1)["e"],
                  pw._cells(pw.DEMO, {"e": pw.arm_effects(pw.DEMO, 0.8)}, {"relapse": "cluster-level"}, 2)["e"]):
        assert other.key != base.key
    assert base.key == pw._cells(pw.Design(), {"e": pw.arm_effects(pw.DEMO, 0.8)},
                                 {"relapse": "cluster-level"}, 1)["e"].key


def test_the_baseline_relapse_risk_is_the_draws():
    # usual-care risk of relapse by day 730 asked for 0.3, averaged over site frailties
    # (variance 0.5 here, so that averaging matters: the same hazards at frailty 0 give
    # 0.266); no death, no transfer, everyone followed two years; 2,000 sites of 50 people
    # per trial: four trials' risks spread by SD ~0.004, so their mean is within 0.01
    d = pw.Design(clusters_per_arm=None, sites=2000, cluster_size=50, relapse_risk_2y=0.3, death_risk_2y=0.0,
                  min_follow_up_days=730, generator={"transfer_out_prob": 0.0, "site_frailty_var": 0.5})
    eff = {**d.baseline(), **pw.arm_effects(d)}
    assert pw._relapse_risk(resolve(**eff), True) == pytest.approx(0.3, abs=1e-8)
    assert pw._relapse_risk(resolve(**{**eff, "site_frailty_var": 0.0}), True) < 0.27
    risks = [draw_trial(d.shape(), s, **eff).query("od == 0").relapse_only.mean() for s in range(4)]
    assert abs(np.mean(risks) - 0.3) < 0.01, risks


def test_method_resolution_and_refusals():
    assert pw.resolve_methods(pw.DEMO, ["relapse", "involuntary", "rtw"]) == {
        "relapse": "cluster-level", "involuntary": "CR2", "rtw": "cluster-level"}
    ind = pw.Design(clusters_per_arm=None, cluster_size=200)
    assert pw.resolve_methods(ind, ["relapse"]) == {"relapse": "jackknife-site"}
    for bad, rule in [(lambda: pw.Design(clusters_per_arm=0), "power.design"),
                      (lambda: pw.Design(icc=1.5), "power.design"),
                      (lambda: pw.Design(generator={"hr_admission": 0.5}), "power.design"),
                      (lambda: pw.Design(generator={"no_such": 1}), "power.design"),
                      (lambda: pw.resolve_methods(pw.DEMO, ["relapse"], "CR2"), "power.method"),
                      (lambda: pw.resolve_methods(ind, ["relapse"], "cluster-level"), "power.method"),
                      (lambda: pw.resolve_methods(pw.Design(sites=1), ["relapse"]), "power.method"),
                      (lambda: pw.power(pw.DEMO, hr=None), "power.effect"),
                      (lambda: pw.power(pw.DEMO, hr=0.8, reps=0), "power.replicates"),
                      (lambda: pw.power(pw.DEMO, hr=0.8, alpha=2), "power.alpha"),
                      (lambda: pw.power(pw.DEMO, primary="deaths"), "power.outcome"),
                      (lambda: pw.search(pw.DEMO, over="practices"), "power.search"),
                      (lambda: pw.search(ind, over="clusters_per_arm"), "power.search")]:
        with pytest.raises(OdevalError) as exc:
            bad()
        assert exc.value.rule == rule and "\n" not in str(exc.value)


def test_the_cache_key_hashes_the_code_a_replicate_runs_and_only_that(monkeypatch):
    files = {p.relative_to(p.parents[1]).as_posix() for p in pw.source_files()}
    # the methods and the estimators they call (imports inside functions too)
    assert {"simulation/methods.py", "stats/coxph.py", "stats/two_stage.py", "stats/clustered.py",
            "stats/rates.py"} <= files
    # estimators and reports no replicate runs do not invalidate the cache
    assert not files & {"stats/meta.py", "stats/survival.py", "report.py", "simulation/power.py"}
    # the generator enters by what it draws: a draw that changes changes the key
    before = pw.generator_fingerprint.__wrapped__()
    assert before == pw.generator_fingerprint()
    real = pw.draw_people

    def shifted(*a, **k):
        t = real(*a, **k)
        t["relapse_time"] = t["relapse_time"] + 1
        return t

    monkeypatch.setattr(pw, "draw_people", shifted)
    assert pw.generator_fingerprint.__wrapped__() != before
