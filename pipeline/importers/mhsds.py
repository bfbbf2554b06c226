"""Stage 0, ``odeval import mhsds``: an NHS trust's MHSDS tables -> a contract extract.

Reads the Mental Health Services Data Set tables as delivered (CSV, pipe-delimited text
or Parquet; several files per table allowed, e.g. one per MHSDS version or year; header
names as in the v4.1/v5/v6 specifications, any case), keeps the latest version of each
record, maps the coded values through the code lists of ``pipeline/reference/mhsds/``
(plus the user's local mapping files), joins the trial's allocation list, and writes a
contract extract (one file per contract table) that ``odeval ingest`` loads as usual.

Every input file is read by :mod:`pipeline.ingest`'s own loader into a scratch DuckDB
database, so the same checks apply as to a contract extract: unreadable files, headers,
identifier-named columns, NHS-number-shaped pseudonyms and identifier-shaped values in
any other column. The import adds its own refusals: a missing required table or column
(rule ``mhsds.table_missing``, ``<table>.<column>.required_column``), a value that does
not type (``mhsds.<table>.<column>.type``), a validity flag that is not Y/N. On any of
them nothing is written. Deduplication and mapping are SQL (``pipeline/sql/import_mhsds/``)
run in DuckDB, so a national extract does not pass through Python.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from pipeline import __version__
from pipeline import ingest as ingest_mod
from pipeline.config import SQL_DIR
from pipeline.errors import OdevalError, existing_folder
from pipeline.importers.mhsds_spec import (REFERENCE_DIR, CodeList, SourceTable, load_code_lists,
                                           load_spec)
from pipeline.schemas import load_contract
from pipeline.warehouse import table_exists

SQL = SQL_DIR / "import_mhsds"
FORMATS = ("parquet", "csv")
#: file name endings read, and the reader each takes (.txt: pipe- or comma-delimited text)
_EXTENSIONS = {".csv": "csv", ".txt": "csv", ".parquet": "parquet"}
#: contract tables MHSDS does not hold, taken from the --local folder in contract format
LOCAL_TABLES = ("staff", "prescriptions")
#: the order the contract tables are built in (contacts before contact_staff)
OUTPUTS = ("people", "referrals", "crisis_episodes", "contacts", "contact_staff", "admissions",
           "detentions", "employment")
MANIFEST = "import_manifest.json"
#: SQL twin of :func:`pipeline.importers.mhsds_spec.code_key` (tested to agree)
CODE_KEY_MACRO = (
    "create or replace macro code_key(c) as "
    "case when regexp_full_match(trim(cast(c as varchar)), '[0-9]+') "
    "then coalesce(nullif(ltrim(trim(cast(c as varchar)), '0'), ''), '0') "
    "else upper(trim(cast(c as varchar))) end")


@dataclass
class SourceFile:
    """One input file read."""

    table: str
    path: Path
    format: str
    delimiter: str
    sha256: str
    load_id: str
    n_rows: int = 0
    status: str = "read"          # read | same content as another file (skipped)


@dataclass
class ImportResult:
    """What an import read and wrote; ``facts`` holds the exact counts of the report."""

    out: Path
    files: list[SourceFile] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    report_files: list[Path] = field(default_factory=list)
    #: what the extract will meet in validate, for the console (not the published report)
    warnings: list[str] = field(default_factory=list)

    @property
    def rows_written(self) -> dict[str, int]:
        return self.facts.get("contract", {})


# --------------------------------------------------------------------------- inputs

def discover(folder: Path, tables: dict[str, SourceTable]) -> tuple[dict[str, list[tuple[Path, str]]], list[Path]]:
    """The MHSDS files of each table in ``folder`` and the other files there.

    A file belongs to a table when its name starts with the table's name (any case),
    alone or followed by ``_``, ``-``, ``.`` or a space and anything (``MHS201CareContact_v5.txt``),
    and ends in .csv, .txt or .parquet.
    """
    existing_folder(folder, rule="mhsds.folder", what="folder of MHSDS tables")
    by_lower = {t.lower(): t for t in tables}
    found: dict[str, list[tuple[Path, str]]] = {t: [] for t in tables}
    ignored: list[Path] = []
    for p in sorted(folder.iterdir(), key=lambda q: q.name):
        ext = p.suffix.lower()
        m = re.match(r"(MHS\d{3}[A-Za-z]+)(?:[_\-. ].*)?$", p.name[: -len(p.suffix)] if p.suffix else p.name,
                     flags=re.IGNORECASE)
        table = by_lower.get(m.group(1).lower()) if m else None
        if p.is_file() and table and ext in _EXTENSIONS:
            found[table].append((p, _EXTENSIONS[ext]))
        else:
            ignored.append(p)
    missing = [t for t, spec in tables.items() if spec.required and not found[t]]
    if missing:
        raise OdevalError(
            f"missing MHSDS table(s) {', '.join(missing)}: each needs at least one file named "
            f"<table>[_anything].csv, .txt or .parquet (e.g. {missing[0]}.csv)",
            rule="mhsds.table_missing", file=folder)
    return found, ignored


def sniff_delimiter(path: Path) -> str:
    """Comma or pipe: whichever splits the header line into more columns (MHSDS extracts
    come as CSV or as pipe-delimited text). Everything else about the file is checked by
    ingest's reader."""
    with open(path, "rb") as f:
        head = f.read(ingest_mod.MAX_LINE_BYTES)
    line = re.split(rb"[\r\n]", head, maxsplit=1)[0]
    return "|" if line.count(b"|") > line.count(b",") else ","


