"""Multiple imputation of one binary variable, and Rubin's rules.

When one binary outcome is the only incomplete variable, chained equations (MICE) reduce
to one imputation model: a logistic regression of the outcome on complete predictors,
fitted to the people with the outcome observed, from which missing values are drawn
*properly* (Rubin 1987): for each imputation, coefficients ``beta*`` are drawn from their
approximate posterior ``N(beta_hat, V)`` and then each missing outcome from
``Bernoulli(expit(x' beta* + delta))``. This is ``mice.impute.logreg`` of R mice, including
its augmentation against perfect prediction (White, Daniel and Royston 2010: ``2 p k``
pseudo-observations at each predictor's mean +/- half a standard deviation, total weight
``p + 1``), so that an arm where nobody (or everybody) returns still imputes.
``by``: one model per group (e.g. per trial arm, so that the imputation model allows every
interaction of arm with the predictors).

``delta`` shifts the imputed log-odds (per group) for a delta-adjusted (pattern-mixture)
sensitivity analysis; :class:`BinaryImputation` keeps the linear predictors and uniform
draws, so the same imputations are re-thresholded for every delta (common random numbers:
a tipping-point map is smooth in delta).

:func:`rubin` pools ``m`` complete-data estimates and variances: ``Q = mean q``,
``W = mean u``, ``B = var q``, ``T = W + (1 + 1/m) B``; degrees of freedom by Barnard and
Rubin (1999) from the complete-data df ``dfcom`` (as ``mice::pool`` / ``pool.scalar``).

Checked against R ``mice`` 3 (the augmented logistic fit and ``pool.scalar`` exactly, the
pooled estimate of a whole imputation within Monte Carlo error) in
``tests/reference/test_impute_reference.py``.

References
----------
Rubin DB. Multiple Imputation for Nonresponse in Surveys. Wiley, 1987.
Barnard J, Rubin DB. Small-sample degrees of freedom with multiple imputation.
Biometrika 1999;86:948-55.
White IR, Daniel R, Royston P. Avoiding bias due to perfect prediction in multiple
imputation of incomplete categorical variables. Comput Stat Data Anal 2010;54:2267-75.
van Buuren S, Groothuis-Oudshoorn K. mice: Multivariate Imputation by Chained Equations
in R. J Stat Softw 2011;45(3):1-67.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import special, stats

from pipeline.stats._eff_design import factor_gram

__all__ = ["augment", "fit_logistic", "impute_binary", "BinaryImputation", "rubin",
           "Pooled"]


def augment(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pseudo-observations against perfect prediction, as ``mice:::augment``.

    Parameters
    ----------
    X : array, shape = (n_samples, p)
        Predictors without the intercept (every row, observed outcome or not: mice takes
        the means, standard deviations and ranges over all rows).
    y : array, shape = (n_observed,)
        The observed 0/1 outcomes (unused: both levels 0 and 1 are always augmented, where
        mice takes the levels observed; the two agree whenever both are observed).

    Returns
    -------
    (X_aug, y_aug, w_aug): ``2 p k`` rows (``k = 2`` levels of ``y``): for predictor ``j``,
    the means of all predictors with ``X_j`` at its mean +/- sd/2 (kept within its range),
    once per level of ``y``; weights ``(p + 1) / (2 p k)``.
    """
    X = np.asarray(X, float)
    p = X.shape[1]
    if p == 0:
        return np.empty((0, 0)), np.empty(0), np.empty(0)
    sd = X.std(axis=0, ddof=1) if len(X) > 1 else np.zeros(p)
    return _augment_rows(X.mean(axis=0), sd, X.min(axis=0), X.max(axis=0))


