"""Planted missing statuses at two years (pipeline.synth.missingness): the generator's
records lose their window by the declared mechanism, and the simulation shows complete
case biased under MAR and multiple imputation recovering the truth.

Tolerances are Monte Carlo errors: a bias is "none" within 3.5 of its MC standard error
(sd of the estimates / sqrt(reps)), a coverage is "95%" within 3.5 of sqrt(0.95 0.05 /
reps) (false alarm about 1 in 2,000 per check, and the draws are seeded); "biased" means
more than 3.5 MC standard errors away from 0. The light version (200 replicates per
mechanism, ~10 s) runs in ``make test``; the 1,000-replicate version is marked slow.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.synth import generate_study
from pipeline.synth import missingness as mm

Z = 3.5


def _check(table: pd.DataFrame, reps: int):
    t = table.set_index(["mechanism", "method"])
    cov_se = np.sqrt(0.95 * 0.05 / reps)
    for mech in ("MCAR", "MAR"):
        mi = t.loc[(mech, "multiple imputation")]
        assert abs(mi.bias) < Z * mi.bias_mcse, (mech, mi.bias, mi.bias_mcse)
        assert abs(mi.coverage - 0.95) < Z * cov_se, (mech, mi.coverage)
    cc = t.loc[("MCAR", "complete case")]
    assert abs(cc.bias) < Z * cc.bias_mcse and abs(cc.coverage - 0.95) < Z * cov_se
    cc = t.loc[("MAR", "complete case")]
    assert cc.bias < -Z * cc.bias_mcse and cc.coverage < 0.95 - Z * cov_se
    # MNAR: neither recovers the truth (the imputation assumes MAR): what the tipping
    # point analysis is for
    for meth in ("complete case", "multiple imputation"):
        r = t.loc[("MNAR", meth)]
        assert r.bias < -Z * r.bias_mcse, (meth, r.bias)


def test_complete_case_biased_under_mar_imputation_recovers_the_truth():
    reps = 200
    res = mm.simulate(reps=reps, n=800, m=10, seed=20261206)
    assert (res.table["reps"] == reps).all()
    _check(res.table, reps)


@pytest.mark.slow
def test_complete_case_biased_under_mar_imputation_recovers_the_truth_1000_reps(tmp_path):
    reps = 1000
    res = mm.simulate(reps=reps, n=800, m=20, seed=20261207)
    _check(res.table, reps)
    mm.figure(res, tmp_path / "missingness.png")
    assert (tmp_path / "missingness.png").stat().st_size > 0


@pytest.mark.parametrize("mechanism", ["MCAR", "MAR", "MNAR"])
def test_generator_plants_missing_statuses_by_mechanism(tmp_path, mechanism):
    rate, or_arm, or_prev, or_work = mm.MECHANISMS[mechanism]
    generate_study(tmp_path, people=3000, sites=3, seed=5, design="individual",
                   rtw_miss_rate=rate, rtw_miss_or_arm=or_arm, rtw_miss_or_prev_work=or_prev,
                   rtw_miss_or_work=or_work)
    t = pd.read_parquet(tmp_path / "truth_people.parquet")
    planted = t["rtw_missing_planted"].astype(bool)
    # a planted person has no status in the window
    assert t.loc[planted, "rtw_2y"].isna().all()
    known = t["rtw_2y_true"].notna()
    work = t["rtw_2y_true"].astype("boolean").fillna(False).astype(bool)
    od = t["arm"] == "open_dialogue"
    share = lambda m: planted[known & m].mean()  # noqa: E731
    se = lambda m: np.sqrt(0.25 / (known & m).sum())  # noqa: E731   conservative
    if mechanism == "MCAR":
        assert abs(share(od) - share(~od)) < Z * np.hypot(se(od), se(~od))
        assert abs(share(work) - share(~work)) < Z * np.hypot(se(work), se(~work))
    elif mechanism == "MAR":
        assert share(od) - share(~od) > Z * np.hypot(se(od), se(~od))
    else:
        assert share(work) - share(~work) > Z * np.hypot(se(work), se(~work))
    # the true status of the people followed alive into the window has the arm's risk
    for arm, p in (("usual_care", 0.25), ("open_dialogue", 0.45)):
        x = t.loc[known & (t["arm"] == arm), "rtw_2y_true"].astype(float)
        assert abs(x.mean() - p) < Z * np.sqrt(p * (1 - p) / len(x)), (arm, x.mean())


def test_no_planting_by_default(tmp_path):
    generate_study(tmp_path, people=300, sites=2, seed=5, design="individual")
    t = pd.read_parquet(tmp_path / "truth_people.parquet")
    assert not t["rtw_missing_planted"].astype(bool).any()
