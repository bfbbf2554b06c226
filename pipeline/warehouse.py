"""The DuckDB warehouse: opening it, its schemas and its bookkeeping tables.

Schemas: ``raw`` (typed inputs with lineage), ``clean`` and ``quarantine`` (validation),
``derived`` (analysis datasets), ``results`` (metrics and analyses) and ``meta`` (loads,
runs, parameters, versions).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import duckdb

from pipeline.errors import OdevalError, WarehouseInUse

SCHEMAS = ("raw", "clean", "quarantine", "derived", "results", "meta")

_META_DDL = """
create table if not exists meta.loads (
    load_id     varchar primary key,  -- '<table>-<first 16 hex of sha256>'
    table_name  varchar not null,
    source_file varchar not null,     -- path as given on the command line, resolved
    sha256      varchar not null,
    format      varchar not null,     -- csv | parquet
    n_rows      bigint  not null,
    extra_columns varchar[],          -- input columns not in the contract (kept in _extra)
    loaded_at   timestamp not null
);
"""


def connect(
    path: str | Path,
    *,
    read_only: bool = False,
    threads: int | None = None,
    memory_limit: str | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open the warehouse file, creating it (and its schemas) when writable.

    Raises :class:`WarehouseInUse` when another process holds it open for writing.
    """
    path = Path(path)
    if read_only and not path.exists():
        raise OdevalError(f"no warehouse at {path}; run `odeval ingest` first",
                          rule="warehouse.missing", file=path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise WarehouseInUse(
                "warehouse in use: another odeval process has it open for writing; "
                "wait for it to finish (read-only commands can run once it has)",
                rule="warehouse.in_use", file=path) from None
        raise OdevalError(f"cannot open the warehouse: {exc}", rule="warehouse.open",
                          file=path) from None
    if threads:
        con.execute(f"set threads = {int(threads)}")
    if memory_limit:
        con.execute(f"set memory_limit = '{_safe_size(memory_limit)}'")
    con.execute("set preserve_insertion_order = true")
    if not read_only:
        for s in SCHEMAS:
            con.execute(f"create schema if not exists {s}")
        con.execute(_META_DDL)
    return con


def _safe_size(value: str) -> str:
    """A memory size such as '3GB' (checked: it is pasted into a SET statement)."""
    v = str(value).strip()
    if not re.fullmatch(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", v, flags=re.I):
        raise OdevalError(f"memory_limit {value!r} is not a size like '3GB'",
                          rule="params.memory_limit")
    return v


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All or nothing: commit on success, roll back on any exception."""
    con.execute("begin transaction")
    try:
        yield con
    except BaseException:
        con.execute("rollback")
        raise
    else:
        con.execute("commit")


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [schema, table]).fetchone()[0])
