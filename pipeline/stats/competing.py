"""Competing risks: Aalen-Johansen cumulative incidence, Gray's test, Fine-Gray regression.

Checked against R ``survfit`` (multi-state), ``cmprsk::cuminc`` and ``cmprsk::crr`` in
``tests/reference/test_competing_reference.py``. Event columns are coded 0 = censored and
1, 2, ... = cause of the first event.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import stats

from pipeline.stats._result import AttrResult, NotEstimable, Result
from pipeline.stats._surv_data import (complete_rows, design_matrix, durations_events, group_codes,
                                      group_labels, group_rows, z_value)
from pipeline.stats.coxph import _row_patterns

__all__ = ["AalenJohansenResult", "FineGrayResult", "GrayTestResult", "aalen_johansen", "fine_gray", "gray_test"]


# --------------------------------------------------------------------- Aalen-Johansen
def _aj_one(t: np.ndarray, e: np.ndarray, causes: Sequence[int]) -> dict:
    """Cumulative incidence of each cause with IJ and delta-method (cuminc) variances.

    No loop over times; equal to the step-by-step recursions to rounding
    (``tests/unit/stats/test_aalen_johansen_vectorised.py``: 1e-12 relative). A subject's
    influence (infinitesimal jackknife) on the event-free probability ``p0`` and on the
    incidences ``F_k``, over the event times ("steps"):

    * while at risk, everyone's is the same, ``(a0, ak)``: one recursion, in closed form;
    * at its own time it gets its own jump; after it, its influence on ``p0`` decays as
      ``p0`` does, so its influence on ``F_k`` at ``t`` is ``u + beta (F_k(t) - F_k(s))``:
      ``u`` its influence on ``F_k`` just after its time (after ``s`` steps), ``beta`` its
      influence on ``p0`` then, divided by ``p0`` then.

    Summed over the subjects who leave after the same number of steps ``s``, the squares
    are a quadratic in ``F_k(t)``: their sum of squares at its minimum ``R_s`` plus
    ``C_s (F_k(t) - tau_s)^2``; over the groups gone by ``t``, the second terms are their
    total weight times the squared distance of ``F_k(t)`` from the weighted mean of
    ``tau``, plus the weighted sum of squares of ``tau`` about it, accumulated with West's
    (weighted Welford) update. Every term added is a square or positive: the variance, a
    sum of squares, is not formed by expanding squares (on trust data it is nearer to a
    long-double evaluation of the recursions than the recursions in double are).

    The IJ variance of cause k changes only at the cause's own event times; it is
    computed there and carried forward, as are the incidence and the cuminc variance.
    """
    times, inv = np.unique(t, return_inverse=True)
    nt = len(times)
    n_risk = np.bincount(inv, minlength=nt)[::-1].cumsum()[::-1].astype(float)
    K = len(causes)
    dk = np.zeros((nt, K))
    for j, c in enumerate(causes):
        dk[:, j] = np.bincount(inv, weights=(e == c), minlength=nt)
    d_all = np.bincount(inv, weights=(e > 0), minlength=nt)
    is_ev = d_all > 0
    ev = np.flatnonzero(is_ev)
    m = len(ev)
    # steps done by the end of each time; the arrays of length m + 1 below are indexed
    # by the number of steps done (0: before the first event time)
    step = np.cumsum(is_ev)
    res = {"time": times, "n_risk": n_risk, "n_event": dk}
    if m == 0:
        return {**res, "cif": np.zeros((nt, K)), "var": np.zeros((nt, K)),
                "var_delta": np.zeros((nt, K))}
    Y, D, nk = n_risk[ev], d_all[ev], dk[ev]
    dA = nk / Y[:, None]
    dA_tot = D / Y
    f = (Y - D) / Y  # 0 only at the last step, when everyone left has an event
    p0 = np.r_[1.0, np.cumprod(f)]
    cif = np.vstack([np.zeros(K), np.cumsum(p0[:m, None] * dA, axis=0)])
    # common influence while at risk: a0 <- a0 (1 - dA_tot) + p0 dA_tot / Y, i.e.
    # a0 = p0 sum dA_tot / (Y (1 - dA_tot)) (positive terms); ak <- ak + a0 dA - p0 dA / Y.
    # a0 after the last step is never used (no step follows): 0.
    a0 = np.r_[p0[:m] * np.r_[0.0, np.cumsum(dA_tot[:-1] / (Y[:-1] * f[:-1]))], 0.0]
    ak = np.vstack([np.zeros(K), np.cumsum(a0[:m, None] * dA - p0[:m, None] * (dA / Y[:, None]),
                                           axis=0)])
    # Influence per distinct (time, status) pair, weighted by the pair's count: the same
    # sums as per subject (2,000-odd pairs for a million people followed for two years).
    base = int(e.max()) + 1
    w = np.bincount(inv.astype(np.int64) * base + e.astype(np.int64), minlength=nt * base)
    pairs = np.flatnonzero(w)  # the distinct codes in order, as np.unique gives them
    pt, pe, w = pairs // base, pairs % base, w[pairs].astype(float)
    s = step[pt]  # steps done by the end of the pair's time; an event's own is s - 1 >= 0
    jump = np.where(pe > 0, p0[s - 1] / Y[s - 1], 0.0)
    u0 = a0[s] - jump  # influence on p0 just after its time
    uk = ak[s] + jump[:, None] * (pe[:, None] == np.asarray(causes)[None, :])
    beta = np.zeros(len(s))
    later = s < m  # a step follows (p0[s] > 0)
    beta[later] = u0[later] / p0[s[later]]
    # weight of the pairs whose time is after s steps' end: still at risk, influence ak[s]
    w_after = w.sum() - np.cumsum(np.bincount(s, weights=w, minlength=m + 1))
    out_var = np.zeros((m, K))
    for j in range(K):
        u = uk[:, j]
        # group s: sum w (u + beta G)^2 = R + C (G - g)^2, G = F(t) - F(s), g its minimum
        C = np.bincount(s, weights=w * beta * beta, minlength=m + 1)
        B = np.bincount(s, weights=w * u * beta, minlength=m + 1)
        g = np.where(C > 0, -B / np.where(C > 0, C, 1.0), 0.0)
        R = np.bincount(s, weights=w * (u + beta * g[s]) ** 2, minlength=m + 1)
        tau = cif[:, j] + g
        # over the groups gone after s steps: total weight, weighted mean of tau, West's
        # sum of squares about it
        Wc = np.cumsum(C)
        has = Wc > 0
        Wd = np.where(has, Wc, 1.0)
        mean = np.where(has, np.cumsum(C * tau) / Wd, 0.0)
        M2 = np.cumsum(C * np.r_[0.0, Wc[:-1]] / Wd * (tau - np.r_[0.0, mean[:-1]]) ** 2)
        var = (w_after * ak[:, j] ** 2 + np.cumsum(R) + Wc * (cif[:, j] - mean) ** 2 + M2)[1:]
        # it changes only at the cause's own steps: carried forward from them
        last = np.maximum.accumulate(np.where(nk[:, j] > 0, np.arange(m), -1))
        out_var[:, j] = np.where(last >= 0, var[np.maximum(last, 0)], 0.0)
    vd = _cuminc_variance(Y, D, nk, p0, cif)
    return {**res, "cif": cif[step], "var": np.vstack([np.zeros(K), out_var])[step],
            "var_delta": np.vstack([np.zeros(K), vd])[step]}


def _cuminc_variance(Y, D, nk, p0, cif) -> np.ndarray:
    """cmprsk::cuminc's delta-method variance after each event step (a port of Gray's
    Fortran ``cinc``, the other causes pooled as "cause 2"), shape (steps, causes): its
    sums accumulated in ``cinc``'s order and carried forward between the cause's own
    steps, as it reports them. ``Y, D, nk``: at risk, events, events per cause at each
    step; ``p0``, ``cif``: after 0..steps steps."""
    m, K = nk.shape
    before = p0[:m, None]
    fkn = p0[1:, None]  # after the step
    fcur = cif[1:]
    YY = (Y * Y)[:, None]
    Ym1 = np.where(Y > 1, Y - 1, 1.0)[:, None]

    def t6(nd):
        t5 = np.where(nd > 1, 1 - (nd - 1) / Ym1, 1.0)
        return before * before * t5 * nd / YY

    nd1 = nk
    nd2 = D[:, None] - nd1
    fpos = fkn > 0
    t3 = np.where(fpos, 1 / np.where(fpos, fkn, 1.0), 0.0)
    # competing events ("cause 2"), when anyone is left
    on2 = (nd2 > 0) & fpos
    t62 = np.where(on2, t6(nd2), 0.0)
    t4 = np.where(fpos, fcur / np.where(fpos, fkn, 1.0), 0.0)
    inc2 = np.stack([t4 * t4 * t62, t3 * t4 * t62, t3 * t3 * t62])
    # the cause's own events
    t61 = np.where(nd1 > 0, t6(nd1), 0.0)
    t4 = 1 + t3 * fcur
    inc1 = np.stack([t4 * t4 * t61, t3 * t4 * t61, t3 * t3 * t61])
    # v1, v2, v3 summed as cinc does: step by step, the competing term before the own one
    v1, v2, v3 = np.cumsum(np.stack([inc2, inc1], axis=2).reshape(3, 2 * m, K), axis=1)[:, 1::2]
    vd = v1 + fcur * fcur * v3 - 2 * fcur * v2
    last = np.maximum.accumulate(np.where(nd1 > 0, np.arange(m)[:, None], -1), axis=0)
    return np.where(last >= 0, np.take_along_axis(vd, np.maximum(last, 0), axis=0), 0.0)


class AalenJohansenResult(Result):
    """Cumulative incidence functions.

    Attributes
    ----------
    table : DataFrame, shape (n_groups * n_causes * n_times, 10)
        ``group, cause, time, n_risk, n_event, cif, se, lower, upper, se_delta``: one row
        per group, cause and distinct observed time. ``se`` is the infinitesimal-jackknife
        standard error R's multi-state ``survfit`` reports, ``lower``/``upper`` its default
        log-scale limits; ``se_delta`` is the delta-method standard error of
        ``cmprsk::cuminc`` (square root of its ``var``), which changes only at times of the
        cause itself.

    Methods
    -------
    at(times)
        The same columns at chosen times (e.g. 365 and 730 days), as Kaplan-Meier's
        ``at``.
    """

    title = "Aalen-Johansen cumulative incidence"

    def __init__(self, table, notes, causes, groups, conf_level):
        super().__init__(table, notes)
        self.table = table
        self.causes = causes
        self.groups = groups
        self.conf_level = conf_level

    def at(self, times: Sequence[float]) -> pd.DataFrame:
        """Cumulative incidence at given times (step function, carried forward), per group
        and cause, as R's ``summary(survfit(...), times =, extend = TRUE)``.

        Parameters
        ----------
        times : array-like, shape (n_times,)

        Returns
        -------
        DataFrame, shape (n_groups * n_causes * n_times, 10)
            ``group, cause, time, n_risk`` (still under observation at ``time``),
            ``n_event`` (events of the cause since the previous requested time, the first
            interval starting at 0), ``cif, se, lower, upper, se_delta`` at ``time``.
            Before the first observed time the incidence is 0 with standard errors and
            limits 0, as R extends it; after the last the last values carry on and
            ``n_risk`` is 0.
        """
        times = np.sort(np.asarray(times, dtype=float))
        cols = ["cif", "se", "lower", "upper", "se_delta"]
        frames = []
        for (g, c), tab in self.table.groupby(["group", "cause"], sort=False):
            tt = tab["time"].to_numpy()
            k = np.searchsorted(tt, times, side="right")  # rows with time <= t
            later = np.searchsorted(tt, times, side="left")  # first row with time >= t
            n_risk = np.r_[tab["n_risk"].to_numpy(), 0.0][later]
            cum = np.r_[0.0, tab["n_event"].cumsum().to_numpy()][k]
            vals = np.vstack([np.zeros(len(cols)), tab[cols].to_numpy()])[k]
            out = pd.DataFrame({"group": g, "cause": c, "time": times, "n_risk": n_risk,
                                "n_event": np.diff(cum, prepend=0.0)})
            out[cols] = vals
            frames.append(out)
        columns = ["group", "cause", "time", "n_risk", "n_event", *cols]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def aalen_johansen(
    df: pd.DataFrame,
    duration: str,
    event: str,
    cause: int | Sequence[int] | None = None,
    group: str | None = None,
    conf_level: float = 0.95,
) -> AalenJohansenResult:
    """Aalen-Johansen estimate of the cumulative incidence of each cause.

    Parameters
    ----------
    df : DataFrame, shape (n_samples, n_columns)
    duration : str
        Follow-up time column.
    event : str
        0 = censored, 1, 2, ... = cause of the first event.
    cause : int or list of int, optional
        Cause(s) to report; all causes present by default. Every cause enters the estimate.
    group : str, optional
        Column defining separate curves.
    conf_level : float, default 0.95

    Returns
    -------
    AalenJohansenResult
        ``.table`` in long format (see the class); ``.at(times)`` at chosen times.

    Notes
    -----
    The estimate equals R ``survfit(Surv(time, factor(status)) ~ group)`` (multi-state)
    and ``cmprsk::cuminc``. The default ``se`` matches ``survfit`` (infinitesimal
    jackknife, Aalen-Johansen influence propagated through the product integral); the
    confidence interval is ``survfit``'s log type, ``cif * exp(+-z se / cif)`` capped at 1.
    ``se_delta`` matches ``cuminc``'s delta-method variance (Gray's ``cinc``).

    References
    ----------
    Aalen OO, Johansen S. An empirical transition matrix for non-homogeneous Markov chains
    based on censored observations. Scand J Stat 1978;5:141-150. Kalbfleisch JD, Prentice
    RL. The Statistical Analysis of Failure Time Data, 2nd ed. Wiley 2002, section 8.2.
    Therneau TM. The survival package: multi-state models vignette (IJ variance).
    Gray RJ. cmprsk: Subdistribution Analysis of Competing Risks (``cuminc``).
    """
    z = z_value(conf_level)
    notes: list[str] = []
    d = complete_rows(df, [duration, event, group], notes)
    t, e = durations_events(d, duration, event, multi=True)
    present = sorted(int(c) for c in np.unique(e[e > 0]))
    if cause is None:
        report = present
    else:
        report = [int(cause)] if np.isscalar(cause) else [int(c) for c in cause]
        absent = [c for c in report if c not in present]
        if absent:
            notes.append(f"cause(s) {absent} never observed: cumulative incidence is 0.")
    causes = sorted(set(present) | set(report))
    if not present:
        notes.append("no events of any cause.")
    gvals = d[group] if group is not None else pd.Series("all", index=d.index)
    groups, gcode = group_codes(gvals)
    columns = ["group", "cause", "time", "n_risk", "n_event", "cif", "se", "lower", "upper",
               "se_delta"]
    # columns gathered over groups and causes, one frame built at the end
    labels: list = []
    cause_of: list = []
    cols: dict[str, list] = {c: [] for c in columns[2:]}
    for g, m in zip(groups, group_rows(gcode, len(groups))):
        res = _aj_one(t[m], e[m], causes)
        for j, c in enumerate(causes):
            if c not in report:
                continue
            p = res["cif"][:, j]
            se = np.sqrt(res["var"][:, j])
            # survfit (multi-state) log-type limits: undefined while the incidence is 0
            with np.errstate(divide="ignore", invalid="ignore"):
                pp = np.where(p == 0, np.nan, p)
                se_log = se / pp
                lower = np.where(se == 0, pp, np.exp(np.log(pp) - z * se_log))
                upper = np.where(se == 0, pp, np.minimum(np.exp(np.log(pp) + z * se_log), 1))
            labels += [g] * len(p)
            cause_of += [c] * len(p)
            for name, v in (("time", res["time"]), ("n_risk", res["n_risk"]),
                            ("n_event", res["n_event"][:, j]), ("cif", p), ("se", se),
                            ("lower", lower), ("upper", upper),
                            ("se_delta", np.sqrt(res["var_delta"][:, j]))):
                cols[name].append(v)
    table = (pd.DataFrame({"group": labels, "cause": cause_of,
                           **{name: np.concatenate(v) for name, v in cols.items()}})
             if cols["time"] else pd.DataFrame(columns=columns))
    return AalenJohansenResult(table, notes, report, groups, conf_level)


def cif_difference_jackknife(df: pd.DataFrame, duration: str, event: str, cause: int,
                             times: Sequence[float], arm: str, group: str
                             ) -> tuple[np.ndarray, np.ndarray, int]:
    """Delete-one-``group`` jackknife of the difference in the cumulative incidence of
    ``cause`` at ``times`` between ``arm == 1`` and ``arm == 0``: ``(vcov, estimate, G)``,
    ``vcov`` as :func:`pipeline.stats.jackknife.combine` gives it (t on G - 1 df). Each
    replicate's curves come from the rows and events per (group, time) of each arm less the
    deleted group's (integer counts: the same numbers as refitting on its rows, no
    re-sorting), with :func:`aalen_johansen`'s arithmetic; ``estimate`` is the whole data's
    difference."""
    from pipeline.stats import jackknife

    notes: list[str] = []
    d = complete_rows(df, [duration, event, arm, group], notes)
    a = pd.to_numeric(d[arm]).to_numpy()
    if set(np.unique(a)) != {0, 1}:
        raise NotEstimable(f"{arm!r} must hold both 0 and 1")
    t, e = durations_events(d, duration, event, multi=True)
    labels = jackknife.group_labels(d[group])
    codes = pd.Index(labels).get_indexer(d[group])
    grid, inv = np.unique(t, return_inverse=True)
    G, T = len(labels), len(grid)
    at = np.searchsorted(grid, np.asarray(times, float), side="right")  # times <= each
    per = {}
    for k in (1, 0):
        m = a == k
        cell = codes[m] * T + inv[m]
        counts = [np.bincount(cell, weights=w, minlength=G * T).reshape(G, T)
                  for w in (None, (e[m] == cause).astype(float), (e[m] > 0).astype(float))]
        per[k] = [(c, c.sum(axis=0)) for c in counts]

    def cif_at(rows, own, anyev) -> np.ndarray:
        Y = rows[::-1].cumsum()[::-1]
        ok = Y > 0
        Yd = np.where(ok, Y, 1.0)
        f = np.where(ok, (Yd - anyev) / Yd, 1.0)
        p0 = np.r_[1.0, np.cumprod(f)[:-1]]
        cif = np.r_[0.0, np.cumsum(np.where(ok, p0 * own / Yd, 0.0))]
        return cif[at]

    def diff(j: int | None) -> np.ndarray:
        out = []
        for k in (1, 0):
            (r, r_all), (o, o_all), (v, v_all) = per[k]
            if j is None:
                out.append(cif_at(r_all, o_all, v_all))
                continue
            rows = r_all - r[j]
            if not rows.any():
                raise NotEstimable(f"an arm is empty without one {group}")
            out.append(cif_at(rows, o_all - o[j], v_all - v[j]))
        return out[0] - out[1]

    vcov, _, g = jackknife.combine([diff(j) for j in range(G)], group)
    return vcov, diff(None), g


# --------------------------------------------------------------------- Gray's test
def _crst(y, m, ig, ng, rho):
    """Score and variance for one stratum: port of Fortran ``crst`` in cmprsk."""
    ng1 = ng - 1
    rs = np.bincount(ig, minlength=ng).astype(float)
    s = np.zeros(ng1)
    v = np.zeros((ng1, ng1))
    f1m = np.zeros(ng)
    f1 = np.zeros(ng)
    skmm = np.ones(ng)
    skm = np.ones(ng)
    v3 = np.zeros(ng)
    v2 = np.zeros((ng1, ng))
    c = np.zeros((ng, ng))
    fm = 0.0
    times, start = np.unique(y, return_index=True)
    bounds = np.r_[start, len(y)]
    for u in range(len(times)):
        sl = slice(bounds[u], bounds[u + 1])
        dcount = np.zeros((3, ng))
        np.add.at(dcount, (m[sl], ig[sl]), 1)
        nd1 = dcount[1].sum()
        nd2 = dcount[2].sum()
        if nd1 > 0 or nd2 > 0:
            tr = tq = 0.0
            pos = rs > 0
            td = dcount[1] + dcount[2]
            skm = np.where(pos, skmm * (rs - td) / np.where(pos, rs, 1), skm)
            f1 = np.where(pos, f1m + skmm * dcount[1] / np.where(pos, rs, 1), f1)
            tr = np.sum(rs[pos] / skmm[pos])
            tq = np.sum(rs[pos] * (1 - f1m[pos]) / skmm[pos])
            f = fm + nd1 / tr
            fb = (1 - fm) ** rho
            a = np.zeros((ng, ng))
            for i in range(ng):
                if rs[i] <= 0:
                    continue
                t1 = rs[i] / skmm[i]
                a[i, i] = fb * t1 * (1 - t1 / tr)
                if a[i, i] != 0:
                    c[i, i] += a[i, i] * nd1 / (tr * (1 - fm))
                for j in range(i + 1, ng):
                    if rs[j] <= 0:
                        continue
                    a[i, j] = -fb * t1 * rs[j] / (skmm[j] * tr)
                    if a[i, j] != 0:
                        c[i, j] += a[i, j] * nd1 / (tr * (1 - fm))
            il = np.tril_indices(ng, -1)
            a[il] = a.T[il]
            c[il] = c.T[il]
            for i in range(ng1):
                if rs[i] > 0:
                    s[i] += fb * (dcount[1, i] - nd1 * rs[i] * (1 - f1m[i]) / (skmm[i] * tq))
            if nd1 > 0:
                for k in range(ng):
                    if rs[k] <= 0:
                        continue
                    t4 = 1 - (1 - f) / skm[k] if skm[k] > 0 else 1.0
                    t5 = 1 - (nd1 - 1) / (tr * skmm[k] - 1) if nd1 > 1 else 1.0
                    t3 = t5 * skmm[k] * nd1 / (tr * rs[k])
                    v3[k] += t4 * t4 * t3
                    t1v = a[:ng1, k] - t4 * c[:ng1, k]
                    v2[:, k] += t1v * t4 * t3
                    v += np.tril(np.outer(t1v, t1v)) * t3
            if nd2 > 0:
                for k in range(ng):
                    if skm[k] <= 0 or dcount[2, k] <= 0:
                        continue
                    t4 = (1 - f) / skm[k]
                    t5 = 1 - (dcount[2, k] - 1) / (rs[k] - 1) if dcount[2, k] > 1 else 1.0
                    t3 = t5 * (skmm[k] ** 2) * dcount[2, k] / rs[k] ** 2
                    v3[k] += t4 * t4 * t3
                    t1v = t4 * c[:ng1, k]
                    v2[:, k] -= t1v * t4 * t3
                    v += np.tril(np.outer(t1v, t1v)) * t3
            fm = f
            f1m = f1.copy()
            skmm = skm.copy()
        np.subtract.at(rs, ig[sl], 1)
    v = np.tril(v)
    cc = c[:ng1]
    v += np.tril(cc @ np.diag(v3) @ cc.T + cc @ v2.T + v2 @ cc.T)
    v = v + np.tril(v, -1).T
    return s, v


class GrayTestResult(Result):
    """Gray's test per cause: ``table`` with ``cause, stat, df, p``."""

    title = "Gray's test for equality of cumulative incidence"

    def __init__(self, table, notes):
        super().__init__(table, notes)
        self.table = table


