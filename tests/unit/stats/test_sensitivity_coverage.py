"""Coverage under the null of the sensitivity analyses' intervals (Fine-Gray subdistribution
hazard ratio, RMST difference at 1 and 2 years, and the Aalen-Johansen cumulative incidence
difference that return to work's time to first return uses) with the variance the pipeline chooses for
the design (:func:`pipeline.analyses.sensitivity.jackknife_unit`), against the variances
that treat people as independent.

Trials come from :mod:`pipeline.simulation.sensitivity_coverage` (the generator's model,
no arm effect on anything, cluster variance at ICC 0.05), so the truth is a log
subdistribution hazard ratio of 0 and an RMST difference of 0.

Monte Carlo error: with R replicates a coverage c has standard error sqrt(c (1 - c) / R);
at 0.95 that is 0.028 at R = 60 and 0.0069 at R = 1,000. The chosen variance must not
under-cover: coverage >= 0.95 - 3 se (a conservative interval keeps the type I error at or
below 5%, so over-coverage is reported, not failed, up to 0.995). The independent-people
variances must fall below that bound: they are the reason for the jackknife, and if they
did not the test would not be telling the two apart. The light test (60 trials of the
demo's pair-matched shape, about 20 s) runs in ``make test``; 1,000 trials of both shapes
are marked slow (about 7.5 min on one core).

Measured (1,000 trials per shape, seeds of ``sensitivity_coverage``), coverage (MC se):

=========================  ===============  ===============
method                     pair-matched     6 x 3 clusters
=========================  ===============  ===============
fg-sandwich                0.608 (0.015)    0.721 (0.014)
fg-jackknife-cluster *     0.970 (0.005)    0.957 (0.006)
fg-jackknife-site          0.930 (0.008)    0.937 (0.008)
rmst-model 365 / 730       0.606 / 0.539    0.734 / 0.688
rmst-jackknife-cluster     0.984 / 0.976    0.972 / 0.967
rmst-jackknife-site *      0.956 / 0.946    0.940 / 0.943
cif-ij 365 / 730           0.595 / 0.602    0.730 / 0.755
cif-jackknife-cluster      0.974 / 0.975    0.965 / 0.964
cif-jackknife-site *       0.949 / 0.940    0.940 / 0.943
=========================  ===============  ===============

(* the pipeline's choice, :func:`pipeline.analyses.sensitivity.jackknife_unit`)
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipeline import plan as plan_mod
from pipeline.analyses.sensitivity import jackknife_unit
from pipeline.simulation import sensitivity_coverage as sc
from pipeline.simulation.draw import draw_trial


def chosen_methods(shape: str) -> set[str]:
    """The methods of the simulation that the pipeline's rule picks for ``shape``."""
    d = draw_trial(sc.SHAPES[shape], 1)
    d["arm"] = np.where(d["od"] == 1, "open_dialogue", "usual_care")
    plan = plan_mod.parse({"design": {"covariates": [], "primary": {
        "outcome": "relapse", "small_sample": "jackknife-cluster"}}}).check_data(d)
    name = {"cluster_id": "jackknife-cluster", "site_id": "jackknife-site"}
    fg = name[jackknife_unit(d, plan, plan.primary, "fine_gray")[0]]
    rm = name[jackknife_unit(d, plan, plan.primary, "rmst")[0]]
    ci = name[jackknife_unit(d, plan, plan.primary, "cif")[0]]
    return {f"fg-{fg}", f"rmst-{rm} 365", f"rmst-{rm} 730", f"cif-{ci} 365", f"cif-{ci} 730"}


def check(reps: int, shapes) -> pd.DataFrame:
    s = sc.summarise(sc.run(reps, shapes))
    se = math.sqrt(0.95 * 0.05 / reps)
    print("\n" + s.to_string())
    for shape in shapes:
        g = s[s["shape"] == shape].set_index("method")["coverage"]
        ours = chosen_methods(shape)
        assert ours <= set(g.index)
        for m in ours:
            assert 0.95 - 3 * se <= g[m] <= 0.995, (shape, m, g[m])
        for m in ("fg-sandwich", "rmst-model 365", "rmst-model 730", "cif-ij 365",
                  "cif-ij 730"):
            assert g[m] < 0.95 - 3 * se, (shape, m, g[m])
    return s


def test_the_rule_picks_the_cluster_for_fine_gray_and_the_site_for_rmst_and_incidence():
    for shape in sc.SHAPES:
        assert chosen_methods(shape) == {"fg-jackknife-cluster", "rmst-jackknife-site 365",
                                         "rmst-jackknife-site 730", "cif-jackknife-site 365",
                                         "cif-jackknife-site 730"}


def test_light_coverage_under_the_null_pair_matched(capsys):
    with capsys.disabled():
        check(60, ["pair_matched"])


@pytest.mark.slow
def test_coverage_under_the_null_1000_trials(capsys):
    with capsys.disabled():
        check(1000, list(sc.SHAPES))
