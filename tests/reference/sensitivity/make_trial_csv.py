"""Writes trial.csv: one synthetic cluster-randomised trial (6 sites x 3 clusters per arm,
1,400 people) from the generator's person-level draw, the demo's effects. Run once; the CSV
is checked in, so the goldens do not move when the generator changes.

    uv run python tests/reference/sensitivity/make_trial_csv.py
"""

from pathlib import Path

from pipeline.simulation.draw import draw_trial, icc_to_variances
from pipeline.simulation.sensitivity_coverage import SHAPES

d = draw_trial(SHAPES["six_by_three"], 20261206, **icc_to_variances(0.05))
out = d[["site_id", "cluster_id", "od", "relapse_time", "relapse_event"]].copy()
out.insert(0, "id", range(1, len(out) + 1))
out.to_csv(Path(__file__).parent / "trial.csv", index=False)