def _shown_column(stable: SourceTable, raw: str) -> str:
    for c in stable.columns.values():
        if raw in c.raw_names:
            return c.names[c.raw_names.index(raw)]
    return raw


def _load(con: duckdb.DuckDBPyConnection, stable: SourceTable, path: Path, fmt: str,
          loaded: dict[str, SourceFile]) -> SourceFile:
    """One file into ``raw.<table>`` with ingest's loader and checks, then the import's."""
    table = stable.ingest_table()
    delim = sniff_delimiter(path) if fmt == "csv" else ""
    scan = ingest_mod._LineScan() if fmt == "csv" else None
    try:
        sha = ingest_mod.sha256_of(path, scan)
    except OSError as exc:
        raise OdevalError(f"cannot read the file: {exc.strerror}", rule="ingest.unreadable",
                          file=path) from None
    load_id = f"{table.name}-{sha[:16]}"
    sf = SourceFile(stable.name, path, fmt, delim, sha, load_id)
    if load_id in loaded:
        sf.status = f"same content as {loaded[load_id].path.name} (not read twice)"
        return sf
    columns = ingest_mod._describe(con, path, fmt, delim or ",")
    try:
        by_norm, _ = ingest_mod.check_header(table, path, fmt, columns)
    except OdevalError as exc:
        if exc.rule.endswith(".required_column") and exc.column:
            shown = _shown_column(stable, exc.column)
            raise OdevalError(f"required column {shown!r} of MHSDS table {stable.name} is missing",
                              rule=f"{stable.name}.{shown}.required_column", file=path,
                              column=shown) from None
        raise
    for c in stable.columns.values():
        if c.required and len(c.names) > 1 and not any(r in by_norm for r in c.raw_names):
            raise OdevalError(f"required column {c.shown} of MHSDS table {stable.name} is missing "
                              "(one of these names, by MHSDS version)",
                              rule=f"{stable.name}.{c.names[0]}.required_column", file=path,
                              column=c.names[0])
    fl = ingest_mod._load_file(con, table, path, fmt, sha, load_id, scan, delimiter=delim or ",")
    sf.n_rows = fl.n_rows
    bad = con.execute(
        f"select u.\"column\", count(*), min(_row_number) from (select _row_number, unnest(_untyped) as u "
        f"from raw.{table.name} where _load_id = $l and _untyped is not null) group by 1 order by 3 limit 1",
        {"l": load_id}).fetchone()
    if bad:
        col = table.column(bad[0])
        shown = _shown_column(stable, bad[0])
        how = {"int": "a whole number", "date": "a date YYYY-MM-DD", "time": "a time HH:MM[:SS]"}.get(
            col.type, col.type)
        raise OdevalError(f"column {shown!r} is not {how} in {bad[1]:,} row(s), the first in row "
                          f"{bad[2]} (the MHSDS specification types it {col.type})",
                          rule=f"mhsds.{stable.name}.{shown}.type", file=path, column=shown, row=bad[2])
    for c in stable.columns.values():
        if c.name != "validity_flag":
            continue
        for raw, shown in zip(c.raw_names, c.names):
            if raw not in by_norm:
                continue
            hit = con.execute(f"select count(*), min(_row_number) from raw.{table.name} where _load_id = $l "
                              f"and upper(\"{raw}\") not in ('Y', 'N')", {"l": load_id}).fetchone()
            if hit[0]:
                raise OdevalError(f"validity flag {shown!r} is neither Y nor N (nor empty) in {hit[0]:,} "
                                  f"row(s), the first in row {hit[1]}",
                                  rule=f"mhsds.{stable.name}.{shown}.flag", file=path, column=shown,
                                  row=hit[1])
    loaded[load_id] = sf
    return sf


