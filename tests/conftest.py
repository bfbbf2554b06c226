"""Fixtures shared by every kind of test."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from pipeline.schemas import load_contract


def write_extract(folder: Path, rows: dict[str, list[dict]] | None = None, *,
                  columns: dict[str, list[str]] | None = None) -> Path:
    """Write a CSV extract: every contract table, header only unless rows are given.

    ``columns`` overrides a table's header (to drop or add columns).
    """
    folder.mkdir(parents=True, exist_ok=True)
    rows = rows or {}
    for name, table in load_contract().items():
        header = (columns or {}).get(name) or list(table.column_names)
        with open(folder / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=header, extrasaction="raise")
            w.writeheader()
            for r in rows.get(name, []):
                w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return folder


def snapshot(con) -> dict[str, list[str]]:
    """Every table's sorted rows: what 'the warehouse as it was' means."""
    out = {}
    for schema, table in con.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_catalog = current_database() order by 1, 2").fetchall():
        out[f"{schema}.{table}"] = sorted(map(repr, con.execute(
            f'select * from "{schema}"."{table}"').fetchall()))
    return out


@pytest.fixture
def extract(tmp_path):
    """A factory: ``extract(name, rows, columns=...)`` writes a small CSV extract."""

    def make(name: str = "extract", rows: dict | None = None, **kw) -> Path:
        return write_extract(tmp_path / name, rows, **kw)

    return make


# ----------------------------------------------------------------- reliability counts
# The reliability tests count what they tried (tests.reliability.tally); the counts are
# printed at the end of the run. Under pytest-xdist (`make test` runs one worker per core)
# each worker sends its counts to the controller, which prints the sum. Here, not in
# tests/reliability/conftest.py: the controller loads only this conftest.

def pytest_sessionfinish(session):
    from tests.reliability.tally import COUNTS

    out = getattr(session.config, "workeroutput", None)
    if out is not None:
        out["reliability_counts"] = [[s, w, n] for (s, w), n in COUNTS.items()]


def pytest_testnodedown(node, error):
    from tests.reliability.tally import COUNTS

    for s, w, n in getattr(node, "workeroutput", {}).get("reliability_counts", []):
        COUNTS[(s, w)] += n


def pytest_terminal_summary(terminalreporter):
    from tests.reliability.tally import COUNTS

    if not COUNTS:
        return
    terminalreporter.section("reliability counts")
    for (suite, what), n in sorted(COUNTS.items()):
        terminalreporter.write_line(f"{suite:<28} {what:<58} {n:>7,}")
