"""Rate ratios for count outcomes (admissions, crisis contacts, bed days) per person-time.

Poisson and negative binomial (NB2) log-linear models with a ``log(person_time)`` offset,
matched to R's ``glm(count ~ ..., family = poisson, offset = log(t))`` and
``MASS::glm.nb``, with optional cluster-robust (sandwich) standard errors matched to
``sandwich::vcovCL``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import optimize, sparse, special, stats

from pipeline.stats._eff_design import check_columns, check_conf_level, sparse_design, sparse_rank
from pipeline.stats._result import NotEstimable, Result

_FAMILIES = ("poisson", "negbin")
_CLUSTER_TYPES = ("HC0", "HC1", "jackknife")


class RateRatioResult(Result):
    """Fitted log-linear rate model (see :func:`rate_ratio`).

    Attributes
    ----------
    summary : pandas.DataFrame
        Indexed by term: ``coef, se, rr, rr_lower, rr_upper, z, p``.
    vcov : pandas.DataFrame
        Variance-covariance matrix of the coefficients used for ``se`` (model-based, or
        cluster-robust if ``cluster`` was given).
    theta, se_theta : float
        Negative binomial shape (``var = mu + mu^2 / theta``) and its standard error;
        ``nan`` for Poisson. statsmodels' ``alpha`` is ``1 / theta``.
    loglik : float
        Log-likelihood at the estimates.
    n, n_clusters : int
        Rows used; clusters (``None`` without ``cluster``).
    """

    title = "Rate ratios"

    @property
    def summary(self) -> pd.DataFrame:
        return self._frame


# ----------------------------------------------------------------------------- theta


def _distinct(y):
    """Distinct counts and how often each occurs: the digamma and trigamma terms of the
    theta score depend on ``y`` alone, so they are summed over a few distinct counts
    instead of every row (a million rows hold a dozen distinct counts)."""
    return np.unique(y, return_counts=True)


def _digamma_steps(th, v, power=1):
    """``sum_{k < v} 1 / (th + k)**power`` for each distinct count ``v``: the exact
    ``digamma(th + v) - digamma(th)`` (power 1) and ``trigamma(th) - trigamma(th + v)``
    (power 2) for integer ``v``, without the cancellation of two digammas at large theta."""
    return np.array([np.sum(1.0 / (th + np.arange(k)) ** power) for k in v.astype(np.int64)])


def _theta_score(th, y, mu, yu=None):
    """d log L / d theta at fixed mu, written so that no O(1) terms cancel: at large
    theta (counts barely overdispersed, or underdispersed) every term is O(1 / theta) and
    the score's sign stays right where the textbook form returns rounding noise."""
    v, c = _distinct(y) if yu is None else yu
    return (np.sum(c * _digamma_steps(th, v))
            + np.sum((mu - y) / (mu + th) - np.log1p(mu / th)))


def _theta_info(th, y, mu, yu=None):
    """Minus the derivative of :func:`_theta_score` in theta (same stable form)."""
    v, c = _distinct(y) if yu is None else yu
    return (np.sum(c * _digamma_steps(th, v, 2))
            + np.sum((mu - y) / (mu + th) ** 2 - mu / (th * (th + mu))))


def _theta_ml(y, mu, start=None, eps=1e-15, limit=200, yu=None):
    """ML estimate of theta given mu by Newton-Raphson, as ``MASS::theta.ml``."""
    yu = _distinct(y) if yu is None else yu
    t0 = len(y) / np.sum((y / mu - 1) ** 2) if start is None else start
    for _ in range(limit):
        t0 = abs(t0)
        delta = _theta_score(t0, y, mu, yu) / _theta_info(t0, y, mu, yu)
        t0 = t0 + delta
        if abs(delta) <= eps * max(1.0, abs(t0)):
            break
    if t0 < 0:
        t0 = 0.0
    return float(t0)


# ----------------------------------------------------------------------------- fit


class _Fit:
    """A log-link GLM fit: ``params``, ``fittedvalues`` (mu), ``llf``, ``converged``, ``iterations``."""

    def __init__(self, params, fittedvalues, llf, converged, iterations):
        self.params, self.fittedvalues, self.llf = params, fittedvalues, llf
        self.converged, self.iterations = converged, iterations


