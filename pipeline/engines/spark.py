"""The ingest (typing), validate and derive stages on Apache Spark.

The SQL is the pipeline's own, transpiled from DuckDB (:mod:`pipeline.engines.transpile`):

* typing: the expressions of :mod:`pipeline.ingest` (``_typed_from_text`` for text
  columns, ``_typed_from_native`` for typed Parquet columns, :func:`pipeline.ingest.nhs_number_sql`),
  so a value types, or lands in ``_untyped``, exactly as in DuckDB; lineage ``_load_id``
  (table and sha256 of the file) and ``_row_number`` (1-based data row);
* validation: every rule of :func:`pipeline.validate.table_rules`, its audit SQL
  (``Rule.sql()``) transpiled and its values bound (``Rule.params()``), tables in contract
  order so that cascades see the clean people and contacts;
* derive: every relation of :func:`pipeline.derive.load_relations`, in the same order,
  with the parameters of :func:`pipeline.derive.resolve_params` bound.

Every table is written as Parquet under one output folder, ``<out>/<schema>/<table>/``
(schemas ``raw``, ``clean``, ``quarantine``, ``derived``), and read back as the temporary
view ``<schema>__<table>`` for the SQL that reads it, as DuckDB reads its warehouse tables.
A run writes into ``<out>.partial`` and replaces ``<out>`` only when every stage has
succeeded, so a failed run leaves the previous output as it was (the DuckDB stages' "one
transaction"). :func:`pipeline.engines.read_table` loads any of the tables into Arrow or
pandas, from this folder or from a DuckDB warehouse alike.

Not on Spark (DuckDB only): appending loads to earlier ones (every run types exactly the
folders given, like ``odeval run``'s default ``--replace``), ``meta.loads`` as a table
(the loads are in ``<out>/meta/summary.json``), the great-expectations comparison and the
HTML data-quality report.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import derive as derive_mod
from pipeline import ingest as ingest_mod
from pipeline import validate as validate_mod
from pipeline.engines.transpile import spark_type, to_spark, view_name
from pipeline.errors import OdevalError
from pipeline.schemas import Table, load_contract
from pipeline.warehouse import quote_ident

Progress = Callable[[int, int, str], None]

#: Spark settings the SQL's meaning depends on; always set, whoever starts the session.
SEMANTIC_CONF = {
    "spark.sql.session.timeZone": "UTC",             # dates and timestamps as DuckDB's (no zone)
    "spark.sql.timestampType": "TIMESTAMP_NTZ",      # TIMESTAMP = DuckDB's TIMESTAMP
    "spark.sql.ansi.enabled": "true",                # errors, not silent NULLs, on bad casts
    "spark.sql.legacy.timeParserPolicy": "CORRECTED",
    "spark.sql.parquet.datetimeRebaseModeInWrite": "CORRECTED",
    "spark.sql.parquet.datetimeRebaseModeInRead": "CORRECTED",
    "spark.sql.parquet.int96RebaseModeInWrite": "CORRECTED",
    "spark.sql.caseSensitive": "false",
}

#: Settings for a Spark that odeval starts itself (local mode); a cluster's own win.
LOCAL_CONF = {
    "spark.driver.memory": "2g",
    "spark.sql.shuffle.partitions": "8",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.adaptive.enabled": "true",
}

DEFAULTS: dict[str, Any] = {
    "name": "duckdb",                   # duckdb | spark
    "spark_output": "data/spark",       # Parquet folder written by --engine spark
    "spark_master": "local[2]",         # only when not started by spark-submit / a cluster
    "spark_conf": {},                   # extra Spark settings, e.g. spark.driver.memory
}


# --------------------------------------------------------------------------- session

def session(master: str | None = "local[2]", conf: dict[str, str] | None = None):
    """A SparkSession: the one spark-submit or a cluster started, else a local one.

    ``master`` is used only when no master is configured already (spark-submit sets one);
    :data:`LOCAL_CONF` then applies, overridden by ``conf``. :data:`SEMANTIC_CONF` is set
    on the session in every case.
    """
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is None:
        builder = SparkSession.builder.appName("odeval")
        if not SparkConf().contains("spark.master"):
            builder = builder.master(master or "local[2]")
            for k, v in LOCAL_CONF.items():
                builder = builder.config(k, v)
        for k, v in (conf or {}).items():
            builder = builder.config(k, str(v))
        active = builder.getOrCreate()
        active.sparkContext.setLogLevel("ERROR")
    for k, v in SEMANTIC_CONF.items():
        active.conf.set(k, v)
    return active


# --------------------------------------------------------------------------- helpers

_quote = quote_ident


def _sql(spark, duckdb_sql: str, args: dict[str, Any] | None = None):
    """Run DuckDB SQL on Spark: transpiled, with its values bound as parameters."""
    return spark.sql(to_spark(duckdb_sql), args=args or None)


class Store:
    """Where a run writes its tables: ``<root>/<schema>/<table>/`` Parquet, one view each."""

    def __init__(self, spark, root: Path):
        self.spark = spark
        self.root = Path(root)

    def path(self, schema: str, table: str) -> Path:
        return self.root / schema / table

    def write(self, schema: str, table: str, df) -> None:
        """Materialise ``df`` as Parquet and point the view ``schema__table`` at it."""
        path = self.path(schema, table)
        df.write.mode("overwrite").parquet(str(path))
        self.register(schema, table)

    def register(self, schema: str, table: str) -> None:
        self.spark.read.parquet(str(self.path(schema, table))).createOrReplaceTempView(
            view_name(schema, table))

    def count(self, schema: str, table: str) -> int:
        return self.spark.table(view_name(schema, table)).count()


# --------------------------------------------------------------------------- typing (ingest)

#: Spark source types in DuckDB's spelling, for :func:`pipeline.ingest._typed_from_native`.
def _duckdb_type_of(spark_type_) -> str:
    from pyspark.sql import types as T

    if isinstance(spark_type_, T.StringType):
        return "VARCHAR"
    if isinstance(spark_type_, T.DecimalType):
        return f"DECIMAL({spark_type_.precision},{spark_type_.scale})"
    names = {T.FloatType: "FLOAT", T.DoubleType: "DOUBLE", T.LongType: "BIGINT",
             T.IntegerType: "INTEGER", T.ShortType: "SMALLINT", T.ByteType: "TINYINT",
             T.BooleanType: "BOOLEAN", T.DateType: "DATE", T.TimestampNTZType: "TIMESTAMP",
             T.TimestampType: "TIMESTAMP WITH TIME ZONE", T.BinaryType: "BLOB"}
    for cls, name in names.items():
        if isinstance(spark_type_, cls):
            return name
    return spark_type_.simpleString().upper()


@dataclass
class SparkLoad:
    table: str
    path: str
    sha256: str
    format: str
    load_id: str
    n_rows: int = 0
    extra_columns: list[str] = field(default_factory=list)
    untyped_rows: int = 0


def _read_source(spark, path: Path, fmt: str):
    """The file as a DataFrame with ``__rn``, its 1-based data row."""
    from pyspark.sql import functions as F

    if fmt == "parquet":
        df = spark.read.parquet(str(path))
        return df.select("*", (F.col("_metadata.row_index") + 1).alias("__rn"))
    # CSV: every value as text, quotes and escapes as DuckDB's read_csv; a malformed row
    # fails the load (DuckDB's strict_mode). One partition per file keeps the row order,
    # and zipWithIndex numbers the rows in file order.
    df = (spark.read.option("header", "true").option("sep", ",").option("quote", '"')
          .option("escape", '"').option("multiLine", "true").option("encoding", "UTF-8")
          .option("mode", "FAILFAST").option("inferSchema", "false").csv(str(path)))
    if df.rdd.getNumPartitions() == 1:  # multiLine: a file is never split
        return df.select("*", (F.monotonically_increasing_id() + 1).alias("__rn"))
    from pyspark.sql.types import LongType, StructField, StructType  # pragma: no cover

    schema = StructType(df.schema.fields + [StructField("__rn", LongType(), False)])
    rdd = df.rdd.zipWithIndex().map(lambda pair: (*pair[0], pair[1] + 1))
    return spark.createDataFrame(rdd, schema)


def _typing_sql(table: Table, by_norm: dict[str, tuple[str, str]], extras: list[str]) -> str:
    """The DuckDB SELECT typing one source (view ``__src``) into ``raw.<table>`` rows.

    The same pieces as ingest uses (``ingest.typing_columns``), framed for Spark:
    ``_untyped`` listing (column, original text) of values that did not type.
    """
    inner, outer, untyped = ingest_mod.typing_columns(table, by_norm, extras)
    return f"""
        select {', '.join(outer)}, $load_id as _load_id, _row_number, _extra, _u as _untyped
        from (
            select *, {untyped} as _u
            from (select {', '.join(inner)}, __rn as _row_number from __src)
        )
    """


def type_inputs(spark, store: Store, folders: Sequence[str | Path],
                progress: Progress | None = None) -> list[SparkLoad]:
    """Read extract folders into ``raw.<table>`` (Parquet), typed as ingest types them.

    Refuses the extract, as ingest does (same rule ids), for a missing table file or
    required column, an identifier-named column, or an NHS-number-shaped pseudonym. The
    same file given twice is loaded once (same load id).
    """
    tables = load_contract()
    plan: list[tuple[Table, Path, str]] = []
    for folder in folders:
        found, _ignored = ingest_mod.find_files(Path(folder).resolve(), tables)
        plan += [(tables[t], *found[t]) for t in tables if t in found]
    loads: list[SparkLoad] = []
    frames: dict[str, list] = {t: [] for t in tables}
    seen: set[str] = set()
    for i, (table, path, fmt) in enumerate(plan):
        if progress:
            progress(i, len(plan), f"type {table.name} ← {path.name}")
        sha = ingest_mod.sha256_of(path)
        load_id = f"{table.name}-{sha[:16]}"
        if load_id in seen:
            continue
        seen.add(load_id)
        src = _read_source(spark, path, fmt)
        columns = [(f.name, _duckdb_type_of(f.dataType)) for f in src.schema.fields if f.name != "__rn"]
        by_norm, extras = ingest_mod.check_header(table, path, fmt, columns)
        src.createOrReplaceTempView("__src")
        frames[table.name].append(_sql(spark, _typing_sql(table, by_norm, extras), {"load_id": load_id}))
        loads.append(SparkLoad(table.name, str(path), sha, fmt, load_id, extra_columns=extras))
    for name, table in tables.items():
        parts = frames[name]
        if parts:
            df = parts[0]
            for p in parts[1:]:
                df = df.unionByName(p, allowMissingColumns=True)
        else:  # pragma: no cover - find_files requires every table
            df = spark.createDataFrame([], _raw_schema(table))
        store.write("raw", name, df.select(*[f"`{c}`" for c in _raw_columns(table)]))
    counts = {r["_load_id"]: (r["n"], r["u"]) for r in _sql(spark, " union all ".join(
        f"select _load_id, count(*) as n, count(_untyped) as u from raw.{name} group by _load_id"
        for name in tables)).collect()}
    for load in loads:
        load.n_rows, load.untyped_rows = counts.get(load.load_id, (0, 0))
    _refuse_nhs_numbers(spark, tables, loads)
    return loads


def _raw_columns(table: Table) -> list[str]:
    return [*table.column_names, "_load_id", "_row_number", "_extra", "_untyped"]


def _raw_schema(table: Table) -> str:
    cols = [f"`{c.name}` {spark_type(c.duckdb_type)}" for c in table.columns]
    return ", ".join(cols + ["_load_id STRING", "_row_number BIGINT", "_extra MAP<STRING, STRING>",
                             "_untyped ARRAY<STRUCT<`column`: STRING, `value`: STRING>>"])


def _refuse_nhs_numbers(spark, tables: dict[str, Table], loads: list[SparkLoad]) -> None:
    """ingest's NHS-number refusal, all pseudonym columns in one query; the first hit in
    load order (table, column, row) is reported, as ingest reports it."""
    paths = {ld.load_id: ld.path for ld in loads}
    order = {ld.load_id: i for i, ld in enumerate(loads)}
    checks = [(t.name, c.name) for t in tables.values() for c in t.columns if c.pseudonym]
    if not checks:
        return
    hits = _sql(spark, " union all ".join(
        f"select * from (select _load_id, '{t}' as tbl, '{c}' as col, min(_row_number) as row "
        f"from raw.{t} where {ingest_mod.nhs_number_sql(_quote(c))} group by _load_id)"
        for t, c in checks)).collect()
    if hits:
        cols = {tc: i for i, tc in enumerate(checks)}
        hit = min(hits, key=lambda h: (order.get(h["_load_id"], 0), cols[(h["tbl"], h["col"])], h["row"]))
        raise OdevalError(
            "a value shaped like an NHS number (10 digits passing the Modulus 11 check): "
            "the extract is not pseudonymised and is refused whole",
            rule=f"{hit['tbl']}.{hit['col']}.nhs_number", file=paths.get(hit["_load_id"]),
            column=hit["col"], row=hit["row"])


# --------------------------------------------------------------------------- validate

@dataclass
class SparkValidation:
    extract_date: dt.date
    tables: dict[str, validate_mod.TableResult] = field(default_factory=dict)
    fatal: list[str] = field(default_factory=list)


def _extract_date(spark, settings: dict[str, Any]) -> dt.date:
    if settings.get("extract_date"):
        value = settings["extract_date"]
        return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
    # as pipeline.validate: the latest data_end_date not after today (no load date here)
    got = _sql(spark, "select max(data_end_date) as d from raw.people "
                      "where data_end_date <= current_date()").collect()[0][0]
    if got is None:
        raise OdevalError("raw.people is empty: nothing to validate", rule="validate.no_people")
    return got


def _rule_args(rule: validate_mod.Rule) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in rule.params().items()}


def validate_table(spark, store: Store, table: Table,
                   rules: list[validate_mod.Rule]) -> validate_mod.TableResult:
    """Run a table's rules (transpiled audits) and write its clean and quarantine tables."""
    failures = None
    for rule in rules:
        df = spark.sql(to_spark(rule.sql()), args=_rule_args(rule) or None)
        df = df.selectExpr("_load_id", "cast(_row_number as bigint) as _row_number",
                           "cast(rule as string) as rule")
        failures = df if failures is None else failures.unionByName(df)
    store.write("meta", f"failures_{table.name}", failures)
    f = view_name("meta", f"failures_{table.name}")
    r = view_name("raw", table.name)
    # quarantine: every rule a row broke, sorted and distinct (DuckDB:
    # list(distinct rule order by rule)); clean: the rows that broke none.
    raw_cols = ", ".join(f"r.`{c}`" for c in _raw_columns(table))
    store.write("quarantine", table.name, spark.sql(f"""
        select {raw_cols}, f._rules
        from {r} as r
        join (select _load_id, _row_number, array_sort(collect_set(rule)) as _rules
              from {f} group by _load_id, _row_number) as f
          using (_load_id, _row_number)
        order by r._load_id, r._row_number
    """))
    clean_select = to_spark(f"select {validate_mod._clean_select(table)} from raw.{table.name} as r")
    store.write("clean", table.name, spark.sql(f"""
        select * from ({clean_select}) as r
        where not exists (select 1 from {f} as f
                          where f._load_id = r._load_id and f._row_number = r._row_number)
        order by _load_id, _row_number
    """))
    counts = {row[0]: row[1] for row in spark.sql(
        f"select rule, count(distinct _load_id, _row_number) from {f} group by rule order by rule"
    ).collect()}
    per_load = _check_invariant(spark, table.name)
    return validate_mod.TableResult(table.name, sum(n[0] for n in per_load.values()),
                                    sum(n[1] for n in per_load.values()),
                                    sum(n[2] for n in per_load.values()), counts)


