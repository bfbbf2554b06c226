"""Planted confounding: the unadjusted comparison is biased, the weighted one recovers the
marginal truth and its 95% intervals cover it at 95%.

One synthetic observational study structure (7 sites, the generator's default confounding:
Open Dialogue takes younger people with fewer prior admissions and more often a psychosis,
all of whom relapse less); each replicate draws a new sample of 1,400 people from it
(``simulate_chunk(..., outcomes_only=True)``: the person-level truth the derive stage
reproduces, tests/e2e). Targets are the marginal effects computed once from both potential
outcomes of 30,000 people per arm (:func:`pipeline.synth.observational.marginal_truth`;
Monte Carlo error 0.009 in the log hazard ratio, a tenth of one study's standard error).

Each replicate fits the propensity model the analyse stage fits (sex, age, diagnosis,
prior admissions, site; ATE weights) and checks whether the interval carrying the
propensity model's estimation covers the truth; the interval treating the weights as known
is recorded beside it, and the unadjusted Cox model's.

Monte Carlo error: coverage has standard error sqrt(0.95 * 0.05 / R); the tests accept
coverage within 3 standard errors of 0.95 (0.034 at the light R = 40, 0.0069 at R = 1000).
The light test (``make test``, about a minute) fits the hazard ratio and the 2-year work or
education risk difference; the heavy one (``make test-slow``) also the relapse risk
difference by day 730 (weighted Aalen-Johansen), the involuntary-admission rate ratio and
the augmented estimator, over ``$ODEVAL_WEIGHTING_REPS`` (1000) replicates, cached per
replicate under data/sim/weighting_coverage so that an interrupted run resumes.
"""

from __future__ import annotations

import json
import math
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.config import PROJ_ROOT
from pipeline.stats import (cox, propensity_weights, weighted_cox, weighted_curves,
                            weighted_rate_ratio, weighted_risk)
from pipeline.synth.observational import marginal_truth
from pipeline.synth.params import resolve
from pipeline.synth.simulate import simulate_chunk
from pipeline.synth.study import build_study

PEOPLE, SITES, SEED = 1400, 7, 20260522
COVARIATES = ["sex", "age_at_index", "diagnosis_group", "prior_admissions_2y"]

def _cache_dir() -> Path:
    """Per-replicate results, keyed by the code they come from (a change to the estimators
    or the generator starts a fresh cache)."""
    import hashlib

    src = b"".join((PROJ_ROOT / "pipeline" / f).read_bytes() for f in (
        "stats/propensity.py", "stats/weighting.py", "stats/coxph.py", "synth/simulate.py",
        "synth/observational.py", "synth/params.py", "synth/study.py"))
    src += Path(__file__).read_bytes()
    return PROJ_ROOT / "data" / "sim" / f"weighting_coverage_{hashlib.sha256(src).hexdigest()[:12]}"


@lru_cache(maxsize=1)
def study_and_truth():
    st = build_study(people=PEOPLE, sites=SITES, seed=SEED, design="observational",
                     effects=resolve())
    return st, marginal_truth(st)


def sample(r: int) -> pd.DataFrame:
    """Replicate ``r``: a new sample of people from the fixed study structure."""
    st, _ = study_and_truth()
    st.chunk_seeds = np.random.SeedSequence([SEED, 7, r]).spawn(1)
    ch = simulate_chunk(st, 0, outcomes_only=True)
    p = ch.tables["people"].to_pandas()
    d = ch.truth.to_pandas().merge(
        p[["person_id", "sex", "birth_year", "diagnosis_group", "prior_admissions_2y",
           "index_date"]], on="person_id")
    d["age_at_index"] = pd.to_datetime(d["index_date"]).dt.year - d["birth_year"]
    d["relapsed"] = (d["relapse_event"] == 1).astype(int)
    d["od"] = (d["arm"] == "open_dialogue").astype(int)
    d["py"] = d["fu_end_day"] / 365.25
    d["rtw"] = d["rtw_2y"].astype(float)
    return d