def _loglik(y, mu, theta):
    if theta is None:  # Poisson
        return float(np.sum(special.xlogy(y, mu) - mu - special.gammaln(y + 1)))
    return float(np.sum(special.gammaln(y + theta) - special.gammaln(theta) - special.gammaln(y + 1)
                        + theta * np.log(theta / (theta + mu)) + special.xlogy(y, mu / (theta + mu))))


def _deviance(y, mu, theta):
    if theta is None:
        return float(2 * np.sum(special.xlogy(y, y / mu) - (y - mu)))
    return float(2 * np.sum(special.xlogy(y, y / mu) - (y + theta) * np.log((y + theta) / (mu + theta))))


def _xtwx(X, w):
    """``X' diag(w) X`` as a dense p x p array, from the sparse ``X``."""
    return (X.T.multiply(w).tocsr() @ X).toarray()


#: longest Newton step of any log-linear coefficient (a factor e^10 on a rate)
MAX_STEP = 10.0


def _mu(eta):
    """The inverse log link as R's ``make.link("log")`` computes it: ``pmax(exp(eta),
    .Machine$double.eps)``. Where a covariate level has no events its coefficient runs
    off to minus infinity; without the floor ``mu`` underflows to 0 and the Newton
    weights to 0 / 0."""
    return np.maximum(np.exp(eta), np.finfo(float).eps)


def _solve(A, b, beta=None):
    """``A^-1 b``; for a numerically singular ``A`` (a covariate level without events: its
    rows' weights are ~0) the least-squares step from ``beta``, which leaves the flat
    direction where it is."""
    try:
        return np.linalg.solve(A, b)
    except np.linalg.LinAlgError:
        if beta is None:
            return np.linalg.lstsq(A, b, rcond=None)[0]
        return beta + np.linalg.lstsq(A, b - A @ beta, rcond=None)[0]


#: a direction of the information under this share of the largest, on columns scaled to
#: unit unweighted norm (``_inverse``'s ``colsq``), has working weights about that far below
#: the others': fitted probabilities or rates numerically 0 or 1, a covariate level without
#: events (seen at 1e-12 to 4e-18; an uncentred covariate such as a calendar year is at
#: about 1e-7 on this scale, and would be on the unscaled one)
FLAT_RELATIVE = 1e-10


def _inverse(A, colsq=None) -> tuple[np.ndarray, np.ndarray]:
    """``A^-1`` and which coefficients have no finite variance: those loading on the
    directions where ``A`` is numerically singular (the inverse is then taken on the
    others; their variances are unaffected).

    Singular: an eigenvalue under ``p eps`` of the largest; or, given ``colsq`` (each
    column's unweighted sum of squares, for an information ``X' diag(w) X``), under
    :data:`FLAT_RELATIVE` of the largest once the columns are scaled to unit norm. Decided
    on the eigenvalues, not on whether ``inv`` succeeds: a logistic model's level without
    events stops its IRLS with fitted probabilities of 1e-13 or less there, which ``inv``
    inverts without complaint into entries of 1e6 to 1e12, and a sandwich built on them
    was rounding noise in that term (a robust SE of 0.76 for a coefficient of -27.7) and
    off by up to 1.6 % in the others (two algebraically equal forms of one
    Kauermann-Carroll variance disagreed by that much)."""
    s = np.ones(len(A))
    if colsq is not None:
        colsq = np.asarray(colsq, float)
        s[colsq > 0] = 1.0 / np.sqrt(colsq[colsq > 0])
    B = A * s[:, None] * s[None, :]
    lam, V = np.linalg.eigh(B)
    tol = FLAT_RELATIVE if colsq is not None else len(A) * np.finfo(float).eps
    keep = lam > lam.max() * tol
    if keep.all():
        try:
            inv = np.linalg.inv(A)
            if np.all(np.isfinite(inv)) and np.all(np.diag(inv) > 0):
                return inv, np.zeros(len(A), bool)
        except np.linalg.LinAlgError:
            pass
    inv = s[:, None] * ((V[:, keep] / lam[keep]) @ V[:, keep].T) * s[None, :]
    flat = np.any(np.abs(V[:, ~keep]) > 1e-8, axis=1)
    return inv, flat


