"""Cluster-level (two-stage) analysis and the stratified randomisation (permutation) test.

For a cluster-randomised trial with few clusters, Hayes and Moulton's two-stage analysis:

1. fit the outcome model *without the arm*, with the person-level covariates and the
   strata (site): a Cox model (Breslow baseline, one per stratum) for time to event, a
   Poisson model with an offset for counts, a logistic model for a binary outcome; each
   person's expected number of events ``E_i`` comes from it (for the Cox model ``E_i =
   d_i - M_i``, ``M_i`` the martingale residual);
2. summarise each cluster by observed ``O`` and expected ``E``: the ratio residual
   ``log(O / E)`` (``scale="ratio"``, a log hazard, rate or risk ratio) or the difference
   residual ``(O - E) / m`` (``scale="difference"``, a risk difference; ``m`` people);
3. regress the cluster summaries on arm and strata by ordinary least squares, one cluster
   one observation, and use t on ``C - S - 1`` df (``C`` clusters, ``S`` strata; with one
   cluster per arm in each stratum this is the paired t-test on ``S - 1`` df).

The stratified permutation test uses the same statistic (the arm coefficient of step 3)
and its randomisation distribution: the arm labels re-allocated within each stratum as the
design allocated them (same number of clusters per arm in each stratum), every allocation
when there are at most ``max_exact`` of them (2^7 = 128 for 7 pairs), else ``n_perm``
random ones. Its confidence interval inverts the test: the hypothesised effect ``delta``
is removed from the allocated clusters' summaries and ``delta`` is kept while the test does
not reject; the p-value is a step function of ``delta`` whose steps are found exactly.

Checked against R (``coxph`` martingale residuals, ``glm`` fitted values, ``lm`` and an
allocation-by-allocation enumeration with its own test inversion) in
``tests/reference/test_cluster_level_reference.py``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from pipeline.stats._eff_design import check_columns, check_conf_level
from pipeline.stats._result import Result

if TYPE_CHECKING:
    from pipeline.stats.clustered import GLMDesign

__all__ = ["ClusterLevelResult", "PermutationResult", "cluster_level", "permutation_test",
           "expected_events"]

KINDS = ("survival", "count", "binary")


class ClusterLevelResult(Result):
    """A two-stage cluster-level analysis (see :func:`cluster_level`).

    Attributes
    ----------
    summary : DataFrame, one row
        ``estimate`` (ratio or difference), ``lower``, ``upper``, ``coef`` (log ratio or
        difference), ``se``, ``df``, ``t``, ``p``.
    clusters : DataFrame
        One row per cluster: ``cluster, stratum, arm, m, observed, expected, value`` (the
        cluster summary analysed).
    method : str
        What was done, in words.
    permutation : PermutationResult or None
        The stratified permutation test on the same summaries, when asked for.
    """

    title = "Cluster-level (two-stage) analysis"

    @property
    def summary(self) -> pd.DataFrame:
        return self._frame


class PermutationResult(Result):
    """A stratified permutation test with its interval by test inversion.

    Attributes
    ----------
    summary : DataFrame, one row
        ``estimate`` (the statistic on the analysis scale back-transformed: ratio or
        difference), ``lower``, ``upper``, ``coef``, ``p``, ``n_allocations`` (enumerated
        or drawn), ``exact``.
    method : str
    """

    title = "Stratified permutation test"

    @property
    def summary(self) -> pd.DataFrame:
        return self._frame


# ----------------------------------------------------------------------------- stage 1

def _breslow_expected(t, e, strata, lp):
    """Breslow cumulative hazard of each row at its own time, within its stratum, times
    ``exp(lp)``: the expected events of a Cox model (``d_i`` minus the martingale residual
    with Breslow ties, R ``residuals(coxph(..., ties = "breslow"), "martingale")``)."""
    out = np.empty(len(t))
    r = np.exp(lp)
    for s in np.unique(strata):
        idx = np.flatnonzero(strata == s)
        ts, es, rs = t[idx], e[idx], r[idx]
        times, inv = np.unique(ts, return_inverse=True)
        d = np.bincount(inv, weights=es, minlength=len(times))
        at_risk = np.bincount(inv, weights=rs, minlength=len(times))[::-1].cumsum()[::-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            haz = np.where(d > 0, d / at_risk, 0.0)
        out[idx] = np.cumsum(haz)[inv] * rs
    return out


def expected_events(df: pd.DataFrame, kind: str, *, strata: str | None = None,
                    covariates: Sequence[str] = (), duration: str | None = None,
                    event: str | None = None, outcome: str | None = None,
                    person_time: str | None = None, design: GLMDesign | None = None
                    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Observed and expected events per row from the model without the arm (step 1 of
    :func:`cluster_level`, whose ``design`` this takes); returns ``(observed, expected,
    notes)``."""
    from pipeline.stats.clustered import glm_clustered
    from pipeline.stats.coxph import cox

    covariates = list(covariates)
    notes: list[str] = []
    terms = ([strata] if strata else []) + covariates
    if design is not None and (kind == "survival" or not terms):
        raise ValueError("a design is for the count or binary model of strata or covariates")
    if kind == "survival":
        s = (df[strata].astype(str).to_numpy() if strata else np.zeros(len(df), dtype=object))
        t = df[duration].to_numpy(float)
        e = df[event].to_numpy(float)
        lp = np.zeros(len(df))
        if covariates:
            fit = cox(df, duration, event, covariates, strata=strata, ties="breslow")
            X = df[covariates].to_numpy(float)
            lp = (X - X.mean(axis=0)) @ fit.summary["coef"].to_numpy()
            notes.extend(fit.notes)
        return e, _breslow_expected(t, e, s, lp), notes
    if kind == "count":
        y = df[outcome].to_numpy(float)
        if terms:
            fit = glm_clustered(df, outcome, terms, family="poisson", offset=person_time,
                                vcov="model", design=design)
            return y, fit.fitted.to_numpy(), notes + fit.notes
        pt = df[person_time].to_numpy(float) if person_time else np.ones(len(df))
        return y, pt * y.sum() / pt.sum(), notes
    y = df[outcome].to_numpy(float)
    if terms:
        fit = glm_clustered(df, outcome, terms, family="binomial", vcov="model", design=design)
        return y, fit.fitted.to_numpy(), notes + fit.notes
    return y, np.full(len(df), y.mean()), notes