def _unregistered_staff(con: duckdb.DuckDBPyConnection, local: str | Path | None) -> list[str]:
    """A warning when contact-staff rows name staff that no staff register lists: validate
    quarantines them as orphans (``contact_staff.staff_id.reference``), and all of them,
    when no register was given, stop the run at the quarantine threshold."""
    given = table_exists(con, "raw", "staff")
    missing = ("not exists (select 1 from raw.staff as s where s.staff_id = c.staff_id)"
               if given else "true")
    rows, staff = con.execute(f"select count(*), count(distinct staff_id) from "
                              f"imp.out_contact_staff as c where {missing}").fetchone()
    if not rows:
        return []
    why = ("the staff register (--local staff file) does not list them" if given else
           "no staff register was given" + (" (no staff file in --local)" if local else
                                            " (--local DIR with staff.csv)"))
    return [f"{rows:,} contact-staff rows name {staff:,} members of staff (MHS202 "
            f"CareProfLocalId) and {why}: validate will quarantine those rows "
            "(contact_staff.staff_id.reference) and stop the run if they are more than "
            "validate.max_quarantine_share of the table; give the trust's staff register."]


def _load_local(con: duckdb.DuckDBPyConnection, folder: Path) -> list[SourceFile]:
    """Contract tables MHSDS does not hold (staff register, prescribing) from ``folder``,
    loaded by ingest exactly as ``odeval ingest`` would load them."""
    existing_folder(folder, rule="mhsds.local_folder", what="folder of local tables")
    contract = load_contract()
    out = []
    for p in sorted(folder.iterdir(), key=lambda q: q.name):
        stem, _, ext = p.name.partition(".")
        if not p.is_file() or ext not in ingest_mod.FORMATS:
            continue
        if stem in contract and stem not in LOCAL_TABLES:
            raise OdevalError(f"{stem} comes from the MHSDS tables; the local folder may hold only "
                              f"{', '.join(LOCAL_TABLES)}", rule="mhsds.local_table", file=p)
        if stem not in LOCAL_TABLES:
            continue
        table = contract[stem]
        ingest_mod.create_raw_table(con, table)
        scan = ingest_mod._LineScan() if ext == "csv" else None
        sha = ingest_mod.sha256_of(p, scan)
        fl = ingest_mod._load_file(con, table, p, ext, sha, f"{stem}-{sha[:16]}", scan)
        out.append(SourceFile(stem, p, ext, "," if ext == "csv" else "", sha, fl.load_id, fl.n_rows))
    return out


# --------------------------------------------------------------------------- SQL

