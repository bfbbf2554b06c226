"""Cox proportional hazards regression: Efron or Breslow ties, strata, cluster-robust errors.

The fit is a vectorised Newton-Raphson over data sorted once by (stratum, time): risk-set
sums are suffix sums, and the second-derivative term ``sum_k S2_k / S0_k`` is one weighted
cross-product ``X' diag(r * A) X`` (``A`` the cumulative Efron weights at each row's time),
so no ``n x p x p`` array is ever built. Checked against R ``coxph``, ``cox.zph``,
``concordance`` and ``sandwich::vcovCL`` in ``tests/reference/test_cox_reference.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import sparse, stats

from pipeline.stats._result import AttrResult, NotEstimable
from pipeline.stats._surv_concordance import concordance as _concordance
from pipeline.stats._surv_data import (complete_rows, constant_columns, design_matrix,
                                       durations_events, z_value)

__all__ = ["CoxResult", "cox"]


@dataclass
class _Sorted:
    """Data sorted by (stratum, time) with the group structure the sums need."""

    X: np.ndarray  # (n, p), column-centred
    time: np.ndarray
    event: np.ndarray  # bool
    strata: np.ndarray  # int codes
    order: np.ndarray  # sorted row -> input row (of the complete-case frame)
    row_g: np.ndarray  # tie group (stratum, time) of each row
    g_first: np.ndarray  # first row of each tie group
    g_stratum_last: np.ndarray  # last row of the stratum of each group
    g_stratum_first_group: np.ndarray  # first group of the stratum of each group
    d: np.ndarray  # events per group
    efron: bool
    g_stratum_last_group: np.ndarray  # last group of the stratum of each group
    ev_rows: np.ndarray  # event rows (sorted)
    ev_g: np.ndarray  # their tie group
    ev_groups: np.ndarray  # tie groups with events
    ev_starts: np.ndarray  # start of each event group within ev_rows
    Xev_g: np.ndarray  # (G, p) sum of X over the events of each group (weighted)
    w: np.ndarray  # case weights (ones when unweighted)
    dw: np.ndarray  # summed weight of the events per group (= d when unweighted)
    unweighted: bool = False  # w is all ones: multiplying by it is skipped (x * 1.0 == x)
    patterns: tuple[np.ndarray, np.ndarray] | None = None  # :func:`_row_patterns` of X

    @cached_property
    def group_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """``(indptr, indices)`` of the tie groups' rows, for :func:`_segment_sums`."""
        n = len(self.time)
        return _index(np.r_[self.g_first, n]), _index(np.arange(n))

    @cached_property
    def event_group_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """``(indptr, indices)`` of the event rows of each group with events."""
        return _index(np.r_[self.ev_starts, len(self.ev_rows)]), _index(self.ev_rows)

    @cached_property
    def efron_steps(self) -> tuple[np.ndarray, np.ndarray | None] | None:
        """:func:`_efron_steps` of these data (None with Breslow ties), for every
        :class:`_Terms` at another beta."""
        return _efron_steps(self.d, self.dw, self.ev_g, self.ev_starts) if self.efron else None


def _index(a: np.ndarray) -> np.ndarray:
    return a.astype(np.int32 if len(a) == 0 or a.max() < 2**31 - 1 else np.int64)


