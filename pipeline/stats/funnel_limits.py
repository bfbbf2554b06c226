"""Funnel plots for comparing sites or teams (Spiegelhalter 2005), with overdispersion.

Each unit (site, team) has an observed count and a denominator: a number of people
(``kind="proportion"``), person-time (``"rate"``) or an expected count from indirect
standardisation (``"ratio"``, an observed/expected ratio such as an SMR). Units are
compared with a target by control limits that depend on the denominator.

A unit's value can also be an estimate with a standard error (:func:`funnel_estimates`):
a Kaplan-Meier or Aalen-Johansen proportion at a time, plotted against its effective number
of people ``p (1 - p) / var`` (the binomial n with the same variance; n itself without
censoring), or a mean plotted against its precision ``1 / se^2`` (Spiegelhalter 2005,
section 2: any estimate with a known standard error).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from pipeline.stats._result import NotEstimable, Result

_KINDS = ("proportion", "rate", "ratio")
_LIMITS = ("exact", "normal", "multiplicative", "additive")
_OD = (None, "multiplicative", "additive")
_WINSOR = 0.1


class FunnelResult(Result):
    """Funnel-plot quantities (see :func:`funnel`).

    Attributes
    ----------
    table : pandas.DataFrame
        One row per unit: ``label, observed, denominator, value, z, lower_95, upper_95,
        lower_998, upper_998, flag`` (column names follow the default ``limits``; other
        levels give e.g. ``lower_99``). ``z`` is the unadjusted z-score on the
        transformed scale; ``flag`` is one of ``high_998, high_95, within, low_95,
        low_998`` against the limits used.
    target : float
        Centre line (on the scale of ``value``).
    phi, tau2 : float
        Overdispersion ratio (mean squared Winsorised z-score) and the additive
        between-unit variance on the transformed scale; always computed (or given,
        ``dispersion=``), used only if ``overdispersion`` asks for it and ``phi > 1``.
    phi_p : float
        Spiegelhalter's (2005) test of overdispersion: ``P(chi^2_{k-1} > k phi)``, the
        chance of a ``phi`` this large among ``k`` units that differ by chance alone (an
        approximation: ``phi`` is Winsorised and the target estimated).
    limits_used : {"exact", "normal", "multiplicative", "additive"}
        ``normal``: ``T +/- z_p s`` on the transformed scale without overdispersion, for
        estimates with a standard error (:func:`funnel_estimates`), which have no exact
        limits.
    """

    title = "Funnel plot"

    @property
    def table(self) -> pd.DataFrame:
        return self._frame

    def limits_curve(self, denominators: Sequence[float] | np.ndarray) -> pd.DataFrame:
        """Control limits over a grid of denominators, for drawing the funnel.

        Parameters
        ----------
        denominators : array-like, shape = (m,)
            Denominators (> 0) at which to evaluate the limits.

        Returns
        -------
        pandas.DataFrame
            ``denominator`` plus one ``lower_<p>``/``upper_<p>`` pair per limit.
        """
        d = np.asarray(denominators, dtype=float)
        out = {"denominator": d}
        out.update(_limits(self.kind, d, self.target, self.limits, self.limits_used,
                           self.phi, self.tau2, getattr(self, "bounds", None)))
        return pd.DataFrame(out)

    def limits_at(self, denominators, values=None) -> pd.DataFrame:
        """The limits at given denominators and the flag ``values`` would get there (as
        :func:`funnel` flags its units): for checking a unit drawn from other counts."""
        d = np.asarray(denominators, dtype=float)
        out = {"denominator": d}
        out.update(_limits(self.kind, d, self.target, self.limits, self.limits_used,
                           self.phi, self.tau2, getattr(self, "bounds", None)))
        if values is not None:
            out["flag"] = _flags(np.asarray(values, dtype=float), out, self.limits)
        return pd.DataFrame(out)


def _suffix(level: float) -> str:
    """0.95 -> '95', 0.998 -> '998', 0.99 -> '99'."""
    return f"{100 * level:g}".replace(".", "")


def _transform(kind, value, target):
    if kind == "proportion":
        return np.arcsin(np.sqrt(value)), np.arcsin(np.sqrt(target))
    if kind == "mean":
        return np.asarray(value, dtype=float), float(target)
    return np.sqrt(value), np.sqrt(target)


def _back(kind, x):
    if kind == "proportion":
        return np.sin(np.clip(x, 0, np.pi / 2)) ** 2
    if kind == "mean":
        return x
    return np.maximum(x, 0) ** 2


def _se(kind, d):
    """Standard error on the transformed scale at denominator ``d``: ``1 / (2 sqrt(d))``
    for counts (variance-stabilised), ``1 / sqrt(d)`` for a mean (``d`` its precision)."""
    d = np.asarray(d, dtype=float)
    return 1 / np.sqrt(d) if kind == "mean" else 1 / (2 * np.sqrt(d))


def _flags(value, lims, levels):
    inner, outer = _suffix(levels[0]), _suffix(levels[1])
    return np.select(
        [value > lims[f"upper_{outer}"], value > lims[f"upper_{inner}"],
         value < lims[f"lower_{outer}"], value < lims[f"lower_{inner}"]],
        [f"high_{outer}", f"high_{inner}", f"low_{outer}", f"low_{inner}"],
        default="within",
    )


def _exact(kind, p, d, target):
    """Spiegelhalter's interpolated exact limit at tail probability ``p``."""
    dist = stats.binom(np.round(d).astype(int), target) if kind == "proportion" else stats.poisson(target * d)
    r = dist.ppf(p)
    F, Fm1 = dist.cdf(r), dist.cdf(r - 1)
    alpha = (F - p) / (F - Fm1)
    lim = np.maximum((r - alpha) / d, 0)
    return np.minimum(lim, 1) if kind == "proportion" else lim