def _staging_sql(stable: SourceTable) -> str:
    """``imp.stg_<table>``: one column per import name (the first non-empty of its MHSDS
    names), with the file name and row of each input row."""
    cols = []
    for c in stable.columns.values():
        names = [f'r."{r}"' for r in c.raw_names]
        cols.append((f"coalesce({', '.join(names)})" if len(names) > 1 else names[0]) + f" as {c.name}")
    return (f"create or replace view imp.stg_{stable.raw_table} as select {', '.join(cols)}, "
            f"regexp_extract(l.source_file, '[^/]+$') as _file, r._load_id, r._row_number "
            f"from raw.{stable.raw_table} as r join meta.loads as l on l.load_id = r._load_id")


def _versions_sql(stable: SourceTable) -> str:
    template = (SQL / "versions.sql").read_text(encoding="utf-8")
    record = ", ".join(stable.record)
    missing = " or ".join(f"{r} is null" for r in stable.record)
    copy_by = (f", coalesce({stable.row_id}, _load_id || ':' || _row_number)"
               if stable.set and stable.row_id else "")
    row_id_text = (f"{stable.row_id}" if stable.set else "the record columns")
    return template.format(table=stable.raw_table, record=record, record_missing=missing,
                           copy_by=copy_by, row_id_text=row_id_text)


def _run_sql(con: duckdb.DuckDBPyConnection, name: str, create: str, params: dict[str, Any]) -> None:
    """``create table <create> as`` the query of ``pipeline/sql/import_mhsds/<name>.sql``
    with only the parameters it names bound."""
    text = (SQL / f"{name}.sql").read_text(encoding="utf-8")
    used = {k: v for k, v in params.items() if f"${k}" in text}
    con.execute(f"create or replace table {create} as {text}", used)


# --------------------------------------------------------------------------- facts

