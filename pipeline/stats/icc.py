"""Intracluster correlation: ANOVA ICC of a binary or continuous outcome, and the shared
gamma frailty variance of a time to event, each with a 95% confidence interval.

CONSORT for cluster trials (item 17a) asks for the ICC of each primary outcome with its
interval; these are what the report shows beside each outcome.

* :func:`icc_anova`: one-way analysis of variance with clusters nested in groups (the
  arms, and optionally the sites): ``(MSB - MSW) / (MSB + (n0 - 1) MSW)``, the estimator
  of Donner and Klar for binary outcomes too; interval by Searle's F method with the
  average cluster size ``n0`` (exact for balanced normal data, approximate for binary
  outcomes and unequal clusters: Ukoumunne 2002 found it close to nominal for
  binary outcomes in that setting).
* :func:`frailty_variance`: the variance of a gamma frailty shared by a cluster's
  people in a Cox model, estimated as R ``coxph(... + frailty(cluster))`` does (the
  penalised partial likelihood, the gamma correction to the integrated likelihood,
  maximised over the variance), with a profile-likelihood interval, and Kendall's tau
  ``theta / (theta + 2)`` (the concordance of two people's event times in one cluster).

Checked against R (``aov`` mean squares by formula; ``coxph(... + frailty(cluster, theta))``
and its ``history$c.loglik``) in ``tests/reference/test_icc_reference.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from pipeline.stats._eff_design import check_columns, check_conf_level
from pipeline.stats._result import Result

__all__ = ["ICCResult", "FrailtyResult", "icc_anova", "frailty_variance", "anova_icc_components"]


class ICCResult(Result):
    """An ANOVA intracluster correlation (see :func:`icc_anova`).

    Attributes
    ----------
    summary : DataFrame, one row
        ``icc, lower, upper`` (truncated to [0, 1]), ``icc_raw`` (the estimate before
        truncation), ``msb, msw, df_between, df_within, n0, F``.
    method : str
    n, n_clusters : int
    """

    title = "Intracluster correlation (ANOVA)"

    @property
    def summary(self) -> pd.DataFrame:
        return self._frame


class FrailtyResult(Result):
    """A shared gamma frailty variance (see :func:`frailty_variance`).

    Attributes
    ----------
    summary : DataFrame, one row
        ``theta, lower, upper`` (frailty variance and profile-likelihood interval),
        ``tau, tau_lower, tau_upper`` (Kendall's tau), ``loglik`` (integrated
        log-likelihood at theta), ``loglik_0`` (at theta = 0, the Cox model without
        frailty), ``lr_chisq, p`` (likelihood-ratio test of theta = 0 against its
        boundary: half chi-square(0) half chi-square(1)).
    coef : Series
        The covariates' log hazard ratios at theta (given the frailty).
    frailties : Series
        The predicted log frailty of each cluster.
    method : str
    """

    title = "Shared gamma frailty"

    @property
    def summary(self) -> pd.DataFrame:
        return self._frame


# ----------------------------------------------------------------------------- ANOVA ICC

def anova_icc_components(m, s, ss, group) -> dict:
    """Mean squares of the one-way ANOVA with clusters nested in groups, from cluster
    sufficient statistics: size ``m``, sum ``s`` and sum of squares ``ss`` of the outcome
    (for a 0/1 outcome ``ss = s``), and the group of each cluster.

    Returns ``msb, msw, df_between, df_within, n0, icc`` with ``n0 = (N - sum_g sum_c
    m_c^2 / M_g) / (K - G)`` (Donner and Klar 2000, section 6.2.1).
    """
    m, s, ss = (np.asarray(a, float) for a in (m, s, ss))
    group = pd.factorize(np.asarray(group, dtype=object))[0]
    N, K, G = m.sum(), len(m), group.max() + 1
    M = np.bincount(group, weights=m)[group]
    if K - G < 1:
        raise ValueError("estimating the ICC needs more clusters than groups (every group has "
                         "one cluster: between-cluster variation cannot be told from the groups')")
    if N - K < 1:
        raise ValueError("estimating the ICC needs clusters of more than one person")
    ssb = float(np.sum(s**2 / m) - np.sum(np.bincount(group, weights=s) ** 2 / np.bincount(group, weights=m)))
    ssw = float(np.sum(ss - s**2 / m))
    msb, msw = ssb / (K - G), ssw / (N - K)
    n0 = float((N - np.sum(m**2 / M)) / (K - G))
    denom = msb + (n0 - 1) * msw
    icc = float((msb - msw) / denom) if denom > 0 else 0.0
    return {"msb": msb, "msw": msw, "df_between": int(K - G), "df_within": int(N - K), "n0": n0, "icc": icc}


def icc_anova(df: pd.DataFrame, outcome: str, cluster: str, within: str | Sequence[str] | None = None,
              conf_level: float = 0.95) -> ICCResult:
    """Intracluster correlation of a binary or continuous outcome by one-way ANOVA.

    Parameters
    ----------
    df : DataFrame
        One row per person.
    outcome : str
        0/1 (or boolean) or numeric.
    cluster : str
    within : str or list of str, optional
        Grouping(s) the clusters are nested in: the arm for a trial (the ICC within arms,
        not inflated by the treatment effect), arm and site for a stratified trial with
        several clusters per arm in each site. Every group needs two clusters or more in
        total across the data (one cluster per group leaves no between-cluster df).
    conf_level : float

    Returns
    -------
    ICCResult

    Notes
    -----
    ``ICC = (MSB - MSW) / (MSB + (n0 - 1) MSW)``; the interval is Searle's (1971): with
    ``F = MSB / MSW`` and ``F_L = F / F(1 - a/2; K - G, N - K)``, ``F_U = F / F(a/2; K - G,
    N - K)``, the limits are ``(F_L - 1) / (F_L + n0 - 1)`` and ``(F_U - 1) / (F_U + n0 -
    1)``. A negative estimate (less variation between clusters than chance gives) is
    reported as 0 and the limits are truncated to [0, 1]; ``icc_raw`` keeps the
    estimate. Rows missing the outcome, cluster or groups are dropped (noted).

    References
    ----------
    Donner A, Klar N. Design and Analysis of Cluster Randomization Trials in Health
    Research. Arnold 2000 (section 6.2.1). Searle SR. Linear Models. Wiley 1971 (section
    9.7). Ukoumunne OC. A comparison of confidence interval methods for the intraclass
    correlation coefficient in cluster randomized trials. Stat Med 2002;21:3757-3774.
    Campbell MK, Piaggio G, Elbourne DR, Altman DG. Consort 2010 statement: extension to
    cluster randomised trials. BMJ 2012;345:e5661 (item 17a).
    """
    check_conf_level(conf_level)
    within = [within] if isinstance(within, str) else list(within or [])
    used = list(dict.fromkeys([outcome, cluster, *within]))
    check_columns(df, used)
    notes: list[str] = []
    d = df[used]
    miss = d.isna().any(axis=1)
    if miss.any():
        notes.append(f"{int(miss.sum())} row(s) dropped for missing values.")
        d = d.loc[~miss]
    y = d[outcome].astype(float).to_numpy()
    binary = bool(np.all((y == 0) | (y == 1)))
    g = d.assign(_y=y, _y2=y**2).groupby(cluster, sort=True)
    cells = g.agg(m=("_y", "size"), s=("_y", "sum"), ss=("_y2", "sum"))
    if within:
        grp = g[within].first().astype(str).agg("\x1f".join, axis=1) if len(within) > 1 else g[within[0]].first()
        if (d.groupby(cluster)[within].nunique() > 1).any(axis=None):
            raise ValueError(f"clusters must be nested in {within}: a {cluster} spans several")
    else:
        grp = pd.Series(0, index=cells.index)
    c = anova_icc_components(cells.m, cells.s, cells.ss, grp.to_numpy())
    a = 1 - conf_level
    F = c["msb"] / c["msw"] if c["msw"] > 0 else np.inf
    fl = F / stats.f.ppf(1 - a / 2, c["df_between"], c["df_within"])
    fu = F / stats.f.ppf(a / 2, c["df_between"], c["df_within"])
    lo = (fl - 1) / (fl + c["n0"] - 1)
    hi = (fu - 1) / (fu + c["n0"] - 1)
    if c["icc"] < 0:
        notes.append(f"the ANOVA estimate is negative ({c['icc']:.4g}): reported as 0.")
    summary = pd.DataFrame([{"icc": min(max(c["icc"], 0.0), 1.0), "lower": min(max(lo, 0.0), 1.0),
                             "upper": min(max(hi, 0.0), 1.0), "icc_raw": c["icc"], "msb": c["msb"],
                             "msw": c["msw"], "df_between": c["df_between"], "df_within": c["df_within"],
                             "n0": c["n0"], "F": F}])
    res = ICCResult(summary, notes)
    res.method = (f"one-way ANOVA, {len(cells)} clusters of {cluster}"
                  + (f" nested in {' x '.join(within)}" if within else "")
                  + f" ({'binary' if binary else 'continuous'} outcome); "
                  + f"{100 * conf_level:g}% interval by Searle's F method with average cluster size "
                  + f"n0 = {c['n0']:.1f}")
    res.n, res.n_clusters, res.conf_level = len(d), len(cells), conf_level
    return res


# ----------------------------------------------------------------------------- gamma frailty

def _gammacon(d: np.ndarray, nu: float) -> float:
    """The gamma-frailty correction that turns the penalised partial likelihood into the
    integrated one (R ``survival:::frailty.gammacon``): ``sum_c [d_c + nu log(nu / (nu +
    d_c)) + log Gamma(nu + d_c) - log Gamma(nu) - d_c log(nu + d_c)]``, ``d_c`` the events
    of cluster c; R's first term switches to ``sum d^2 / nu`` for ``nu > 1e7 max d``."""
    d = np.asarray(d, float)
    if nu > 1e7 * d.max():
        term1 = float(np.sum(d * d) / nu)
    else:
        term1 = float(np.sum(d + nu * np.log(nu / (nu + d))))
    term2 = float(np.sum(special.gammaln(nu + d) - special.gammaln(nu) - d * np.log(nu + d)))
    return term1 + term2