def _glm(y, X, offset, theta=None, start=None, tol=1e-14, maxiter=200, gram=None):
    """Poisson (``theta=None``) or NB2 with known ``theta``, log link, by Newton-Raphson
    on a sparse model matrix.

    Each step solves ``X'WX b = X'Wz`` with the observed-information weights
    ``W = theta mu (theta + y) / (theta + mu)^2`` (``mu`` for Poisson, where they equal the
    expected ones) and ``z = eta - offset + score / W``: the log-likelihood is concave in
    the coefficients, and Newton converges quadratically where Fisher scoring (IRLS with
    expected weights) converges only linearly for NB2. ``X`` is sparse (one stored value
    per categorical term and row), so a step is linear in the rows and the dense n x p
    matrix never exists. statsmodels' GLM, which this replaces and which the tests compare
    it with, solves each step by an SVD of the dense matrix: 11 s and 17 GB per fit at a
    million rows and 51 columns. A step that raises the deviance is halved (as R's
    glm.fit does). Stops when a step changes the deviance by less than ``tol`` relative
    (R's glm.fit criterion, at a far smaller tolerance); ``converged`` is false if
    ``maxiter`` steps did not get there. ``gram``: ``w -> X' diag(w) X`` when the caller
    has it cheaper than the sparse product (a design's factor summed per level).
    """
    gram = gram or (lambda w: _xtwx(X, w))
    if start is None:
        mu = (y + y.mean()) / 2  # statsmodels' starting values
        eta = np.log(mu)
    else:
        eta = X @ start + offset
        mu = _mu(eta)
    dev = _deviance(y, mu, theta)
    beta = None if start is None else np.asarray(start, dtype=float)
    converged = False
    for it in range(1, maxiter + 1):
        if theta is None:
            w, score = mu, y - mu
        else:
            w = theta * mu * (theta + y) / (theta + mu) ** 2
            score = (y - mu) * theta / (theta + mu)
        z = eta - offset + score / w
        new = _solve(gram(w), X.T @ (w * z), beta)
        if beta is not None:
            # a coefficient whose level has no events has its maximum at minus infinity
            # and a flat likelihood there: Newton's step along that direction is rounding
            # noise and can overflow exp; no step moves a log rate by more than MAX_STEP
            longest = np.max(np.abs(new - beta))
            if not longest <= MAX_STEP:
                new = beta + (new - beta) * (MAX_STEP / longest if np.isfinite(longest) else 0.0)
        eta_new = X @ new + offset
        dev_new = _deviance(y, _mu(eta_new), theta)
        halvings = 0
        while beta is not None and not dev_new <= dev * (1 + 1e-15) and halvings < 30:
            new = (new + beta) / 2
            eta_new = X @ new + offset
            dev_new = _deviance(y, _mu(eta_new), theta)
            halvings += 1
        beta_old, beta, eta, mu = beta, new, eta_new, _mu(eta_new)
        dev_old, dev = dev, dev_new
        # quadratic convergence: once a step moves the deviance by less than tol, the
        # coefficients it produced are at the precision the sums allow (about 1e-10 at a
        # million rows, where further steps only move them within that noise)
        converged = beta_old is not None and abs(dev - dev_old) <= tol * (abs(dev) + 0.1)
        if converged:
            break
    return _Fit(beta, mu, _loglik(y, mu, theta), converged, it)


def _jackknife_vcov(y, X, offset, family, codes, n_clusters, beta, theta) -> np.ndarray:
    """Delete-one-cluster jackknife covariance; a column left without rows in a replicate
    (its level only in that cluster) makes its term's row and column NaN. Each replicate
    starts from the full fit's ``beta`` and, for the negative binomial, holds theta at the
    full fit's estimate: the coefficients and theta are orthogonal (their information is
    block diagonal), which is also why glm.nb's standard errors condition on theta; a
    replicate is then one fit of a few Newton steps instead of a search over theta."""
    X = X.tocsr()
    reps = np.full((n_clusters, X.shape[1]), np.nan)
    for g in range(n_clusters):
        keep = codes != g
        Xg = X[keep]
        cols = np.flatnonzero(Xg.getnnz(axis=0) > 0)
        Xg = Xg[:, cols]
        b = np.asarray(_glm(y[keep], Xg, offset[keep], theta=theta if family == "negbin" else None,
                            start=beta[cols]).params)
        # a level left only in the reference makes the intercept and that factor's other
        # terms collinear: those are not estimable in this replicate
        b[_inverse(_xtwx(Xg, np.ones(Xg.shape[0])))[1]] = np.nan
        reps[g, cols] = b
    dev = reps - reps.mean(axis=0)
    return dev.T @ dev * (n_clusters - 1) / n_clusters


