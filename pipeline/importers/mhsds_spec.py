"""What the MHSDS import reads: tables, columns and code lists (``pipeline/reference/mhsds/``).

This module only parses and checks ``tables.yaml`` and the code-list CSVs (and a user's
local mapping files); it knows no rule of its own. See ``pipeline/reference/mhsds/README.md``.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from pipeline.errors import OdevalError
from pipeline.schemas import Column, Table, load_contract, normalise_column_name

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "reference" / "mhsds"
CODE_LIST_COLUMNS = ("code", "meaning", "contract_value", "mhsds_versions", "source", "source_date")
LOCAL_MAPPING_COLUMNS = ("list", "code", "contract_value")
#: contract_value meaning "the code says the row is not an event of that contract table"
NOT_CARRIED = "-"


@dataclass(frozen=True)
class SourceColumn:
    """One column the import reads, under each name the MHSDS versions gave it."""

    name: str                      # the import's own name (person_id, spell_id, ...)
    names: tuple[str, ...]         # as the specifications write them (Person_ID, ...)
    type: str
    required: bool = False
    pseudonym: bool = False
    code_list: str | None = None
    versions: str = ""

    @property
    def raw_names(self) -> tuple[str, ...]:
        """The names as ingest normalises input headers (lower case, '_')."""
        return tuple(normalise_column_name(n) for n in self.names)

    @property
    def shown(self) -> str:
        return " or ".join(self.names)


@dataclass(frozen=True)
class SourceTable:
    """One MHSDS table (or the allocation list) and what identifies a record in it."""

    name: str
    required: bool
    record: tuple[str, ...]
    columns: dict[str, SourceColumn]
    set: bool = False
    row_id: str | None = None

    @property
    def raw_table(self) -> str:
        return self.name.lower()

    def raw_column(self, name: str) -> str:
        """Where ingest's loader keeps a raw name: it is the normalised MHSDS name."""
        return name

    def ingest_table(self) -> Table:
        """The table as :mod:`pipeline.ingest` loads it: one column per MHSDS name.

        A column with several names is optional here (a file holds one of them); the
        import checks that one is present.
        """
        cols, seen = [], set()
        for c in self.columns.values():
            for raw in c.raw_names:
                if raw in seen:
                    continue
                seen.add(raw)
                cols.append(Column(name=raw, type=c.type, required=c.required and len(c.names) == 1,
                                   pseudonym=c.pseudonym))
        return Table(name=self.raw_table, grain=f"{self.name} as delivered", key=(),
                     columns=tuple(cols), source=self.name)


@dataclass(frozen=True)
class CodeRow:
    code: str
    meaning: str
    contract_value: str
    versions: str
    source: str
    source_date: str
    origin: str                      # the file the row comes from


@dataclass
class CodeList:
    """A code list and where its values go in the contract."""

    name: str
    contract: str                    # contract table.column it fills
    unmapped: str | None             # value for a code not in the list (None: not reported)
    allowed: tuple[str, ...]         # contract values a row may give
    exclude: bool = False            # whether "-" (row not carried) is allowed
    rows: dict[str, CodeRow] = field(default_factory=dict)  # by code_key(code)
    file: Path | None = None
    overridden: list[str] = field(default_factory=list)     # codes a local mapping changed


def code_key(code: str) -> str:
    """The form codes are compared in: trimmed, upper case, leading zeros of an all-digit
    code dropped (Parquet files may hold code '02' as the integer 2).

    Must equal the SQL macro ``code_key`` of :mod:`pipeline.importers.mhsds`.
    """
    c = str(code).strip().upper()
    if re.fullmatch(r"[0-9]+", c):
        c = c.lstrip("0") or "0"
    return c


@dataclass(frozen=True)
class Spec:
    tables: dict[str, SourceTable]
    allocation: SourceTable
    lists: dict[str, dict]             # code_lists: section of tables.yaml


def _column(name: str, raw: dict, where: str) -> SourceColumn:
    known = {"names", "type", "required", "pseudonym", "code_list", "versions"}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"{where}: column {name}: unknown keys {sorted(unknown)}")
    return SourceColumn(name=name, names=tuple(raw["names"]), type=raw["type"],
                        required=bool(raw.get("required", False)),
                        pseudonym=bool(raw.get("pseudonym", False)),
                        code_list=raw.get("code_list"), versions=str(raw.get("versions") or ""))


