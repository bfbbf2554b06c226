"""The input contract, read from ``schemas/*.yaml``.

This module only parses and checks the YAML files; it knows no rule of its own. The
generator, ingest and validation stages all read their rules from here, so the contract
lives in one place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from pipeline.config import SCHEMAS_DIR

TYPES = ("text", "int", "float", "bool", "date", "timestamp", "time")

#: DuckDB type of each contract type.
DUCKDB_TYPES = {
    "text": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "time": "TIME",  # no contract column; the MHSDS import's times of day (CareContTime, ...)
}

#: Order in which tables are loaded and validated (referenced tables first).
TABLE_ORDER = (
    "people",
    "staff",
    "referrals",
    "contacts",
    "contact_staff",
    "admissions",
    "detentions",
    "crisis_episodes",
    "prescriptions",
    "employment",
)


@dataclass(frozen=True)
class OpenMax:
    """The plausible maximum length, in days, of a record left open (no end date).

    ``days`` applies to every row; with ``by`` (a column of the same table), ``values``
    gives the maximum per value of that column and rows with other values have none.
    Read by the data-quality report (open records beyond it are counted) and by the derive
    stage when ``derive.open_end`` caps a table's open records at it.
    """

    days: int | None = None
    by: str | None = None
    values: tuple[tuple[str, int], ...] = ()

    def rows(self) -> list[tuple[str | None, int]]:
        """``[(value of by or None for every row, days)]``."""
        return [(None, self.days)] if self.by is None else list(self.values)


@dataclass(frozen=True)
class Column:
    """One column of an input table, as the contract defines it."""

    name: str
    type: str
    required: bool
    description: str = ""
    vocabulary: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    min_exclusive: float | None = None
    references: tuple[str, str] | None = None  # (table, column)
    not_before: str | None = None
    pseudonym: bool = False
    event_date: bool = False
    period_end: bool = False              # ends the period the table's event_date starts
    open_max_days: OpenMax | None = None  # period ends: plausible maximum of an open record

    @property
    def duckdb_type(self) -> str:
        return DUCKDB_TYPES[self.type]


@dataclass(frozen=True)
class Check:
    """A row rule written as a SQL boolean that must not be false."""

    id: str
    category: str
    sql: str
    message: str


@dataclass(frozen=True)
class Table:
    """One input table of the contract."""

    name: str
    grain: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    checks: tuple[Check, ...] = ()
    source: str = ""
    description: str = ""
    path: Path | None = field(default=None, compare=False)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    @property
    def period(self) -> tuple[Column, Column] | None:
        """(start, end) of the period a row records (its event_date and period_end columns),
        or None for tables of events without a duration."""
        end = next((c for c in self.columns if c.period_end), None)
        start = next((c for c in self.columns if c.event_date), None)
        return (start, end) if end and start else None

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")


class SchemaError(ValueError):
    """A schema file breaks the schema format."""


def _parse_column(table: str, raw: dict) -> Column:
    name = raw.get("name")
    if not name:
        raise SchemaError(f"schemas/{table}.yaml: a column has no name")
    ctype = raw.get("type")
    if ctype not in TYPES:
        raise SchemaError(f"schemas/{table}.yaml: column {name}: type {ctype!r} is not one of {TYPES}")
    refs = raw.get("references")
    if refs is not None:
        parts = str(refs).split(".")
        if len(parts) != 2:
            raise SchemaError(f"schemas/{table}.yaml: column {name}: references must be table.column")
        refs = (parts[0], parts[1])
    vocab = raw.get("vocabulary")
    known = {"name", "type", "required", "description", "vocabulary", "min", "max",
             "min_exclusive", "references", "not_before", "pseudonym", "event_date",
             "period_end", "open_max_days"}
    unknown = set(raw) - known
    if unknown:
        raise SchemaError(f"schemas/{table}.yaml: column {name}: unknown keys {sorted(unknown)}")
    return Column(
        name=name,
        type=ctype,
        required=bool(raw.get("required", False)),
        description=str(raw.get("description", "")).strip(),
        vocabulary=tuple(str(v) for v in vocab) if vocab is not None else None,
        min=raw.get("min"),
        max=raw.get("max"),
        min_exclusive=raw.get("min_exclusive"),
        references=refs,
        not_before=raw.get("not_before"),
        pseudonym=bool(raw.get("pseudonym", False)),
        event_date=bool(raw.get("event_date", False)),
        period_end=bool(raw.get("period_end", False)),
        open_max_days=_parse_open_max(table, name, raw.get("open_max_days")),
    )


def _parse_open_max(table: str, column: str, raw) -> OpenMax | None:
    """``open_max_days: 365`` or ``open_max_days: {by: <column>, days: {<value>: N, ...}}``."""
    if raw is None:
        return None
    where = f"schemas/{table}.yaml: column {column}: open_max_days"

    def whole(v) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise SchemaError(f"{where} must be whole numbers of days >= 0, got {v!r}")
        return v

    if isinstance(raw, dict):
        if set(raw) != {"by", "days"} or not isinstance(raw["days"], dict):
            raise SchemaError(f"{where}: a mapping needs exactly `by` and `days` (value: days)")
        return OpenMax(by=str(raw["by"]),
                       values=tuple((str(k), whole(v)) for k, v in raw["days"].items()))
    return OpenMax(days=whole(raw))


def load_table(path: Path) -> Table:
    """Parse one ``schemas/<table>.yaml`` file."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    name = raw["table"]
    if name != path.stem:
        raise SchemaError(f"{path}: table {name!r} must match the file name")
    columns = tuple(_parse_column(name, c) for c in raw["columns"])
    names = [c.name for c in columns]
    if len(set(names)) != len(names):
        raise SchemaError(f"{path}: duplicate column names")
    for k in raw["key"]:
        if k not in names:
            raise SchemaError(f"{path}: key column {k!r} is not a column")
    for c in columns:
        if c.not_before and c.not_before not in names:
            raise SchemaError(f"{path}: {c.name}.not_before names unknown column {c.not_before!r}")
        if c.open_max_days and not c.period_end:
            raise SchemaError(f"{path}: {c.name}: open_max_days needs period_end: true")
        if c.open_max_days and c.open_max_days.by and c.open_max_days.by not in names:
            raise SchemaError(f"{path}: {c.name}.open_max_days.by names unknown column "
                              f"{c.open_max_days.by!r}")
    checks = tuple(
        Check(id=c["id"], category=c["category"], sql=c["sql"], message=c["message"])
        for c in raw.get("checks", [])
    )
    return Table(
        name=name,
        grain=raw["grain"],
        key=tuple(raw["key"]),
        columns=columns,
        checks=checks,
        source=raw.get("source", ""),
        description=str(raw.get("description", "")).strip(),
        path=path,
    )