def gray_test(
    df: pd.DataFrame,
    duration: str,
    event: str,
    group: str,
    cause: int | Sequence[int] | None = None,
    strata: str | None = None,
    rho: float = 0.0,
) -> GrayTestResult:
    """Gray's K-sample test that the cumulative incidence of a cause is equal across groups.

    Parameters
    ----------
    df : DataFrame, shape (n_samples, n_columns)
    duration, event : str
        Follow-up time; 0 = censored, 1, 2, ... = cause.
    group : str
        Column whose levels are compared.
    cause : int or list of int, optional
        Cause(s) to test; every observed cause by default.
    strata : str, optional
        Stratifying column: scores and variances are summed over strata.
    rho : float, default 0
        Power of the weight ``(1 - F(t-))^rho``.

    Returns
    -------
    GrayTestResult
        ``table`` with ``cause, stat, df, p`` (chi-square on number of groups - 1 df).

    Notes
    -----
    A port of ``crstm``/``crst`` from R ``cmprsk::cuminc`` (Gray 1988); matches
    ``cuminc(ftime, fstatus, group, strata, rho)$Tests``.

    References
    ----------
    Gray RJ. A class of K-sample tests for comparing the cumulative incidence of a
    competing risk. Ann Stat 1988;16:1141-1154.
    """
    notes: list[str] = []
    d = complete_rows(df, [duration, event, group, strata], notes)
    t, e = durations_events(d, duration, event, multi=True)
    order = np.argsort(t, kind="stable")
    d = d.iloc[order]
    t, e = t[order], e[order]
    groups = group_labels(d[group])
    ig = pd.Categorical(d[group], categories=groups).codes.astype(int)
    ng = len(groups)
    if ng < 2:
        raise NotEstimable("Gray's test needs at least two groups")
    st = pd.factorize(d[strata], sort=True)[0] if strata is not None else np.zeros(len(d), dtype=int)
    present = sorted(int(c) for c in np.unique(e[e > 0]))
    causes = present if cause is None else ([int(cause)] if np.isscalar(cause) else [int(c) for c in cause])
    rows = []
    for c in causes:
        m = np.where(e == 0, 0, np.where(e == c, 1, 2))
        s = np.zeros(ng - 1)
        v = np.zeros((ng - 1, ng - 1))
        for k in np.unique(st):
            sel = st == k
            sk, vk = _crst(t[sel], m[sel], ig[sel], ng, rho)
            s += sk
            v += vk
        try:
            stat = float(s @ np.linalg.solve(v, s))
        except np.linalg.LinAlgError:
            stat = np.nan
            notes.append(f"cause {c}: singular variance, no test.")
        rows.append({"cause": c, "stat": stat, "df": ng - 1, "p": float(stats.chi2.sf(stat, ng - 1))})
    return GrayTestResult(pd.DataFrame(rows), notes)


