"""Planted truth: the 95% intervals of the default analyses cover the planted effects at
close to 95%, in the demo's pair-matched shape with a realistic cluster variance and in an
individually randomised trial.

Each replicate is a trial drawn from the synthetic generator's model
(:func:`pipeline.simulation.draw.draw_trial`, tested to give ``odeval synth``'s
person-level outcomes in ``tests/unit/test_simulation_draw.py``): 7 sites, 1,400 people,
the demo's effects (hazard ratios 0.6 for admission and crisis, rate ratio 0.6 for
involuntary detentions, work or education at 2 years 45% vs 25%). Shapes:

* pair-matched (one GP-practice cluster per arm per site) at ICC 0.05 on each outcome's
  latent scale, the upper end of mental-health trials (cluster log-frailty variance 0.087,
  log-odds variance 0.17);
* individually randomised.

Each outcome is analysed with the default method that the few-cluster simulation chose
for the shape (``pipeline/simulation/defaults.yaml``), and its interval compared with the
planted truth on its scale (:func:`pipeline.simulation.study.truth`: the hazard ratio a
site-stratified Cox model estimates, by quadrature over the frailties; the rate ratio; the
marginal log odds ratio or risk difference of work). The trials use their own seeds
(base 777, not the simulation study's), so this is an independent check of the choice.

Monte Carlo error: with R replicates the coverage has standard error sqrt(0.95 * 0.05 / R)
(0.0126 at R = 300); the test accepts coverage within 3 standard errors of 0.95 (91.2% to
98.8%). A method that ignores the clusters covers 64-78% in the pair-matched shape
(the simulation study's table), far outside. R is ``$ODEVAL_COVERAGE_REPS`` (default 300);
about 40 s on 2 cores.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.simulation import study

REPS = int(os.environ.get("ODEVAL_COVERAGE_REPS", "300"))
DEFAULTS = yaml.safe_load(study.DEFAULTS_YAML.read_text())["defaults"]


@pytest.mark.parametrize("cell", [study.Cell("pair_matched", 0.05, "demo"), study.Cell("individual", 0.0, "demo")],
                         ids=lambda c: c.shape)
def test_95_percent_intervals_of_the_defaults_cover_the_planted_effects(capsys, cell):
    rows = []
    for outcome, choice in DEFAULTS[cell.shape].items():
        for rep in range(REPS):
            rows += study.replicate(cell, rep, outcomes=(outcome,), methods=(choice["method"],), base_seed=777)
    d = pd.DataFrame(rows)
    assert d.error.isna().all(), d.error.dropna().unique()[:3]
    d["cover"] = (d.lower <= d.truth) & (d.truth <= d.upper)
    coverage = d.groupby(["outcome", "method"]).cover.mean()
    se = math.sqrt(0.95 * 0.05 / REPS)
    with capsys.disabled():
        print(f"\n{cell.shape}: coverage over {REPS} trials (Monte Carlo se {se:.4f}): "
              + ", ".join(f"{o} ({m}) {v:.3f}" for (o, m), v in coverage.items()))
    assert len(coverage) == 3
    assert np.all(np.abs(coverage - 0.95) <= 3 * se), coverage.to_dict()
