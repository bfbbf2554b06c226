"""The few-cluster simulation study, light: the guard that ``make test`` runs (under a
minute); the 1,000-replicate study is ``tests/unit/test_simulation_study_slow.py`` (marker
``slow``, ``make test-slow``).

* The checked-in defaults (``pipeline/simulation/defaults.yaml``) are the choice that the
  checked-in results (``pipeline/simulation/results/few_cluster.csv``) make by the rule
  of :func:`pipeline.simulation.study.choose`.
* A small live study of the demo's shape (7 sites, one cluster per arm per site) with the
  larger cluster variance (ICC 0.05) and no effect: 200 trials, the primary outcome,
  analysed with the CR1 sandwich and the delete-one-site jackknife. Monte Carlo SE of a
  rejection rate near 5% over 200 trials: sqrt(0.05 * 0.95 / 200) = 0.015. The jackknife
  must reject at most 5% + 3 SE = 9.6% of the time; the sandwich, which rejects about a
  quarter of such trials (issue 20's review: 23-25% over 500), at least 12%: the study
  must be able to tell an invalid method from a valid one.
* The same run again computes nothing (every block is on disk) and loads the same rows.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.simulation import defaults as defaults_mod
from pipeline.simulation import study

REPS = 200
SE = math.sqrt(0.05 * 0.95 / REPS)


def test_checked_in_defaults_are_the_choice_the_results_make():
    t = pd.read_csv(study.RESULTS)
    chosen = study.choose(t)
    doc = yaml.safe_load(study.DEFAULTS_YAML.read_text())
    assert (t.replicates == doc["replicates_per_cell"]).all() and doc["replicates_per_cell"] >= 500
    for r in chosen.itertuples():
        assert doc["defaults"][r.shape][r.outcome]["method"] == r.method, (r.shape, r.outcome)
    assert {(s, o) for s in doc["defaults"] for o in doc["defaults"][s]} == set(zip(chosen["shape"], chosen["outcome"]))


def test_defaults_map_a_design_to_its_simulated_shape():
    assert defaults_mod.shape_for(design="cluster_randomised", clusters_per_arm_per_site=1) == "pair_matched"
    assert defaults_mod.shape_for(design="cluster_randomised", clusters_per_arm_per_site=3) == "six_by_three"
    assert defaults_mod.shape_for(design="individually_randomised") == "individual"
    m = defaults_mod.default_method("relapse", design="cluster_randomised", clusters_per_arm_per_site=1)
    assert m in ("model", "CR1", "jackknife-cluster", "jackknife-site", "cluster-level", "permutation")
    with pytest.raises(ValueError, match="observational"):
        defaults_mod.shape_for(design="observational")


@pytest.fixture(scope="module")
def small_study(tmp_path_factory):
    cache = tmp_path_factory.mktemp("sim")
    cell = study.Cell("pair_matched", 0.05, "null")
    kw = dict(cache=cache, processes=1, niceness=0, cell_list=[cell], progress=lambda m: None, block=50,
              outcomes=("relapse",), methods=("CR1", "jackknife-site"))
    first = study.run(REPS, **kw)
    rows = study.load(REPS, cache, [cell], block=50)
    again = study.run(REPS, **kw)
    return first, again, rows, study.load(REPS, cache, [cell], block=50)


def test_the_small_study_tells_the_sandwich_from_the_site_jackknife(small_study):
    _, _, rows, _ = small_study
    s = study.summarise(rows).set_index("method")
    assert (s.replicates == REPS).all() and (s.reps + s.failed == REPS).all()
    assert s.loc["jackknife-site", "reject"] <= 0.05 + 3 * SE, s.to_dict()
    assert s.loc["CR1", "reject"] >= 0.12, s.to_dict()


def test_a_second_run_resumes_from_the_cache(small_study):
    first, again, rows, rows_again = small_study
    assert first["blocks_computed"] == REPS // 50 and again["blocks_computed"] == 0
    pd.testing.assert_frame_equal(rows, rows_again)


def test_truth_is_zero_without_effect_and_the_demo_effect_otherwise():
    rng = np.random.default_rng(1)
    null = study.Cell("six_by_three", 0.05, "null")
    st = study.draw_structure(study.SHAPES["six_by_three"], rng, **null.effects())
    assert all(abs(v) < 1e-12 for v in study.truth(null, st).values())
    demo = study.truth(study.Cell("six_by_three", 0.05, "demo"), st)
    assert demo["log rate ratio"] == pytest.approx(math.log(0.6))
    assert -0.6 < demo["log hazard ratio"] < math.log(0.6) * 0.8  # attenuated from log 0.6 by the frailties
    assert 0.15 < demo["risk difference"] < 0.2  # 0.45 - 0.25 on the latent scale, pulled to 0.5 by the cluster effect


def test_the_studies_write_their_tables_between_the_markers_of_their_docs_pages(tmp_path):
    # the few-cluster and power studies rewrite docs/few-cluster-simulation.md and
    # docs/power.md (not the README); the markers must be on those pages, and a rewrite
    # replaces what lies between them and nothing else
    from pipeline.simulation import power_study

    for doc, start, end in ((study.DOC, study.START, study.END),
                            (power_study.DOC, power_study.START, power_study.END)):
        text = doc.read_text()
        assert doc.parent.name == "docs" and start in text and end in text
        copy = tmp_path / doc.name
        copy.write_text(text)
        study.write_doc("| new | table |", copy, start=start, end=end)
        new = copy.read_text()
        assert f"{start}\n| new | table |\n{end}" in new
        assert new.split(start)[0] == text.split(start)[0]
        assert new.split(end)[1] == text.split(end)[1]
    with pytest.raises(ValueError, match="markers"):
        (tmp_path / "none.md").write_text("no markers")
        study.write_doc("x", tmp_path / "none.md")