# --------------------------------------------------------------------- Fine-Gray
class _FGFixed:
    """What :class:`_FGTerms` takes from the data that does not depend on beta, found once
    per Newton-Raphson (arguments as :class:`_FGTerms`'s; ``patterns``: the distinct rows
    of ``X`` and each row's index among them, :func:`pipeline.stats.coxph._row_patterns`,
    for the information, or None)."""

    def __init__(self, X, t, kind, uk, patterns=None):
        self.patterns = patterns
        # rows are sorted by time; kind: 1 = cause of interest, 2 = competing, 0 = censored
        self.comp = kind == 2
        # risk sums over T_j >= u_k: the rows between consecutive event times summed once
        # (reduceat), then cumulated over the event times only
        self.first_ge = np.searchsorted(t, uk, side="left")
        # competing rows with T_j < u_k (weighted): row j counts from the first u_k > T_j
        self.cr = np.flatnonzero(self.comp)
        self.k_from = np.searchsorted(self.first_ge, self.cr, side="right")
        self.X_cr = X[self.cr]
        self.XT = np.ascontiguousarray(X.T)  # X's columns as rows, for the risk sums of r x
        self.X_fail = X[kind == 1]
        self.X_fail_sum = self.X_fail.sum(axis=0)
        self.n_le = np.searchsorted(uk, t, side="right")  # number of u_k <= T_j


