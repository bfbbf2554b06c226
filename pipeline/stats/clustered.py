"""Generalised linear models with inference for few clusters.

A GLM (binomial, Poisson, negative binomial with its shape, Gaussian) fitted to person-level
rows, with the variance of the coefficients chosen for the design:

* ``"model"``: the inverse information (independent people);
* ``"CR0"``, ``"CR1"``: the cluster-robust sandwich, CR1 times ``J / (J - 1)`` (as R
  ``clubSandwich::vcovCR(type = "CR1")``; ``sandwich::vcovCL(type = "HC0")`` with its
  default cluster adjustment is the same matrix);
* ``"CR2"``: the bias-reduced sandwich of Bell and McCaffrey (2002) in clubSandwich's form
  for a GLM (``clubSandwich::vcovCR(type = "CR2")``);
* ``"KC"``: the Kauermann and Carroll (2001) correction of the GEE sandwich, ``(I -
  H_jj)^-1/2`` (as ``geesmv::GEE.var.kc``; this GLM is the GEE with independence working
  correlation). It equals CR2 when the working variance is constant within each cluster
  and differs slightly otherwise;
* ``"CR3"``: the jackknife-like sandwich ``(I - H_jj)^-1``, as ``vcovCR(type = "CR3")``;
  for the independence GEE it is the Mancl and DeRouen (2001) correction (``"MD"``, as
  ``geesmv::GEE.var.md``);
* ``"jackknife"``: the delete-one-cluster jackknife, ``(J - 1) / J sum_j (b_j - b)(b_j -
  b)'`` over refits without cluster ``j``: pass the site as ``cluster`` for the
  delete-one-site (delete-one-stratum) jackknife.

Degrees of freedom for the t reference distribution: ``"satterthwaite"`` (Bell and
McCaffrey 2002; Pustejovsky and Tipton 2018; ``clubSandwich::coef_test(test =
"Satterthwaite")``, computed for the variance type used), ``"K-p"`` (clusters minus
coefficients: Li and Redden 2015 for KC and MD), ``"K-1"`` or ``"z"`` (normal). The
defaults: Satterthwaite for CR0-CR3, ``K-1`` for the jackknife, normal for ``"model"``.

Checked against R ``glm``, ``MASS::glm.nb``, ``clubSandwich`` (CR1, CR2, CR3 and their
Satterthwaite df), the Mancl-DeRouen and Kauermann-Carroll formulas on ``geepack::geeglm``
fits and refits without each cluster or site, in
``tests/reference/test_clustered_reference.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import special

from pipeline.stats._eff_design import (_terms, check_columns, check_conf_level,
                                        dense_matrix, factor_gram)
from pipeline.stats._result import Result
from pipeline.stats.rates import _inverse

__all__ = ["ClusteredGLMResult", "GLMDesign", "glm_clustered", "glm_design", "VCOV_TYPES",
           "DF_METHODS"]

FAMILIES = ("binomial", "poisson", "negbin", "gaussian")
LINKS = {"binomial": ("logit", "log", "identity"), "poisson": ("log",), "negbin": ("log",),
         "gaussian": ("identity", "log")}
VCOV_TYPES = ("model", "CR0", "CR1", "CR2", "CR3", "KC", "MD", "jackknife")
DF_METHODS = ("satterthwaite", "K-p", "K-1", "z")
_ALIAS = {"MD": "CR3"}
_WORDS = {
    "model": "model-based (inverse information)",
    "CR0": "cluster-robust sandwich (CR0)",
    "CR1": "cluster-robust sandwich with J/(J-1) (CR1)",
    "CR2": "bias-reduced cluster-robust sandwich (CR2, Bell-McCaffrey)",
    "CR3": "cluster-robust sandwich with (I-H)^-1 (CR3)",
    "KC": "Kauermann-Carroll bias-corrected sandwich",
    "MD": "Mancl-DeRouen bias-corrected sandwich (= CR3 for the independence GEE)",
    "jackknife": "delete-one-cluster jackknife",
}


class ClusteredGLMResult(Result):
    """A GLM with its few-cluster inference (see :func:`glm_clustered`).

    Attributes
    ----------
    summary : DataFrame, shape (n_terms, 8)
        Indexed by term: ``coef, se, df, lower, upper, t, p, se_model``; ``df`` is ``inf``
        for the normal reference, ``lower``/``upper`` on the model scale (log odds, log
        rate, ...).
    vcov : DataFrame
        The covariance used for ``se``.
    method : str
        The variance and reference distribution in words, e.g. "bias-reduced
        cluster-robust sandwich (CR2, Bell-McCaffrey) by cluster_id (14 clusters); t on
        Satterthwaite df".
    family, link, theta, n, n_clusters, conf_level, vcov_type, df_method
    """

    title = "Generalised linear model"

    @property
    def summary(self) -> pd.DataFrame:
        return self._frame

    def term(self, name: str) -> pd.Series:
        """One row of ``summary``; the error names the terms there are."""
        if name not in self._frame.index:
            raise KeyError(f"term {name!r} not in the model; terms are {list(self._frame.index)}")
        return self._frame.loc[name]


# ----------------------------------------------------------------------------- families

_EPS = np.finfo(float).eps
#: longest IRLS step of any coefficient (a level without events runs to -infinity; its
#: steps are capped so that exp does not overflow, as in :mod:`pipeline.stats.rates`)
MAX_STEP = 10.0


def _linkinv(eta, link):
    """Inverse links as R's ``make.link`` / ``binomial()`` compute them: the log link
    floored at machine epsilon, the logit kept within ``[eps, 1 - eps]``."""
    if link == "logit":
        return np.clip(special.expit(eta), _EPS, 1 - _EPS)
    if link == "log":
        with np.errstate(over="ignore"):
            return np.maximum(np.exp(eta), _EPS)
    return eta


def _mu_eta(eta, mu, link):
    """d mu / d eta."""
    if link == "logit":
        return mu * (1 - mu)
    if link == "log":
        return mu
    return np.ones_like(eta)


def _variance(mu, family, theta):
    if family == "binomial":
        return mu * (1 - mu)
    if family == "poisson":
        return mu
    if family == "negbin":
        return mu + mu**2 / theta
    return np.ones_like(mu)


def _deviance(y, mu, family, theta):
    if family == "binomial":
        # y is 0/1 (glm_clustered checks), so y log mu + (1 - y) log(1 - mu) is one log a
        # row, to the bit what xlogy of both terms gives, in a sixth of the time
        return float(-2 * np.sum(np.log(np.where(y == 1, mu, 1 - mu))))
    if family == "poisson":
        return float(2 * np.sum(special.xlogy(y, y / mu) - (y - mu)))
    if family == "negbin":
        return float(2 * np.sum(special.xlogy(y, y / mu) - (y + theta) * np.log((y + theta) / (mu + theta))))
    return float(np.sum((y - mu) ** 2))


def _start_eta(y, family, link, offset):
    if family == "binomial":
        mu = (y + 0.5) / 2
    elif family in ("poisson", "negbin"):
        mu = y + 0.1
    else:
        return y - offset if link == "identity" else np.log(np.maximum(y, 1e-3)) - offset
    if link == "logit":
        return special.logit(mu)
    if link == "log":
        return np.log(mu)
    return mu


def _irls(y, X, offset, family, link, theta=None, start=None, tol=1e-14, maxiter=100,
          block=None, out=None):
    """Fisher scoring (iteratively reweighted least squares), as R's ``glm.fit``, with step
    halving when the deviance rises; stops when the deviance changes by less than ``tol``
    (relative; R's criterion, at a far smaller default). Returns ``(beta, mu, eta,
    converged)``; columns of ``X`` that are numerically collinear get a least-squares
    step (their coefficients are reported as not estimable by the caller). ``block``: the
    design's :class:`_FactorBlock`, which takes the products with ``X`` and its
    cross-products ``X' diag(w) X`` at the cost of the dense columns. ``out``: a work
    array the steps may write ``X diag(w)`` into, of ``X``'s shape and layout, the
    caller's to reuse after; by default one is allocated (not used with ``block``, whose
    cross-products need none)."""
    A = X if block is None else block   # for products with the model matrix
    if start is None:
        eta = _start_eta(y, family, link, offset)
        beta = None
    else:
        beta = np.asarray(start, float)
        eta = A @ beta + offset
    mu = _linkinv(eta, link)
    dev = np.inf if beta is None else _deviance(y, mu, family, theta)
    converged = False
    Xw = out   # X * w: one array for every step
    for _ in range(maxiter):
        d = _mu_eta(eta, mu, link)
        w = d**2 / _variance(mu, family, theta)
        z = eta - offset + (y - mu) / d
        try:
            if block is None:
                Xw = np.multiply(X, w[:, None], out=Xw)
                new = np.linalg.solve(Xw.T @ X, Xw.T @ z)
            else:
                new = np.linalg.solve(block.gram(w), block.T @ (w * z))
        except np.linalg.LinAlgError:
            Xd = X if block is None else block.toarray()
            new = np.linalg.lstsq(Xd * np.sqrt(w)[:, None], np.sqrt(w) * z, rcond=None)[0]
        if beta is not None:
            longest = np.max(np.abs(new - beta))
            if not longest <= MAX_STEP:
                new = beta + (new - beta) * (MAX_STEP / longest if np.isfinite(longest) else 0.0)
        eta_new = A @ new + offset
        mu_new = _linkinv(eta_new, link)
        dev_new = _deviance(y, mu_new, family, theta)
        halvings = 0
        while beta is not None and not (np.isfinite(dev_new) and dev_new <= dev * (1 + 1e-15)) and halvings < 30:
            new = (new + beta) / 2
            eta_new = A @ new + offset
            mu_new = _linkinv(eta_new, link)
            dev_new = _deviance(y, mu_new, family, theta)
            halvings += 1
        done = np.isfinite(dev) and abs(dev_new - dev) <= tol * (abs(dev_new) + 0.1)
        beta, eta, mu, dev = new, eta_new, mu_new, dev_new
        if done:
            converged = True
            break
    return beta, mu, eta, converged


# ----------------------------------------------------------------------------- corrections

def _clusters_of(codes: np.ndarray, n_clusters: int) -> list[np.ndarray]:
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(n_clusters + 1))
    return [order[bounds[j]:bounds[j + 1]] for j in range(n_clusters)]


def _rank(X: np.ndarray, gram=None) -> tuple[int, np.ndarray]:
    """Rank of a tall ``X`` and its null-space directions (rows), by
    ``numpy.linalg.matrix_rank``'s tolerance (ten times it) on the singular values of ``X``.

    The p x p eigenproblem of ``X'X`` settles it when ``X`` is well conditioned (smallest
    eigenvalue over 1e-8 of the largest: rank p, whatever the rounding of ``X'X``);
    otherwise the singular values come from the R factor of a QR of ``X``. The square
    roots of the eigenvalues are too coarse for that tolerance: an eigenvalue rounded to
    1e-14 of the largest is a singular value of 1e-7, and a column repeating a factor
    level's indicator passed as full rank that way. ``gram``: ``w -> X' diag(w) X`` when
    the design has it cheaper than the product (its eigenvalues only have to show that
    the smallest is far above rounding); ``X`` may then be the design's
    :class:`_FactorBlock`, built in full only if they do not."""
    lam = np.linalg.eigvalsh(X.T @ X if gram is None else gram(np.ones(X.shape[0])))
    p = X.shape[1]
    if p == 0 or lam[0] > lam[-1] * 1e-8:
        return p, np.zeros((0, p))
    X = X if isinstance(X, np.ndarray) else X.toarray()   # a factor block, in full
    _, sv, vt = np.linalg.svd(np.linalg.qr(X, mode="r"))   # vt: p x p
    sv = np.r_[sv, np.zeros(p - len(sv))]   # fewer rows than columns: the rest are zero
    small = sv <= sv.max() * max(X.shape) * np.finfo(float).eps * 10
    return int(np.sum(~small)), vt[small]


def _power(lam: np.ndarray, kind: str) -> np.ndarray:
    """``f(1 - lambda)`` for the eigenvalues ``lambda`` of the cluster's hat matrix:
    ``(1 - lambda)^-1/2`` (CR2) or ``(1 - lambda)^-1`` (CR3), 0 where ``1 - lambda`` is
    numerically 0 (a cluster that alone determines a coefficient; clubSandwich's
    ``matrix_power`` drops those eigenvalues the same way)."""
    x = 1.0 - lam
    if kind == "CR0":
        return np.ones_like(x)
    out = np.zeros_like(x)
    ok = x > 1e-12
    out[ok] = x[ok] ** (-0.5 if kind == "CR2" else -1.0)
    return out


def _lowrank_factor(lam: np.ndarray, kind: str, power: float) -> np.ndarray:
    """``(f(1 - lambda)^power - 1) / lambda`` for the eigenvalues ``lambda`` of a cluster's
    hat matrix, ``f`` as in :func:`_power`: 0 where ``lambda`` is numerically 0 (those
    directions are not in the cluster's column space and contribute nothing), computed
    through ``expm1``/``log1p`` so that small eigenvalues keep their precision."""
    out = np.zeros_like(lam)
    if kind == "CR0":
        return out
    a = (0.5 if kind == "CR2" else 1.0) * power
    x = 1.0 - lam
    pos = lam > 1e-14
    full = pos & (x > 1e-12)
    out[full] = np.expm1(-a * np.log1p(-lam[full])) / lam[full]
    gone = pos & ~full  # f = 0: the cluster alone determines a direction
    out[gone] = -1.0 / lam[gone]
    return out


def _psd_root(M: np.ndarray) -> np.ndarray:
    """``L`` with ``L L' = M`` for a symmetric positive semi-definite ``M`` (a pseudo-inverse
    information may have zero eigenvalues, which rounding can make slightly negative)."""
    lam, V = np.linalg.eigh(M)
    return V * np.sqrt(np.clip(lam, 0, None))


def _score_meat(Z, e, groups):
    """``sum_j s_j s_j'`` for the clusters' scores ``s_j = Z_j' e_j``: the CR0 meat, with
    no Gram matrix or eigenproblem per cluster (at 1,000 clusters of a national extract
    those were 4 GFLOP a fit). ``Z_j' (c e)_j`` for a row scale ``c`` is ``(c Z)_j' e_j``."""
    S = np.empty((len(groups), Z.shape[1]))
    for j, idx in enumerate(groups):
        S[j] = Z[idx].T @ e[idx]
    return S.T @ S


def _cluster_grams(Z, e, groups) -> tuple[np.ndarray, np.ndarray]:
    """Each cluster's Gram matrix ``G_j = Z_j'Z_j`` and score ``s_j = Z_j'e_j``: ``(G, S)``,
    ``J x p x p`` and ``J x p``."""
    p = Z.shape[1]
    S = np.empty((len(groups), p))
    G = np.empty((len(groups), p, p))
    for j, idx in enumerate(groups):
        Zj = Z[idx]
        G[j] = Zj.T @ Zj
        S[j] = Zj.T @ e[idx]
    return G, S


def _sandwich_lowrank(Z, e, M, groups, kind, satterthwaite: bool, grams=None):
    """The CR0, KC (= CR2 with a working variance constant within clusters) and CR3 meat,
    all clusters at once, from each cluster's Gram matrix ``G_j = Z_j'Z_j`` and score
    ``s_j = Z_j'e_j`` (p x p and p numbers per cluster; no per-cluster factorisation of
    ``Z_j``).

    With ``M = L L'`` and the eigenproblem ``L'G_j L = W diag(lambda) W'`` (the non-zero
    eigenvalues of ``H_jj = Z_j M Z_j'``), ``Z_j' g(I - H_jj) = Z_j' + G_j L W diag((g(1 -
    lambda) - 1) / lambda) W' L' Z_j'`` for any ``g`` with ``g(1) = 1``; so ``u_j = F_j e_j``,
    ``F_j F_j'`` and ``F_j Z_j`` follow from ``G_j``, ``s_j`` and that p x p eigenproblem, in
    batches. Algebraically the same as the QR form of :func:`_sandwich` (checked against it
    and against clubSandwich in the tests). ``grams``: ``(G, S)`` of :func:`_cluster_grams`
    when the caller has them already."""
    G, S = _cluster_grams(Z, e, groups) if grams is None else grams
    L = _psd_root(M)
    GL = G @ L                                  # J x p x p
    K = L.T @ GL                                # L' G_j L
    K = (K + np.swapaxes(K, 1, 2)) / 2          # symmetric to rounding
    lam, W = np.linalg.eigh(K)
    GLW = GL @ W                                # G_j L W, J x p x p
    t = np.einsum("jki,jk->ji", W, S @ L)       # W' L' s_j
    d1 = _lowrank_factor(lam, kind, 1.0)
    U = S + np.einsum("jik,jk->ji", GLW, d1 * t)
    meat = U.T @ U
    if not satterthwaite:
        return meat, None
    d2 = _lowrank_factor(lam, kind, 2.0)
    # GLW diag(d) (GLW)' by batched products, not a three-operand einsum: 0.19 against
    # 0.67 ms at 50 clusters and p = 24 (the same sums in another order)
    GLWt = np.swapaxes(GLW, 1, 2)
    FF = G + (GLW * d2[:, None, :]) @ GLWt                # F_j F_j'
    FZ = G + (GLW * d1[:, None, :]) @ GLWt                # F_j Z_j
    MFF = M @ FF                                          # J x p x p
    gdiag = np.einsum("jik,ki->ji", MFF, M)               # diag(M F F' M)
    HZ = M @ FZ                                           # M F_j Z_j
    return meat, _satterthwaite(gdiag, HZ, L)


#: clusters per block in :func:`_satterthwaite`, and the numbers it holds in one array at
#: most (8 MB; at 1,000 clusters and p = 64 all coefficients at once would hold 65 MB)
_SATT_BLOCK = 32
_SATT_NUMBERS = 1 << 20


def _satterthwaite(gdiag, HZ, L):
    """Bell-McCaffrey df per coefficient (see :func:`_sandwich`): ``trace(P)^2 /
    sum(P^2)`` for the ``J x J`` matrix ``P = diag(g) - h h'`` (``g = gdiag[:, i]``, ``h``
    the ``J x p`` rows ``HZ[:, i, :] L``), which is never formed whole. ``trace(P) =
    sum_j (g_j - |h_j|^2)``; ``sum(P^2)`` is its diagonal's squares plus its off-diagonal
    ones ``(h_j'h_k)^2``, these summed in blocks of :data:`_SATT_BLOCK` clusters: within a
    block from its ``h h'`` (as the ``J x J`` form has them), between a block and the
    blocks before it as ``sum_j h_j' A h_j`` with ``A`` the running sum of those blocks'
    ``h'h`` (p x p). ``O(J p (p + block))`` per coefficient instead of ``O(J^2 p)`` (65 ms
    a fit at 1,000 clusters and p = 16). Nothing cancels: ``||h'h||_F^2 - sum_j |h_j|^4``
    would, where one cluster alone carries a coefficient (2e-8 relative measured against
    the ``J x J`` form in extended precision, which this form matches to rounding;
    ``tests/unit/stats/test_clustered.py`` checks it against the ``J x J`` form)."""
    p = L.shape[0]
    J = HZ.shape[0]
    b = min(J, _SATT_BLOCK)
    nb = -(-J // b)
    H = np.zeros((p, nb * b, p))               # coefficient i's h is H[i]; rows past J zero
    H[:, :J] = np.swapaxes(HZ @ L, 0, 1)
    diag = gdiag.T - np.einsum("ijk,ijk->ij", H[:, :J], H[:, :J])   # P_jj, p x J
    off = np.empty(p)
    # coefficients a few at a time: the running sums are nb x p x p numbers each
    step = max(1, _SATT_NUMBERS // (nb * max(b, p) * p))
    for i in range(0, p, step):
        Hb = H[i:i + step].reshape(-1, nb, b, p)
        K = Hb @ np.swapaxes(Hb, 2, 3)         # h h' within each block, . x nb x b x b
        K[..., np.arange(b), np.arange(b)] = 0.0
        off[i:i + step] = np.einsum("inkl,inkl->i", K, K)
        if nb > 1:
            A = np.cumsum(np.swapaxes(Hb[:, :-1], 2, 3) @ Hb[:, :-1], axis=1)  # blocks before
            off[i:i + step] += 2 * np.einsum("inkl,inkl->i", Hb[:, 1:] @ A, Hb[:, 1:])
    return diag.sum(axis=1) ** 2 / (np.einsum("ij,ij->i", diag, diag) + off)


def _sandwich(Z, e, theta, M, groups, kind, satterthwaite: bool):
    """Cluster-robust covariance ``M (sum_j u_j u_j') M`` with ``u_j = F_j e_j``.

    ``Z = W^1/2 D`` and ``e = W^1/2 (y - mu)`` are the standardised model matrix and
    residuals (``D = dmu/deta X``, ``W = 1 / V(mu)``, ``theta = V(mu)``), ``M = (Z'Z)^-1``
    and ``H_jj = Z_j M Z_j'``:

    * CR0: ``F_j = Z_j'``;
    * KC: ``F_j = Z_j' (I - H_jj)^-1/2`` (Kauermann-Carroll: ``D'V^-1 (I - D M D'V^-1)^-1/2``
      written symmetrically);
    * CR3 = MD: ``F_j = Z_j' (I - H_jj)^-1``;
    * CR2: clubSandwich's form for a GLM, ``A_j = Theta^1/2 G^-1/2 Theta^1/2`` with
      ``G = Theta (I - H_jj) Theta``, i.e. ``F_j = Z_j' G^-1/2 Theta``. It equals KC when
      the working variance is constant within clusters, not otherwise (Poisson).

    KC, CR3 and CR0 apply ``f(I - H_jj)`` through the p x p eigenproblem of ``R M R'``
    (``Z_j = Q R``), so no ``n_j x n_j`` matrix is formed; CR2 applies ``G^-1/2`` by
    quadrature (:func:`_cr2_f`), also without one. With ``satterthwaite`` also returns,
    per coefficient, the Satterthwaite df of Bell and McCaffrey as clubSandwich computes
    them (``2 E^2 / V`` of the variance estimator under the working model: ``P = diag(g) -
    h h'`` over clusters, ``g_j = diag(M F_j F_j' M)``, ``h_j = (M F_j Z_j L)`` rows, ``L
    L' = M``).

    :func:`glm_clustered` calls :func:`_sandwich_lowrank` instead (the same numbers, all
    clusters in batches) unless CR2's working variance varies within some cluster; this
    per-cluster form stays as its reference (``tests/unit/stats``).
    """
    p = Z.shape[1]
    J = len(groups)
    U = np.empty((J, p))
    gdiag = np.empty((J, p)) if satterthwaite else None
    HZ = np.empty((J, p, p)) if satterthwaite else None
    for j, idx in enumerate(groups):
        Zj = Z[idx]
        th = theta[idx]
        # with a working variance constant within the cluster (a logistic model whose
        # covariates are the cluster's: arm and site) clubSandwich's CR2 is KC, which the
        # low-rank path computes in batches
        if kind == "CR2" and _varies(th):
            F = _cr2_f(Zj, th, M)
            U[j] = F @ e[idx]
            if satterthwaite:
                gdiag[j] = np.einsum("ij,ij->i", M @ F, M @ F)
                HZ[j] = M @ F @ Zj
            continue
        q, r = np.linalg.qr(Zj, mode="reduced")
        lam, V = np.linalg.eigh(r @ M @ r.T)
        f = _power(lam, "CR2" if kind == "KC" else kind)
        RV = r.T @ V  # p x k
        U[j] = RV @ (f * (V.T @ (q.T @ e[idx])))
        if satterthwaite:
            gdiag[j] = np.diag(M @ (RV * f**2) @ RV.T @ M)
            HZ[j] = M @ (RV * f) @ RV.T  # M F_j Z_j
    meat = U.T @ U
    if not satterthwaite:
        return meat, None
    return meat, _satterthwaite(gdiag, HZ, _psd_root(M))


#: the quadrature's relative error bound for ``x^-1/2`` over the spectrum (see
#: :func:`_inv_sqrt_nodes`: measured <= 7e-14 up to this ratio of its ends)
_QUAD_KAPPA_MAX = 1e8
_QUAD_ROWS = 8192   # rows per block in :func:`_cr2_f` (memory: rows x q^2 numbers)


def _inv_sqrt_nodes(lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Shifts ``tau`` and weights ``w`` with ``x^-1/2 = sum_k w_k / (x + tau_k)`` to about
    1e-14 relative for every ``x`` in ``[lo, hi]``.

    ``x^-1/2 = (2/pi) int_0^inf dt / (x + t^2)``; with ``t = sqrt(lo) sc(u | 1 - lo/hi)``
    (Jacobi elliptic functions) the integrand is analytic in a strip around ``u`` in ``[0,
    K]`` and the midpoint rule converges geometrically, ``N`` nodes giving an error of
    about ``exp(-2 pi^2 N / log(16 hi / lo))`` (Hale, Higham and Trefethen 2008, their
    method for ``A^-1/2``). Nodes past ``K/2`` are evaluated at ``K - u`` through the
    quarter-period identities, since ``cn(u)`` loses its relative precision near ``K``.
    ``N = 1.7 log(16 hi / lo) + 2`` nodes: measured at most 1e-15 relative for ``hi / lo
    <= 1e4``, 4e-14 up to 1e7 and 7e-14 at 1e8 (``tests/unit/stats/test_clustered.py``).

    Hale N, Higham NJ, Trefethen LN. Computing A^alpha, log(A), and related matrix
    functions by contour integrals. SIAM J Numer Anal 2008;46:2505-2523."""
    n = max(8, int(np.ceil(1.7 * np.log(16 * hi / lo))) + 2)
    par = 1.0 - lo / hi
    big_k = special.ellipkm1(lo / hi)    # K(par), accurate for par near 1
    u = (np.arange(n) + 0.5) * big_k / n
    up = u > big_k / 2
    sn, cn, dn, _ = special.ellipj(np.where(up, big_k - u, u), par)
    # sc(K - v) = cn(v) / (k' sn(v)) and dn/cn^2 (K - v) = dn(v) / (k' sn(v)^2), k'^2 = lo/hi
    tau = np.where(up, hi * (cn / sn) ** 2, lo * (sn / cn) ** 2)
    w = (2 / np.pi) * (big_k / n) * np.where(up, np.sqrt(hi) * dn / sn**2,
                                            np.sqrt(lo) * dn / cn**2)
    return tau, w


def _cr2_f(Zj: np.ndarray, th: np.ndarray, M: np.ndarray, exact: bool = False) -> np.ndarray:
    """clubSandwich's CR2 for a GLM in one cluster: ``F_j = Z_j' G^-1/2 Theta`` (p x n_j),
    ``G = Theta (I - H_jj) Theta`` with ``H_jj = Z_j M Z_j'`` and ``Theta`` the working
    variances ``th`` (see :func:`_sandwich`).

    ``G = Theta^2 - B B'`` is a diagonal matrix less one of rank ``q`` (``B = Theta Z_j L``,
    ``L L' = M``, ``q`` the columns of ``Z_j`` that are not zero in this cluster), so
    ``G^-1/2 Z_j = sum_k w_k (G + tau_k)^-1 Z_j`` (:func:`_inv_sqrt_nodes`) with each
    ``(G + tau_k)^-1`` applied by the Woodbury identity: ``O(n_j q^2)`` per node and no
    ``n_j x n_j`` matrix, where the eigenproblem of ``G`` costs ``O(n_j^3)`` (measured:
    0.17 CPU s at 1,000 rows and 21 s at 5,000, against 1.3 and 7.7 ms by quadrature). The
    nodes need the spectrum of ``G``: within ``[min th^2 (1 - lambda_max(H_jj)), max
    th^2]``. Where that interval reaches 1e-10 or its ratio 1e8 (a cluster that alone nearly
    determines a coefficient), and with ``exact``, the eigenproblem of ``G`` itself,
    dropping eigenvalues under 1e-12 as clubSandwich does. The two agree to 3e-13 relative
    at most in ``tests/unit/stats/test_clustered.py`` (which requires 1e-11)."""
    n, p = Zj.shape
    nz = np.flatnonzero(np.any(Zj != 0, axis=0))
    Zc = Zj[:, nz]
    q = len(nz)
    Lc = _psd_root(M[np.ix_(nz, nz)])
    lam_max = float(np.linalg.eigvalsh(Lc.T @ (Zc.T @ Zc) @ Lc).max()) if q else 0.0
    t2 = th**2
    lo, hi = float(t2.min()) * (1.0 - lam_max), float(t2.max())
    if exact or not (lo > 1e-10 and hi <= _QUAD_KAPPA_MAX * lo):
        Gm = th[:, None] * (np.eye(n) - Zj @ M @ Zj.T) * th[None, :]
        lam, Q = np.linalg.eigh(Gm)
        pw = np.zeros_like(lam)
        pw[lam > 1e-12] = lam[lam > 1e-12] ** -0.5
        return (((Zj.T @ Q) * pw) @ Q.T) * th[None, :]  # p x n_j: no n_j x n_j product
    tau, w = _inv_sqrt_nodes(lo, hi)
    nodes = len(tau)
    A = 1.0 / (t2[:, None] + tau[None, :])               # a_k = 1 / (th^2 + tau_k), n_j x N
    P1 = np.zeros((q * q, nodes))
    P2 = np.zeros((q * q, nodes))
    for i in range(0, n, _QUAD_ROWS):   # Z' diag(th^2 a_k) Z and Z' diag(th a_k) Z
        b = slice(i, i + _QUAD_ROWS)
        ZZ = (Zc[b, :, None] * Zc[b, None, :]).reshape(-1, q * q)
        P1 += ZZ.T @ (t2[b, None] * A[b])
        P2 += ZZ.T @ (th[b, None] * A[b])
    P1 = P1.T.reshape(nodes, q, q)
    P2 = P2.T.reshape(nodes, q, q)
    C = np.eye(q) - Lc.T @ P1 @ Lc                       # I - B' D_k^-1 B
    R = (Lc @ np.linalg.solve(C, Lc.T @ P2)).reshape(nodes, q * q)
    F = np.zeros((p, n))
    for i in range(0, n, _QUAD_ROWS):   # G^-1/2 Z = sum_k w_k (D_k^-1 Z + D_k^-1 Theta Z R_k)
        b = slice(i, i + _QUAD_ROWS)
        Y = (A[b] @ w)[:, None] * Zc[b] + np.einsum(
            "ni,nij->nj", Zc[b], ((th[b, None] * A[b] * w[None, :]) @ R).reshape(-1, q, q))
        F[nz, b] = (Y * th[b, None]).T
    return F


def _varies(th: np.ndarray) -> bool:
    """The working variance differs within this cluster (CR2 is then not KC)."""
    return bool(np.ptp(th) > 1e-12 * np.max(th))


# ----------------------------------------------------------------------------- the design

#: a factor with more treatment dummies than this (the 49 site indicators of a national
#: extract) has its cross-products summed per level (:class:`_FactorBlock`)
BLOCK_MIN_DUMMIES = 24


@dataclass(frozen=True, eq=False)
class _FactorBlock:
    """One factor's treatment dummies in the model matrix (columns ``block_pos``; row ``i``
    has its 1 in ``block_pos[codes[i] - 1]``, none at level 0) and the other columns
    (``dense_t`` transposed, at ``dense_pos``), for cross-products ``X' diag(w) X`` at the
    cost of the dense columns: the dense block by one product, the factor's diagonal and
    its cross-products with the dense columns by sums per level. A national extract's site
    term is 49 of 64 columns, so this is about a seventeenth of the full product. It also
    stands in for ``X`` in ``X @ b``, ``X.T @ v`` and per-cluster sums (:meth:`group_sums`),
    which then read a quarter of the dense matrix's memory."""

    dense_t: np.ndarray   # the dense columns transposed (p_dense x n, rows contiguous)
    dense_pos: np.ndarray
    codes: np.ndarray
    block_pos: np.ndarray

    def gram(self, w: np.ndarray) -> np.ndarray:
        """``X' diag(w) X`` (:func:`pipeline.stats._eff_design.factor_gram`)."""
        return factor_gram(self.dense_t, self.dense_pos, self.codes, self.block_pos, w)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.codes), len(self.dense_pos) + len(self.block_pos)

    def __matmul__(self, b: np.ndarray) -> np.ndarray:
        """``X @ b``: the dense columns' product plus each row's level coefficient (the
        sums of :meth:`gram` again, at a quarter of the dense matrix's memory traffic)."""
        level = np.r_[0.0, b[self.block_pos]]
        return b[self.dense_pos] @ self.dense_t + level[self.codes]

    @property
    def T(self) -> "_FactorBlockT":
        return _FactorBlockT(self)

    def toarray(self) -> np.ndarray:
        """The model matrix in full (n x p)."""
        X = np.zeros(self.shape)
        X[:, self.dense_pos] = self.dense_t.T
        rows = np.flatnonzero(self.codes > 0)
        X[rows, self.block_pos[self.codes[rows] - 1]] = 1.0
        return X

    def column(self, j: int) -> np.ndarray:
        """Column ``j`` of the model matrix, a dense one."""
        k = int(np.searchsorted(self.dense_pos, j))
        if k == len(self.dense_pos) or self.dense_pos[k] != j:
            raise ValueError(f"column {j} is one of the factor's indicators")
        return self.dense_t[k]

    def group_sums(self, groups: np.ndarray, n_groups: int, v: np.ndarray) -> np.ndarray:
        """``X_j' v_j`` of each group ``j`` (``groups``: each row's, 0 .. n_groups - 1) as
        the rows of an ``n_groups x p`` array, by sums per group (and level)."""
        S = np.empty((n_groups, self.shape[1]))
        for k, col in zip(self.dense_pos, self.dense_t):
            S[:, k] = np.bincount(groups, weights=col * v, minlength=n_groups)
        k = len(self.block_pos) + 1
        S[:, self.block_pos] = np.bincount(groups * k + self.codes, weights=v,
                                           minlength=n_groups * k).reshape(n_groups, k)[:, 1:]
        return S


@dataclass(frozen=True, eq=False)
class _FactorBlockT:
    """``X.T`` of a :class:`_FactorBlock`, for ``X.T @ v``: the dense columns' product
    and ``v`` summed per level."""

    x: _FactorBlock

    def __matmul__(self, v: np.ndarray) -> np.ndarray:
        x = self.x
        out = np.empty(x.shape[1])
        out[x.dense_pos] = x.dense_t @ v
        out[x.block_pos] = np.bincount(x.codes, weights=v, minlength=len(x.block_pos) + 1)[1:]
        return out


def _model_matrix(d: pd.DataFrame, covariates: list[str]
                  ) -> tuple[list[str], np.ndarray | None, _FactorBlock | None]:
    """``(names, X, block)``: the model matrix of :func:`pipeline.stats._eff_design.
    design_matrix` as an array, or, when a factor has more than :data:`BLOCK_MIN_DUMMIES`
    dummies, as the :class:`_FactorBlock` of the factor with the most (X None): its other
    columns are built transposed and its dummies never are (a national extract's n x 64
    matrix is 0.5 GB, its dense columns a quarter of it)."""
    names, parts = _terms(d, covariates, True)
    widths = [1 if codes is None else max(len(vals) - 1, 0) for codes, vals in parts]
    big = None
    for i, (codes, _) in enumerate(parts):
        if codes is not None and widths[i] > BLOCK_MIN_DUMMIES and \
                (big is None or widths[i] > widths[big]):
            big = i
    if big is None:
        return names, dense_matrix(len(d), len(names), parts), None
    bp = np.arange(sum(widths[:big]), sum(widths[:big + 1]))
    dp = np.setdiff1d(np.arange(len(names)), bp)   # the other terms' columns, in order
    dense_t = dense_matrix(len(d), len(dp), parts[:big] + parts[big + 1:], transposed=True)
    return names, None, _FactorBlock(dense_t, dp, parts[big][0], bp)


@dataclass(frozen=True, eq=False)
class GLMDesign:
    """What a :func:`glm_clustered` fit needs besides the outcome: the model matrix, the
    offset and the clusters of the rows used (see :func:`glm_design`).

    Attributes
    ----------
    covariates : tuple of str
    cluster, offset : str or None
        The columns it was built with (``offset`` as named, ``log_offset`` whether logged).
    index : Index, shape (n,)
        The rows used, as labelled in the frame the design was built from.
    rows : ndarray of int, shape (n,), or None
        Their positions in that frame (None: every row, in order).
    n_source : int
        The number of rows of that frame.
    terms : list of str
    dense : ndarray, shape (n, p), or None
        The model matrix (:func:`pipeline.stats._eff_design.design_matrix`), of full column
        rank (checked); None when it is held as a factor block (``block``). :attr:`X` is
        the matrix either way.
    off : ndarray, shape (n,)
    codes : ndarray of int, shape (n,), or None
        Each row's cluster (0 .. n_clusters - 1, levels sorted); None without ``cluster``.
    levels : Index or None
    groups : list of ndarray or None
        The rows of each cluster (positions in ``X``).
    notes : tuple of str
        Rows dropped for missing values.
    source_index : Index
        The row labels of the frame it was built from.
    """

    covariates: tuple[str, ...]
    cluster: str | None
    offset: str | None
    log_offset: bool
    index: pd.Index
    rows: np.ndarray | None
    n_source: int
    terms: list[str]
    dense: np.ndarray | None
    off: np.ndarray
    codes: np.ndarray | None
    levels: pd.Index | None
    groups: list[np.ndarray] | None
    notes: tuple[str, ...]
    source_index: pd.Index
    block: "_FactorBlock | None" = None   # a large factor's columns, summed per level

    @cached_property
    def X(self) -> np.ndarray:
        """The model matrix; from a factor block, built when first read (only the
        jackknife, CR2 and Satterthwaite df need it)."""
        return self.dense if self.dense is not None else self.block.toarray()

    @cached_property
    def column_sumsq(self) -> np.ndarray:
        """Each column's unweighted sum of squares (the scale on which a level without
        events shows as a direction without information, :func:`rates._inverse`)."""
        if self.dense is not None:
            return np.einsum("ij,ij->j", self.dense, self.dense)
        return np.diag(self.block.gram(np.ones(len(self.off)))).copy()

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.off), len(self.terms)

    def column(self, j: int) -> np.ndarray:
        """Column ``j`` of the model matrix (not a factor block's indicator)."""
        return self.dense[:, j] if self.dense is not None else self.block.column(j)

    def outcome(self, df: pd.DataFrame, outcome: str) -> np.ndarray:
        """``df[outcome]`` at the design's rows, as floats; ``df`` has the rows (and row
        labels) of the frame the design was built from, and the outcome none missing there."""
        check_columns(df, [outcome])
        if len(df) != self.n_source or not df.index.equals(self.source_index):
            raise ValueError("the data frame does not have the rows the design was built from")
        y = df[outcome].to_numpy(float)
        if self.rows is not None:
            y = y[self.rows]
        if np.isnan(y).any():
            raise ValueError(f"outcome {outcome!r} is missing in {int(np.isnan(y).sum())} "
                             "row(s) of the design: build the design without them")
        return y


