"""Metrics stage: each outcome per arm, per site (and ethnicity group) and overall, with
confidence intervals; the fidelity profile of each site; data-quality figures.

SQL over row-level tables is in ``pipeline/sql/metrics/`` (one relation per file, run as
temporary tables, so this works on a read-only warehouse too): ``person_outcomes`` (one
row per person), ``outcome_cells`` and ``fidelity_cells`` (sums per cell) and ``flow``.
Person-level frames go to :mod:`pipeline.stats` for the Kaplan-Meier and Aalen-Johansen
estimates; everything else is arithmetic on the cell sums.

Outputs
-------
``results.metrics_outcomes``, ``results.metrics_fidelity``, ``results.metrics_dq``: exact
values, for the warehouse only. ``results.metrics_*_public``: the same after disclosure
control (:mod:`pipeline.disclosure`), which is what the CSV files
(``reports/metrics/*.csv``) and the report show.

Estimands and intervals (``conf_level``, 95 % by default)
--------------------------------------------------------
* relapse by 1 and 2 years, Kaplan-Meier: ``1 - S(t)``, death censored (the risk in a world
  without death), log-scale Greenwood interval as R ``survfit``.
* relapse by 1 and 2 years, Aalen-Johansen: cumulative incidence with death as a competing
  event (the observable risk), infinitesimal-jackknife interval as R ``survfit``.
* rates per person-year (relapses: acute-care episodes; involuntary admissions: Mental
  Health Act episodes): events / person-years, the person-time derive.rate_person_time
  chose (follow-up, or at risk), with a robust (sandwich) interval on the log scale that
  allows people to have several events (``var = sum (y_i - r t_i)^2 / T^2``); with no
  events the exact Poisson upper limit. The label names the person-time.
* proportions (any involuntary admission, any antipsychotic, antipsychotic in the last
  days, in work or education at 2 years, binary fidelity indicators): Wilson score interval.
  The denominator is stated in the label: for the first three, by derive.binary_window, the
  people followed for the whole window (default) or everyone over their own follow-up.
* means (days detained per person, share of follow-up days covered by antipsychotics, mean
  daily dose in DDD and chlorpromazine equivalents among users, fidelity shares per
  referral): t interval ``mean +/- t(n - 1) sd / sqrt(n)`` (shares clipped to [0, 1]).
These describe each cell and do not allow for clustering; the analyses do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from scipy import stats as sps

from pipeline import disclosure, output_policy, parallel
from pipeline import params as params_mod
from pipeline.config import SQL_DIR
from pipeline.errors import OdevalError
from pipeline.warehouse import quote_ident

METRICS_SQL_DIR = SQL_DIR / "metrics"

#: ``params.yaml`` ``metrics:`` defaults.
DEFAULTS: dict[str, Any] = {
    "horizons_days": [365, 730],   # relapse by 1 and 2 years
    "landmark_days": 365,          # relapse by this day in the site funnel (one of horizons_days)
    "conf_level": 0.95,
    "dimensions": ["site", "ethnicity"],
    # 2: the curves of each partition of the people shared with a forked process (Linux),
    # each taking the next from its end of CURVE_SCHEDULE; 1: everything in this one
    "workers": 2,
}

#: SQL files, in dependency order; each becomes a temporary table of the same name.
RELATIONS = ("person_outcomes", "outcome_cells", "fidelity_cells", "flow")

ARMS = ("open_dialogue", "usual_care")

Progress = Callable[[int, int, str], None]


@dataclass
class Metric:
    outcome: str
    metric: str
    label: str
    unit: str
    kind: str            # km | aj | rate | proportion | mean
    n: str               # cell column: denominator (people)
    events: str | None   # cell column: the count the estimate rests on
    extra: tuple = ()    # columns used by the estimator


def denominators(definitions: dict[str, Any]) -> dict[str, str]:
    """Words naming, for the definitions ``derived.*`` was built with
    (:func:`pipeline.derive.definitions`), what a relapse and an involuntary admission are,
    the person-time of their rates and the denominator of the binary outcomes."""
    at_risk = definitions.get("rate_person_time") == "at_risk"
    grace = int(definitions.get("relapse_grace_days", 0))
    fu = int(definitions.get("follow_up_days", 730))
    whole = definitions.get("binary_window", "whole_window") == "whole_window"
    return {
        "relapse": "acute-care episodes"
                   + (f", after a {grace}-day grace period" if grace else ""),
        "relapse_time": ("per person-year out of acute care" if at_risk
                         else "per person-year of follow-up"),
        "involuntary": "Mental Health Act episodes",
        "involuntary_time": ("per person-year not detained" if at_risk
                             else "per person-year of follow-up"),
        "binary": (f"among people followed for all {fu} days" if whole
                   else "over each person's own follow-up (unequal)"),
        "window": f"in the {fu}-day window" if whole else "in follow-up",
    }


def metric_specs(horizons: list[int], definitions: dict[str, Any] | None = None) -> list[Metric]:
    w = denominators(definitions or {})
    out = []
    for h in horizons:
        y = round(h / 365.25, 1)
        yrs = f"{y:g} year{'s' if y != 1 else ''}"
        out.append(Metric("relapse", f"km_{h}d", f"Relapse by day {h} ({yrs}), Kaplan-Meier "
                          "(death censored)", "proportion", "km", "n_people", f"relapse_{h}d_events",
                          (h,)))
        out.append(Metric("relapse", f"aj_{h}d", f"Relapse by day {h} ({yrs}), Aalen-Johansen "
                          "(death competing)", "proportion", "aj", "n_people", f"relapse_{h}d_events",
                          (h,)))
    out += [
        Metric("relapse", "rate", f"Relapses ({w['relapse']}) {w['relapse_time']}",
               "per person-year", "rate", "n_people", "relapse_events", ("relapse",)),
        Metric("involuntary_admission", "rate", f"Involuntary admissions ({w['involuntary']}) "
               f"{w['involuntary_time']}", "per person-year", "rate", "n_people",
               "involuntary_events", ("involuntary",)),
        Metric("involuntary_admission", "any", f"Any involuntary admission {w['window']}, "
               f"{w['binary']}", "proportion", "proportion", "any_involuntary_known_n",
               "any_involuntary_n"),
        Metric("involuntary_admission", "days_detained", "Days detained per person (mean)",
               "days", "mean", "n_people", "detained_n", ("days_detained",)),
        Metric("antipsychotic", "any", f"Any antipsychotic {w['window']}, {w['binary']}",
               "proportion", "proportion", "ap_known_n", "ap_any_n"),
        Metric("antipsychotic", "last_days", f"Antipsychotic in the last days {w['window']}, "
               f"{w['binary']}", "proportion", "proportion", "ap_known_n", "ap_last_n"),
        Metric("antipsychotic", "days_covered", "Share of follow-up days covered (mean)",
               "proportion", "mean", "ap_cover_n", "ap_cover_users_n", ("ap_cover",)),
        Metric("antipsychotic", "ddd", "Mean daily dose among users, WHO DDDs", "DDD/day",
               "mean", "ap_ddd_n", None, ("ap_ddd",)),
        Metric("antipsychotic", "cpz", "Mean daily dose among users, chlorpromazine "
               "equivalents", "mg/day", "mean", "ap_cpz_n", None, ("ap_cpz",)),
        Metric("relapse", "by_landmark", "Relapse by the landmark day among people whose status "
               "then is known (followed up to it, relapsed or died before)", "proportion",
               "proportion", "landmark_n", "landmark_events"),
        Metric("return_to_work", "at_2y", "In work or education at 2 years", "proportion",
               "proportion", "rtw_n", "rtw_events"),
    ]
    return out


FIDELITY_LABELS = {
    "p1_within_24h": ("1 Immediate help", "First network meeting within 24 h of referral"),
    "p1_hours_to_first_meeting": ("1 Immediate help", "Hours from referral to first network "
                                  "meeting (median)"),
    "p2_share_network_present": ("2 Social network", "Share of meetings with family, carers or "
                                 "friends present"),
    "p3_share_home_or_choice": ("3 Flexibility and mobility", "Share of meetings at home or a "
                                "place of the person's choice"),
    "p4_first_contact_at_first_meeting": ("4 Responsibility", "First contact's staff member at "
                                          "the first meeting"),
    "p5_share_two_clinical": ("5 Psychological continuity", "Share of meetings with two or "
                              "more clinical staff"),
    "p5_core_team_continuity": ("5 Psychological continuity", "Share of later meeting staff "
                                "who were at the first meeting"),
    "p5_peer_worker_present": ("5 Psychological continuity", "A peer worker at any meeting"),
    "p6_tolerance_of_uncertainty": ("6 Tolerance of uncertainty", "Not measurable from records "
                                    "(needs observation or a fidelity scale)"),
    "p7_share_person_present": ("7 Dialogism", "Share of meetings with the person present"),
    "discharge_by_network": ("Discharge", "Discharge decided by the network"),
}


def resolve_params(params: dict | None) -> dict[str, Any]:
    p = params_mod.merged("metrics", params, DEFAULTS)
    if not 0 < float(p["conf_level"]) < 1:
        raise OdevalError("metrics.conf_level must lie in (0, 1)", rule="metrics.params.type",
                          file="params.yaml")
    p["horizons_days"] = [int(h) for h in p["horizons_days"]]
    bad = sorted(set(p["dimensions"]) - {"site", "ethnicity"})
    if bad:
        raise OdevalError(f"metrics.dimensions: unknown {bad}; known: site, ethnicity",
                          rule="metrics.params.dimensions", file="params.yaml")
    if not isinstance(p["workers"], int) or isinstance(p["workers"], bool) \
            or p["workers"] not in (1, 2):
        raise OdevalError(f"metrics.workers must be 1 or 2, got {p['workers']!r}",
                          rule="metrics.params.workers", file="params.yaml")
    return p


# --------------------------------------------------------------------------- SQL

def build_temp_tables(con: duckdb.DuckDBPyConnection, params: dict[str, Any],
                      relations: tuple[str, ...] = RELATIONS) -> None:
    """Run ``pipeline/sql/metrics/<relation>.sql`` for each of ``relations`` (default:
    every one) as a temporary table (works read-only)."""
    from pipeline.derive import sql_parameters

    for need in ("people", "time_to_event", "recurrent", "antipsychotic", "activity",
                 "fidelity_referral"):
        if not con.execute("select count(*) from information_schema.tables where "
                           "table_schema = 'derived' and table_name = ?", [need]).fetchone()[0]:
            raise OdevalError(f"derived.{need} missing; run `odeval derive` first",
                              rule="metrics.derived.missing")
    from pipeline.derive import definitions

    bind = {"landmark_days": int(params["landmark_days"]),
            "binary_window": definitions(con)["binary_window"]}
    for name in relations:
        path = METRICS_SQL_DIR / f"{name}.sql"
        sql = path.read_text(encoding="utf-8").strip().rstrip(";")
        used = {n: bind[n] for n in sql_parameters(sql)}
        with _one_thread(con) if name in SUMMED_IN_ORDER else nullcontext():
            con.execute(f"create or replace temp table {name} as\n{sql}\n", used)


#: the relations that sum floating-point values over many rows (person-years, shares): built
#: on one thread, each sum then adds its rows in their stored order (person_outcomes by
#: person, derived.fidelity_referral by referral), so a rebuild gives the same bits. With two
#: threads DuckDB adds its partial sums in whichever order the threads finish: two national
#: runs of the same code differed by 1.3e-14 in person-years and 2.3e-14 in fidelity shares,
#: and the funnel figures' coordinates moved with them.
SUMMED_IN_ORDER = ("outcome_cells", "fidelity_cells")


@contextmanager
def _one_thread(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    threads = con.execute("select current_setting('threads')").fetchone()[0]
    con.execute("set threads = 1")
    try:
        yield
    finally:
        con.execute(f"set threads = {int(threads)}")


def person_frame(con: duckdb.DuckDBPyConnection, params: dict | None = None) -> pd.DataFrame:
    """One row per person: arm, site, cluster, covariates and every outcome (for analyses
    and notebooks; read-only connections are fine)."""
    p = resolve_params(params)
    build_temp_tables(con, p)
    return read_persons(con)


def read_persons(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The temporary relation ``person_outcomes`` as a frame, by person, each text column's
    equal values one shared Python string.

    DuckDB's ``.df()`` gives every row its own string object: at national size the ten
    few-valued text columns (site, arm, cluster, sex, ...) held 10 M strings, 0.63 GB of
    the frame's 0.89 GB, and as they are interleaved in memory with the person ids, freeing
    them later returns little of it. So the text columns are read through Arrow, whose
    conversion makes one object per distinct value; the values, dtypes (object) and missing
    values (None) are those ``.df()`` gives. A process forked later that reads the frame
    then touches a few strings' reference counts, not a page per row, so the pages stay
    shared."""
    kinds = con.execute("select column_name, column_type from (describe person_outcomes)").fetchall()
    text = [c for c, t in kinds if t == "VARCHAR"]
    order = " order by person_id"
    rest = [c for c, _ in kinds if c not in text]
    df = con.execute(f"select {', '.join(map(quote_ident, rest))} from person_outcomes{order}"
                     ).df()
    strings = (con.sql(f"select {', '.join(map(quote_ident, text))} from person_outcomes{order}")
               .to_arrow_table()
               .to_pandas(deduplicate_objects=True))
    for c in text:
        df[c] = strings[c].to_numpy(dtype=object)
    return df[[c for c, _ in kinds]]