# ----------------------------------------------------------------------------- stage 2

def _arm_contrast(arm: np.ndarray, strata: np.ndarray) -> np.ndarray:
    """Weights ``c`` with ``c' v`` = the arm coefficient of OLS of ``v`` on arm + strata
    (Frisch-Waugh: arm centred within strata, over its sum of squares)."""
    a = arm.astype(float)
    centred = a - pd.Series(a).groupby(strata).transform("mean").to_numpy()
    ss = float(centred @ centred)
    if ss == 0:
        raise ValueError("no stratum has clusters in both arms: the arm effect is not estimable")
    return centred / ss


def _ols_arm(v, arm, strata):
    """Arm coefficient, its se and residual df of OLS ``v ~ arm + strata``."""
    c = _arm_contrast(arm, strata)
    coef = float(c @ v)
    X = pd.get_dummies(pd.Categorical(strata), drop_first=False).to_numpy(float)
    X = np.column_stack([arm.astype(float), X])
    beta, *_ = np.linalg.lstsq(X, v, rcond=None)
    resid = v - X @ beta
    dfree = len(v) - np.linalg.matrix_rank(X)
    if dfree < 1:
        raise ValueError("no residual degrees of freedom for the cluster-level t-test")
    s2 = float(resid @ resid) / dfree
    return coef, math.sqrt(s2 * float(c @ c)), dfree


def _first_rows(code: np.ndarray, k: int) -> np.ndarray:
    """Position of the first row of each of the groups ``0 .. k - 1`` (``code``: each row's
    group, every group present)."""
    first = np.full(k, len(code))
    np.minimum.at(first, code, np.arange(len(code)))
    return first