def _build_design(source: pd.DataFrame, d: pd.DataFrame, keep: np.ndarray | None,
                  covariates: list[str], cluster: str | None, offset: str | None,
                  log_offset: bool, notes: list[str]) -> GLMDesign:
    """The design of the rows ``d`` (``source`` with rows missing a used column dropped;
    ``keep`` their positions there, None if none was)."""
    names, X, block = _model_matrix(d, covariates)
    n, p = len(d), len(names)
    if _rank(X if block is None else block, None if block is None else block.gram)[0] < p:
        raise ValueError("the covariates are collinear (model matrix not of full column rank)")
    off = np.zeros(n)
    if offset:
        o = d[offset].to_numpy(float)
        if log_offset:
            if np.any(o <= 0):
                raise ValueError(f"offset column {offset!r} must be > 0 to be logged")
            o = np.log(o)
        off = o
    codes = levels = groups = None
    if cluster:
        codes, levels = pd.factorize(d[cluster], sort=True)
        groups = _clusters_of(codes, len(levels))
    return GLMDesign(tuple(covariates), cluster, offset, log_offset, d.index, keep,
                     len(source), names, X, off, codes, levels, groups,
                     tuple(notes), source.index, block)


def _used_rows(df: pd.DataFrame, used: list[str], notes: list[str]):
    """``df[used]`` without the rows missing any of them (noted), and those rows' positions
    (None when none is missing)."""
    check_columns(df, used)
    d = df[used]
    miss = d.isna().any(axis=1)
    keep = None
    if miss.any():
        notes.append(f"{int(miss.sum())} row(s) dropped for missing values in "
                     f"{[c for c in d.columns if d[c].isna().any()]}.")
        keep = np.flatnonzero(~miss.to_numpy())
        d = d.loc[~miss]
    if d.empty:
        raise ValueError("no rows left after dropping missing values")
    return d, keep


