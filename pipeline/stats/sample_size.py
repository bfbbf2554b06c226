"""Analytic power and sample size for two-arm trials, individually or cluster randomised.

The formulas a trial statistician checks a simulation against (``odeval power`` shows them
beside its simulated power, :mod:`pipeline.simulation.power`):

* :func:`design_effect`: the variance inflation of a cluster-randomised trial, ``1 + (m -
  1) rho`` for clusters of ``m`` people and intracluster correlation ``rho``, and with
  cluster sizes of mean ``m`` and coefficient of variation ``cv`` (population SD / mean)
  Eldridge, Ashby and Kerry's ``1 + ((cv^2 + 1) m - 1) rho``. The second is exact for the
  size-weighted mean of cluster means: ``(cv^2 + 1) m = sum m_j^2 / sum m_j``.
* :func:`schoenfeld_events` and :func:`schoenfeld_power`: the number of events a log-rank
  test or Cox model needs for a hazard ratio, ``(z_{1-a/2} + z_{1-b})^2 / (p (1 - p)
  log(HR)^2)`` with a share ``p`` of people in one arm (Schoenfeld 1983), and the power
  that a given number of events gives, optionally deflated by a design effect.
* :func:`two_proportions_power`: the normal-approximation power of comparing two
  proportions, with the pooled variance under the null and the unpooled one under the
  alternative (Fleiss; R ``power.prop.test`` when the arms are equal), optionally
  deflated by a design effect.

Every power function takes ``df``: ``None`` is the normal reference the formulas assume;
a number replaces it by a t distribution on ``df`` degrees of freedom (the critical value
``t_{df, 1-a/2}``, the power from the noncentral t with noncentrality ``delta / se``), the
reference a few-cluster analysis actually uses (e.g. ``clusters - sites - 1`` for a
cluster-level analysis). With many clusters the two agree; with few they part.

References
----------
Schoenfeld DA. Sample-size formula for the proportional-hazards regression model.
Biometrics 1983;39:499-503. Eldridge SM, Ashby D, Kerry S. Sample size for cluster
randomized trials: effect of coefficient of variation of cluster size and analysis method.
Int J Epidemiol 2006;35:1292-1300. Donner A, Klar N. Design and Analysis of Cluster
Randomization Trials in Health Research. Arnold 2000. Fleiss JL, Levin B, Paik MC.
Statistical Methods for Rates and Proportions, 3rd ed. Wiley 2003 (chapter 4).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

__all__ = ["design_effect", "schoenfeld_events", "schoenfeld_power", "two_proportions_power",
           "normal_power"]


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")


def design_effect(m: float, icc: float, cv: float = 0.0) -> float:
    """Design effect of a cluster-randomised trial: ``1 + ((cv^2 + 1) m - 1) icc``.

    Parameters
    ----------
    m : float
        Mean number of people (analysed) per cluster.
    icc : float
        Intracluster correlation of the outcome on the scale analysed (for a binary
        outcome or an event indicator, the correlation of the 0/1 values).
    cv : float
        Coefficient of variation of the cluster sizes (population SD / mean; 0 = equal).
    """
    if m < 1:
        raise ValueError("m must be >= 1")
    if not 0 <= icc < 1:
        raise ValueError("icc must be in [0, 1)")
    if cv < 0:
        raise ValueError("cv must be >= 0")
    return 1.0 + ((cv**2 + 1.0) * m - 1.0) * icc


def normal_power(ncp: float, alpha: float = 0.05, df: float | None = None, crit_scale: float = 1.0) -> float:
    """Two-sided power of a test whose statistic is normal (``df=None``) or t on ``df``
    degrees of freedom with noncentrality ``ncp``; ``crit_scale`` multiplies the critical
    value (the ratio of the null to the alternative standard error, 1 when they agree)."""
    _check_alpha(alpha)
    ncp = abs(float(ncp))
    if df is None or not np.isfinite(df):
        z = stats.norm.ppf(1 - alpha / 2) * crit_scale
        return float(stats.norm.sf(z - ncp) + stats.norm.cdf(-z - ncp))
    if df <= 0:
        raise ValueError("df must be > 0")
    t = stats.t.ppf(1 - alpha / 2, df) * crit_scale
    return float(stats.nct.sf(t, df, ncp) + stats.nct.cdf(-t, df, ncp))


def schoenfeld_events(hr: float, power: float = 0.8, alpha: float = 0.05, allocation: float = 0.5) -> float:
    """Events needed to detect hazard ratio ``hr`` with a two-sided test at ``alpha``:
    ``(z_{1-alpha/2} + z_{power})^2 / (p (1 - p) log(hr)^2)``, ``p`` = ``allocation``, the
    share of people in one arm (not rounded)."""
    _check_alpha(alpha)
    if hr <= 0 or hr == 1:
        raise ValueError("hr must be > 0 and not 1")
    if not 0 < power < 1 or not 0 < allocation < 1:
        raise ValueError("power and allocation must be in (0, 1)")
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(z**2 / (allocation * (1 - allocation) * math.log(hr) ** 2))


def schoenfeld_power(events: float, hr: float, alpha: float = 0.05, allocation: float = 0.5,
                     design_effect: float = 1.0, df: float | None = None) -> float:
    """Power of a two-sided test of hazard ratio ``hr`` from ``events`` events, the
    variance of the log hazard ratio ``1 / (events p (1 - p))`` times ``design_effect``;
    ``df`` a t reference instead of the normal (see the module docstring)."""
    if events <= 0:
        return 0.0
    if hr <= 0:
        raise ValueError("hr must be > 0")
    se = math.sqrt(design_effect / (events * allocation * (1 - allocation)))
    return normal_power(math.log(hr) / se, alpha, df)


def two_proportions_power(n0: float, n1: float, p0: float, p1: float, alpha: float = 0.05,
                          design_effect: float = 1.0, df: float | None = None) -> float:
    """Power of a two-sided comparison of proportions ``p0`` (``n0`` people) and ``p1``
    (``n1``), each variance times ``design_effect``: ``P(|Z| > z sqrt(V0 / V1))`` with
    ``Z ~ N(|p1 - p0| / sqrt(V1), 1)``, ``V0 = pbar (1 - pbar) (1/n0 + 1/n1)`` (pooled,
    under the null), ``V1 = p0 (1 - p0) / n0 + p1 (1 - p1) / n1``. With ``n0 = n1`` and no
    design effect this is R's ``power.prop.test(strict = TRUE)``."""
    for p in (p0, p1):
        if not 0 < p < 1:
            raise ValueError("p0 and p1 must be in (0, 1)")
    if n0 <= 0 or n1 <= 0:
        return 0.0
    pbar = (n0 * p0 + n1 * p1) / (n0 + n1)
    v0 = pbar * (1 - pbar) * (1 / n0 + 1 / n1) * design_effect
    v1 = (p0 * (1 - p0) / n0 + p1 * (1 - p1) / n1) * design_effect
    return normal_power((p1 - p0) / math.sqrt(v1), alpha, df, crit_scale=math.sqrt(v0 / v1))