class _FrailtyTerms:
    """Cox log-likelihood, score and information at ``(beta, w)``, ``w`` the log frailties,
    without a column per cluster: the model matrix ``[X, Z]`` (``Z`` the cluster
    indicators) is never built.

    The sums run over the model's cells (:class:`_FrailtyModel`: the rows of one tie group,
    event status and cluster), whose rows share ``exp(w_c)`` and the group's Efron
    coefficients: ``eta`` and ``exp(eta)`` are taken once per distinct row (rows alike in
    group, event status, cluster and covariates are one row with a count), one sparse
    product gives each cell's sums of ``r`` and ``r x``, and the risk-set sums enter the
    likelihood and the score only through ``S0``, ``E0`` and the within-stratum cumulative
    coefficient ``A`` (a row's score term is ``r (A - b [event])``, so the score of a
    cluster is ``d_c`` minus a sum over its cells). The information (:attr:`blocks`, needed
    only for a Newton step) adds Efron's second-order sums and the risk-set sums of ``Z``
    per tie group for the clusters of the group's stratum only (a ``groups x
    clusters-per-stratum`` array, the local column ``q`` of stratum ``s`` being cluster
    ``pair_cluster[s, q]``), whose products are summed stratum by stratum. Same
    quantities as ``_Terms`` on ``[X, Z]`` (up to rounding; checked in
    ``tests/reference/test_icc_reference.py``), in memory linear in the rows."""

    def __init__(self, beta: np.ndarray, m: "_FrailtyModel"):
        from pipeline.stats.coxph import (_efron_first, _group_coefficients, _segment_sums,
                                          _suffix_groups, _within_stratum_cumsum)

        sd, p = m.sd, m.p
        bx, w = beta[:p], beta[p:]
        ru = m.u_n * np.exp(m.Xu @ bx + w[m.u_cl])      # r of each distinct row, times its count
        if m.cell_units is None:  # one distinct row per cell (covariates constant in clusters)
            cr, crx = ru, ru[:, None] * m.Xu
        else:
            cs = _segment_sums(m.Xu1, ru, m.cell_units)  # per cell: sum r, sum r x
            cr, crx = cs[:, 0], cs[:, 1:]
        S0 = _suffix_groups(np.add.reduceat(cr, m.g_cell_first), sd)
        E0 = np.zeros(len(S0))
        if len(m.ev_cells):
            E0[sd.ev_groups] = np.add.reduceat(cr[m.ev_cells], m.ev_cell_starts)
        if sd.efron:  # as _Terms (unweighted); the second-order sums only for the information
            a, b, logterm, self._D = _efron_first(S0, E0, sd.ev_g, m.efron_steps)
        else:
            a, b, c0, c1, c2, logterm = _group_coefficients(S0, E0, sd.d, sd.dw, sd.ev_g,
                                                            sd.ev_starts, False)
            self._c = c0, c1, c2
        # each row's multiplier in the score and the information: A = sum of a over the
        # groups of its stratum up to its time, less b at its own group if it is an event
        k = _within_stratum_cumsum(a, sd)[m.cell_g]
        if sd.efron:
            k[m.ev_cells] -= b[m.ev_cell_g]
        zz = np.bincount(m.cell_c, weights=k * cr, minlength=m.C)
        self.loglik = float(m.x_ev @ bx + m.d @ w - logterm)   # sum of eta over the events
        self.score = np.r_[m.x_ev - k @ crx, m.d - zz]
        self.m, self.ru, self.cr, self.crx, self.k, self.zz = m, ru, cr, crx, k, zz
        self.a, self.b = a, b

    @cached_property
    def blocks(self):
        """The information in pieces: the covariates' block ``xx`` (p x p), their sums with
        each cluster ``xz`` (p x C), the clusters' diagonal ``zz`` (C) and, per stratum,
        the risk-set terms over its covariates and clusters (an ``S x (p + Q) x (p + Q)``
        array, stratum s's terms in its first ``p + q`` rows and columns, ``q`` its
        clusters ``pair_cluster[s, :q]``, zeros after them)."""
        from pipeline.stats.coxph import _efron_second, _suffix_groups

        m = self.m
        sd, p, C, Q = m.sd, m.p, m.C, m.Q
        G = len(sd.g_first)
        cr, crx, k = self.cr, self.crx, self.k
        # sum_i r_i (A_i - b_i [event]) x~_i x~_i' with x~ = (x, z): x block, x-by-cluster
        # sums, diagonal
        xx = (m.Xu * (self.ru * k[m.u_cell])[:, None]).T @ m.Xu
        xz = np.array([np.bincount(m.cell_c, weights=k * crx[:, j], minlength=C)
                       for j in range(p)]).reshape(p, C)
        # the risk-set and event sums of x and z per tie group
        S1x = _suffix_groups(np.add.reduceat(crx, m.g_cell_first, axis=0), sd)
        S1z = _suffix_groups(np.bincount(m.cell_gq, weights=cr, minlength=G * Q).reshape(G, Q), sd)
        E1x = np.zeros_like(S1x)
        E1z = np.zeros((G, Q))
        if sd.efron and len(m.ev_cells):
            ev = m.ev_cells
            E1x[sd.ev_groups] = np.add.reduceat(crx[ev], m.ev_cell_starts, axis=0)
            E1z = np.bincount(m.cell_gq[ev], weights=cr[ev], minlength=G * Q).reshape(G, Q)
        # the risk-set terms, one stratum at a time over its groups and its clusters
        c0, c1, c2 = _efron_second(self._D, sd.ev_g, m.efron_steps, G) if sd.efron else self._c
        bounds = np.r_[m.s_first_group, G]
        per_stratum = np.zeros((len(m.s_first_group), p + Q, p + Q))  # padded to Q clusters
        for s in range(len(m.s_first_group)):
            g = slice(bounds[s], bounds[s + 1])
            q = m.n_local[s]
            S1 = np.hstack([S1x[g], S1z[g, :q]])
            blk = -(S1 * c0[g, None]).T @ S1
            if sd.efron:
                E1 = np.hstack([E1x[g], E1z[g, :q]])
                cross = (S1 * c1[g, None]).T @ E1
                blk += cross + cross.T
                blk -= (E1 * c2[g, None]).T @ E1
            per_stratum[s, :p + q, :p + q] = blk
        return xx, xz, self.zz, per_stratum

    def information(self) -> np.ndarray:
        """``_Terms.information()`` of the model matrix ``[X, Z]`` (dense)."""
        return _information(self.m, self.blocks)

    def newton_step(self, score: np.ndarray, penalty: np.ndarray) -> np.ndarray:
        """Solve ``(information + diag(0, penalty)) step = score`` (see :func:`_newton_step`)."""
        return _newton_step(self.m, self.blocks, score, penalty)


