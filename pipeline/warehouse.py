"""The DuckDB warehouse: opening it, its schemas and its bookkeeping tables.

Schemas: ``raw`` (typed inputs with lineage), ``clean`` and ``quarantine`` (validation),
``derived`` (analysis datasets), ``results`` (metrics and analyses) and ``meta`` (loads,
runs, parameters, versions).
"""

from __future__ import annotations

import contextlib
import errno
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


def quote_ident(name: str) -> str:
    """``name`` as a DuckDB identifier in double quotes (an inner quote doubled)."""
    return '"' + name.replace('"', '""') + '"'


def release_cache(con: duckdb.DuckDBPyConnection, memory_limit: str | None) -> None:
    """Let DuckDB drop the blocks it keeps cached (up to its ``memory_limit``) by lowering
    the limit for a moment, then set ``memory_limit`` again (None: DuckDB's default). For
    the stages whose memory is pandas and numpy's (and a forked worker's, which would
    inherit the cache): ``odeval run`` after derive (the national analyses' main-process
    peak 3.34 -> 3.06 GB), and analyse once it has read the person frame (its base at
    national size 2.17 -> 1.46 GB). Temporary tables are written out, not lost. Best
    effort: memory DuckDB cannot free (a national run's, after derive) refuses a low limit,
    and then a higher one is tried; the limit is set again in any case."""
    for low in ("1MB", "256MB", "1GB"):
        try:
            con.execute(f"set memory_limit = '{low}'")
            break
        except duckdb.OutOfMemoryException:
            continue
    if memory_limit:
        con.execute(f"set memory_limit = '{_safe_size(memory_limit)}'")
    else:
        con.execute("reset memory_limit")


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
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            why = "a file is in the way (not a folder)" if isinstance(
                exc, (FileExistsError, NotADirectoryError)) else exc.strerror
            raise OdevalError(f"cannot create the warehouse's folder {exc.filename}: {why}",
                              rule="warehouse.open", file=path) from None
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise _in_use(str(exc), path) from None
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


def _in_use(text: str, path: Path) -> WarehouseInUse:
    """DuckDB's lock error as a message saying who holds the warehouse and what to do."""
    m = re.search(r"held in (.+?) \(PID (\d+)\)", text)
    who = f"another process (PID {m.group(2)}, {Path(m.group(1)).name})" if m else "another process"
    if "read-only mode" in text:  # DuckDB adds this hint when the holder only reads
        return WarehouseInUse(
            f"warehouse in use: {who} has it open read-only (a notebook, or `odeval report`?); "
            "a command that writes must wait until it is closed (read-only commands can share it)",
            rule="warehouse.in_use", file=path)
    return WarehouseInUse(
        f"warehouse in use: {who} has it open for writing (another odeval run?); wait for it to "
        "finish (read-only commands can open it once it has)", rule="warehouse.in_use", file=path)


def _safe_size(value: str) -> str:
    """A memory size such as '3GB' (checked: it is pasted into a SET statement)."""
    v = str(value).strip()
    if not re.fullmatch(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", v, flags=re.I):
        raise OdevalError(f"memory_limit {value!r} is not a size like '3GB'",
                          rule="params.memory_limit")
    return v


def disk_full_error(exc: BaseException) -> OdevalError | None:
    """The error to show for a DuckDB write that failed on a full disk, else None.

    DuckDB reports it as an IO error while writing, or as a failed commit when the
    write-ahead log cannot grow; either way the transaction is rolled back.
    """
    text = str(exc)
    if not isinstance(exc, duckdb.Error) or not (
            "No space left on device" in text or f"errno {errno.ENOSPC}" in text.lower()):
        return None
    m = re.search(r'file "([^"]+)"', text)
    return OdevalError(
        "the disk is full (No space left on device) while writing the warehouse: nothing was "
        "written and the warehouse is as it was; free some space (DuckDB also needs room for "
        "its write-ahead log and temporary files) and run again",
        rule="warehouse.disk_full", file=m.group(1) if m else None)


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All or nothing: commit on success, roll back on any exception.

    A full disk (while writing or at commit) becomes an :class:`OdevalError` with rule
    ``warehouse.disk_full``.
    """
    con.execute("begin transaction")
    try:
        yield con
    except BaseException as exc:
        try:
            con.execute("rollback")
        except duckdb.Error:
            pass  # a failed commit or a dead connection has no transaction left: say why it failed
        full = disk_full_error(exc)
        if full is not None:
            raise full from None
        raise
    else:
        try:
            con.execute("commit")
        except duckdb.Error as exc:
            full = disk_full_error(exc)
            if full is not None:
                raise full from None
            raise


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [schema, table]).fetchone()[0])


BACKENDS = ("pandas", "polars", "arrow")


def read_table(
    con: duckdb.DuckDBPyConnection,
    name: str,
    *,
    columns: list[str] | None = None,
    backend: str = "pandas",
):
    """One warehouse table as a data frame, rows in the order of its key.

    Parameters
    ----------
    con : DuckDB connection (e.g. ``connect(path, read_only=True)``)
    name : str
        ``schema.table``; a bare name is a table of ``derived`` (``"people"``).
    columns : list of str, optional
        Only these columns (all by default).
    backend : {"pandas", "polars", "arrow"}
        ``"polars"`` gives a ``polars.DataFrame`` straight from DuckDB's Arrow result
        (``relation.pl()``), never through pandas; ``"arrow"`` a ``pyarrow.Table``.

    Rows of a derived table are sorted by the key its SQL header states
    (:func:`pipeline.derive.relation_headers`), so two reads give the same frame. An
    unknown table or column is refused in one line naming what exists.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    schema, _, table = name.rpartition(".")
    schema = schema or "derived"
    if not table_exists(con, schema, table):
        have = [r[0] for r in con.execute(
            "select table_name from information_schema.tables where table_schema = ? "
            "order by table_name", [schema]).fetchall()]
        raise OdevalError(f"no table {schema}.{table} in the warehouse; {schema} holds: "
                          f"{', '.join(have) or 'nothing (run the stage that builds it)'}",
                          rule="warehouse.table")
    have_cols = [r[0] for r in con.execute(
        "select column_name from information_schema.columns where table_schema = ? and "
        "table_name = ? order by ordinal_position", [schema, table]).fetchall()]
    wanted = list(columns) if columns is not None else have_cols
    unknown = [c for c in wanted if c not in have_cols]
    if unknown:
        raise OdevalError(f"{schema}.{table} has no column(s) {', '.join(unknown)}; it has: "
                          f"{', '.join(have_cols)}", rule="warehouse.column")
    key: list[str] = []
    if schema == "derived":
        from pipeline.derive import relation_headers

        key = [k for k in relation_headers().get(table, {}).get("key", []) if k in have_cols]

    quoted = quote_ident
    order = f" order by {', '.join(quoted(k) for k in key)}" if key else ""
    rel = con.sql(f"select {', '.join(quoted(c) for c in wanted)} from "
                  f"{quoted(schema)}.{quoted(table)}{order}")
    if backend == "polars":
        return rel.pl()
    if backend == "arrow":
        return rel.to_arrow_table()
    return rel.df()
