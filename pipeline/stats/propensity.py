"""Propensity scores and weights for non-randomised comparisons, with balance diagnostics.

:func:`propensity_weights` fits a logistic model of treatment (the arm) on pre-specified
baseline covariates and turns the fitted scores into weights for a stated estimand: the
average treatment effect (stabilised inverse probability weights), the effect in the
treated, or the overlap population. :func:`balance` compares the arms' covariate
distributions before and after weighting (standardised mean differences, variance ratios)
and the result carries what an evaluator checks before trusting a weighted estimate:
effective sample sizes, the largest weights, the overlap of the scores and flags where
balance or overlap fail. The weighted outcome analyses, whose intervals carry the
estimation of these weights, are in :mod:`pipeline.stats.weighting`.

Checked against R ``glm(..., family = binomial)`` with ``splines::ns`` and the formulas of
cobalt (``bal.tab``, ``col_w_smd``) and WeightIt in ``tests/reference/test_weighting_reference.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.stats._eff_design import check_columns, design_matrix, is_categorical, levels_of
from pipeline.stats._result import Result

__all__ = ["BalanceResult", "PropensityResult", "balance", "propensity_weights", "rcs_basis",
           "rcs_knots"]

ESTIMANDS = ("ATE", "ATT", "ATO")
ESTIMAND_WORDS = {
    "ATE": "average treatment effect in the whole population compared (stabilised inverse "
           "probability of treatment weights)",
    "ATT": "average treatment effect in the treated (people in the compared arm keep weight "
           "1, the reference arm is weighted by the odds of treatment)",
    "ATO": "average treatment effect in the overlap population (overlap weights: the people "
           "whose treatment could have gone either way count most)",
}
#: |SMD| above this after weighting flags a covariate as imbalanced (Austin 2009).
SMD_THRESHOLD = 0.1
#: Variance ratios outside [1/2, 2] flag a continuous covariate (Rubin 2001).
VR_BOUNDS = (0.5, 2.0)
#: Harrell's default knot quantiles for restricted cubic splines (Regression Modeling
#: Strategies, 2nd ed., table 2.3), by number of knots.
RCS_QUANTILES = {3: (0.10, 0.5, 0.90), 4: (0.05, 0.35, 0.65, 0.95),
                 5: (0.05, 0.275, 0.5, 0.725, 0.95)}


# --------------------------------------------------------------------------- splines

def rcs_knots(x: np.ndarray, k: int) -> np.ndarray:
    """Knots of a restricted cubic spline with ``k`` (3-5) knots at Harrell's quantiles
    of ``x`` (quantile type 7, R's default)."""
    if k not in RCS_QUANTILES:
        raise ValueError(f"splines need 3, 4 or 5 knots, got {k}")
    knots = np.quantile(np.asarray(x, float), RCS_QUANTILES[k])
    if len(np.unique(knots)) < k:
        raise ValueError(f"the {k} spline knots are not distinct (too few distinct values)")
    return knots


def rcs_basis(x: np.ndarray, knots: Sequence[float]) -> np.ndarray:
    """Nonlinear columns of a restricted (natural) cubic spline, Harrell's truncated-power
    form: for ``k`` knots, ``k - 2`` columns (``x`` itself enters the model linearly).

    ``(x - t_j)_+^3 - (x - t_{k-1})_+^3 (t_k - t_j) / (t_k - t_{k-1}) + (x - t_k)_+^3
    (t_{k-1} - t_j) / (t_k - t_{k-1})``, divided by ``(t_k - t_1)^2``, for j = 1..k-2:
    cubic between the knots and linear beyond the outer ones, so together with ``x`` it
    spans the same space as R ``splines::ns(x, knots = t[2:(k-1)], Boundary.knots =
    t[c(1, k)])`` and gives the same fitted propensity scores.
    """
    x = np.asarray(x, float)
    t = np.asarray(knots, float)
    k = len(t)
    norm = (t[-1] - t[0]) ** 2

    def p3(v):
        return np.maximum(v, 0.0) ** 3

    cols = [(p3(x - t[j]) - p3(x - t[-2]) * (t[-1] - t[j]) / (t[-1] - t[-2])
             + p3(x - t[-1]) * (t[-2] - t[j]) / (t[-1] - t[-2])) / norm for j in range(k - 2)]
    return np.column_stack(cols) if cols else np.zeros((len(x), 0))


# --------------------------------------------------------------------------- balance

class BalanceResult(Result):
    """Covariate balance between two arms before and after weighting (see :func:`balance`).

    Attributes
    ----------
    table : DataFrame
        One row per covariate term (a numeric covariate, or one level of a categorical
        one; missing-value indicators included): ``variable, level, term, type``
        (``binary``/``continuous``), ``mean_treated, mean_control`` (unweighted),
        ``wmean_treated, wmean_control`` (weighted), ``smd_before, smd_after,
        vr_before, vr_after`` (variance ratios, continuous terms only), ``flag``.
    ess : DataFrame
        Per arm: ``arm, n, sum_weights, ess`` (Kish effective sample size).
    max_abs_smd_after : float
    """

    title = "Covariate balance"

    @property
    def table(self) -> pd.DataFrame:
        return self._frame


def _wvar(x: np.ndarray, w: np.ndarray) -> float:
    """Weighted variance with the reliability-weights correction ``sum w (x - m)^2 /
    (sum w - sum w^2 / sum w)`` (cobalt ``col_w_var``); with w = 1 the usual n - 1 one."""
    sw = w.sum()
    m = np.sum(w * x) / sw
    den = sw - np.sum(w**2) / sw
    return float(np.sum(w * (x - m) ** 2) / den) if den > 0 else np.nan


def _terms(df: pd.DataFrame, covariates: Sequence[str]) -> list[tuple[str, str, str, np.ndarray]]:
    """(variable, level, term name, column) for every balance term: a numeric covariate
    as it is, each level of a categorical one as a 0/1 indicator (every level, as cobalt
    shows them). Missing values must have been handled (see :func:`_prepare_covariates`)."""
    out = []
    for v in covariates:
        s = df[v]
        if is_categorical(s):
            for lev in levels_of(s):
                out.append((v, str(lev), f"{v}: {lev}", (s == lev).to_numpy(float)))
        else:
            out.append((v, "", v, s.to_numpy(float)))
    return out


def balance(
    df: pd.DataFrame,
    treated: np.ndarray | pd.Series,
    covariates: Sequence[str],
    weights: np.ndarray | pd.Series | None = None,
    estimand: str = "ATE",
) -> BalanceResult:
    """Standardised mean differences and variance ratios of covariates between two arms,
    unweighted and weighted.

    Parameters
    ----------
    df : DataFrame, shape (n_samples, n_columns)
        Covariates without missing values (numeric, or categorical: one term per level).
    treated : array-like of bool, shape (n_samples,)
        True for the compared arm (e.g. Open Dialogue), False for the reference arm.
    covariates : list of str
    weights : array-like, shape (n_samples,), optional
        Balancing weights; without them only the "before" columns are filled.
    estimand : {"ATE", "ATT", "ATO"}
        Chooses the standardising SD, as cobalt does by default: for the ATT the SD of the
        treated, otherwise the pooled ``sqrt((s1^2 + s0^2) / 2)``; always from the
        unweighted sample, so that before and after share one denominator.

    Returns
    -------
    BalanceResult

    Notes
    -----
    SMD = (weighted mean treated - weighted mean control) / SD (signed). Binary terms are
    standardised too (``p (1 - p)`` variances; cobalt ``binary = "std"``), so the
    |SMD| > 0.1 flag means the same for every term. Variance ratio = weighted variance
    treated / control (reliability-weights correction, cobalt ``col_w_var``), continuous
    terms only; flagged outside [0.5, 2]. Kish effective sample size per arm
    ``(sum w)^2 / sum w^2``.

    References
    ----------
    Austin PC. Balance diagnostics for comparing the distribution of baseline covariates
    between treatment groups in propensity-score matched samples. Stat Med 2009;28:
    3083-3107. Austin PC, Stuart EA. Moving towards best practice when using inverse
    probability of treatment weighting (IPTW) using the propensity score to estimate causal
    treatment effects in observational studies. Stat Med 2015;34:3661-3679. Rubin DB.
    Using propensity scores to help design observational studies. Health Serv Outcomes Res
    Methodol 2001;2:169-188. Greifer N. cobalt: Covariate Balance Tables and Plots (R
    package; ``bal.tab``, ``col_w_smd``). Kish L. Survey Sampling. Wiley 1965.
    """
    if estimand not in ESTIMANDS:
        raise ValueError(f"estimand must be one of {ESTIMANDS}")
    covariates = list(covariates)
    check_columns(df, covariates)
    a = np.asarray(treated, dtype=bool)
    if a.all() or not a.any():
        raise ValueError("balance needs people in both arms")
    w = np.ones(len(a)) if weights is None else np.asarray(weights, float)
    rows = []
    for v, lev, term, x in _terms(df, covariates):
        x1, x0, w1, w0 = x[a], x[~a], w[a], w[~a]
        binary = set(np.unique(x)) <= {0.0, 1.0}
        if binary:
            p1, p0 = x1.mean(), x0.mean()
            v1, v0 = p1 * (1 - p1), p0 * (1 - p0)
        else:
            v1, v0 = x1.var(ddof=1), x0.var(ddof=1)
        sd = np.sqrt(v1) if estimand == "ATT" else np.sqrt((v1 + v0) / 2)
        m1, m0 = x1.mean(), x0.mean()
        wm1, wm0 = np.average(x1, weights=w1), np.average(x0, weights=w0)

        def smd(d):
            return 0.0 if d == 0 else (d / sd if sd > 0 else np.nan)

        vr_b = vr_a = np.nan
        if not binary:
            with np.errstate(divide="ignore", invalid="ignore"):
                vr_b = x1.var(ddof=1) / x0.var(ddof=1)
                vr_a = _wvar(x1, w1) / _wvar(x0, w0)
        rows.append(dict(variable=v, level=lev, term=term,
                         type="binary" if binary else "continuous",
                         mean_treated=m1, mean_control=m0, wmean_treated=wm1,
                         wmean_control=wm0, smd_before=smd(m1 - m0), smd_after=smd(wm1 - wm0),
                         vr_before=vr_b, vr_after=vr_a))
    table = pd.DataFrame(rows)
    if weights is None:
        table[["wmean_treated", "wmean_control", "smd_after", "vr_after"]] = np.nan
    col_smd = "smd_after" if weights is not None else "smd_before"
    col_vr = "vr_after" if weights is not None else "vr_before"
    bad_smd = table[col_smd].abs() > SMD_THRESHOLD
    bad_vr = (table[col_vr] < VR_BOUNDS[0]) | (table[col_vr] > VR_BOUNDS[1])
    table["flag"] = np.where(bad_smd, f"|SMD| > {SMD_THRESHOLD}",
                             np.where(bad_vr, "variance ratio outside [0.5, 2]", ""))
    res = BalanceResult(table, [])
    res.ess = ess_table(a, w)
    res.max_abs_smd_after = float(table[col_smd].abs().max())
    res.estimand = estimand
    return res


def ess_table(treated: np.ndarray, w: np.ndarray) -> pd.DataFrame:
    """Per arm (compared first): ``arm, n, sum_weights, ess`` (Kish: (sum w)^2 / sum w^2)."""
    rows = []
    for arm, m in (("treated", treated), ("control", ~treated)):
        ww = w[m]
        rows.append(dict(arm=arm, n=int(m.sum()), sum_weights=float(ww.sum()),
                         ess=float(ww.sum() ** 2 / np.sum(ww**2)) if len(ww) else 0.0))
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- propensity

@dataclass
class _Design:
    """The propensity model's design: its matrix and how to rebuild weights from it."""

    X: np.ndarray
    names: list[str]
    treated: np.ndarray
    estimand: str
    stabilised: bool

    def scores(self, alpha: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.X @ alpha)))

    def weights_at(self, alpha: np.ndarray) -> np.ndarray:
        """Weights at coefficients ``alpha``: what the weighted estimators are
        differentiated through to carry the estimation of the weights."""
        return weights_from_scores(self.scores(alpha), self.treated, self.estimand,
                                   self.stabilised)


