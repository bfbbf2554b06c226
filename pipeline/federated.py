"""Federated analysis: each site exports an aggregate bundle, the coordinating centre pools them.

Pilot sites are separate NHS trusts; many cannot send row-level records anywhere. The unit
of distribution is the site: :func:`export_bundle` writes, from one site's warehouse, a
folder of Parquet tables of aggregates and a ``manifest.json``; :func:`read_bundle`
validates a bundle on its own, :func:`pool_bundles` checks bundles against each other and
pools them, and :mod:`pipeline.federated_report` writes the disclosure-controlled report.

A bundle holds (bundle schema version :data:`SCHEMA_VERSION`; columns and types in
:data:`BUNDLE_SCHEMA`):

``risk_sets.parquet``
    per outcome of ``derived.time_to_event`` and arm, one row per distinct observed time
    (a time with an event, a competing death or a censoring): ``time, n_risk, n_event``
    (cause 1, the outcome), ``n_competing`` (cause 2, competing death), ``n_censor``.
    The multiset of (time, status) pairs is a sufficient statistic for the Kaplan-Meier
    and Aalen-Johansen estimators, and these counts are that multiset, so the pooled
    curves are *exact*: summed over sites they are the counts of the pooled rows.
``site_effects.parquet``
    the site's estimate of each of the three primary contrasts of the single-site analysis
    (comparison arm against the reference arm), computed as :mod:`pipeline.analyse` does
    for the whole study, within the site: the log hazard ratio of relapse (Cox model,
    deaths censored, model-based se, as :func:`pipeline.analyse.site_effects`), the log
    rate ratio of involuntary admissions (``analyse.rate_family`` log-linear model, offset
    log person-years) and the risk difference of being in work or education at 2 years
    (Wald variance; the single-site report shows the Newcombe interval of the same
    estimate, which has no single variance). Each with its variance, or a null estimate
    and the reason when it is not estimable. Variances allow for clustering within the
    site (HC0 cluster-robust rate ratio, design-effect inflated risk difference) when the
    site has at least two clusters in each arm; otherwise they are model-based and
    ``method`` says so. (The whole-study analysis uses the delete-one-cluster jackknife
    for its rate ratio by default; within a site the sandwich is kept.)
``table_one.parquet``
    Table 1 sufficient statistics per arm for each ``analyse.table_one`` variable: the
    arm's people (``kind`` ``people``); categorical variables: people per level
    (``level``) and missing (``missing``); continuous ones: ``n``, ``value_sum``,
    ``value_sum2`` (``continuous``) and missing. For ``analyse.nonnormal`` variables whose
    values are whole numbers (counts such as prior admissions) also the people per value
    (``value``), from which the pooled median and quartiles are exact; other non-normal
    variables cannot have their median pooled, and the pooled table shows mean (SD).
``fidelity.parquet``
    per fidelity indicator and arm the numerator and denominator the metrics stage's
    fidelity cells are built from (``pipeline/sql/federated/fidelity_site.sql``):
    ``n_referrals``, ``value_sum``, ``value_sum2``. Binary indicators and shares pool
    exactly; the median hours to the first meeting cannot be pooled (its mean can).
``validation_tables.parquet``, ``validation_rules.parquet``
    the validation summary: rows received, clean and quarantined per input table, and
    quarantined rows per rule. When the warehouse holds this site alone, every row of it
    (the site's own loads, as in ``meta.validation_counts``); in a warehouse of several
    sites, the rows placed in this site as the validate stage places them (by the person's
    site), and rows that cannot be placed in a site (orphans) are in no bundle. The
    manifest's ``validation_scope`` says which.
``manifest.json``
    bundle schema version, site, creation time, odeval and package versions, the sha256 of
    the derive parameters, the analysis and disclosure settings, the sha256 of every input
    file (``meta.loads``) and of every bundle file, what each file holds and what is exact.

No row-level data, no person, staff, referral or contact identifier: only the site's own
label, outcome, arm, variable, level, indicator, table and rule names, times in days,
counts, sums and estimates.

Disclosure (``params.yaml`` ``federated:``, recorded in the manifest; pooling refuses
bundles whose settings differ):

* ``round_risk_sets: false`` (default): risk-set counts are exact, so small cells (one
  event at a day) occur; that is for the data-sharing agreement under which a bundle
  leaves a site. ``true``: each arm's cumulative counts of events, deaths and censorings
  are rounded to multiples of the curve step (:func:`pipeline.disclosure.curve_step`,
  10 by default), as the report's curves are; the pooled Kaplan-Meier and
  Aalen-Johansen are then approximate (steps moved by up to half a step of people).
* ``round_counts: false`` (default): Table 1, fidelity, validation and site-effect counts
  are exact. ``true``: every such count is rounded to ``disclosure.round_to``; a
  continuous variable's (or share's) sums are rescaled to its rounded n so that the
  site's mean and SD stay exact. Pooled counts, percentages, means, SDs and SMDs are
  then approximate (the sites are weighted by rounded counts); totals checked on read
  may differ by the rounding.
* Site effects (estimates and variances) are never rounded.

A bundle is validated on read (:func:`read_bundle`): the manifest, every file's sha256,
each file's columns and types, values (no nulls where not allowed, counts >= 0, known
vocabularies), unique keys and totals adding up; each violation is an
:class:`~pipeline.errors.OdevalError` naming the bundle file and a rule
``bundle.<file>.<check>``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from pipeline import __version__, output_policy
from pipeline.config import SQL_DIR
from pipeline.errors import OdevalError
from pipeline.params import merged, params_hash, section

#: Bump when a bundle's files or columns change; pooling refuses bundles of other versions.
SCHEMA_VERSION = 2

FEDERATED_SQL_DIR = SQL_DIR / "federated"

MANIFEST = "manifest.json"
RISK_SETS = "risk_sets.parquet"
SITE_EFFECTS = "site_effects.parquet"
TABLE_ONE = "table_one.parquet"
FIDELITY = "fidelity.parquet"
VALIDATION_TABLES = "validation_tables.parquet"
VALIDATION_RULES = "validation_rules.parquet"

#: Every bundle file: its columns, in order, with their Parquet (Arrow) types.
BUNDLE_SCHEMA: dict[str, dict[str, str]] = {
    RISK_SETS: {"outcome": "string", "arm": "string", "time": "int64", "n_risk": "int64",
                "n_event": "int64", "n_competing": "int64", "n_censor": "int64"},
    SITE_EFFECTS: {"outcome": "string", "measure": "string", "scale": "string",
                   "comparison": "string", "estimate": "double", "se": "double",
                   "variance": "double", "n": "int64", "n_events": "int64",
                   "method": "string", "note": "string"},
    TABLE_ONE: {"variable": "string", "kind": "string", "arm": "string", "level": "string",
                "n": "int64", "value_sum": "double", "value_sum2": "double"},
    FIDELITY: {"indicator": "string", "kind": "string", "arm": "string",
               "n_referrals": "int64", "value_sum": "double", "value_sum2": "double"},
    VALIDATION_TABLES: {"table_name": "string", "n_raw": "int64", "n_clean": "int64",
                        "n_quarantined": "int64"},
    VALIDATION_RULES: {"table_name": "string", "rule_id": "string", "n_rows": "int64"},
}

RISK_SET_COLUMNS = list(BUNDLE_SCHEMA[RISK_SETS])

#: The three site contrasts: (outcome, measure, scale of the estimate).
MEASURES = (("relapse", "log hazard ratio", "log"),
            ("involuntary_admission", "log rate ratio", "log"),
            ("return_to_work", "risk difference", "difference"))

#: Fidelity indicators of derived.fidelity_referral and their kinds (fidelity_cells.sql).
FIDELITY_KINDS = {
    "discharge_by_network": "binary",
    "p1_hours_to_first_meeting": "hours",
    "p1_within_24h": "binary",
    "p2_share_network_present": "share",
    "p3_share_home_or_choice": "share",
    "p4_first_contact_at_first_meeting": "binary",
    "p5_core_team_continuity": "share",
    "p5_peer_worker_present": "binary",
    "p5_share_two_clinical": "share",
    "p7_share_person_present": "share",
}

TABLE_ONE_KINDS = ("people", "level", "missing", "continuous", "value")

#: ``params.yaml`` ``federated:`` defaults.
DEFAULTS: dict[str, Any] = {"round_risk_sets": False, "round_counts": False}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def derive_params_hash(params: dict[str, Any]) -> str:
    """Hash of the derive parameters (merged over the derive defaults, so that an absent
    key and its default value hash alike): bundles built under different outcome
    definitions must not be pooled."""
    from pipeline.derive import resolve_params

    return params_hash(resolve_params(section(params, "derive")))


def _analyse_settings(params: dict[str, Any]) -> dict[str, Any]:
    from pipeline.analyse import resolve_params

    p = resolve_params(params.get("analyse"))
    return {k: p[k] for k in ("reference_arm", "comparison_arm", "ties", "conf_level",
                              "meta_method", "meta_test", "rate_family", "table_one",
                              "nonnormal")}


def disclosure_settings(params: dict[str, Any]) -> dict[str, Any]:
    """``params.yaml`` ``federated:`` over :data:`DEFAULTS`, with the rounding base
    (``disclosure.round_to``) and the curve step it implies: what the manifest records."""
    from pipeline import disclosure

    out = merged("federated", section(params, "federated"), DEFAULTS)
    for k in DEFAULTS:
        if not isinstance(out[k], bool):
            raise OdevalError(f"federated.{k} must be true or false, not {out[k]!r}",
                              rule="federated.params.type", file="params.yaml")
    cfg = disclosure.settings(params)
    out["round_to"] = max(int(cfg.get("round_to") or 1), 1)
    out["curve_step"] = disclosure.curve_step(cfg)
    return out


def round_half_up(n: int | float, base: int) -> int:
    """``n`` rounded to the nearest multiple of ``base``, halves up (``base`` 1: unchanged)."""
    if base <= 1:
        return int(n)
    return int(math.floor(n / base + 0.5)) * base


def rescale_moments(n: int, s: float, s2: float, n_new: int) -> tuple[float, float]:
    """Sums for ``n_new`` values with the same mean and SD (ddof 1) as ``n`` values summing
    to ``s`` with squares summing to ``s2``: what a rounded count keeps exact."""
    if n_new <= 0 or n <= 0:
        return 0.0, 0.0
    mean = s / n
    var = max((s2 - s * s / n) / (n - 1), 0.0) if n > 1 else 0.0
    return mean * n_new, (n_new - 1) * var + n_new * mean * mean


# --------------------------------------------------------------------------- export

def site_risk_sets(rows: pd.DataFrame) -> pd.DataFrame:
    """Counts per outcome, arm and distinct observed time from time-to-event rows
    (columns ``outcome, arm, time_days, event``, event 0 / 1 / 2)."""
    d = rows.assign(
        n_event=(rows["event"] == 1).astype("int64"),
        n_competing=(rows["event"] == 2).astype("int64"),
        n_censor=(rows["event"] == 0).astype("int64"),
    ).rename(columns={"time_days": "time"})
    g = (d.groupby(["outcome", "arm", "time"], sort=True)[["n_event", "n_competing", "n_censor"]]
         .sum().reset_index())
    return _with_n_risk(g)


def rounded_risk_sets(rows: pd.DataFrame, step: int) -> pd.DataFrame:
    """Risk sets whose cumulative counts per outcome, arm and status are rounded to
    multiples of ``step`` (:func:`pipeline.disclosure.rounded_curve_data`, as the report's
    curves): every count and every number at risk is then a multiple of ``step``."""
    from pipeline import disclosure

    cfg = {"round_to": step, "suppress_min": 1, "suppress_max": step - 1}
    parts = []
    for outcome, d in rows.groupby("outcome", sort=True):
        r = disclosure.rounded_curve_data(d, "time_days", "event", cfg, "arm")
        parts.append(r.assign(outcome=outcome))
    if not parts:
        return site_risk_sets(rows)
    return site_risk_sets(pd.concat(parts, ignore_index=True))


def _with_n_risk(g: pd.DataFrame) -> pd.DataFrame:
    """``n_risk`` at each time: everyone whose time is at or after it (reverse cumulative sum
    of the events, competing events and censorings within outcome and arm)."""
    g = g.sort_values(["outcome", "arm", "time"], kind="mergesort").reset_index(drop=True)
    leaving = g["n_event"] + g["n_competing"] + g["n_censor"]
    g["n_risk"] = leaving[::-1].groupby([g["outcome"][::-1], g["arm"][::-1]]).cumsum()[::-1]
    g = g[RISK_SET_COLUMNS]
    return g.astype({"time": "int64", "n_risk": "int64", "n_event": "int64",
                     "n_competing": "int64", "n_censor": "int64"})


def _effect(outcome: str, measure: str, scale: str, settings: dict, n: int, n_events: int,
            estimate: float = math.nan, se: float = math.nan, method: str = "",
            note: str = "") -> dict[str, Any]:
    return dict(outcome=outcome, measure=measure, scale=scale,
                comparison=f"{settings['comparison_arm']} vs {settings['reference_arm']}",
                estimate=float(estimate), se=float(se), variance=float(se) ** 2,
                n=int(n), n_events=int(n_events), method=method, note=note.strip())


def _clusters(d: pd.DataFrame) -> tuple[str | None, str]:
    """Whether (and why not) a within-site variance can allow for clustering: the site has
    clusters (``cluster_id``) and at least two in each arm. With one cluster per arm the
    arm is the cluster and a cluster-robust or design-effect variance is not estimable."""
    from pipeline.analyse import _has_clusters

    if not _has_clusters(d):
        return None, "model-based (no clusters in the data)"
    per_arm = d.groupby("arm", observed=True)["cluster_id"].nunique()
    if len(per_arm) == 2 and (per_arm >= 2).all():
        return "cluster_id", f"allowing for {d['cluster_id'].nunique()} clusters within the site"
    return None, (f"model-based: {d['cluster_id'].nunique()} clusters in the site, fewer than "
                  "two per arm, so clustering within the site is not estimable")


def hazard_ratio_effect(rows: pd.DataFrame, settings: dict[str, Any]) -> dict[str, Any]:
    """The site's log hazard ratio of relapse (comparison vs reference arm): Cox model
    within the site, deaths censored, model-based se, as :func:`pipeline.analyse.site_effects`."""
    from pipeline.stats import cox

    outcome, measure, scale = MEASURES[0]
    d = rows[rows["outcome"] == "relapse"]
    d = d.assign(od=(d["arm"] == settings["comparison_arm"]).astype(int),
                 relapse_only=(d["event"] == 1).astype(int))
    n, events = len(d), int(d["relapse_only"].sum())
    ev = d.groupby("od")["relapse_only"].agg(["sum", "size"])
    if len(ev) < 2 or (ev["sum"] == 0).any() or (ev["sum"] == ev["size"]).any():
        return _effect(outcome, measure, scale, settings, n, events,
                       note="an arm without relapses (or without people free of relapse): no "
                            "hazard ratio; left out of the meta-analysis")
    fit = cox(d, "time_days", "relapse_only", ["od"], ties=settings["ties"],
              conf_level=float(settings["conf_level"]))
    s = fit.summary.loc["od"]
    return _effect(outcome, measure, scale, settings, n, events, s.coef, s.se,
                   f"Cox model within the site, {settings['ties']} ties, deaths censored; "
                   "model-based variance", " ".join(fit.notes))


def _arms(persons: pd.DataFrame, settings: dict[str, Any]) -> pd.DataFrame:
    d = persons.copy()
    d["arm"] = pd.Categorical(d["arm"], categories=[settings["reference_arm"],
                                                    settings["comparison_arm"]])
    return d


def rate_ratio_effect(persons: pd.DataFrame, settings: dict[str, Any]) -> dict[str, Any]:
    """The site's log rate ratio of involuntary admissions per person-year: the
    ``rate_family`` log-linear model of :func:`pipeline.analyse.secondary` (offset log
    person-years) within the site, so without the site term."""
    from pipeline.stats import rate_ratio

    outcome, measure, scale = MEASURES[1]
    d = _arms(persons[persons["person_years"] > 0], settings)
    n, events = len(d), int(d["involuntary_count"].sum())
    per_arm = d.groupby("arm", observed=False)["involuntary_count"].agg(["sum", "size"])
    if (per_arm["size"] == 0).any():
        return _effect(outcome, measure, scale, settings, n, events,
                       note="the site has people in one arm only: no rate ratio")
    if (per_arm["sum"] == 0).any():
        return _effect(outcome, measure, scale, settings, n, events,
                       note="an arm without involuntary admissions: the rate ratio is 0 or "
                            "infinite (not estimable); left out of the meta-analysis")
    cluster, how = _clusters(d)
    try:
        rr = rate_ratio(d, "involuntary_count", "person_years", ["arm"],
                        family=settings["rate_family"], cluster=cluster,
                        conf_level=float(settings["conf_level"]))
    except ValueError as exc:
        return _effect(outcome, measure, scale, settings, n, events,
                       note=f"not estimable: {exc}")
    s = rr.summary.loc[f"arm{settings['comparison_arm']}"]
    return _effect(outcome, measure, scale, settings, n, events, s.coef, s.se,
                   f"{settings['rate_family']} log-linear model within the site, offset log "
                   f"person-years; variance {how}", " ".join(rr.notes))


def risk_difference_effect(persons: pd.DataFrame, settings: dict[str, Any]) -> dict[str, Any]:
    """The site's risk difference of being in work or education at 2 years (Wald variance),
    as :func:`pipeline.analyse.secondary` estimates it for the whole study."""
    from pipeline.stats import risk_difference

    outcome, measure, scale = MEASURES[2]
    d = persons[persons["rtw_2y"].notna()]
    d = d.assign(rtw_2y=d["rtw_2y"].astype(int), arm=d["arm"].astype(str))
    n, events = len(d), int(d["rtw_2y"].sum())
    have = set(d["arm"])
    if not {settings["reference_arm"], settings["comparison_arm"]} <= have:
        return _effect(outcome, measure, scale, settings, n, events,
                       note="no one with the outcome recorded in an arm: no risk difference")
    cluster, how = _clusters(d)
    try:
        rd = risk_difference(d, "rtw_2y", group="arm", reference=settings["reference_arm"],
                             conf_level=float(settings["conf_level"]), cluster=cluster)
    except ValueError as exc:
        return _effect(outcome, measure, scale, settings, n, events,
                       note=f"not estimable: {exc}")
    w = rd.summary.iloc[0]  # the Wald row: the estimate and its variance
    if not (np.isfinite(w.se) and w.se > 0):
        return _effect(outcome, measure, scale, settings, n, events,
                       note="Wald variance 0 (no one, or everyone, in work or education in "
                            "both arms): left out of the meta-analysis")
    return _effect(outcome, measure, scale, settings, n, events, w.estimate, w.se,
                   f"difference of proportions, Wald variance {how}", " ".join(rd.notes))


def site_effects(rows: pd.DataFrame, persons: pd.DataFrame, settings: dict[str, Any]) -> pd.DataFrame:
    """The three site contrasts (:data:`MEASURES`), one row each."""
    return pd.DataFrame([hazard_ratio_effect(rows, settings),
                         rate_ratio_effect(persons, settings),
                         risk_difference_effect(persons, settings)])


def _is_whole(x: pd.Series) -> bool:
    v = x.dropna().to_numpy(float)
    return bool(np.all(np.isfinite(v)) and np.all(v == np.floor(v)))


def table_one_stats(persons: pd.DataFrame, variables: Sequence[str],
                    nonnormal: Sequence[str] = ()) -> pd.DataFrame:
    """Table 1 sufficient statistics per arm (the rows of ``table_one.parquet``).

    A variable is continuous when its column is numeric, as :func:`pipeline.analyse.table_one`
    decides; levels are labelled as :func:`pipeline.stats.table_one` labels them. Missing
    values are counted (``missing``) and left out of the level counts and sums.
    """
    from pipeline.stats._eff_design import levels_of
    from pipeline.stats.tableone import _label

    arms = sorted(persons["arm"].astype(str).unique())
    arm = persons["arm"].astype(str)
    rows: list[dict[str, Any]] = []

    def row(variable, kind, a, level="", n=0, s=math.nan, s2=math.nan):
        rows.append(dict(variable=variable, kind=kind, arm=a, level=level, n=int(n),
                         value_sum=float(s), value_sum2=float(s2)))

    for a in arms:
        row("people", "people", a, n=(arm == a).sum())
    for v in variables:
        x = persons[v]
        if pd.api.types.is_numeric_dtype(x):
            xf = x.astype(float)
            whole = v in nonnormal and _is_whole(xf)
            for a in arms:
                xa = xf[arm == a]
                ok = xa.dropna().to_numpy()
                row(v, "continuous", a, n=ok.size, s=math.fsum(ok), s2=math.fsum(ok * ok))
                row(v, "missing", a, n=xa.isna().sum())
                if whole:
                    vals, counts = np.unique(ok, return_counts=True)
                    for val, c in zip(vals, counts):
                        row(v, "value", a, level=_label(float(val)), n=c)
        else:
            levels = levels_of(x)
            for a in arms:
                xa = x[arm == a]
                for lev in levels:
                    row(v, "level", a, level=_label(lev), n=(xa == lev).sum())
                row(v, "missing", a, n=xa.isna().sum())
    return pd.DataFrame(rows, columns=list(BUNDLE_SCHEMA[TABLE_ONE]))


def _sql(name: str) -> str:
    return (FEDERATED_SQL_DIR / f"{name}.sql").read_text(encoding="utf-8").strip().rstrip(";")


def _run_sql(con: duckdb.DuckDBPyConnection, name: str, bind: dict[str, Any]) -> pd.DataFrame:
    from pipeline.derive import sql_parameters

    sql = _sql(name)
    return con.execute(sql, {k: bind[k] for k in sql_parameters(sql)}).df()


def site_fidelity(con: duckdb.DuckDBPyConnection, site: str) -> pd.DataFrame:
    """``fidelity.parquet``: the site's fidelity cells (needs the metrics temp tables)."""
    f = _run_sql(con, "fidelity_site", {"site": site})
    return f.astype({"n_referrals": "int64", "value_sum": "float64", "value_sum2": "float64"})