def glm_design(df: pd.DataFrame, covariates: Sequence[str], cluster: str | None = None,
               offset: str | None = None, log_offset: bool = True) -> GLMDesign:
    """The model matrix, offset and clusters of :func:`glm_clustered` built once, for fits
    of many outcomes on the same rows (``glm_clustered(..., design=...)``: the completed
    datasets of multiple imputation, which differ only in imputed outcomes).

    Parameters as :func:`glm_clustered`'s. Rows missing a covariate, the offset or the
    cluster are dropped (noted in each fit); the outcome must then be present in every
    row kept. Raises ``ValueError`` if the model matrix is not of full column rank.
    """
    covariates = [covariates] if isinstance(covariates, str) else list(covariates)
    used = list(dict.fromkeys(covariates + ([offset] if offset else [])
                              + ([cluster] if cluster else [])))
    notes: list[str] = []
    d, keep = _used_rows(df, used, notes)
    return _build_design(df, d, keep, covariates, cluster, offset, log_offset, notes)


# ----------------------------------------------------------------------------- the model

def _nb_theta(y, X, offset, block=None):
    """ML theta of the NB2 model jointly with the coefficients (``MASS::glm.nb``), by the
    search of :func:`pipeline.stats.rates.rate_ratio` on ``X`` as a sparse matrix, or on
    the design's :class:`_FactorBlock` (``block``) when it has one: its products and
    cross-products sum the large factor per level."""
    from scipy import sparse

    from pipeline.stats import rates

    Xs, gram = (sparse.csr_matrix(X), None) if block is None else (block, block.gram)
    theta, _, ok = rates._negbin_theta(y, Xs, offset, rates._glm(y, Xs, offset, gram=gram),
                                       gram=gram)
    return theta, ok