def _facts(con: duckdb.DuckDBPyConnection, spec, lists: dict[str, CodeList], files: list[SourceFile],
           extract_end: dt.date | None, extract_end_source: str) -> dict[str, Any]:
    """The exact counts of the import report (counts of rows and people; no identifiers)."""
    tables: dict[str, Any] = {}
    months: list[dict[str, Any]] = []
    for name, st in spec.tables.items():
        t = st.raw_table
        row = con.execute(f"""
            select count(*), count(*) filter (where _fate = 'kept'),
                   count(*) filter (where _fate = 'superseded'),
                   count(*) filter (where _fate = 'duplicate'),
                   count(*) filter (where _fate = 'invalid')
            from imp.ver_{t}""").fetchone()
        reasons = dict(con.execute(f"select _why_invalid, count(*) from imp.ver_{t} "
                                   "where _fate = 'invalid' group by 1 order by 1").fetchall())
        not_alloc = con.execute(f"select count(*) from imp.ver_{t} where _fate = 'kept' and person_id "
                                "not in (select person_id from imp.alloc where person_id is not null)").fetchone()[0]
        tables[name] = {"files": sum(1 for f in files if f.table == name and f.status == "read"),
                        "rows_read": row[0], "kept": row[1], "superseded": row[2], "duplicate": row[3],
                        "invalid": row[4], "invalid_reasons": reasons,
                        "kept_not_allocated": not_alloc}
        for m in con.execute(f"""
                select uniq_month_id, count(*), count(*) filter (where _fate = 'kept'),
                       count(*) filter (where _fate = 'superseded'),
                       count(*) filter (where _fate = 'duplicate'),
                       count(*) filter (where _fate = 'invalid')
                from imp.ver_{t} group by 1 order by 1 nulls first""").fetchall():
            months.append({"table": name, "uniq_month_id": m[0], "rows_read": m[1], "kept": m[2],
                           "superseded": m[3], "duplicate": m[4], "invalid": m[5]})
    codes = []
    for name, st in spec.tables.items():
        for c in st.columns.values():
            if not c.code_list:
                continue
            cl = lists[c.code_list]
            for raw, shown in zip(c.raw_names, c.names):
                # the rows of this name: a file has one of a column's names
                # grouped by the compared form (Parquet's 2 and CSV's '02' are one code),
                # shown as the list writes it, or as the data do when it is not listed
                rows = con.execute(f"""
                    select coalesce(any_value(k.code), min(trim(cast(r."{raw}" as varchar)))) as code,
                           count(*) as n, any_value(k.contract_value) as value,
                           bool_or(k.code_key is not null) as listed
                    from raw.{st.raw_table} as r
                    join imp.ver_{st.raw_table} as v using (_load_id, _row_number)
                    left join imp.codes as k on k.list = $list and k.code_key = code_key(r."{raw}")
                    where v._fate = 'kept' and v.person_id in (select person_id from imp.alloc)
                      and r."{raw}" is not null
                    group by code_key(r."{raw}") order by 1""", {"list": cl.name}).fetchall()
                for code, n, value, listed in rows:
                    if not listed:
                        if cl.unmapped is None:
                            continue
                        kind, value = "unmapped", cl.unmapped
                    elif value == "-":
                        kind = "not_carried"
                    elif value == "":
                        kind = "no_contract_value"
                    else:
                        continue
                    codes.append({"table": name, "column": shown, "code_list": cl.name, "code": code,
                                  "rows": n, "kind": kind, "contract_value": value})
    alloc = con.execute("""
        select count(*), count(*) filter (where person_id in (select person_id from imp.kept_mhs001mpi))
        from (select distinct person_id from imp.alloc)""").fetchone()
    union = " union ".join(f"select person_id from imp.ver_{st.raw_table} where _fate = 'kept'"
                           for st in spec.tables.values())
    not_alloc = con.execute(f"select count(*) from ({union}) where person_id not in "
                            "(select person_id from imp.alloc where person_id is not null)").fetchone()[0]
    contract = {t: con.execute(f"select count(*) from imp.out_{t}").fetchone()[0]
                for t in OUTPUTS}
    contract.update({t: con.execute(f"select count(*) from raw.{t}").fetchone()[0]
                     if table_exists(con, "raw", t) else 0
                     for t in LOCAL_TABLES})
    notes = {
        "crisis_referrals": con.execute("select count(*) from imp.crisis_referrals").fetchone()[0],
        "contacts_of_crisis_referrals": con.execute(
            "select count(*) from imp.kept_mhs201carecontact as c semi join imp.crisis_referrals as r "
            "using (referral_id)").fetchone()[0],
    }
    return {
        "tables": tables, "months": months, "codes": codes,
        "allocation": {"allocated_people": alloc[0], "with_mhs001mpi": alloc[1],
                       "without_mhs001mpi": alloc[0] - alloc[1],
                       "people_without_allocation": not_alloc},
        "contract": contract, "notes": notes,
        "extract_end": extract_end.isoformat() if extract_end else None,
        "extract_end_source": extract_end_source,
    }


# --------------------------------------------------------------------------- output

def _copy(con: duckdb.DuckDBPyConnection, query: str, path: Path, fmt: str) -> None:
    target = "'" + str(path).replace("'", "''") + "'"
    opts = "(format parquet, compression zstd)" if fmt == "parquet" else "(format csv, header true)"
    con.execute(f"copy ({query}) to {target} {opts}")


def _columns_to_write(con: duckdb.DuckDBPyConnection, relation: str, table: str) -> list[str]:
    """The contract's columns in its order, plus any other column the import fills."""
    have = [r[0] for r in con.execute(f"describe {relation}").fetchall()]
    contract = list(load_contract()[table].column_names)
    missing = [c for c in contract if c not in have]
    if missing:  # a contract column this importer does not know: written empty
        raise AssertionError(f"{relation} lacks contract columns {missing}")
    extra = [c for c in have if c not in contract
             and con.execute(f'select count("{c}") from {relation}').fetchone()[0]]
    return contract + extra


def _prepare_out(out: Path) -> None:
    """Refuse to write over anything but an empty folder or a previous import."""
    if out.exists():
        if not out.is_dir():
            raise OdevalError("the output is a file; give a folder", rule="mhsds.out", file=out)
        if any(out.iterdir()) and not (out / MANIFEST).exists():
            raise OdevalError(f"the output folder holds files and is not an earlier import (no "
                              f"{MANIFEST}); give a new or empty folder", rule="mhsds.out", file=out)


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished extract into place; a previous import there is replaced whole."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- the stage