def weights_from_scores(e: np.ndarray, treated: np.ndarray, estimand: str,
                        stabilised: bool = True) -> np.ndarray:
    """Weights for ``estimand`` from propensity scores ``e`` (see :func:`propensity_weights`)."""
    a = np.asarray(treated, bool)
    if estimand == "ATE":
        w = np.where(a, 1 / e, 1 / (1 - e))
        if stabilised:
            # the marginal probability of treatment as the mean score: equal to the share
            # treated at the fitted coefficients (logistic score equation), and
            # differentiable in them
            pbar = e.mean()
            w = w * np.where(a, pbar, 1 - pbar)
        return w
    if estimand == "ATT":
        return np.where(a, 1.0, e / (1 - e))
    if estimand == "ATO":
        return np.where(a, 1 - e, e)
    raise ValueError(f"estimand must be one of {ESTIMANDS}")


class PropensityResult(Result):
    """Propensity scores, weights and their diagnostics (see :func:`propensity_weights`).

    Attributes
    ----------
    coef : DataFrame
        The logistic model: ``coef, se`` (model-based) by term, as R ``glm`` names them.
    ps, weights : Series
        Propensity score and weight of each person kept (indexed like the input).
    ps_all : Series
        Scores of everyone before trimming (from the first fit), for the overlap figure.
    treated : Series of bool
    kept : Series of bool
        Rows of the (complete-case) input kept after trimming.
    balance : BalanceResult
        Before and after weighting, on the covariates as specified (each level of a
        categorical one; missing-value indicators).
    ess : DataFrame
        Per arm: people, summed weight and Kish effective sample size.
    largest : DataFrame
        The largest weights per arm (``arm, rank, weight, share_of_arm_weight``): no
        identifiers.
    overlap : dict
        Score range per arm, the common support, people outside it per arm, people with a
        score below 0.05 or above 0.95.
    flags : list of str
        Where balance (|SMD| > 0.1 after weighting, variance ratio outside [0.5, 2]) or
        overlap (scores outside the other arm's range, extreme scores, an effective sample
        size below half the arm) fails, in words.
    influence : ndarray, shape (n_kept, n_coef)
        Influence of each kept person on the coefficients (``(X'WX)^-1 x_i (a_i - e_i)``):
        what the outcome analyses add to carry the estimation of the weights.
    estimand, estimand_words, method : str
    """

    title = "Propensity score weights"

    @property
    def summary(self) -> pd.DataFrame:
        return self._frame

    def weights_at(self, alpha: np.ndarray) -> np.ndarray:
        """Weights of the kept people were the coefficients ``alpha``."""
        return self._design.weights_at(np.asarray(alpha, float))


