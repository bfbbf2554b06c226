"""Stage 1, ingest: extract folders (CSV or Parquet) into ``raw.<table>``, typed, with lineage.

Each input file of a contract table becomes one *load* (``meta.loads``) whose id is the
table name and the file's sha256, so ingesting the same content again changes nothing.
Every row keeps its lineage: ``_load_id`` (which names the file and its sha256 in
``meta.loads``) and ``_row_number`` (1-based data row, header excluded). Values are typed
by DuckDB from ``schemas/``; a value that cannot be typed is not dropped: the typed column
is NULL and ``_untyped`` keeps the column name and the original text, so that validation
quarantines the row. Columns not in the contract are kept in ``_extra`` and reported.

A whole ``ingest`` call is one transaction: a missing required column, an unreadable file,
a column named like a real identifier, or a pseudonym shaped like an NHS number stops it,
and the warehouse is left exactly as it was.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from pipeline.errors import OdevalError
from pipeline.schemas import Column, Table, forbidden_columns, load_contract, normalise_column_name
from pipeline.warehouse import table_exists, transaction

FORMATS = ("csv", "parquet")

#: The lineage and bookkeeping columns every raw table carries after the contract columns.
LINEAGE_DDL = (
    ("_load_id", "VARCHAR"),
    ("_row_number", "BIGINT"),
    ("_extra", "MAP(VARCHAR, VARCHAR)"),
    ("_untyped", 'STRUCT("column" VARCHAR, "value" VARCHAR)[]'),
)


@dataclass
class FileLoad:
    """What happened to one input file."""

    table: str
    path: Path
    sha256: str
    format: str
    load_id: str
    status: str  # "loaded" or "unchanged"
    n_rows: int = 0
    extra_columns: list[str] = field(default_factory=list)
    untyped_rows: int = 0


@dataclass
class IngestReport:
    """Files loaded or skipped, and files in the folders that are not contract tables."""

    loads: list[FileLoad] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)

    @property
    def n_loaded(self) -> int:
        return sum(1 for f in self.loads if f.status == "loaded")


# --------------------------------------------------------------------------- identifiers

def nhs_number_sql(expr: str) -> str:
    """SQL boolean: ``expr`` is shaped like an NHS number (10 digits, valid Modulus 11).

    Spaces and hyphens are ignored (NHS numbers are often written 3-3-4). The check digit
    is ``11 - (sum of the first nine digits weighted 10..2) mod 11``, 11 read as 0, and a
    result of 10 is never valid (NHS Data Dictionary, NHS Number).
    """
    s = f"regexp_replace({expr}, '[ -]', '', 'g')"
    weighted = " + ".join(f"cast(substr({s}, {i}, 1) as integer) * {11 - i}" for i in range(1, 10))
    check = f"(11 - (({weighted}) % 11))"
    # CASE, not AND: DuckDB does not short-circuit AND, and the digit casts must only see digits
    return (
        f"(case when regexp_full_match(coalesce({s}, ''), '[0-9]{{10}}') then "
        f"(case when {check} = 11 then 0 else {check} end) = cast(substr({s}, 10, 1) as integer) "
        f"else false end)"
    )


# --------------------------------------------------------------------------- typing

_INT_RE = "[+-]?[0-9]+"
_FLOAT_RE = r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?"
_DATE_RE = "[0-9]{4}-[0-9]{2}-[0-9]{2}"
_TS_RE = "[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2})?"
_TRUE = "('true', '1', 'yes')"
_FALSE = "('false', '0', 'no')"


def _typed_from_text(col: Column, v: str) -> str:
    """SQL typing a trimmed, empty-as-NULL text expression ``v`` to the column's type."""
    t = col.type
    if t == "text":
        return v
    if t == "int":
        return f"case when regexp_full_match({v}, '{_INT_RE}') then try_cast({v} as bigint) end"
    if t == "float":
        return (f"case when regexp_full_match({v}, '{_FLOAT_RE}') "
                f"then try_cast({v} as double) end")
    if t == "bool":
        return (f"case when lower({v}) in {_TRUE} then true "
                f"when lower({v}) in {_FALSE} then false end")
    if t == "date":
        return (f"case when regexp_full_match({v}, '{_DATE_RE}') "
                f"then cast(try_strptime({v}, '%Y-%m-%d') as date) end")
    if t == "timestamp":
        return (f"case when regexp_full_match({v}, '{_TS_RE}') then "
                f"try_strptime(replace({v}, ' ', 'T'), ['%Y-%m-%dT%H:%M:%S', '%Y-%m-%dT%H:%M']) end")
    raise AssertionError(t)


def _typed_from_native(col: Column, src: str, src_type: str) -> str:
    """SQL typing a column that the file already typed (Parquet)."""
    if col.type == "text":
        return f"nullif(trim(cast({src} as varchar)), '')"
    if col.type == "int" and (src_type in ("FLOAT", "DOUBLE") or src_type.startswith("DECIMAL")):
        return f"case when {src} = floor({src}) then try_cast({src} as bigint) end"
    if col.type == "float":
        return f"case when isfinite(try_cast({src} as double)) then try_cast({src} as double) end"
    return f"try_cast({src} as {col.duckdb_type})"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --------------------------------------------------------------------------- files