def site_validation(con: duckdb.DuckDBPyConnection, site: str) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """``validation_tables`` and ``validation_rules`` of the site, and their scope."""
    from pipeline.dq_report import site_join as place
    from pipeline.schemas import load_contract

    con.execute("create or replace temp table fed_validation_rows (table_name varchar, "
                "_load_id varchar, _row_number bigint, site_id varchar, rules varchar[])")
    template = _sql("validation_rows")
    try:
        for table in load_contract().values():
            join, site_expr = place(table)
            con.execute("insert into fed_validation_rows\n" + template.format(
                table=table.name, site_join=join, site=site_expr), {"table_name": table.name})
    except duckdb.CatalogException:
        raise OdevalError("the warehouse has no validated tables (raw and quarantine); run "
                          "`odeval validate` first", rule="federated.export.validated") from None
    sites = [r[0] for r in con.execute("select distinct site_id from raw.people where site_id "
                                       "is not null order by 1").fetchall()]
    whole = sites == [site]
    bind = {"site": site, "whole_warehouse": whole}
    tables = _run_sql(con, "validation_tables", bind)
    rules = _run_sql(con, "validation_rules", bind)
    con.execute("drop table fed_validation_rows")
    if whole:  # every row is the site's: the totals are validate's own (meta.validation_counts)
        vc = dict((t, (int(r), int(c), int(q))) for t, r, c, q in con.execute(
            "select table_name, sum(n_raw), sum(n_clean), sum(n_quarantined) "
            "from meta.validation_counts group by table_name").fetchall())
        mine = {t: (int(r), int(c), int(q)) for t, r, c, q in tables.itertuples(index=False)}
        if any(vc.get(t, (0, 0, 0)) != v for t, v in mine.items()):
            raise OdevalError("the validation summary does not match meta.validation_counts; "
                              "re-run `odeval validate`", rule="federated.export.validation")
        scope = ("the whole warehouse: it holds this site alone, so every row of its loads "
                 "(meta.validation_counts), orphans included")
    else:
        scope = (f"rows placed in site {site} of a warehouse of {len(sites)} sites (by the "
                 "row's own, its person's or, for contact staff, its staff member's site_id); "
                 "rows that cannot be placed in a site (orphans) are in no site's bundle")
    tables = tables.astype({"n_raw": "int64", "n_clean": "int64", "n_quarantined": "int64"})
    rules = rules.astype({"n_rows": "int64"})
    return tables, rules, scope


