"""E-values: how strong unmeasured confounding would have to be to explain an estimate away.

The E-value of a risk ratio is the minimum strength of association, on the risk ratio
scale, that an unmeasured confounder would need with both the treatment and the outcome,
conditional on the measured covariates, to move the estimate (or its confidence limit
nearest the null) to the null. Formulas as the R package EValue (``evalues.RR``,
``evalues.HR``, ``evalues.OR``, ``threshold``), which is not installed here: the goldens in
``tests/reference/weighting/`` code its formulas in R.
"""

from __future__ import annotations

import math

import pandas as pd

from pipeline.stats._result import Result

__all__ = ["EValueResult", "evalue", "to_risk_ratio"]

MEASURES = ("RR", "HR", "OR", "rate ratio")


def _threshold(x: float) -> float:
    """E-value of one risk ratio ``x`` against a true value of 1: ``x + sqrt(x (x - 1))``
    for ``x >= 1``, and the same for ``1 / x`` below 1 (EValue ``threshold``)."""
    if not math.isfinite(x) or x <= 0:
        return math.nan
    if x < 1:
        x = 1 / x
    return x + math.sqrt(x * (x - 1))


def to_risk_ratio(value: float, measure: str, rare: bool) -> float:
    """A hazard or odds ratio on the risk ratio scale (VanderWeele 2020; EValue ``toRR``):
    unchanged when the outcome is rare (< 15% by the end of follow-up); otherwise a hazard
    ratio becomes ``(1 - 0.5^sqrt(HR)) / (1 - 0.5^sqrt(1 / HR))`` and an odds ratio
    ``sqrt(OR)``. Risk and rate ratios are returned unchanged."""
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {MEASURES}")
    if not math.isfinite(value) or value <= 0 or rare or measure in ("RR", "rate ratio"):
        return value
    if measure == "HR":
        return (1 - 0.5 ** math.sqrt(value)) / (1 - 0.5 ** math.sqrt(1 / value))
    return math.sqrt(value)


class EValueResult(Result):
    """E-values of an estimate and its confidence interval (see :func:`evalue`).

    Attributes
    ----------
    table : DataFrame, one row
        ``measure, estimate, lower, upper`` (as given), ``rr, rr_lower, rr_upper`` (on the
        risk ratio scale), ``evalue_estimate, evalue_ci`` (E-value of the confidence limit
        nearest the null; 1 when the interval includes the null).
    evalue_estimate, evalue_ci : float
    """

    title = "E-value for unmeasured confounding"

    @property
    def table(self) -> pd.DataFrame:
        return self._frame


def evalue(estimate: float, lower: float | None = None, upper: float | None = None,
           measure: str = "RR", rare: bool = False) -> EValueResult:
    """E-values of a ratio estimate and of its confidence limit nearest the null.

    Parameters
    ----------
    estimate, lower, upper : float
        The ratio and its confidence limits (limits optional).
    measure : {"RR", "HR", "OR", "rate ratio"}
        Hazard and odds ratios are first converted to the risk ratio scale (see
        :func:`to_risk_ratio`); a rate ratio is treated as a risk ratio.
    rare : bool
        The outcome is rare (under 15% by the end of follow-up), so a hazard or odds ratio
        approximates the risk ratio as it is.

    Returns
    -------
    EValueResult

    Notes
    -----
    ``E = RR + sqrt(RR (RR - 1))`` for ``RR >= 1`` (for ``RR < 1``, of ``1 / RR``). For the
    interval, the E-value of the limit nearest the null, or 1 when the interval includes
    the null. An E-value says nothing about confounders already adjusted for; it is the
    joint strength (both associations at least E) that would be needed beyond them.

    References
    ----------
    VanderWeele TJ, Ding P. Sensitivity analysis in observational research: introducing
    the E-value. Ann Intern Med 2017;167:268-274. VanderWeele TJ. Optimal approximate
    conversions of odds ratios and hazard ratios to risk ratios. Biometrics 2020;76:
    746-752. Mathur MB, Ding P, Riddell CA, VanderWeele TJ. Web site and R package for
    computing E-values. Epidemiology 2018;29:e45-e47 (EValue).
    """
    lo = math.nan if lower is None else float(lower)
    hi = math.nan if upper is None else float(upper)
    est = float(estimate)
    if math.isfinite(lo) and math.isfinite(hi) and lo > hi:
        raise ValueError("the lower confidence limit exceeds the upper one")
    if (math.isfinite(lo) and est < lo) or (math.isfinite(hi) and est > hi):
        raise ValueError("the estimate must lie inside its confidence interval")
    rr, rr_lo, rr_hi = (to_risk_ratio(v, measure, rare) if math.isfinite(v) else math.nan
                        for v in (est, lo, hi))
    e_est = _threshold(rr)
    if rr > 1:
        limit = rr_lo
        crosses = math.isfinite(limit) and limit <= 1
    elif rr < 1:
        limit = rr_hi
        crosses = math.isfinite(limit) and limit >= 1
    else:
        limit, crosses = math.nan, True
    if not math.isfinite(limit) and not crosses:
        e_ci = math.nan
    else:
        e_ci = 1.0 if crosses else _threshold(limit)
    table = pd.DataFrame([dict(measure=measure, estimate=est, lower=lo, upper=hi, rr=rr,
                               rr_lower=rr_lo, rr_upper=rr_hi, evalue_estimate=e_est,
                               evalue_ci=e_ci)])
    notes = []
    if measure in ("HR", "OR"):
        notes.append(f"{measure} taken as a risk ratio (rare outcome)." if rare else
                     f"{measure} converted to the risk ratio scale for a common outcome "
                     "(VanderWeele 2020).")
    res = EValueResult(table, notes)
    res.evalue_estimate, res.evalue_ci = e_est, e_ci
    return res
