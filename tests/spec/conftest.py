"""Helpers for the derive spec tests: clean tables from small readable rows.

Rows are given either as a list of dicts or as an ASCII table::

    people = '''
      person_id | index_date | data_end_date | death_date
      p1        | +0         | +900          | +100
    '''

Empty cells are missing values. In date and timestamp columns ``+N`` (or ``-N``) means N days after
(before) :data:`D0`, the default index date, and ``+N 09:30`` a time on that day, so a rule can be
read in study days. Every clean table of the contract is created with the schema's
columns (DuckDB types) and the lineage columns; tables not given stay empty. Required
columns a test does not care about take the values in :data:`FILL`.
"""

from __future__ import annotations

import datetime as dt

import duckdb

from pipeline.derive import derive
from pipeline.schemas import load_contract

D0 = dt.date(2021, 1, 4)

#: Values for required columns a spec leaves out (never the columns a rule is about).
FILL = {
    "people": {"site_id": "s1", "arm": "open_dialogue", "sex": "female",
               "diagnosis_group": "psychosis", "index_date": "+0", "data_end_date": "+1000"},
    "referrals": {"received_at": "+0 09:00"},
    "contacts": {"contact_type": "network_meeting", "location": "home", "attended": "true"},
    "staff": {"site_id": "s1", "role": "nurse"},
    "admissions": {"admission_method": "emergency"},
    "detentions": {},
    "crisis_episodes": {},
    "prescriptions": {"route": "oral", "daily_dose_mg": "10"},
    "employment": {},
    "contact_staff": {},
    "clusters": {"site_id": "s1", "arm": "open_dialogue"},
}

_counters: dict[str, int] = {}


def parse_table(text: str) -> list[dict[str, str | None]]:
    """Rows of an ASCII table (``|`` between cells, none at the ends; first line the header)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    lines = [ln for ln in lines if not set(ln) <= set("-|+ ")]
    header = [h.strip() for h in lines[0].split("|")]
    rows = []
    for ln in lines[1:]:
        cells = [c.strip() for c in ln.split("|")]
        assert len(cells) == len(header), f"row {ln!r} does not match header {header}"
        rows.append({h: (c if c != "" else None) for h, c in zip(header, cells, strict=True)})
    return rows


def _value(value, ctype: str):
    if isinstance(value, str) and value[:1] in ("+", "-") and ctype in ("date", "timestamp"):
        days, _, clock = value.partition(" ")
        day = D0 + dt.timedelta(days=int(days))
        if ctype == "date":
            return day.isoformat()
        return f"{day.isoformat()} {clock or '00:00'}"
    return value


def create_clean(con: duckdb.DuckDBPyConnection, **tables) -> None:
    """Create every ``clean.<table>``; fill the ones given (rows or ASCII table)."""
    con.execute("CREATE SCHEMA IF NOT EXISTS clean")
    for name, table in load_contract().items():
        cols = ", ".join(f'"{c.name}" {c.duckdb_type}' for c in table.columns)
        extra = ", _extra MAP(VARCHAR, VARCHAR)" if table.keep_extra else ""
        con.execute(f"CREATE OR REPLACE TABLE clean.{name} ({cols}, "
                    f"_load_id VARCHAR, _row_number BIGINT{extra})")
        rows = tables.get(name)
        if rows is None:
            continue
        if isinstance(rows, str):
            rows = parse_table(rows)
        types = {c.name: c.type for c in table.columns}
        groups: dict[tuple[str, ...], list[list]] = {}
        for i, row in enumerate(rows, start=1):
            unknown = set(row) - set(types)
            assert not unknown, f"{name}: no such columns {unknown}"
            full = {**FILL[name], **row}
            for key in table.key:  # surrogate ids for keys a spec does not care about
                if key not in full and key.endswith("_id"):
                    full[key] = f"{name}-{i}"
            names = tuple(full)
            groups.setdefault(names, []).append(
                [_value(full[n], types[n]) for n in names] + [i])
        for names, values in groups.items():
            marks = ", ".join(f"CAST(? AS {table.column(n).duckdb_type})" for n in names)
            con.executemany(
                f"INSERT INTO clean.{name} ({', '.join(names)}, _load_id, _row_number) "
                f"VALUES ({marks}, 'spec', ?)", values)


def run_derive(params: dict | None = None, **tables) -> duckdb.DuckDBPyConnection:
    """A fresh in-memory warehouse with the given clean rows, derived."""
    con = duckdb.connect()
    create_clean(con, **tables)
    derive(con, params)
    return con


def by_person(con, relation: str, column: str, where: str = "true", key: str = "person_id") -> dict:
    """``{person_id: value}`` of one column of a derived relation."""
    return dict(con.execute(
        f"select {key}, {column} from derived.{relation} where {where} order by {key}"
    ).fetchall())


def tte(con, outcome: str, column: str) -> dict:
    """``{person_id: value}`` of one column of derived.time_to_event for one outcome."""
    return dict(con.execute(
        f"select person_id, {column} from derived.time_to_event where outcome = ? "
        "order by person_id", [outcome]).fetchall())