def apply_count_rounding(tables: dict[str, pd.DataFrame], base: int) -> dict[str, pd.DataFrame]:
    """``round_counts``: every count of Table 1, fidelity, validation and the site effects
    rounded to ``base``; continuous sums rescaled to the rounded n (mean and SD kept)."""
    out = dict(tables)
    r = lambda n: round_half_up(n, base)  # noqa: E731

    t1 = tables[TABLE_ONE].copy()
    for i in t1.index[t1["kind"] == "continuous"]:
        n_new = r(t1.at[i, "n"])
        t1.loc[i, ["value_sum", "value_sum2"]] = rescale_moments(
            int(t1.at[i, "n"]), t1.at[i, "value_sum"], t1.at[i, "value_sum2"], n_new)
    t1["n"] = t1["n"].map(r).astype("int64")
    out[TABLE_ONE] = t1

    f = tables[FIDELITY].copy()
    for i in f.index:
        n, n_new = int(f.at[i, "n_referrals"]), r(f.at[i, "n_referrals"])
        if f.at[i, "kind"] == "binary":
            e = float(r(f.at[i, "value_sum"]))
            f.loc[i, ["value_sum", "value_sum2"]] = (e, e)
        else:
            f.loc[i, ["value_sum", "value_sum2"]] = rescale_moments(
                n, f.at[i, "value_sum"], f.at[i, "value_sum2"], n_new)
    f["n_referrals"] = f["n_referrals"].map(r).astype("int64")
    out[FIDELITY] = f

    vt = tables[VALIDATION_TABLES].copy()
    for c in ("n_raw", "n_clean", "n_quarantined"):
        vt[c] = vt[c].map(r).astype("int64")
    out[VALIDATION_TABLES] = vt
    vr = tables[VALIDATION_RULES].copy()
    vr["n_rows"] = vr["n_rows"].map(r).astype("int64")
    out[VALIDATION_RULES] = vr

    se = tables[SITE_EFFECTS].copy()
    for c in ("n", "n_events"):
        se[c] = se[c].map(r).astype("int64")
    out[SITE_EFFECTS] = se
    return out


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "odeval": __version__}
    for pkg in ("duckdb", "numpy", "pandas", "pyarrow", "scipy", "statsmodels"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:  # pragma: no cover
            out[pkg] = "not installed"
    return out


def _write_parquet(df: pd.DataFrame, path: Path, name: str) -> None:
    """A bundle file with exactly the columns and types of :data:`BUNDLE_SCHEMA`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"string": pa.string(), "int64": pa.int64(), "double": pa.float64()}
    schema = pa.schema([(c, types[t]) for c, t in BUNDLE_SCHEMA[name].items()])
    table = pa.Table.from_pandas(df[list(BUNDLE_SCHEMA[name])], schema=schema,
                                 preserve_index=False).replace_schema_metadata(None)
    pq.write_table(table, path)


def export_bundle(con: duckdb.DuckDBPyConnection, site: str, out_dir: str | Path,
                  params: dict[str, Any]) -> Path:
    """Write the aggregate bundle of ``site`` to ``out_dir`` (created; must be empty).

    Parameters
    ----------
    con : the site's warehouse, after ``validate`` and ``derive`` (read-only is fine: the
        metrics stage's relations are built as temporary tables).
    site : the site's ``site_id`` (a warehouse may hold several sites; only this one is used).
    out_dir : folder to write the bundle to.
    params : the whole params.yaml (the derive section is hashed; ``analyse`` gives the arms,
        methods and Table 1 variables; ``federated`` and ``disclosure`` the rounding).

    Returns the bundle folder. Two exports of the same warehouse and parameters give
    byte-identical files; only the manifest's ``created_at`` differs.
    """
    from pipeline import metrics

    out_dir = Path(out_dir)
    settings = _analyse_settings(params)
    fed = disclosure_settings(params)
    try:
        rows = con.execute(
            "select outcome, arm, time_days, event from derived.time_to_event "
            "where site_id = $site order by outcome, arm, time_days, event",
            {"site": site}).df()
        loads = con.execute("select table_name, sha256, format, n_rows from meta.loads "
                            "order by table_name, sha256").fetchall()
    except duckdb.CatalogException:
        raise OdevalError("the warehouse has no derived.time_to_event; run `odeval run` (or "
                          "ingest, validate, derive) first", rule="federated.export.derived") from None
    if rows.empty:
        sites = [r[0] for r in con.execute(
            "select distinct site_id from derived.time_to_event order by 1").fetchall()]
        raise OdevalError(f"site {site!r} has no rows in derived.time_to_event; sites in the "
                          f"warehouse: {sites}", rule="federated.export.site")
    arms = sorted(rows["arm"].unique())
    unknown = sorted(set(arms) - {settings["reference_arm"], settings["comparison_arm"]})
    if unknown:
        raise OdevalError(f"site {site!r} has arms {unknown} besides "
                          f"{settings['reference_arm']} and {settings['comparison_arm']}",
                          rule="federated.export.arms")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise OdevalError("bundle folder is not empty (or not a folder); give a new folder",
                          rule="federated.export.out", file=out_dir)

    metrics.build_temp_tables(con, metrics.resolve_params(params.get("metrics")))
    persons = con.execute("select * from person_outcomes where site_id = $site order by person_id",
                          {"site": site}).df()
    tables = {
        RISK_SETS: (rounded_risk_sets(rows, fed["curve_step"]) if fed["round_risk_sets"]
                    else site_risk_sets(rows)),
        SITE_EFFECTS: site_effects(rows, persons, settings),
        TABLE_ONE: table_one_stats(persons, settings["table_one"], settings["nonnormal"]),
        FIDELITY: site_fidelity(con, site),
    }
    tables[VALIDATION_TABLES], tables[VALIDATION_RULES], scope = site_validation(con, site)
    if fed["round_counts"]:
        tables = apply_count_rounding(tables, fed["round_to"])

    # written beside the destination and renamed into place: no half-written bundle
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name in BUNDLE_SCHEMA:
            _write_parquet(tables[name], tmp / name, name)
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
        manifest = _manifest(site, params, settings, fed, scope, loads, files)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above
        tmp.rename(out_dir)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OdevalError(f"cannot write the bundle: {exc.strerror or exc}",
                          rule="federated.export.write", file=out_dir) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _manifest(site: str, params: dict[str, Any], settings: dict[str, Any], fed: dict[str, Any],
              scope: str, loads: list, files: dict[str, str]) -> dict[str, Any]:
    """manifest.json: provenance, settings, sha256s and what each file holds and how exactly."""
    rounded_counts = f"rounded to multiples of {fed['round_to']}"
    return {
        "bundle_schema_version": SCHEMA_VERSION,
        "site": site,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "odeval_version": __version__,
        "versions": _versions(),
        "params_hash": derive_params_hash(params),
        "params_hash_of": "derive section of params.yaml merged over the derive defaults",
        "analysis_settings": settings,
        "disclosure_settings": fed,
        "validation_scope": scope,
        "inputs": [dict(table=t, sha256=s, format=f, n_rows=int(n)) for t, s, f, n in loads],
        "files": files,
        "contents": {
            RISK_SETS: "per outcome of derived.time_to_event and arm, one row per distinct "
                       "observed time (event, competing death or censoring): n_risk, n_event "
                       "(cause 1), n_competing (cause 2, death), n_censor",
            SITE_EFFECTS: "log hazard ratio of relapse (Cox), log rate ratio of involuntary "
                          "admissions, risk difference of work or education at 2 years; "
                          "comparison vs reference arm within the site, with variances",
            TABLE_ONE: "Table 1 per arm: people; per level and missing (categorical); n, sum, "
                       "sum of squares and missing (continuous); people per value "
                       "(whole-number non-normal variables)",
            FIDELITY: "per fidelity indicator and arm: referrals with the indicator "
                      "(n_referrals), sum and sum of squares of its values",
            VALIDATION_TABLES: "rows received, clean and quarantined per input table",
            VALIDATION_RULES: "quarantined rows per input table and rule",
        },
        "exactness": {
            RISK_SETS: (f"cumulative counts rounded to multiples of {fed['curve_step']}: pooled "
                        "Kaplan-Meier and Aalen-Johansen are approximate" if fed["round_risk_sets"]
                        else "exact aggregates: not rounded or suppressed; Kaplan-Meier and "
                             "Aalen-Johansen pooled from them equal the estimates on the "
                             "pooled rows"),
            SITE_EFFECTS: "estimates and variances exact (never rounded); the pooled effects "
                          "are random-effects meta-analyses of the sites, not models on the "
                          "pooled rows" + (f"; n and n_events {rounded_counts}"
                                           if fed["round_counts"] else ""),
            TABLE_ONE: (f"counts {rounded_counts}; sums rescaled to the rounded n (the site's "
                        "mean and SD exact)" if fed["round_counts"] else
                        "exact: pooled counts, means, SDs, SMDs and whole-number medians equal "
                        "those of the pooled rows"),
            FIDELITY: (f"counts {rounded_counts}; sums rescaled to the rounded n"
                       if fed["round_counts"] else
                       "exact: pooled proportions and mean shares equal those of the pooled "
                       "rows; the median hours is not poolable (the mean is)"),
            VALIDATION_TABLES: rounded_counts if fed["round_counts"] else "exact",
            VALIDATION_RULES: rounded_counts if fed["round_counts"] else "exact",
        },
        "disclosure_note": "No row-level data and no person, staff, referral or contact "
                           "identifier. Counts that are not rounded (see exactness) include "
                           "small cells (1 to 7 people), a disclosure consideration to be "
                           "covered by the data-sharing agreement under which this bundle "
                           "leaves the site. The bundle is not an output for publication.",
    }


# --------------------------------------------------------------------------- read and check

def _refuse(path: Path, name: str, message: str, check: str) -> OdevalError:
    stem = name.removesuffix(".parquet").removesuffix(".json")
    return OdevalError(message, rule=f"bundle.{stem}.{check}", file=path / name)


def _read_manifest(path: Path) -> dict[str, Any]:
    mf = path / MANIFEST
    if not mf.is_file():
        raise _refuse(path, MANIFEST, "not a bundle: manifest.json missing", "missing")
    try:
        manifest = json.loads(mf.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _refuse(path, MANIFEST, f"manifest.json is not valid JSON: {exc}", "invalid") from None
    types = {"bundle_schema_version": int, "site": str, "params_hash": str, "files": dict,
             "analysis_settings": dict, "disclosure_settings": dict}
    if not isinstance(manifest, dict):
        raise _refuse(path, MANIFEST, "manifest.json is not a JSON object", "invalid")
    missing = sorted(set(types) - set(manifest))
    if missing:
        raise _refuse(path, MANIFEST, f"manifest.json lacks {missing}", "invalid")
    bad = sorted(k for k, t in types.items() if not isinstance(manifest[k], t)
                 or (t is int and isinstance(manifest[k], bool)))
    if bad:
        raise _refuse(path, MANIFEST, f"manifest.json: wrong type of {bad}", "invalid")
    return manifest


def _read_table(path: Path, name: str) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path / name)
    except Exception as exc:  # noqa: BLE001 - any reader error means the same to a person
        raise _refuse(path, name, f"not a readable Parquet file: {exc}", "schema") from None
    got = [(f.name, str(f.type)) for f in schema]
    want = list(BUNDLE_SCHEMA[name].items())
    if got != want:
        raise _refuse(path, name, f"columns and types {got}, expected {want}", "schema")
    return pq.read_table(path / name).to_pandas()


def _check_values(path: Path, name: str, df: pd.DataFrame, nullable: Sequence[str] = ()) -> None:
    for col, typ in BUNDLE_SCHEMA[name].items():
        x = df[col]
        if col not in nullable and x.isna().any():
            raise _refuse(path, name, f"column {col}: {int(x.isna().sum())} null value(s)",
                          "values")
        if typ == "int64" and (x < 0).any():
            raise _refuse(path, name, f"column {col}: negative count(s)", "values")
        if typ == "double":
            v = x.dropna().to_numpy(float)
            if not np.all(np.isfinite(v)):
                raise _refuse(path, name, f"column {col}: infinite value(s)", "values")


def _check_key(path: Path, name: str, df: pd.DataFrame, key: list[str]) -> None:
    dup = df.duplicated(key, keep=False)
    if dup.any():
        first = df[dup].iloc[0][key].tolist()
        raise _refuse(path, name, f"{int(dup.sum())} rows share a key {key}, e.g. {first}", "key")


def _check_vocab(path: Path, name: str, df: pd.DataFrame, col: str, allowed) -> None:
    bad = sorted(set(df[col]) - set(allowed))
    if bad:
        raise _refuse(path, name, f"column {col}: unknown value(s) {bad[:5]}; expected one of "
                      f"{sorted(allowed)}", "values")


def _adds_up(total: float, parts: Sequence[float], base: int) -> bool:
    """Exact counts add up exactly; counts each rounded to ``base`` may differ from their
    rounded total by up to half a base per term."""
    if base <= 1:
        return int(total) == int(sum(parts))
    return abs(total - sum(parts)) <= (len(parts) + 1) * base / 2


def _moments_ok(n: float, s: float, s2: float) -> bool:
    """A sum of squares is at least the square of the sum over n (variance >= 0)."""
    if n <= 0:
        return s == 0 and s2 == 0
    return s2 >= s * s / n - 1e-9 * max(abs(s2), 1.0)


def check_bundle(path: Path, manifest: dict[str, Any], t: dict[str, pd.DataFrame]) -> None:
    """The totals and consistency rules of one bundle (rules ``bundle.<file>.<check>``)."""
    settings, disc = manifest["analysis_settings"], manifest["disclosure_settings"]
    arms = {settings.get("reference_arm"), settings.get("comparison_arm")}
    base = int(disc.get("round_to", 1)) if disc.get("round_counts") else 1
    step = int(disc.get("curve_step", 1)) if disc.get("round_risk_sets") else 1

    # table_one: the arms' people, each variable adding up to them
    t1 = t[TABLE_ONE]
    _check_values(path, TABLE_ONE, t1, nullable=("value_sum", "value_sum2"))
    _check_vocab(path, TABLE_ONE, t1, "kind", TABLE_ONE_KINDS)
    _check_vocab(path, TABLE_ONE, t1, "arm", arms)
    _check_key(path, TABLE_ONE, t1, ["variable", "kind", "arm", "level"])
    people = t1[t1["kind"] == "people"].set_index("arm")["n"].to_dict()
    variables = sorted(set(t1.loc[t1["kind"] != "people", "variable"]))
    if sorted(settings.get("table_one", [])) != variables or not people:
        raise _refuse(path, TABLE_ONE, f"variables {variables} (and people rows for "
                      f"{sorted(people)}); the manifest's analysis settings list "
                      f"{sorted(settings.get('table_one', []))}", "variables")
    cont = t1["kind"] == "continuous"
    sums = t1[["value_sum", "value_sum2"]]
    if sums[cont].isna().any().any() or sums[~cont].notna().any().any():
        raise _refuse(path, TABLE_ONE, "value_sum and value_sum2 must be given for continuous "
                      "rows and only for them", "values")
    for (var, arm), g in t1[t1["kind"] != "people"].groupby(["variable", "arm"], sort=True):
        kinds = set(g["kind"])
        if arm not in people:
            raise _refuse(path, TABLE_ONE, f"{var}: arm {arm} has no people row", "totals")
        if kinds & {"level"} and kinds & {"continuous", "value"} or "missing" not in kinds:
            raise _refuse(path, TABLE_ONE, f"{var}, arm {arm}: rows of kinds {sorted(kinds)}; a "
                          "variable is categorical (level, missing) or continuous (continuous, "
                          "missing, value)", "variables")
        miss = int(g.loc[g["kind"] == "missing", "n"].sum())
        if "continuous" in kinds:
            c = g[g["kind"] == "continuous"].iloc[0]
            if not _adds_up(people[arm], [int(c["n"]), miss], base):
                raise _refuse(path, TABLE_ONE, f"{var}, arm {arm}: n {int(c['n'])} + missing "
                              f"{miss} is not the arm's {people[arm]} people", "totals")
            if not _moments_ok(c["n"], c["value_sum"], c["value_sum2"]):
                raise _refuse(path, TABLE_ONE, f"{var}, arm {arm}: value_sum2 is less than "
                              "value_sum^2 / n (a negative variance)", "moments")
            vals = g[g["kind"] == "value"]
            if len(vals):
                if not _adds_up(int(c["n"]), list(vals["n"]), base):
                    raise _refuse(path, TABLE_ONE, f"{var}, arm {arm}: people per value add up "
                                  f"to {int(vals['n'].sum())}, not n {int(c['n'])}", "totals")
                x = pd.to_numeric(vals["level"], errors="coerce").to_numpy(float)
                if not np.all(np.isfinite(x)):
                    raise _refuse(path, TABLE_ONE, f"{var}: value levels must be numbers",
                                  "values")
                if base == 1 and not (
                        math.isclose(float(np.dot(x, vals["n"])), c["value_sum"],
                                     rel_tol=1e-9, abs_tol=1e-9)
                        and math.isclose(float(np.dot(x * x, vals["n"])), c["value_sum2"],
                                         rel_tol=1e-9, abs_tol=1e-9)):
                    raise _refuse(path, TABLE_ONE, f"{var}, arm {arm}: the people per value do "
                                  "not give value_sum and value_sum2", "moments")
        else:
            levels = list(g.loc[g["kind"] == "level", "n"])
            if not _adds_up(people[arm], [*levels, miss], base):
                raise _refuse(path, TABLE_ONE, f"{var}, arm {arm}: levels ({sum(levels)}) + "
                              f"missing ({miss}) is not the arm's {people[arm]} people", "totals")

    # risk_sets: n_risk what the counts imply; at the first time, the arm's people
    risk = t[RISK_SETS]
    _check_values(path, RISK_SETS, risk)
    _check_vocab(path, RISK_SETS, risk, "arm", arms)
    _check_key(path, RISK_SETS, risk, ["outcome", "arm", "time"])
    leaving = risk["n_event"] + risk["n_competing"] + risk["n_censor"]
    if (leaving == 0).any():
        raise _refuse(path, RISK_SETS, "a time with no event, death or censoring", "values")
    ordered = risk.sort_values(["outcome", "arm", "time"], kind="mergesort").reset_index(drop=True)
    if not ordered.equals(_with_n_risk(risk.drop(columns="n_risk"))):
        raise _refuse(path, RISK_SETS, "n_risk does not fall by the events, deaths and "
                      "censorings of each time (n_risk = those leaving at or after it)", "n_risk")
    first = ordered.groupby(["outcome", "arm"], sort=True)["n_risk"].first()
    for outcome in sorted(set(ordered["outcome"])):
        for arm, n in sorted(people.items()):
            got = int(first.get((outcome, arm), 0))
            # rounding: the table's count by up to base/2, the risk sets' by step/2 per status
            tol = (base / 2 if base > 1 else 0) + (3 * step / 2 if step > 1 else 0)
            ok = abs(got - n) <= tol
            if not ok:
                raise _refuse(path, RISK_SETS, f"{outcome}, arm {arm}: {got} at risk at the first "
                              f"time, but the arm has {n} people (table_one)", "arm_n")

    # site_effects: the three measures; variance = se^2; counts within the site
    se = t[SITE_EFFECTS]
    _check_values(path, SITE_EFFECTS, se, nullable=("estimate", "se", "variance"))
    _check_key(path, SITE_EFFECTS, se, ["outcome", "measure"])
    got = sorted(zip(se["outcome"], se["measure"], se["scale"]))
    if got != sorted(MEASURES):
        raise _refuse(path, SITE_EFFECTS, f"measures {got}, expected {sorted(MEASURES)}",
                      "measures")
    for _, r in se.iterrows():
        what = f"{r.outcome} {r.measure}"
        if pd.notna(r.estimate):
            if not (pd.notna(r.se) and r.se > 0 and pd.notna(r.variance)
                    and math.isclose(r.variance, r.se ** 2, rel_tol=1e-9)):
                raise _refuse(path, SITE_EFFECTS, f"{what}: variance {r.variance!r} is not the "
                              f"square of a positive se {r.se!r}", "variance")
        elif pd.notna(r.se) or pd.notna(r.variance) or not str(r.note).strip():
            raise _refuse(path, SITE_EFFECTS, f"{what}: no estimate, so no se or variance, and "
                          "a note saying why", "variance")
        total = sum(people.values())
        tol = (len(people) + 1) * base / 2 if base > 1 else 0
        if r.n > total + tol or (r.measure != "log rate ratio" and r.n_events > r.n):
            raise _refuse(path, SITE_EFFECTS, f"{what}: n {r.n}, n_events {r.n_events} for a "
                          f"site of {total} people", "n")
    hr = se[se["measure"] == "log hazard ratio"].iloc[0]
    relapses = int(risk.loc[risk["outcome"] == "relapse", "n_event"].sum())
    if base == 1 and step == 1 and relapses and int(hr.n_events) != relapses:
        raise _refuse(path, SITE_EFFECTS, f"relapse log hazard ratio: n_events {hr.n_events}, "
                      f"but the risk sets have {relapses} relapses", "n")

    # fidelity: numerators within denominators
    f = t[FIDELITY]
    _check_values(path, FIDELITY, f)
    _check_vocab(path, FIDELITY, f, "indicator", FIDELITY_KINDS)
    _check_vocab(path, FIDELITY, f, "arm", arms)
    _check_key(path, FIDELITY, f, ["indicator", "arm"])
    for _, r in f.iterrows():
        what = f"{r.indicator}, arm {r.arm}"
        if r.kind != FIDELITY_KINDS[r.indicator]:
            raise _refuse(path, FIDELITY, f"{what}: kind {r.kind}, expected "
                          f"{FIDELITY_KINDS[r.indicator]}", "values")
        if r.kind in ("binary", "share") and not (
                0 <= r.value_sum <= r.n_referrals * (1 + 1e-12)):
            raise _refuse(path, FIDELITY, f"{what}: numerator {r.value_sum:g} outside 0.."
                          f"{r.n_referrals} referrals", "numerator")
        if r.kind == "binary" and not (r.value_sum == round(r.value_sum)
                                       and r.value_sum2 == r.value_sum):
            raise _refuse(path, FIDELITY, f"{what}: a binary indicator's numerator must be a "
                          "whole count equal to its sum of squares", "numerator")
        if not _moments_ok(r.n_referrals, r.value_sum, r.value_sum2) or (
                base == 1 and r.kind == "share" and r.value_sum2 > r.value_sum * (1 + 1e-12)):
            raise _refuse(path, FIDELITY, f"{what}: sum of squares {r.value_sum2:g} impossible "
                          f"for {r.n_referrals} values summing to {r.value_sum:g}", "moments")

    # validation: raw = clean + quarantined; rules within quarantined
    vt, vr = t[VALIDATION_TABLES], t[VALIDATION_RULES]
    _check_values(path, VALIDATION_TABLES, vt)
    _check_key(path, VALIDATION_TABLES, vt, ["table_name"])
    _check_values(path, VALIDATION_RULES, vr)
    _check_key(path, VALIDATION_RULES, vr, ["table_name", "rule_id"])
    for _, r in vt.iterrows():
        if not _adds_up(r.n_raw, [r.n_clean, r.n_quarantined], base):
            raise _refuse(path, VALIDATION_TABLES, f"{r.table_name}: {r.n_raw} rows received, "
                          f"but {r.n_clean} clean + {r.n_quarantined} quarantined", "totals")
    quarantined = vt.set_index("table_name")["n_quarantined"].to_dict()
    for table, g in vr.groupby("table_name", sort=True):
        if table not in quarantined:
            raise _refuse(path, VALIDATION_RULES, f"rules of table {table}, which "
                          "validation_tables does not list", "totals")
        q, tol = quarantined[table], (base / 2 if base > 1 else 0)
        if (g["n_rows"] > q + tol).any() or g["n_rows"].sum() < q - tol * (len(g) + 1):
            raise _refuse(path, VALIDATION_RULES, f"{table}: rules quarantined {list(g['n_rows'])} "
                          f"rows, but the table has {q} quarantined (each rule at most that, "
                          "together at least that)", "totals")
    for table, q in quarantined.items():
        if q > base and table not in set(vr["table_name"]):
            raise _refuse(path, VALIDATION_RULES, f"{table}: {q} rows quarantined by no rule",
                          "totals")


def read_bundle(path: str | Path) -> dict[str, Any]:
    """Read and validate one bundle: manifest, files and their sha256, each file's columns
    and types, values, keys and totals (:func:`check_bundle`).

    Raises :class:`OdevalError` naming the bundle file and the rule broken
    (``bundle.<file>.<check>``): ``bundle.manifest.missing`` / ``invalid`` / ``files``,
    ``bundle.<file>.sha256``, ``.schema``, ``.values``, ``.key``, and per file
    ``risk_sets.n_risk`` / ``arm_n``, ``site_effects.measures`` / ``variance`` / ``n``,
    ``table_one.variables`` / ``totals`` / ``moments``, ``fidelity.numerator`` /
    ``moments``, ``validation_tables.totals``, ``validation_rules.totals``.
    """
    path = Path(path)
    manifest = _read_manifest(path)
    files = manifest["files"]
    if sorted(files) != sorted(BUNDLE_SCHEMA):
        raise _refuse(path, MANIFEST, f"the manifest lists files {sorted(files)}, a bundle of "
                      f"schema version {SCHEMA_VERSION} has {sorted(BUNDLE_SCHEMA)}", "files")
    extra = sorted(p.name for p in path.iterdir() if p.name != MANIFEST and p.name not in files)
    if extra:
        raise _refuse(path, MANIFEST, f"files not in the manifest: {extra}", "files")
    for name, sha in sorted(files.items()):
        if not (path / name).is_file():
            raise _refuse(path, MANIFEST, f"{name} listed in the manifest is missing", "files")
        if _sha256(path / name) != sha:
            raise _refuse(path, name, f"{name}: sha256 does not match the manifest (changed "
                          "after export)", "sha256")
    tables = {name: _read_table(path, name) for name in BUNDLE_SCHEMA}
    check_bundle(path, manifest, tables)
    return dict(path=path, manifest=manifest, tables=tables, risk_sets=tables[RISK_SETS],
                site_effects=tables[SITE_EFFECTS])


# --------------------------------------------------------------------------- pool

def _check_same(bundles: list[dict], key: str, what: str, rule: str) -> None:
    first = bundles[0]
    for b in bundles[1:]:
        if b["manifest"].get(key) != first["manifest"].get(key):
            raise OdevalError(
                f"{what} {b['manifest'].get(key)!r} differs from {first['manifest'].get(key)!r} "
                f"of bundle {first['path']} (site {first['manifest']['site']}); bundles must come "
                "from the same odeval bundle schema, parameters and disclosure settings",
                rule=rule, file=b["path"])


def pool_risk_sets(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Sum site risk sets: counts added at each time of the union of times, n_risk rebuilt."""
    allr = pd.concat(frames, ignore_index=True)
    g = (allr.groupby(["outcome", "arm", "time"], sort=True)[["n_event", "n_competing", "n_censor"]]
         .sum().reset_index())
    return _with_n_risk(g)


def expand(risk: pd.DataFrame) -> pd.DataFrame:
    """The (time, status) pairs the counts stand for, one row each (no identifiers): the
    sufficient statistic of Kaplan-Meier and Aalen-Johansen, so the estimators of
    :mod:`pipeline.stats` run on it unchanged. ``status`` is 0 censored, 1 event, 2 death."""
    parts = []
    for status, col in ((1, "n_event"), (2, "n_competing"), (0, "n_censor")):
        reps = risk[col].to_numpy()
        parts.append(pd.DataFrame({
            "outcome": np.repeat(risk["outcome"].to_numpy(), reps),
            "arm": np.repeat(risk["arm"].to_numpy(), reps),
            "time": np.repeat(risk["time"].to_numpy(), reps),
            "status": status}))
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["outcome", "arm", "time", "status"], kind="mergesort",
                           ignore_index=True)