@lru_cache(maxsize=2)
def load_spec(path: Path = REFERENCE_DIR / "tables.yaml") -> Spec:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    common = {n: _column(n, c, f"{path} common") for n, c in raw["common"].items()}
    tables = {}
    for tname, t in raw["tables"].items():
        cols = {n: _column(n, c, f"{path} {tname}") for n, c in t["columns"].items()}
        cols.update(common)
        record = tuple(t["record"])
        missing = [r for r in record if r not in cols]
        if missing:
            raise ValueError(f"{path}: {tname}: record columns {missing} are not columns")
        tables[tname] = SourceTable(name=tname, required=bool(t["required"]), record=record,
                                    columns=cols, set=bool(t.get("set", False)),
                                    row_id=t.get("row_id"))
    alloc = {n: _column(n, c, f"{path} allocation") for n, c in raw["allocation"].items()}
    allocation = SourceTable(name="allocation", required=True, record=("person_id",), columns=alloc)
    return Spec(tables=tables, allocation=allocation, lists=raw["code_lists"])


def _allowed(spec_entry: dict) -> tuple[str, ...]:
    if "values" in spec_entry:
        return tuple(spec_entry["values"])
    table, column = spec_entry["contract"].split(".")
    col = load_contract()[table].column(column)
    if col.type == "bool":
        return ("true", "false")
    return tuple(col.vocabulary or ())


def _read_csv(path: Path, expected: tuple[str, ...]) -> list[dict[str, str]]:
    try:
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            header = tuple(reader.fieldnames or ())
            missing = [c for c in expected if c not in header]
            if missing:
                raise OdevalError(f"the header lacks {', '.join(missing)} (it must have "
                                  f"{', '.join(expected)})", rule="mhsds.code_list.header",
                                  file=path, column=missing[0])
            return list(reader)
    except (OSError, UnicodeDecodeError) as exc:
        raise OdevalError(f"cannot read the code list: {exc}", rule="mhsds.code_list.unreadable",
                          file=path) from None


def _check_value(cl: CodeList, value: str, path: Path, row: int) -> None:
    ok = value in cl.allowed or value == "" or (value == NOT_CARRIED and cl.exclude)
    if not ok:
        raise OdevalError(f"contract value {value!r} of list {cl.name} is not one of "
                          f"{', '.join(cl.allowed)} (or empty: no contract value)",
                          rule="mhsds.code_list.value", file=path, row=row, column="contract_value")


def load_code_lists(mappings: tuple[Path, ...] | list[Path] = (),
                    reference_dir: Path = REFERENCE_DIR) -> dict[str, CodeList]:
    """Every code list of ``tables.yaml``, with the user's local mapping files applied.

    A local mapping file (CSV: ``list,code,contract_value`` and optionally ``meaning``)
    adds codes to a list or changes what a code maps to; every change is recorded in
    :attr:`CodeList.overridden` and shown in the import report.
    """
    spec = load_spec()
    lists: dict[str, CodeList] = {}
    for name, entry in spec.lists.items():
        path = reference_dir / f"{name}.csv"
        cl = CodeList(name=name, contract=entry["contract"], unmapped=entry.get("unmapped"),
                      allowed=_allowed(entry), exclude=bool(entry.get("exclude")), file=path)
        for i, r in enumerate(_read_csv(path, CODE_LIST_COLUMNS), start=1):
            key = code_key(r["code"])
            if key in cl.rows:
                raise OdevalError(f"code {r['code']!r} is listed twice (as {cl.rows[key].code!r})",
                                  rule="mhsds.code_list.duplicate", file=path, row=i, column="code")
            _check_value(cl, r["contract_value"], path, i)
            cl.rows[key] = CodeRow(r["code"].strip(), r["meaning"], r["contract_value"],
                                   r["mhsds_versions"], r["source"], r["source_date"], path.name)
        lists[name] = cl
    for mp in mappings:
        mp = Path(mp)
        rows = _read_csv(mp, LOCAL_MAPPING_COLUMNS)
        seen: set[tuple[str, str]] = set()
        for i, r in enumerate(rows, start=1):
            name = (r["list"] or "").strip()
            if name not in lists:
                raise OdevalError(f"no code list named {name!r}; the lists are "
                                  f"{', '.join(sorted(lists))}", rule="mhsds.mapping.list",
                                  file=mp, row=i, column="list")
            cl = lists[name]
            code = (r["code"] or "").strip()
            if not code:
                raise OdevalError("empty code", rule="mhsds.mapping.code", file=mp, row=i, column="code")
            key = code_key(code)
            if (name, key) in seen:
                raise OdevalError(f"code {code!r} of list {name} is mapped twice in this file",
                                  rule="mhsds.mapping.duplicate", file=mp, row=i, column="code")
            seen.add((name, key))
            value = (r["contract_value"] or "").strip()
            _check_value(cl, value, mp, i)
            if key in cl.rows:
                cl.overridden.append(code)
            cl.rows[key] = CodeRow(code, (r.get("meaning") or "").strip() or "(local mapping)",
                                   value, "local", (r.get("source") or "").strip() or f"local mapping {mp.name}",
                                   "", mp.name)
    return lists