class _FGTerms:
    """Fine-Gray weighted partial likelihood at beta (one censoring group). The information
    is computed when first read: a Newton-Raphson that stops at these terms, or halves its
    step away from them, reads only the log-likelihood (a jackknife refit, the coefficients).
    ``fixed``: the data's :class:`_FGFixed` (found here if not given)."""

    def __init__(self, beta, X, t, kind, G_row, uk, dk, Gu, k_of_fail, fixed=None):
        fx = _FGFixed(X, t, kind, uk) if fixed is None else fixed
        r = np.exp(X @ beta)
        comp, first_ge, cr, k_from = fx.comp, fx.first_ge, fx.cr, fx.k_from

        def suffix(vg):  # vg: values already summed between consecutive event times
            return np.cumsum(vg[::-1], axis=0)[::-1]

        K = len(uk)

        def prefix_lt(v):
            if v.ndim == 1:
                return np.cumsum(np.bincount(k_from, weights=v, minlength=K + 1)[:K])
            cols = [np.bincount(k_from, weights=c, minlength=K + 1)[:K] for c in v.T]
            return np.cumsum(np.stack(cols, axis=1), axis=0)

        wc = r[cr] / G_row[cr]
        S0 = suffix(np.add.reduceat(r, first_ge)) + Gu * prefix_lt(wc)
        # r x summed along the rows of X' (contiguous): the sums reduceat of the rows r x
        # gives (the same pairwise sum of each segment), in a quarter of the time
        rx_g = np.add.reduceat(fx.XT * r, first_ge, axis=1).T.copy()
        S1 = suffix(rx_g) + Gu[:, None] * prefix_lt(wc[:, None] * fx.X_cr)
        xbar = S1 / S0[:, None]
        self.loglik = float((fx.X_fail @ beta).sum() - np.sum(dk * np.log(S0)))
        self.score = fx.X_fail_sum - (dk[:, None] * xbar).sum(axis=0)
        # A_j = sum_{u_k <= T_j} d_k / S0_k ; Bc_j = (1 / G_j) sum_{u_k > T_j} d_k Gu_k / S0_k
        n_le = fx.n_le
        a = dk / S0
        ca = np.r_[0.0, np.cumsum(a)]
        A = ca[n_le]
        g = dk * Gu / S0
        cg = np.r_[0.0, np.cumsum(g)]
        self._Bc = np.where(comp, (cg[-1] - cg[n_le]) / G_row, 0.0)
        self._X, self._dk, self._patterns = X, dk, fx.patterns
        self.r, self.S0, self.S1, self.xbar = r, S0, S1, xbar
        self.n_le, self.A, self.a, self.g, self.ca, self.cg = n_le, A, a, g, ca, cg

    @cached_property
    def info(self) -> np.ndarray:
        """The information (minus the Hessian of the log-likelihood). With the data's
        distinct rows (:class:`_FGFixed`), the rows' cross-product sums their weights per
        distinct row first (equal up to the order of the floating-point sums)."""
        X, xbar, dk = self._X, self.xbar, self._dk
        w = self.r * (self.A + self._Bc)
        if self._patterns is None:
            rows = (X * w[:, None]).T @ X
        else:
            Xu, key = self._patterns
            rows = (Xu * np.bincount(key, weights=w, minlength=len(Xu))[:, None]).T @ Xu
        return rows - (xbar * dk[:, None]).T @ xbar