def _segment_sums(X: np.ndarray, weights: np.ndarray, layout: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Per segment, ``sum_i weights_i X_i`` over its rows (``layout`` as
    :attr:`_Sorted.group_rows`), as ``np.add.reduceat`` of the rows ``weights_i X_i``
    would give (rows added in order), by one sparse (segments x rows) product: about 5x
    faster than ``reduceat`` over an ``n x p`` array, which it also does not build."""
    indptr, indices = layout
    M = sparse.csr_matrix((weights, indices, indptr), shape=(len(indptr) - 1, len(X)))
    return M @ X


def _prepare(X, time, event, strata, efron, weights=None) -> _Sorted:
    """Sort by (stratum, time) and build the structure (:func:`_structure`), with the
    distinct rows of the centred ``X`` (:func:`_row_patterns`)."""
    order = np.lexsort((time, strata))
    sd = _structure(X[order], time[order], event[order], strata[order], order, efron,
                    None if weights is None else np.asarray(weights, dtype=float)[order],
                    owned=True)
    sd.patterns = _row_patterns(sd.X)
    return sd


def _row_patterns(X: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The distinct rows ``X_u`` of ``X`` and each row's index among them, for the
    information's cross-product ``sum_i v_i x_i x_i' = sum_u (sum of v over the rows equal
    to x_u) x_u x_u'`` (:meth:`_Terms.information`, Fine-Gray's too), or None when that is
    not faster: with one column, or more distinct rows than half the rows. (Measured at
    50,000 rows up to half as many distinct rows as rows, the merged product, a
    ``bincount`` over the rows then the product of the distinct ones, took at most 0.85 of
    the plain one's CPU time with 2 columns, 0.47 with 14 and 0.42 with 23; with one column
    the plain product is a dot product, cheaper than the ``bincount``. Finding the rows
    cost 3 to 13 plain products: a fit's 5 to 8 informations recover that when few rows
    are distinct, may not near half, and a jackknife's refits, which reuse the rows, do
    many times over.)

    Each column is factorized and the codes combined column by column, factorized again
    whenever their product of levels could pass the number of rows; the search stops as
    soon as the rows seen so far have too many distinct values."""
    n, p = X.shape
    most = n // 2
    if p < 2:
        return None
    key, n_keys = np.zeros(n, dtype=np.int64), 1
    for j in range(p):
        codes, levels = pd.factorize(X[:, j])
        if len(levels) > most:
            return None
        key, n_keys = key * len(levels) + codes, n_keys * len(levels)
        if n_keys > n or j == p - 1:  # keys below n: key * levels stays below n**2
            key, uniq = pd.factorize(key)
            n_keys = len(uniq)
            if n_keys > most:
                return None
    Xu = np.empty((n_keys, p))
    Xu[key] = X  # the rows of a pattern are equal: whichever is written is its value
    return Xu, key


def _structure(X, t, e, s, order, efron, w=None, centred=False, patterns=None,
               owned=False) -> _Sorted:
    """:func:`_prepare` after the sort: rows already in (stratum, time) order, ``X`` not yet
    centred (``centred``: already centred, e.g. a jackknife replicate's rows of the full
    data's centred ``X``: centring only keeps ``exp(X beta)`` in range, and the full data's
    mean does that for 49 of 50 clusters' rows as well). The rows of a sorted frame that are
    kept (a jackknife replicate) are still in the order ``_prepare`` would give them
    (``lexsort`` is stable), so a replicate's structure is built from the full data's
    sorted rows without sorting again. ``patterns``: :attr:`_Sorted.patterns` of these rows
    (a replicate's: the full data's distinct rows and the kept rows' indices among them).
    ``owned``: ``X`` is the caller's own copy (``_prepare``'s sorted rows), centred in
    place rather than copied again (a national model's ``X``: 0.2 GB)."""
    n = len(t)
    unweighted = w is None
    w = np.ones(n) if unweighted else w
    # R centres by the weighted mean; centring only changes the baseline, not beta
    if not centred:
        mean = X.mean(axis=0) if unweighted else np.average(X, axis=0, weights=w)
        if owned and X.dtype == np.float64:
            X -= mean
        else:
            X = X - mean
    e = e.astype(bool)
    new_g = np.r_[True, (t[1:] != t[:-1]) | (s[1:] != s[:-1])]
    row_g = np.cumsum(new_g) - 1
    g_first = np.nonzero(new_g)[0]
    G = len(g_first)
    new_s = np.r_[True, s[1:] != s[:-1]]
    s_id = np.cumsum(new_s) - 1
    s_first_row = np.nonzero(new_s)[0]
    s_last_row = np.r_[s_first_row[1:] - 1, n - 1]
    g_s = s_id[g_first]
    g_stratum_last = s_last_row[g_s]
    s_first_group = row_g[s_first_row]
    d = np.bincount(row_g, weights=e, minlength=G)
    dw = d if unweighted else np.bincount(row_g, weights=e * w, minlength=G)
    s_last_group = row_g[s_last_row]
    ev_rows = np.nonzero(e)[0]
    ev_g = row_g[ev_rows]
    ev_starts = np.nonzero(np.r_[True, ev_g[1:] != ev_g[:-1]])[0] if len(ev_g) else ev_g
    ev_groups = ev_g[ev_starts]
    Xev_g = np.zeros((G, X.shape[1]))
    if len(ev_rows):
        Xev = X[ev_rows] if unweighted else X[ev_rows] * w[ev_rows, None]
        Xev_g[ev_groups] = np.add.reduceat(Xev, ev_starts, axis=0)
    return _Sorted(
        X, t, e, s, order, row_g, g_first, g_stratum_last, s_first_group[g_s], d, efron,
        s_last_group[g_s], ev_rows, ev_g, ev_groups, ev_starts, Xev_g, w, dw, unweighted,
        patterns,
    )


def _suffix(v: np.ndarray, sd: _Sorted) -> np.ndarray:
    """Risk-set sums: sum of v over rows of the same stratum with time >= the group's time.

    Rows are summed per tie group first (contiguous, ``reduceat``), then suffix sums run
    over the groups only.
    """
    return _suffix_groups(np.add.reduceat(v, sd.g_first, axis=0), sd)


def _suffix_groups(vg: np.ndarray, sd: _Sorted) -> np.ndarray:
    """:func:`_suffix` of values already summed per tie group."""
    G = len(vg)
    rcs = np.empty((G + 1,) + vg.shape[1:])
    np.cumsum(vg[::-1], axis=0, out=rcs[:G][::-1])  # rcs[k]: sum over the groups from k on
    rcs[G] = 0.0
    return rcs[:-1] - rcs[sd.g_stratum_last_group + 1]


def _within_stratum_cumsum(a: np.ndarray, sd: _Sorted) -> np.ndarray:
    """Per group: sum of ``a`` over groups of the same stratum up to and including it."""
    cs = np.cumsum(a, axis=0)
    cs0 = np.concatenate([np.zeros((1,) + a.shape[1:]), cs], axis=0)
    return cs - cs0[sd.g_stratum_first_group]


def _efron_steps(d, dw, idx, starts) -> tuple[np.ndarray, np.ndarray | None]:
    """The Efron sub-step of each event, for :func:`_group_coefficients` called many times
    on the same data: ``f_m = m / d`` and the mean event weight ``mw = dw / d`` (None when
    it is 1 for every event, unweighted data). They do not depend on beta."""
    start = np.repeat(starts, np.diff(np.r_[starts, len(idx)]))
    f = (np.arange(len(idx)) - start) / d[idx]
    mw = dw[idx] / d[idx]
    return f, (None if np.all(mw == 1.0) else mw)


def _efron_first(S0, E0, idx, steps, log=True):
    """Efron's first-order sums per tie group (:func:`_group_coefficients`): ``a``, ``b``,
    the log term of the likelihood (with ``log``, else None) and ``D_m`` of each event,
    from which :func:`_efron_second` takes the rest. ``steps`` as :func:`_efron_steps`."""
    G = len(S0)
    f, mw = steps
    D = S0[idx] - f * E0[idx]
    if mw is None:  # unweighted: mw = 1
        a = np.bincount(idx, weights=1.0 / D, minlength=G)
        b = np.bincount(idx, weights=f / D, minlength=G)
        logterm = np.log(D).sum() if log else None
    else:
        a = np.bincount(idx, weights=mw / D, minlength=G)
        b = np.bincount(idx, weights=mw * f / D, minlength=G)
        logterm = (mw * np.log(D)).sum() if log else None
    return a, b, logterm, D


def _efron_second(D, idx, steps, G):
    """Efron's second-order sums per tie group, ``c0``, ``c1``, ``c2`` of
    :func:`_group_coefficients`, from the ``D`` of :func:`_efron_first` (``G`` groups)."""
    f, mw = steps
    if mw is None:
        D2 = D**2
        c0 = np.bincount(idx, weights=1.0 / D2, minlength=G)
        c1 = np.bincount(idx, weights=f / D2, minlength=G)
        c2 = np.bincount(idx, weights=f**2 / D2, minlength=G)
    else:
        c0 = np.bincount(idx, weights=mw / D**2, minlength=G)
        c1 = np.bincount(idx, weights=mw * f / D**2, minlength=G)
        c2 = np.bincount(idx, weights=mw * f**2 / D**2, minlength=G)
    return c0, c1, c2


def _group_coefficients(S0, E0, d, dw, idx, starts, efron, second=True, steps=None):
    """Per tie group, the coefficients the score and information take from the risk-set
    sums ``S0`` and the events' sums ``E0``: ``a = sum_m mw / D_m``, ``b = sum_m mw f_m /
    D_m`` and, with ``second``, ``c0``, ``c1``, ``c2`` (the same over ``D_m^2``, times 1,
    ``f_m``, ``f_m^2``) and the log term of the likelihood. Efron expands each group's
    ``d`` events into sub-steps ``m = 0..d-1`` with ``f_m = m / d``, ``D_m = S0 - f_m E0``,
    each carrying the group's mean event weight ``mw = dw / d``; Breslow has ``a = dw /
    S0``, ``c0 = dw / S0^2`` and the rest zero. ``idx`` holds one entry per event (its
    group, sorted) and ``starts`` the first entry of each group's run. ``steps``, from
    :func:`_efron_steps` of the same arguments, saves recomputing the sub-steps; the
    results are the same to the bit (a weight of exactly 1 multiplies nothing). Efron's
    sums are :func:`_efron_first` and :func:`_efron_second`."""
    G = len(S0)
    if efron:
        steps = _efron_steps(d, dw, idx, starts) if steps is None else steps
        a, b, logterm, D = _efron_first(S0, E0, idx, steps, log=second)
        if not second:
            return a, b
        c0, c1, c2 = _efron_second(D, idx, steps, G)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.where(d > 0, dw / S0, 0.0)
            if not second:
                return a, np.zeros(G)
            c0 = np.where(d > 0, dw / S0**2, 0.0)
        b = c1 = c2 = np.zeros(G)
        logterm = np.sum(dw[d > 0] * np.log(S0[d > 0]))
    return a, b, c0, c1, c2, logterm


class _Terms:
    """Log-likelihood, score, information and Efron coefficients at one beta.

    With case weights ``w`` (R ``coxph(weights =)``): risk sets sum ``w exp(eta)``, and the
    ``d`` events of a tied group share their mean weight ``dw / d`` over the ``d`` Efron
    sub-steps (Therneau & Grambsch 2000, section 7.2; survival's ``coxfit6``). ``r`` is
    ``w exp(eta)``; with weights of one everything reduces to the unweighted model.
    """

    def __init__(self, beta: np.ndarray, sd: _Sorted):
        X, e = sd.X, sd.event
        eta = X @ beta
        r = np.exp(eta) if sd.unweighted else sd.w * np.exp(eta)
        self.r = r
        G = len(sd.g_first)
        S0 = _suffix(r, sd)
        S1 = _suffix_groups(_segment_sums(X, r, sd.group_rows), sd)
        ev_rows, ev_g = sd.ev_rows, sd.ev_g
        E0 = np.zeros(G)
        E1 = np.zeros_like(S1)
        if len(ev_rows):
            E0[sd.ev_groups] = np.add.reduceat(r[ev_rows], sd.ev_starts)
            E1[sd.ev_groups] = _segment_sums(X, r[ev_rows], sd.event_group_rows)
        a, b, c0, c1, c2, logterm = _group_coefficients(S0, E0, sd.d, sd.dw, ev_g, sd.ev_starts, sd.efron,
                                                        steps=sd.efron_steps)
        self.S0, self.S1, self.E0, self.E1 = S0, S1, E0, E1
        self.a, self.b, self.c0, self.c1, self.c2 = a, b, c0, c1, c2
        self.ev_rows, self.ev_g = ev_rows, ev_g
        self.loglik = float((eta[ev_rows] if sd.unweighted else sd.w[ev_rows] * eta[ev_rows]).sum() - logterm)
        self.U_g = sd.Xev_g - (a[:, None] * S1 - b[:, None] * E1)  # per-group score
        self.score = self.U_g.sum(axis=0)
        self.sd = sd

    def information(self, w: np.ndarray | None = None) -> np.ndarray:
        """``sum_k w_k V_k`` where ``V_k`` is the information from tie group ``k``. With
        :attr:`_Sorted.patterns`, the rows' cross-product ``X' diag(v) X`` sums ``v`` over the
        rows of each distinct covariate row first (equal to the plain product up to the
        order of the floating-point sums)."""
        sd, r, X = self.sd, self.r, self.sd.X
        if w is None:
            a, b, c0, c1, c2 = self.a, self.b, self.c0, self.c1, self.c2
        else:
            a, b = self.a * w, self.b * w
            c0, c1, c2 = self.c0 * w, self.c1 * w, self.c2 * w
        A = _within_stratum_cumsum(a, sd)[sd.row_g]
        v = r * A
        if sd.efron:
            # an event row's own Efron term, in the same cross-product
            er = self.ev_rows
            v[er] -= r[er] * b[self.ev_g]
        if sd.patterns is None:
            info = (X * v[:, None]).T @ X
        else:  # sum_i v_i x_i x_i' = sum_u (sum of v over the rows equal to x_u) x_u x_u'
            Xu, key = sd.patterns
            info = (Xu * np.bincount(key, weights=v, minlength=len(Xu))[:, None]).T @ Xu
        S1, E1 = self.S1, self.E1
        info -= (S1 * c0[:, None]).T @ S1
        if sd.efron:
            cross = (S1 * c1[:, None]).T @ E1
            info += cross + cross.T
            info -= (E1 * c2[:, None]).T @ E1
        return info

    def score_residuals(self) -> np.ndarray:
        """Per-row score residuals (rows in sorted order), unweighted as R's
        ``residuals(fit, "score")``: ``sum_i w_i L_i`` is the score."""
        sd, r, X = self.sd, self.r, self.sd.X
        a, b, c0, c1, c2 = self.a, self.b, self.c0, self.c1, self.c2
        S1, E1 = self.S1, self.E1
        A = _within_stratum_cumsum(a, sd)[sd.row_g]
        B = _within_stratum_cumsum(c0[:, None] * S1 - c1[:, None] * E1, sd)[sd.row_g]
        ex = r / sd.w  # exp(eta): the residual of one row is per unit of its weight
        L = -ex[:, None] * (X * A[:, None] - B)
        er, eg = self.ev_rows, self.ev_g
        d = sd.dw[eg]
        L[er] += X[er] - (a[eg, None] * S1[eg] - b[eg, None] * E1[eg]) / d[:, None]
        if sd.efron:
            L[er] += ex[er, None] * (X[er] * b[eg, None] - (c1[eg, None] * S1[eg] - c2[eg, None] * E1[eg]))
        return L

    def cluster_scores(self, cl: np.ndarray, n_clusters: int) -> np.ndarray:
        """Per cluster (``cl``: each sorted row's, 0 .. n_clusters - 1), the sum of its
        rows' weighted score residuals ``w_i L_i`` (:meth:`score_residuals`), without the
        n x p matrix of them: the risk-set part ``-sum r_i (A_g(i) x_i - B_g(i))`` as two
        sparse products (a cluster-by-row and a cluster-by-tie-group matrix of the risk
        weights), the events' part from the event rows only. ``n_clusters x p``."""
        sd, r, X = self.sd, self.r, self.sd.X
        a, b, c1, c2 = self.a, self.b, self.c1, self.c2
        S1, E1 = self.S1, self.E1
        n, G = len(r), len(a)
        A = _within_stratum_cumsum(a, sd)
        Bg = _within_stratum_cumsum(self.c0[:, None] * S1 - c1[:, None] * E1, sd)
        by_row = sparse.csr_matrix((r * A[sd.row_g], (cl, np.arange(n))), shape=(n_clusters, n))
        by_group = sparse.csr_matrix((r, (cl, sd.row_g)), shape=(n_clusters, G))
        out = by_group @ Bg - by_row @ X
        ev = np.empty((len(self.ev_rows), X.shape[1]))
        # the events' rows a block at a time: each term is an events x p array, and a
        # national model's events made five of them at once (0.3 GB); the values are the
        # same element by element
        for lo in range(0, len(ev), _EVENT_BLOCK):
            k = slice(lo, lo + _EVENT_BLOCK)
            er, eg = self.ev_rows[k], self.ev_g[k]
            d = sd.dw[eg]
            ev[k] = sd.w[er, None] * (X[er] - (a[eg, None] * S1[eg] - b[eg, None] * E1[eg]) / d[:, None])
            if sd.efron:
                ev[k] += r[er, None] * (X[er] * b[eg, None] - (c1[eg, None] * S1[eg] - c2[eg, None] * E1[eg]))
        _bincount_cols(out, cl[self.ev_rows], ev)
        return out


#: rows of the events' score terms computed at once (:meth:`_Terms.cluster_scores`)
_EVENT_BLOCK = 65536


def _bincount_cols(out: np.ndarray, idx: np.ndarray, vals: np.ndarray) -> None:
    for j in range(vals.shape[1]):
        out[:, j] += np.bincount(idx, weights=vals[:, j], minlength=out.shape[0])


def _newton(sd: _Sorted, p: int, init=None, max_iter: int = 50, tol: float = 1e-12,
            coefficients_only: bool = False):
    """Newton-Raphson with step halving; returns the terms at the start (``init``) too.

    ``coefficients_only`` (a jackknife replicate, whose coefficients alone are used): a
    step that already meets the convergence criterion's size (below 1e-8 of the
    coefficients) and whose first-order change of the log-likelihood (``score' step``,
    twice the quadratic model's) is within ``tol`` ends the search at the point it leads
    to, without evaluating the model there only to see that change confirmed; the terms
    returned are then None."""
    beta = np.zeros(p) if init is None else np.asarray(init, dtype=float)
    terms = terms0 = _Terms(beta, sd)
    converged = False
    for it in range(max_iter):
        info = terms.information()
        try:
            step = np.linalg.solve(info, terms.score)
        except np.linalg.LinAlgError:
            raise NotEstimable(
                "the information matrix is singular: no finite estimate (e.g. at every event "
                "time the people at risk in its stratum share one covariate value, or every "
                "event is in one group)") from None
        if coefficients_only and \
                np.max(np.abs(step)) < 1e-8 * max(1.0, np.max(np.abs(beta + step))) and \
                abs(terms.score @ step) <= tol * max(1.0, abs(terms.loglik)):
            return beta + step, None, terms0, True, it + 1
        new = _Terms(beta + step, sd)
        halvings = 0
        while not np.isfinite(new.loglik) or new.loglik < terms.loglik - 1e-12 * abs(terms.loglik):
            step /= 2
            halvings += 1
            if halvings > 30:
                break
            new = _Terms(beta + step, sd)
        change = abs(new.loglik - terms.loglik)
        beta, terms = beta + step, new
        if change <= tol * max(1.0, abs(terms.loglik)) and np.max(np.abs(step)) < 1e-8 * max(1.0, np.max(np.abs(beta))):
            converged = True
            break
    return beta, terms, terms0, converged, it + 1


def _jackknife(sd, cl, n_clusters, weighted, beta, start) -> tuple[np.ndarray, np.ndarray]:
    """Delete-one-cluster jackknife covariances of the coefficients and of the score at
    beta = 0: ``(G - 1) / G * sum_g (v_g - v_mean)(v_g - v_mean)'`` for ``v_g`` the refitted
    coefficients, and the score, without cluster g.

    ``sd`` is the full data sorted by :func:`_prepare`, ``cl`` the cluster code of each
    sorted row. Each replicate keeps the sorted, centred rows outside its cluster (no
    second sort or centring) and runs Newton-Raphson, to the
    same convergence criterion as the full fit, from ``start[g]``: the full fit's
    coefficients minus cluster g's summed dfbeta residuals, one Newton step from the full
    fit towards the replicate's, which saves about one iteration in three. The scores at
    zero come from per-group sums (:func:`_scores_at_zero`). The replicates' information
    merges equal covariate rows by the full data's :attr:`_Sorted.patterns`."""
    p = len(beta)
    fits = np.empty((n_clusters, p))
    ws = sd.w if weighted else None
    pat = sd.patterns
    for g in range(n_clusters):
        keep = np.flatnonzero(cl != g)   # (take by index copies X's rows faster than a mask)
        if not sd.event[keep].any():
            raise ValueError("the jackknife needs events outside every cluster")
        rep = _structure(np.take(sd.X, keep, axis=0), sd.time[keep], sd.event[keep],
                         sd.strata[keep], sd.order[keep], sd.efron,
                         None if ws is None else ws[keep], centred=True,
                         patterns=None if pat is None else (pat[0], pat[1][keep]))
        b, _, _, converged, _ = _newton(rep, p, init=start[g], coefficients_only=True)
        if not converged:
            raise ValueError(f"the model without cluster {g + 1} of {n_clusters} did not "
                             "converge: the jackknife cannot be computed")
        fits[g] = b
    scores = _scores_at_zero(sd, cl, n_clusters)
    factor = (n_clusters - 1) / n_clusters
    dev, sdev = fits - fits.mean(axis=0), scores - scores.mean(axis=0)
    return dev.T @ dev * factor, sdev.T @ sdev * factor


def _scores_at_zero(sd: _Sorted, cl: np.ndarray, n_clusters: int) -> np.ndarray:
    """Score at beta = 0 of the data without each cluster, one row per cluster.

    At zero every risk weight is the case weight, so the replicate's sums per tie group
    are the full data's minus the cluster's own (``bincount`` over its rows), and its
    risk-set sums are suffix sums over the groups: per cluster O(groups x p + events)
    instead of a pass over every row. Groups left without rows or events contribute
    nothing; the score does not depend on how the covariates are centred (shifting ``x``
    by ``c`` shifts ``a S1 - b E1`` by ``c dw``, as it shifts the events' sum)."""
    X, w, e, rg = sd.X, sd.w, sd.event, sd.row_g
    G, p = len(sd.g_first), X.shape[1]
    wX = w[:, None] * X
    W = np.add.reduceat(w, sd.g_first)
    WX = np.add.reduceat(wX, sd.g_first, axis=0)
    by_cluster = np.argsort(cl, kind="stable")
    bounds = np.searchsorted(cl[by_cluster], np.arange(n_clusters + 1))
    scores = np.empty((n_clusters, p))
    for g in range(n_clusters):
        rows = by_cluster[bounds[g]:bounds[g + 1]]
        k, ev = rg[rows], e[rows]
        W_r = W - np.bincount(k, weights=w[rows], minlength=G)
        WX_r = WX.copy()
        _bincount_cols(WX_r, k, -wX[rows])
        d_r = sd.d - np.bincount(k[ev], minlength=G)
        dw_r = sd.dw - np.bincount(k[ev], weights=w[rows][ev], minlength=G)
        Xev_r = sd.Xev_g.copy()
        _bincount_cols(Xev_r, k[ev], -wX[rows][ev])
        S0, S1 = _suffix_groups(W_r, sd), _suffix_groups(WX_r, sd)
        groups = np.nonzero(d_r > 0)[0]
        counts = d_r[groups].astype(np.int64)
        idx = np.repeat(groups, counts)
        starts = np.r_[0, np.cumsum(counts)[:-1]]
        # at zero the events' sums E0, E1 are their weights dw and weighted covariates
        a, b = _group_coefficients(S0, dw_r, d_r, dw_r, idx, starts, sd.efron, second=False)
        scores[g] = Xev_r.sum(axis=0) - (a @ S1 - b @ Xev_r)
    return scores


def _chi2_test(u: np.ndarray, v: np.ndarray, dist_df: int | None = None) -> dict:
    """``u' v^-1 u`` on ``len(u)`` df; with ``dist_df``, p from F(len(u), dist_df) of chisq / df.

    A singular ``v`` (a robust score covariance from fewer clusters than coefficients has
    rank at most clusters - 1) gives no test: chisq and p NaN, instead of failing the fit
    whose coefficients and variance do not need it."""
    df = len(u)
    if np.linalg.matrix_rank(v) < df:
        return {"chisq": float("nan"), "df": df, "p": float("nan")}
    chisq = float(u @ np.linalg.solve(v, u))
    p = stats.chi2.sf(chisq, df) if dist_df is None else stats.f.sf(chisq / df, df, dist_df)
    return {"chisq": chisq, "df": df, "p": float(p)}


class CoxResult(AttrResult):
    """A fitted Cox model.

    Attributes
    ----------
    summary : DataFrame, shape (n_terms, 8)
        Indexed by term (a numeric covariate's name, or ``column[T.level]`` for each
        non-reference level of a text covariate): ``coef, se, hr, hr_lower, hr_upper, z,
        p, se_naive``. With a
        ``cluster``, ``se`` is the robust (sandwich) standard error as R ``coxph(...,
        cluster=)`` reports it and ``se_naive`` the model-based one; otherwise both are
        model-based.
    loglik : tuple of float
        Partial log-likelihood at beta = 0 and at the estimate (R ``fit$loglik``).
    lr_test : dict
        Likelihood-ratio test against the null model: ``chisq, df, p``.
    score_test : dict
        Score (log-rank) test of beta = 0 with the model-based information: ``chisq, df,
        p`` (R ``summary(fit)$sctest``). With one binary covariate and Breslow ties it is
        the (stratified) log-rank test.
    robust_score_test : dict or None
        With a ``cluster``: the score test of beta = 0 with the cluster-robust variance of
        the score (Lin & Wei 1989; R ``summary(fit)$robscore``): the log-rank test for
        clustered data. With ``small_sample``, ``p`` is from F(df, G - 1) of ``chisq / df``;
        with ``"cr1"`` the variance is multiplied by G / (G - 1); with ``"jackknife"`` it is
        the delete-one-cluster jackknife variance of the score at beta = 0 (in a
        cluster-randomised design with 2 clusters per stratum, a true null was rejected
        at 5% in 7-9% of simulated trials with the CR1 sandwich and 6% with the
        jackknife).
        None without a cluster (or weights: then every row is its own cluster, as in R).
    vcov, vcov_naive : ndarray, shape (n_terms, n_terms)
    n, n_events, n_clusters : int
    weighted : bool
        Fitted with case ``weights``.
    dfbeta : DataFrame, shape (n, n_terms), or None
        With a cluster or weights (and no jackknife): each used row's weighted dfbeta
        residual (R ``residuals(fit, "dfbeta", weighted = TRUE)``), indexed like the input;
        per-cluster sums of these give the robust variance. Computed when first read (a
        result of a national extract would otherwise hold a million rows of them).
    """

    title = "Cox proportional hazards model"

    @cached_property
    def dfbeta(self) -> pd.DataFrame | None:
        index = getattr(self, "_dfbeta_index", None)
        if index is None:
            return None
        sd = self._sd
        back = np.empty((len(sd.order), len(self.summary)))
        back[sd.order] = _dfbeta(self._terms, sd, self.vcov_naive)
        return pd.DataFrame(back, index=index, columns=self.summary.index.tolist())

    @cached_property
    def concordance(self) -> dict:
        """Harrell's C of the linear predictor as R ``concordance(fit)`` (``concordance, se``)."""
        if self.weighted:
            raise NotImplementedError("concordance of a weighted Cox model is not implemented")
        sd = self._sd
        lp = sd.X @ self.summary["coef"].to_numpy()
        return _concordance(sd.time, sd.event, lp, sd.strata, self._cluster_codes)

    def ph_test(self, transform: str = "km") -> pd.DataFrame:
        """Score test of proportional hazards per term and globally, as R ``cox.zph``.

        Parameters
        ----------
        transform : {"km", "identity", "rank", "log"}
            Function of time ``g(t)`` interacted with each covariate; ``"km"`` (R's
            default) is one minus the left-continuous Kaplan-Meier of all the data.

        Returns
        -------
        DataFrame, shape (n_terms + 1, 3)
            Indexed by covariate and ``GLOBAL``: ``chisq, df, p``; a factor is one term
            with as many df as it has columns, as ``cox.zph`` groups them.

        References
        ----------
        Grambsch PM, Therneau TM. Proportional hazards tests and diagnostics based on
        weighted residuals. Biometrika 1994;81:515-526. (The test is the score test of
        adding ``x * g(t)`` evaluated at the fitted coefficients, as survival >= 3.0 does.)
        """
        if self.weighted:
            raise NotImplementedError("the proportional-hazards test of a weighted Cox model is "
                                      "not implemented")
        sd, terms = self._sd, self._terms
        t, e = sd.time, sd.event
        if transform == "km":
            times, inv = np.unique(t, return_inverse=True)
            n_ev = np.bincount(inv, weights=e, minlength=len(times))
            n_risk = np.bincount(inv, minlength=len(times))[::-1].cumsum()[::-1]
            surv = np.cumprod(1 - n_ev / n_risk)
            left = np.r_[1.0, surv[:-1]][inv]
            tt = 1 - left
        elif transform == "identity":
            tt = t.astype(float)
        elif transform == "rank":
            tt = stats.rankdata(t)
        elif transform == "log":
            tt = np.log(t)
        else:
            raise ValueError("transform must be 'km', 'identity', 'rank' or 'log'")
        g_row = tt - tt[e].mean()
        g = g_row[sd.g_first]
        p = len(self.summary)
        u2 = (terms.U_g * g[:, None]).sum(axis=0)
        i11 = terms.information()
        i12 = terms.information(g)
        i22 = terms.information(g**2)
        imat = np.block([[i11, i12], [i12.T, i22]])
        u = np.r_[np.zeros(p), u2]
        rows = []
        for term, cols in self._term_cols.items():
            kk = np.r_[np.arange(p), p + np.asarray(cols)]
            uj = u[kk]
            chisq = float(uj @ np.linalg.solve(imat[np.ix_(kk, kk)], uj))
            rows.append((term, chisq, len(cols)))
        chisq = float(u @ np.linalg.solve(imat, u))
        rows.append(("GLOBAL", chisq, p))
        out = pd.DataFrame(rows, columns=["term", "chisq", "df"]).set_index("term")
        out["p"] = stats.chi2.sf(out["chisq"], out["df"])
        return out


def cox(
    df: pd.DataFrame,
    duration: str,
    event: str,
    covariates: Sequence[str],
    strata: str | Sequence[str] | None = None,
    cluster: str | None = None,
    ties: str = "efron",
    small_sample: str | None = None,
    conf_level: float = 0.95,
    weights: str | None = None,
) -> CoxResult:
    """Fit a Cox proportional hazards model by maximum partial likelihood.

    Parameters
    ----------
    df : DataFrame, shape (n_samples, n_columns)
    duration : str
        Follow-up time column.
    event : str
        1 = event, 0 = censored (or boolean).
    covariates : list of str
        Numeric (or boolean) columns, and text columns, which enter as factors with
        treatment contrasts as in R: one term ``column[T.level]`` per level but the first
        (levels sorted, or a pandas ``Categorical``'s order; a note names the reference).
    strata : str or list of str, optional
        Stratifying column(s): a separate baseline hazard per stratum (R ``strata()``).
    cluster : str, optional
        Cluster identifier (e.g. person with several rows, or site). ``se`` becomes the
        robust sandwich standard error ``sqrt(diag(D'D))``, ``D`` the per-cluster sums of
        dfbeta residuals, as R ``coxph(..., cluster = id)``.
    ties : {"efron", "breslow"}
        Handling of tied event times; Efron is R's default.
    small_sample : {None, "t", "cr1", "jackknife"}
        Corrections for few clusters (about 6-30), only with ``cluster``:
        ``"t"`` keeps the sandwich variance and uses a t reference distribution with
        G - 1 degrees of freedom for p-values and intervals; ``"cr1"`` also multiplies the
        sandwich by G / (G - 1) (the Stata / ``sandwich::vcovCL(cadjust = TRUE)``
        correction) and uses t with G - 1 df; ``"jackknife"`` replaces the sandwich by the
        delete-one-cluster jackknife ``(G - 1) / G * sum_g (b_g - b_mean)(b_g - b_mean)'``,
        ``b_g`` the model refitted without cluster g (CV3; Stata ``vce(jackknife)``), with
        t on G - 1 df. The sandwich is biased small when a covariate is constant within
        clusters and there are few clusters per stratum (it leaves out the clusters'
        leverage); the jackknife is not, at the cost of G refits.
    conf_level : float, default 0.95
    weights : str, optional
        Column of case weights (> 0), e.g. inverse-probability-of-treatment weights: R
        ``coxph(..., weights = w)``. The variance is then robust, as R's default with
        weights: the sandwich of the weighted dfbeta residuals summed per ``cluster``, or
        per row without one (``se_naive`` is the model-based one, which is wrong for
        estimated weights). It treats the weights as known; the uncertainty of weights
        estimated from a propensity model is added by
        :func:`pipeline.stats.weighting.weighted_cox`.

    Returns
    -------
    CoxResult
        ``.summary``, ``.loglik``, ``.lr_test``, ``.concordance``, ``.ph_test()``, ``.notes``.

    Notes
    -----
    Rows with a missing value in any used column are dropped (and noted). Strata without
    events contribute nothing to the likelihood (noted). Newton-Raphson from beta = 0 with
    step halving, iterated until the log-likelihood changes by < 1e-12 (relative).

    References
    ----------
    Cox DR. Regression models and life-tables. JRSS B 1972;34:187-220.
    Efron B. The efficiency of Cox's likelihood function for censored data. JASA 1977;
    72:557-565. Breslow N. Covariance analysis of censored survival data. Biometrics 1974;
    30:89-99. Lin DY, Wei LJ. The robust inference for the Cox proportional hazards model.
    JASA 1989;84:1074-1078. MacKinnon JG, Nielsen MO, Webb MD. Cluster-robust inference:
    a guide to empirical practice. J Econometrics 2023;232:272-299 (CV3). Cameron AC,
    Gelbach JB, Miller DL. Bootstrap-based
    improvements for inference with clustered errors. Rev Econ Stat 2008;90:414-427 (few
    clusters; G/(G-1) and t(G-1)). Therneau TM, Grambsch PM. Modeling Survival Data:
    Extending the Cox Model. Springer 2000.
    """
    if ties not in ("efron", "breslow"):
        raise ValueError("ties must be 'efron' or 'breslow'")
    if small_sample not in (None, "t", "cr1", "jackknife"):
        raise ValueError("small_sample must be None, 't', 'cr1' or 'jackknife'")
    if small_sample is not None and cluster is None:
        raise ValueError("small_sample corrections need a cluster column")
    covariates = list(covariates)
    if not covariates:
        raise ValueError("at least one covariate is needed")
    z = z_value(conf_level)
    notes: list[str] = []
    strata_cols = [strata] if isinstance(strata, str) else list(strata or [])
    d = complete_rows(df, [duration, event, *covariates, *strata_cols, cluster, weights], notes)
    t, e = durations_events(d, duration, event)
    X, names, term_cols = design_matrix(d, covariates, notes)
    w = None
    if weights is not None:
        w = pd.to_numeric(d[weights]).to_numpy(dtype=float)
        if not np.all(np.isfinite(w)) or np.any(w <= 0):
            raise ValueError(f"{weights!r} must hold finite weights > 0")
    if strata_cols:
        key = d[strata_cols].astype(str).agg("\x1f".join, axis=1) if len(strata_cols) > 1 else d[strata_cols[0]]
        s_codes, s_levels = pd.factorize(key, sort=True)
        ev_per = np.bincount(s_codes, weights=e, minlength=len(s_levels))
        empty = [str(s_levels[i]) for i in np.nonzero(ev_per == 0)[0]]
        if empty:
            notes.append(f"{len(empty)} stratum/strata without events contribute nothing: {', '.join(empty)}.")
    else:
        s_codes = np.zeros(len(d), dtype=np.int64)
    if e.sum() == 0:
        raise NotEstimable("no events: the Cox model cannot be fitted")
    const = [c for c, flat in zip(names, constant_columns(X)) if flat]
    if const:
        raise NotEstimable(f"covariate(s) constant in the data used: {', '.join(const)}")
    sd = _prepare(X, t, e, s_codes, ties == "efron", w)
    del X   # the fit reads the sorted copy: not two model matrices through it
    beta, terms, terms0, converged, n_iter = _newton(sd, len(names))
    loglik0 = terms0.loglik
    if not converged:
        notes.append(f"Newton-Raphson did not converge in {n_iter} iterations; estimates may be infinite.")
    vcov_naive = np.linalg.inv(terms.information())
    se_naive = np.sqrt(np.diag(vcov_naive))
    vcov = vcov_naive
    n_clusters = None
    dist = stats.norm
    score_test = _chi2_test(terms0.score, terms0.information())
    robust_score_test = None
    has_dfbeta = False   # CoxResult.dfbeta: the rows' own, computed when read
    if cluster is not None or w is not None:
        if cluster is not None:
            codes = pd.factorize(d[cluster].to_numpy())[0]  # rows in data order
        else:
            codes = np.arange(len(d))  # weights without a cluster: every row its own (R)
        cl = codes[sd.order]
        n_clusters = int(codes.max() + 1)
        D = terms.cluster_scores(cl, n_clusters) @ vcov_naive   # dfbeta summed per cluster
        if small_sample == "jackknife":
            vcov, B0 = _jackknife(sd, cl, n_clusters, w is not None, beta, beta - D)
        else:
            has_dfbeta = True
            vcov = D.T @ D
            # robust score test at beta = 0: per-cluster sums of the score residuals there
            U0 = terms0.cluster_scores(cl, n_clusters)
            B0 = U0.T @ U0
            if small_sample == "cr1":
                vcov = vcov * n_clusters / (n_clusters - 1)
                B0 = B0 * n_clusters / (n_clusters - 1)
        robust_score_test = _chi2_test(terms0.score, B0,
                                       n_clusters - 1 if small_sample is not None else None)
        if small_sample is not None:
            dist = stats.t(n_clusters - 1)
            notes.append(f"{small_sample!r} small-sample correction with {n_clusters} clusters: "
                         f"t reference distribution on {n_clusters - 1} df.")
    se = np.sqrt(np.diag(vcov))
    zstat = beta / se
    q = z if dist is stats.norm else float(dist.ppf(1 - (1 - conf_level) / 2))
    pval = 2 * dist.sf(np.abs(zstat))
    summary = pd.DataFrame(
        {
            "coef": beta,
            "se": se,
            "hr": np.exp(beta),
            "hr_lower": np.exp(beta - q * se),
            "hr_upper": np.exp(beta + q * se),
            "z": zstat,
            "p": pval,
            "se_naive": se_naive,
        },
        index=pd.Index(names, name="term"),
    )
    lr = 2 * (terms.loglik - loglik0)
    result = CoxResult(
        summary,
        notes,
        loglik=(loglik0, terms.loglik),
        lr_test={"chisq": lr, "df": len(beta), "p": float(stats.chi2.sf(lr, len(beta)))},
        score_test=score_test,
        robust_score_test=robust_score_test,
        vcov=vcov,
        vcov_naive=vcov_naive,
        n=len(d),
        n_events=int(e.sum()),
        n_clusters=n_clusters if cluster is not None else None,
        n_iter=n_iter,
        weighted=w is not None,
        ties=ties,
        conf_level=conf_level,
    )
    result._sd = sd
    result._terms = terms
    result._cluster_codes = cl if cluster is not None else None
    result._term_cols = term_cols
    result._dfbeta_index = d.index if has_dfbeta else None   # CoxResult.dfbeta
    return result


def _dfbeta(terms: _Terms, sd, vcov_naive: np.ndarray) -> np.ndarray:
    """The weighted dfbeta residuals, rows sorted (R ``residuals(fit, "dfbeta", weighted =
    TRUE)``)."""
    return (terms.score_residuals() * sd.w[:, None]) @ vcov_naive
