"""Counts the reliability tests report at the end of the run (see conftest.py)."""

from __future__ import annotations

from collections import Counter

#: ``(suite, what) -> count``, e.g. ``("fuzz csv", "inputs tried")``.
COUNTS: Counter[tuple[str, str]] = Counter()


def count(suite: str, what: str, n: int = 1) -> None:
    COUNTS[(suite, what)] += n