def _fg_variance(X, t, kind, G_row, uk, dk, Gu, k_of_fail, terms) -> tuple[np.ndarray, np.ndarray]:
    """Fine & Gray (1999) sandwich ``H^-1 (sum (eta_i + psi_i)^2) H^-1`` as ``cmprsk::crrvv``."""
    r, S0, xbar, n_le = terms.r, terms.S0, terms.xbar, terms.n_le
    comp = kind == 2
    fail = kind == 1
    n, p = X.shape
    # eta_i
    a, g = terms.a, terms.g
    ax = np.vstack([np.zeros(p), np.cumsum(a[:, None] * xbar, axis=0)])
    gx = np.vstack([np.zeros(p), np.cumsum(g[:, None] * xbar, axis=0)])
    comp_part = np.where(comp, 1 / G_row, 0.0)
    eta = -r[:, None] * (X * terms.A[:, None] - ax[n_le])
    tail_g = terms.cg[-1] - terms.cg[n_le]
    tail_gx = gx[-1] - gx[n_le]
    eta -= (r * comp_part)[:, None] * (X * tail_g[:, None] - tail_gx)
    eta[fail] += X[fail] - xbar[k_of_fail]
    # psi_i: censoring-distribution part
    cens = kind == 0
    cens_times = np.unique(t[cens])
    if len(cens_times):
        # q(u) = C1(u) a(u) - C0(u) b(u), sums over competing j with T_j < u and u_k >= u
        lt = np.searchsorted(t, cens_times, side="left")
        wc = np.where(comp, r / G_row, 0.0)
        C0 = np.r_[0.0, np.cumsum(wc)][lt]
        C1 = np.vstack([np.zeros(p), np.cumsum(wc[:, None] * X, axis=0)])[lt]
        kge = np.searchsorted(uk, cens_times, side="left")  # first u_k >= u
        a_u = (terms.cg[-1] - terms.cg[kge])
        b_u = gx[-1] - gx[kge]
        q = C1 * a_u[:, None] - C0[:, None] * b_u
        R = (n - lt).astype(float)
        nc = np.bincount(np.searchsorted(cens_times, t[cens]), minlength=len(cens_times))
        inc = q * (nc / R**2)[:, None]
        cum = np.cumsum(inc, axis=0)
        # for subject i: censorings at times <= T_i
        nle_c = np.searchsorted(cens_times, t, side="right")
        psi = -np.vstack([np.zeros(p), cum])[nle_c]
        ci = np.searchsorted(cens_times, t[cens])
        psi[cens] += q[ci] / R[ci][:, None]
    else:
        psi = np.zeros_like(eta)
    w = eta + psi
    hinv = np.linalg.inv(terms.info)
    return hinv @ (w.T @ w) @ hinv, hinv


