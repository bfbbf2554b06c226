"""Fixed- and random-effects meta-analysis and meta-regression, matched to ``metafor::rma``.

Used to pool site-level estimates (log rate ratios, log odds ratios, risk differences, ...)
over the sites of a multi-site Open Dialogue evaluation. Inputs are per-study (per-site)
estimates ``yi`` and their sampling variances ``vi``.

Estimators of the between-study variance tau^2:

- ``"REML"``: restricted maximum likelihood (Viechtbauer 2005), solved to machine
  precision (root of the REML score, bracketed; tau^2 truncated at 0).
- ``"DL"``: DerSimonian and Laird (1986) method of moments (generalised to moderators).
- ``"PM"``: Paule and Mandel (1982): the generalised Q statistic equals its degrees of
  freedom.
- ``"FE"``: fixed (common) effect, tau^2 = 0.

``test="knha"`` applies the Knapp and Hartung (2003) adjustment (Hartung-Knapp-Sidik-Jonkman):
the variance of the coefficients is multiplied by ``s2 = sum(w (y - X b)^2) / (k - p)``
(not truncated at 1, as in ``metafor``'s ``test="knha"``) and inference uses the t
distribution with ``k - p`` degrees of freedom, also for the prediction interval.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import optimize, stats

from pipeline.stats._eff_design import check_conf_level, design_matrix
from pipeline.stats._result import NotEstimable, Result

_METHODS = ("REML", "DL", "PM", "FE")
_TESTS = ("z", "knha")
_EPS = np.finfo(float).eps


# ----------------------------------------------------------------------------- helpers


def _p_matrix(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """P = W - W X (X' W X)^-1 X' W, the residual-forming matrix of weighted least squares."""
    W = np.diag(w)
    WX = X * w[:, None]
    return W - WX @ np.linalg.solve(X.T @ WX, WX.T)


def _root(f, lower: float = 0.0) -> float:
    """Root of a function positive at ``lower`` and eventually negative (bracket by doubling)."""
    upper = 1.0
    while f(upper) > 0:
        upper *= 2.0
        if upper > 1e12:
            raise RuntimeError("could not bracket the root for tau^2")
    return optimize.brentq(f, lower, upper, xtol=1e-300, rtol=4 * _EPS, maxiter=10_000)


def _tau2(y: np.ndarray, v: np.ndarray, X: np.ndarray, method: str) -> float:
    k, p = X.shape
    if method == "FE" or k <= p:
        return 0.0
    if method == "DL":
        P = _p_matrix(X, 1.0 / v)
        qe = float(y @ P @ y)
        return max(0.0, (qe - (k - p)) / np.trace(P))
    if method == "PM":

        def q_minus_df(t2: float) -> float:
            P = _p_matrix(X, 1.0 / (v + t2))
            return float(y @ P @ y) - (k - p)

        return 0.0 if q_minus_df(0.0) <= 0 else _root(q_minus_df)
    if method == "REML":

        def score(t2: float) -> float:
            # d/d tau^2 of the restricted log-likelihood, times 2: y'PPy - tr(P)
            P = _p_matrix(X, 1.0 / (v + t2))
            Py = P @ y
            return float(Py @ Py) - np.trace(P)

        return 0.0 if score(0.0) <= 0 else _root(score)
    raise ValueError(f"method must be one of {_METHODS}, got {method!r}")


def tau2_qprofile(y: np.ndarray, v: np.ndarray, conf_level: float = 0.95,
                  ) -> tuple[float, float]:
    """Confidence interval of tau^2 by the Q-profile method (Viechtbauer 2007), as
    ``metafor::confint(rma(...))``: the values of tau^2 at which the generalised Q statistic
    ``sum((y - mu(tau2))^2 / (v + tau2))`` (decreasing in tau^2) equals the upper and lower
    ``(1 - conf_level) / 2`` quantiles of chi-square on ``k - 1`` df. A bound below 0 is
    set to 0 (both are 0 when even tau^2 = 0 gives a Q below the lower quantile).

    References
    ----------
    Viechtbauer W. Confidence intervals for the amount of heterogeneity in meta-analysis.
    Stat Med 2007;26:37-52.
    """
    k = y.size
    if k < 2:
        return (np.nan, np.nan)
    alpha = 1 - conf_level

    def q_gen(t2: float) -> float:
        w = 1.0 / (v + t2)
        mu = float(np.sum(w * y) / np.sum(w))
        return float(np.sum(w * (y - mu) ** 2))

    def bound(target: float) -> float:
        if q_gen(0.0) <= target:
            return 0.0
        return _root(lambda t2: q_gen(t2) - target)

    return (bound(stats.chi2.ppf(1 - alpha / 2, k - 1)), bound(stats.chi2.ppf(alpha / 2, k - 1)))


def _as_arrays(yi, vi) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(yi, dtype=float).ravel()
    v = np.asarray(vi, dtype=float).ravel()
    if y.shape != v.shape:
        raise ValueError(f"yi and vi must have the same length, got {y.size} and {v.size}")
    return y, v


def _fit(y, v, X, method, test, conf_level):
    """Core weighted least squares fit given tau^2; returns a dict of everything."""
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if test not in _TESTS:
        raise ValueError(f"test must be one of {_TESTS}, got {test!r}")
    check_conf_level(conf_level)
    k, p = X.shape
    if np.linalg.matrix_rank(X) < p:
        raise NotEstimable("the moderators are collinear (model matrix not of full column rank)")
    if test == "knha" and k - p < 1:
        raise NotEstimable(f"test='knha' needs k - p >= 1 degrees of freedom; k={k}, p={p}")

    tau2 = _tau2(y, v, X, method)
    w = 1.0 / (v + tau2)
    WX = X * w[:, None]
    vb = np.linalg.inv(X.T @ WX)
    b = vb @ (WX.T @ y)
    df = k - p
    if test == "knha":
        rss = float(np.sum(w * (y - X @ b) ** 2))
        s2w = 0.0 if rss <= _EPS else rss / df
        vb = s2w * vb
        crit = stats.t.ppf(1 - (1 - conf_level) / 2, df)
        dist = stats.t(df)
    else:
        crit = stats.norm.ppf(1 - (1 - conf_level) / 2)
        dist = stats.norm
    se = np.sqrt(np.diag(vb))
    with np.errstate(divide="ignore", invalid="ignore"):
        zval = b / se
    pval = 2 * dist.sf(np.abs(zval))

    # heterogeneity statistics from the fixed-effect fit
    w_fe = 1.0 / v
    P_fe = _p_matrix(X, w_fe)
    qe = float(y @ P_fe @ y) if df > 0 else 0.0
    qe_p = float(stats.chi2.sf(qe, df)) if df > 0 else np.nan
    if df <= 0:
        i2, h2 = 0.0, 1.0
    elif method == "FE":
        i2 = max(0.0, 100 * (qe - df) / qe) if qe > 0 else 0.0
        h2 = qe / df
    else:
        vt = df / np.trace(P_fe)
        i2 = 100 * tau2 / (vt + tau2)
        h2 = tau2 / vt + 1
    return dict(
        k=k, p=p, df=df, tau2=tau2, w=w, b=b, vb=vb, se=se, zval=zval, pval=pval,
        crit=crit, dist=dist, qe=qe, qe_p=qe_p, i2=i2, h2=h2,
    )


# ----------------------------------------------------------------------------- results


class MetaAnalysisResult(Result):
    """Pooled estimate of a meta-analysis (see :func:`meta_analysis`).

    Attributes
    ----------
    estimate, se : float
        Pooled estimate and its standard error (Knapp-Hartung scaled if ``test="knha"``).
    ci, pi : tuple of float
        Confidence interval of the pooled estimate; prediction interval for the true
        effect in a new study, ``estimate +/- crit * sqrt(se^2 + tau2)``.
    pi_df : float
        Degrees of freedom of the prediction interval's t distribution (``inf``: normal).
    z, p : float
        Test statistic (z, or t on ``k - 1`` df for knha) and two-sided p-value.
    tau2, i2, h2 : float
        Between-study variance, I^2 (percent) and H^2.
    tau2_ci, i2_ci, h2_ci : tuple of float
        Their confidence intervals by the Q-profile method (:func:`tau2_qprofile`), as
        ``metafor::confint``; I^2 and H^2 from the tau^2 bounds.
    q, q_df, q_p : float
        Cochran's Q (fixed-effect weights), its degrees of freedom and p-value.
    k : int
        Number of studies.
    table : pandas.DataFrame
        One row per study: ``label, yi, vi, se, ci_lower, ci_upper, weight`` (percent).
    summary : pandas.DataFrame
        One row with the pooled quantities.
    """

    title = "Meta-analysis"

    @property
    def table(self) -> pd.DataFrame:
        return self._frame

    def _main_frame(self) -> pd.DataFrame:
        return pd.concat([self.table, self.summary.rename(columns={"estimate": "yi"})[
            ["label", "yi", "se", "ci_lower", "ci_upper"]].assign(weight=100.0)],
            ignore_index=True)

    @property
    def summary(self) -> pd.DataFrame:
        return pd.DataFrame(
            [{
                "label": f"Pooled ({self.method})",
                "estimate": self.estimate, "se": self.se, "ci_lower": self.ci[0],
                "ci_upper": self.ci[1], "pi_lower": self.pi[0], "pi_upper": self.pi[1],
                "z": self.z, "p": self.p, "tau2": self.tau2, "tau2_lower": self.tau2_ci[0],
                "tau2_upper": self.tau2_ci[1], "i2": self.i2, "h2": self.h2,
                "q": self.q, "q_df": self.q_df, "q_p": self.q_p, "k": self.k,
            }]
        )


class MetaRegressionResult(Result):
    """Mixed-effects meta-regression (see :func:`meta_regression`).

    Attributes
    ----------
    summary : pandas.DataFrame
        Indexed by term: ``coef, se, z, p, ci_lower, ci_upper`` (``z`` is a t statistic
        with ``k - p`` df when ``test="knha"``).
    tau2 : float
        Residual between-study variance.
    qm, qm_df, qm_p : float
        Omnibus test of the moderators (chi-square on ``m`` df; F on ``(m, k - p)`` df,
        ``qm`` divided by ``m``, when ``test="knha"``).
    qe, qe_df, qe_p : float
        Test for residual heterogeneity.
    r2 : float
        Percent of tau^2 accounted for by the moderators, ``max(0, 100 (tau2_RE - tau2) /
        tau2_RE)`` with ``tau2_RE`` from the model without moderators (same method).
    i2, h2 : float
        Residual I^2 and H^2.
    """

    title = "Meta-regression"

    @property
    def summary(self) -> pd.DataFrame:
        return self._frame


# ----------------------------------------------------------------------------- public


def meta_analysis(
    yi: Sequence[float] | np.ndarray,
    vi: Sequence[float] | np.ndarray,
    method: str = "REML",
    test: str = "z",
    conf_level: float = 0.95,
    labels: Sequence[str] | None = None,
    prediction: str = "metafor",
) -> MetaAnalysisResult:
    """Pool study estimates by inverse-variance weighting, as ``metafor::rma(yi, vi)``.

    Parameters
    ----------
    yi : array-like, shape = (k,)
        Study estimates on an additive scale (e.g. log rate ratio).
    vi : array-like, shape = (k,)
        Their sampling variances (squared standard errors), > 0.
    method : {"REML", "DL", "PM", "FE"}
        Estimator of the between-study variance tau^2 (``"FE"``: fixed effect, tau^2 = 0).
    test : {"z", "knha"}
        Normal-theory inference, or the Knapp-Hartung adjustment with t on ``k - 1`` df.
    conf_level : float
        Level of the confidence and prediction intervals.
    labels : sequence of str, shape = (k,), optional
        Study names (default ``"1" .. "k"``).
    prediction : {"metafor", "higgins"}
        The prediction interval ``estimate +/- crit * sqrt(se^2 + tau2)``: ``"metafor"``
        takes ``crit`` from the test's distribution (``predict.rma`` in metafor 3.8);
        ``"higgins"`` from t on ``k - 2`` df (Higgins, Thompson and Spiegelhalter 2009),
        which allows for the uncertainty in tau^2 (not given for fewer than 3 studies).

    Returns
    -------
    MetaAnalysisResult
        ``.estimate, .se, .ci, .pi, .tau2, .i2, .h2, .q, .q_p`` and the per-study
        ``.table`` with weights in percent.

    Notes
    -----
    Studies with a missing estimate or variance, or a variance <= 0, are dropped and
    named in ``notes``. With one study, tau^2 is 0 and heterogeneity is not estimable.
    REML and PM are solved to machine precision (``metafor``'s default convergence
    criteria are looser; with ``control=list(threshold=1e-12, tol=1e-14)`` the two
    agree to better than 1e-8 relative).

    References
    ----------
    DerSimonian R, Laird N. Meta-analysis in clinical trials. Control Clin Trials
    1986;7:177-88. Paule RC, Mandel J. Consensus values and weighting factors. J Res Natl
    Bur Stand 1982;87:377-85. Viechtbauer W. Bias and efficiency of meta-analytic variance
    estimators in the random-effects model. J Educ Behav Stat 2005;30:261-93. Knapp G,
    Hartung J. Improved tests for a random effects meta-regression with a single
    covariate. Stat Med 2003;22:2693-710. Higgins JPT, Thompson SG. Quantifying
    heterogeneity in a meta-analysis. Stat Med 2002;21:1539-58. Higgins JPT, Thompson SG,
    Spiegelhalter DJ. A re-evaluation of random-effects meta-analysis. JRSS A 2009;172:
    137-159. Viechtbauer W. Confidence intervals for the amount of heterogeneity in
    meta-analysis. Stat Med 2007;26:37-52. Riley RD, Higgins JPT,
    Deeks JJ. Interpretation of random effects meta-analyses. BMJ 2011;342:d549.
    Viechtbauer W. Conducting meta-analyses in R with the metafor package. J Stat Softw
    2010;36(3).
    """
    y, v = _as_arrays(yi, vi)
    labs = [str(i + 1) for i in range(y.size)] if labels is None else [str(x) for x in labels]
    if len(labs) != y.size:
        raise ValueError(f"labels has {len(labs)} entries for {y.size} studies")
    notes: list[str] = []
    bad = ~np.isfinite(y) | ~np.isfinite(v) | (v <= 0)
    if bad.any():
        dropped = [labs[i] for i in np.flatnonzero(bad)]
        notes.append(
            f"{bad.sum()} stud{'y' if bad.sum() == 1 else 'ies'} dropped for a missing "
            f"estimate or a missing or non-positive variance: {', '.join(dropped)}."
        )
    y, v = y[~bad], v[~bad]
    labs = [lab for lab, b in zip(labs, bad, strict=True) if not b]
    if y.size == 0:
        raise NotEstimable("no study has a finite estimate and a positive variance")
    X = np.ones((y.size, 1))
    f = _fit(y, v, X, method, test, conf_level)
    if f["k"] == 1:
        notes.append("Only one study: tau^2 set to 0 and heterogeneity not estimable.")
    elif method != "FE" and f["tau2"] == 0:
        notes.append(f"tau^2 estimated as 0 ({method}, truncated at the boundary).")

    if prediction not in ("metafor", "higgins"):
        raise ValueError(f"prediction must be 'metafor' or 'higgins', got {prediction!r}")
    est, se = float(f["b"][0]), float(f["se"][0])
    crit = f["crit"]
    pi_df = (np.inf if test == "z" else float(f["df"])) if prediction == "metafor" else \
        float(f["k"] - 2)
    if prediction == "higgins":
        if f["k"] < 3:
            notes.append("Fewer than 3 studies: no prediction interval on t(k - 2).")
            pi_half = np.nan
        else:
            pi_half = stats.t.ppf(1 - (1 - conf_level) / 2, pi_df) * np.sqrt(se**2 + f["tau2"])
    else:
        pi_half = crit * np.sqrt(se**2 + f["tau2"])
    zcrit = stats.norm.ppf(1 - (1 - conf_level) / 2)
    weight = 100 * f["w"] / f["w"].sum()
    table = pd.DataFrame(
        {
            "label": labs, "yi": y, "vi": v, "se": np.sqrt(v),
            "ci_lower": y - zcrit * np.sqrt(v), "ci_upper": y + zcrit * np.sqrt(v),
            "weight": weight,
        }
    )
    res = MetaAnalysisResult(table, notes)
    res.method, res.test, res.conf_level, res.k = method, test, conf_level, f["k"]
    res.estimate, res.se = est, se
    res.ci = (est - crit * se, est + crit * se)
    res.pi = (est - pi_half, est + pi_half)
    res.z, res.p = float(f["zval"][0]), float(f["pval"][0])
    res.tau2, res.i2, res.h2 = f["tau2"], f["i2"], f["h2"]
    res.pi_df = pi_df
    res.tau2_ci = tau2_qprofile(y, v, conf_level)
    vt = (f["k"] - 1) / np.trace(_p_matrix(X, 1.0 / v)) if f["k"] > 1 else np.nan
    res.i2_ci = tuple(100 * t / (vt + t) for t in res.tau2_ci)
    res.h2_ci = tuple(t / vt + 1 for t in res.tau2_ci)
    res.q, res.q_df, res.q_p = f["qe"], f["df"], f["qe_p"]
    res.title = f"Meta-analysis ({method}, test={test}, k={f['k']})"
    return res


def meta_regression(
    yi: Sequence[float] | np.ndarray,
    vi: Sequence[float] | np.ndarray,
    moderators: pd.DataFrame,
    method: str = "REML",
    test: str = "z",
    conf_level: float = 0.95,
) -> MetaRegressionResult:
    """Mixed-effects meta-regression, as ``metafor::rma(yi, vi, mods = ~ ...)``.

    Parameters
    ----------
    yi, vi : array-like, shape = (k,)
        Study estimates and sampling variances.
    moderators : pandas.DataFrame, shape = (k, m_columns)
        One column per moderator, rows aligned with ``yi``. Numeric columns enter
        linearly; categorical (category/object/bool) columns enter with treatment
        contrasts (first level the reference; terms named ``<column><level>`` as in R).
    method : {"REML", "DL", "PM", "FE"}
        Estimator of the residual between-study variance.
    test : {"z", "knha"}
        Normal theory, or Knapp-Hartung with t (coefficients) and F (omnibus) tests.
    conf_level : float
        Level of the coefficient confidence intervals.

    Returns
    -------
    MetaRegressionResult
        ``.summary`` indexed by term (``coef, se, z, p, ci_lower, ci_upper``) and
        ``.tau2, .qm, .qm_p, .qe, .qe_p, .r2, .i2, .h2``.

    Notes
    -----
    Rows with any missing value are dropped (noted). R^2 is computed as in metafor
    (Raudenbush 2009) and is 0 when tau^2 of the model without moderators is 0.

    References
    ----------
    Thompson SG, Higgins JPT. How should meta-regression analyses be undertaken and
    interpreted? Stat Med 2002;21:1559-73. Knapp G, Hartung J. Stat Med
    2003;22:2693-710. Raudenbush SW. Analyzing effect sizes: random-effects models. In:
    The Handbook of Research Synthesis and Meta-Analysis, 2nd ed. 2009. Viechtbauer W.
    J Stat Softw 2010;36(3).
    """
    y, v = _as_arrays(yi, vi)
    mods = pd.DataFrame(moderators).reset_index(drop=True)
    if len(mods) != y.size:
        raise ValueError(f"moderators has {len(mods)} rows for {y.size} studies")
    notes: list[str] = []
    bad = ~np.isfinite(y) | ~np.isfinite(v) | (v <= 0) | mods.isna().any(axis=1).to_numpy()
    if bad.any():
        notes.append(
            f"{bad.sum()} stud{'y' if bad.sum() == 1 else 'ies'} dropped for a missing "
            f"estimate, variance or moderator, or a non-positive variance "
            f"(rows {np.flatnonzero(bad).tolist()})."
        )
    y, v, mods = y[~bad], v[~bad], mods.loc[~bad].reset_index(drop=True)
    Xdf = design_matrix(mods, list(mods.columns))
    X = Xdf.to_numpy(float)
    f = _fit(y, v, X, method, test, conf_level)
    k, p = f["k"], f["p"]
    crit = f["crit"]
    summary = pd.DataFrame(
        {
            "coef": f["b"], "se": f["se"], "z": f["zval"], "p": f["pval"],
            "ci_lower": f["b"] - crit * f["se"], "ci_upper": f["b"] + crit * f["se"],
        },
        index=pd.Index(Xdf.columns, name="term"),
    )
    # omnibus test of all coefficients but the intercept
    btt = slice(1, p)
    m = p - 1
    b, vb = f["b"][btt], f["vb"][btt, btt]
    qm = float(b @ np.linalg.solve(vb, b)) if m > 0 else np.nan
    if test == "knha":
        qm = qm / m
        qm_p = float(stats.f.sf(qm, m, k - p))
    else:
        qm_p = float(stats.chi2.sf(qm, m))
    if method == "FE":
        r2 = np.nan
    else:
        tau2_re = _tau2(y, v, np.ones((k, 1)), method)
        if tau2_re == 0:
            r2 = 0.0
            notes.append("tau^2 without moderators is 0, so R^2 is set to 0.")
        else:
            r2 = max(0.0, 100 * (tau2_re - f["tau2"]) / tau2_re)
    res = MetaRegressionResult(summary, notes)
    res.method, res.test, res.conf_level, res.k = method, test, conf_level, k
    res.tau2, res.qm, res.qm_df, res.qm_p = f["tau2"], qm, m, qm_p
    res.qe, res.qe_df, res.qe_p = f["qe"], f["df"], f["qe_p"]
    res.r2, res.i2, res.h2 = r2, f["i2"], f["h2"]
    res.title = (
        f"Meta-regression ({method}, test={test}, k={k}): tau^2 = {f['tau2']:.4g}, "
        f"QM = {qm:.4g} (p = {qm_p:.3g}), R^2 = {r2:.3g}%"
    )
    return res
