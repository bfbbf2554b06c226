"""Restricted mean survival time (RMST): the area under the Kaplan-Meier curve up to tau.

The RMST of an arm is the expected event-free time over the first ``tau`` days; the
difference between arms is a summary that needs no proportional hazards (Royston and
Parmar 2013), which is why it is a sensitivity analysis of a Cox hazard ratio.

:func:`rmst` matches R ``print(survfit(Surv(time, status) ~ group), rmean = tau)``
(``survival:::survmean``: ``*rmean`` and ``*se(rmean)``), checked in
``tests/reference/test_sensitivity_reference.py``. :func:`rmst_difference` adds the
difference between two groups with the standard error either from the two groups' R
standard errors (independent people) or from the delete-one-cluster jackknife
(as :func:`pipeline.stats.jackknife.group_jackknife`, t on G - 1 df) when people are
clustered; a replicate's Kaplan-Meier curves come from the event and row counts per
(cluster, time) less the deleted cluster's, the integers its own rows would give.

References
----------
Royston P, Parmar MKB. Restricted mean survival time: an alternative to the hazard ratio
for the design and analysis of randomized trials with a time-to-event outcome. BMC Med Res
Methodol 2013;13:152. Klein JP, Moeschberger ML. Survival Analysis, 2nd ed. Springer 2003,
section 4.5 (the variance). Therneau TM. survival: survmean (print.survfit, rmean).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from pipeline.stats._result import AttrResult, NotEstimable
from pipeline.stats._surv_data import complete_rows, durations_events, z_value


def _rmst_one(t: np.ndarray, e: np.ndarray, tau: float) -> tuple[float, float]:
    """(rmst, se) of one sample, as ``survival:::survmean`` with ``rmean = tau``."""
    times, inv = np.unique(t, return_inverse=True)
    d = np.bincount(inv, weights=e, minlength=len(times))
    return _rmst_counts(times, d, np.bincount(inv, minlength=len(times)), tau)


def _rmst_counts(times: np.ndarray, d: np.ndarray, rows: np.ndarray,
                 tau: float) -> tuple[float, float]:
    """:func:`_rmst_one` from the distinct times (each with at least one row), the events
    and the (integer) number of rows at each."""
    n = rows[::-1].cumsum()[::-1].astype(float)
    surv = np.cumprod(1 - d / n)
    keep = times < tau
    tk, sk, dk, nk = times[keep], surv[keep], d[keep], n[keep]
    # rectangles between 0, the times before tau and tau: S is 1 before the first time
    edges = np.r_[0.0, tk, tau]
    heights = np.r_[1.0, sk]
    rect = np.diff(edges) * heights
    mean = float(rect.sum())
    # Greenwood-type variance: sum over times t_j < tau of A_j^2 d_j / (n_j (n_j - d_j)),
    # A_j = area under S from t_j to tau (0 where every one at risk has the event, as R)
    area_after = np.cumsum(rect[::-1])[::-1][1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        hh = np.where(nk - dk > 0, dk / (nk * (nk - dk)), 0.0)
    var = float(np.sum(area_after**2 * hh))
    return mean, float(np.sqrt(var))


class RMSTResult(AttrResult):
    """Restricted mean survival time per group.

    Attributes
    ----------
    table : DataFrame, one row per group
        ``group, tau, n, events, rmst, se, lower, upper`` (normal interval).
    """

    title = "Restricted mean survival time"
    frame_name = "table"


def rmst(df: pd.DataFrame, duration: str, event: str, tau: float,
         group: str | None = None, conf_level: float = 0.95) -> RMSTResult:
    """RMST up to ``tau`` from the Kaplan-Meier estimate, per ``group``.

    Parameters
    ----------
    df : DataFrame, shape (n_samples, n_columns)
    duration : str
        Follow-up time column (>= 0).
    event : str
        1 = event, 0 = censored.
    tau : float
        Restriction time (> 0), e.g. 365 or 730 days.
    group : str, optional
        Grouping column (e.g. the arm).
    conf_level : float, default 0.95

    Returns
    -------
    RMSTResult
        As R ``print(survfit(Surv(duration, event) ~ group), rmean = tau)``.
    """
    if not tau > 0:
        raise ValueError("tau must be > 0")
    notes: list[str] = []
    d = complete_rows(df, [duration, event, group], notes)
    t, e = durations_events(d, duration, event)
    z = z_value(conf_level)
    keys = [None] if group is None else sorted(pd.unique(d[group]), key=str)
    rows = []
    for k in keys:
        m = np.ones(len(d), bool) if k is None else (d[group] == k).to_numpy()
        if not m.any():
            continue
        mean, se = _rmst_one(t[m], e[m], float(tau))
        if t[m].max() < tau:
            notes.append(f"group {k}: follow-up ends at {t[m].max():g} < tau = {tau:g}; the "
                         "curve is carried on to tau (as R).")
        rows.append(dict(group=k, tau=float(tau), n=int(m.sum()), events=int(e[m].sum()),
                         rmst=mean, se=se, lower=mean - z * se, upper=mean + z * se))
    return RMSTResult(pd.DataFrame(rows), notes, tau=float(tau), conf_level=conf_level)


class RMSTDifferenceResult(AttrResult):
    """Difference in RMST between two groups.

    Attributes
    ----------
    summary : DataFrame, one row per tau
        ``tau, rmst_1, rmst_0, estimate (rmst_1 - rmst_0), se, df, lower, upper, p``.
    method : str
        The variance in words.
    """

    title = "Difference in restricted mean survival time"


def rmst_difference(df: pd.DataFrame, duration: str, event: str, taus: Sequence[float],
                    arm: str, cluster: str | None = None,
                    conf_level: float = 0.95) -> RMSTDifferenceResult:
    """RMST of ``arm == 1`` minus RMST of ``arm == 0`` at each of ``taus``.

    Without ``cluster`` the standard error is ``sqrt(se_1^2 + se_0^2)`` (R's per-group
    standard errors; independent people) with a normal interval. With ``cluster``: the
    delete-one-``cluster`` jackknife of the difference with a t interval on G - 1 df
    (clusters, or sites when whole pairs of clusters are deleted).
    """
    taus = [float(x) for x in taus]
    notes: list[str] = []
    d = complete_rows(df, [duration, event, arm, cluster], notes)
    a = pd.to_numeric(d[arm]).to_numpy()
    if set(np.unique(a)) != {0, 1}:
        raise NotEstimable(f"{arm!r} must hold both 0 and 1")

    t, e = durations_events(d, duration, event)
    one = [(_rmst_one(t[a == 1], e[a == 1], tau), _rmst_one(t[a == 0], e[a == 0], tau))
           for tau in taus]
    est = np.array([r1[0] - r0[0] for r1, r0 in one])
    if cluster is None:
        se = np.array([np.hypot(r1[1], r0[1]) for r1, r0 in one])
        df_ = np.inf
        method = "Kaplan-Meier areas, standard error from each arm's (people independent)"
    else:
        from pipeline.stats import jackknife

        # a replicate's curves from the events and rows per (group, time) of each arm less
        # the deleted group's: the same integer counts as its own rows give, no re-sorting
        labels = jackknife.group_labels(d[cluster])
        codes = pd.Index(labels).get_indexer(d[cluster])
        times, inv = np.unique(t, return_inverse=True)
        G, T = len(labels), len(times)
        per = {}
        for k in (1, 0):
            cell = codes[a == k] * T + inv[a == k]
            rows = np.bincount(cell, minlength=G * T).reshape(G, T)
            ev = np.bincount(cell, weights=e[a == k], minlength=G * T).reshape(G, T)
            per[k] = (rows, ev, rows.sum(axis=0), ev.sum(axis=0))

        def diffs(j: int) -> np.ndarray:
            out = []
            for k in (1, 0):
                rows, ev, rows_all, ev_all = per[k]
                r = rows_all - rows[j]
                if not r.any():
                    raise NotEstimable(f"an arm is empty without one {cluster}")
                m = r > 0
                out.append([_rmst_counts(times[m], (ev_all - ev[j])[m], r[m], tau)[0]
                            for tau in taus])
            return np.array(out[0]) - np.array(out[1])

        v, _, g = jackknife.combine([diffs(j) for j in range(G)], cluster)
        se = np.sqrt(np.diag(v))
        df_ = float(g - 1)
        method = f"Kaplan-Meier areas, delete-one-{cluster} jackknife ({g} groups), t on {g - 1} df"
    q = float(stats.t.ppf(1 - (1 - conf_level) / 2, df_)) if np.isfinite(df_) \
        else z_value(conf_level)
    dist = stats.t(df_) if np.isfinite(df_) else stats.norm
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(se > 0, 2 * dist.sf(np.abs(est / se)), np.nan)
    summary = pd.DataFrame(dict(tau=taus, rmst_1=[r1[0] for r1, _ in one],
                                rmst_0=[r0[0] for _, r0 in one], estimate=est, se=se,
                                df=df_, lower=est - q * se, upper=est + q * se, p=p))
    return RMSTDifferenceResult(summary, notes, method=method, n=len(d),
                                n_clusters=None if cluster is None else int(d[cluster].nunique()))