# --------------------------------------------------------------------------- intervals

@lru_cache(maxsize=None)
def _z(conf: float) -> float:
    return float(sps.norm.ppf(1 - (1 - conf) / 2))


@lru_cache(maxsize=None)
def _t(conf: float, df: float) -> float:
    """The t quantile of a ``conf`` two-sided interval (memoised: every cell of a table asks
    for the same few, and scipy's ``ppf`` costs a millisecond a call)."""
    return float(sps.t.ppf(1 - (1 - conf) / 2, df))


def wilson(x: float, n: float, conf: float) -> tuple[float, float, float]:
    if n <= 0:
        return np.nan, np.nan, np.nan
    z = _z(conf)
    p = x / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, max(0.0, centre - half), min(1.0, centre + half)


def mean_ci(n: float, s: float, s2: float, conf: float, clip: bool = False):
    """Mean of ``n`` values from their sum ``s`` and sum of squares ``s2``, with the t
    interval ``mean +/- t(n - 1) sd / sqrt(n)`` (clipped to [0, 1] with ``clip``)."""
    if n <= 0:
        return np.nan, np.nan, np.nan
    m = s / n
    if n < 2:
        return m, np.nan, np.nan
    var = max((s2 - s * s / n) / (n - 1), 0.0)
    half = _t(conf, n - 1) * np.sqrt(var / n)
    lo, hi = m - half, m + half
    if clip:
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    return m, lo, hi


