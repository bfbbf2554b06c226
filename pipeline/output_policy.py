"""The output policy: what each kind of published statistic needs before it is shown, and
at what precision. One module applies it; every output meant for people calls it.

Modelled on statistical disclosure control for research outputs: the ACRO/SACRO rules
(threshold, dominance and residual degrees of freedom per kind of statistic), the OpenSAFELY
output-checking rules (suppress counts of 7 or fewer, round to 5, no statistic computed from
a hidden count), and tau-Argus' protection intervals (a hidden cell must stay uncertain over
an interval, not only unseen). docs/output-policy.md has the table; this docstring is its
source.

==========================  =========================================  ====================
kind (function)             needs before it is shown                   shown at
==========================  =========================================  ====================
count (:func:`count`)       0, or more than ``suppress_max`` (7) and   nearest ``round_to``
                            not the complement of a small count;        (5)
                            secondary suppression so no hidden cell
                            or sum of hidden cells is worked out
percentage                  numerator and denominator shown            1 decimal, from the
(:func:`percentage`)                                                   rounded counts
mean / SD / median          n shown (> 7); a whole-number measure      ``mean_decimals``:
(:func:`mean`)              keeps every n of its rounding interval     at most
                            consistent                                 floor(log10(n_low))
                                                                       decimals
rate (:func:`rate`)         events and person-time shown               from rounded events
                                                                       over rounded
                                                                       person-years
model coefficient           every cell it rests on shown (each arm x   3 significant
(:func:`coefficient`)       site n and events > 7); residual df >= 5;  digits
                            inputs are published values
effect with CI              every cell it rests on shown; closed-form  3 significant
(:func:`effect`)            effects (risk difference, ratio) from the  digits
                            rounded counts
curve point                 re-estimated from counts rounded to the    1 decimal of a
(:func:`curve_point`)       curve step (10); within ``curve_tolerance``percentage, flagged
                            of the exact value and with an interval,   otherwise
                            else hidden and flagged
meta-analysis input         the site's cells all shown                 3 significant
(:func:`meta_input`)                                                   digits
histogram bar               cumulative counts of its group rounded to  multiples of the
(:func:`histogram`)         the curve step (10), differenced           curve step
text cell (:func:`text`)    no leading ``= + - @ tab CR`` (OWASP)      prefixed with ``'``
==========================  =========================================  ====================

Anything computed from cells that are suppressed elsewhere is either suppressed or computed
from the published (rounded) values. ``odeval check-outputs --attack``
(:mod:`pipeline.attack`) tests the result as an attacker would, against
:func:`protected`: a hidden count must keep a range of values at least as wide as the
suppression range (``suppress_max - suppress_min``), a rounded count its whole rounding
interval (``round_to`` values).

How a new analysis publishes: build the exact result, then make its public table cell by
cell with these functions (``count``, ``mean``, ``effect``, ...) passing the *public* counts
it rests on; write it with :func:`pipeline.report.write_table` (text cells pass through
:func:`text`); the attacker then runs over it in ``odeval report``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from pipeline import disclosure

#: Policy settings beyond ``disclosure:`` (params.yaml may override them there).
POLICY_DEFAULTS = {
    "curve_tolerance": 0.05,   # a curve point from rounded counts may differ by 5 points
    "min_residual_df": 5,      # models: residual degrees of freedom
    "effect_digits": 3,        # significant digits of effects, coefficients, meta inputs
}

_FORMULA = re.compile(r"^[=+\-@\t\r]")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|nan)$", re.I)


def settings(params_or_cfg: dict[str, Any] | None) -> dict[str, Any]:
    """The disclosure settings with the policy's defaults (a params dict or a cfg)."""
    p = params_or_cfg or {}
    cfg = disclosure.settings(p) if "disclosure" in p else {**disclosure.DEFAULTS, **p}
    return {**POLICY_DEFAULTS, **cfg}


# --------------------------------------------------------------------------- text

def is_formula(value: Any) -> bool:
    """Whether a published text cell would run as a spreadsheet formula: it starts with
    ``=``, ``+``, ``-``, ``@``, tab or carriage return and is not a number (OWASP CSV
    injection; negative numbers are left alone)."""
    if not isinstance(value, str) or not value:
        return False
    return bool(_FORMULA.match(value)) and not _NUMBER.match(value.strip())


def text(value: Any) -> Any:
    """A text cell made safe for spreadsheets: a formula-like string gets a leading ``'``
    (the OWASP rule); numbers and other strings are returned as they are."""
    if is_formula(value):
        return "'" + value
    return value


