"""Harrell's concordance for right-censored data with R ``survival::concordance`` conventions.

Pairs are counted in O(n log^2 n) with vectorised prefix rank counts (a merge-sort tree
built level by level with numpy), so that a million rows take seconds, not hours.
"""

from __future__ import annotations

import numpy as np


def _prefix_counts(vals: np.ndarray, c: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query q: among ``vals[:c[q]]`` how many are ``< v[q]`` and ``<= v[q]``.

    ``vals`` and ``v`` are non-negative integer ranks; ``c`` are prefix lengths.
    """
    m = len(vals)
    less = np.zeros(len(c), dtype=np.int64)
    leq = np.zeros(len(c), dtype=np.int64)
    big = np.int64(max(int(vals.max(initial=0)), int(v.max(initial=0))) + 2)
    pos = np.arange(m, dtype=np.int64)
    level = 0
    while (1 << level) <= m:
        sel = ((c >> level) & 1) == 1
        if sel.any():
            keys = np.sort((pos >> level) * big + vals)
            b = (c[sel] >> level) - 1
            base = b << level
            qk = b * big + v[sel]
            less[sel] += np.searchsorted(keys, qk, side="left") - base
            leq[sel] += np.searchsorted(keys, qk, side="right") - base
        level += 1
    return less, leq


def concordance(time, event, risk, strata=None, cluster=None) -> dict:
    """Concordance of ``risk`` (higher = earlier event) with survival, and its standard error.

    Parameters
    ----------
    time, event, risk : array-like, shape (n_samples,)
    strata : array-like of int, shape (n_samples,), optional
        Pairs are formed only within strata.
    cluster : array-like of int, shape (n_samples,), optional
        Cluster codes: the influence terms are summed within clusters before squaring
        (R ``concordance`` of a ``coxph(..., cluster=)`` fit).

    Returns
    -------
    dict
        ``concordance, se, concordant, discordant, tied_risk, tied_time`` where a pair is
        comparable when the shorter time is an event (a censored time equal to an event
        time counts as longer; two events at one time are ``tied_time`` and not compared),
        and ``se`` is the infinitesimal-jackknife standard error R's
        ``concordance(coxph_fit)`` reports (``sqrt(var)``).

    References
    ----------
    Harrell FE, Califf RM, Pryor DB, Lee KL, Rosati RA. Evaluating the yield of medical
    tests. JAMA 1982;247:2543-2546. Therneau TM, Watson DA. The concordance statistic and
    the Cox model. Mayo Clinic technical report 85, 2017 (survival package vignette).
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    risk = np.asarray(risk, dtype=float)
    n = len(time)
    strata = np.zeros(n, dtype=np.int64) if strata is None else np.asarray(strata)
    # order: stratum, time descending, censored before events at a tied time
    order = np.lexsort((event, -time, strata))
    t, e, s = time[order], event[order], strata[order]
    rank = np.unique(risk[order], return_inverse=True)[1].astype(np.int64)
    new_stratum = np.r_[True, s[1:] != s[:-1]]
    stratum_start = np.maximum.accumulate(np.where(new_stratum, np.arange(n), 0))
    new_stratum_end = np.r_[s[1:] != s[:-1], True]
    stratum_end = np.minimum.accumulate(np.where(new_stratum_end, np.arange(n), n)[::-1])[::-1]
    # first event position of each (stratum, time) block of events
    new_block = np.r_[True, (s[1:] != s[:-1]) | (t[1:] != t[:-1]) | (e[1:] != e[:-1])]
    block_start = np.maximum.accumulate(np.where(new_block, np.arange(n), 0))

    ev = np.nonzero(e)[0]
    c_hi = block_start[ev].astype(np.int64)  # comparable set of event i: [stratum_start, c_hi)
    c_lo = stratum_start[ev].astype(np.int64)
    l1, q1 = _prefix_counts(rank, c_hi, rank[ev])
    l0, q0 = _prefix_counts(rank, c_lo, rank[ev])
    less_ev = l1 - l0  # partners with lower risk: concordant
    eq_ev = (q1 - q0) - less_ev
    tot_ev = c_hi - c_lo
    greater_ev = tot_ev - (q1 - q0)

    # partner side: for row j, the events i whose comparable set holds j: c_lo_i <= j < c_hi_i
    eorder = np.argsort(-c_hi, kind="stable")
    ev_rank_desc = rank[ev][eorder]
    c_desc = c_hi[eorder]
    c_asc = c_desc[::-1]
    pos = np.arange(n, dtype=np.int64)
    n_ev = len(ev)

    def count_c_greater(x):
        k = n_ev - np.searchsorted(c_asc, x, side="right")
        return _prefix_counts(ev_rank_desc, k.astype(np.int64), rank)

    la, qa = count_c_greater(pos)
    lb, qb = count_c_greater(stratum_end.astype(np.int64))
    total_p = (n_ev - np.searchsorted(c_asc, pos, side="right")) - (
        n_ev - np.searchsorted(c_asc, stratum_end, side="right")
    )
    less_p = la - lb  # event partners with lower risk than j: discordant
    leq_p = qa - qb
    eq_p = leq_p - less_p
    greater_p = total_p - leq_p  # event partners with higher risk: concordant

    conc_i = greater_p.astype(float)
    disc_i = less_p.astype(float)
    tied_i = eq_p.astype(float)
    conc_i[ev] += less_ev
    disc_i[ev] += greater_ev
    tied_i[ev] += eq_ev
    conc, disc, tied = less_ev.sum(), greater_ev.sum(), eq_ev.sum()
    npair = conc + disc + tied
    # event pairs at the same time in a stratum
    key = np.stack([s[ev], t[ev]])
    _, counts = np.unique(key, axis=1, return_counts=True)
    tied_time = int((counts * (counts - 1) // 2).sum())
    if npair == 0:
        return {"concordance": np.nan, "se": np.nan, "concordant": 0, "discordant": 0,
                "tied_risk": 0, "tied_time": tied_time}
    somer = (conc - disc) / npair
    dfbeta = ((conc_i - disc_i) - (conc_i + disc_i + tied_i) * somer) / (2 * npair)
    if cluster is not None:
        dfbeta = np.bincount(np.asarray(cluster)[order], weights=dfbeta)
    return {
        "concordance": float((conc + tied / 2) / npair),
        "se": float(np.sqrt(np.sum(dfbeta**2))),
        "concordant": int(conc),
        "discordant": int(disc),
        "tied_risk": int(tied),
        "tied_time": tied_time,
    }