def rate_ci(y: float, y2: float, yt: float, t: float, t2: float, conf: float):
    """Events per unit of time with a robust (sandwich) log-scale interval."""
    if t <= 0:
        return np.nan, np.nan, np.nan
    r = y / t
    if y == 0:
        return 0.0, 0.0, float(sps.chi2.ppf(1 - (1 - conf) / 2, 2) / 2 / t)
    var = max(y2 - 2 * r * yt + r * r * t2, 0.0) / (t * t)
    se_log = np.sqrt(var) / r
    z = _z(conf)
    return r, r * np.exp(-z * se_log), r * np.exp(z * se_log)


# --------------------------------------------------------------------------- outcomes

def _cell_keys(df: pd.DataFrame, dim_col: str | None):
    """(level, arm) labels of every cell a person belongs to, margins included."""
    level = df[dim_col].astype(str) if dim_col else pd.Series("all", index=df.index)
    return [(level, df["arm"]), (level, pd.Series("all", index=df.index)),
            (pd.Series("all", index=df.index), df["arm"]),
            (pd.Series("all", index=df.index), pd.Series("all", index=df.index))]


def _curves_at(d: pd.DataFrame, horizons: list[int], conf: float) -> dict:
    """``{(cell, horizon): (km, km_lo, km_hi, aj, aj_lo, aj_hi, events)}`` for the cells
    of ``d['cell']`` (disjoint groups); KM is 1 - S with death censored, AJ the cumulative
    incidence of relapse with death competing."""
    from pipeline.stats import aalen_johansen, kaplan_meier

    out = {}
    if len(d) == 0:
        return out
    d = d.assign(relapse_only=(d["relapse_event"] == 1).astype(int))
    rt = kaplan_meier(d, "relapse_time", "relapse_only", group="cell",
                      conf_level=conf).risk_table(horizons)
    aj = (aalen_johansen(d, "relapse_time", "relapse_event", cause=1, group="cell",
                         conf_level=conf).table
          if (d["relapse_event"] == 1).any() else None)
    # one pass per table into arrays, then lookups per cell (a national extract has
    # hundreds of cells)
    rt = rt.drop_duplicates(["group", "time"])
    km_at = dict(zip(zip(rt["group"], rt["time"]),
                     rt[["survival", "lower", "upper"]].to_numpy()))
    aj_of = ({g: (tab["time"].to_numpy(), tab[["cif", "lower", "upper"]].to_numpy())
              for g, tab in aj.groupby("group", sort=False)} if aj is not None else {})
    event_times = {c: np.sort(s.to_numpy()) for c, s in
                   d.loc[d["relapse_event"] == 1].groupby("cell")["relapse_time"]}
    for cell in sorted(d["cell"].unique()):
        a_time, a_vals = aj_of.get(cell, (np.empty(0), None))
        times = event_times.get(cell, np.empty(0))
        for h in horizons:
            s, lo, up = km_at[(cell, h)]
            k = int(np.searchsorted(a_time, h, side="right"))  # AJ rows with time <= h
            aj_v = tuple(a_vals[k - 1]) if k else (0.0, np.nan, np.nan)
            events = int(np.searchsorted(times, h, side="right"))
            out[(cell, h)] = (1 - s, 1 - up, 1 - lo, *aj_v, events)
    return out