def neutralise(obj: Any) -> Any:
    """:func:`text` on every string (keys too) of a JSON-like object."""
    if isinstance(obj, dict):
        return {text(k) if isinstance(k, str) else k: neutralise(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [neutralise(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(neutralise(v) for v in obj)
    return text(obj)


# --------------------------------------------------------------------------- protection

def rounding_interval(c: int, cfg: dict[str, Any]) -> range:
    """The counts that are shown as ``c``."""
    r = int(cfg.get("round_to") or 1)
    if c == 0 or r <= 1:
        return range(c, c + 1)
    lo = c - r // 2
    if lo <= cfg["suppress_max"]:
        lo = cfg["suppress_max"] + 1
    return range(lo, c + (r - 1) // 2 + 1)


def protected(shown: str | None, feasible: Sequence[int], cfg: dict[str, Any]) -> bool:
    """Whether the values an attacker found for a count still cover its protection interval.

    A hidden count (``[c]``) must keep a range at least ``suppress_max - suppress_min``
    wide (it could be anything in a suppression range); a rounded count must keep its whole
    rounding interval (the attacker may not beat the rounding). Zero shown as zero is
    exact by design.
    """
    vals = sorted(set(int(v) for v in feasible))
    if not vals:
        return True
    t = (shown or "").strip().replace(",", "")
    try:
        c = int(float(t))
    except ValueError:
        c = None
    if c is None:  # hidden
        return vals[-1] - vals[0] >= cfg["suppress_max"] - cfg["suppress_min"]
    if c == 0:
        return True
    iv = rounding_interval(c, cfg)
    return vals[0] <= iv.start and vals[-1] >= iv.stop - 1


# --------------------------------------------------------------------------- statistics

def count(n: int | float | None, cfg: dict[str, Any]) -> int | None:
    """A count: ``None`` (shown ``[c]``) when small, else rounded to ``round_to``.
    Secondary suppression over the sums it takes part in is the caller's table's
    (:func:`pipeline.disclosure.secondary_suppress`)."""
    return disclosure.round_count(n, cfg)


#: A whole number followed by what it counts, in a note (``37 missing values``, ``1,404
#: people``): :func:`note_counts` rounds it. Counts of clusters, sites, levels and df are
#: design facts, not counts of people, and are left alone.
_NOTE_COUNT = re.compile(
    r"(?<![\w.\-])(?<!than )(?<!at most )(\d[\d,]*)"
    r"(?= (?:people|persons?|missing values?|rows?|records?|statuses|events?|deaths?|"
    r"admissions?|episodes?)\b)")


def note_counts(text: Any, cfg: dict[str, Any]) -> Any:
    """A published note with its counts of people, rows, records, events and missing values
    rounded as every published count is (``[c]``-sized counts written "fewer than k").

    Notes are free text written by the analyses; a count in one is published as surely as a
    table cell (``37 missing values`` beside a rounded n gives the exact n back). Text that
    is not a string is returned as it is."""
    if not isinstance(text, str):
        return text

    def one(m: re.Match) -> str:
        n = int(m.group(1).replace(",", ""))
        r = count(n, cfg)
        if r is None:
            return f"fewer than {cfg['suppress_max'] + 1}" if n else "0"
        return f"{r:,}"

    return _NOTE_COUNT.sub(one, text)


def percentage(numerator: int | None, denominator: int | None, digits: int = 1) -> float | None:
    """A percentage from the *published* (rounded) counts, or None when either is hidden."""
    if numerator is None or denominator is None or not denominator:
        return None
    return round(100 * numerator / denominator, digits)


def mean_decimals(n_public: int | None, cfg: dict[str, Any], whole_number: bool = True) -> int | None:
    """Decimals a mean, SD or median of ``n`` people may be shown to.

    For a whole-number measure (days, counts) a mean shown to ``d`` decimals stands for an
    interval 10^-d wide; times any n of the rounding interval it must span a whole number,
    so every such n stays consistent with the mean: ``10^d <= n_low``. None when the n is
    hidden (the statistic is then hidden too). Other measures get 2 decimals.
    """
    if n_public is None:
        return None
    if not whole_number:
        return 2
    lo = rounding_interval(int(n_public), cfg).start
    if lo < 1:
        return 0
    return max(0, min(2, int(math.floor(math.log10(lo)))))


def mean(value: float | None, n_public: int | None, cfg: dict[str, Any],
         whole_number: bool = True) -> float | None:
    """A mean (or SD, median, interval limit) rounded as :func:`mean_decimals` says."""
    d = mean_decimals(n_public, cfg, whole_number)
    if d is None or value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return round(float(value), d)


def rate(events_public: int | None, person_years: float | None) -> float | None:
    """A rate from the published events over whole person-years."""
    if events_public is None or person_years is None or not person_years:
        return None
    return events_public / float(round(person_years))


def significant(value: float | None, digits: int) -> float | None:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return value
    if value == 0:
        return 0.0
    return float(f"{value:.{digits}g}")


def cells_shown(cells: Iterable[int | None]) -> bool:
    """Whether every public count a statistic rests on is shown (none hidden)."""
    return all(c is not None and not (isinstance(c, float) and np.isnan(c)) for c in cells)


def effect(estimate: float | None, lower: float | None, upper: float | None,
           cells_public: Iterable[int | None], cfg: dict[str, Any]
           ) -> tuple[float | None, float | None, float | None]:
    """An effect with its interval: hidden (None) unless every cell it rests on is shown,
    then to ``effect_digits`` significant digits. A closed-form effect of counts (risk
    difference, risk ratio) is to be computed from the rounded counts by the caller."""
    if not cells_shown(cells_public):
        return None, None, None
    d = int(cfg.get("effect_digits", POLICY_DEFAULTS["effect_digits"]))
    return significant(estimate, d), significant(lower, d), significant(upper, d)


def coefficient(value: float | None, cells_public: Iterable[int | None], residual_df: float | None,
                cfg: dict[str, Any]) -> float | None:
    """A model coefficient or its standard error: hidden unless every cell is shown and the
    model has ``min_residual_df`` residual degrees of freedom."""
    if not cells_shown(cells_public):
        return None
    if residual_df is not None and residual_df < cfg.get("min_residual_df", 5):
        return None
    return significant(value, int(cfg.get("effect_digits", 3)))


def meta_input(estimate: float | None, se: float | None, cells_public: Iterable[int | None],
               cfg: dict[str, Any]) -> tuple[float | None, float | None]:
    """A site's estimate and standard error as input of a published meta-analysis."""
    cells = list(cells_public)
    e, _, _ = effect(estimate, None, None, cells, cfg)
    if e is None:
        return None, None
    return e, significant(se, int(cfg.get("effect_digits", 3)))


def curve_point(public: float | None, exact: float | None, lower: float | None,
                upper: float | None, cfg: dict[str, Any]) -> tuple[float | None, str]:
    """A curve point re-estimated from rounded counts, and its flag.

    Hidden with a flag when it has no interval, or differs from the exact value by more
    than ``curve_tolerance`` (a proportion): the rounded curve would mislead there."""
    tol = float(cfg.get("curve_tolerance", POLICY_DEFAULTS["curve_tolerance"]))
    if public is None or (isinstance(public, float) and np.isnan(public)):
        return None, ""
    if lower is None or (isinstance(lower, float) and np.isnan(lower)):
        return None, "rounded curve: no interval"
    if exact is not None and not np.isnan(exact) and abs(public - exact) > tol:
        return None, f"rounded curve: differs from the exact value by more than {tol:g}"
    return public, ""


def histogram(counts: Sequence[int], cfg: dict[str, Any]) -> list[int]:
    """The bars of one group's histogram (bins in order) for a figure: the cumulative counts
    rounded to the nearest multiple of :func:`pipeline.disclosure.curve_step` (10), then
    differenced, as the curves are (:func:`pipeline.disclosure.rounded_curve_data`). Every
    bar is a multiple of the step (or 0) and no bar or run of bars gives a small count:
    each cumulative count is known only to within half a step."""
    k = disclosure.curve_step(cfg)
    cum = np.cumsum(np.asarray(counts, dtype=np.int64))
    rounded = (np.floor(cum / k + 0.5) * k).astype(np.int64)
    return np.diff(np.r_[0, rounded]).tolist()


# --------------------------------------------------------------------------- from published values

def smd_from_public(counts: Sequence[Sequence[int | None]], totals: Sequence[int | None]) -> float:
    """A categorical SMD (Yang-Dalton, as Table 1's) from the *published* counts of each
    group (rows; ``None`` where hidden) and the published group sizes less the published
    missing: the hidden levels of a group are pooled into one level holding what the shown
    levels leave of the total (at least 0). NaN when a total is hidden. Anyone can
    recompute it from the tables, so it gives no hidden cell back."""
    from pipeline.stats.tableone import smd_from_counts

    if any(t is None for t in totals):
        return float("nan")
    # the levels shown in every group, and (when any is hidden) the rest pooled into one
    keep = [j for j in range(len(counts[0])) if all(row[j] is not None for row in counts)]
    pooled = len(keep) < len(counts[0])
    rows = []
    for row, tot in zip(counts, totals):
        levels = [int(row[j]) for j in keep]
        if pooled:
            levels.append(max(int(tot) - sum(levels), 0))
        rows.append(levels)
    return smd_from_counts(np.array(rows, float))


def smd_continuous_public(means: Sequence[float], sds: Sequence[float]) -> float:
    """A continuous SMD from the published means and SDs."""
    from pipeline.stats.tableone import smd_from_moments

    return smd_from_moments(list(means), [float(s) ** 2 for s in sds])