def _prepare_covariates(d: pd.DataFrame, covariates: Sequence[str], missing: str,
                        notes: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Covariates ready for the model: a missing category level ``(missing)``; a missing
    number replaced by the mean of the observed values plus a 0/1 indicator column
    ``<var>_missing`` (the missing-indicator method). ``missing="drop"``: rows dropped."""
    out = pd.DataFrame(index=d.index)
    names: list[str] = []
    for v in covariates:
        s = d[v]
        na = s.isna()
        if is_categorical(s):
            if na.any():
                if missing == "drop":
                    raise AssertionError  # rows were dropped before
                cats = levels_of(s)
                s = pd.Categorical(s.astype(object).where(~na, "(missing)"),
                                   categories=[*cats, "(missing)"])
                notes.append(f"{v}: {int(na.sum())} missing value(s) kept as the level "
                             "'(missing)'.")
            elif pd.api.types.is_bool_dtype(s):
                s = s.astype(int)
            out[v] = s
            names.append(v)
        else:
            x = pd.to_numeric(s).astype(float)
            if na.any():
                out[v] = x.fillna(x[~na].mean())
                out[f"{v}_missing"] = na.astype(float)
                names += [v, f"{v}_missing"]
                notes.append(f"{v}: {int(na.sum())} missing value(s) set to the observed mean, "
                             f"with the indicator {v}_missing in the model.")
            else:
                out[v] = x
                names.append(v)
    return out, names


def _fit_logistic(X: np.ndarray, a: np.ndarray, tol: float = 1e-12, max_iter: int = 100,
                  what: str = "the propensity model"):
    """Maximum likelihood logistic regression by Newton-Raphson from zero with step
    halving (R ``glm``'s IRLS reaches the same maximum). Returns ``(alpha, bread,
    converged)`` with ``bread = (X'WX)^-1`` at the estimate."""
    y = a.astype(float)

    def deviance(alpha):
        eta = X @ alpha
        # -2 log-likelihood, stable for large |eta|
        return float(2 * np.sum(np.logaddexp(0, eta) - y * eta))

    alpha = np.zeros(X.shape[1])
    dev = deviance(alpha)
    converged = False
    for _ in range(max_iter):
        e = 1 / (1 + np.exp(-(X @ alpha)))
        info = (X * (e * (1 - e))[:, None]).T @ X
        try:
            step = np.linalg.solve(info, X.T @ (y - e))
        except np.linalg.LinAlgError:
            raise ValueError(f"{what}: the information matrix is singular (collinear "
                             "covariates, or a covariate level in one arm only)") from None
        new, dev_new = alpha + step, deviance(alpha + step)
        halvings = 0
        while dev_new > dev + 1e-12 * abs(dev) and halvings < 30:
            step /= 2
            new, dev_new = alpha + step, deviance(alpha + step)
            halvings += 1
        alpha, change, dev = new, abs(dev - dev_new), dev_new
        if change / (abs(dev) + 0.1) < tol:
            converged = True
            break
    e = 1 / (1 + np.exp(-(X @ alpha)))
    bread = np.linalg.inv((X * (e * (1 - e))[:, None]).T @ X)
    return alpha, bread, converged


def propensity_weights(
    df: pd.DataFrame,
    treatment: str,
    covariates: Sequence[str],
    *,
    treated_level=1,
    strata: str | None = None,
    splines: dict[str, int] | Sequence[str] | None = None,
    interactions: Sequence[tuple[str, str]] = (),
    estimand: str = "ATE",
    stabilised: bool = True,
    trim: float | None = None,
    missing: str = "indicator",
    largest: int = 5,
) -> PropensityResult:
    """Propensity scores from a logistic model and weights for a stated estimand.

    Parameters
    ----------
    df : DataFrame, shape (n_samples, n_columns)
        One row per person.
    treatment : str
        Arm column; ``treated_level`` marks the compared arm (e.g. ``"open_dialogue"``).
    covariates : list of str
        Pre-specified baseline covariates. Numeric ones enter linearly (or as splines);
        categorical ones by treatment contrasts (R ``glm`` term names).
    treated_level : default 1
        Value of ``treatment`` for the compared arm (also accepts True).
    strata : str, optional
        Site (or other) column entered as a categorical term: the scores are within-site.
    splines : dict {column: knots} or list of columns, optional
        Numeric covariates entered as restricted cubic splines (3-5 knots at Harrell's
        quantiles, 4 by default) instead of linearly.
    interactions : list of (str, str), optional
        Pairs of covariates whose product terms enter the model (R ``a:b``).
    estimand : {"ATE", "ATT", "ATO"}
        ``"ATE"``: ``P(A=a) / P(A=a | x)`` (stabilised; ``stabilised=False`` drops the
        numerator), the whole population; ``"ATT"``: 1 for the treated, ``e / (1 - e)``
        for the reference arm; ``"ATO"``: overlap weights, ``1 - e`` for the treated and
        ``e`` for the reference arm (bounded, no trimming needed).
    trim : float, optional
        Drop people with a score outside ``[trim, 1 - trim]`` and refit the model on those
        kept (Crump et al. 2009 suggest 0.1). The estimand is then that of the people
        kept, and the report must say so.
    missing : {"indicator", "drop"}
        Missing covariates: a ``(missing)`` level for categorical ones, the mean plus a
        missing indicator for numeric ones; or drop the rows (noted).
    largest : int
        How many of the largest weights per arm to list.

    Returns
    -------
    PropensityResult

    Notes
    -----
    The model is fitted by maximum likelihood (Newton-Raphson to a relative deviance
    change below 1e-12); ``influence`` holds each person's influence on its coefficients,
    which :mod:`pipeline.stats.weighting` carries into every weighted estimate (the
    stacked estimating equations of Lunceford and Davidian 2004). Overlap is flagged when
    people of one arm have scores outside the other arm's range, or below 0.05 / above
    0.95; balance when any |SMD| after weighting exceeds 0.1 or a variance ratio lies
    outside [0.5, 2]; and the weights when an arm's effective sample size is under half
    its size.

    References
    ----------
    Rosenbaum PR, Rubin DB. The central role of the propensity score in observational
    studies for causal effects. Biometrika 1983;70:41-55. Robins JM, Hernan MA, Brumback B.
    Marginal structural models and causal inference in epidemiology. Epidemiology 2000;11:
    550-560 (stabilised weights). Li F, Morgan KL, Zaslavsky AM. Balancing covariates via
    propensity score weighting. JASA 2018;113:390-400 (overlap weights). Crump RK, Hotz VJ,
    Imbens GW, Mitnik OA. Dealing with limited overlap in estimation of average treatment
    effects. Biometrika 2009;96:187-199. Lunceford JK, Davidian M. Stratification and
    weighting via the propensity score in estimation of causal treatment effects. Stat Med
    2004;23:2937-2960. Harrell FE. Regression Modeling Strategies, 2nd ed. Springer 2015
    (restricted cubic splines). Greifer N. WeightIt (R package).
    """
    if estimand not in ESTIMANDS:
        raise ValueError(f"estimand must be one of {ESTIMANDS}, got {estimand!r}")
    if missing not in ("indicator", "drop"):
        raise ValueError("missing must be 'indicator' or 'drop'")
    if trim is not None and not 0 < trim < 0.5:
        raise ValueError("trim must lie strictly between 0 and 0.5")
    covariates = list(covariates)
    spl = ({v: 4 for v in splines} if isinstance(splines, (list, tuple)) else dict(splines or {}))
    for v in spl:
        if v not in covariates:
            raise ValueError(f"spline covariate {v!r} is not among the covariates")
    for pair in interactions:
        for v in pair:
            if v not in covariates:
                raise ValueError(f"interaction covariate {v!r} is not among the covariates")
    check_columns(df, [treatment, *covariates, *([strata] if strata else [])])
    notes: list[str] = []
    d = df
    miss_a = d[treatment].isna() | (d[strata].isna() if strata else False)
    if missing == "drop":
        miss_a = miss_a | d[covariates].isna().any(axis=1)
    if miss_a.any():
        notes.append(f"{int(miss_a.sum())} row(s) dropped for a missing "
                     f"{'treatment, site or covariate' if missing == 'drop' else 'treatment or site'}.")
        d = d.loc[~miss_a]
    a = (d[treatment] == treated_level).to_numpy()
    if a.all() or not a.any():
        raise ValueError(f"{treatment!r} must have people in both arms (treated level "
                         f"{treated_level!r})")
    cov, names = _prepare_covariates(d, covariates, missing, notes)
    for v in spl:
        if cov[v].nunique() < 5:
            raise ValueError(f"spline covariate {v!r} has fewer than 5 distinct values")
    model_cols = names + ([strata] if strata else [])
    frame = cov.copy()
    if strata:
        frame[strata] = d[strata].astype(str)

    def build(rows: np.ndarray) -> tuple[np.ndarray, list[str]]:
        f = frame.loc[rows]
        X = design_matrix(f, model_cols)
        for v, k in spl.items():
            knots = rcs_knots(f[v].to_numpy(float), k)
            B = rcs_basis(f[v].to_numpy(float), knots)
            for j in range(B.shape[1]):
                X[f"rcs({v}){j + 1}"] = B[:, j]
        for u, v in interactions:
            du, dv = design_matrix(f, [u], False), design_matrix(f, [v], False)
            for cu in du.columns:
                for cv in dv.columns:
                    X[f"{cu}:{cv}"] = du[cu].to_numpy() * dv[cv].to_numpy()
        empty = [c for c in X.columns if c != "(Intercept)" and X[c].nunique() < 2]
        if empty:
            notes.append(f"term(s) constant in the data left out of the model: {', '.join(empty)}.")
            X = X.drop(columns=empty)
        return X.to_numpy(float), list(X.columns)

    idx_all = d.index.to_numpy()
    X, terms = build(idx_all)
    alpha, bread, ok = _fit_logistic(X, a)
    if not ok:
        notes.append("the propensity model did not converge: scores near 0 or 1 (separation?).")
    e_all = 1 / (1 + np.exp(-(X @ alpha)))
    ps_all = pd.Series(e_all, index=d.index, name="ps")
    keep = np.ones(len(d), bool)
    if trim is not None:
        keep = (e_all >= trim) & (e_all <= 1 - trim)
        n_out = int((~keep).sum())
        notes.append(f"trimmed {n_out} of {len(d)} people with a score outside [{trim:g}, "
                     f"{1 - trim:g}] (Crump et al. 2009) and refitted the model on the "
                     f"{int(keep.sum())} kept: the estimand is that of the people kept.")
        a_k = a[keep]
        if a_k.all() or not a_k.any():
            raise ValueError("after trimming one arm is empty")
        X, terms = build(idx_all[keep])
        alpha, bread, ok = _fit_logistic(X, a_k)
        a = a_k
    design = _Design(X, terms, a, estimand, stabilised)
    e = design.scores(alpha)
    w = design.weights_at(alpha)
    kept_index = d.index[keep]
    if np.any(e < 1e-8) or np.any(e > 1 - 1e-8):
        notes.append("some propensity scores are numerically 0 or 1: the weights are extreme.")
    influence = (X * (a - e)[:, None]) @ bread
    se = np.sqrt(np.diag(bread))
    coef = pd.DataFrame({"coef": alpha, "se": se}, index=pd.Index(terms, name="term"))

    res = PropensityResult(coef, notes)
    res.coef = coef
    res._design = design
    res.alpha = alpha
    res.influence = influence
    res.ps = pd.Series(e, index=kept_index, name="ps")
    res.weights = pd.Series(w, index=kept_index, name="weight")
    res.treated = pd.Series(a, index=kept_index, name="treated")
    res.ps_all = ps_all
    res.treated_all = pd.Series((d[treatment] == treated_level).to_numpy(), index=d.index)
    res.kept = pd.Series(keep, index=d.index, name="kept")
    res.estimand = estimand
    res.estimand_words = ESTIMAND_WORDS[estimand]
    res.stabilised = stabilised and estimand == "ATE"
    res.covariates = covariates
    res.strata = strata
    res.trim = trim
    res.method = (
        f"logistic propensity model on {', '.join(covariates)}"
        + (f", {strata} as a fixed effect" if strata else "")
        + (f"; restricted cubic splines for {', '.join(f'{v} ({k} knots)' for v, k in spl.items())}"
           if spl else "")
        + (f"; interactions {', '.join(f'{u}:{v}' for u, v in interactions)}" if interactions else "")
        + f"; {estimand} weights" + (" (stabilised)" if res.stabilised else "")
        + (f"; trimmed to scores in [{trim:g}, {1 - trim:g}]" if trim else ""))
    bal_cov = cov.loc[kept_index]
    bal_names = list(names)
    if strata:
        bal_cov = bal_cov.assign(**{strata: frame.loc[kept_index, strata]})
        bal_names.append(strata)
    res.balance = balance(bal_cov, a, bal_names, w, estimand)
    res.ess = res.balance.ess
    res.largest = _largest(a, w, largest)
    res.overlap = _overlap(e, a)
    res.flags = _flags(res)
    return res


def _largest(a: np.ndarray, w: np.ndarray, k: int) -> pd.DataFrame:
    rows = []
    for arm, m in (("treated", a), ("control", ~a)):
        ww = np.sort(w[m])[::-1]
        tot = ww.sum()
        for r, v in enumerate(ww[:k], start=1):
            rows.append(dict(arm=arm, rank=r, weight=float(v), share_of_arm_weight=float(v / tot)))
    return pd.DataFrame(rows)


def _overlap(e: np.ndarray, a: np.ndarray) -> dict:
    e1, e0 = e[a], e[~a]
    lo, hi = max(e1.min(), e0.min()), min(e1.max(), e0.max())
    return {
        "treated_range": [float(e1.min()), float(e1.max())],
        "control_range": [float(e0.min()), float(e0.max())],
        "common_support": [float(lo), float(hi)],
        "treated_outside": int(np.sum((e1 < lo) | (e1 > hi))),
        "control_outside": int(np.sum((e0 < lo) | (e0 > hi))),
        "extreme_scores": int(np.sum((e < 0.05) | (e > 0.95))),
    }


def _flags(res: PropensityResult) -> list[str]:
    flags = []
    tab = res.balance.table
    bad = tab[tab["smd_after"].abs() > SMD_THRESHOLD]
    if len(bad):
        flags.append(f"balance: |SMD| > {SMD_THRESHOLD} after weighting for "
                     + ", ".join(f"{t} ({s:+.2f})" for t, s in zip(bad["term"], bad["smd_after"])))
    vr = tab[(tab["vr_after"] < VR_BOUNDS[0]) | (tab["vr_after"] > VR_BOUNDS[1])]
    if len(vr):
        flags.append("balance: variance ratio outside [0.5, 2] after weighting for "
                     + ", ".join(f"{t} ({v:.2f})" for t, v in zip(vr["term"], vr["vr_after"])))
    ov = res.overlap
    n_out = ov["treated_outside"] + ov["control_outside"]
    if n_out:
        flags.append(f"overlap: {n_out} people have a score outside the other arm's range "
                     f"(common support {ov['common_support'][0]:.3f} to "
                     f"{ov['common_support'][1]:.3f})")
    if ov["extreme_scores"] and res.estimand != "ATO":
        flags.append(f"overlap: {ov['extreme_scores']} people have a score below 0.05 or above "
                     "0.95, where inverse probability weights become extreme")
    for _, r in res.ess.iterrows():
        if r["ess"] < 0.5 * r["n"]:
            flags.append(f"weights: the effective sample size of the {r['arm']} arm is "
                         f"{r['ess']:.0f}, under half its {r['n']} people")
    return flags