def replicate(r: int, heavy: bool) -> dict:
    _, truth = study_and_truth()
    m = truth["marginal_effects"]
    d = sample(r)
    ps = propensity_weights(d, "arm", COVARIATES, strata="site_id", treated_level="open_dialogue")
    out = {}

    def record(name, est, lo, hi, target, lo_k=None, hi_k=None, target_se=0.0):
        out[name] = dict(est=float(est), hit=bool(lo <= target <= hi), target=target,
                         target_se=target_se)
        if lo_k is not None:
            out[name]["hit_known"] = bool(lo_k <= target <= hi_k)

    def known(row, log):
        z = 1.959963984540054
        if log:
            b = math.log(row["estimate"])
            return math.exp(b - z * row["se_known"]), math.exp(b + z * row["se_known"])
        return row["estimate"] - z * row["se_known"], row["estimate"] + z * row["se_known"]

    hr = m["relapse_hazard_ratio"]
    s = weighted_cox(d, ps, "relapse_time", "relapsed").summary.iloc[0]
    hr_se = m["relapse_log_hr_mc_se"]
    record("hazard ratio (weighted)", math.log(s["estimate"]), s["lower"], s["upper"], hr,
           *known(s, True), target_se=hr_se)
    u = cox(d, "relapse_time", "relapsed", ["od"]).summary.loc["od"]
    record("hazard ratio (unadjusted)", u["coef"], u["hr_lower"], u["hr_upper"], hr)
    rd = m["rtw_2y"]["risk_difference"]
    s = weighted_risk(d, ps, "rtw").summary.iloc[0]
    rd_se = math.sqrt(2) * m["rtw_2y"]["mc_se_each"]
    record("work or education RD (weighted)", s["estimate"], s["lower"], s["upper"], rd,
           *known(s, False), target_se=rd_se)
    if heavy:
        s = weighted_risk(d, ps, "rtw", method="aipw").summary.iloc[0]
        record("work or education RD (AIPW)", s["estimate"], s["lower"], s["upper"], rd,
               *known(s, False), target_se=rd_se)
        c = weighted_curves(d, ps, "relapse_time", "relapse_event", cause=1, times=[730],
                            labels=("open_dialogue", "usual_care")).at.set_index("measure")
        s = c.loc["risk difference"]
        target = m["relapse_risk_by_day_730"]["risk_difference"]
        record("relapse risk difference by day 730 (weighted)", s["estimate"], s["lower"],
               s["upper"], target, *known(s, False),
               target_se=math.sqrt(2) * m["relapse_risk_by_day_730"]["mc_se_each"])
        s = weighted_rate_ratio(d[d["py"] > 0], ps, "involuntary_count", "py").summary.iloc[0]
        record("involuntary rate ratio (weighted)", math.log(s["estimate"]), s["lower"],
               s["upper"], m["involuntary_rate_ratio"], *known(s, True),
               target_se=m["involuntary_log_rate_ratio_mc_se"])
    return out


def run(reps: int, heavy: bool, cache: Path | None) -> pd.DataFrame:
    rows = []
    for r in range(reps):
        f = cache / f"r{r:05d}.json" if cache else None
        if f is not None and f.exists():
            res = json.loads(f.read_text())
        else:
            res = replicate(r, heavy)
            if f is not None:
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text(json.dumps(res))
        for name, v in res.items():
            rows.append(dict(replicate=r, estimate=name, **v))
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame, reps: int) -> pd.DataFrame:
    se = math.sqrt(0.95 * 0.05 / reps)
    g = df.groupby("estimate", sort=False)
    out = pd.DataFrame({"coverage": g["hit"].mean(), "coverage_known": g["hit_known"].mean(),
                        "mean_estimate": g["est"].mean(), "sd_estimate": g["est"].std(),
                        "target": g["target"].first(), "target_se": g["target_se"].first()})
    out["mc_se"] = se
    return out


def check(tab: pd.DataFrame, reps: int) -> None:
    se = math.sqrt(0.95 * 0.05 / reps)
    for name, row in tab.iterrows():
        if "unadjusted" in name:
            # confounding: the unadjusted interval misses the truth most of the time
            assert row["coverage"] < 0.95 - 3 * se, name
            continue
        assert abs(row["coverage"] - 0.95) <= 3 * se, (name, row["coverage"])
        # and the estimator is unbiased: mean within 3 Monte Carlo errors of the target
        # (of the replicates' mean and of the truth itself; ratios on the log scale)
        target = math.log(row["target"]) if ("ratio" in name) else row["target"]
        tol = 3 * math.sqrt(row["sd_estimate"] ** 2 / reps + row["target_se"] ** 2)
        assert abs(row["mean_estimate"] - target) <= tol, name


def test_weighting_recovers_the_planted_marginal_effects(capsys):
    reps = 40
    tab = summarise(run(reps, heavy=False, cache=None), reps)
    with capsys.disabled():
        print(f"\nobservational design, {reps} replicates:\n{tab.to_string()}")
    check(tab, reps)


@pytest.mark.slow
def test_weighting_coverage_heavy(capsys):
    reps = int(os.environ.get("ODEVAL_WEIGHTING_REPS", "1000"))
    tab = summarise(run(reps, heavy=True, cache=_cache_dir()), reps)
    with capsys.disabled():
        print(f"\nobservational design, {reps} replicates:\n{tab.to_string()}")
    check(tab, reps)