def import_mhsds(
    source: str | Path,
    allocation: str | Path,
    out: str | Path,
    *,
    mappings: Sequence[str | Path] = (),
    local: str | Path | None = None,
    fmt: str = "parquet",
    extract_end: dt.date | None = None,
    report_dir: str | Path | None = None,
    disclosure: dict[str, Any] | None = None,
    threads: int | None = None,
    memory_limit: str | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> ImportResult:
    """Turn a folder of MHSDS tables and an allocation list into a contract extract.

    Parameters
    ----------
    source : folder of MHSDS table files (see :func:`discover`).
    allocation : the trial's allocation list (CSV or Parquet): Person_ID, site_id, arm,
        index_date; optionally cluster_id, data_end_date, data_end_reason, birth_year,
        diagnosis_group, prior_admissions_2y, baseline_activity.
    out : the extract folder to write (new, empty, or an earlier import, replaced whole).
    mappings : local mapping files extending or changing the code lists.
    local : folder with the contract tables MHSDS does not hold (staff.csv,
        prescriptions.csv, or .parquet), copied into the extract after ingest's checks.
    fmt : ``parquet`` or ``csv`` for the extract's files.
    extract_end : the last day the extract covers (data_end_date of everyone without one
        in the allocation list); default: the latest ReportingPeriodEndDate in the tables.
    report_dir : where import_report.html and .json go (None: no report).
    disclosure : the ``disclosure:`` settings of params.yaml for the report.

    Returns
    -------
    ImportResult : files read, exact counts (``facts``), report files.

    Raises
    ------
    OdevalError : naming file, column, row and rule; nothing was written.
    """
    from pipeline.importers import mhsds_report
    from pipeline.warehouse import connect

    if fmt not in FORMATS:
        raise OdevalError(f"--format must be one of {', '.join(FORMATS)}", rule="mhsds.format")
    source, allocation, out = Path(source).resolve(), Path(allocation).resolve(), Path(out).resolve()
    spec = load_spec()
    lists = load_code_lists([Path(m) for m in mappings])
    found, ignored = discover(source, spec.tables)
    if not allocation.is_file():
        raise OdevalError("no such file (the allocation list)", rule="mhsds.allocation_missing",
                          file=allocation)
    _prepare_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.import-", dir=out.parent))
    result = ImportResult(out=out, ignored=ignored)
    con = None
    try:
        con = connect(work / "scratch.duckdb", threads=threads, memory_limit=memory_limit)
        con.execute("create schema if not exists imp")
        con.execute(CODE_KEY_MACRO)
        plan = [(spec.tables[t], p, f) for t in spec.tables for p, f in found[t]]
        loaded: dict[str, SourceFile] = {}
        for st in [*spec.tables.values(), spec.allocation]:
            ingest_mod.create_raw_table(con, st.ingest_table())
        total = len(plan) + 1
        for i, (st, path, f) in enumerate(plan):
            if progress:
                progress(i, total, f"{st.name} ← {path.name}")
            result.files.append(_load(con, st, path, f, loaded))
        afmt = "parquet" if allocation.suffix.lower() == ".parquet" else "csv"
        result.files.append(_load(con, spec.allocation, allocation, afmt, loaded))
        if local is not None:
            result.files += _load_local(con, Path(local).resolve())
        if progress:
            progress(total, total, "versions and codes")

        con.execute("create table imp.codes (list varchar, code_key varchar, code varchar, "
                    "contract_value varchar)")
        con.executemany("insert into imp.codes values (?, ?, ?, ?)",
                        [[cl.name, k, r.code, r.contract_value] for cl in lists.values()
                         for k, r in sorted(cl.rows.items())])
        con.execute(_staging_sql(spec.allocation))
        con.execute("create table imp.alloc as select " + ", ".join(spec.allocation.columns)
                    + " from imp.stg_allocation")
        for st in spec.tables.values():
            con.execute(_staging_sql(st))
            con.execute(_versions_sql(st))
            con.execute(f"create view imp.kept_{st.raw_table} as select * from imp.ver_{st.raw_table} "
                        "where _fate = 'kept' and person_id in (select person_id from imp.alloc)")

        end_source = "--extract-end"
        if extract_end is None:
            union = " union all ".join(f"select max(reporting_period_end) as d from imp.ver_{st.raw_table} "
                                       "where _fate <> 'invalid'" for st in spec.tables.values())
            extract_end = con.execute(f"select max(d) from ({union})").fetchone()[0]
            end_source = "latest ReportingPeriodEndDate in the MHSDS tables"
        if extract_end is None:
            lacking = con.execute("select count(*) from imp.alloc where data_end_date is null").fetchone()[0]
            if lacking:
                raise OdevalError(
                    f"{lacking:,} allocated people have no data_end_date and the tables have no "
                    "ReportingPeriodEndDate: give the last day the extract covers with --extract-end",
                    rule="mhsds.extract_end", file=allocation, column="data_end_date")
            end_source = "not needed: every allocated person has a data_end_date"

        params = {"extract_end": extract_end,
                  "has_other_attend": bool(found.get("MHS203OtherAttend"))}
        _run_sql(con, "crisis_referrals", "imp.crisis_referrals", params)
        for t in OUTPUTS:
            _run_sql(con, t, f"imp.out_{t}", params)

        result.facts = _facts(con, spec, lists, result.files, extract_end, end_source)
        result.facts["code_lists"] = [
            {"name": cl.name, "contract": cl.contract, "codes": len(cl.rows), "unmapped_value": cl.unmapped,
             "file": cl.file.name if cl.file else None, "local_overrides": sorted(cl.overridden),
             "sources": sorted({r.source for r in cl.rows.values()})} for cl in lists.values()]

        result.warnings += _unregistered_staff(con, local)
        tmp = work / "extract"
        tmp.mkdir()
        contract = load_contract()
        for t in contract:
            path = tmp / f"{t}.{fmt}"
            if t in OUTPUTS:
                cols = _columns_to_write(con, f"imp.out_{t}", t)
                _copy(con, f"select {', '.join(cols)} from imp.out_{t}", path, fmt)
            else:  # staff, prescriptions: the local file's rows as ingest typed them, or none
                cols = ", ".join(f'"{c}"' for c in contract[t].column_names)
                key = ", ".join(f'"{c}"' for c in contract[t].key)
                _copy(con, f"select {cols} from raw.{t} order by {key}", path, fmt) \
                    if table_exists(con, "raw", t) else \
                    _copy(con, "select " + ", ".join(f"cast(null as {c.duckdb_type}) as \"{c.name}\""
                                                     for c in contract[t].columns) + " limit 0", path, fmt)
        manifest = {
            "odeval_version": __version__, "importer": "mhsds",
            "source": str(source), "allocation": str(allocation), "format": fmt,
            "inputs": [{"table": f.table, "file": f.path.name, "sha256": f.sha256, "format": f.format,
                        "delimiter": f.delimiter, "rows": f.n_rows, "status": f.status}
                       for f in result.files],
            "code_lists": {cl.name: hashlib.sha256(cl.file.read_bytes()).hexdigest()
                           for cl in lists.values() if cl.file},
            "mappings": [{"file": Path(m).name, "sha256": hashlib.sha256(Path(m).read_bytes()).hexdigest()}
                         for m in mappings],
            "tables_yaml_sha256": hashlib.sha256((REFERENCE_DIR / "tables.yaml").read_bytes()).hexdigest(),
            "extract_end": result.facts["extract_end"],
            "rows": result.facts["contract"],
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        con.close()
        con = None
        if report_dir is not None:
            result.report_files = mhsds_report.write(result, Path(report_dir), disclosure or {})
        _replace_dir(tmp, out)
    finally:
        if con is not None:
            con.close()
        shutil.rmtree(work, ignore_errors=True)
    return result
