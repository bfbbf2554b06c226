"""Fault injection (``faults=RATE``) and the ``faults.csv`` listing."""

from __future__ import annotations

from pathlib import Path

FAULT_COLUMNS = ["table", "row_number", "key", "rule", "expect", "origin"]


def write_empty(path: Path) -> None:
    Path(path).write_text(",".join(FAULT_COLUMNS) + "\n", encoding="utf-8")