def _check_invariant(spark, table: str) -> dict[str, tuple[int, int, int]]:
    """raw = clean + quarantined for every load of a table, and no row in both.

    Returns ``{load_id: (n_raw, n_clean, n_quarantined)}``.
    """
    raw, clean, quar = (view_name(s, table) for s in ("raw", "clean", "quarantine"))
    got = spark.sql(f"""
        select _load_id, sum(raw) as n_raw, sum(clean) as n_clean, sum(quar) as n_q,
               (select count(*) from {clean} join {quar} using (_load_id, _row_number)) as both
        from (
            select _load_id, 1 as raw, 0 as clean, 0 as quar from {raw}
            union all select _load_id, 0, 1, 0 from {clean}
            union all select _load_id, 0, 0, 1 from {quar}
        ) group by _load_id order by _load_id
    """).collect()
    if got and got[0]["both"]:
        raise AssertionError(f"{table}: {got[0]['both']} rows are both clean and quarantined")
    broken = [g for g in got if g["n_raw"] != g["n_clean"] + g["n_q"]]
    if broken:
        raise AssertionError(f"rows lost or duplicated by validation: {table} {broken}")
    return {g["_load_id"]: (g["n_raw"], g["n_clean"], g["n_q"]) for g in got}


def validate(spark, store: Store, params: dict[str, Any] | None = None,
             progress: Progress | None = None) -> SparkValidation:
    """Every raw row into clean or quarantine, by the rules of :func:`pipeline.validate.table_rules`.

    Raises OdevalError when a table's quarantined share passes its threshold (as
    :func:`pipeline.validate.validate`); the output folder is then not replaced.
    """
    settings = validate_mod._settings(params)
    tables = load_contract()
    report = SparkValidation(extract_date=_extract_date(spark, settings))
    for i, table in enumerate(tables.values()):
        if progress:
            progress(i, len(tables), f"validate {table.name}")
        rules = validate_mod.table_rules(table, tables, settings, report.extract_date)
        report.tables[table.name] = validate_table(spark, store, table, rules)
    for name, res in report.tables.items():
        limit = validate_mod._threshold(settings, name)
        if res.quarantined_share > limit:
            report.fatal.append(validate_mod.quarantine_message(
                name, f"{res.n_quarantined:,}", f"{res.n_raw:,}", f"{res.quarantined_share:.1%}",
                limit))
    if report.fatal:
        raise OdevalError("; ".join(report.fatal) + " (params.yaml validate.max_quarantine_share)",
                          rule="validate.quarantine_share")
    return report