def _fg_setup(X, t, e, cause, names) -> tuple:
    """The arguments of :class:`_FGTerms` for rows sorted by time (``X`` their design):
    each row's kind (1 = the cause, 2 = competing, 0 = censored), the censoring
    Kaplan-Meier's left limits at each row's time and at the event times, the distinct
    event times with their counts, and each event's time index."""
    const = [c for c, sdv in zip(names, X.std(axis=0)) if sdv == 0]
    if const:
        raise NotEstimable(f"covariate(s) constant in the data used: {', '.join(const)}")
    kind = np.where(e == 0, 0, np.where(e == cause, 1, 2))
    if not np.any(kind == 1):
        raise NotEstimable(f"no events of cause {cause}")
    # censoring Kaplan-Meier, left limits G(t-)
    times, inv = np.unique(t, return_inverse=True)
    nc = np.bincount(inv, weights=(kind == 0), minlength=len(times))
    nr = np.bincount(inv, minlength=len(times))[::-1].cumsum()[::-1]
    G = np.cumprod(1 - nc / nr)
    G_left = np.r_[1.0, G[:-1]]
    G_row = G_left[inv]
    uk, dk = np.unique(t[kind == 1], return_counts=True)
    dk = dk.astype(float)
    Gu = G_left[np.searchsorted(times, uk)]
    k_of_fail = np.searchsorted(uk, t[kind == 1])
    return (X, t, kind, G_row, uk, dk, Gu, k_of_fail)