#: the partitions of the people whose curves are estimated, as ``(dimension, i)``: the
#: ``i``-th of :func:`_cell_keys` (0: level and arm, 1: level) for a dimension, or the
#: margins (2: arm, 3: everyone; ``None``: the same partition in every dimension). In this
#: order they are shared between this process, which takes them from the front, and a
#: second worker (``metrics.workers: 2``), which takes them from the back
#: (:func:`pipeline.parallel.two_ends`): the two site partitions, the costliest, one at
#: each end (the trust bench's people spread over 50 sites, as the national bench's: site
#: and arm 6.0 times the CPU of everyone, site 3.4, ethnicity and arm 1.7, ethnicity 1.3,
#: arm 1.1), then ethnicity's, and the margins in the middle for whichever is free first.
CURVE_SCHEDULE = (("site", 0), ("ethnicity", 0), (None, 2), (None, 3), ("ethnicity", 1),
                  ("site", 1))

DIMENSION_COLUMNS = {"site": "site_id", "ethnicity": "ethnicity_group"}


def _partition_curves(persons: pd.DataFrame, dim_col: str, i: int, horizons: list[int],
                      conf: float, cfg: dict[str, Any]) -> tuple[tuple, tuple[dict, dict]]:
    """The curves of one partition of the people, the ``i``-th of :func:`_cell_keys` for
    ``dim_col``: ``(cells, (exact, public))``, ``cells`` naming its cells in order, the
    curves (:func:`_curves_at`) exact and from the disclosure-rounded curve data
    (:func:`pipeline.disclosure.rounded_curve_data`, what the figures show)."""
    d = persons[["relapse_time", "relapse_event", "arm", dim_col]].copy()
    level, arm = _cell_keys(d, dim_col)[i]
    d["cell"] = level + "\x1f" + arm
    cells = tuple(sorted(d["cell"].unique()))
    rounded = disclosure.rounded_curve_data(d, "relapse_time", "relapse_event", cfg, "cell")
    return cells, (_curves_at(d, horizons, conf), _curves_at(rounded, horizons, conf))


def _curve_rows(partitions: list[tuple[tuple, tuple[dict, dict]]],
                horizons: list[int]) -> pd.DataFrame:
    """KM and AJ at each horizon per cell of ``partitions`` (:func:`_partition_curves`,
    those of :func:`_cell_keys` for one dimension, in its order), exact and from the
    rounded curve data (``pub``); a partition whose cells came before is left out."""
    rows = []
    seen = set()
    for cells, (exact, public) in partitions:
        if cells in seen:
            continue
        seen.add(cells)
        for cell in cells:
            lv, ar = cell.split("\x1f")
            for h in horizons:
                e = exact[(cell, h)]
                p = public.get((cell, h))
                rows.append(dict(level=lv, arm=ar, horizon=h, events=e[6],
                                 km=e[0], km_lower=e[1], km_upper=e[2],
                                 aj=e[3], aj_lower=e[4], aj_upper=e[5],
                                 pub=p))
    return pd.DataFrame(rows)