def _augment_rows(mean, sd, lo, hi):
    """:func:`augment` from the predictors' means, standard deviations and ranges."""
    p = len(mean)
    # both levels always (mice takes the levels observed: with one only, its model has no
    # pseudo-observation of the other and the fit diverges; with both observed, the same)
    levels = np.array([0.0, 1.0])
    k = 2
    nr = 2 * p * k
    d = np.tile(mean, (nr, 1))
    for j in range(p):
        rows = slice(2 * k * j, 2 * k * (j + 1))
        d[rows, j] += np.tile([0.5, -0.5], k) * sd[j]
    d = np.clip(d, lo, hi)
    ya = np.tile(np.repeat(levels, 2), p).astype(float)
    return d, ya, np.full(nr, (p + 1) / nr)


def _irls_logistic(gram, tdot, eta_of, y, w, tol, maxiter):
    """The IRLS of :func:`fit_logistic` on the kept columns, through ``gram(ww) = X'
    diag(ww) X``, ``tdot(v) = X' v`` and ``eta_of(b) = X b`` (dense or
    :class:`_Coded`). Returns the coefficients and the pseudo-inverse information."""
    mu = (w * y + 0.5) / (w + 1.0)
    eta = special.logit(mu)
    dev_old = np.inf
    for _ in range(maxiter):
        mu = special.expit(eta)
        var = np.maximum(mu * (1 - mu), 1e-300)
        z = eta + (y - mu) / var
        ww = w * var
        beta = np.linalg.lstsq(gram(ww), tdot(ww * z), rcond=None)[0]
        eta = np.clip(eta_of(beta), -30, 30)   # fitted probabilities stay off 0 and 1
        mu = special.expit(eta)
        dev = -2 * np.sum(w * (special.xlogy(y, mu) + special.xlogy(1 - y, 1 - mu)))
        if not np.isfinite(dev) or abs(dev - dev_old) / (abs(dev) + 0.1) < tol:
            break
        dev_old = dev
    mu = special.expit(eta)
    return beta, np.linalg.pinv(gram(w * mu * (1 - mu)))