def freq_quantiles(values: Sequence[float], counts: Sequence[int],
                   probs: Sequence[float] = (0.25, 0.5, 0.75)) -> list[float]:
    """Quantiles (R type 7, numpy's default) of the values ``values[i]`` repeated
    ``counts[i]`` times, without expanding them."""
    v = np.asarray(values, float)
    c = np.asarray(counts, np.int64)
    keep = c > 0
    v, c = v[keep], c[keep]
    order = np.argsort(v, kind="mergesort")
    v, c = v[order], c[order]
    n = int(c.sum())
    if n == 0:
        return [math.nan] * len(probs)
    cum = np.cumsum(c)

    def at(pos: int) -> float:  # the value at 0-based position pos of the sorted values
        return float(v[np.searchsorted(cum, pos, side="right")])

    out = []
    for p in probs:
        h = (n - 1) * p
        lo = math.floor(h)
        x = at(lo)
        out.append(x if lo + 1 >= n else x + (h - lo) * (at(lo + 1) - x))
    return out


def pool_table_one(frames: Sequence[pd.DataFrame], variables: Sequence[str],
                   nonnormal: Sequence[str] = ()):
    """Pooled Table 1 from the sites' ``table_one`` frames, as a
    :class:`pipeline.stats.tableone.TableOneResult` (``.table``, ``.smd``, ``.groups``).

    Counts are summed; means and SDs (ddof 1) come from the summed n, sums and sums of
    squares; SMDs as tableone computes them. A non-normal variable gets its median and
    quartiles (type 7) from the summed people per value when every site carries them;
    otherwise it is shown as mean (SD) and ``.notes`` says so, and it is left out of
    ``.nonnormal`` (the variables whose pooled median is exact).
    """
    from pipeline.stats.tableone import TableOneResult, smd_from_counts, smd_from_moments

    allt = pd.concat(frames, ignore_index=True)
    people = allt[allt["kind"] == "people"].groupby("arm", sort=True)["n"].sum()
    groups = list(people.index)
    rows, smd, notes, exact_median = [], {}, [], []
    for v in variables:
        t = allt[allt["variable"] == v]
        miss = t[t["kind"] == "missing"].groupby("arm")["n"].sum().reindex(groups, fill_value=0)
        if (t["kind"] == "level").any():
            lev = t[t["kind"] == "level"].groupby(["arm", "level"])["n"].sum().unstack(
                "level", fill_value=0).reindex(index=groups, fill_value=0)
            lev = lev[sorted(lev.columns)]
            smd[v] = smd_from_counts(lev.to_numpy())
            for level in lev.columns:
                for g in groups:
                    nk = int(lev.loc[g].sum())
                    cnt = int(lev.at[g, level])
                    rows.append(dict(variable=v, level=level, group=g, kind="categorical", n=nk,
                                     missing=int(miss[g]), count=cnt,
                                     pct=100 * cnt / nk if nk else np.nan))
            continue
        c = t[t["kind"] == "continuous"].groupby("arm")[["n", "value_sum", "value_sum2"]].sum()
        c = c.reindex(groups, fill_value=0)
        vals = t[t["kind"] == "value"]
        # exact quantiles need every site's people per value (a site with no value rows but
        # some non-missing values would be left out of them)
        quantiles = v in nonnormal and not vals.empty and all(
            ((f["variable"] == v) & (f["kind"] == "value")).any()
            or not ((f["variable"] == v) & (f["kind"] == "continuous") & (f["n"] > 0)).any()
            for f in frames)
        if v in nonnormal and not quantiles:
            notes.append(f"{v}: the median cannot be pooled from the bundles (not every site "
                         "carries people per value); shown as mean (SD).")
        means, variances = [], []
        for g in groups:
            n, s, s2 = float(c.at[g, "n"]), float(c.at[g, "value_sum"]), float(c.at[g, "value_sum2"])
            mean = s / n if n > 0 else np.nan
            var = max((s2 - s * s / n) / (n - 1), 0.0) if n > 1 else np.nan
            means.append(mean)
            variances.append(var)
            q1 = med = q3 = np.nan
            if quantiles:
                vg = vals[vals["arm"] == g].groupby("level")["n"].sum()
                q1, med, q3 = freq_quantiles(pd.to_numeric(vg.index).to_numpy(float),
                                             vg.to_numpy())
            rows.append(dict(variable=v, level="", group=g,
                             kind="nonnormal" if quantiles else "normal", n=int(n),
                             missing=int(miss[g]), mean=mean,
                             sd=np.sqrt(var) if n > 1 else np.nan,
                             median=med, q1=q1, q3=q3))
        if quantiles:
            exact_median.append(v)
        smd[v] = smd_from_moments(means, variances)
    cols = ["variable", "level", "group", "kind", "n", "missing", "count", "pct", "mean",
            "sd", "median", "q1", "q3"]
    res = TableOneResult(pd.DataFrame(rows).reindex(columns=cols), notes)
    res.smd = pd.Series(smd, name="smd")
    res.groups = groups
    res.n_arm = {g: int(people[g]) for g in groups}
    res.nonnormal = exact_median
    res.formatted = res.table
    res.title = "Table 1 by arm, pooled from site bundles"
    return res