@lru_cache(maxsize=4)
def load_contract(schemas_dir: Path = SCHEMAS_DIR) -> dict[str, Table]:
    """All tables of the contract, in load order (referenced tables first)."""
    tables = {p.stem: load_table(p) for p in sorted(Path(schemas_dir).glob("*.yaml"))
              if p.stem != "identifiers"}
    missing = set(TABLE_ORDER) - set(tables)
    extra = set(tables) - set(TABLE_ORDER)
    if missing or extra:
        raise SchemaError(f"{schemas_dir}: tables missing {sorted(missing)}, unexpected {sorted(extra)}")
    for t in tables.values():
        for c in t.columns:
            if c.references:
                rt, rc = c.references
                if rt not in tables or rc not in tables[rt].column_names:
                    raise SchemaError(f"schemas/{t.name}.yaml: {c.name} references unknown {rt}.{rc}")
    return {name: tables[name] for name in TABLE_ORDER}


@lru_cache(maxsize=4)
def forbidden_columns(schemas_dir: Path = SCHEMAS_DIR) -> frozenset[str]:
    """Column names that mean an extract carries real identifiers."""
    raw = yaml.safe_load((Path(schemas_dir) / "identifiers.yaml").read_text(encoding="utf-8"))
    return frozenset(raw["forbidden_columns"])


def normalise_column_name(name: str) -> str:
    """Lower case, surrounding space removed, runs of non-alphanumerics as one ``_``."""
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")
