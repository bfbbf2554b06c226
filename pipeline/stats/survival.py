"""Kaplan-Meier estimates with numbers at risk, and the (stratified) log-rank test.

Both are checked against R's ``survival`` package (``survfit``, ``summary.survfit``,
``survdiff``) in ``tests/reference/test_survival_reference.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from pipeline.stats._result import NotEstimable, Result
from pipeline.stats._surv_data import (complete_rows, durations_events, group_codes, group_labels,
                                        group_rows, z_value)

__all__ = ["KaplanMeierResult", "LogrankResult", "kaplan_meier", "logrank"]

_TOL = float(np.sqrt(np.finfo(float).eps))


def _km_one(t: np.ndarray, e: np.ndarray) -> dict[str, np.ndarray]:
    """Kaplan-Meier columns at every distinct observed time of one group."""
    times, inv = np.unique(t, return_inverse=True)
    n_event = np.bincount(inv, weights=e, minlength=len(times))
    n_all = np.bincount(inv, minlength=len(times)).astype(float)
    n_censor = n_all - n_event
    n_risk = n_all[::-1].cumsum()[::-1]
    surv = np.cumprod(1.0 - n_event / n_risk)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(n_event > 0, n_event / (n_risk * (n_risk - n_event)), 0.0)
    # Greenwood variance of the cumulative hazard -log S; infinite once S reaches 0.
    var_cumhaz = np.cumsum(term)
    return {
        "time": times,
        "n_risk": n_risk,
        "n_event": n_event,
        "n_censor": n_censor,
        "survival": surv,
        "se_cumhaz": np.sqrt(var_cumhaz),
    }


def _conf_limits(surv: np.ndarray, se_cumhaz: np.ndarray, z: float, conf_type: str):
    """Pointwise limits as R's ``survfit`` computes them (``conf.type`` log or log-log)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if conf_type == "log":
            xx = np.where(surv == 0, np.nan, surv)
            lower = np.exp(np.log(xx) - z * se_cumhaz)
            upper = np.minimum(np.exp(np.log(xx) + z * se_cumhaz), 1.0)
        else:
            xx = np.where((surv == 0) | (surv == 1), np.nan, surv)
            se2 = z * se_cumhaz / np.log(xx)
            lower = np.exp(-np.exp(np.log(-np.log(xx)) - se2))
            upper = np.exp(-np.exp(np.log(-np.log(xx)) + se2))
    # As R's survfit_confint (survival 3.5): at S = 1 (censored times before the first
    # event, se 0) the log limits are 1 and 1 and the log-log limits undefined (NaN; R NA)
    return lower, upper


def _findq(x: np.ndarray, y: np.ndarray, p: float, xmax: float) -> float:
    """Where the curve ``y`` (= 1 - survival, starting at 0) reaches ``p``.

    Port of the ``findq`` helper in R's ``quantile.survfit``: a flat stretch exactly at
    ``p`` gives the midpoint of the flat.
    """
    keep = np.zeros(len(y), dtype=bool)  # drop duplicated y (censoring times)
    keep[np.unique(y, return_index=True)[1]] = True  # first of each value (NaN one value)
    x, y = x[keep], y[keep]
    last = y[-1]
    ok = ~np.isnan(y)  # R's approx() drops NA points
    x, y = x[ok], y[ok]
    if len(y) == 0 or y.max() < p:
        return np.nan

    def first_at_least(level_shift: float) -> float:
        idx = np.nonzero(y + level_shift >= p)[0]
        return x[idx[0]] if len(idx) else np.nan

    i1 = first_at_least(_TOL)
    i2 = first_at_least(-_TOL)
    quant = (i1 + i2) / 2
    if not np.isnan(last) and abs(p - last) < _TOL:
        quant = (i1 + xmax) / 2
    return float(quant)