def pool_fidelity(frames: dict[str, pd.DataFrame], conf: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pooled fidelity cells (per site and arm, with the site, arm and overall margins) and
    their metrics, as :func:`pipeline.metrics.fidelity_metrics` computes them. The median
    hours to the first meeting cannot be pooled: its rows carry the mean (t interval)."""
    from pipeline.metrics import fidelity_metrics, mean_ci

    allf = pd.concat([f.assign(site_id=s) for s, f in frames.items()], ignore_index=True)
    cols = ["n_referrals", "value_sum", "value_sum2"]
    parts = [allf[["site_id", "arm", "indicator", "kind", *cols]]]
    for keys, fill in ((["site_id", "indicator", "kind"], {"arm": "all"}),
                       (["arm", "indicator", "kind"], {"site_id": "all"}),
                       (["indicator", "kind"], {"site_id": "all", "arm": "all"})):
        parts.append(allf.groupby(keys, sort=True)[cols].sum().reset_index().assign(**fill))
    cells = pd.concat(parts, ignore_index=True)[["site_id", "arm", "indicator", "kind", *cols]]
    cells["value_median"] = np.nan
    cells = cells.sort_values(["indicator", "site_id", "arm"], kind="mergesort",
                              ignore_index=True)
    exact = fidelity_metrics(cells, conf)
    hours = exact["kind"] == "hours"
    c = cells.set_index(["site_id", "arm", "indicator"])
    for i in exact.index[hours]:
        r = c.loc[(exact.at[i, "site_id"], exact.at[i, "arm"], exact.at[i, "indicator"])]
        exact.loc[i, ["estimate", "lower", "upper"]] = mean_ci(
            r.n_referrals, r.value_sum, r.value_sum2, conf)
    exact.loc[hours, "label"] = ("Hours from referral to first network meeting (mean; the "
                                 "median cannot be pooled from bundles)")
    exact.loc[hours, "ci_method"] = "mean of referral hours, normal"
    return cells, exact


def pool_validation(frames: dict[str, tuple[pd.DataFrame, pd.DataFrame]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validation totals: per site and table with the all-sites rows (``site_id`` 'all'),
    in the shape of :func:`pipeline.metrics.dq_metrics`; quarantined rows per rule summed."""
    vt = pd.concat([t.assign(site_id=s) for s, (t, _) in frames.items()], ignore_index=True)
    tot = vt.groupby("table_name", as_index=False)[["n_raw", "n_clean", "n_quarantined"]].sum()
    out = pd.concat([vt, tot.assign(site_id="all")], ignore_index=True)
    out["quarantined_share"] = np.where(out.n_raw > 0, out.n_quarantined / out.n_raw.clip(lower=1),
                                        np.nan)
    out = out[["table_name", "site_id", "n_raw", "n_clean", "n_quarantined", "quarantined_share"]]
    out = out.assign(_all=out["site_id"] == "all").sort_values(
        ["table_name", "_all", "site_id"], kind="mergesort", ignore_index=True).drop(columns="_all")
    vr = pd.concat([r for _, r in frames.values()], ignore_index=True)
    rules = (vr.groupby(["table_name", "rule_id"], sort=True)["n_rows"].sum().reset_index())
    return out, rules


def meta_effects(effects: pd.DataFrame, settings: dict[str, Any]) -> tuple[dict, pd.DataFrame]:
    """Random-effects meta-analysis (``meta_method``, ``meta_test``, prediction interval) of
    each site contrast over the sites with an estimate; fewer than two: none."""
    from pipeline.stats import meta_analysis

    conf = float(settings["conf_level"])
    results, rows = {}, []
    for outcome, measure, scale in MEASURES:
        e = effects[(effects["outcome"] == outcome) & (effects["measure"] == measure)]
        e = e[np.isfinite(e["estimate"]) & (e["variance"] > 0)]
        if len(e) < 2:
            continue
        ma = meta_analysis(e["estimate"], e["variance"], method=settings["meta_method"],
                           test=settings["meta_test"], conf_level=conf, labels=list(e["site"]))
        results[measure] = ma
        f = np.exp if scale == "log" else (lambda x: x)
        rows.append(dict(
            outcome=outcome, measure=measure.removeprefix("log "), scale=scale,
            estimate=float(f(ma.estimate)), lower=float(f(ma.ci[0])), upper=float(f(ma.ci[1])),
            pi_lower=float(f(ma.pi[0])), pi_upper=float(f(ma.pi[1])),
            pooled=ma.estimate, se=ma.se, p=ma.p, tau2=ma.tau2, i2=ma.i2, q=ma.q, q_p=ma.q_p,
            k=ma.k, method=f"{settings['meta_method']} tau^2, {settings['meta_test']} test",
            notes=" ".join(ma.notes)))
    return results, pd.DataFrame(rows)


@dataclass
class Pooled:
    """Everything :func:`pool_bundles` found (exact: for the coordinating centre's analysts,
    not for publication; :mod:`pipeline.federated_report` makes the public versions)."""

    bundles: pd.DataFrame
    manifests: list[dict[str, Any]]
    settings: dict[str, Any]
    disclosure: dict[str, Any]
    risk_sets: pd.DataFrame
    km: pd.DataFrame
    cif: pd.DataFrame
    site_effects: pd.DataFrame
    meta: dict[str, Any]
    site_meta: pd.DataFrame
    table_one: Any
    people: pd.DataFrame
    fidelity_cells: pd.DataFrame
    fidelity: pd.DataFrame
    validation: pd.DataFrame
    validation_rules: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def exact_tables(self) -> dict[str, pd.DataFrame]:
        t1 = self.table_one.table.assign(smd=self.table_one.table["variable"].map(self.table_one.smd))
        return {"bundles": self.bundles, "risk_sets": self.risk_sets, "km": self.km,
                "cif": self.cif, "site_effects": self.site_effects, "site_meta": self.site_meta,
                "people": self.people, "table_one": t1, "fidelity": self.fidelity,
                "validation": self.validation, "validation_rules": self.validation_rules}

    @property
    def hr_meta(self):  # the relapse hazard ratio meta-analysis (first slice's name)
        return self.meta.get("log hazard ratio")


def pool_bundles(bundle_dirs: Sequence[str | Path], params: dict[str, Any] | None = None) -> Pooled:
    """Validate bundles on their own and against each other, and pool them (nothing is
    written; :func:`pool` writes).

    Refuses (:class:`OdevalError` naming the bundle) a bundle that fails :func:`read_bundle`,
    or whose bundle schema version, derive parameters hash, analysis settings or disclosure
    settings differ from the first bundle's; two bundles of one site are refused too.
    """
    from pipeline.stats import aalen_johansen, kaplan_meier

    if not bundle_dirs:
        raise OdevalError("no bundles given", rule="federated.pool.empty")
    bundles = []
    for p in bundle_dirs:
        manifest = _read_manifest(Path(p))
        if manifest["bundle_schema_version"] != SCHEMA_VERSION:
            raise OdevalError(f"bundle schema version {manifest['bundle_schema_version']!r}; "
                              f"this odeval reads version {SCHEMA_VERSION}",
                              rule="federated.pool.schema_version", file=p)
        bundles.append(read_bundle(p))
    _check_same(bundles, "bundle_schema_version", "bundle schema version",
                "federated.pool.schema_version")
    _check_same(bundles, "params_hash", "derive parameters hash", "federated.pool.params_hash")
    _check_same(bundles, "analysis_settings", "analysis settings", "federated.pool.settings")
    _check_same(bundles, "disclosure_settings", "disclosure settings",
                "federated.pool.disclosure")
    seen: dict[str, Path] = {}
    for b in bundles:
        site = b["manifest"]["site"]
        if site in seen:
            raise OdevalError(f"site {site!r} already pooled from bundle {seen[site]}",
                              rule="federated.pool.duplicate_site", file=b["path"])
        seen[site] = b["path"]
    bundles.sort(key=lambda b: b["manifest"]["site"])
    settings = bundles[0]["manifest"]["analysis_settings"]
    conf = float(settings["conf_level"])
    sites = [b["manifest"]["site"] for b in bundles]

    risk = pool_risk_sets([b["tables"][RISK_SETS] for b in bundles])
    pairs = expand(risk)
    km_frames, cif_frames = [], []
    for outcome, d in pairs.groupby("outcome", sort=True):
        d = d.assign(event=(d["status"] == 1).astype(int))
        km = kaplan_meier(d, "time", "event", group="arm", conf_level=conf).table
        km_frames.append(km.rename(columns={"group": "arm"}).assign(outcome=outcome))
        if (d["status"] > 0).any():
            aj = aalen_johansen(d, "time", "status", group="arm", conf_level=conf).table
            cif_frames.append(aj.rename(columns={"group": "arm"}).assign(outcome=outcome))
    km = pd.concat(km_frames, ignore_index=True)
    km = km[["outcome", *[c for c in km.columns if c != "outcome"]]]
    cif = pd.concat(cif_frames, ignore_index=True) if cif_frames else pd.DataFrame()
    if not cif.empty:
        cif = cif[["outcome", *[c for c in cif.columns if c != "outcome"]]]

    effects = pd.concat([b["tables"][SITE_EFFECTS].assign(site=s) for b, s in zip(bundles, sites)],
                        ignore_index=True)
    effects = effects[["site", *[c for c in effects.columns if c != "site"]]]
    meta, site_meta = meta_effects(effects, settings)

    t1 = pool_table_one([b["tables"][TABLE_ONE] for b in bundles], settings["table_one"],
                        settings["nonnormal"])
    people = pd.concat([b["tables"][TABLE_ONE].query("kind == 'people'")[["arm", "n"]]
                        .assign(site_id=s) for b, s in zip(bundles, sites)], ignore_index=True)
    people = people[["site_id", "arm", "n"]]
    cells, fid = pool_fidelity({s: b["tables"][FIDELITY] for b, s in zip(bundles, sites)}, conf)
    val, rules = pool_validation({s: (b["tables"][VALIDATION_TABLES],
                                      b["tables"][VALIDATION_RULES])
                                  for b, s in zip(bundles, sites)})
    bundle_table = pd.DataFrame([dict(
        site=b["manifest"]["site"], path=str(b["path"]),
        bundle_schema_version=b["manifest"]["bundle_schema_version"],
        created_at=b["manifest"].get("created_at", ""),
        odeval_version=b["manifest"].get("odeval_version", ""),
        params_hash=b["manifest"]["params_hash"],
        validation_scope=b["manifest"].get("validation_scope", "")) for b in bundles])
    notes = list(t1.notes)
    for _, e in effects[~np.isfinite(effects["estimate"])].iterrows():
        notes.append(f"site {e.site}, {e.outcome} {e.measure}: {e.note}")
    return Pooled(bundle_table, [b["manifest"] for b in bundles], settings,
                  bundles[0]["manifest"]["disclosure_settings"], risk, km, cif, effects, meta,
                  site_meta, t1, people, cells, fid, val, rules, notes)


def write_exact(pooled: Pooled, out_dir: str | Path) -> dict[str, Path]:
    """The exact pooled tables as CSV in ``out_dir`` (analysis files for the coordinating
    centre, not for publication: counts are not rounded or suppressed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, t in pooled.exact_tables().items():
        files[name] = out_dir / f"{name}.csv"
        t = t.copy()
        for c in t.columns[t.dtypes == object]:  # no spreadsheet formulas (OWASP)
            t[c] = t[c].map(output_policy.text)
        t.to_csv(files[name], index=False)
    return files


def pool(bundle_dirs: Sequence[str | Path], out_dir: str | Path, params: dict[str, Any],
         exact_dir: str | Path | None = None) -> tuple[Pooled, Path]:
    """``odeval pool``: pool the bundles, write the disclosure-controlled report and tables
    to ``out_dir`` (checked by check-outputs before it is moved into place) and, with
    ``exact_dir``, the exact pooled tables. Returns the pooled results and the report path."""
    from pipeline import federated_report

    pooled = pool_bundles(bundle_dirs, params)
    path = federated_report.build(pooled, params, out_dir)
    if exact_dir is not None:
        write_exact(pooled, exact_dir)
    return pooled, path