def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _reader(path: Path, fmt: str) -> str:
    """The table function reading one input file; the path is bound as ``$path``."""
    if fmt == "csv":
        return ("read_csv($path, header = true, delim = ',', quote = '\"', escape = '\"', "
                "all_varchar = true, encoding = 'utf-8', strict_mode = true)")
    return "read_parquet($path)"


def find_files(folder: Path, tables: dict[str, Table]) -> tuple[dict[str, tuple[Path, str]], list[Path]]:
    """The contract tables' files in an extract folder, and the other files there."""
    if not folder.is_dir():
        raise OdevalError("not a folder", rule="ingest.folder", file=folder)
    found: dict[str, tuple[Path, str]] = {}
    ignored: list[Path] = []
    for p in sorted(folder.iterdir()):
        stem, _, ext = p.name.partition(".")
        if p.is_file() and stem in tables and ext in FORMATS:
            if stem in found:
                raise OdevalError(f"table {stem} is given twice ({found[stem][0].name} and {p.name}); "
                                  "keep one", rule="ingest.table_twice", file=p)
            found[stem] = (p, ext)
        else:
            ignored.append(p)
    missing = [t for t in tables if t not in found]
    if missing:
        raise OdevalError(
            f"missing {', '.join(f'{t}.csv' for t in missing)} (or .parquet): every contract table "
            "needs a file, a header-only file for a table with no rows",
            rule="ingest.table_missing", file=folder)
    return found, ignored


def _describe(con: duckdb.DuckDBPyConnection, path: Path, fmt: str) -> list[tuple[str, str]]:
    try:
        rows = con.execute(f"describe select * from {_reader(path, fmt)}", {"path": str(path)}).fetchall()
    except _FILE_ERRORS as exc:
        raise OdevalError(f"cannot read the file as {fmt}: {_first_line(exc)}",
                          rule="ingest.unreadable", file=path) from None
    return [(r[0], r[1]) for r in rows]


#: Errors that mean the file cannot be read; anything else (binder, parser) is our bug and
#: is raised as it is.
_FILE_ERRORS = (duckdb.IOException, duckdb.InvalidInputException, duckdb.ConversionException)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def create_raw_table(con: duckdb.DuckDBPyConnection, table: Table) -> None:
    cols = [f"{_quote(c.name)} {c.duckdb_type}" for c in table.columns]
    cols += [f"{n} {t}" for n, t in LINEAGE_DDL]
    con.execute(f"create table if not exists raw.{table.name} ({', '.join(cols)})")