def _negbin_theta(y, X, offset, poisson_fit, theta_max=1e7, gram=None):
    """Joint ML of (beta, theta): root of the profile score of theta.

    By the envelope theorem the derivative of the profile log-likelihood
    ``max_beta l(beta, theta)`` is the partial score of theta at ``beta(theta)``, so the
    fixed point of glm.nb's alternation is the root of ``g(theta) = score(theta, mu(theta))``,
    found by Brent's method on log(theta) to machine precision.
    """
    yu = _distinct(y)
    guess = _theta_ml(y, np.asarray(poisson_fit.fittedvalues), limit=50, yu=yu)
    t0 = np.log(min(max(guess, 1e-3), theta_max) if np.isfinite(guess) else 1.0)
    # every fit starts from the same coefficients (the fit at the first guess), so g is a
    # function of theta alone: Brent's method evaluates the bracket's ends again, and a
    # start carried over from the previous evaluation moved g there by rounding, enough to
    # flip its sign next to a root (a covariate level without events, whose coefficient
    # wanders along a flat likelihood, made it raise)
    start = np.asarray(_glm(y, X, offset, theta=np.exp(t0), start=poisson_fit.params,
                            gram=gram).params)

    # fit_at is a function of theta alone, so each theta is fitted once: Brent's method
    # evaluates the bracket's ends again, and the root it returns is a theta it evaluated
    # (two fits of about eleven saved, and the final one; the same numbers). The last few
    # fits are kept (a fit holds its n fitted values), every score.
    fits: dict[float, _Fit] = {}
    scores: dict[float, float] = {}

    def fit_at(theta):
        theta = float(theta)
        if theta not in fits:
            fits[theta] = _glm(y, X, offset, theta=theta, start=start, gram=gram)
            while len(fits) > 3:
                del fits[next(iter(fits))]   # the oldest
        return fits[theta]

    def g(log_theta):
        theta = float(np.exp(log_theta))
        if theta not in scores:
            scores[theta] = _theta_score(theta, y, fit_at(theta).fittedvalues, yu)
        return scores[theta]

    lo = hi = t0
    g_lo = g_hi = g(t0)
    while g_lo < 0 and lo > np.log(1e-8):
        lo -= 1.0
        g_lo = g(lo)
    if g_lo < 0:
        raise NotEstimable("the negative binomial theta has no maximum above 1e-8 (the "
                           "likelihood rises towards theta = 0): too few counts to estimate it")
    while g_hi > 0:
        if hi >= np.log(theta_max):
            theta = float(np.exp(hi))
            return theta, fit_at(theta), False
        hi = min(hi + 1.0, np.log(theta_max))
        g_hi = g(hi)
    if g_lo == 0:
        root = lo
    elif g_hi == 0:
        root = hi
    else:
        root = optimize.brentq(g, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500)
    theta = float(np.exp(root))
    return theta, fit_at(theta), True


