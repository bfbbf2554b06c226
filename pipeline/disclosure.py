"""Disclosure control for every output meant for people.

Counts from ``suppress_min`` to ``suppress_max`` (1..7 by default) are suppressed; zero is
shown (a true zero discloses nothing about a person). Rounding and secondary suppression
for published tables live with the metrics that need them.
"""

from __future__ import annotations

from typing import Any

DEFAULTS = {"suppress_min": 1, "suppress_max": 7, "round_to": 5}


def settings(params: dict[str, Any] | None) -> dict[str, Any]:
    """The ``disclosure:`` section of params.yaml over the defaults."""
    return {**DEFAULTS, **((params or {}).get("disclosure") or {})}


def is_small(n: int | None, cfg: dict[str, Any]) -> bool:
    return n is not None and cfg["suppress_min"] <= n <= cfg["suppress_max"]


def show_count(n: int | None, cfg: dict[str, Any]) -> str:
    """A count as text for people: small counts become ``'<=7'`` (with the threshold)."""
    if n is None:
        return ""
    if is_small(n, cfg):
        return f"<={cfg['suppress_max']}"
    return f"{n:,}"


def count_or_none(n: int | None, cfg: dict[str, Any]) -> int | None:
    """A count for machine-readable outputs: small counts become ``None`` (null)."""
    return None if is_small(n, cfg) else n