class KaplanMeierResult(Result):
    """Kaplan-Meier estimates.

    Attributes
    ----------
    table : DataFrame, shape (n_times, 9)
        One row per group and distinct observed time: ``group, time, n_risk, n_event,
        n_censor, survival, se, lower, upper``; ``se`` is the Greenwood standard error of
        the survival (R's ``summary(survfit)`` ``std.err``).
    median : DataFrame, shape (n_groups, 4)
        ``group, median, lower, upper``: median survival and its confidence limits,
        read off the pointwise confidence band as R's ``print.survfit`` does.
    conf_type, conf_level : str, float
    """

    title = "Kaplan-Meier estimate"

    def __init__(self, table, median, conf_type, conf_level, notes, groups, group_name):
        super().__init__(table, notes)
        self.table = table
        self.median = median
        self.conf_type = conf_type
        self.conf_level = conf_level
        self.groups = groups
        self.group_name = group_name

    def at(self, times: Sequence[float]) -> pd.DataFrame:
        """Survival at given times (step function, carried forward), per group."""
        return self.risk_table(times)

    def risk_table(self, times: Sequence[float]) -> pd.DataFrame:
        """Numbers at risk and survival at ``times``, as R's ``summary(fit, times=, extend=TRUE)``.

        Parameters
        ----------
        times : array-like, shape (n_times,)

        Returns
        -------
        DataFrame, shape (n_groups * n_times, 9)
            ``group, time, n_risk`` (still under observation at ``time``), ``n_event`` and
            ``n_censor`` (since the previous requested time, the first interval starting at
            0), ``survival, se, lower, upper`` at ``time``.
        """
        times = np.sort(np.asarray(times, dtype=float))
        if len(times) == 0:
            return pd.DataFrame([])
        cols = ["survival", "se", "lower", "upper"]
        parts = []
        for g in self.groups:
            tab = self.table[self.table["group"] == g]
            tt = tab["time"].to_numpy()
            cum_ev = np.r_[0.0, tab["n_event"].cumsum().to_numpy()]
            cum_ce = np.r_[0.0, tab["n_censor"].cumsum().to_numpy()]
            k = np.searchsorted(tt, times, side="right")  # rows with time <= t
            later = np.searchsorted(tt, times, side="left")  # first row with time >= t
            prev = np.r_[0, k[:-1]]
            # before the first row: S = 1, se 0, limits 1 and 1
            vals = np.vstack([[1.0, 0.0, 1.0, 1.0], tab[cols].to_numpy(dtype=float)])[k]
            parts.append({"group": [g] * len(times), "time": times,
                          "n_risk": np.r_[tab["n_risk"].to_numpy(dtype=float), 0.0][later],
                          "n_event": cum_ev[k] - cum_ev[prev], "n_censor": cum_ce[k] - cum_ce[prev],
                          **dict(zip(cols, vals.T))})
        return pd.DataFrame({"group": [g for p in parts for g in p["group"]],
                             **{c: np.concatenate([p[c] for p in parts])
                                for c in ["time", "n_risk", "n_event", "n_censor", *cols]}})