# --------------------------------------------------------------------------- derive

def derive(spark, store: Store, params: dict[str, Any] | None = None,
           progress: Progress | None = None) -> dict[str, Any]:
    """The derived relations from the clean tables, as :func:`pipeline.derive.derive`."""
    from pyspark.sql import functions as F

    p = derive_mod.resolve_params(params)
    refs = derive_mod.reference_relations(p)
    relations = derive_mod.load_relations()
    absent = [n for n in derive_mod.OUTPUTS if n not in relations]
    if absent:
        raise OdevalError(f"derive SQL files missing for {absent}", rule="derive.sql.missing")
    bind = derive_mod.bind_parameters(p)
    total = len(relations) + len(refs)
    for i, (name, (columns, rows)) in enumerate(refs.items(), start=1):
        ddl = ", ".join(f"{c} {spark_type(t)}" for c, t in columns.items())
        ref = spark.createDataFrame([tuple(r[c] for c in columns) for r in rows], ddl)
        store.write("derived", name, ref.coalesce(1))
        if progress:
            progress(i, total, name)
    for i, (name, sql) in enumerate(relations.items(), start=len(refs) + 1):
        used = {n: bind[n] for n in derive_mod.sql_parameters(sql)}
        missing = [n for n in derive_mod.sql_parameters(sql) if n not in bind]
        if missing:
            raise OdevalError(f"{name}.sql uses unknown parameters {missing}",
                              rule="derive.sql.parameter")
        store.write("derived", name, spark.sql(to_spark(sql.strip().rstrip(";")), args=used or None))
        if progress:
            progress(i, total, name)
    rows = {name: store.count("derived", name) for name in [*refs, *relations]}
    unknown = [{"drug": r["drug"], "n_prescriptions": r["n_prescriptions"], "n_people": r["n_people"]}
               for r in spark.table(view_name("derived", "unknown_drugs")).orderBy(F.col("drug")).collect()]
    return {"rows": rows, "unknown_drugs": unknown, "params": p}


