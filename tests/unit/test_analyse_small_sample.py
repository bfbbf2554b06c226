"""The few-cluster choice for the primary Cox model (the plan's ``small_sample``,
``analyse.jackknife_max_clusters``), on small hand-made person frames."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline import analyse
from pipeline import plan as plan_mod
from pipeline.analyses import trial_effects


def _persons(events_in: set[str]) -> pd.DataFrame:
    """2 sites x 2 clusters (one per arm), 30 people a cluster; relapses only in the
    clusters named, at times 1..30 (censored at 60 elsewhere)."""
    rows = []
    for site, clusters in (("S1", ("A", "B")), ("S2", ("C", "D"))):
        for cluster, arm in zip(clusters, ("open_dialogue", "usual_care")):
            for i in range(30):
                ev = cluster in events_in and i % 2 == 0
                rows.append(dict(site_id=site, cluster_id=cluster, arm=arm,
                                 relapse_time=float(i + 1 if ev else 60), relapse_event=int(ev)))
    return pd.DataFrame(rows)


def _primary(d: pd.DataFrame, **params) -> pd.Series:
    p = analyse.resolve_params(params)
    plan = plan_mod.parse({"design": {"primary": {"outcome": "relapse",
                                                  "small_sample": "jackknife-cluster"},
                                      "secondary": []}}).check_data(d)
    d = analyse.prepare(d, plan)
    rows = trial_effects.outcome(d, plan, plan.primary, p, None, "primary").estimates
    return pd.Series(next(r for r in rows if r["measure"] == "hazard ratio"))


def test_the_jackknife_is_the_default_and_named_in_the_method():
    e = _primary(_persons({"A", "B", "C", "D"}))
    assert "delete-one-cluster jackknife, t on G-1 df (4 clusters, 3 df)" in e.method


def test_when_the_jackknife_cannot_be_computed_cr1_is_used_and_the_notes_say_why():
    # every relapse in clusters A and B (site S1): without A, only usual care has events
    e = _primary(_persons({"A", "B"}))
    assert "J/(J-1) (CR1)" in e.method
    assert "The jackknife is not computable" in e.notes and np.isfinite(e.estimate)


def test_above_jackknife_max_clusters_cr1_is_used_with_a_note():
    e = _primary(_persons({"A", "B", "C", "D"}), jackknife_max_clusters=3)
    assert "J/(J-1) (CR1)" in e.method and "more than analyse.jackknife_max_clusters" in e.notes


def test_above_jackknife_max_clusters_the_glms_use_cr1_instead_of_the_jackknife_or_cr2():
    """A count outcome by the cluster jackknife, CR2, KC or MD (a refit, or an
    eigenproblem, per cluster): CR1 on J - 1 df once there are more clusters than the cap,
    with a note; at or under the cap the plan's method."""
    rng = np.random.default_rng(3)
    d = _persons({"A", "B", "C", "D"})
    d["od"] = (d["arm"] == "open_dialogue").astype(int)
    d["py"] = rng.uniform(0.5, 2.0, len(d))
    d["n"] = rng.poisson(d["py"] * np.where(d["od"] == 1, 0.8, 1.2))
    plan = plan_mod.parse({"design": {"primary": {"outcome": "relapse"}, "secondary": []}})
    for method in ("CR2", "jackknife-cluster", "KC", "MD"):
        p = analyse.resolve_params({"jackknife_max_clusters": 3})
        fit, used, notes = trial_effects._glm(d, "n", [], method, plan, p, "negbin", offset="py")
        assert used == "CR1" and fit.vcov_type == "CR1" and fit.df_method == "K-1"
        assert any("more than analyse.jackknife_max_clusters (3): CR1 instead" in n for n in notes)
        p = analyse.resolve_params({"jackknife_max_clusters": 4})
        fit, used, notes = trial_effects._glm(d, "n", [], method, plan, p, "negbin", offset="py")
        assert used == method and not notes