def _fg_newton(args: tuple, start: np.ndarray | None = None, patterns=None):
    """Newton-Raphson with step halving from ``start`` (beta = 0 by default): ``(beta,
    terms, loglik at the start, converged)``. ``patterns`` as :class:`_FGFixed`'s."""
    beta = np.zeros(args[0].shape[1]) if start is None else start.copy()
    X, t, kind, _, uk = args[:5]   # (X, t, kind, G_row, uk, ...): _FGTerms's arguments
    fixed = _FGFixed(X, t, kind, uk, patterns)
    terms = _FGTerms(beta, *args, fixed=fixed)
    loglik0 = terms.loglik
    converged = False
    for _ in range(50):
        step = np.linalg.solve(terms.info, terms.score)
        new = _FGTerms(beta + step, *args, fixed=fixed)
        halv = 0
        while (not np.isfinite(new.loglik) or new.loglik < terms.loglik - 1e-12 * abs(terms.loglik)) and halv < 30:
            step /= 2
            halv += 1
            new = _FGTerms(beta + step, *args, fixed=fixed)
        change = abs(new.loglik - terms.loglik)
        beta, terms = beta + step, new
        if change <= 1e-13 * max(1.0, abs(terms.loglik)) and np.max(np.abs(step)) < 1e-9 * max(1.0, np.max(np.abs(beta))):
            converged = True
            break
    return beta, terms, loglik0, converged


class FineGrayResult(AttrResult):
    """A fitted Fine-Gray subdistribution hazards model.

    Attributes
    ----------
    summary : DataFrame, shape (n_terms, 8)
        Indexed by term (``column[T.level]`` for the levels of a text covariate): ``coef, se, hr, hr_lower, hr_upper, z, p, se_sandwich`` (``hr`` is the
        subdistribution hazard ratio; ``se`` the Fine-Gray sandwich standard error, or
        with a ``cluster`` the jackknife one; ``se_sandwich`` always the sandwich).
    n_clusters : int or None
    df : float
        Degrees of freedom of the t reference (inf without a cluster).
    loglik, loglik_null : float
        Weighted partial log-likelihood at the estimate and at beta = 0 (as ``crr``).
    vcov : ndarray, shape (n_terms, n_terms)
    """

    title = "Fine-Gray subdistribution hazards model"