def glm_clustered(
    df: pd.DataFrame,
    outcome: str,
    covariates: Sequence[str],
    family: str = "binomial",
    cluster: str | None = None,
    vcov: str = "CR2",
    df_method: str | None = None,
    link: str | None = None,
    offset: str | None = None,
    log_offset: bool = True,
    theta: float | None = None,
    conf_level: float = 0.95,
    start: Sequence[float] | None = None,
    design: GLMDesign | None = None,
) -> ClusteredGLMResult:
    """Fit a GLM and report each coefficient with a variance fit for few clusters.

    Parameters
    ----------
    df : DataFrame, shape (n_samples, n_columns)
        One row per person.
    outcome : str
        0/1 (binomial), non-negative counts (poisson, negbin) or numbers (gaussian).
    covariates : sequence of str
        Numeric columns enter as they are; categorical ones by treatment contrasts with
        terms named as R names them (``"armopen_dialogue"``, ``"site_idS02"``).
    family : {"binomial", "poisson", "negbin", "gaussian"}
    cluster : str, optional
        The unit whose rows are correlated (GP practice), or the site for the
        delete-one-site jackknife. Required for every ``vcov`` but ``"model"``.
    vcov : {"model", "CR0", "CR1", "CR2", "CR3", "KC", "MD", "jackknife"}
        See the module docstring. ``MD`` is ``CR3`` with another default df (``K-p``, as
        Li and Redden 2015 recommend for MD and KC).
    df_method : {"satterthwaite", "K-p", "K-1", "z"}, optional
        Reference distribution; defaults as in the module docstring.
    link : str, optional
        ``logit`` (binomial default), ``log`` (poisson, negbin default; binomial log-risk),
        ``identity`` (gaussian default; binomial risk difference).
    offset : str, optional
        Column entering the linear predictor with coefficient 1, logged first unless
        ``log_offset=False`` (person-years for a rate).
    theta : float, optional
        Negative binomial shape (``var = mu + mu^2 / theta``); estimated by maximum
        likelihood jointly with the coefficients when omitted. The coefficients'
        variances condition on it, as glm.nb's do.
    conf_level : float
    start : sequence of float, optional
        Starting coefficients, one per term of the model matrix (e.g. a previous fit's
        ``summary["coef"]`` on a dataset that differs only in some outcomes, as multiple
        imputation's completed datasets do): fewer scoring steps to the same convergence
        criterion. Ignored if its length is not the number of terms.
    design : GLMDesign, optional
        The model matrix, offset and clusters built by :func:`glm_design` from ``df``
        (or a frame with its rows) with these ``covariates``, ``cluster``, ``offset`` and
        ``log_offset``: only the outcome is read from ``df``, at the design's rows (none of
        them may miss it). The same fit as without it, minus building them again (fits of
        many outcomes on the same rows).

    Returns
    -------
    ClusteredGLMResult

    Notes
    -----
    Rows missing any used column are dropped (noted). The GLM is fitted by Fisher scoring
    to a relative change in deviance of 1e-14. A term that some jackknife replicate
    cannot estimate (its level only in the deleted cluster, e.g. the site's own term
    when a site is deleted) gets no jackknife standard error; the other terms are
    unaffected.

    References
    ----------
    Bell RM, McCaffrey DF. Bias reduction in standard errors for linear regression with
    multi-stage samples. Survey Methodology 2002;28:169-181. Pustejovsky JE, Tipton E.
    Small-sample methods for cluster-robust variance estimation and hypothesis testing in
    fixed effects models. J Bus Econ Stat 2018;36:672-683. Kauermann G, Carroll RJ. A note
    on the efficiency of sandwich covariance matrix estimation. JASA 2001;96:1387-1396.
    Mancl LA, DeRouen TA. A covariance estimator for GEE with improved small-sample
    properties. Biometrics 2001;57:126-134. Li P, Redden DT. Comparing denominator degrees
    of freedom approximations for the generalized linear mixed model in analyzing binary
    outcome in small sample cluster-randomized trials. BMC Med Res Methodol 2015;15:38.
    MacKinnon JG, Nielsen MO, Webb MD. Cluster-robust inference: a guide to empirical
    practice. J Econometrics 2023;232:272-299 (CV3 jackknife). McCullagh P, Nelder JA.
    Generalized Linear Models, 2nd ed. Chapman & Hall 1989.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    link = link or LINKS[family][0]
    if link not in LINKS[family]:
        raise ValueError(f"link {link!r} is not available for {family}; use one of {LINKS[family]}")
    if vcov not in VCOV_TYPES:
        raise ValueError(f"vcov must be one of {VCOV_TYPES}, got {vcov!r}")
    if df_method is not None and df_method not in DF_METHODS:
        raise ValueError(f"df_method must be one of {DF_METHODS}, got {df_method!r}")
    if vcov != "model" and cluster is None:
        raise ValueError(f"vcov={vcov!r} needs a cluster column")
    check_conf_level(conf_level)
    covariates = [covariates] if isinstance(covariates, str) else list(covariates)
    if design is None:
        used = [outcome, *covariates] + ([offset] if offset else []) + ([cluster] if cluster else [])
        notes: list[str] = []
        d, keep = _used_rows(df, list(dict.fromkeys(used)), notes)
        y = d[outcome].to_numpy(float)
    else:
        if (list(design.covariates), design.cluster, design.offset, design.log_offset) != \
                (covariates, cluster, offset, log_offset):
            raise ValueError("the design was built with other covariates, cluster or offset")
        notes = list(design.notes)
        y = design.outcome(df, outcome)
    if family == "binomial" and not np.all((y == 0) | (y == 1)):
        raise ValueError(f"outcome {outcome!r} must be 0/1 for the binomial family")
    if family in ("poisson", "negbin") and (np.any(y < 0) or np.any(y != np.round(y))):
        raise ValueError(f"outcome {outcome!r} must hold non-negative integer counts")
    if design is None:
        design = _build_design(df, d, keep, covariates, cluster, offset, log_offset, [])
    terms, off, block = design.terms, design.off, design.block
    n, p = design.shape
    X = design.dense   # None with a factor block: its products and sums stand in for it
    gram = None if block is None else block.gram
    if family == "negbin" and theta is None:
        theta, ok = _nb_theta(y, X, off, block)
        if not ok:
            notes.append(f"theta has no finite maximum (stopped at {theta:.3g}): no overdispersion.")
    if start is not None:
        start = np.asarray(start, float)
        if start.shape != (p,) or not np.all(np.isfinite(start)):
            start = None
    # one array for X * w in every scoring step, then for Z: a new one each time cost about
    # as much as the product it holds (a factor block's cross-products need none)
    work = np.empty_like(X) if block is None else None
    beta, mu, eta, converged = _irls(y, X, off, family, link, theta, start=start, block=block,
                                     out=work)
    if not converged:
        notes.append("the model fit did not converge in 100 iterations: estimates unreliable.")

    dmu = _mu_eta(eta, mu, link)
    var = _variance(mu, family, theta)
    scale = dmu / np.sqrt(var)
    e = (y - mu) / np.sqrt(var)
    # Z = X * scale, the n x p standardised model matrix; with a factor block it is built
    # only for a sandwich that needs it
    Z = np.multiply(X, scale[:, None], out=work) if gram is None else None
    kind = _ALIAS.get(vcov, vcov)
    default_df = {"model": "z", "jackknife": "K-1", "KC": "K-p", "MD": "K-p"}.get(vcov, "satterthwaite")
    df_method = df_method or default_df
    k = "CR0" if kind == "CR1" else kind
    satterthwaite = df_method == "satterthwaite"
    # the batched sandwich (all but CR0 without Satterthwaite df, and CR2 with a working
    # variance that varies within a cluster) takes each cluster's Z_j'Z_j; they sum to Z'Z,
    # which is then not computed again (one n x p^2 product less a fit: 0.9 of 22 ms a
    # fit at n = 25,000, p = 24, 50 clusters)
    lowrank = vcov not in ("model", "jackknife") and not (k == "CR0" and not satterthwaite) \
        and not (k == "CR2" and any(_varies(var[g]) for g in design.groups))
    grams = _cluster_grams(Z, e, design.groups) if lowrank and Z is not None else None
    # a level without events has its coefficient at -infinity and no information: the
    # inverse is taken on the other directions and those terms get no standard error
    M, flat = _inverse(grams[0].sum(axis=0) if grams is not None
                       else Z.T @ Z if gram is None else gram(scale**2), design.column_sumsq)
    dispersion = 1.0
    if family == "gaussian":
        dispersion = float(np.sum((y - mu) ** 2 / var) / (n - p))
    vcov_model = M * dispersion

    n_clusters = None
    dfs = np.full(p, np.inf)
    if vcov == "model":
        V = vcov_model
        if df_method != "z":
            raise ValueError("the model-based variance uses the normal reference (df_method='z')")
    else:
        J = n_clusters = len(design.levels)
        if J < 2:
            raise ValueError("cluster-robust variances need at least two clusters")
        groups = design.groups
        if kind == "jackknife":
            V = _jackknife(y, design.X, off, family, link, theta, groups, beta)
            if df_method == "satterthwaite":
                raise ValueError("Satterthwaite df are defined for CR0-CR3, not the jackknife")
        else:
            if k == "CR0" and not satterthwaite:   # the clusters' scores alone
                if Z is not None:
                    meat = _score_meat(Z, e, groups)
                else:
                    S = block.group_sums(design.codes, J, scale * e)
                    meat = S.T @ S
                satt = None
            else:
                Z = design.X * scale[:, None] if Z is None else Z
                if not lowrank:   # CR2, the working variance varying within a cluster
                    meat, satt = _sandwich(Z, e, var, M, groups, k, satterthwaite)
                else:
                    meat, satt = _sandwich_lowrank(Z, e, M, groups, "CR2" if k == "KC" else k,
                                                   satterthwaite, grams)
            if kind == "CR1":
                meat = meat * J / (J - 1)  # a scalar factor leaves the Satterthwaite df as they are
            V = M @ meat @ M
            if satt is not None:
                dfs = satt
        if df_method == "K-p":
            if J - p < 1:
                raise ValueError(f"K-p df need more clusters ({J}) than coefficients ({p})")
            dfs = np.full(p, float(J - p))
        elif df_method == "K-1":
            dfs = np.full(p, float(J - 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.where(flat, np.nan, np.sqrt(np.diag(V)))
        tstat = beta / se
    # the t's (normal's) quantile and tail by the special functions stats.t.ppf and .sf
    # (stats.norm's) call, the same numbers without rv_continuous's per-call overhead
    inf = np.isinf(dfs)
    q = np.where(inf, special.ndtri(1 - (1 - conf_level) / 2),
                 special.stdtrit(np.where(inf, 1, dfs), 1 - (1 - conf_level) / 2))
    pval = np.where(inf, 2 * special.ndtr(-np.abs(tstat)),
                    2 * special.stdtr(np.where(inf, 1, dfs), -np.abs(tstat)))
    with np.errstate(invalid="ignore"):
        se_model = np.where(flat, np.nan, np.sqrt(np.diag(vcov_model)))
    if flat.any():
        notes.append(f"No finite estimate for {', '.join(np.asarray(terms)[flat])}: the data carry no "
                     "information on them (a covariate level without events, or with only events, "
                     "puts its maximum at infinity); the other coefficients are unaffected.")
    summary = pd.DataFrame({"coef": beta, "se": se, "df": dfs, "lower": beta - q * se,
                            "upper": beta + q * se, "t": tstat, "p": pval, "se_model": se_model},
                           index=pd.Index(terms, name="term"))
    if vcov == "jackknife":
        words = f"jackknife deleting one {cluster} at a time ({n_clusters} of them)"
    elif vcov != "model":
        words = f"{_WORDS[vcov]} by {cluster} ({n_clusters} clusters)"
    else:
        words = _WORDS[vcov]
    ref = {"z": "normal reference", "satterthwaite": "t on Satterthwaite df",
           "K-p": f"t on K - p = {n_clusters - p if n_clusters else ''} df",
           "K-1": f"t on K - 1 = {n_clusters - 1 if n_clusters else ''} df"}[df_method]
    res = ClusteredGLMResult(summary, notes)
    res.method = f"{words}; {ref}"
    res.vcov = pd.DataFrame(V, index=terms, columns=terms)
    res.family, res.link, res.theta = family, link, (float(theta) if theta is not None else np.nan)
    res.n, res.n_clusters, res.conf_level = n, n_clusters, conf_level
    res.vcov_type, res.df_method = vcov, df_method
    res.fitted = pd.Series(mu, index=design.index)
    res.title = f"GLM ({family}, {link} link, n={n}): {res.method}"
    return res


def _jackknife(y, X, off, family, link, theta, groups, beta):
    """Delete-one-cluster jackknife covariance (CV3); a coefficient that a replicate cannot
    estimate (its column all zero, or aliased, without that cluster) is NaN there and its
    row and column of the covariance are NaN."""
    J, p = len(groups), X.shape[1]
    reps = np.full((J, p), np.nan)
    n = len(y)
    for j, idx in enumerate(groups):
        keep = np.ones(n, bool)
        keep[idx] = False
        Xj = X[keep]
        cols = np.flatnonzero(np.any(Xj != 0, axis=0))
        Xc = Xj[:, cols]
        # a level left only in the reference makes some columns aliased (the intercept and
        # that factor's other terms): fit on a full-rank subset, report those terms as NaN
        null = _rank(Xc)[1]
        aliased = np.any(np.abs(null) > 1e-8, axis=0) if len(null) else np.zeros(len(cols), bool)
        fit_cols = np.arange(len(cols))
        if aliased.any():
            _, r = np.linalg.qr(Xc)
            fit_cols = np.flatnonzero(np.abs(np.diag(r)) > 1e-9 * np.abs(np.diag(r)).max())
        b, _, _, _ = _irls(y[keep], Xc[:, fit_cols], off[keep], family, link, theta,
                           start=beta[cols[fit_cols]])
        rep = np.full(len(cols), np.nan)
        rep[fit_cols] = b
        rep[aliased] = np.nan
        reps[j, cols] = rep
    dev = reps - reps.mean(axis=0)
    return dev.T @ dev * (J - 1) / J