def _information(m: "_FrailtyModel", blocks) -> np.ndarray:
    """The dense ``(p + C) x (p + C)`` information from :attr:`_FrailtyTerms.blocks`."""
    p, C = m.p, m.C
    xx, xz, zz, per_stratum = blocks
    info = np.zeros((p + C, p + C))
    info[:p, :p] = xx
    info[:p, p:] = xz
    info[p:, :p] = xz.T
    info[p + np.arange(C), p + np.arange(C)] += zz
    for s, blk in enumerate(per_stratum):
        q = m.n_local[s]
        idx = np.r_[np.arange(p), p + m.pair_cluster[s, :q]]
        info[np.ix_(idx, idx)] += blk[:p + q, :p + q]
    return info


def _newton_step(m: "_FrailtyModel", blocks, score: np.ndarray, penalty: np.ndarray) -> np.ndarray:
    """Solve ``(information + diag(0, penalty)) step = score`` (``penalty`` per cluster),
    the information given by its :attr:`_FrailtyTerms.blocks`.

    With every cluster in one stratum the clusters' part of the matrix is block
    diagonal (a block per stratum), and the step is found through the Schur
    complement of the covariates' block: one batch of small solves, a stratum each
    (padded to the largest stratum's clusters by an identity), instead of one dense
    ``(p + C)`` system (C = 1,000 clusters at national size)."""
    p = m.p
    if not m.nested:
        info = _information(m, blocks)
        info[p:, p:] += np.diag(penalty)
        return np.linalg.solve(info, score)
    xx, xz, zz, per_stratum = blocks
    u, v = score[:p], score[p:]
    cols = m.pair_cluster                                 # S x Q, -1 past a stratum's clusters
    real = cols >= 0
    c = np.where(real, cols, 0)
    B = np.where(real[:, None, :], xz[:, c].transpose(1, 0, 2), 0.0) + per_stratum[:, :p, p:]
    D = per_stratum[:, p:, p:].copy()
    diag = np.arange(m.Q)
    D[:, diag, diag] += np.where(real, zz[c] + penalty[c], 1.0)
    rhs = np.concatenate([B.transpose(0, 2, 1), np.where(real, v[c], 0.0)[:, :, None]], axis=2)
    sol = np.linalg.solve(D, rhs)                         # S x Q x (p + 1): D^-1 [B', v]
    A = xx + per_stratum[:, :p, :p].sum(axis=0) - np.einsum("spq,sqk->pk", B, sol[:, :, :p])
    x = np.linalg.solve(A, u - np.einsum("spq,sq->p", B, sol[:, :, p])) if p else np.zeros(0)
    step = np.empty_like(score)
    step[:p] = x
    step[p + cols[real]] = (sol[:, :, p] - sol[:, :, :p] @ x)[real]
    return step