def fit_logistic(X: np.ndarray, y: np.ndarray, w: np.ndarray | None = None,
                 tol: float = 1e-12, maxiter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Weighted logistic regression by IRLS (``X`` with its intercept column).

    Returns ``(beta, V)``, ``V`` the unscaled inverse information ``(X' W X)^-1`` with
    ``W = w mu (1 - mu)`` (R ``summary.glm(...)$cov.unscaled``). Aliased columns (a
    predictor constant in the observed rows) get coefficient 0 and variance 0, as mice
    drops them.
    """
    X = np.asarray(X, float)
    y = np.asarray(y, float)
    w = np.ones(len(y)) if w is None else np.asarray(w, float)
    # drop aliased columns (rank-revealing QR on the weighted design, unless surely none is)
    keep = _kept(lambda: (X * w[:, None]).T @ X, lambda: X * np.sqrt(w)[:, None])
    Xk = X[:, keep]
    beta, Vk = _irls_logistic(lambda ww: Xk.T @ (ww[:, None] * Xk), lambda v: Xk.T @ v,
                              lambda b: Xk @ b, y, w, tol, maxiter)
    full_b = np.zeros(X.shape[1])
    full_V = np.zeros((X.shape[1], X.shape[1]))
    full_b[keep] = beta
    full_V[np.ix_(keep, keep)] = (Vk + Vk.T) / 2
    return full_b, full_V


#: a text predictor of the imputation model with more levels than this (1,000 GP practices
#: at national size) is kept as level codes (:class:`_Coded`), not a dense column per level
CODED_MIN_LEVELS = 100


@dataclass
class _Coded:
    """The model matrix ``[1, X]`` with one factor's treatment dummies kept as codes.

    Columns ``dense_pos`` (the intercept, position 0, among them) are ``dense``; columns
    ``block_pos`` are the dummies of levels 1 .. k-1 of one factor: row ``i`` has its 1 in
    ``block_pos[codes[i] - 1]`` (none for level 0, the reference). Products, cross-products
    and row sums follow without the ``n x (k - 1)`` dummy matrix: a national extract's
    1,000 practices would make it 4 GB and its cross-product a teraflop."""

    dense: np.ndarray       # (n, q)
    dense_pos: np.ndarray   # (q,)
    codes: np.ndarray       # (n,) in 0 .. k - 1
    block_pos: np.ndarray   # (k - 1,)

    @property
    def p(self) -> int:
        return len(self.dense_pos) + len(self.block_pos)

    @property
    def k(self) -> int:
        return len(self.block_pos) + 1

    def rows(self, idx) -> "_Coded":
        return _Coded(self.dense[idx], self.dense_pos, self.codes[idx], self.block_pos)

    def dot(self, B: np.ndarray) -> np.ndarray:
        """``X @ B`` for coefficients ``B`` of shape (p,) or (p, m)."""
        level = np.zeros((self.k,) + B.shape[1:])
        level[1:] = B[self.block_pos]
        return self.dense @ B[self.dense_pos] + level[self.codes]

    def tdot(self, v: np.ndarray) -> np.ndarray:
        """``X' v``."""
        out = np.empty(self.p)
        out[self.dense_pos] = self.dense.T @ v
        out[self.block_pos] = np.bincount(self.codes, weights=v, minlength=self.k)[1:]
        return out

    @cached_property
    def dense_t(self) -> np.ndarray:
        """The dense columns transposed, each contiguous (for :meth:`gram`), built once."""
        return np.ascontiguousarray(self.dense.T)

    def gram(self, w: np.ndarray) -> np.ndarray:
        """``X' diag(w) X`` (:func:`pipeline.stats._eff_design.factor_gram`)."""
        return factor_gram(self.dense_t, self.dense_pos, self.codes, self.block_pos, w)

    def column_stats(self):
        """Each column's mean, standard deviation (ddof 1), minimum and maximum."""
        n = len(self.codes)
        mean, sd, lo, hi = (np.empty(self.p) for _ in range(4))
        dp, bp = self.dense_pos, self.block_pos
        mean[dp] = self.dense.mean(axis=0)
        sd[dp] = self.dense.std(axis=0, ddof=1) if n > 1 else 0.0
        lo[dp], hi[dp] = self.dense.min(axis=0), self.dense.max(axis=0)
        cnt = np.bincount(self.codes, minlength=self.k)[1:].astype(float)
        m = cnt / n
        mean[bp] = m
        sd[bp] = np.sqrt((cnt * (1 - m) ** 2 + (n - cnt) * m**2) / (n - 1)) if n > 1 else 0.0
        lo[bp] = np.where(cnt == n, 1.0, 0.0)
        hi[bp] = np.where(cnt > 0, 1.0, 0.0)
        return mean, sd, lo, hi

    def r_rows(self, sw: np.ndarray) -> np.ndarray:
        """Rows ``A`` with ``A'A = X' diag(sw^2) X``, from a QR of each level's rows of the
        dense columns: within level ``l`` the level's dummy column equals the intercept
        column, so its column of ``R`` is the intercept's. Stacked, about ``k q`` rows
        instead of ``n``, for the rank-revealing QR."""
        D = self.dense * sw[:, None]
        order = np.argsort(self.codes, kind="stable")
        bounds = np.searchsorted(self.codes[order], np.arange(self.k + 1))
        blocks = []
        for lev in range(self.k):
            Dl = D[order[bounds[lev]:bounds[lev + 1]]]
            if not len(Dl):
                continue
            R = np.linalg.qr(Dl, mode="r")
            A = np.zeros((R.shape[0], self.p))
            A[:, self.dense_pos] = R
            if lev:
                A[:, self.block_pos[lev - 1]] = R[:, 0]   # intercept column: position 0
            blocks.append(A)
        return np.vstack(blocks)


def _fit_logistic_coded(Xc: _Coded, y: np.ndarray, Xa: np.ndarray, ya: np.ndarray,
                        wa: np.ndarray, tol: float = 1e-12, maxiter: int = 100,
                        ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`fit_logistic` of the rows ``Xc`` (weight 1, outcome ``y``) stacked on the
    augmentation rows ``Xa`` (dense, with their intercept column; outcome ``ya``, weights
    ``wa``), the same iterations on cross-products summed per part. The rank-revealing QR
    runs on :meth:`_Coded.r_rows`, which has the same cross-product as the rows it stands
    for; a rank-deficient model may then drop another of its collinear columns than the
    dense fit (an equivalent model)."""
    p = Xc.p
    yy = np.concatenate([y, ya])
    w = np.concatenate([np.ones(len(y)), wa])
    na = len(ya)
    keep = _kept(lambda: Xc.gram(np.ones(len(y))) + (Xa * wa[:, None]).T @ Xa,
                 lambda: np.vstack([Xc.r_rows(np.ones(len(y))), Xa * np.sqrt(wa)[:, None]]))
    Xak = Xa[:, keep]

    def eta_of(beta_k):
        full = np.zeros(p)
        full[keep] = beta_k
        return np.concatenate([Xc.dot(full), Xak @ beta_k])

    def gram(ww):
        G = Xc.gram(ww[:-na] if na else ww)[np.ix_(keep, keep)]
        return G + (Xak * ww[-na:, None]).T @ Xak if na else G

    def tdot(v):
        out = Xc.tdot(v[:-na] if na else v)[keep]
        return out + Xak.T @ v[-na:] if na else out

    beta, Vk = _irls_logistic(gram, tdot, eta_of, yy, w, tol, maxiter)
    full_b = np.zeros(p)
    full_V = np.zeros((p, p))
    full_b[keep] = beta
    full_V[np.ix_(keep, keep)] = (Vk + Vk.T) / 2
    return full_b, full_V


def _kept(gram, rows) -> np.ndarray:
    """The columns a rank-revealing QR of ``rows()`` keeps (sorted): those of its first
    :func:`_rank` pivots. When the cross-product ``gram()`` shows full rank with a wide
    margin (smallest eigenvalue over 1e-10 of the largest: a singular-value ratio over
    1e-5), every column: the QR would keep them all, since ``min |r_ii| >= sigma_min`` and
    ``max |r_ii| <= sigma_max`` for a triangular ``R``, so no diagonal entry could fall
    under ``_rank``'s 1e-7 of the largest. The QR of a national extract's imputation
    model (about 14,000 rows by 1,000 columns) is then not computed."""
    G = gram()
    if len(G):
        lam = np.linalg.eigvalsh(G)
        if lam[0] > 1e-10 * lam[-1]:
            return np.arange(len(G))
    r, piv = _qr_pivot(rows())
    return np.sort(piv[:_rank(r)])


def _qr_pivot(A):
    from scipy.linalg import qr

    _, r, piv = qr(A, mode="raw", pivoting=True)  # Q is not formed: half the cost
    return r, piv


def _rank(r: np.ndarray, tol: float = 1e-7) -> int:
    d = np.abs(np.diag(r))
    return int(np.sum(d > tol * d.max())) if len(d) else 0


@dataclass
class BinaryImputation:
    """``m`` proper imputations of one binary variable (:func:`impute_binary`).

    Attributes
    ----------
    missing : array of int, shape = (n_missing,)
        Positions (0-based rows of the frame) of the missing values.
    eta : array, shape = (n_missing, m)
        Linear predictor of each missing value under each imputation's drawn coefficients.
    u : array, shape = (n_missing, m)
        The uniform draws: imputed value ``u <= expit(eta + delta)``.
    group : array, shape = (n_missing,)
        The ``by`` group of each missing value (``None`` without ``by``).
    observed : Series
        The variable as given (0/1 with missing).
    notes : list of str
    """

    missing: np.ndarray
    eta: np.ndarray
    u: np.ndarray
    group: np.ndarray
    observed: pd.Series
    m: int
    notes: list[str] = field(default_factory=list)

    def completed(self, j: int, delta: float | Mapping = 0.0) -> pd.Series:
        """The variable completed by imputation ``j`` (0-based), with the imputed log-odds
        shifted by ``delta`` (a number, or one per ``by`` group)."""
        shift = self._shift(delta)
        y = self.observed.astype(float).copy()
        y.iloc[self.missing] = (self.u[:, j] <= special.expit(self.eta[:, j] + shift)
                                ).astype(float)
        return y.astype(int)

    def _shift(self, delta) -> np.ndarray:
        if isinstance(delta, Mapping):   # each group's rows set at once, not row by row
            shift = np.zeros(len(self.missing))
            for g, rows in self._group_rows.items():
                shift[rows] = float(delta.get(g, 0.0))
            return shift
        return np.full(len(self.missing), float(delta))

    @cached_property
    def _group_rows(self) -> dict:
        """The positions in ``missing`` of each ``by`` group, found once (the tipping map
        shifts the same imputations 500 times)."""
        return {g: np.flatnonzero(self.group == g) for g in dict.fromkeys(self.group.tolist())}


def _design(df: pd.DataFrame, predictors: Sequence[str]) -> pd.DataFrame:
    """Predictors as numbers: text and categorical columns as treatment dummies (first
    level, sorted, as reference); a numeric column as it is. A text column is coded once
    (its levels' positions) and its dummies set from the codes, instead of comparing every
    row's text with every level (250 cluster levels over 500,000 rows at national size)."""
    blocks, names = [], []
    for c in predictors:
        x = df[c]
        if _is_text(x):
            x = x.astype(str)
            levels = sorted(x.unique())
            codes = pd.Categorical(x, categories=levels).codes
            dummies = np.zeros((len(x), max(len(levels) - 1, 0)))
            rows = np.flatnonzero(codes > 0)
            dummies[rows, codes[rows] - 1] = 1.0
            blocks.append(dummies)
            names += [f"{c}[{lev}]" for lev in levels[1:]]
        else:
            blocks.append(x.astype(float).to_numpy()[:, None])
            names.append(c)
    if not blocks:
        return pd.DataFrame(index=df.index)
    return pd.DataFrame(np.hstack(blocks), columns=names, index=df.index)


def _is_text(x: pd.Series) -> bool:
    return (isinstance(x.dtype, pd.CategoricalDtype) or x.dtype == object
            or pd.api.types.is_string_dtype(x) or pd.api.types.is_bool_dtype(x))


def _many_levels(df: pd.DataFrame, predictors: Sequence[str]) -> str | None:
    """The text predictor with the most levels in ``df`` if it has more than
    :data:`CODED_MIN_LEVELS`, else None."""
    counts = {c: df[c].astype(str).nunique() for c in predictors if _is_text(df[c])}
    best = max(counts, key=counts.get, default=None)
    return best if best is not None and counts[best] > CODED_MIN_LEVELS else None


def _coded_design(df: pd.DataFrame, predictors: Sequence[str], coded: str) -> _Coded:
    """``[1, X]`` of :func:`_design` (constant columns left out, as the dense fit leaves
    them) with the predictor ``coded``'s dummies kept as codes, columns in the same order."""
    n = len(df)
    dense, dense_pos, block_pos, codes = [np.ones(n)], [0], np.empty(0, int), np.zeros(n, int)
    col = 1
    for c in predictors:
        if c == coded:
            x = df[c].astype(str)
            levels = sorted(x.unique())
            codes = pd.Categorical(x, categories=levels).codes.astype(np.int64)
            block_pos = np.arange(col, col + len(levels) - 1)
            col += len(levels) - 1
            continue
        Xv = _design(df, [c]).to_numpy(float)
        for j in np.flatnonzero(Xv.max(axis=0) > Xv.min(axis=0)) if Xv.shape[1] else []:
            dense.append(Xv[:, j])
            dense_pos.append(col)
            col += 1
    return _Coded(np.column_stack(dense), np.array(dense_pos), codes, block_pos)


def impute_binary(df: pd.DataFrame, outcome: str, predictors: Sequence[str], m: int = 20,
                  by: str | None = None, seed: int | np.random.SeedSequence = 0,
                  ) -> BinaryImputation:
    """Proper multiple imputation of a binary ``outcome`` by logistic regression.

    Parameters
    ----------
    df : pandas.DataFrame, shape = (n_samples, n_columns)
        One row per person; ``outcome`` 0/1 (or boolean) with missing values, the
        ``predictors`` complete (text columns become dummies).
    outcome : str
    predictors : sequence of str
    m : int
        Number of imputations.
    by : str, optional
        Impute within each level of this column (one model per level: e.g. the arm).
    seed : int or numpy.random.SeedSequence
        Reproducible draws; groups are imputed in sorted order.

    Returns
    -------
    BinaryImputation
        ``.completed(j, delta)`` gives the ``j``-th completed variable.
    """
    if m < 2:
        raise ValueError(f"m must be at least 2 imputations, got {m}")
    y = df[outcome]
    if y.isna().all():
        raise ValueError(f"{outcome!r} is missing for everyone: nothing to impute from")
    bad = [c for c in predictors if df[c].isna().any()]
    if bad:
        raise ValueError(f"predictors must be complete; missing values in {bad}")
    rng = np.random.default_rng(seed)
    yv = y.astype(float)
    groups = [None] if by is None else sorted(df[by].astype(str).unique())
    miss_all, eta_all, u_all, grp_all, notes = [], [], [], [], []
    design_columns = df[list(dict.fromkeys(predictors))]   # a group's rows of these alone
    for g in groups:
        rows = np.arange(len(df)) if g is None else np.flatnonzero(df[by].astype(str) == g)
        sub = design_columns.iloc[rows]
        ry = yv.iloc[rows].notna().to_numpy()
        mis = rows[~ry]
        if not len(mis):
            continue
        if not ry.any():
            raise ValueError(f"{outcome!r} is missing for everyone in {by} = {g}: nothing "
                             "to impute from")
        yo = yv.iloc[rows].to_numpy()[ry]
        big = _many_levels(sub, predictors)
        if big is None:
            Xn = _design(sub, predictors).to_numpy(float)
            if Xn.shape[1]:   # columns constant within the group left out
                Xn = Xn[:, Xn.max(axis=0) > Xn.min(axis=0)]
            Xa, ya, wa = augment(Xn, yo)
            Xfit = np.column_stack([np.ones(ry.sum() + len(ya)),
                                    np.vstack([Xn[ry], Xa]) if Xn.shape[1] else
                                    np.empty((ry.sum() + len(ya), 0))])
            beta, V = fit_logistic(Xfit, np.concatenate([yo, ya]),
                                   np.concatenate([np.ones(ry.sum()), wa]))
            Xm = np.column_stack([np.ones(len(mis)), Xn[~ry]])
            missing_x = Xm.__matmul__   # eta = Xm @ B
        else:
            Xc = _coded_design(sub, predictors, big)
            mean, sd, lo, hi = Xc.column_stats()
            Xa, ya, wa = _augment_rows(mean[1:], sd[1:], lo[1:], hi[1:])   # not the intercept
            beta, V = _fit_logistic_coded(Xc.rows(ry), yo,
                                          np.column_stack([np.ones(len(ya)), Xa]), ya, wa)
            missing_x = Xc.rows(~ry).dot
        L = _chol(V)
        z = rng.standard_normal((len(beta), m))
        B = beta[:, None] + L @ z                                         # (p+1, m)
        eta = missing_x(B)
        u = rng.random((len(mis), m))
        miss_all.append(mis)
        eta_all.append(eta)
        u_all.append(u)
        grp_all.append(np.full(len(mis), g, dtype=object))
        if len(np.unique(yo)) < 2:
            notes.append(f"{by or 'Everyone'}{' = ' + g if g else ''}: every observed "
                         f"{outcome} is {int(yo[0])}; the imputation model rests on its "
                         "augmentation (White, Daniel and Royston 2010).")
    if miss_all:
        order = np.argsort(np.concatenate(miss_all))
        cat = lambda xs: np.concatenate(xs)[order]  # noqa: E731
        miss, eta, u, grp = (cat(miss_all), np.concatenate(eta_all)[order],
                             np.concatenate(u_all)[order], cat(grp_all))
    else:
        miss, eta, u, grp = (np.empty(0, int), np.empty((0, m)), np.empty((0, m)),
                             np.empty(0, object))
    return BinaryImputation(miss, eta, u, grp, yv, m, notes)


def _chol(V: np.ndarray) -> np.ndarray:
    """A square root ``L`` with ``L L' = V`` (V positive semi-definite)."""
    try:
        return np.linalg.cholesky(V)
    except np.linalg.LinAlgError:
        w, Q = np.linalg.eigh(V)
        return Q * np.sqrt(np.clip(w, 0, None))


@dataclass
class Pooled:
    """Rubin's rules for one scalar (:func:`rubin`)."""

    estimate: float
    se: float
    df: float
    lower: float
    upper: float
    p: float
    within: float        # W: mean complete-data variance
    between: float       # B: variance of the m estimates
    total: float         # T = W + (1 + 1/m) B
    riv: float           # relative increase in variance (1 + 1/m) B / W
    lambda_: float       # proportion of variance due to missingness (1 + 1/m) B / T
    fmi: float           # fraction of missing information (as mice::pool)
    m: int


def rubin(estimates: Sequence[float], variances: Sequence[float], dfcom: float = np.inf,
          conf_level: float = 0.95) -> Pooled:
    """Pool ``m`` complete-data estimates and their variances by Rubin's rules.

    ``dfcom``: the complete-data degrees of freedom (``inf``: a normal reference). The
    pooled df is Barnard and Rubin's (1999) ``1 / (1/nu_old + 1/nu_obs)`` with
    ``nu_old = (m - 1) / lambda^2`` and ``nu_obs = (dfcom + 1) / (dfcom + 3) dfcom
    (1 - lambda)``, as R ``mice::pool.scalar`` (``nu_old`` alone when ``dfcom`` is
    infinite; ``lambda`` floored at 1e-4 for the df, as mice, so nothing missing gives
    about ``dfcom``).
    """
    q = np.asarray(estimates, float)
    u = np.asarray(variances, float)
    m = len(q)
    if m < 2 or len(u) != m:
        raise ValueError("rubin needs at least 2 estimates and as many variances")
    Q, W = q.mean(), u.mean()
    B = q.var(ddof=1)
    T = W + (1 + 1 / m) * B
    lam = (1 + 1 / m) * B / T if T > 0 else 0.0
    riv = (1 + 1 / m) * B / W if W > 0 else np.inf
    lam_df = max(lam, 1e-4)                        # mice:::barnard.rubin's floor
    nu_old = (m - 1) / lam_df**2
    if np.isfinite(dfcom):
        nu_obs = (dfcom + 1) / (dfcom + 3) * dfcom * (1 - lam_df)
        df = nu_old * nu_obs / (nu_old + nu_obs)
    else:
        df = nu_old
    fmi = (riv + 2 / (df + 3)) / (riv + 1) if np.isfinite(df) and np.isfinite(riv) else lam
    se = float(np.sqrt(T))
    crit = stats.t.ppf(1 - (1 - conf_level) / 2, df) if np.isfinite(df) else \
        stats.norm.ppf(1 - (1 - conf_level) / 2)
    ref = stats.t(df) if np.isfinite(df) else stats.norm
    p = float(2 * ref.sf(abs(Q / se))) if se > 0 else np.nan
    return Pooled(float(Q), se, float(df), float(Q - crit * se), float(Q + crit * se), p,
                  float(W), float(B), float(T), float(riv), float(lam), float(fmi), m)