def _curve_estimates(persons: pd.DataFrame, p: dict[str, Any],
                     cfg: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """:func:`_curve_rows` of each of ``p['dimensions']``. Each distinct partition of the
    people is estimated once (the margins, each arm and everyone, are the same partition
    in every dimension), with ``p['workers']`` 2 shared with a forked worker in the order
    of :data:`CURVE_SCHEDULE`; the estimates are the same either way."""
    dims = list(p["dimensions"])
    horizons, conf = p["horizons_days"], float(p["conf_level"])
    units = []
    for dim, i in CURVE_SCHEDULE:
        if (dim is None and not dims) or (dim is not None and dim not in dims):
            continue
        col = DIMENSION_COLUMNS[dim if dim is not None else dims[0]]
        units.append(((dim, i), partial(_partition_curves, persons, col, i, horizons, conf,
                                        cfg)))
    got = dict(parallel.two_ends(units, p["workers"] > 1))
    return {dim: _curve_rows([got[(dim if i < 2 else None, i)] for i in range(4)], horizons)
            for dim in dims}


def outcome_metrics(cells: pd.DataFrame, persons: pd.DataFrame, p: dict[str, Any],
                    cfg: dict[str, Any] | None = None,
                    definitions: dict[str, Any] | None = None) -> pd.DataFrame:
    """Long table: one row per dimension, level, arm and metric, with exact n, events,
    estimate and interval (and, in ``public_curve``, the KM / AJ values of the rounded
    curves, used by :func:`protect_outcomes`)."""
    cfg = {**disclosure.DEFAULTS, **(cfg or {})}
    conf = float(p["conf_level"])
    horizons = p["horizons_days"]
    specs = metric_specs(horizons, definitions)
    rows = []
    curves_of = _curve_estimates(persons, p, cfg)
    for dim in p["dimensions"]:
        c = cells[cells["dimension"] == dim].copy()
        curves = curves_of[dim]
        for _, cell in c.iterrows():
            cv = curves[(curves.level == cell.level) & (curves.arm == cell.arm)]
            for m in specs:
                n = int(cell[m.n])
                events = None
                public_curve = None
                if m.kind in ("km", "aj"):
                    r = cv[cv.horizon == m.extra[0]].iloc[0]
                    events = int(r.events)
                    if r.pub is not None:
                        public_curve = r.pub[0:3] if m.kind == "km" else r.pub[3:6]
                        public_curve = (*public_curve, r.pub[6])
                    est, lo, hi = ((r.km, r.km_lower, r.km_upper) if m.kind == "km"
                                   else (r.aj, r.aj_lower, r.aj_upper))
                    method = ("Kaplan-Meier, log-scale Greenwood" if m.kind == "km"
                              else "Aalen-Johansen, infinitesimal jackknife")
                elif m.kind == "rate":
                    pre = m.extra[0]
                    events = int(cell[m.events])
                    est, lo, hi = rate_ci(cell[f"{pre}_events"], cell[f"{pre}_y2"],
                                          cell[f"{pre}_yt"], cell[f"{pre}_py"], cell[f"{pre}_pt2"],
                                          conf)
                    method = "robust (sandwich), log scale; exact Poisson if no events"
                elif m.kind == "proportion":
                    events = int(cell[m.events])
                    est, lo, hi = wilson(events, n, conf)
                    method = "Wilson score"
                else:
                    pre = m.extra[0]
                    events = int(cell[m.events]) if m.events else None
                    est, lo, hi = mean_ci(n, cell[f"{pre}_sum"] if pd.notna(cell[f"{pre}_sum"]) else 0.0,
                                          cell[f"{pre}_sum2"] if pd.notna(cell[f"{pre}_sum2"]) else 0.0,
                                          conf, clip=m.unit == "proportion")
                    method = "t, mean +/- t(n-1) sd/sqrt(n)"
                rows.append(dict(dimension=dim, level=cell.level, arm=cell.arm, outcome=m.outcome,
                                 metric=m.metric, label=m.label, unit=m.unit, n=n, events=events,
                                 person_years=(float(cell[f"{m.extra[0]}_py"]) if m.kind == "rate"
                                               else None),
                                 estimate=est, lower=lo, upper=hi, ci_method=method,
                                 public_curve=public_curve))
    out = pd.DataFrame(rows)
    return _sort(out, ["dimension", "outcome", "metric", "level", "arm"])


def _sort(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Sort with 'all' after the levels (then arms in a fixed order)."""
    def key(col):
        if col.name in ("level", "site_id", "arm"):
            return col.map(lambda v: (1, "") if v == "all" else (0, str(v)))
        return col
    return df.sort_values(keys, key=key, kind="mergesort").reset_index(drop=True)


# --------------------------------------------------------------------------- disclosure

def _constraints(frame: pd.DataFrame, key_cols: list[str], dim_col: str | None, level_col: str,
                 arm_col: str = "arm") -> list:
    """Additive constraints of the (level x arm) grids, one per value of ``dim_col``.

    Cells are keyed by the tuple of ``key_cols`` values; overall cells ('all', 'all'-level)
    are shared between dimensions by the caller's choice of keys.
    """
    cons = []
    dims = [None] if dim_col is None else sorted(frame[dim_col].unique())
    for d in dims:
        f = frame if d is None else frame[frame[dim_col] == d]
        levels = sorted(set(f[level_col]) - {"all"})
        arms = sorted(set(f[arm_col]) - {"all"})
        base = [(d,) if d is not None else ()][0]
        for total, parts in disclosure.grid_constraints(levels, arms):
            cons.append((_k(base, *total), [_k(base, *p) for p in parts]))
    return cons


def _margin_first(key) -> int:
    """Complementary suppression hides a both-arms margin before an arm of a comparison."""
    return 0 if key[-1] == "all" and key[-2] != "all" else 1


def _k(base: tuple, level, arm):
    """Cell key; the overall cell (all, all) and arm margins share a key across dimensions."""
    if level == "all":
        return ("*", "all", arm)
    return (*base, level, arm)


def _set_interval(out: pd.DataFrame, idx, values) -> None:
    """Set ``estimate, lower, upper`` of row ``idx`` (cell by cell: a ``.loc`` row write
    costs milliseconds, and the tables have hundreds of rows)."""
    for col, v in zip(("estimate", "lower", "upper"), values, strict=True):
        out.at[idx, col] = v


def protect_outcomes(exact: pd.DataFrame, cfg: dict[str, Any], conf: float = 0.95) -> pd.DataFrame:
    """The outcome metrics after disclosure control: counts rounded or suppressed (primary
    and secondary); proportions re-estimated from the rounded counts; rates from rounded
    events and person-years (interval scaled from the exact one); Kaplan-Meier and
    Aalen-Johansen values read off the rounded curves (events there are the rounded
    cumulative counts of the curve), hidden with a ``flag`` where they have no interval or
    stray from the exact value (:func:`pipeline.output_policy.curve_point`); means to the
    decimals :func:`pipeline.output_policy.mean` allows."""
    cfg = output_policy.settings(cfg)
    out = exact.copy()
    out["n"] = None
    out["events"] = None
    out["flag"] = ""
    for (outcome, metric), g in exact.groupby(["outcome", "metric"], sort=False):
        keys = [_k((d,), lv, a) for d, lv, a in zip(g.dimension, g.level, g.arm)]
        cons = _constraints(g, [], "dimension", "level")
        # one value per key (overall cells appear once per dimension with equal values)
        n_vals = dict(zip(keys, g["n"].astype(int)))
        hidden_n = disclosure.secondary_suppress(n_vals, cons, disclosure.primary(n_vals, cfg),
                                                 _margin_first)
        hidden_e: set = set()
        if g["events"].notna().all():
            e_vals = dict(zip(keys, g["events"].astype(int)))
            # "all but a few" only where events are people among the n (not for rates)
            per_person = not g["ci_method"].iloc[0].startswith("robust")
            prim = disclosure.primary(e_vals, cfg, n_vals if per_person else None) | hidden_n
            hidden_e = disclosure.secondary_suppress(e_vals, cons, prim, _margin_first)
        for idx, key in zip(g.index, keys):
            n_ok = key not in hidden_n
            e_ok = key not in hidden_e
            n_r = disclosure.round_count(exact.at[idx, "n"], cfg) if n_ok else None
            out.at[idx, "n"] = n_r
            e_r = None
            if pd.notna(exact.at[idx, "events"]):
                e_r = (disclosure.round_count(exact.at[idx, "events"], cfg)
                       if e_ok and n_ok else None)
                out.at[idx, "events"] = e_r
            if not (n_ok and e_ok):
                _set_interval(out, idx, (np.nan, np.nan, np.nan))
                out.at[idx, "person_years"] = None
                continue
            kind = exact.at[idx, "ci_method"]
            if kind.startswith("Wilson"):      # proportions from the rounded counts
                _set_interval(out, idx, wilson(e_r, n_r, conf))
            elif kind.startswith("robust"):    # rate from rounded counts and person-years
                py = float(round(exact.at[idx, "person_years"]))
                out.at[idx, "person_years"] = py
                est, lo, hi = (exact.at[idx, c] for c in ("estimate", "lower", "upper"))
                r = e_r / py if py > 0 else np.nan
                _set_interval(out, idx, (r, r * lo / est, r * hi / est) if est > 0
                              else (0.0, 0.0, hi))
            elif kind.startswith(("Kaplan", "Aalen")):  # the rounded curves
                pc = exact.at[idx, "public_curve"]
                if pc is None:
                    _set_interval(out, idx, (np.nan, np.nan, np.nan))
                else:
                    est, flag = output_policy.curve_point(
                        pc[0], exact.at[idx, "estimate"], pc[1], pc[2], cfg)
                    _set_interval(out, idx, pc[:3] if est is not None
                                  else (np.nan, np.nan, np.nan))
                    out.at[idx, "flag"] = flag
                    out.at[idx, "events"] = int(pc[3])
            elif kind.startswith("t"):  # means: no more decimals than keep every n possible
                whole = exact.at[idx, "unit"] == "days"
                for c in ("estimate", "lower", "upper"):
                    out.at[idx, c] = output_policy.mean(exact.at[idx, c], n_r, cfg, whole)
    out["suppressed"] = out["estimate"].isna() & exact["estimate"].notna()
    return out.drop(columns="public_curve")


def fidelity_metrics(cells: pd.DataFrame, conf: float) -> pd.DataFrame:
    rows = []
    for _, c in cells.iterrows():
        n = int(c.n_referrals)
        s = c.value_sum if pd.notna(c.value_sum) else 0.0
        s2 = c.value_sum2 if pd.notna(c.value_sum2) else 0.0
        events = None
        if c.kind == "binary":
            events = int(round(s))
            est, lo, hi = wilson(events, n, conf)
            method = "Wilson score"
        elif c.kind == "share":
            est, lo, hi = mean_ci(n, s, s2, conf, clip=True)
            method = "mean of referral shares, t interval"
        else:
            est, lo, hi = c.value_median, np.nan, np.nan
            method = "median (no interval)"
        principle, label = FIDELITY_LABELS[c.indicator]
        rows.append(dict(site_id=c.site_id, arm=c.arm, principle=principle, indicator=c.indicator,
                         label=label, kind=c.kind, n=n, events=events, estimate=est, lower=lo,
                         upper=hi, ci_method=method, measurable=True))
    for site_id, arm in cells[["site_id", "arm"]].drop_duplicates().itertuples(index=False):
        principle, label = FIDELITY_LABELS["p6_tolerance_of_uncertainty"]
        rows.append(dict(site_id=site_id, arm=arm, principle=principle,
                         indicator="p6_tolerance_of_uncertainty", label=label, kind="not_measurable",
                         n=None, events=None, estimate=np.nan, lower=np.nan, upper=np.nan,
                         ci_method="not measurable from records", measurable=False))
    return _sort(pd.DataFrame(rows), ["indicator", "site_id", "arm"])


def protect_fidelity(exact: pd.DataFrame, cfg: dict[str, Any], conf: float = 0.95) -> pd.DataFrame:
    """Fidelity after disclosure control (binary indicators re-estimated from rounded counts)."""
    out = exact.copy()
    out["n"] = None
    out["events"] = None
    for ind, g in exact[exact.measurable].groupby("indicator", sort=False):
        keys = [_k(("site",), lv, a) for lv, a in zip(g.site_id, g.arm)]
        cons = _constraints(g.assign(dimension="site"), [], "dimension", "site_id")
        n_vals = dict(zip(keys, g["n"].astype(int)))
        hidden_n = disclosure.secondary_suppress(n_vals, cons, disclosure.primary(n_vals, cfg),
                                                 _margin_first)
        hidden_e: set = set()
        if g["events"].notna().all():
            e_vals = dict(zip(keys, g["events"].astype(int)))
            hidden_e = disclosure.secondary_suppress(
                e_vals, cons, disclosure.primary(e_vals, cfg, n_vals) | hidden_n, _margin_first)
        for idx, key in zip(g.index, keys):
            ok = key not in hidden_n and key not in hidden_e
            out.at[idx, "n"] = disclosure.round_count(exact.at[idx, "n"], cfg) if key not in hidden_n else None
            if pd.notna(exact.at[idx, "events"]):
                out.at[idx, "events"] = disclosure.round_count(exact.at[idx, "events"], cfg) if ok else None
            if not ok:
                _set_interval(out, idx, (np.nan, np.nan, np.nan))
            elif exact.at[idx, "kind"] == "binary":
                _set_interval(out, idx, wilson(out.at[idx, "events"], out.at[idx, "n"], conf))
    out["suppressed"] = out["estimate"].isna() & exact["estimate"].notna()
    return out


def dq_metrics(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    flow = con.execute("select * from flow").df()
    tot = flow.groupby("table_name", as_index=False)[["n_raw", "n_clean", "n_quarantined"]].sum()
    tot["site_id"] = "all"
    out = pd.concat([flow, tot], ignore_index=True)
    out["quarantined_share"] = np.where(out.n_raw > 0, out.n_quarantined / out.n_raw.clip(lower=1),
                                        np.nan)
    return _sort(out[["table_name", "site_id", "n_raw", "n_clean", "n_quarantined",
                      "quarantined_share"]], ["table_name", "site_id"])


def protect_dq(exact: pd.DataFrame, cfg: dict[str, Any]) -> pd.DataFrame:
    out = exact.copy().astype({"n_raw": object, "n_clean": object, "n_quarantined": object})
    for table, g in exact.groupby("table_name", sort=False):
        # the same cells as the data-quality report hides (its ``all`` row: the sites' sum)
        vals, hidden = disclosure.flow_suppress(
            {r.site_id: (r.n_raw, r.n_clean, r.n_quarantined)
             for r in g.itertuples() if r.site_id != "all"}, cfg)
        for idx, r in g.iterrows():
            for col, kind in (("n_raw", "all"), ("n_clean", "clean"), ("n_quarantined", "quarantined")):
                key = (r.site_id, kind)
                out.at[idx, col] = None if key in hidden else disclosure.round_count(vals[key], cfg)
        # the share reveals the quarantined count when the total is shown: 2 decimals of %
        for idx in g.index:
            if out.at[idx, "n_quarantined"] is None or out.at[idx, "n_raw"] is None:
                out.at[idx, "quarantined_share"] = np.nan
            elif out.at[idx, "n_raw"]:
                out.at[idx, "quarantined_share"] = out.at[idx, "n_quarantined"] / out.at[idx, "n_raw"]
    return out


# --------------------------------------------------------------------------- stage

@dataclass
class MetricsResult:
    params: dict[str, Any]
    outcomes: pd.DataFrame
    outcomes_public: pd.DataFrame
    fidelity: pd.DataFrame
    fidelity_public: pd.DataFrame
    dq: pd.DataFrame
    dq_public: pd.DataFrame
    #: the person frame (``person_outcomes``) the metrics were computed from, when they
    #: were (not read back by :func:`stored`): ``odeval run``'s analyse takes it over
    #: instead of reading it again (3 s at national size)
    persons: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    def tables(self) -> dict[str, pd.DataFrame]:
        """Public tables by file stem (for CSV)."""
        out = {}
        for dim in sorted(self.outcomes_public["dimension"].unique()):
            out[f"outcomes_by_{dim}"] = self.outcomes_public[
                self.outcomes_public["dimension"] == dim].drop(columns="dimension")
        out["fidelity_by_site"] = self.fidelity_public
        out["data_quality"] = self.dq_public
        return out


def compute(con: duckdb.DuckDBPyConnection, params: dict | None = None,
            disclosure_cfg: dict | None = None, progress: Progress | None = None) -> MetricsResult:
    """Compute every metric (exact and disclosure-controlled); writes nothing."""
    from pipeline import runstate

    runstate.require(con, ["derive"], command="metrics")
    p = resolve_params(params)
    cfg = {**disclosure.DEFAULTS, **(disclosure_cfg or {})}
    step = (lambda i, s: progress(i, 5, s)) if progress else (lambda i, s: None)
    build_temp_tables(con, p)
    step(1, "sql")
    persons = read_persons(con)
    cells = con.execute("select * from outcome_cells").df()
    from pipeline.derive import definitions

    outcomes = outcome_metrics(cells, persons, p, cfg, definitions(con))
    step(2, "outcomes")
    fid = fidelity_metrics(con.execute("select * from fidelity_cells").df(), float(p["conf_level"]))
    step(3, "fidelity")
    dq = dq_metrics(con)
    step(4, "data quality")
    conf = float(p["conf_level"])
    res = MetricsResult(p, outcomes.drop(columns="public_curve"),
                        protect_outcomes(outcomes, cfg, conf), fid,
                        protect_fidelity(fid, cfg, conf), dq, protect_dq(dq, cfg), persons)
    step(5, "disclosure control")
    return res


def write_results(con: duckdb.DuckDBPyConnection, res: MetricsResult,
                  params: dict | None = None) -> dict[str, int]:
    """Store the tables in the ``results`` schema, and the metrics stage's build record
    (:mod:`pipeline.runstate`; ``params``: the parameters it ran with), in one transaction."""
    from pipeline import runstate

    tables = {"metrics_outcomes": res.outcomes, "metrics_outcomes_public": res.outcomes_public,
              "metrics_fidelity": res.fidelity, "metrics_fidelity_public": res.fidelity_public,
              "metrics_dq": res.dq, "metrics_dq_public": res.dq_public}
    from pipeline.warehouse import transaction

    with transaction(con):
        con.execute("create schema if not exists results")
        for name, df in tables.items():
            frame = _for_duckdb(df)
            con.register("_frame", frame)
            con.execute(f"create or replace table results.{name} as select * from _frame")
            con.unregister("_frame")
        runstate.record(con, "metrics", params if params is not None else res.params)
    return {k: len(v) for k, v in tables.items()}


def _for_duckdb(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == object:
            vals = out[c].dropna()
            if len(vals) and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                 for v in vals):
                out[c] = out[c].astype("Int64")
            elif len(vals) and all(isinstance(v, (float, int, np.floating, np.integer))
                                   and not isinstance(v, bool) for v in vals):
                out[c] = out[c].astype("Float64")
            elif len(vals) == 0:
                out[c] = out[c].astype("Float64") if c in ("person_years",) else out[c].astype("Int64")
    return out


def stored(con: duckdb.DuckDBPyConnection, params: dict) -> MetricsResult | None:
    """The metrics stage's result read back from ``results``, when the warehouse's metrics
    build is current for ``params`` (the whole parameter file, as :func:`run` records its
    metrics and disclosure sections: :func:`pipeline.runstate.current`); else None.
    ``odeval analyse`` reads it instead of computing every metric again. Counts in the
    public tables come back as they were computed (Python ints, None where suppressed).
    It leaves the temporary relation ``person_outcomes`` on the connection (the others
    of ``pipeline/sql/metrics`` only make the metrics: 2 s of fidelity sums at national
    size)."""
    from pipeline import runstate
    from pipeline.params import section

    if not runstate.current(con, "metrics", {"metrics": section(params, "metrics"),
                                             "disclosure": section(params, "disclosure")}):
        return None
    p = resolve_params(section(params, "metrics"))
    build_temp_tables(con, p, ("person_outcomes",))
    t = {name: con.execute(f"select * from results.metrics_{name}").df()
         for name in ("outcomes", "outcomes_public", "fidelity", "fidelity_public", "dq",
                      "dq_public")}
    for name in ("outcomes_public", "fidelity_public", "dq_public"):
        df = t[name]
        for c in df.columns:
            if pd.api.types.is_integer_dtype(df[c]):
                df[c] = pd.Series([None if pd.isna(v) else int(v) for v in df[c]],
                                  index=df.index, dtype=object)
    return MetricsResult(p, t["outcomes"],
                         t["outcomes_public"], t["fidelity"], t["fidelity_public"], t["dq"],
                         t["dq_public"])


def load_public(con: duckdb.DuckDBPyConnection) -> dict[str, pd.DataFrame]:
    """The public metrics tables from the warehouse (for the report)."""
    out = {}
    for name in ("metrics_outcomes_public", "metrics_fidelity_public", "metrics_dq_public"):
        out[name] = con.execute(f"select * from results.{name}").df()
    return out


def write_csv(res: MetricsResult, out_dir: Path, source: str = "warehouse:memory") -> list[Path]:
    """Disclosure-controlled CSV tables into the folder ``out_dir`` (usually
    ``<output folder>/metrics``): the ``metrics`` outputs of its parent folder, replaced as
    a whole (:func:`pipeline.outputs.publish`; ``source``: the warehouse they come from)."""
    from pipeline import outputs

    out_dir = Path(out_dir)
    with outputs.publish(out_dir.parent, "metrics", source=source,
                         rule="metrics.write") as stage:
        (stage / out_dir.name).mkdir()
        for stem, df in res.tables().items():
            outputs.write_table(df, stage / out_dir.name / f"{stem}.csv")
    return sorted(out_dir.glob("*.csv"))


def run(con: duckdb.DuckDBPyConnection, params: dict, out_dir: Path,
        progress: Progress | None = None) -> MetricsResult:
    """The ``odeval metrics`` stage: compute, store in ``results``, write CSV."""
    from pipeline import outputs
    from pipeline.params import section

    outputs.claim(Path(out_dir).parent, "metrics", outputs.warehouse_source(con))
    res = compute(con, section(params, "metrics"), disclosure.settings(params), progress)
    write_results(con, res, {"metrics": section(params, "metrics"),
                             "disclosure": section(params, "disclosure")})
    write_csv(res, out_dir, outputs.warehouse_source(con))
    return res
