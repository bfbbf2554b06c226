"""Errors that stop a run with a message a person can act on.

Every fatal problem in odeval is an :class:`OdevalError` naming where it is (file, row,
column) and which rule it broke. The CLI prints it without a traceback and exits 2.
"""

from __future__ import annotations

from pathlib import Path


class OdevalError(Exception):
    """A fatal, explained problem: the run stops and the warehouse is left as it was."""

    def __init__(
        self,
        message: str,
        *,
        rule: str,
        file: str | Path | None = None,
        column: str | None = None,
        row: int | None = None,
    ):
        self.message = message
        self.rule = rule
        self.file = str(file) if file is not None else None
        self.column = column
        self.row = row
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(f"file {self.file}")
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column:
            where.append(f"column {self.column}")
        loc = ", ".join(where)
        return f"{loc + ': ' if loc else ''}{self.message} [rule {self.rule}]"


class WarehouseInUse(OdevalError):
    """Another process holds the warehouse open for writing."""


def existing_folder(path: str | Path, *, rule: str, what: str = "folder") -> Path:
    """``path`` when it is a folder; else one line saying that nothing is there (missing)
    or that a file is there instead."""
    p = Path(path)
    if not p.exists():
        raise OdevalError(f"missing: no {what} at this path", rule=rule, file=p)
    if not p.is_dir():
        raise OdevalError(f"{what} expected, but this is a file", rule=rule, file=p)
    return p