def _limits(kind, d, target, levels, used, phi, tau2, bounds=None):
    s = _se(kind, d)
    _, T = _transform(kind, np.asarray(target), target)
    out = {}
    for level in levels:
        suf = _suffix(level)
        for side, p in (("lower", (1 - level) / 2), ("upper", 1 - (1 - level) / 2)):
            if used == "exact":
                out[f"{side}_{suf}"] = _exact(kind, p, d, target)
            else:
                sd = (np.sqrt(s**2 + tau2) if used == "additive" else np.sqrt(phi) * s
                      if used == "multiplicative" else s)
                out[f"{side}_{suf}"] = _back(kind, T + stats.norm.ppf(p) * sd)
            if bounds is not None:
                out[f"{side}_{suf}"] = np.clip(out[f"{side}_{suf}"], *bounds)
    return out


def _checked(x, y, names: tuple[str, str], labels, overdispersion, limits
             ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The two per-unit inputs of a funnel as float arrays, and the labels, after checking
    the options shared by :func:`funnel` and :func:`funnel_estimates`."""
    if overdispersion not in _OD:
        raise ValueError(f"overdispersion must be one of {_OD}, got {overdispersion!r}")
    if len(limits) != 2 or not all(0 < lv < 1 for lv in limits):
        raise ValueError(f"limits must be two coverage levels in (0, 1), got {limits!r}")
    X = np.asarray(x, dtype=float).ravel()
    Y = np.asarray(y, dtype=float).ravel()
    if X.shape != Y.shape:
        raise ValueError(f"{names[0]} and {names[1]} differ in length: {X.size} vs {Y.size}")
    labs = [str(i + 1) for i in range(X.size)] if labels is None else [str(v) for v in labels]
    if len(labs) != X.size:
        raise ValueError(f"labels has {len(labs)} entries for {X.size} units")
    return X, Y, labs


def funnel(
    observed: Sequence[float] | np.ndarray,
    denominator: Sequence[float] | np.ndarray,
    kind: str = "proportion",
    target: float | None = None,
    overdispersion: str | None = None,
    limits: tuple[float, float] = (0.95, 0.998),
    labels: Sequence[str] | None = None,
    dispersion: tuple[float, float] | None = None,
) -> FunnelResult:
    """Control limits, z-scores and outlier flags for a funnel plot.

    Parameters
    ----------
    observed : array-like, shape = (k,)
        Observed counts (events) per unit.
    denominator : array-like, shape = (k,)
        People (``"proportion"``; integers), person-time (``"rate"``) or expected counts
        (``"ratio"``) per unit, > 0.
    kind : {"proportion", "rate", "ratio"}
        ``value`` is ``observed / denominator`` in every case.
    target : float, optional
        Centre line. Default: the pooled value ``sum(observed) / sum(denominator)`` for
        proportions and rates, 1 for ratios.
    overdispersion : {None, "multiplicative", "additive"}
        ``None``: exact binomial / Poisson limits with Spiegelhalter's interpolation.
        ``"multiplicative"``: ``T +/- z_p sqrt(phi) s`` on the transformed scale.
        ``"additive"`` (random effects, as FunnelPlotR): ``T +/- z_p sqrt(s^2 + tau2)``.
        Both fall back to the exact limits when ``phi <= 1`` (noted), as FunnelPlotR does.
    limits : tuple of float
        Two-sided coverage of the control limits (default 95 % and 99.8 %).
    labels : sequence of str, shape = (k,), optional
        Unit names.
    dispersion : (phi, tau2), optional
        Take ``phi`` and ``tau2`` as given instead of estimating them from these units
        (e.g. estimated from published, rounded counts while the units are exact ones).

    Returns
    -------
    FunnelResult
        ``.table`` per unit, ``.target``, ``.phi``, ``.phi_p``, ``.tau2``,
        ``.limits_curve(...)``.

    Notes
    -----
    Transformed scale (variance-stabilising): ``asin(sqrt(value))`` for proportions and
    ``sqrt(value)`` for rates and ratios, with standard error ``s = 1 / (2 sqrt(denominator))``
    (so for counts ``z = 2 (sqrt(O) - sqrt(target * denominator))``). ``phi`` is the mean
    of the squared z-scores Winsorised at their 10th and 90th percentiles;
    ``tau2 = (k phi - (k - 1)) / (sum(w) - sum(w^2) / sum(w))`` with ``w = 1 / s^2``,
    0 if ``k phi < k - 1`` (FunnelPlotR's ``phi_func`` and ``tau_func``). Exact limits:
    ``r_p`` is the ``p`` quantile of Binomial(n, target) or Poisson(target * denominator),
    ``alpha = (F(r_p) - p) / (F(r_p) - F(r_p - 1))`` and the limit ``(r_p - alpha) /
    denominator``, truncated at 0 (and 1). For standardised ratios FunnelPlotR's "CQC"
    method draws the additive limits at ``1 +/- z sqrt(s^2 + tau2)`` without squaring
    back from the square-root scale; here they are squared, consistent with the z-scores.

    References
    ----------
    Spiegelhalter DJ. Funnel plots for comparing institutional performance. Stat Med
    2005;24:1185-202. Spiegelhalter DJ. Handling over-dispersion of performance
    indicators. Qual Saf Health Care 2005;14:347-51. Spiegelhalter DJ, Sherlaw-Johnson C,
    Bardsley M, et al. Statistical methods for healthcare regulation: rating, screening
    and surveillance. J R Stat Soc A 2012;175:1-47. Wilkinson C. FunnelPlotR: funnel plots
    for comparing institutional performance (R package, nhs-r-community).
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    O, D, labs = _checked(observed, denominator, ("observed", "denominator"), labels,
                          overdispersion, limits)
    notes: list[str] = []
    bad = ~np.isfinite(O) | ~np.isfinite(D) | (D <= 0) | (O < 0)
    if kind == "proportion":
        bad |= O > D
    if bad.any():
        notes.append(
            f"{int(bad.sum())} unit(s) dropped for a missing or invalid count or denominator: "
            + ", ".join(lab for lab, b in zip(labs, bad, strict=True) if b) + "."
        )
        O, D = O[~bad], D[~bad]
        labs = [lab for lab, b in zip(labs, bad, strict=True) if not b]
    if O.size < 2:
        raise NotEstimable("a funnel plot needs at least two units")
    if kind == "proportion" and np.any(D != np.round(D)):
        raise ValueError("denominators of proportions must be whole numbers of people")
    if target is None:
        target = 1.0 if kind == "ratio" else float(O.sum() / D.sum())
        if kind == "proportion" and not 0 < target < 1:
            raise NotEstimable(f"the overall proportion is {target:g} (no unit has "
                               f"{'an event' if target == 0 else 'a non-event'}): control "
                               "limits around it are not defined")
    if not (target > 0 and (kind != "proportion" or target < 1)):
        raise ValueError(f"target must be positive (and < 1 for proportions), got {target!r}")

    return _build(kind, O, D, O / D, labs, float(target), overdispersion, limits, notes,
                  dispersion, exact=True)


def funnel_estimates(
    estimate: Sequence[float] | np.ndarray,
    se: Sequence[float] | np.ndarray,
    kind: str = "proportion",
    target: float | None = None,
    overdispersion: str | None = None,
    limits: tuple[float, float] = (0.95, 0.998),
    labels: Sequence[str] | None = None,
    dispersion: tuple[float, float] | None = None,
    bounds: tuple[float, float] | None = None,
) -> FunnelResult:
    """A funnel plot of estimates with standard errors (not raw counts).

    Parameters
    ----------
    estimate, se : array-like, shape = (k,)
        Each unit's estimate and its standard error, e.g. a Kaplan-Meier (Greenwood) or
        Aalen-Johansen (infinitesimal jackknife / Aalen) proportion at a time, or a mean.
    kind : {"proportion", "mean"}
        ``"proportion"``: plotted against the effective number of people
        ``n_eff = p (1 - p) / se^2`` on the arcsine scale with ``s = 1 / (2 sqrt(n_eff))``
        (for a Kaplan-Meier or Aalen-Johansen proportion without censoring, ``n_eff`` is
        the number of people and the limits are the binomial funnel's normal
        approximation). A unit at 0 or 1 has no effective n and is dropped (noted).
        ``"mean"``: plotted against the precision ``1 / se^2``, limits
        ``T +/- z_p se`` on the natural scale.
    target : float, optional
        Centre line; default the precision-weighted mean of the units on the
        transformed scale, transformed back.
    overdispersion, limits, labels, dispersion
        As :func:`funnel`; without overdispersion the limits are normal (``"normal"``):
        there are no exact limits for an estimate with a standard error.
    bounds : (low, high), optional
        The range the measure can take (e.g. ``(0, 1)`` for a mean of shares): limits are
        cut there (``"mean"``; a proportion's limits stay in [0, 1] by its transform).

    Returns
    -------
    FunnelResult
        As :func:`funnel`; ``denominator`` is ``n_eff`` or the precision, ``observed`` is
        ``estimate x n_eff`` (``"proportion"``) or the estimate (``"mean"``).

    References
    ----------
    Spiegelhalter DJ. Funnel plots for comparing institutional performance. Stat Med
    2005;24:1185-202 (section 2: an estimate with a standard error; precision on the x
    axis). Anderson JR, Bernstein L, Pike MC. Approximate confidence intervals for
    probabilities of survival and quantiles in life-table analysis. Biometrics
    1982;38:407-16 (the effective sample size ``p (1 - p) / var`` of a survival
    probability).
    """
    if kind not in ("proportion", "mean"):
        raise ValueError(f"kind must be 'proportion' or 'mean', got {kind!r}")
    E, S, labs = _checked(estimate, se, ("estimate", "se"), labels, overdispersion, limits)
    notes: list[str] = []
    bad = ~np.isfinite(E) | ~np.isfinite(S) | (S <= 0)
    if kind == "proportion":
        bad |= (E <= 0) | (E >= 1)
    if bad.any():
        why = ("an estimate of 0 or 1 (no effective number of people) or a missing or zero "
               "standard error" if kind == "proportion" else "a missing or zero standard error")
        notes.append(f"{int(bad.sum())} unit(s) dropped for {why}: "
                     + ", ".join(lab for lab, b in zip(labs, bad, strict=True) if b) + ".")
        E, S = E[~bad], S[~bad]
        labs = [lab for lab, b in zip(labs, bad, strict=True) if not b]
    if E.size < 2:
        raise NotEstimable("a funnel plot needs at least two units with an estimate and a "
                           "standard error")
    D = E * (1 - E) / S**2 if kind == "proportion" else 1 / S**2
    if target is None:
        Y, _ = _transform(kind, E, 0.5)
        w = 1 / _se(kind, D) ** 2
        target = float(_back(kind, np.sum(w * Y) / np.sum(w)))
    if kind == "proportion" and not 0 < target < 1:
        raise ValueError(f"target must be in (0, 1) for proportions, got {target!r}")
    O = E * D if kind == "proportion" else E
    return _build(kind, O, D, E, labs, float(target), overdispersion, limits, notes,
                  dispersion, exact=False, bounds=bounds)


def _build(kind, O, D, value, labs, target, overdispersion, limits, notes, dispersion, exact,
           bounds=None):
    """Z-scores, dispersion, limits and flags (shared by :func:`funnel` and
    :func:`funnel_estimates`)."""
    Y, T = _transform(kind, value, target)
    s = _se(kind, D)
    z = (Y - T) / s
    k = z.size
    if dispersion is None:
        lo, hi = np.quantile(z, [_WINSOR, 1 - _WINSOR])
        zw = np.clip(z, lo, hi)
        phi = float(np.sum(zw**2) / k)
        w = 1 / s**2
        tau2 = 0.0 if k * phi < k - 1 else max(
            0.0, (k * phi - (k - 1)) / (w.sum() - np.sum(w**2) / w.sum()))
    else:
        phi, tau2 = (float(v) for v in dispersion)
    phi_p = float(stats.chi2.sf(k * phi, k - 1)) if k > 1 else float("nan")

    plain = "exact" if exact else "normal"
    used = plain if overdispersion is None else overdispersion
    if overdispersion is not None and phi <= 1:
        used = plain
        notes.append(f"phi = {phi:.3g} <= 1: no overdispersion, {plain} limits used.")
    elif overdispersion is not None:
        notes.append(f"{overdispersion.capitalize()} overdispersion adjustment: phi = {phi:.4g}, "
                     f"tau2 = {tau2:.4g} (z Winsorised at 10%/90%; chi-square test of no "
                     f"overdispersion p = {phi_p:.2g}).")

    levels = tuple(sorted(limits))
    lims = _limits(kind, D, target, levels, used, phi, tau2, bounds)
    flag = _flags(value, lims, levels)
    table = pd.DataFrame({"label": labs, "observed": O, "denominator": D, "value": value, "z": z})
    for lv in levels:
        table[f"lower_{_suffix(lv)}"] = lims[f"lower_{_suffix(lv)}"]
        table[f"upper_{_suffix(lv)}"] = lims[f"upper_{_suffix(lv)}"]
    table["flag"] = flag
    res = FunnelResult(table, notes)
    res.kind, res.target, res.phi, res.tau2 = kind, float(target), phi, float(tau2)
    res.phi_p, res.bounds = phi_p, bounds
    res.limits, res.limits_used, res.overdispersion = levels, used, overdispersion
    res.title = f"Funnel plot ({kind}, {used} limits, k={k})"
    return res
