"""Planted truth: over repeated synthetic studies, 95% intervals cover the true effects at
close to 95%, for both designs the generator makes and with the intervals the analyse
stage reports.

Each replicate is a fresh study from the generator (1,000 people, 5 sites, a new seed).
Its per-person outcomes are ``truth_people.parquet``, which the derive stage reproduces
exactly (tests/e2e), so the estimators are fitted on exactly what derive would give them.
Targets come from each study's ``truth.json``:

* relapse hazard ratio: ``expected_site_stratified_cox_hr`` (the HR a site-stratified Cox
  model estimates: 0.6 conditional, slightly attenuated by the frailties);
* involuntary admission rate ratio: ``true_rate_ratio`` (negative binomial, site fixed
  effects, offset log person-years; marginal = conditional, frailties have mean 1);
* return to work or education at 2 years: the risk difference of the two arms'
  data-generating probabilities (Newcombe interval).

Designs: ``individual`` (model-based intervals) and ``cluster`` (GP practices randomised,
2 per site: 10 clusters; the Cox and rate-ratio intervals by the delete-one-cluster
jackknife with t on 9 df, the risk difference inflated by the design effect - analyse's
defaults). The cluster-robust sandwich covered 82% (hazard ratio, CR1) and 74% (rate
ratio, HC0) in this design, which is why the jackknife is the default.

Monte Carlo error: with R replicates the coverage has standard error
sqrt(0.95 * 0.05 / R) (0.0154 at R = 200); the test accepts coverage within 3 standard
errors of 0.95. R is ``$ODEVAL_COVERAGE_REPS`` (default 200). About 40 s (individual)
and 70 s (cluster) on 2 cores.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pandas as pd
import pytest

from pipeline.stats import cox, rate_ratio, risk_difference
from pipeline.synth import generate_study

REPS = int(os.environ.get("ODEVAL_COVERAGE_REPS", "200"))


def _replicate(tmp, seed: int, design: str) -> dict[str, bool]:
    out = tmp / f"s{seed}"
    generate_study(out, people=1000, sites=5, seed=seed, design=design)
    truth = json.loads((out / "truth.json").read_text())
    t = pd.read_parquet(out / "truth_people.parquet").merge(
        pd.read_parquet(out / "people.parquet", columns=["person_id", "cluster_id"]), on="person_id")
    t["od"] = (t.arm == "open_dialogue").astype(int)
    t["relapsed"] = (t.relapse_event == 1).astype(int)
    t["py"] = t.fu_end_day / 365.25
    clustered = design == "cluster"
    cl = {"cluster": "cluster_id"} if clustered else {}

    hr = truth["outcomes"]["relapse"]["expected_site_stratified_cox_hr"]
    c = cox(t, "relapse_time", "relapsed", ["od"], strata="site_id",
            **(cl | {"small_sample": "jackknife"} if clustered else {})).summary.loc["od"]

    rr = truth["involuntary_detentions"]["true_rate_ratio"]
    r = rate_ratio(t[t.py > 0], "involuntary_count", "py", ["od", "site_id"], family="negbin",
                   **(cl | {"cluster_type": "jackknife"} if clustered else {})).summary.loc["od"]

    rd = truth["rtw_2y"]["open_dialogue"] - truth["rtw_2y"]["usual_care"]
    w = t[t.rtw_2y.notna()].assign(y=lambda d: d.rtw_2y.astype(int))
    d = risk_difference(w, "y", "arm", "usual_care", **cl).summary
    d = d[d.method.str.startswith("Newcombe")].iloc[0]
    return {"hazard ratio": c.hr_lower <= hr <= c.hr_upper,
            "rate ratio": r.rr_lower <= rr <= r.rr_upper,
            "risk difference": d.lower <= rd <= d.upper}


@pytest.mark.parametrize("design", ["individual", "cluster"])
def test_95_percent_intervals_cover_the_planted_effects(tmp_path, capsys, design):
    hits = pd.DataFrame([_replicate(tmp_path, seed, design) for seed in range(1, REPS + 1)])
    se = math.sqrt(0.95 * 0.05 / REPS)
    coverage = hits.mean()
    with capsys.disabled():
        print(f"\n{design}: coverage over {REPS} studies (Monte Carlo se {se:.4f}): "
              + ", ".join(f"{k} {v:.3f}" for k, v in coverage.items()))
    assert np.all(np.abs(coverage - 0.95) <= 3 * se), coverage.to_dict()