def rate_ratio(
    df: pd.DataFrame,
    count: str,
    person_time: str | None,
    covariates: Sequence[str],
    family: str = "poisson",
    cluster: str | None = None,
    conf_level: float = 0.95,
    cluster_type: str = "HC0",
) -> RateRatioResult:
    """Rate ratios from a Poisson or negative binomial log-linear model.

    Fits ``log E[count] = log(person_time) + X beta`` by maximum likelihood and reports
    ``exp(beta)`` with Wald confidence intervals.

    Parameters
    ----------
    df : pandas.DataFrame, shape = (n_samples, n_columns)
        One row per person (or per person-period).
    count : str
        Column of non-negative integer counts.
    person_time : str or None
        Column of exposure time (> 0), entering as the offset ``log(person_time)``;
        ``None`` for no offset.
    covariates : sequence of str
        Covariate columns. Numeric columns enter linearly; categorical (category,
        object, string, bool) columns by treatment contrasts with the first level
        (categorical order, else sorted) as reference; terms are named as R names them
        (``"(Intercept)"``, ``"armopen dialogue"``).
    family : {"poisson", "negbin"}
        ``"negbin"`` is NB2 (``var = mu + mu^2 / theta``) with theta estimated by
        maximum likelihood jointly with beta, alternating as ``MASS::glm.nb`` does until
        both have converged to machine precision. Coefficient standard errors condition on
        theta (expected information at the final theta, dispersion 1), as glm.nb's do.
    cluster : str, optional
        Column identifying clusters (e.g. site). If given, standard errors are
        cluster-robust: ``G/(G-1) * B M B`` with ``B`` the model-based covariance and
        ``M`` the sum over clusters of outer products of summed score contributions,
        which is ``sandwich::vcovCL(fit, cluster = ~g, type = "HC0")`` (the default type
        for a glm). ``cluster_type="HC1"`` multiplies further by ``(n-1)/(n-p)``.
    conf_level : float
        Level of the Wald confidence intervals.
    cluster_type : {"HC0", "HC1", "jackknife"}
        Small-sample factor of the cluster-robust variance (see ``cluster``), or
        ``"jackknife"``: the delete-one-cluster jackknife ``(G - 1) / G * sum_g (b_g -
        b_mean)(b_g - b_mean)'``, ``b_g`` the model refitted without cluster g (CV3; the
        negative binomial's theta held at its estimate, to which the coefficients are
        orthogonal), with t on G - 1 df for intervals and p-values. The sandwich is
        biased small when there are few clusters per level of a fixed effect (e.g. two
        per site); the jackknife is not. A term that some refit cannot estimate (its
        level only in the left-out cluster) gets no standard error.

    Returns
    -------
    RateRatioResult
        ``.summary`` indexed by term with ``coef, se, rr, rr_lower, rr_upper, z, p``;
        ``.theta``, ``.se_theta`` (negative binomial), ``.vcov``, ``.loglik``, ``.notes``.

    Notes
    -----
    Rows missing the count, person-time, a covariate or the cluster are dropped, as are
    rows with person-time <= 0; ``notes`` says how many and why. The standard error of
    theta is ``1 / sqrt(I(theta))`` with ``I`` the observed information of theta at the
    converged (theta, mu); ``MASS::glm.nb`` reports it at its next-to-last Newton iterate,
    which can differ in the 6th significant digit.

    References
    ----------
    McCullagh P, Nelder JA. Generalized Linear Models, 2nd ed. Chapman & Hall, 1989.
    Venables WN, Ripley BD. Modern Applied Statistics with S, 4th ed. Springer, 2002
    (section 7.4, ``glm.nb``). Lawless JF. Negative binomial and mixed Poisson regression.
    Can J Stat 1987;15:209-25. Zeileis A, Koell S, Graham N. Various versatile variances:
    an object-oriented implementation of clustered covariances in R. J Stat Softw
    2020;95(1). Cameron AC, Miller DL. A practitioner's guide to cluster-robust
    inference. J Hum Resour 2015;50:317-72.
    """
    if family not in _FAMILIES:
        raise ValueError(f"family must be one of {_FAMILIES}, got {family!r}")
    if cluster_type not in _CLUSTER_TYPES:
        raise ValueError(f"cluster_type must be one of {_CLUSTER_TYPES}, got {cluster_type!r}")
    check_conf_level(conf_level)
    covariates = list(covariates)
    used = [count] + ([person_time] if person_time else []) + covariates
    used += [cluster] if cluster else []
    used = list(dict.fromkeys(used))  # the cluster may also be a covariate (delete-one-site jackknife)
    check_columns(df, used)
    notes: list[str] = []

    d = df[used]
    miss = d.isna().any(axis=1)
    if miss.any():
        cols = [c for c in used if d[c].isna().any()]
        notes.append(f"{int(miss.sum())} row(s) dropped for missing values in {cols}.")
    d = d.loc[~miss]
    if person_time:
        nonpos = d[person_time] <= 0
        if nonpos.any():
            notes.append(f"{int(nonpos.sum())} row(s) dropped for {person_time} <= 0.")
            d = d.loc[~nonpos]
    if d.empty:
        raise NotEstimable("no rows left after dropping missing values")
    y = d[count].to_numpy(float)
    if np.any(y < 0) or np.any(y != np.round(y)):
        raise ValueError(f"column {count!r} must hold non-negative integer counts")
    if not y.any():
        raise NotEstimable(f"every {count} is 0: the data hold no rate ratio")
    terms, X = sparse_design(d, covariates)
    n, p = X.shape
    if sparse_rank(X) < p:
        raise NotEstimable("the covariates are collinear (model matrix not of full column rank)")
    offset = np.log(d[person_time].to_numpy(float)) if person_time else np.zeros(n)

    fit = _glm(y, X, offset)
    theta = se_theta = np.nan
    if family == "negbin":
        theta, fit, ok = _negbin_theta(y, X, offset, fit)
        if not ok:
            notes.append(
                f"theta has no finite maximum (score still positive at theta = {theta:.3g}): "
                "the counts show no overdispersion; consider family='poisson'."
            )
        info = _theta_info(theta, y, fit.fittedvalues)
        # no finite maximum: the information is not positive and theta has no standard error
        se_theta = 1.0 / np.sqrt(info) if ok and info > 0 else np.nan

    if not fit.converged:
        notes.append("the model fit did not converge in 200 iterations: estimates unreliable.")
    beta = np.asarray(fit.params)
    mu = np.asarray(fit.fittedvalues)
    # model-based covariance: inverse expected information with dispersion 1
    var_mu = mu if family == "poisson" else mu + mu**2 / theta
    w = mu**2 / var_mu
    bread, flat_terms = _inverse(_xtwx(X, w), np.asarray(X.multiply(X).sum(axis=0)).ravel())
    vcov = bread
    n_clusters = None
    dist = stats.norm
    if cluster:
        g = d[cluster].to_numpy()
        codes, uniq = pd.factorize(g)
        n_clusters = len(uniq)
        if n_clusters < 2:
            raise NotEstimable("cluster-robust standard errors need at least two clusters")
        # summed score contributions per cluster: (cluster indicator)' (X * residual)
        if cluster_type == "jackknife":
            vcov = _jackknife_vcov(y, X, offset, family, codes, n_clusters, beta, theta)
            dist = stats.t(n_clusters - 1)
            notes.append(f"Delete-one-cluster jackknife standard errors over {n_clusters} "
                         f"clusters of {cluster!r}; t reference distribution on "
                         f"{n_clusters - 1} df.")
        else:
            member = sparse.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(n_clusters, n))
            summed = (member @ X.multiply(((y - mu) * mu / var_mu)[:, None]).tocsr()).toarray()
            meat = summed.T @ summed
            adj = n_clusters / (n_clusters - 1)
            if cluster_type == "HC1":
                adj *= (n - 1) / (n - p)
            vcov = adj * bread @ meat @ bread
            notes.append(
                f"Cluster-robust standard errors ({cluster_type}, G/(G-1) adjusted) over "
                f"{n_clusters} clusters of {cluster!r}"
                + ("; with fewer than 30 clusters they tend to be too small."
                   if n_clusters < 30 else ".")
            )
    with np.errstate(invalid="ignore"):
        se = np.sqrt(np.diag(vcov))
    flat = flat_terms | ~np.isfinite(se)
    if flat.any():
        se = np.where(flat, np.nan, se)
        notes.append(f"No finite estimate for {', '.join(np.asarray(terms)[flat])}: a covariate "
                     "level without events puts its maximum at infinity (R's glm reports a "
                     "huge standard error); the other coefficients are unaffected.")
    zcrit = dist.ppf(1 - (1 - conf_level) / 2)
    z = beta / se
    with np.errstate(over="ignore"):  # a level without events: exp(huge) is inf, as in R
        summary = pd.DataFrame(
            {
                "coef": beta, "se": se, "rr": np.exp(beta),
                "rr_lower": np.exp(beta - zcrit * se), "rr_upper": np.exp(beta + zcrit * se),
                "z": z, "p": 2 * dist.sf(np.abs(z)),
            },
            index=pd.Index(terms, name="term"),
        )
    res = RateRatioResult(summary, notes)
    res.family, res.conf_level, res.n, res.n_clusters = family, conf_level, n, n_clusters
    res.theta, res.se_theta = float(theta), float(se_theta)
    res.vcov = pd.DataFrame(vcov, index=terms, columns=terms)
    res.loglik = float(fit.llf)
    res.title = f"Rate ratios ({'Poisson' if family == 'poisson' else 'negative binomial'}, n={n})"
    return res