def fine_gray(
    df: pd.DataFrame,
    duration: str,
    event: str,
    cause: int,
    covariates: Sequence[str],
    conf_level: float = 0.95,
    cluster: str | None = None,
) -> FineGrayResult:
    """Fine-Gray proportional subdistribution hazards regression for one cause.

    Parameters
    ----------
    df : DataFrame, shape (n_samples, n_columns)
    duration : str
        Follow-up time column.
    event : str
        0 = censored, 1, 2, ... = cause.
    cause : int
        Code of the cause of interest; every other non-zero code is a competing event.
    covariates : list of str
        Numeric (or boolean) columns, and text columns, entered as factors with treatment
        contrasts: one term ``column[T.level]`` per level but the first (levels sorted, or
        a pandas ``Categorical``'s order; a note names the reference), the columns R's
        ``model.matrix(~ column)[, -1]`` would give ``crr``'s ``cov1``.
    conf_level : float, default 0.95
    cluster : str, optional
        Cluster (or site) column. ``se`` then is the delete-one-cluster jackknife of the
        coefficients (as :func:`pipeline.stats.jackknife.group_jackknife`: G refits, each
        from the rows sorted once and started at the full estimate) with t
        intervals and p-values on G - 1 df; ``se_sandwich`` keeps Fine and Gray's, which
        treats people as independent (in a pair-matched cluster trial its 95% intervals
        covered far too rarely: ``tests/unit/stats/test_sensitivity_coverage.py``).

    Returns
    -------
    FineGrayResult

    Notes
    -----
    Subjects with a competing event stay in the risk set with weight ``G(t-)/G(T_i-)``,
    ``G`` the Kaplan-Meier of the censoring distribution (one censoring group). The
    variance is Fine and Gray's sandwich including the term for the estimated ``G``
    (``psi``). Matches R ``cmprsk::crr(ftime, fstatus, cov1, failcode = cause)``; crr's
    default convergence (``gtol = 1e-6``) can stop ~1e-8 (relative) short of the maximum,
    which we iterate to.

    References
    ----------
    Fine JP, Gray RJ. A proportional hazards model for the subdistribution of a competing
    risk. JASA 1999;94:496-509.
    """
    z = z_value(conf_level)
    notes: list[str] = []
    covariates = list(covariates)
    d = complete_rows(df, [duration, event, *covariates, cluster], notes)
    t, e = durations_events(d, duration, event, multi=True)
    order = np.argsort(t, kind="stable")
    t, e = t[order], e[order]
    X, names, term_cols = design_matrix(d, covariates, notes)
    X = X[order]
    args = _fg_setup(X, t, e, cause, names)
    pat = _row_patterns(X)   # the refits' information takes the same distinct rows
    beta, terms, loglik0, converged = _fg_newton(args, patterns=pat)
    if not converged:
        notes.append("Newton-Raphson did not converge; estimates may be unreliable.")
    vcov, hinv = _fg_variance(*args, terms)
    se_sandwich = np.sqrt(np.diag(vcov))
    dist, n_clusters, df_ = stats.norm, None, np.inf
    if cluster is not None:
        from pipeline.stats import jackknife

        # delete-one-group refits from the rows sorted once (the kept rows of a stable sort
        # are in the order a refit's own sort gives them); a refit without some level of a
        # text covariate (its site's indicator) has other columns: then it is fitted from
        # its own frame, and a term absent from it gets no jackknife se
        labels = jackknife.group_labels(d[cluster])
        codes = pd.Index(labels).get_indexer(d[cluster])
        codes_s = codes[order]
        factors = [cols for term, cols in term_cols.items() if names[cols[0]] != term]

        def refit(j: int) -> np.ndarray:
            keep = codes_s != j
            Xk = X[keep]
            if all(Xk[:, cols].any(axis=0).all() and not Xk[:, cols].any(axis=1).all()
                   for cols in factors):
                return _fg_newton(_fg_setup(Xk, t[keep], e[keep], cause, names), beta,
                                  None if pat is None else (pat[0], pat[1][keep]))[0]
            fit = fine_gray(d[codes != j], duration, event, cause, covariates, conf_level)
            return fit.summary["coef"].reindex(names).to_numpy()

        vcov, _, n_clusters = jackknife.combine([refit(j) for j in range(len(labels))],
                                                cluster, partial=True)
        df_ = float(n_clusters - 1)
        dist = stats.t(df_)
        z = float(dist.ppf(1 - (1 - conf_level) / 2))
        notes.append(f"Delete-one-{cluster} jackknife variance ({n_clusters} groups): t on "
                     f"{n_clusters - 1} df.")
    se = np.sqrt(np.diag(vcov))
    zs = beta / se
    summary = pd.DataFrame(
        {
            "coef": beta,
            "se": se,
            "hr": np.exp(beta),
            "hr_lower": np.exp(beta - z * se),
            "hr_upper": np.exp(beta + z * se),
            "z": zs,
            "p": 2 * dist.sf(np.abs(zs)),
            "se_sandwich": se_sandwich,
        },
        index=pd.Index(names, name="term"),
    )
    return FineGrayResult(
        summary, notes, loglik=terms.loglik, loglik_null=loglik0, vcov=vcov, vcov_naive=hinv,
        n=len(t), n_events=int((args[2] == 1).sum()), n_competing=int((args[2] == 2).sum()),
        cause=cause, conf_level=conf_level, n_clusters=n_clusters, df=df_,
    )