class _Solved(NamedTuple):
    """A converged penalised fit, kept to start the fits at other thetas from: its point
    and what a Newton step from it needs (all independent of theta)."""

    beta: np.ndarray
    loglik: float
    score: np.ndarray
    blocks: tuple


class _FrailtyModel:
    """Penalised Cox fits ``PL(beta, w) - nu sum_c (exp(w_c) - w_c - 1)`` at fixed theta.

    The rows are sorted once (:func:`pipeline.stats.coxph._prepare` of the covariates),
    then within each tie group by event status, cluster and covariates: a *cell* is the
    rows of one group, status and cluster (contiguous), and rows alike in all of these and
    the covariates are kept once with their count. Every fit of the search over theta
    reuses this; the clusters enter through :class:`_FrailtyTerms`, not as columns. Each
    theta is fitted once (the search asks for some twice), starting from the converged
    fit at the nearest theta already fitted."""

    def __init__(self, t, e, X, strata, cl, efron):
        from pipeline.stats.coxph import _efron_steps, _index, _prepare

        self.C = int(cl.max() + 1)
        self.p = X.shape[1]
        self.sd = sd = _prepare(np.asarray(X, float).reshape(len(t), -1), t, e, strata, efron)
        self.cl = cl = np.asarray(cl)[sd.order]  # sorted rows' clusters
        self.d = np.bincount(cl, weights=sd.event, minlength=self.C)
        self.x_ev = sd.Xev_g.sum(axis=0)  # sum of the covariates over the events
        self.efron_steps = _efron_steps(sd.d, sd.dw, sd.ev_g, sd.ev_starts) if efron else None
        # (stratum, cluster) pairs: each cluster's local column within its stratum
        s_id = np.cumsum(np.r_[True, sd.strata[1:] != sd.strata[:-1]]) - 1
        S = int(s_id[-1]) + 1
        key = s_id * self.C + cl
        if S * self.C <= 4 * len(key):  # np.unique's answer without sorting the rows
            seen = np.zeros(S * self.C, bool)
            seen[key] = True
            pair, row_pair = np.nonzero(seen)[0], (np.cumsum(seen) - 1)[key]
        else:
            pair, row_pair = np.unique(key, return_inverse=True)
        pair_s, pair_c = pair // self.C, pair % self.C
        first = np.searchsorted(pair_s, np.arange(S))
        local = np.arange(len(pair)) - first[pair_s]
        self.n_local = np.bincount(pair_s, minlength=S)
        self.Q = Q = int(self.n_local.max())
        self.pair_cluster = np.full((S, Q), -1)
        self.pair_cluster[pair_s, local] = pair_c
        self.s_first_group = sd.row_g[np.searchsorted(s_id, np.arange(S))]  # per stratum
        self.nested = len(pair_c) == len(np.unique(pair_c))  # each cluster in one stratum
        # cells (group, event status, cluster) and their distinct rows
        X = sd.X
        o = np.lexsort((*X.T[::-1], cl, sd.event, sd.row_g))
        g, ev, c, Xs = sd.row_g[o], sd.event[o], cl[o], X[o]
        new_cell = np.r_[True, (g[1:] != g[:-1]) | (ev[1:] != ev[:-1]) | (c[1:] != c[:-1])]
        new_row = new_cell | np.r_[True, (Xs[1:] != Xs[:-1]).any(axis=1)]
        u_first = np.nonzero(new_row)[0]
        self.u_n = np.diff(np.r_[u_first, len(o)]).astype(float)   # count of each distinct row
        self.Xu = Xs[u_first]
        self.Xu1 = np.column_stack([np.ones(len(u_first)), self.Xu])
        self.u_cl = c[u_first]
        self.u_cell = np.cumsum(new_cell)[u_first] - 1
        cell_first = np.nonzero(new_cell)[0]
        self.cell_units = None if len(cell_first) == len(u_first) else (
            _index(np.r_[np.nonzero(new_cell[u_first])[0], len(u_first)]), _index(np.arange(len(u_first))))
        self.cell_g, self.cell_c = g[cell_first], c[cell_first]
        self.cell_gq = self.cell_g * Q + local[row_pair[o[cell_first]]]  # flat (group, local column)
        self.g_cell_first = np.nonzero(np.r_[True, self.cell_g[1:] != self.cell_g[:-1]])[0]
        self.ev_cells = np.nonzero(ev[cell_first])[0]
        self.ev_cell_g = ev_g = self.cell_g[self.ev_cells]
        self.ev_cell_starts = np.nonzero(np.r_[True, ev_g[1:] != ev_g[:-1]])[0] if len(ev_g) else ev_g
        self._pair_s, self._local = pair_s, local
        self._fits: dict[float, tuple] = {}       # theta -> (beta, loglik, penalised)
        self._solved: dict[float, _Solved] = {}   # theta > 0 -> its converged fit

    def fit(self, theta: float, tol: float = 1e-13, max_iter: int = 100):
        """``(beta, loglik, penalised)`` at ``theta``: the coefficients and log frailties
        maximising the penalised partial likelihood, the partial likelihood there and the
        penalised one. Newton-Raphson with step halving, from the converged fit at the
        nearest theta fitted before (zeros for the first), until the last step changed the
        penalised likelihood by at most ``tol`` (relative) and the next one is below 1e-9
        (that point is the fit; a converged fit for a theta close enough is one), or the
        step, taken with the information at its own point, is no longer shrinking (Newton's
        quadratic convergence has reached the rounding of the sums, which where the
        likelihood is nearly flat, large theta, can keep the step near 1e-8 for ever). The information
        (the partial likelihood's: the penalty's is exact at every step) is kept from one
        step to the next while the steps shrink a hundredfold, and a fit starts with the
        one its starting fit ended with. A theta fitted before returns its fit."""
        from pipeline.stats.coxph import _newton, _structure, _Terms

        key = max(float(theta), 0.0)
        if key in self._fits:
            return self._fits[key]
        p, C = self.p, self.C
        if key == 0:  # no frailty: the plain Cox model
            beta = np.zeros(p + C)
            # _prepare of the sorted rows, which it would leave in their order: not sorted again
            sd = _structure(self.sd.X, self.sd.time, self.sd.event, self.sd.strata,
                            np.arange(len(self.sd.time)), self.sd.efron)
            if p:
                b, terms, _, _, _ = _newton(sd, p)
                beta[:p] = b
            else:
                terms = _Terms(np.zeros(0), sd)
            self._fits[key] = beta, terms.loglik, terms.loglik
            return self._fits[key]
        nu = 1.0 / theta

        def pen(b, loglik):
            w = b[p:]
            return loglik - nu * np.sum(np.exp(w) - w - 1)

        if self._solved:
            terms = self._solved[min(self._solved, key=lambda th: abs(th - theta))]
            beta, blocks, fresh = terms.beta, terms.blocks, False
            change = 0.0  # of a converged fit's last step: nothing
        else:
            beta = np.zeros(p + C)
            terms = _FrailtyTerms(beta, self)
            blocks, fresh, change = terms.blocks, True, np.inf
        obj = pen(beta, terms.loglik)
        last = np.inf
        for _ in range(max_iter):
            w = beta[p:]
            score = terms.score.copy()
            score[p:] -= nu * (np.exp(w) - 1)
            step = _newton_step(self, blocks, score, nu * np.exp(w))
            if np.max(np.abs(step)) < 1e-9 and change <= tol * max(1.0, abs(obj)):
                break  # the step from here is below the tolerance: this point is the fit
            new = beta + step
            nterms = _FrailtyTerms(new, self)
            nobj = pen(new, nterms.loglik)
            halvings = 0
            while not (np.isfinite(nobj) and nobj >= obj - 1e-12 * abs(obj)) and halvings < 30:
                step /= 2
                new = beta + step
                nterms = _FrailtyTerms(new, self)
                nobj = pen(new, nterms.loglik)
                halvings += 1
            change = abs(nobj - obj)
            beta, terms, obj = new, nterms, nobj
            size = np.max(np.abs(step))
            if change <= tol * max(1.0, abs(obj)) and fresh and size > last / 2:
                break  # no longer shrinking with the information at its own point: rounding
            # keep the information while the steps shrink a hundredfold (it is then close
            # enough to the current one), else take it at the new point
            if halvings or size > last / 100:
                blocks, fresh = terms.blocks, True
            else:
                fresh = False
            last = size
        self._solved[theta] = _Solved(beta, terms.loglik, terms.score, blocks)
        # the partial likelihood is unchanged by a common shift of the log frailties (it is
        # absorbed by the baseline hazard); the penalty's optimum has mean(exp(w)) = 1
        self._fits[key] = beta, terms.loglik, obj
        return self._fits[key]

    def integrated(self, theta: float) -> tuple[float, np.ndarray]:
        """R's ``c.loglik``: the penalised log-likelihood (with ``mean exp(w) = 1``) plus the
        gamma correction; at theta = 0 the Cox partial likelihood."""
        beta, pl, penalised = self.fit(theta)
        if theta <= 0:
            return pl, beta
        return penalised + _gammacon(self.d, 1.0 / theta), beta