def kaplan_meier(
    df: pd.DataFrame,
    duration: str,
    event: str,
    group: str | None = None,
    conf_type: str = "log",
    conf_level: float = 0.95,
    times: Sequence[float] | None = None,
) -> KaplanMeierResult:
    """Kaplan-Meier survival curves with Greenwood standard errors.

    Parameters
    ----------
    df : DataFrame, shape (n_samples, n_columns)
    duration : str
        Column of follow-up times (>= 0).
    event : str
        Column coded 1 (event) / 0 (censored), or boolean.
    group : str, optional
        Column defining separate curves.
    conf_type : {"log", "log-log"}
        Scale of the pointwise confidence interval: ``"log"`` (R's default) is
        ``S exp(+-z se(log S))``, ``"log-log"`` is symmetric on ``log(-log S)``.
    conf_level : float, default 0.95
    times : array-like, shape (n_times,), optional
        If given, ``result.risk`` holds :meth:`KaplanMeierResult.risk_table` at these times.

    Returns
    -------
    KaplanMeierResult
        ``.table`` (one row per group and observed time), ``.median``, ``.risk_table()``.

    Notes
    -----
    Matches R ``summary(survfit(Surv(time, status) ~ group, conf.type=...), censored=TRUE)``:
    the Greenwood variance of ``-log S`` is ``sum d / (n (n - d))``; ``se`` is that standard
    error times ``S``. Where ``S`` is 0 (or, for log-log, 0 or 1: e.g. at a censored time
    before the first event) the limits are undefined (NaN) as in R; the upper log limit is
    capped at 1. ``risk_table`` at a time before every observed time gives S = 1 with
    limits 1 and 1, as R's ``summary(fit, times=)`` does.

    References
    ----------
    Kaplan EL, Meier P. Nonparametric estimation from incomplete observations. JASA 1958;
    53:457-481. Greenwood M. The natural duration of cancer. Reports on Public Health and
    Medical Subjects 33, HMSO 1926. Kalbfleisch JD, Prentice RL. The Statistical Analysis
    of Failure Time Data, 2nd ed. Wiley 2002, section 4.3 (log-log limits).
    Therneau TM. survival: A Package for Survival Analysis in R (``survfit``).
    """
    if conf_type not in ("log", "log-log"):
        raise ValueError("conf_type must be 'log' or 'log-log'")
    z = z_value(conf_level)
    notes: list[str] = []
    d = complete_rows(df, [duration, event, group], notes)
    if len(d) == 0:
        raise NotEstimable("no rows left after dropping missing values")
    t, e = durations_events(d, duration, event)
    gvals = d[group] if group is not None else pd.Series("all", index=d.index)
    groups, gcode = group_codes(gvals)
    cols: dict[str, list] = {c: [] for c in ["time", "n_risk", "n_event", "n_censor", "survival",
                                             "se", "lower", "upper"]}
    labels: list = []
    medians = []
    for g, m in zip(groups, group_rows(gcode, len(groups))):
        tab = _km_one(t[m], e[m])
        surv = tab["survival"]
        lower, upper = _conf_limits(surv, tab["se_cumhaz"], z, conf_type)
        with np.errstate(invalid="ignore"):
            tab["se"] = surv * tab["se_cumhaz"]
        tab["lower"], tab["upper"] = lower, upper
        for c in cols:
            cols[c].append(tab[c])
        labels += [g] * len(surv)
        if tab["n_event"].sum() == 0:
            notes.append(f"group {g!r}: no events; survival stays at 1.")
        x = np.r_[0.0, tab["time"]]
        xmax = float(x[-1])
        medians.append(
            {
                "group": g,
                "median": _findq(x, np.r_[0.0, 1 - surv], 0.5, xmax),
                "lower": _findq(x, np.r_[0.0, 1 - lower], 0.5, xmax),
                "upper": _findq(x, np.r_[0.0, 1 - upper], 0.5, xmax),
            }
        )
    # one frame for all groups (a national extract has hundreds)
    table = pd.DataFrame({"group": labels, **{c: np.concatenate(v) for c, v in cols.items()}})
    result = KaplanMeierResult(
        table, pd.DataFrame(medians), conf_type, conf_level, notes, groups, group
    )
    if times is not None:
        result.risk = result.risk_table(times)
    return result


class LogrankResult(Result):
    """Log-rank test.

    Attributes
    ----------
    chisq, df, p : float, int, float
    table : DataFrame, shape (n_groups, 5)
        ``group, n, observed, expected, (O-E)^2/E`` summed over strata, as ``survdiff`` prints.
    """

    title = "Log-rank test"

    def __init__(self, chisq, df, p, table, notes):
        super().__init__(table, notes)
        self.chisq, self.df, self.p = chisq, df, p
        self.table = table

    def __repr__(self) -> str:
        return super().__repr__() + f"\nChisq = {self.chisq:.4g} on {self.df} df, p = {self.p:.4g}"