def cluster_level(
    df: pd.DataFrame,
    kind: str,
    *,
    cluster: str,
    arm: str,
    strata: str | None = None,
    covariates: Sequence[str] = (),
    duration: str | None = None,
    event: str | None = None,
    outcome: str | None = None,
    person_time: str | None = None,
    scale: str | None = None,
    conf_level: float = 0.95,
    permutation: bool = False,
    max_exact: int = 10_000,
    n_perm: int = 9_999,
    seed: int = 20261125,
    design: GLMDesign | None = None,
) -> ClusterLevelResult:
    """Two-stage cluster-level analysis of an arm effect (Hayes and Moulton 2017).

    Parameters
    ----------
    df : DataFrame
        One row per person.
    kind : {"survival", "count", "binary"}
        ``survival`` needs ``duration`` and ``event`` (1 = event; deaths and other
        competing ends coded 0); ``count`` needs ``outcome`` and optionally
        ``person_time``; ``binary`` needs ``outcome`` (0/1).
    cluster : str
        The unit of randomisation; the arm must be constant within it.
    arm : str
        0/1 column (1 = the comparison arm, e.g. Open Dialogue).
    strata : str, optional
        Stratum (site) of each cluster: the model of step 1 has one baseline per stratum,
        step 3 compares arms within strata, the permutation test permutes within them.
    covariates : sequence of str
        Numeric person-level covariates for step 1 (code categories as 0/1 beforehand).
    scale : {"ratio", "difference"}, optional
        ``ratio`` (default for survival and count; binary gives a ratio of risks) or
        ``difference`` (binary only: risk difference, the default for binary).
    permutation : bool
        Also run :func:`permutation_test` on the cluster summaries.
    max_exact, n_perm, seed
        Passed to :func:`permutation_test`.
    design : GLMDesign, optional
        For ``count`` and ``binary`` with strata or covariates: the model matrix of step 1
        already built (:func:`pipeline.stats.glm_design` of ``strata`` and ``covariates``,
        in that order, with ``person_time`` as the offset for ``count``) from the rows
        analysed (``df`` without its rows missing a used column): analyses of several
        outcomes of the same people share it. ``ValueError`` if it was built from other
        rows or terms.

    Returns
    -------
    ClusterLevelResult

    Notes
    -----
    With ``scale="ratio"`` a cluster without events has no log ratio: then 0.5 is added
    to every cluster's observed and expected count (noted). Rows missing a used column are
    dropped (noted). The estimate is the unweighted mean over clusters: each cluster
    counts once, whatever its size, which is what makes the t-test valid with few
    clusters.

    References
    ----------
    Hayes RJ, Moulton LH. Cluster Randomised Trials, 2nd ed. Chapman & Hall/CRC 2017
    (chapters 9-12: cluster-level analyses, adjustment by residuals of a model without the
    arm, stratified and pair-matched designs). Bennett S, Parpia T, Hayes R, Cousens S.
    Methods for the analysis of incidence rates in cluster randomized trials. Int J
    Epidemiol 2002;31:839-846. Gail MH, Mark SD, Carroll RJ, Green SB, Pee D. On design
    considerations and randomization-based inference for community intervention trials.
    Stat Med 1996;15:1069-1092 (permutation tests and their intervals).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    scale = scale or ("difference" if kind == "binary" else "ratio")
    if scale not in ("ratio", "difference"):
        raise ValueError("scale must be 'ratio' or 'difference'")
    if scale == "difference" and kind != "binary":
        raise ValueError("the difference scale is for binary outcomes")
    check_conf_level(conf_level)
    covariates = list(covariates)
    need = {"survival": [duration, event], "count": [outcome], "binary": [outcome]}[kind]
    if any(c is None for c in need):
        raise ValueError(f"kind={kind!r} needs " + (" and ".join(
            {"survival": ["duration", "event"], "count": ["outcome"], "binary": ["outcome"]}[kind])))
    used = list(dict.fromkeys([cluster, arm, *([strata] if strata else []), *covariates, *need,
                               *([person_time] if person_time else [])]))
    check_columns(df, used)
    notes: list[str] = []
    d = df[used]
    miss = d.isna().any(axis=1)
    if miss.any():
        notes.append(f"{int(miss.sum())} row(s) dropped for missing values in "
                     f"{[c for c in used if d[c].isna().any()]}.")
        d = d.loc[~miss]
    armv = d[arm].to_numpy()
    if not set(np.unique(armv)) <= {0, 1, True, False}:
        raise ValueError(f"arm column {arm!r} must be 0/1")
    armv = armv.astype(int)
    # each person's cluster as a code, in the clusters' sorted order (as groupby sorts
    # them), found once for the checks and the table (over a national extract's million
    # rows this step took 0.28 CPU s with three groupbys by the clusters' names, 0.16 so).
    # The sums stay pandas' (compensated) ones.
    code, names = pd.factorize(d[cluster].to_numpy(), sort=True)
    first = _first_rows(code, len(names))
    m = np.bincount(code, minlength=len(names))
    in_arm = np.bincount(code, weights=armv, minlength=len(names))   # people with arm 1
    if np.any((in_arm > 0) & (in_arm < m)):
        raise ValueError(f"the arm varies within a {cluster}: the cluster-level analysis needs "
                         "the arm to be the cluster's")
    if strata:
        scode = pd.factorize(d[strata])[0]
        if np.any(scode != scode[first][code]):
            raise ValueError(f"a {cluster} spans several {strata}: clusters must be nested in "
                             "strata")
    obs, exp_, nt = expected_events(d, kind, strata=strata, covariates=covariates, duration=duration,
                                    event=event, outcome=outcome, person_time=person_time,
                                    design=design)
    notes += nt
    sums = pd.DataFrame({"observed": obs, "expected": exp_}).groupby(code, sort=True).sum()
    cl = pd.DataFrame({"cluster": names,
                       "stratum": d[strata].to_numpy()[first] if strata else "all",
                       "arm": armv[first], "m": m, "observed": sums["observed"].to_numpy(),
                       "expected": sums["expected"].to_numpy()})
    if scale == "ratio":
        o, e = cl["observed"].to_numpy(float), cl["expected"].to_numpy(float)
        if np.any(o == 0) or np.any(e == 0):
            notes.append(f"{int(np.sum(o == 0))} cluster(s) without events: 0.5 added to every "
                         "cluster's observed and expected count before taking log(O/E).")
            o, e = o + 0.5, e + 0.5
        cl["value"] = np.log(o / e)
    else:
        cl["value"] = (cl["observed"] - cl["expected"]) / cl["m"]
    v = cl["value"].to_numpy(float)
    a = cl["arm"].to_numpy()
    st = cl["stratum"].astype(str).to_numpy()
    coef, se, dfree = _ols_arm(v, a, st)
    q = stats.t.ppf(1 - (1 - conf_level) / 2, dfree)
    tstat = coef / se
    p = 2 * stats.t.sf(abs(tstat), dfree)
    back = np.exp if scale == "ratio" else (lambda x: x)
    summary = pd.DataFrame([{"estimate": back(coef), "lower": back(coef - q * se),
                             "upper": back(coef + q * se), "coef": coef, "se": se, "df": dfree,
                             "t": tstat, "p": p}])
    n_s = len(np.unique(st))
    what = {("survival", "ratio"): "log(observed / expected events), expected from a Cox model "
                                   "without arm (Breslow baseline" + (" per stratum" if strata else "") + ")",
            ("count", "ratio"): "log(observed / expected count), expected from a Poisson model without arm",
            ("binary", "ratio"): "log(observed / expected events), expected from a logistic model without arm",
            ("binary", "difference"): "(observed - expected) / people, expected from a logistic model "
                                      "without arm"}[(kind, scale)]
    adj = f" adjusted for {', '.join(covariates)}" if covariates else ""
    method = (f"cluster-level analysis: {what}{adj}; {len(cl)} clusters"
              + (f" in {n_s} strata, arm compared within strata" if strata else "")
              + f"; t on {dfree} df (clusters - strata - 1)")
    res = ClusterLevelResult(summary, notes)
    res.clusters, res.method, res.scale, res.kind, res.conf_level = cl, method, scale, kind, conf_level
    res.n, res.n_clusters = len(d), len(cl)
    res.permutation = None
    if permutation:
        res.permutation = permutation_test(v, a, st, scale=scale, conf_level=conf_level,
                                           max_exact=max_exact, n_perm=n_perm, seed=seed)
    return res


# ----------------------------------------------------------------------------- permutations

def _allocations(arm: np.ndarray, strata: np.ndarray, max_exact: int, n_perm: int, seed: int):
    """Allocation matrix (one row per allocation, one column per cluster) and whether it is
    every allocation; rows keep each stratum's number of clusters per arm."""
    groups = [np.flatnonzero(strata == s) for s in pd.unique(strata)]
    counts = [math.comb(len(g), int(arm[g].sum())) for g in groups]
    total = math.prod(counts)
    if total <= max_exact:
        per = []
        for g in groups:
            k = int(arm[g].sum())
            rows = []
            for comb in itertools.combinations(range(len(g)), k):
                r = np.zeros(len(g), int)
                r[list(comb)] = 1
                rows.append(r)
            per.append(np.array(rows))
        A = np.zeros((total, len(arm)), int)
        for i, choice in enumerate(itertools.product(*[range(len(p)) for p in per])):
            for g, p, c in zip(groups, per, choice):
                A[i, g] = p[c]
        return A, True, total
    rng = np.random.default_rng(seed)
    A = np.zeros((n_perm, len(arm)), int)
    for g in groups:
        k = int(arm[g].sum())
        keys = rng.random((n_perm, len(g)))
        ranks = np.argsort(np.argsort(keys, axis=1), axis=1)
        A[:, g] = (ranks < k).astype(int)
    return A, False, total


