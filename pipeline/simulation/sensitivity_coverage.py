"""Coverage under the null of the sensitivity analyses' intervals: the Fine-Gray
subdistribution hazard ratio and the restricted mean survival time (RMST) difference,
each with the variances a clustered trial could use.

Each replicate is a trial drawn from the generator's model
(:func:`pipeline.simulation.draw.draw_trial`) with no effect of the arm on anything
(admission, crisis, detention and death hazards all equal), so the true subdistribution
hazard ratio of relapse is 1 and the true RMST difference is 0 at every horizon. Clusters
vary at ICC 0.05 on the latent scale (:func:`~pipeline.simulation.draw.icc_to_variances`),
the upper end for mental-health trials, as ``tests/unit/stats/test_planted_coverage.py``.

Variances (``method`` column):

* ``fg-sandwich``: Fine and Gray's robust sandwich (people independent), normal interval;
* ``fg-jackknife-cluster`` / ``fg-jackknife-site``: delete-one-cluster / delete-one-site
  jackknife of the arm coefficient, t on G - 1 df;
* ``rmst-model``: R's per-arm standard errors (people independent), normal interval;
* ``rmst-jackknife-cluster`` / ``rmst-jackknife-site``: the jackknife of the difference;
* ``cif-ij``: the Aalen-Johansen cumulative incidence difference of relapse (death
  competing) with each arm's infinitesimal-jackknife standard error (people independent),
  normal interval; ``cif-jackknife-cluster`` / ``cif-jackknife-site``: the jackknife of the
  difference, t on G - 1 df (return to work's time to first return is the same estimator).

The Fine-Gray model is the one :mod:`pipeline.analyses.sensitivity` fits: arm and site
(the strata as fixed effects). :func:`summarise` gives coverage with its Monte Carlo
standard error ``sqrt(c (1 - c) / R)``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pipeline.simulation.draw import Shape, draw_trial, icc_to_variances

SHAPES = {
    "pair_matched": Shape("pair_matched", sites=7, clusters_per_arm=1, people=1400),
    "six_by_three": Shape("six_by_three", sites=6, clusters_per_arm=3, people=1400),
}
NULL = {"hr_admission": 1.0, "hr_crisis": 1.0, "rr_involuntary": 1.0, "hr_death": 1.0}
TAUS = (365.0, 730.0)
BASE_SEED = 20261206


def replicate(shape: str, rep: int, icc: float = 0.05, base_seed: int = BASE_SEED) -> list[dict]:
    """Every variance of both estimators on one null trial of ``shape``."""
    from pipeline.stats import fine_gray
    from pipeline.stats.rmst import rmst_difference

    d = draw_trial(SHAPES[shape], np.random.SeedSequence([base_seed, len(shape), rep]),
                   **NULL, **icc_to_variances(icc))
    rows = []

    def add(method, est, lo, hi, truth):
        rows.append(dict(shape=shape, rep=rep, method=method, estimate=est, lower=lo,
                         upper=hi, truth=truth))

    fg = fine_gray(d, "relapse_time", "relapse_event", 1, ["od", "site_id"])
    s = fg.summary.loc["od"]
    add("fg-sandwich", s.coef, math.log(s.hr_lower), math.log(s.hr_upper), 0.0)
    for unit in ("cluster_id", "site_id"):
        s = fine_gray(d, "relapse_time", "relapse_event", 1, ["od", "site_id"],
                      cluster=unit).summary.loc["od"]
        add(f"fg-jackknife-{unit[:-3]}", s.coef, math.log(s.hr_lower), math.log(s.hr_upper),
            0.0)
    for unit, name in ((None, "rmst-model"), ("cluster_id", "rmst-jackknife-cluster"),
                       ("site_id", "rmst-jackknife-site")):
        r = rmst_difference(d, "relapse_time", "relapse_only", TAUS, "od", cluster=unit)
        for x in r.summary.itertuples():
            add(f"{name} {int(x.tau)}", x.estimate, x.lower, x.upper, 0.0)
    rows += cif_rows(d, shape, rep)
    return rows


def cif_rows(d: pd.DataFrame, shape: str, rep: int) -> list[dict]:
    """The cumulative incidence difference's three variances on one trial ``d``."""
    from scipy import stats

    from pipeline.stats.competing import aalen_johansen, cif_difference_jackknife

    aj = aalen_johansen(d, "relapse_time", "relapse_event", cause=1, group="od").at(TAUS)
    a = aj[aj["cause"] == 1].set_index(["group", "time"])
    rows = []
    z = stats.norm.ppf(0.975)
    for tau in TAUS:
        est = a.loc[(1, tau), "cif"] - a.loc[(0, tau), "cif"]
        se = math.hypot(a.loc[(1, tau), "se"], a.loc[(0, tau), "se"])
        rows.append(dict(shape=shape, rep=rep, method=f"cif-ij {int(tau)}", estimate=est,
                         lower=est - z * se, upper=est + z * se, truth=0.0))
    for unit in ("cluster_id", "site_id"):
        v, est, g = cif_difference_jackknife(d, "relapse_time", "relapse_event", 1, TAUS,
                                             "od", unit)
        q = stats.t.ppf(0.975, g - 1)
        for k, tau in enumerate(TAUS):
            se = math.sqrt(v[k, k])
            rows.append(dict(shape=shape, rep=rep,
                             method=f"cif-jackknife-{unit[:-3]} {int(tau)}",
                             estimate=est[k], lower=est[k] - q * se, upper=est[k] + q * se,
                             truth=0.0))
    return rows


def run(reps: int, shapes=tuple(SHAPES), icc: float = 0.05) -> pd.DataFrame:
    rows = []
    for sh in shapes:
        for r in range(reps):
            rows += replicate(sh, r, icc)
    return pd.DataFrame(rows)


def summarise(d: pd.DataFrame) -> pd.DataFrame:
    """Coverage of the 95% interval per shape and method, with its Monte Carlo se."""
    d = d.assign(cover=(d.lower <= d.truth) & (d.truth <= d.upper))
    out = d.groupby(["shape", "method"], sort=True).agg(replicates=("cover", "size"),
                                                        coverage=("cover", "mean"))
    out["mc_se"] = np.sqrt(out.coverage * (1 - out.coverage) / out.replicates)
    return out.reset_index()


if __name__ == "__main__":  # python -m pipeline.simulation.sensitivity_coverage [reps]
    import sys

    print(summarise(run(int(sys.argv[1]) if len(sys.argv) > 1 else 200)).to_string())