def logrank(
    df: pd.DataFrame,
    duration: str,
    event: str,
    group: str,
    strata: str | Sequence[str] | None = None,
) -> LogrankResult:
    """Log-rank (Mantel-Haenszel) test comparing survival across groups, optionally stratified.

    Parameters
    ----------
    df : DataFrame, shape (n_samples, n_columns)
    duration, event : str
        Follow-up time and event indicator (1 = event, 0 = censored).
    group : str
        Column whose levels are compared.
    strata : str or list of str, optional
        Stratifying column(s): observed minus expected counts and their variance are
        computed within each stratum and summed.

    Returns
    -------
    LogrankResult
        ``chisq``, ``df`` (number of groups with expected > 0, minus one), ``p`` and a
        ``table`` of observed and expected events per group.

    Notes
    -----
    Matches R ``survdiff(Surv(time, status) ~ group + strata(s))`` (``rho = 0``): the
    hypergeometric variance ``d (n - d) / (n - 1)`` at each event time, the first group
    dropped from the quadratic form.

    References
    ----------
    Mantel N. Evaluation of survival data and two new rank order statistics arising in its
    consideration. Cancer Chemother Rep 1966;50:163-170. Peto R, Peto J. Asymptotically
    efficient rank invariant test procedures. JRSS A 1972;135:185-207.
    """
    notes: list[str] = []
    strata_cols = [strata] if isinstance(strata, str) else list(strata or [])
    d = complete_rows(df, [duration, event, group, *strata_cols], notes)
    t, e = durations_events(d, duration, event)
    groups = group_labels(d[group])
    gidx = pd.Categorical(d[group], categories=groups).codes
    k = len(groups)
    if strata_cols:
        skey = d[strata_cols].astype(str).agg("\x1f".join, axis=1)
        strata_codes = pd.factorize(skey, sort=True)[0]
    else:
        strata_codes = np.zeros(len(d), dtype=int)
    obs = np.zeros(k)
    exp = np.zeros(k)
    var = np.zeros((k, k))
    n_no_event = 0
    for s in np.unique(strata_codes):
        m = strata_codes == s
        ts, es, gs = t[m], e[m], gidx[m]
        if es.sum() == 0:
            n_no_event += 1
            continue
        times, inv = np.unique(ts, return_inverse=True)
        nt = len(times)
        d_g = np.zeros((nt, k))
        n_g = np.zeros((nt, k))
        np.add.at(d_g, (inv, gs), es)
        np.add.at(n_g, (inv, gs), 1.0)
        risk_g = n_g[::-1].cumsum(axis=0)[::-1]
        dt = d_g.sum(axis=1)
        nr = risk_g.sum(axis=1)
        ev = dt > 0
        d_g, risk_g, dt, nr = d_g[ev], risk_g[ev], dt[ev], nr[ev]
        obs += d_g.sum(axis=0)
        frac = risk_g / nr[:, None]
        exp += (frac * dt[:, None]).sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            h = np.where(nr > 1, dt * (nr - dt) / (nr - 1), 0.0)
        var += np.einsum("t,ti->i", h, frac) * np.eye(k) - np.einsum("t,ti,tj->ij", h, frac, frac)
    if n_no_event:
        notes.append(f"{n_no_event} stratum/strata without events contribute nothing.")
    keep = exp > 0
    if keep.sum() < 2:
        chisq, dof = 0.0, 0
        notes.append("fewer than two groups with expected events: no test.")
        p = np.nan
    else:
        diff = (obs - exp)[keep][1:]
        vv = var[np.ix_(keep, keep)][1:, 1:]
        chisq = float(diff @ np.linalg.solve(vv, diff))
        dof = int(keep.sum() - 1)
        p = float(stats.chi2.sf(chisq, dof))
    n_per = np.bincount(gidx, minlength=k)
    with np.errstate(divide="ignore", invalid="ignore"):
        contrib = (obs - exp) ** 2 / exp
    table = pd.DataFrame(
        {"group": groups, "n": n_per, "observed": obs, "expected": exp, "(O-E)^2/E": contrib}
    )
    return LogrankResult(chisq, dof, p, table, notes)
