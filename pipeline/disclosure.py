"""Disclosure control for every output meant for people.

The rules (``disclosure:`` in params.yaml):

* **Primary suppression**: a count from ``suppress_min`` to ``suppress_max`` (1..7 by
  default) is never shown; zero is shown (a true zero discloses nothing about a person).
  A count whose complement is small (e.g. "all but 3 of the 212 people") is suppressed too,
  because the complement can be read off the total.
* **Rounding**: every other count is rounded to the nearest ``round_to`` (5), halves up, so
  8 and 9 become 10 and no shown count lies in 1..7.
* **Secondary suppression** (:func:`secondary_suppress`): where cells add up to a shown
  total (sites to a study total, arms to a site total, the levels of a variable to the
  number of people), a suppressed cell could be recovered by subtraction when it is the only
  suppressed cell of that sum; the smallest other non-zero cell is then suppressed as well,
  repeated until every sum has none or at least two suppressed cells. Every output of one
  count (CSV, HTML, JSON, figure) is drawn from the same suppressed grid, so a cell hidden
  in one table is hidden in all of them.
* **Estimates built on counts** (proportions, rates, means, their CIs) are suppressed with
  the count they rest on; percentages for people are computed from the rounded counts.
* **Curves** (Kaplan-Meier, cumulative incidence) are re-estimated from cumulative counts
  rounded to multiples of :func:`curve_step` (the smallest multiple of ``round_to`` above
  ``suppress_max``: 10 by default), :func:`rounded_curve_data`. Rounded cumulative counts
  never decrease, so the curves stay monotone, every visible step stands for at least
  ``curve_step`` people, and the numbers at risk are multiples of it.
* **No identifiers**: no person, staff, referral or contact identifier in any output
  (``odeval check-outputs`` scans ``reports/`` for them and for the rules above).

Suppressed cells are written :data:`SUPPRESSED` (``[c]``, the ONS convention) in CSV and
HTML, and ``null`` in JSON.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

DEFAULTS = {"suppress_min": 1, "suppress_max": 7, "round_to": 5}

#: Shown in place of a suppressed count (and of every estimate resting on it).
SUPPRESSED = "[c]"

#: Column / key names that hold counts of people or events in outputs meant for people:
#: ``n``, ``n_*``, ``*_n``, ``events``, ``*_events``, ``count``, ``*_count``. Every odeval
#: output names its counts so; :mod:`pipeline.check_outputs` checks them by this rule.
COUNT_NAME = re.compile(r"^(n|n_.+|.+_n|events|.+_events|count|.+_count)$")


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


# --------------------------------------------------------------------------- rounding

def round_count(n: int | float | None, cfg: dict[str, Any]) -> int | None:
    """A count for people: ``None`` when small (1..7), else rounded to ``round_to``.

    Rounding is to the nearest multiple, halves up (``12 -> 10``, ``13 -> 15``, ``8 -> 10``);
    zero stays zero. ``round_to`` of 0 or 1 leaves counts as they are.
    """
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return None
    n = int(n)
    if is_small(n, cfg):
        return None
    r = int(cfg.get("round_to") or 1)
    if r <= 1:
        return n
    return int(math.floor(n / r + 0.5)) * r


def allowed(n: int, cfg: dict[str, Any]) -> bool:
    """Whether ``n`` may appear as a count in an output for people (0, or rounded and > max)."""
    r = int(cfg.get("round_to") or 1)
    return n == 0 or (n > cfg["suppress_max"] and (r <= 1 or n % r == 0))


def fmt_count(n: int | None) -> str:
    """A rounded count as text for people (``None`` -> ``[c]``)."""
    return SUPPRESSED if n is None else f"{n:,}"


def percent(numerator: int | None, denominator: int | None, digits: int = 1) -> str:
    """A percentage for people from *rounded* counts (``[c]`` if either is suppressed)."""
    if numerator is None or denominator is None:
        return SUPPRESSED
    if denominator == 0:
        return ""
    return f"{100 * numerator / denominator:.{digits}f}"


# --------------------------------------------------------------------------- suppression

def primary(counts: dict[Hashable, int], cfg: dict[str, Any],
            totals: dict[Hashable, int] | None = None) -> set[Hashable]:
    """Cells whose count is small, or (with ``totals``) whose complement total - count is."""
    out = {k for k, n in counts.items() if is_small(n, cfg)}
    if totals:
        out |= {k for k, n in counts.items() if k in totals and is_small(totals[k] - n, cfg)}
    return out


def secondary_suppress(
    counts: dict[Hashable, int],
    constraints: Iterable[tuple[Hashable, Sequence[Hashable]]],
    suppressed: set[Hashable],
    priority: Callable[[Hashable], int] | None = None,
    cfg: dict[str, Any] | None = None,
) -> set[Hashable]:
    """Complementary suppression over additive constraints ``total = sum(parts)``.

    Two conditions, repeated to a fixed point: (1) no sum has exactly one hidden cell (it
    would be the total minus the shown cells); (2) where a sum's total is shown, the hidden
    cells of that sum do not add up to a small count (``suppress_min..suppress_max`` of
    ``cfg``, default 1..7): "3 + 2 hidden in a row of 20 with 15 shown" discloses the total
    5 of the two. Either way the smallest non-zero shown cell of the sum is hidden as well
    (the total where no part is left). This is the singleton / sum rule of secondary cell
    suppression (Hundepool et al. 2012, *Statistical Disclosure Control*, Wiley, ch. 4;
    the "sum2" singleton handling of Langsrud's Gaussian-elimination suppression, SSBtools
    ``GaussSuppression``); it is a heuristic, so ``odeval check-outputs --attack`` then solves
    the attacker's integer programme over every published table (as sdcTable's
    ``simpleheuristic`` audits its result) and fails if any hidden cell or hidden sum is
    still narrowed below the protection interval.

    Parameters
    ----------
    counts : ``{cell: exact count}`` for every cell shown (parts and totals).
    constraints : ``(total cell, [part cells])`` pairs; a total may be ``None`` when the sum
        is not shown (then nothing can be recovered from that sum and it is skipped).
    suppressed : cells already suppressed (primary).
    priority : optional ``priority(cell) -> int``; complementary cells are chosen among the
        unsuppressed non-zero cells of the constraint (parts and total) by lowest priority
        first, then smallest count (e.g. give margins priority 0 to hide a margin rather
        than the other arm of a comparison).

    Returns
    -------
    set : the suppressed cells, a superset of ``suppressed`` such that no constraint has
    exactly one suppressed cell. Without ``priority`` the extra cell is the smallest
    non-zero unsuppressed part (ties by the sort order of the keys), else the total.
    """
    small = settings(None) if cfg is None else cfg
    out = set(suppressed)
    constraints = [(t, list(p)) for t, p in constraints if t is not None]
    changed = True
    while changed:
        changed = False
        for total, parts in constraints:
            cells = [total, *parts]
            hidden_parts = [p for p in parts if p in out]
            small_sum = (total not in out and len(hidden_parts) >= 2
                         and is_small(sum(counts.get(p, 0) for p in hidden_parts), small))
            if sum(c in out for c in cells) != 1 and not small_sum:
                continue
            pool = parts if priority is None else cells
            candidates = sorted((c for c in pool if c not in out and counts.get(c, 0) > 0),
                                key=lambda c: (priority(c) if priority else 0, c == total,
                                               counts[c], str(c)))
            if candidates:
                out.add(candidates[0])
            elif total not in out:
                out.add(total)
            else:  # the total is the only suppressed cell and every part is 0: nothing hidden
                continue
            changed = True
    return out


def grid_constraints(rows: Sequence[Hashable], cols: Sequence[Hashable],
                     all_row: Hashable = "all", all_col: Hashable = "all"
                     ) -> list[tuple[Hashable, list[Hashable]]]:
    """Constraints of a two-way table with margins: cells are ``(row, col)`` keys.

    ``rows``/``cols`` exclude the margin labels ``all_row``/``all_col``.
    """
    cons: list[tuple[Hashable, list[Hashable]]] = []
    for r in [*rows, all_row]:
        cons.append(((r, all_col), [(r, c) for c in cols]))
    for c in [*cols, all_col]:
        cons.append(((all_row, c), [(r, c) for r in rows]))
    return cons


#: The three counts of a data-quality flow row: rows in (``all``) = clean + quarantined.
FLOW_KINDS = ("all", "clean", "quarantined")


def flow_suppress(by_site: dict[Hashable, Sequence[int]], cfg: dict[str, Any]
                  ) -> tuple[dict[tuple[Hashable, str], int], set[tuple[Hashable, str]]]:
    """The suppressed cells of one input table's data-quality flow, rows in = clean +
    quarantined per site, sites adding up to the ``all`` row.

    ``by_site``: ``{site: (rows in, clean, quarantined)}`` (exact, without the ``all`` row).
    Returns ``({(site, kind): exact count}, hidden cells)`` with ``kind`` in
    :data:`FLOW_KINDS` and the ``all`` row added. Every output of these counts (the
    data-quality report, metrics/data_quality.csv, the study report) hides the same cells,
    so none can be recovered from another output: primary suppression, then secondary over
    both sums (``all = clean + quarantined`` in a row, sites to ``all`` in a column).
    """
    vals: dict[tuple[Hashable, str], int] = {}
    for s, row in by_site.items():
        for kind, n in zip(FLOW_KINDS, row):
            vals[(s, kind)] = int(n)
    sites = sorted(by_site, key=str)
    for kind in FLOW_KINDS:
        vals[("all", kind)] = sum(vals[(s, kind)] for s in sites)
    cons = grid_constraints(sites, ["clean", "quarantined"])
    return vals, secondary_suppress(vals, cons, primary(vals, cfg))


def protect_grid(frame: pd.DataFrame, keys: Sequence[str], count: str, cfg: dict[str, Any], *,
                 total: str | None = None, constraints=None) -> pd.Series:
    """Rounded counts of one column of a long table, after primary and secondary suppression.

    Parameters
    ----------
    frame : one row per cell; ``keys`` identify the cell.
    count : the count column to protect.
    total : optional column of the denominator the count is part of (for complementary
        suppression of "all but a few").
    constraints : additive constraints over cell keys (tuples of the ``keys`` values), e.g.
        from :func:`grid_constraints`.

    Returns
    -------
    Series aligned with ``frame``: the rounded count, or ``None`` where suppressed.
    """
    cells = [tuple(r) for r in frame[list(keys)].itertuples(index=False, name=None)]
    values = {c: int(v) for c, v in zip(cells, frame[count].fillna(0))}
    tot = None
    if total is not None:
        tot = {c: int(v) for c, v in zip(cells, frame[total].fillna(0))}
    hidden = primary(values, cfg, tot)
    hidden = secondary_suppress(values, constraints or [], hidden)
    return pd.Series([None if c in hidden else round_count(values[c], cfg) for c in cells],
                     index=frame.index, dtype=object)


# --------------------------------------------------------------------------- curves

def curve_step(cfg: dict[str, Any]) -> int:
    """The multiple curve counts are rounded to: the smallest multiple of ``round_to``
    greater than ``suppress_max`` (10 by default)."""
    r = max(int(cfg.get("round_to") or 1), 1)
    return r * (cfg["suppress_max"] // r + 1)


def rounded_curve_data(df: pd.DataFrame, duration: str, event: str, cfg: dict[str, Any],
                       group: str | None = None) -> pd.DataFrame:
    """Pseudo person-level data whose curves are safe to show.

    Per group, the cumulative number of rows with each ``event`` code (0 censored, 1, 2, ...
    causes) up to each time is rounded to the nearest multiple of :func:`curve_step`; the
    returned frame has, at each time, as many rows of each code as the rounded cumulative
    count rises there. Any estimator (Kaplan-Meier, Aalen-Johansen) run on it gives a
    monotone curve in which every step and every number at risk is a multiple of the step.

    Returns
    -------
    DataFrame with columns ``duration``, ``event`` (and ``group``), sorted.
    """
    k = curve_step(cfg)
    # counts per (group,) time and code in one groupby (rows missing any of them dropped,
    # as a group's own groupby drops them); cumulated, rounded and differenced within
    # each group (a code absent from a group stays 0 there and gives no rows)
    if group is None:
        tab = df.groupby([duration, event]).size().unstack(event, fill_value=0).sort_index()
    else:
        # groups as their codes among the sorted labels (-1: missing), as groupby sorts them
        gcode, glabels = pd.factorize(df[group], sort=True)
        keep = gcode >= 0
        tab = (df.loc[keep, [duration, event]].groupby([gcode[keep], duration, event]).size()
               .unstack(event, fill_value=0).sort_index())
    within = (lambda x: x.groupby(level=0)) if group is not None else (lambda x: x)
    cum = within(tab).cumsum()
    rounded = (np.floor(cum / k + 0.5) * k).astype(int)
    inc = within(rounded).diff().fillna(rounded).astype(int).to_numpy()
    cols = [duration, event] + ([group] if group is not None else [])
    if not inc.sum():
        return pd.DataFrame(columns=cols)
    # rows by group, then code, then time (the order the sort below keeps for ties)
    n_rows, n_codes = inc.shape
    r = np.tile(np.arange(n_rows), n_codes)
    c = np.repeat(np.arange(n_codes), n_rows)
    g = tab.index.codes[0][r] if group is not None else np.zeros(len(r), dtype=int)
    o = np.lexsort((r, c, g))
    r, c, reps = r[o], c[o], inc[r[o], c[o]]
    codes = np.array([int(x) for x in tab.columns], dtype=np.int64)
    out = pd.DataFrame({duration: np.repeat(tab.index.get_level_values(duration).to_numpy()[r], reps),
                        event: np.repeat(codes[c], reps)})
    if group is not None:  # the type the labels themselves give, as a column of one label
        labels = np.asarray(glabels, dtype=object)[tab.index.get_level_values(0).to_numpy()]
        out[group] = np.repeat(labels[r], reps).tolist()
    return out.sort_values(cols[::-1] if group is not None else cols,
                           kind="mergesort").reset_index(drop=True)[cols]
