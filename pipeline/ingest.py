"""Stage 1, ingest: extract folders (CSV or Parquet) into ``raw.<table>``, typed, with lineage.

Each input file of a contract table becomes one *load* (``meta.loads``) whose id is the
table name and the file's sha256, so ingesting the same content again changes nothing.
Every row keeps its lineage: ``_load_id`` (which names the file and its sha256 in
``meta.loads``) and ``_row_number`` (1-based data row, header excluded). Values are typed
by DuckDB from ``schemas/``; a value that cannot be typed is not dropped: the typed column
is NULL and ``_untyped`` keeps the column name and the original text, so that validation
quarantines the row. Columns not in the contract are kept in ``_extra`` and reported.

A whole ``ingest`` call is one transaction: a missing required column, an unreadable or
malformed file (encoding, delimiter, header, ragged rows, damaged Parquet: see
docs/input.md, "Ingest: what stops a load"), a column named like a real identifier, a pseudonym shaped
like an NHS number, or a free-text column holding identifier-shaped values stops it, and
the warehouse is left exactly as it was.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import duckdb
import yaml

from pipeline.config import SCHEMAS_DIR
from pipeline import runstate
from pipeline.errors import OdevalError, existing_folder
from pipeline.schemas import Column, Table, forbidden_columns, load_contract, normalise_column_name
from pipeline.warehouse import disk_full_error, quote_ident, table_exists, transaction

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
    # CASE, not AND: DuckDB does not short-circuit AND, and the digit casts must only see digits.
    # The length test first spares the regular expressions every shorter value (10 digits
    # need 10 characters): 47 M eight-character person ids are not rewritten to be tested.
    return (
        f"(case when length({expr}) >= 10 then "
        f"(case when regexp_full_match(coalesce({s}, ''), '[0-9]{{10}}') then "
        f"(case when {check} = 11 then 0 else {check} end) = cast(substr({s}, 10, 1) as integer) "
        f"else false end) else false end)"
    )


_POSTCODE_RE = "(GIR ?0AA|[A-Z]{1,2}[0-9][0-9A-Z]? ?[0-9][A-Z]{2})"
_EMAIL_RE = "[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+([.][A-Za-z0-9-]+)*[.][A-Za-z]{2,}"
_NAME_RE = ("([A-Z][a-z]+(['-][A-Z]?[a-z]+)?( [A-Z][a-z]+(['-][A-Z]?[a-z]+)?){1,2}"
            "|[A-Z]{2,}(['-][A-Z]+)?, ?[A-Z][a-z]+( [A-Z][a-z]+)?)")
_KINDS = {
    "nhs_number": "NHS numbers (10 digits passing the Modulus 11 check)",
    "postcode": "UK postcodes",
    "email": "email addresses",
    "date_of_birth": "dates of birth",
    "person_name": "person names",
}


@lru_cache(maxsize=1)
def value_checks() -> dict:
    """The ``value_checks`` section of ``schemas/identifiers.yaml``."""
    raw = yaml.safe_load((SCHEMAS_DIR / "identifiers.yaml").read_text(encoding="utf-8"))
    return raw.get("value_checks") or {}


def _year_of_full_date(v: str) -> str:
    return (f"(case when regexp_full_match({v}, '[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}([T ].*)?') "
            f"then try_cast(substr({v}, 1, 4) as integer) "
            f"when regexp_full_match({v}, '[0-9]{{1,2}}/[0-9]{{1,2}}/[0-9]{{4}}') "
            f"then try_cast(right({v}, 4) as integer) end)")


def check_identifier_values(con: duckdb.DuckDBPyConnection, table: Table, path: Path,
                            load_id: str, present: dict[str, str], extras: dict[str, str]) -> None:
    """Refuse the load when a free-text or extra column holds identifiers (rule
    ``identifier.<kind>``); see ``value_checks`` in ``schemas/identifiers.yaml``.

    ``present``: contract column name -> input column name, for the columns in the file;
    ``extras``: the same for the extra columns (normalised name, as kept in ``_extra``).
    One aggregate scan of the load's rows (ingest folds it into its own count,
    :class:`_IdentifierScan`).
    """
    scan = _IdentifierScan.of(table, present, extras)
    if scan is None:
        return
    cur = con.execute(f"select {', '.join(scan.aggs)} {scan.where(table)}", {"l": load_id})
    scan.judge(con, table, path, load_id, dict(zip([d[0] for d in cur.description], cur.fetchone())))


@dataclass
class _IdentifierScan:
    """The identifier tests of one table's load: aggregates to add to a scan of its rows
    (named ``c<i>_<kind>``), then :meth:`judge` on what they counted."""

    cols: list[tuple[str, str, str]]  # (input name, SQL text expression, contract name or '')
    tests: list[dict[str, str]]
    aggs: list[str]

    @classmethod
    def of(cls, table: Table, present: dict[str, str], extras: dict[str, str]
           ) -> _IdentifierScan | None:
        """The tests for ``table`` (None when ``value_checks`` names none of its columns)."""
        cfg = value_checks()
        if not cfg:
            return None
        cols: list[tuple[str, str, str]] = []
        for name in (cfg.get("columns") or {}).get(table.name, []):
            if name in present:
                cols.append((present[name], f"nullif(trim({_quote(name)}), '')", name))
        for norm, shown in extras.items():
            cols.append((shown, f"nullif(trim(_extra[{_sql_str(norm)}]), '')", ""))
        if not cols:
            return None
        names_cfg = cfg.get("person_name") or {}
        has_birth_year = "birth_year" in present
        tests: list[dict[str, str]] = []
        aggs = []
        for i, (_, v, contract) in enumerate(cols):
            year = _year_of_full_date(v)
            t = {
                # (a CASE on the length first: DuckDB does not short-circuit AND)
                "postcode": f"(case when length({v}) between 5 and 8 then "
                            f"regexp_full_match(upper({v}), {_sql_str(_POSTCODE_RE)}) else false end)",
                "nhs_number": f"(case when length({v}) between 10 and 12 then {nhs_number_sql(v)} "
                              "else false end)",
                "email": f"regexp_matches({v}, {_sql_str(_EMAIL_RE)})",
                "date": f"{year} is not null",
            }
            if has_birth_year:
                t["dob"] = f"coalesce({year} = birth_year, false)"
                t["dob_pairs"] = f"{year} is not null and birth_year is not null"
            if table.name in (names_cfg.get("tables") or ()) and contract not in (
                    names_cfg.get("not_columns") or ()):
                t["person_name"] = f"regexp_full_match({v}, {_sql_str(_NAME_RE)})"
            tests.append(t)
            aggs.append(f"count({v}) as c{i}_n")
            aggs += [f"count_if({test}) as c{i}_{kind}" for kind, test in t.items()]
        return cls(cols, tests, aggs)

    @staticmethod
    def where(table: Table) -> str:
        return f"from raw.{table.name} where _load_id = $l"

    def judge(self, con: duckdb.DuckDBPyConnection, table: Table, path: Path, load_id: str,
              got: dict[str, Any]) -> None:
        """Raise ``identifier.<kind>`` for the first column whose counts ``got`` pass a
        threshold of ``value_checks``."""
        cfg = value_checks()
        names_cfg = cfg.get("person_name") or {}
        dob_cfg = cfg.get("date_of_birth") or {}
        cols, where = self.cols, self.where(table)

        def refuse(i: int, kind: str, test: str, hits: int, n: int, extra: str = "") -> None:
            row = con.execute(f"select min(_row_number) {where} and ({test})",
                              {"l": load_id}).fetchone()[0]
            raise OdevalError(
                f"column {cols[i][0]!r} holds {_KINDS[kind]} ({hits:,} of {n:,} values, the "
                f"first in row {row}{extra}): the extract must be pseudonymised, so it is "
                "refused whole; drop or pseudonymise the column", rule=f"identifier.{kind}",
                file=path, column=cols[i][0], row=row)

        for i, (name, v, _) in enumerate(cols):
            n, t = got[f"c{i}_n"], self.tests[i]
            if not n:
                continue
            for kind in ("email", "nhs_number", "postcode"):
                hits, rule = got[f"c{i}_{kind}"], cfg.get(kind) or {}
                if hits >= max(1, int(rule.get("min_count", 1))) and hits / n >= float(
                        rule.get("min_share", 0)):
                    refuse(i, kind, t[kind], hits, n)
            tokens = set(normalise_column_name(name).split("_"))
            if got[f"c{i}_date"] and tokens & set(dob_cfg.get("name_tokens") or ()):
                refuse(i, "date_of_birth", t["date"], got[f"c{i}_date"], n,
                       ", full dates in a column named like a birth date")
            pairs = got.get(f"c{i}_dob_pairs") or 0
            if pairs and got[f"c{i}_dob"] / pairs >= float(dob_cfg.get("min_share", 0.5)):
                refuse(i, "date_of_birth", t["dob"], got[f"c{i}_dob"], n,
                       ", full dates in the year of the person's birth_year")
            hits = got.get(f"c{i}_person_name") or 0
            if hits and hits / n >= float(names_cfg.get("min_share", 0.5)):
                distinct, named = con.execute(
                    f"select count(distinct {v}), count(distinct {v}) filter (where "
                    f"{t['person_name']}) {where}", {"l": load_id}).fetchone()
                if (named >= int(names_cfg.get("min_distinct", 20))
                        and distinct / n >= float(names_cfg.get("min_unique_share", 0.8))):
                    refuse(i, "person_name", t["person_name"], hits, n)


# --------------------------------------------------------------------------- typing

_INT_RE = "[+-]?[0-9]+"
_FLOAT_RE = r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?"
_DATE_RE = "[0-9]{4}-[0-9]{2}-[0-9]{2}"
_TS_RE = "[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2})?"
_TIME_RE = "[0-9]{2}:[0-9]{2}(:[0-9]{2})?"
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
        # finite only: '1e400' matches the pattern but overflows to infinity
        return (f"case when regexp_full_match({v}, '{_FLOAT_RE}') "
                f"and isfinite(try_cast({v} as double)) then try_cast({v} as double) end")
    if t == "bool":
        return (f"case when lower({v}) in {_TRUE} then true "
                f"when lower({v}) in {_FALSE} then false end")
    if t == "date":
        return (f"case when regexp_full_match({v}, '{_DATE_RE}') "
                f"then cast(try_strptime({v}, '%Y-%m-%d') as date) end")
    if t == "timestamp":
        return (f"case when regexp_full_match({v}, '{_TS_RE}') then "
                f"try_strptime(replace({v}, ' ', 'T'), ['%Y-%m-%dT%H:%M:%S', '%Y-%m-%dT%H:%M']) end")
    if t == "time":
        return f"case when regexp_full_match({v}, '{_TIME_RE}') then try_cast({v} as time) end"
    raise AssertionError(t)


def _typed_from_native(col: Column, src: str, src_type: str) -> str:
    """SQL typing a column that the file already typed (Parquet)."""
    if col.type == "text":
        return f"nullif(trim(cast({src} as varchar)), '')"
    if col.type == "int" and (src_type in ("FLOAT", "DOUBLE") or src_type.startswith("DECIMAL")):
        return f"case when {src} = floor({src}) then try_cast({src} as bigint) end"
    if col.type == "date" and src_type.startswith("TIMESTAMP"):
        # a date written as a timestamp: only midnight is a date, any other time is untypable
        return f"case when cast({src} as date) = {src} then cast({src} as date) end"
    if col.type == "float":
        return f"case when isfinite(try_cast({src} as double)) then try_cast({src} as double) end"
    return f"try_cast({src} as {col.duckdb_type})"


_quote = quote_ident


# --------------------------------------------------------------------------- files

#: Longest physical line accepted in a CSV input. No record of the contract comes near it;
#: a longer line is damage (or not a CSV export), and DuckDB's parallel reader can drop
#: such a line without an error, so it is refused before DuckDB reads the file.
MAX_LINE_BYTES = 1 << 20


class _LineScan:
    """Fed the blocks of a file: the longest physical line (CR, LF or CRLF ended) and its number.

    Only runs that cross a block boundary can exceed the block size, so one ``find`` and one
    ``rfind`` per block suffice when blocks are ``MAX_LINE_BYTES`` long.
    """

    def __init__(self) -> None:
        self.run = 0          # bytes since the last line break
        self.breaks = 0       # line feeds seen (a CR-only file counts CRs below)
        self.longest = 0
        self.longest_line = 0
        self.nul_line = 0     # first line holding a NUL byte (0: none)

    def _end_run(self, extra: int) -> None:
        if self.run + extra > self.longest:
            self.longest, self.longest_line = self.run + extra, self.breaks + 1

    def feed(self, block: bytes) -> None:
        if not self.nul_line and b"\x00" in block:
            at = block.index(b"\x00")
            self.nul_line = self.breaks + 1 + (block.count(b"\n", 0, at) or block.count(b"\r", 0, at))
        firsts = [i for i in (block.find(b"\n"), block.find(b"\r")) if i >= 0]
        if not firsts:
            self.run += len(block)
            return
        self._end_run(min(firsts))
        n = block.count(b"\n") or block.count(b"\r")
        self.breaks += n
        self.run = len(block) - 1 - max(block.rfind(b"\n"), block.rfind(b"\r"))

    def close(self) -> None:
        self._end_run(0)


def sha256_of(path: Path, scan: _LineScan | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MAX_LINE_BYTES), b""):
            h.update(block)
            if scan is not None:
                scan.feed(block)
    if scan is not None:
        scan.close()
    return h.hexdigest()


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _reader(fmt: str, header: Sequence[str] = (), delimiter: str = ",") -> str:
    """The table function reading one input file; the path is bound as ``$path``.

    CSV is read as the contract says (comma, double quote, UTF-8, a header line), with
    DuckDB's sniffer off: the header was read and checked by :func:`csv_header`, so nothing
    is guessed (no skipped lines, no comment lines, no renamed columns). ``delimiter`` is
    the contract's comma unless a caller reading another format (the MHSDS import's
    pipe-delimited text) says otherwise.
    """
    if fmt == "csv":
        columns = "{" + ", ".join(f"{_sql_str(n)}: 'VARCHAR'" for n in header) + "}"
        return ("read_csv($path, header = true, auto_detect = false, "
                f"columns = {columns}, delim = {_sql_str(delimiter)}, quote = '\"', escape = '\"', "
                "encoding = 'utf-8', strict_mode = true, null_padding = false)")
    return "read_parquet($path)"


# --------------------------------------------------------------------------- CSV checks

_OTHER_DELIMITERS = {";": "semicolon ';'", "\t": "tab", "|": "pipe '|'"}
_UNICODE_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
                 (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))
_REEXPORT = "re-export it as UTF-8 (Excel: Save As 'CSV UTF-8 (Comma delimited)')"


def csv_header(path: Path, delimiter: str = ",") -> list[str]:
    """The column names of a CSV input, after the checks that need no full read.

    Raises :class:`OdevalError` for an empty file, a UTF-16/32 or binary file, a header
    line that is not UTF-8, has an unclosed quote, is separated by something other than
    ``delimiter`` (the contract's comma), or has a nameless or repeated column. A UTF-8
    byte-order mark is allowed.
    """
    with open(path, "rb") as f:
        head = f.read(MAX_LINE_BYTES + 1)
    if not head:
        raise OdevalError("the file is empty (0 bytes): a table with no rows still needs its "
                          "header line", rule="ingest.empty_file", file=path)
    for bom, name in _UNICODE_BOMS:
        if head.startswith(bom):
            raise OdevalError(f"the file is {name}-encoded (it starts with a {name} byte-order "
                              f"mark), not UTF-8: {_REEXPORT}", rule="ingest.unreadable", file=path)
    head = head.removeprefix(codecs.BOM_UTF8)
    end = re.search(rb"[\r\n]", head)
    line = head[:end.start()] if end else head
    if b"\x00" in line:
        raise OdevalError("the header line holds NUL bytes: the file is binary (or UTF-16 without "
                          f"a byte-order mark), not CSV text; {_REEXPORT}", rule="ingest.unreadable",
                          file=path)
    if end is None and len(head) > MAX_LINE_BYTES:
        raise OdevalError(f"no line break in the first {MAX_LINE_BYTES:,} bytes: this is not a CSV "
                          "file with a header line", rule="ingest.unreadable", file=path)
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise OdevalError(
            f"the header line is not UTF-8 (byte 0x{line[exc.start]:02x} at position {exc.start + 1}"
            f"; Latin-1 or Windows-1252 are not guessed): {_REEXPORT}",
            rule="ingest.unreadable", file=path) from None
    if text.count('"') % 2:
        raise OdevalError("the header line has an unclosed quote (a header name must not span "
                          "lines)", rule="ingest.header", file=path)
    if not text.strip():
        raise OdevalError("the first line is empty: the file must start with its header line",
                          rule="ingest.header", file=path)
    names = next(csv.reader([text], delimiter=delimiter), [])
    if len(names) <= 1 and delimiter == ",":
        found = [label for d, label in _OTHER_DELIMITERS.items() if d in text]
        if found:
            raise OdevalError(f"the header is separated by {found[0]}, not by commas: the contract "
                              "wants comma-separated values; re-export with comma as the "
                              "delimiter", rule="ingest.delimiter", file=path)
    for i, name in enumerate(names, start=1):
        if not name.strip():
            raise OdevalError(f"column {i} of the header has no name (a column of values needs a "
                              "name; remove it if it is empty)", rule="ingest.header", file=path)
        first = names.index(name) + 1
        if first != i:
            raise OdevalError(f"the header names {name!r} twice (columns {first} and {i})",
                              rule="ingest.duplicate_column", file=path, column=name)
    return names


def _csv_error(exc: Exception, path: Path) -> OdevalError:
    """DuckDB's CSV error as a message an analyst can act on (never echoing the line)."""
    text = str(exc)
    m = re.search(r"CSV Error on Line: (\d+)", text)
    row = int(m.group(1)) - 1 if m else None  # DuckDB counts records with the header as 1
    this = "the row" if m else "the file"
    m_cols = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", text)
    if "Invalid unicode" in text:
        why = f"{this} is not UTF-8 text (Latin-1 or Windows-1252 are not guessed): {_REEXPORT}"
    elif m_cols:
        why = (f"{this} has {m_cols.group(2)} fields where the header has {m_cols.group(1)} (a "
               "stray comma, or a value holding a comma that is not in double quotes)")
    elif "unterminated quote" in text:
        why = (f"{this} opens a double quote that is not closed (or a quote inside a value is "
               "not doubled as \"\")")
    elif "Maximum line size" in text:
        why = f"{this} is longer than DuckDB's maximum record size (damaged, or not a CSV file)"
    elif "invalid state" in text:
        why = ("the CSV parser stopped in an invalid state: most often the lines end in a mix of "
               "CRLF (Windows) and LF (Unix), e.g. files joined together; save the file again "
               "with one kind of line end")
    else:
        why = f"{this} cannot be read as CSV: {_first_line(exc)}"
    return OdevalError(why, rule="ingest.unreadable", file=path, row=row)


def find_files(folder: Path, tables: dict[str, Table]) -> tuple[dict[str, tuple[Path, str]], list[Path]]:
    """The contract tables' files in an extract folder, and the other files there."""
    existing_folder(folder, rule="ingest.folder", what="extract folder")
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
    missing = [t for t in tables if t not in found and not tables[t].optional]
    if missing:
        raise OdevalError(
            f"missing {', '.join(f'{t}.csv' for t in missing)} (or .parquet): every contract table "
            "but the optional ones needs a file, a header-only file for a table with no rows",
            rule="ingest.table_missing", file=folder)
    return found, ignored


def _describe(con: duckdb.DuckDBPyConnection, path: Path, fmt: str,
              delimiter: str = ",") -> list[tuple[str, str]]:
    if fmt == "csv":
        return [(n, "VARCHAR") for n in csv_header(path, delimiter)]
    try:
        rows = con.execute(f"describe select * from {_reader(fmt)}", {"path": str(path)}).fetchall()
    except duckdb.Error as exc:
        if not _is_file_error(exc):
            raise
        raise _parquet_error(exc, path) from None
    return [(r[0], r[1]) for r in rows]


def _parquet_error(exc: Exception, path: Path) -> OdevalError:
    text = _first_line(exc)
    if "magic bytes" in text or "too small" in text:
        text = f"it is not a complete Parquet file (truncated, or not Parquet at all): {text}"
    return OdevalError(f"cannot read the file as parquet: {text}", rule="ingest.unreadable",
                       file=path)


#: Errors that mean the file cannot be read; anything else (binder, parser) is our bug and
#: is raised as it is. NotImplementedException: DuckDB's parallel CSV reader gives up on
#: some malformed files with it.
_FILE_ERRORS = (duckdb.IOException, duckdb.InvalidInputException, duckdb.ConversionException,
                duckdb.NotImplementedException)



def _is_file_error(exc: duckdb.Error) -> bool:
    """Whether a DuckDB error is about the file read (so: an OdevalError for the analyst).

    A damaged Parquet file raises plain ``duckdb.Error`` (Thrift "Invalid data", "Out of
    buffer", corrupt dictionary offsets, ...); the subclasses that mean a bug in our SQL
    (binder, parser, catalog) or a broken database (internal, fatal) are not file errors.
    """
    return isinstance(exc, _FILE_ERRORS) or type(exc) is duckdb.Error


#: Parquet types no contract column can be read from without guessing: nested values,
#: raw bytes (not text), and zoned timestamps (the contract's times are local, no zone).
_REFUSED_NATIVE = (("STRUCT", "nested"), ("MAP", "nested"), ("UNION", "nested"),
                   ("BLOB", "binary (bytes, not UTF-8 text)"),
                   ("TIMESTAMP WITH TIME ZONE", "a timestamp with a time zone (the contract's "
                                                "dates and times are local, with no zone)"))


def _native_type_problem(src_type: str) -> str | None:
    if src_type.endswith("]"):
        return "a list"
    for prefix, why in _REFUSED_NATIVE:
        if src_type.startswith(prefix):
            return why
    return None


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def create_raw_table(con: duckdb.DuckDBPyConnection, table: Table) -> None:
    cols = [f"{_quote(c.name)} {c.duckdb_type}" for c in table.columns]
    cols += [f"{n} {t}" for n, t in LINEAGE_DDL]
    con.execute(f"create table if not exists raw.{table.name} ({', '.join(cols)})")


def check_header(table: Table, path: Path, fmt: str,
                 columns: list[tuple[str, str]]) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """The header rules of one input file, whichever engine reads it.

    ``columns`` are the file's (name, DuckDB type) pairs. Returns the columns by
    normalised name and the extra (non-contract) column names; raises
    :class:`OdevalError` for a column given twice, a column named like an identifier, no
    contract column at all, a missing required column, or an unusable native type.
    """
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
    if table.column_names and not any(n in table.column_names for n in by_norm):
        raise OdevalError(
            f"no column of table {table.name} in the {'header line' if fmt == 'csv' else 'file'} "
            f"({len(by_norm)} column(s), none named like {', '.join(table.required_columns[:3])}, "
            "...): " + ("the first line must be the header naming the columns" if fmt == "csv"
                     else "the file's columns must be named as in the contract"),
            rule="ingest.header", file=path)
    for c in table.columns:
        if c.required and c.name not in by_norm:
            raise OdevalError(f"required column {c.name!r} of table {table.name} is missing",
                              rule=f"{table.name}.{c.name}.required_column", file=path, column=c.name)
    extras = sorted(n for n in by_norm if n not in table.column_names)
    for c in table.columns:
        problem = c.name in by_norm and _native_type_problem(by_norm[c.name][1])
        if problem:
            raise OdevalError(f"column {by_norm[c.name][0]!r} is {problem} ({by_norm[c.name][1]}); "
                              f"the contract wants {c.type}: write it as {c.type}" + (" or as text" if c.type != "text" else " (UTF-8 strings)"),
                              rule="ingest.column_type", file=path, column=c.name)
    return by_norm, extras


def typing_columns(table: Table, by_norm: dict[str, tuple[str, str]], extras: list[str]
                   ) -> tuple[list[str], list[str], str]:
    """SQL pieces typing one source into ``raw.<table>`` rows, for either engine.

    Returns ``inner`` (typed values, their source values and ``_extra``, selected from the
    source), ``outer`` (the contract columns in order, selected from ``inner``) and
    ``untyped``: over ``inner``, the list of ``{column, value}`` structs of the values that
    did not type, NULL for a row where every value typed.

    The list is built, and a source value written as text, only for rows with a failure
    (it was built, and every typed value cast to text, for every row: loading 47 M
    contacts took 21.3 s then, 20.2 s now, measured).
    """
    inner, outer, failures, tests = [], [], [], []
    for c in table.columns:
        if c.name not in by_norm:
            outer.append(f"cast(null as {c.duckdb_type}) as {_quote(c.name)}")
            continue
        src_name, src_type = by_norm[c.name]
        src = _quote(src_name)
        if src_type == "VARCHAR":
            v = f"nullif(trim({src}), '')"
            typed = _typed_from_text(c, v)
            given = v
        else:
            typed = _typed_from_native(c, src, src_type)
            given = src
        inner.append(f"{typed} as {_quote(c.name)}")
        outer.append(_quote(c.name))
        if c.type != "text":
            source = _quote("__src_" + c.name)
            inner.append(f"{given} as {source}")
            test = f"({source} is not null and {_quote(c.name)} is null)"
            tests.append(test)
            failures.append(f"case when {test} then "
                            f"{{'column': '{c.name}', 'value': cast({source} as varchar)}} end")
    if extras:
        keys = ", ".join(f"'{n}'" for n in extras)
        vals = ", ".join(f"cast({_quote(by_norm[n][0])} as varchar)" for n in extras)
        inner.append(f"map([{keys}], [{vals}]) as _extra")
    else:
        inner.append("cast(null as map(varchar, varchar)) as _extra")
    if failures:
        untyped = (f"case when {' or '.join(tests)} then "
                   f"list_filter([{', '.join(failures)}], lambda x: x is not null) end")
    else:
        untyped = "cast(null as struct(\"column\" varchar, \"value\" varchar)[])"
    return inner, outer, untyped


def _load_file(con: duckdb.DuckDBPyConnection, table: Table, path: Path, fmt: str,
               sha: str, load_id: str, scan: _LineScan | None = None,
               delimiter: str = ",") -> FileLoad:
    columns = _describe(con, path, fmt, delimiter)
    by_norm, extras = check_header(table, path, fmt, columns)
    if scan is not None and scan.nul_line:
        raise OdevalError(
            f"line {scan.nul_line} of the file holds a NUL byte: the file is damaged or binary, "
            "not CSV text", rule="ingest.unreadable", file=path)
    if scan is not None and scan.longest > MAX_LINE_BYTES:
        raise OdevalError(
            f"line {scan.longest_line} of the file is {scan.longest:,} bytes long, more than the "
            f"{MAX_LINE_BYTES:,} any record of the contract needs: the file is damaged or not "
            "a CSV export", rule="ingest.unreadable", file=path)

    inner, outer, untyped = typing_columns(table, by_norm, extras)
    # Parquet numbers its rows; for CSV a streaming row_number() over the ordered scan does
    # (preserve_insertion_order is on): both give the 1-based data row, header excluded.
    source = ("read_parquet($path, file_row_number = true)" if fmt == "parquet"
              else f"(select *, row_number() over () as __rn from "
                 f"{_reader(fmt, [c for c, _ in columns], delimiter)})")
    rn = "file_row_number + 1" if fmt == "parquet" else "__rn"
    sql = f"""
        insert into raw.{table.name}
        select {', '.join(outer)}, $load_id, _row_number, _extra, _u
        from (
            select *, {untyped} as _u
            from (select {', '.join(inner)}, {rn} as _row_number from {source})
        )
    """
    try:
        con.execute(sql, {"path": str(path), "load_id": load_id})
    except duckdb.Error as exc:
        if disk_full_error(exc) is not None or not _is_file_error(exc):
            raise  # transaction() rolls back and explains a full disk
        raise (_csv_error(exc, path) if fmt == "csv" else _parquet_error(exc, path)) from None
    # One scan of the load's rows: its counts, the first NHS-number-shaped pseudonym of
    # each pseudonymised column, and the identifier tests of its free-text and extra
    # columns (three scans before; the same answers, and the pseudonyms still judged first)
    pseudonyms = [c.name for c in table.columns if c.pseudonym and c.name in by_norm]
    identifiers = _IdentifierScan.of(
        table, {c.name: by_norm[c.name][0] for c in table.columns if c.name in by_norm},
        {n: by_norm[n][0] for n in extras})
    aggs = (["count(*) as n_rows", "count(_untyped) as n_untyped"]
            + [f"min(_row_number) filter (where {nhs_number_sql(_quote(c))}) as p{i}_first"
               for i, c in enumerate(pseudonyms)]
            + (identifiers.aggs if identifiers is not None else []))
    cur = con.execute(f"select {', '.join(aggs)} {_IdentifierScan.where(table)}", {"l": load_id})
    got = dict(zip([d[0] for d in cur.description], cur.fetchone()))
    n_rows, n_untyped = got["n_rows"], got["n_untyped"]
    for i, c in enumerate(pseudonyms):
        if got[f"p{i}_first"] is not None:
            raise OdevalError(
                "a value shaped like an NHS number (10 digits passing the Modulus 11 check): "
                "the extract is not pseudonymised and is refused whole",
                rule=f"{table.name}.{c}.nhs_number", file=path, column=c, row=got[f"p{i}_first"])
    if identifiers is not None:
        identifiers.judge(con, table, path, load_id, got)
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
            scan = _LineScan() if fmt == "csv" else None
            sha = sha256_of(path, scan)
            load_id = f"{table.name}-{sha[:16]}"
            seen = con.execute("select n_rows from meta.loads where load_id = $l",
                               {"l": load_id}).fetchone()
            if seen:
                report.loads.append(FileLoad(table=table.name, path=path, sha256=sha, format=fmt,
                                             load_id=load_id, status="unchanged", n_rows=seen[0]))
                continue
            report.loads.append(_load_file(con, table, path, fmt, sha, load_id, scan))
        runstate.record(con, "ingest")  # what raw now holds: the later stages check it
        if progress:
            progress(len(plan), len(plan), "done")
    return report