def _load_file(con: duckdb.DuckDBPyConnection, table: Table, path: Path, fmt: str,
               sha: str, load_id: str) -> FileLoad:
    columns = _describe(con, path, fmt)
    by_norm: dict[str, tuple[str, str]] = {}
    for name, ctype in columns:
        norm = normalise_column_name(name)
        if norm in by_norm:
            raise OdevalError(f"two columns mean the same thing ({by_norm[norm][0]!r} and {name!r})",
                              rule="ingest.duplicate_column", file=path, column=name)
        by_norm[norm] = (name, ctype)
    forbidden = forbidden_columns()
    for norm, (name, _) in by_norm.items():
        if norm in forbidden:
            raise OdevalError(
                "a column named like a real identifier: the extract must be pseudonymised, "
                "so it is refused whole", rule="identifier.forbidden_column", file=path, column=name)
    for c in table.columns:
        if c.required and c.name not in by_norm:
            raise OdevalError(f"required column {c.name!r} of table {table.name} is missing",
                              rule=f"{table.name}.{c.name}.required_column", file=path, column=c.name)
    extras = sorted(n for n in by_norm if n not in table.column_names)

    inner, outer, failures = [], [], []
    for c in table.columns:
        if c.name not in by_norm:
            outer.append(f"cast(null as {c.duckdb_type}) as {_quote(c.name)}")
            continue
        src_name, src_type = by_norm[c.name]
        src = _quote(src_name)
        if src_type == "VARCHAR":
            v = f"nullif(trim({src}), '')"
            typed = _typed_from_text(c, v)
            text = v
        else:
            typed = _typed_from_native(c, src, src_type)
            text = f"cast({src} as varchar)"
        inner.append(f"{typed} as {_quote(c.name)}")
        outer.append(_quote(c.name))
        if c.type != "text":
            inner.append(f"{text} as {_quote('__src_' + c.name)}")
            failures.append(
                f"case when {_quote('__src_' + c.name)} is not null and {_quote(c.name)} is null "
                f"then {{'column': '{c.name}', 'value': {_quote('__src_' + c.name)}}} end")
    if extras:
        keys = ", ".join(f"'{n}'" for n in extras)
        vals = ", ".join(f"cast({_quote(by_norm[n][0])} as varchar)" for n in extras)
        inner.append(f"map([{keys}], [{vals}]) as _extra")
    else:
        inner.append("cast(null as map(varchar, varchar)) as _extra")
    # Parquet numbers its rows; for CSV a streaming row_number() over the ordered scan does
    # (preserve_insertion_order is on): both give the 1-based data row, header excluded.
    source = ("read_parquet($path, file_row_number = true)" if fmt == "parquet"
              else f"(select *, row_number() over () as __rn from {_reader(path, fmt)})")
    rn = "file_row_number + 1" if fmt == "parquet" else "__rn"
    untyped = (f"list_filter([{', '.join(failures)}], lambda x: x is not null)" if failures
               else "cast([] as struct(\"column\" varchar, \"value\" varchar)[])")
    sql = f"""
        insert into raw.{table.name}
        select {', '.join(outer)}, $load_id, _row_number, _extra,
               case when len(_u) = 0 then null else _u end
        from (
            select *, {untyped} as _u
            from (select {', '.join(inner)}, {rn} as _row_number from {source})
        )
    """
    try:
        con.execute(sql, {"path": str(path), "load_id": load_id})
    except _FILE_ERRORS as exc:
        raise OdevalError(f"cannot read the file as {fmt}: {_first_line(exc)}",
                          rule="ingest.unreadable", file=path) from None
    n_rows, n_untyped = con.execute(
        f"select count(*), count(_untyped) from raw.{table.name} where _load_id = $l", {"l": load_id}
    ).fetchone()
    for c in table.columns:
        if c.pseudonym and c.name in by_norm:
            hit = con.execute(
                f"select _row_number from raw.{table.name} where _load_id = $l and "
                f"{nhs_number_sql(_quote(c.name))} order by _row_number limit 1", {"l": load_id}
            ).fetchone()
            if hit:
                raise OdevalError(
                    "a value shaped like an NHS number (10 digits passing the Modulus 11 check): "
                    "the extract is not pseudonymised and is refused whole",
                    rule=f"{table.name}.{c.name}.nhs_number", file=path, column=c.name, row=hit[0])
    con.execute(
        "insert into meta.loads values ($load_id, $table, $file, $sha, $fmt, $n, $extra, "
        "cast(current_timestamp as timestamp))",
        {"load_id": load_id, "table": table.name, "file": str(path), "sha": sha, "fmt": fmt,
         "n": n_rows, "extra": extras})
    return FileLoad(table=table.name, path=path, sha256=sha, format=fmt, load_id=load_id,
                    status="loaded", n_rows=n_rows, extra_columns=extras, untyped_rows=n_untyped)


def ingest(
    con: duckdb.DuckDBPyConnection,
    folders: Sequence[str | Path],
    *,
    progress: Callable[[int, int, str], None] | None = None,
    replace: bool = False,
) -> IngestReport:
    """Load extract folders into ``raw.<table>``, all or nothing.

    Parameters
    ----------
    con : an open, writable warehouse connection (:func:`pipeline.warehouse.connect`).
    folders : extract folders, each with one ``<table>.csv`` or ``<table>.parquet`` per
        contract table.
    progress : optional callback ``progress(done, total, description)`` per file.
    replace : drop every earlier load first, so the warehouse holds exactly these folders
        (in the same transaction: a failure keeps the earlier loads).

    Returns
    -------
    IngestReport : per file, loaded or unchanged (same content already loaded), with row
        counts, extra columns kept and rows with untypable values; and the files ignored.

    Raises
    ------
    OdevalError : naming file, column, row and rule; nothing was written.
    """
    tables = load_contract()
    plan: list[tuple[Table, Path, str]] = []
    report = IngestReport()
    for folder in folders:
        found, ignored = find_files(Path(folder).resolve(), tables)
        report.ignored += ignored
        plan += [(tables[t], *found[t]) for t in tables if t in found]
    with transaction(con):
        for t in tables.values():
            if replace:
                con.execute(f"drop table if exists raw.{t.name}")
            if not table_exists(con, "raw", t.name):
                create_raw_table(con, t)
        if replace:
            con.execute("delete from meta.loads")
        for i, (table, path, fmt) in enumerate(plan):
            if progress:
                progress(i, len(plan), f"{table.name} ← {path.name}")
            sha = sha256_of(path)
            load_id = f"{table.name}-{sha[:16]}"
            seen = con.execute("select n_rows from meta.loads where load_id = $l",
                               {"l": load_id}).fetchone()
            if seen:
                report.loads.append(FileLoad(table=table.name, path=path, sha256=sha, format=fmt,
                                             load_id=load_id, status="unchanged", n_rows=seen[0]))
                continue
            report.loads.append(_load_file(con, table, path, fmt, sha, load_id))
        if progress:
            progress(len(plan), len(plan), "done")
    return report