def frailty_variance(df: pd.DataFrame, duration: str, event: str, covariates: Sequence[str], cluster: str,
                     strata: str | None = None, ties: str = "efron", conf_level: float = 0.95,
                     theta_max: float = 100.0) -> FrailtyResult:
    """Variance of a shared gamma frailty in a Cox model, as R ``coxph(Surv(duration,
    event) ~ covariates + strata(strata) + frailty(cluster))``, with a profile-likelihood
    interval.

    Parameters
    ----------
    df : DataFrame
    duration, event : str
        Follow-up time; 1 = event, 0 = censored.
    covariates : sequence of str
        Numeric columns (may be empty).
    cluster : str
        People sharing a frailty (the unit of randomisation).
    strata : str, optional
        One baseline hazard per stratum (site).
    ties : {"efron", "breslow"}
    conf_level : float
    theta_max : float
        Upper end of the search.

    Returns
    -------
    FrailtyResult

    Notes
    -----
    For each theta the penalised partial likelihood ``PL(beta, w) - (1/theta) sum_c
    (exp(w_c) - w_c - 1)`` is maximised over the coefficients ``beta`` and the log
    frailties ``w`` by Newton-Raphson; the integrated log-likelihood is that maximum plus
    R's gamma correction (:func:`_gammacon`; Therneau, Grambsch and Pankratz 2003), and
    theta maximises it (Brent's method on ``sqrt(theta)``, to 1e-10; 0 when the maximum is
    at the boundary). The interval is ``{theta: 2 (l(theta_hat) - l(theta)) <= chi2(1,
    conf_level)}``, its lower end 0 when the boundary is inside. The likelihood-ratio test
    of no frailty refers its statistic to the 50:50 mixture of chi-square(0) and
    chi-square(1) (theta = 0 is on the boundary). Kendall's tau between two people of a
    cluster is ``theta / (theta + 2)`` (Hougaard 2000).

    References
    ----------
    Therneau TM, Grambsch PM, Pankratz VS. Penalized survival models and frailty. J Comput
    Graph Stat 2003;12:156-175. Hougaard P. Analysis of Multivariate Survival Data.
    Springer 2000 (section 7.2, Kendall's tau). Self SG, Liang KY. Asymptotic properties of
    maximum likelihood estimators and likelihood ratio tests under nonstandard conditions.
    JASA 1987;82:605-610. Therneau TM, Grambsch PM. Modeling Survival Data. Springer 2000
    (chapter 9).
    """
    from pipeline.stats._surv_data import complete_rows, durations_events

    if ties not in ("efron", "breslow"):
        raise ValueError("ties must be 'efron' or 'breslow'")
    check_conf_level(conf_level)
    covariates = list(covariates)
    notes: list[str] = []
    d = complete_rows(df, [duration, event, *covariates, cluster, strata], notes)
    t, e = durations_events(d, duration, event)
    if e.sum() == 0:
        raise ValueError("no events: the frailty variance cannot be estimated")
    X = d[covariates].to_numpy(float) if covariates else np.zeros((len(d), 0))
    s_codes = pd.factorize(d[strata], sort=True)[0] if strata else np.zeros(len(d), np.int64)
    cl, levels = pd.factorize(d[cluster], sort=True)
    if len(levels) < 2:
        raise ValueError("a frailty variance needs at least two clusters")
    model = _FrailtyModel(t, e.astype(bool), X, s_codes, cl, ties == "efron")
    ll0 = model.integrated(0.0)[0]

    def negll(r):
        return -model.integrated(r * r)[0]

    # bracket the maximum on a grid of sqrt(theta), then Brent within the bracket
    grid = np.sqrt(np.array([0.0, 0.01, 0.05, 0.2, 0.5, 1.0, 2.0, 5.0, 20.0, theta_max]))
    vals = np.array([negll(r) for r in grid])
    i = int(np.argmin(vals))
    if i == 0:
        lo_b, hi_b = grid[0], grid[1]
    else:
        lo_b, hi_b = grid[i - 1], grid[min(i + 1, len(grid) - 1)]
    r = optimize.minimize_scalar(negll, bounds=(lo_b, hi_b), method="bounded",
                                 options={"xatol": 1e-10, "maxiter": 500})
    theta = float(r.x**2) if r.fun < vals[i] else float(grid[i] ** 2)
    if theta < 1e-8 or -r.fun <= ll0:
        theta = 0.0
    llmax, beta = model.integrated(theta)
    if theta == 0:
        llmax = ll0
        notes.append("the integrated likelihood is largest at theta = 0: no frailty variance detected.")
    crit = stats.chi2.ppf(conf_level, 1) / 2

    def excess(th):
        return llmax - model.integrated(th)[0] - crit

    lower = 0.0
    if theta > 0 and excess(0.0) > 0:
        lower = float(optimize.brentq(lambda x: excess(x * x), 0.0, np.sqrt(theta), xtol=1e-12)) ** 2
    if excess(theta_max) < 0:
        upper = np.inf
        notes.append(f"the interval's upper end is beyond theta = {theta_max:g}.")
    else:
        upper = float(optimize.brentq(lambda x: excess(x * x), np.sqrt(max(theta, 1e-12)),
                                      np.sqrt(theta_max), xtol=1e-12)) ** 2
    lr = max(0.0, 2 * (llmax - ll0))
    p = 0.5 * stats.chi2.sf(lr, 1) if lr > 0 else 1.0
    tau = lambda x: x / (x + 2) if np.isfinite(x) else 1.0  # noqa: E731
    summary = pd.DataFrame([{"theta": theta, "lower": lower, "upper": upper, "tau": tau(theta),
                             "tau_lower": tau(lower), "tau_upper": tau(upper), "loglik": llmax,
                             "loglik_0": ll0, "lr_chisq": lr, "p": p}])
    res = FrailtyResult(summary, notes)
    res.coef = pd.Series(beta[:len(covariates)], index=covariates, dtype=float)
    w = beta[len(covariates):]
    res.frailties = pd.Series(w, index=pd.Index(levels, name=cluster))
    res.method = (f"shared gamma frailty by {cluster} ({len(levels)} clusters) in a Cox model"
                  + (f" stratified by {strata}" if strata else "")
                  + (f" with {', '.join(covariates)}" if covariates else "")
                  + f" ({ties.capitalize()} ties); variance by maximum integrated likelihood "
                  + f"(as R coxph frailty()), {100 * conf_level:g}% profile-likelihood interval")
    res.n, res.n_clusters, res.conf_level = len(d), len(levels), conf_level
    return res