def permutation_test(values, arm, strata=None, *, scale: str = "ratio", conf_level: float = 0.95,
                     max_exact: int = 10_000, n_perm: int = 9_999,
                     seed: int = 20261125) -> PermutationResult:
    """Stratified permutation (randomisation) test of the arm effect on cluster summaries,
    with its confidence interval by test inversion.

    Parameters
    ----------
    values : array-like, shape (n_clusters,)
        One summary per cluster (e.g. ``log(O / E)``, :func:`cluster_level`'s ``value``).
    arm : array-like of 0/1, shape (n_clusters,)
    strata : array-like, optional
        The stratum of each cluster; allocations are permuted within strata, keeping each
        stratum's number of clusters per arm (the randomisation scheme of a stratified or
        pair-matched design).
    scale : {"ratio", "difference"}
        ``ratio``: the values are logs and the estimate and limits are exponentiated.
    conf_level : float
    max_exact : int
        Enumerate every allocation when there are at most this many (two-sided exact
        p-value ``#{|T*| >= |T|} / N``); else draw ``n_perm`` allocations at random
        (Monte Carlo p-value ``(1 + #{|T*| >= |T|}) / (n_perm + 1)``) with ``seed``.

    Returns
    -------
    PermutationResult

    Notes
    -----
    The statistic ``T`` is the arm coefficient of the OLS fit of the values on arm and
    strata (the mean within-stratum difference of the arms, weighted as least squares
    weights the strata). Under the hypothesis that the effect is ``delta``, ``delta`` is
    subtracted from the values of the clusters allocated to the comparison arm and the
    test is repeated; the interval is every ``delta`` with p-value above ``1 -
    conf_level``. Each allocation's statistic is linear in ``delta``, so the p-value
    changes only where ``|T*(delta)| = |T(delta)|``: those points are computed and the
    interval's ends are exact (for the allocations used). With 7 pairs (128 allocations)
    the smallest two-sided p-value is 2/128, so a 95% interval always exists but a
    99% interval can be unbounded (then its limits are infinite).

    References
    ----------
    Gail MH, Mark SD, Carroll RJ, Green SB, Pee D. On design considerations and
    randomization-based inference for community intervention trials. Stat Med
    1996;15:1069-1092. Hayes RJ, Moulton LH. Cluster Randomised Trials, 2nd ed. 2017
    (section 9.3, permutation tests). Garthwaite PH. Confidence intervals from
    randomization tests. Biometrics 1996;52:1387-1393. Edgington ES, Onghena P.
    Randomization Tests, 4th ed. Chapman & Hall/CRC 2007.
    """
    check_conf_level(conf_level)
    v = np.asarray(values, float)
    a = np.asarray(arm).astype(int)
    s = np.zeros(len(v), dtype=object) if strata is None else np.asarray(strata).astype(str)
    if not (len(v) == len(a) == len(s)):
        raise ValueError("values, arm and strata must have one entry per cluster")
    A, exact, total = _allocations(a, s, max_exact, n_perm, seed)
    smean = lambda x: pd.DataFrame(x.T).groupby(s).transform("mean").to_numpy().T  # noqa: E731
    Cc = A - smean(A)
    ss = float(np.sum((a - smean(a[None, :])[0]) ** 2))
    if ss == 0:
        raise ValueError("no stratum has clusters in both arms: the arm effect is not estimable")
    C = Cc / ss                   # rows: contrasts of the allocations
    T0 = C @ v                    # statistic of each allocation at delta = 0
    k = C @ a                     # d T*/d(-delta)
    c_obs = (a - smean(a[None, :])[0]) / ss
    t_obs = float(c_obs @ v)
    alpha = 1 - conf_level
    tol = 1e-10 * max(1.0, np.max(np.abs(T0)))

    def pval(delta):
        stat = np.abs(T0 - delta * k)
        count = np.sum(stat >= abs(t_obs - delta) - tol)
        return count / len(T0) if exact else (1 + count) / (len(T0) + 1)

    p = pval(0.0)
    # breakpoints: |T0 - delta k| = |t_obs - delta|
    with np.errstate(divide="ignore", invalid="ignore"):
        b1 = (T0 - t_obs) / (k - 1)
        b2 = (T0 + t_obs) / (k + 1)
    bps = np.unique(np.concatenate([b1[np.isfinite(b1)], b2[np.isfinite(b2)]]))
    lower, upper = _invert(pval, t_obs, bps, alpha)
    back = np.exp if scale == "ratio" else (lambda x: x)
    with np.errstate(over="ignore"):
        summary = pd.DataFrame([{"estimate": back(t_obs), "lower": back(lower), "upper": back(upper),
                                 "coef": t_obs, "p": p, "n_allocations": len(T0), "exact": exact}])
    n_s = len(np.unique(s))
    method = (f"stratified permutation test ({'all' if exact else 'a random sample of'} "
              f"{len(T0):,} of {total:,} allocations within {n_s} strat{'um' if n_s == 1 else 'a'})"
              f"; interval by test inversion")
    res = PermutationResult(summary, [] if exact else [
        f"Monte Carlo p-value from {len(T0):,} random allocations (seed {seed}); its Monte "
        f"Carlo standard error is about {math.sqrt(max(p * (1 - p), 1e-12) / len(T0)):.4f}."])
    res.method, res.exact, res.n_allocations, res.total_allocations = method, exact, len(T0), total
    res.scale, res.conf_level = scale, conf_level
    return res