# --------------------------------------------------------------------------- run

def run(spark, folders: Sequence[str | Path], out: str | Path, params: dict[str, Any] | None = None,
        progress: Progress | None = None) -> dict[str, Any]:
    """Type, validate and derive on Spark; replace ``out`` only when all succeeded.

    ``params`` is the whole params.yaml mapping (sections ``validate`` and ``derive``).
    Returns a summary (loads, per-table validation counts, derived row counts, seconds per
    stage), also written to ``<out>/meta/summary.json``.
    """
    params = params or {}
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    store = Store(spark, partial)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    loads = type_inputs(spark, store, folders, progress)
    seconds["ingest"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = validate(spark, store, params.get("validate") or {}, progress)
    seconds["validate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    derived = derive(spark, store, params.get("derive") or {}, progress)
    seconds["derive"] = time.perf_counter() - t0
    summary = {
        "engine": "spark",
        "spark_version": spark.version,
        "loads": [vars(ld) for ld in loads],
        "extract_date": report.extract_date.isoformat(),
        "validate": {n: {"n_raw": r.n_raw, "n_clean": r.n_clean, "n_quarantined": r.n_quarantined,
                         "rule_counts": r.rule_counts} for n, r in report.tables.items()},
        "derive": {"rows": derived["rows"], "unknown_drugs": derived["unknown_drugs"]},
        "seconds": seconds,
    }
    (partial / "meta").mkdir(parents=True, exist_ok=True)
    (partial / "meta" / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    # the views now point into the renamed folder: re-point them
    final = Store(spark, out)
    for schema, names in (("raw", load_contract()), ("clean", load_contract()),
                          ("quarantine", load_contract()), ("derived", derived["rows"])):
        for name in names:
            final.register(schema, name)
    return summary
