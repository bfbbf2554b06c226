"""What leaves a site: ``odeval export`` builds the bundle's tables from one site's
warehouse and writes them with a manifest (:func:`export_bundle`). Nothing else in
odeval writes a bundle."""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from pipeline import __version__
from pipeline.errors import OdevalError
from pipeline.federated.bundle import (
    BUNDLE_SCHEMA,
    FEDERATED_SQL_DIR,
    FIDELITY,
    MANIFEST,
    MEASURES,
    RISK_SETS,
    SCHEMA_VERSION,
    SITE_EFFECTS,
    TABLE_ONE,
    VALIDATION_RULES,
    VALIDATION_TABLES,
    _analyse_settings,
    _sha256,
    _versions,
    with_n_risk,
    derive_params_hash,
    disclosure_settings,
    rescale_moments,
    round_half_up)


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
    return with_n_risk(g)


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
    d = _arms(persons[persons["involuntary_person_years"] > 0], settings)
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
        rr = rate_ratio(d, "involuntary_count", "involuntary_person_years", ["arm"],
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

    from pipeline import outputs, runstate

    runstate.require(con, ["derive"], command="export")
    out_dir = outputs.check_path(Path(out_dir), rule="federated.export.out")
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