def _invert(pval, t_obs, bps, alpha):
    """Ends of ``{delta: p(delta) > alpha}`` (its hull): ``p`` is constant between the
    breakpoints, so it is evaluated at every breakpoint and between consecutive ones."""
    if len(bps) == 0:
        return -np.inf, np.inf
    mids = (bps[1:] + bps[:-1]) / 2
    pts = np.sort(np.concatenate([bps, mids, [t_obs, bps[0] - 1.0, bps[-1] + 1.0]]))
    ok = np.array([pval(x) > alpha for x in pts])
    if not ok.any():
        return np.nan, np.nan
    lo_i, hi_i = np.flatnonzero(ok)[[0, -1]]
    lower = -np.inf if lo_i == 0 else _edge(pts, lo_i, bps, left=True)
    upper = np.inf if hi_i == len(pts) - 1 else _edge(pts, hi_i, bps, left=False)
    return lower, upper


def _edge(pts, i, bps, left):
    """The breakpoint bounding the accepted run at ``pts[i]``: the accepted set is closed
    or open there, either way the interval's end is that breakpoint."""
    x = pts[i]
    if np.any(np.isclose(bps, x, rtol=0, atol=0)):
        return float(x)
    j = np.searchsorted(bps, x)
    return float(bps[j - 1] if left else bps[j])
