"""lifelines ``CoxPHFitter`` beside ``pipeline.stats.cox`` on the primary Cox model.

Not part of the product. The primary analysis (as ``pipeline/analyse.py`` fits it): time
to first relapse (event = 1; a competing death or the end of follow-up censors), open
dialogue vs usual care, a baseline hazard per site (strata), standard errors robust to
clustering by the unit of randomisation (``cluster_id``, or the person when randomised
individually), Efron ties. Also an adjusted model (age at index, prior admissions, sex).
Both libraries fit the same person-level frame; only the fits are timed, the frame is read
once from the warehouse. The top-level keys of the output are the primary model's.

    python -m benchmarks.cox_lifelines WAREHOUSE OUT.json
"""

from __future__ import annotations

import json
import sys
import time
import warnings

import numpy as np
import pandas as pd

PRIMARY = ["open_dialogue"]
ADJUSTED = ["open_dialogue", "age_at_index", "prior_admissions_2y", "female"]
QUERY = """
    select t.time_days as time, cast(t.event = 1 as integer) as event,
           cast(t.arm = 'open_dialogue' as integer) as open_dialogue,
           cast(p.age_at_index as double) as age_at_index,
           cast(p.prior_admissions_2y as double) as prior_admissions_2y,
           cast(p.sex = 'female' as integer) as female,
           p.site_id as site, coalesce(p.cluster_id, p.person_id) as cluster
    from derived.time_to_event as t
    join derived.people as p using (person_id)
    where t.outcome = 'relapse'
    order by t.person_id
"""


def frame(con) -> pd.DataFrame:
    """The person-level analysis frame (one row per person)."""
    return con.execute(QUERY).df()


def fit_ours(df: pd.DataFrame, covariates: list[str]):
    from pipeline.stats import cox

    return cox(df, "time", "event", covariates, strata="site", cluster="cluster")


def fit_lifelines(df: pd.DataFrame, covariates: list[str], precision: float | None = None):
    """lifelines with its defaults (timed); ``precision`` tightens its stopping rule
    (lifelines stops when the Newton step's norm < 1e-7 by default)."""
    from lifelines import CoxPHFitter

    cph = CoxPHFitter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cph.fit(df[["time", "event", *covariates, "site", "cluster"]], "time", "event",
                strata=["site"], cluster_col="cluster",
                fit_options=None if precision is None else {"precision": precision})
    return cph


def compare(df: pd.DataFrame, covariates: list[str]) -> dict:
    """Both fits on the complete cases of ``covariates`` (lifelines refuses missing values)."""
    df = df.dropna(subset=covariates).reset_index(drop=True)
    t1 = time.perf_counter()
    ours = fit_ours(df, covariates)
    t2 = time.perf_counter()
    ll = fit_lifelines(df, covariates)
    t3 = time.perf_counter()
    a = ours.summary["coef"].reindex(covariates).to_numpy()
    b = ll.params_.reindex(covariates).to_numpy()
    se_a = ours.summary["se"].reindex(covariates).to_numpy()
    se_b = ll.standard_errors_.reindex(covariates).to_numpy()
    tight = {}
    if np.max(np.abs(a - b)) > 1e-7:
        # is a difference ours or lifelines' default stopping rule? refit (not timed)
        b2 = fit_lifelines(df, covariates, precision=1e-12).params_.reindex(covariates).to_numpy()
        tight = {"coef_lifelines_precision_1e-12": b2.tolist(),
                 "max_abs_coef_diff_precision_1e-12": float(np.max(np.abs(a - b2)))}
    return {"covariates": covariates, "n": int(len(df)), "odeval_s": round(t2 - t1, 3), "lifelines_s": round(t3 - t2, 3),
            "coef_odeval": a.tolist(), "coef_lifelines": b.tolist(),
            "max_abs_coef_diff": float(np.max(np.abs(a - b))),
            "max_rel_robust_se_diff": float(np.max(np.abs(se_a - se_b) / se_b)), **tight}


def run(warehouse: str) -> dict:
    import duckdb
    from lifelines import CoxPHFitter  # noqa: F401  imports are not part of either fit

    from pipeline.stats.coxph import cox  # noqa: F401

    t0 = time.perf_counter()
    con = duckdb.connect(warehouse, read_only=True)
    df = frame(con)
    con.close()
    load = time.perf_counter() - t0
    primary = compare(df, PRIMARY)
    return {**primary, "events": int(df["event"].sum()),
            "strata": int(df["site"].nunique()), "clusters": int(df["cluster"].nunique()),
            "load_s": round(load, 3), "adjusted": compare(df, ADJUSTED)}


if __name__ == "__main__":
    result = run(sys.argv[1])
    out = json.dumps(result, indent=2)
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w") as f:
            f.write(out + "\n")
    print(out)
