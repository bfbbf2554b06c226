"""Weighted outcome analyses whose intervals carry the estimation of the weights.

Each estimator takes the person frame and a fitted
:class:`~pipeline.stats.propensity.PropensityResult` and returns the weighted estimate
with two standard errors:

* ``se_known``: the robust (sandwich) standard error treating the weights as known,
  summed per cluster (or per person): what R gives with ``coxph(weights =, cluster =)``,
  ``survfit(weights =)`` (infinitesimal jackknife) or ``svyglm``. For inverse probability
  weights of the average treatment effect it is conservative; for the effect in the
  treated it can be too small.
* ``se`` (the one the intervals use): the same with the estimation of the propensity
  model carried in, as the stacked estimating equations of the two-step estimator
  (Lunceford and Davidian 2004; for the Cox model Shu et al. 2021): each person's
  influence on the estimate is their influence with the weights known plus ``J phi_i``,
  where ``phi_i`` is their influence on the propensity model's coefficients and ``J`` the
  derivative of the estimate with respect to those coefficients. ``J`` is computed by
  central differences of the whole estimator, so one rule serves every estimator here;
  the tests check it against R (``numDeriv::jacobian`` of ``coxph``/``survfit``/``glm``
  refits), and the coverage of the resulting intervals is checked on studies with planted
  confounding (``tests/unit/stats/test_weighting_coverage.py``).

Estimators: :func:`weighted_cox` (marginal hazard ratio), :func:`weighted_curves`
(Kaplan-Meier and Aalen-Johansen, with risk differences and ratios at chosen times),
:func:`weighted_rate_ratio` (ratio of weighted event rates per person-time) and
:func:`weighted_risk` (risk difference, risk ratio and odds ratio of a binary outcome,
by weighting or by the doubly robust augmented estimator).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from pipeline.stats._eff_design import design_matrix
from pipeline.stats._result import Result
from pipeline.stats._surv_data import durations_events, z_value
from pipeline.stats.propensity import PropensityResult, _fit_logistic, _prepare_covariates

__all__ = ["WeightedCurvesResult", "WeightedEffectResult", "weighted_cox", "weighted_curves",
           "weighted_rate_ratio", "weighted_risk"]

CARRIED = ("propensity model carried (stacked estimating equations; derivative by central "
           "differences)")


# --------------------------------------------------------------------------- carrying

def _steps(X: np.ndarray) -> np.ndarray:
    """Difference steps for the coefficients of a model with design ``X``: each moves every
    linear predictor by at most 1e-4, whatever the scale of the covariate (a calendar year
    of about 2000 would otherwise make a step 2000 times too large)."""
    return 1e-4 / np.maximum(np.abs(X).max(axis=0), 1e-12)


def _jacobian(fn: Callable[[np.ndarray], np.ndarray], x0: np.ndarray,
              steps: np.ndarray) -> np.ndarray:
    """Central-difference derivative of the vector function ``fn`` at ``x0``: shape
    (len(fn(x0)), len(x0)), with ``steps`` from :func:`_steps`. The truncation error is
    of order step^2 (1e-8 relative) and the rounding error of order (the estimator's own
    rounding, about 1e-13 for a curve summed over thousands of times) / step; steps
    moving the linear predictors by 1e-4 matched R's ``numDeriv::jacobian`` (Richardson
    extrapolation) to 1e-7 in the carried standard errors, 1e-5 and 1e-6 to 1e-6 and 6e-6
    (rounding)."""
    cols = []
    for j in range(len(x0)):
        h = steps[j]
        up, dn = x0.copy(), x0.copy()
        up[j] += h
        dn[j] -= h
        cols.append((np.asarray(fn(up), float) - np.asarray(fn(dn), float)) / (2 * h))
    return np.column_stack(cols) if cols else np.zeros((len(np.atleast_1d(fn(x0))), 0))


def _cluster_sums(values: np.ndarray, codes: np.ndarray, n_clusters: int) -> np.ndarray:
    out = np.zeros((n_clusters,) + values.shape[1:])
    np.add.at(out, codes, values)
    return out


def _clusters(d: pd.DataFrame, cluster: str | None) -> tuple[np.ndarray, int]:
    if cluster is None:
        return np.arange(len(d)), len(d)
    codes, uniq = pd.factorize(d[cluster].to_numpy())
    if (codes < 0).any():
        raise ValueError(f"cluster column {cluster!r} has missing values")
    return codes, len(uniq)


def _aligned(df: pd.DataFrame, ps: PropensityResult, columns: Sequence[str]) -> pd.DataFrame:
    """The rows the propensity model kept, in its order, with ``columns``."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(f"column(s) not in data frame: {missing}")
    try:
        d = df.loc[ps.weights.index, list(dict.fromkeys(columns))]
    except KeyError:
        raise ValueError("the data frame does not hold every row the propensity model "
                         "kept (pass the frame it was fitted on)") from None
    return d


class WeightedEffectResult(Result):
    """A weighted effect estimate (see the functions of :mod:`pipeline.stats.weighting`).

    Attributes
    ----------
    summary : DataFrame
        One row per measure: ``measure, estimate, lower, upper, se, se_known, z, p``.
        For ratios ``se``/``se_known`` are on the log scale. ``se`` carries the
        estimation of the weights; ``se_known`` treats them as known (robust sandwich).
    arms : DataFrame
        Weighted summaries per arm (risks, rates), compared arm first.
    estimand, method : str
    n, n_clusters : int
    """

    title = "Weighted effect"

    @property
    def summary(self) -> pd.DataFrame:
        return self._frame


def _wald_rows(names, est, var_carried, var_known, log_scale, conf_level):
    z = z_value(conf_level)
    rows = []
    for k, name in enumerate(names):
        se = float(np.sqrt(var_carried[k, k]))
        se_k = float(np.sqrt(var_known[k, k]))
        b = float(est[k])
        zz = b / se if se > 0 else np.nan
        lo, hi = b - z * se, b + z * se
        if log_scale[k]:
            rows.append(dict(measure=name, estimate=np.exp(b), lower=np.exp(lo), upper=np.exp(hi),
                             se=se, se_known=se_k, z=zz, p=2 * stats.norm.sf(abs(zz))))
        else:
            rows.append(dict(measure=name, estimate=b, lower=lo, upper=hi, se=se, se_known=se_k,
                             z=zz, p=2 * stats.norm.sf(abs(zz))))
    return pd.DataFrame(rows)


def _variances(if_known: np.ndarray, J: np.ndarray, phi: np.ndarray, codes, G):
    """Covariances with the weights known and with the propensity model carried."""
    a = _cluster_sums(if_known, codes, G)
    b = _cluster_sums(if_known + phi @ J.T, codes, G)
    return a.T @ a, b.T @ b


# --------------------------------------------------------------------------- Cox

def weighted_cox(
    df: pd.DataFrame,
    ps: PropensityResult,
    duration: str,
    event: str,
    *,
    strata: str | None = None,
    cluster: str | None = None,
    ties: str = "efron",
    conf_level: float = 0.95,
) -> WeightedEffectResult:
    """Marginal hazard ratio (compared vs reference arm) from a weighted Cox model.

    Parameters
    ----------
    df : DataFrame
        The frame the propensity model was fitted on (rows it dropped or trimmed are left
        out).
    ps : PropensityResult
    duration, event : str
        Follow-up time and event (1) / censored (0); code competing events as censored for
        a cause-specific hazard ratio.
    strata : str, optional
        Separate baseline hazards (e.g. site); without it the hazard ratio is marginal over
        sites, which is what weights for the population estimand target.
    cluster : str, optional
        Unit of dependence (e.g. GP practice); people otherwise.
    ties : {"efron", "breslow"}
    conf_level : float

    Returns
    -------
    WeightedEffectResult
        One row, ``hazard ratio``. ``se_known`` equals R ``coxph(Surv(t, e) ~ arm, weights
        = w, cluster = id)``'s robust standard error; ``se`` adds the estimation of the
        propensity model.

    References
    ----------
    Cole SR, Hernan MA. Adjusted survival curves with inverse probability weights. Comput
    Methods Programs Biomed 2004;75:45-49. Austin PC. The use of propensity score methods
    with survival or time-to-event outcomes: reporting measures of effect similar to those
    used in randomized experiments. Stat Med 2014;33:1242-1258. Shu D, Young JG, Toh S,
    Wang R. Variance estimation in inverse probability weighted Cox models. Biometrics
    2021;77:1101-1117. Lin DY, Wei LJ. The robust inference for the Cox proportional
    hazards model. JASA 1989;84:1074-1078.
    """
    from pipeline.stats.coxph import cox

    d = _aligned(df, ps, [duration, event, *([strata] if strata else []),
                          *([cluster] if cluster else [])])
    if d.isna().any().any():
        raise ValueError("missing values in the outcome, strata or cluster columns of the "
                         "people the propensity model kept; drop them before fitting it")
    a = ps.treated.to_numpy()
    frame = pd.DataFrame({"t": d[duration].to_numpy(float), "e": d[event].to_numpy(float),
                          "arm": a.astype(float), "w": ps.weights.to_numpy()},
                         index=np.arange(len(d)))
    if strata:
        frame["s"] = d[strata].to_numpy()
    frame["cl"] = _clusters(d, cluster)[0]
    kw = dict(strata="s" if strata else None, ties=ties, conf_level=conf_level)
    fit = cox(frame, "t", "e", ["arm"], weights="w", cluster="cl", **kw)
    beta = fit.summary["coef"].to_numpy()

    def at(alpha):
        f = frame.assign(w=ps.weights_at(alpha))
        return cox(f, "t", "e", ["arm"], weights="w", **kw).summary["coef"].to_numpy()

    J = _jacobian(at, ps.alpha, _steps(ps._design.X))
    codes, G = _clusters(d, cluster)
    v_known, v = _variances(fit.dfbeta.to_numpy(), J, ps.influence, codes, G)
    summary = _wald_rows(["hazard ratio"], beta, v, v_known, [True], conf_level)
    res = WeightedEffectResult(summary, list(fit.notes))
    res.fit = fit
    res.n, res.n_events, res.n_clusters = fit.n, fit.n_events, G
    res.estimand = f"marginal hazard ratio, {ps.estimand} weights"
    res.method = (f"weighted Cox model ({ties.capitalize()} ties"
                  + (f", {strata} strata" if strata else "") + "); robust variance by "
                  + (f"{cluster}" if cluster else "person") + "; " + CARRIED)
    res.title = f"Weighted Cox model ({ps.estimand} weights)"
    return res


# --------------------------------------------------------------------------- curves

def _aj_weighted(t, e, w, causes, codes, G, Phi, report_times, influence=True):
    """Weighted Aalen-Johansen estimate of survival (no event of any listed cause) and the
    cumulative incidence of each cause, with infinitesimal-jackknife influence.

    Influence per unit weight depends on a person's (time, status) only, so it is
    propagated over distinct pairs; per-cluster sums ``a_c(t) = sum_i w_i U_pair(i)(t)``
    give, at each distinct time, ``sum_c a_c^2`` and ``Phi' a`` (for the carried
    variance) and, at ``report_times``, the per-cluster values themselves. With
    ``influence=False`` only the estimates are computed.
    """
    times, tinv = np.unique(t, return_inverse=True)
    nt, K = len(times), len(causes)
    base = int(e.max()) + 1 if len(e) else 1
    pairs, pinv = np.unique(tinv.astype(np.int64) * base + e.astype(np.int64), return_inverse=True)
    p_t, p_e = pairs // base, pairs % base
    npair = len(pairs)
    # cluster x pair matrix of summed weights (sparse: one entry per person)
    from scipy import sparse
    C = sparse.csr_matrix((w, (codes, pinv)), shape=(G, npair))
    wt = np.bincount(tinv, weights=w, minlength=nt)
    Y = wt[::-1].cumsum()[::-1]
    dk = np.zeros((nt, K))
    for j, c in enumerate(causes):
        dk[:, j] = np.bincount(tinv, weights=w * (e == c), minlength=nt)
    d_all = dk.sum(axis=1)
    U0 = np.zeros(npair)
    Uk = np.zeros((npair, K))
    p0, cif = 1.0, np.zeros(K)
    S = np.zeros((nt, K + 1))
    V = np.zeros((nt, K + 1))
    VPhi = np.zeros((nt, K + 1, Phi.shape[1]))
    rep_idx = {int(np.searchsorted(times, x, side="right")) - 1: x for x in report_times}
    at_rep: dict[float, np.ndarray] = {}
    for i in range(nt):
        if d_all[i] > 0 and not influence:
            dA = dk[i] / Y[i]
            cif = cif + p0 * dA
            p0 = p0 * (1 - d_all[i] / Y[i])
        elif d_all[i] > 0:
            Yi = Y[i]
            dA = dk[i] / Yi
            dA_tot = d_all[i] / Yi
            at_risk = p_t >= i
            here = p_t == i
            dN = np.column_stack([here & (p_e == c) for c in causes]).astype(float)
            dAi = (dN - at_risk[:, None] * dA) / Yi
            dAi_tot = (dN.sum(axis=1) - at_risk * dA_tot) / Yi
            Uk = Uk + U0[:, None] * dA + p0 * dAi
            U0 = U0 * (1 - dA_tot) - p0 * dAi_tot
            cif = cif + p0 * dA
            p0 = p0 * (1 - dA_tot)
        S[i, 0], S[i, 1:] = p0, cif
        if not influence:
            continue
        a = C @ np.column_stack([U0, Uk])  # (G, K + 1)
        V[i] = (a**2).sum(axis=0)
        VPhi[i] = a.T @ Phi
        if i in rep_idx:
            at_rep[rep_idx[i]] = a
    # report times before the first observed time: nothing has happened yet
    for x in report_times:
        if x not in at_rep:
            at_rep[x] = np.zeros((G, K + 1))
    return times, S, V, VPhi, at_rep, Y


class WeightedCurvesResult(Result):
    """Weighted Kaplan-Meier or Aalen-Johansen curves (see :func:`weighted_curves`).

    Attributes
    ----------
    table : DataFrame
        One row per arm and distinct time: ``group, time, n_risk`` (weighted number at
        risk), ``estimate, se, lower, upper, se_known``; ``estimate`` is survival (no
        event) for Kaplan-Meier, the cumulative incidence of ``cause`` otherwise.
    at : DataFrame
        At each requested time: per arm ``estimate, se, lower, upper`` and the difference
        (compared minus reference) and ratio with intervals (``measure`` column).
    """

    title = "Weighted curves"

    @property
    def table(self) -> pd.DataFrame:
        return self._frame


def weighted_curves(
    df: pd.DataFrame,
    ps: PropensityResult,
    duration: str,
    event: str,
    *,
    cause: int | None = None,
    times: Sequence[float] = (),
    cluster: str | None = None,
    labels: tuple[str, str] = ("treated", "control"),
    conf_level: float = 0.95,
) -> WeightedCurvesResult:
    """Weighted Kaplan-Meier (``cause=None``) or Aalen-Johansen cumulative incidence curves
    by arm, with differences and ratios at ``times``.

    Parameters
    ----------
    df, ps : as :func:`weighted_cox`
    duration, event : str
        Time and status: 0 censored, 1 the event (Kaplan-Meier; any other code is
        censoring there), or 1, 2, ... causes (Aalen-Johansen, every cause competing).
    cause : int, optional
        Report the cumulative incidence of this cause (Aalen-Johansen); ``None`` gives the
        Kaplan-Meier survival of ``event == 1``.
    times : list of float
        Times at which the risk (1 - survival, or the cumulative incidence) is compared
        between arms: difference and ratio with intervals.
    cluster : str, optional
    labels : (str, str)
        Names of the compared and reference arm in the tables.
    conf_level : float

    Returns
    -------
    WeightedCurvesResult

    Notes
    -----
    With the weights known, ``se_known`` is the infinitesimal jackknife R's ``survfit``
    reports with case weights (``survfit(Surv(t, e) ~ arm, weights = w)``, robust by
    default; with ``cluster =`` summed per cluster); intervals are on the log scale of the
    reported quantity, as survfit's default. ``se`` also carries the propensity model.

    References
    ----------
    Xie J, Liu C. Adjusted Kaplan-Meier estimator and log-rank test with inverse
    probability of treatment weighting for survival data. Stat Med 2005;24:3089-3110.
    Cole SR, Hernan MA. Adjusted survival curves with inverse probability weights. Comput
    Methods Programs Biomed 2004;75:45-49. Therneau TM. The survival package: multi-state
    models and competing risks (infinitesimal jackknife with weights).
    """
    z = z_value(conf_level)
    cols = [duration, event, *([cluster] if cluster else [])]
    d = _aligned(df, ps, cols)
    if d[[duration, event]].isna().any().any():
        raise ValueError("missing outcome values among the people the propensity model kept")
    t, e = durations_events(d, duration, event, multi=True)
    if cause is None:
        e = (e == 1).astype(int)
        causes, col = [1], 0  # survival = state 0
    else:
        causes = sorted({int(c) for c in np.unique(e[e > 0])} | {int(cause)})
        col = 1 + causes.index(int(cause))
    codes, G = _clusters(d, cluster)
    a = ps.treated.to_numpy()
    phi_c = _cluster_sums(ps.influence, codes, G)
    times = [float(x) for x in times]

    def curves(w):
        out = []
        for m in (a, ~a):
            out.append(_aj_weighted(t[m], e[m], w[m], causes, codes[m], G, phi_c, times))
        return out

    w0 = ps.weights.to_numpy()
    base = curves(w0)
    grid = [b[0] for b in base]

    def values(alpha):
        w = ps.weights_at(alpha)
        res = []
        for m, g in zip((a, ~a), grid):
            tt, S, *_ = _aj_weighted(t[m], e[m], w[m], causes, codes[m], G,
                                     np.zeros((G, 0)), (), influence=False)
            # the perturbed curve at the base grid (same observed times: same grid)
            res.append(S[:, col])
            # risks at the report times
            idx = np.searchsorted(tt, times, side="right") - 1
            res.append(np.where(idx >= 0, S[np.maximum(idx, 0), col], 1.0 if col == 0 else 0.0))
        return np.concatenate(res)

    J = _jacobian(values, ps.alpha, _steps(ps._design.X))
    PhiPhi = phi_c.T @ phi_c
    frames = []
    pos = 0
    rep = {}
    for (tt, S, V, VPhi, at_rep, Y), m, lab in zip(base, (a, ~a), labels):
        nt = len(tt)
        D = J[pos:pos + nt]  # (nt, p)
        Dr = J[pos + nt:pos + nt + len(times)]
        pos += nt + len(times)
        est = S[:, col]
        var_k = V[:, col]
        var = var_k + 2 * np.einsum("tp,tp->t", D, VPhi[:, col, :]) + np.einsum(
            "tp,pq,tq->t", D, PhiPhi, D)
        se, se_k = np.sqrt(np.maximum(var, 0)), np.sqrt(var_k)
        with np.errstate(divide="ignore", invalid="ignore"):
            xx = np.where(est == 0, np.nan, est)
            lower = np.where(se == 0, est, np.exp(np.log(xx) - z * se / xx))
            upper = np.where(se == 0, est, np.minimum(np.exp(np.log(xx) + z * se / xx), 1.0))
        frames.append(pd.DataFrame({"group": lab, "time": tt, "n_risk": Y, "estimate": est,
                                    "se": se, "lower": lower, "upper": upper,
                                    "se_known": se_k}))
        for k, x in enumerate(times):
            rep[(lab, x)] = (at_rep[x][:, col], Dr[k])
    table = pd.concat(frames, ignore_index=True)
    at_rows = []
    sign = -1.0 if col == 0 else 1.0  # risks: 1 - survival, or the incidence itself
    for x in times:
        risks, infl = {}, {}
        for lab in labels:
            tab = table[table["group"] == lab]
            k = int(np.searchsorted(tab["time"].to_numpy(), x, side="right")) - 1
            s = tab["estimate"].iloc[k] if k >= 0 else (1.0 if col == 0 else 0.0)
            risks[lab] = 1 - s if col == 0 else s
            a_c, Dk = rep[(lab, x)]
            infl[lab] = (sign * a_c, sign * (phi_c @ Dk))  # known part, carried part
        r1, r0 = risks[labels[0]], risks[labels[1]]
        k1, c1 = infl[labels[0]]
        k0, c0 = infl[labels[1]]
        for lab, r, (kk, cc) in ((labels[0], r1, infl[labels[0]]), (labels[1], r0, infl[labels[1]])):
            se_k = np.sqrt(np.sum(kk**2))
            se = np.sqrt(np.sum((kk + cc) ** 2))
            at_rows.append(dict(time=x, measure=f"risk {lab}", estimate=r, lower=r - z * se,
                                upper=r + z * se, se=se, se_known=se_k))
        diff_k, diff = k1 - k0, (k1 + c1) - (k0 + c0)
        se_k, se = np.sqrt(np.sum(diff_k**2)), np.sqrt(np.sum(diff**2))
        rd = r1 - r0
        at_rows.append(dict(time=x, measure="risk difference", estimate=rd, lower=rd - z * se,
                            upper=rd + z * se, se=se, se_known=se_k))
        if r1 > 0 and r0 > 0:
            lk = k1 / r1 - k0 / r0
            lc = (k1 + c1) / r1 - (k0 + c0) / r0
            se_k, se = np.sqrt(np.sum(lk**2)), np.sqrt(np.sum(lc**2))
            lrr = np.log(r1 / r0)
            at_rows.append(dict(time=x, measure="risk ratio", estimate=r1 / r0,
                                lower=np.exp(lrr - z * se), upper=np.exp(lrr + z * se), se=se,
                                se_known=se_k))
    res = WeightedCurvesResult(table, [])
    res.at = pd.DataFrame(at_rows)
    res.kind = "Kaplan-Meier" if cause is None else f"Aalen-Johansen (cause {cause})"
    res.estimand = f"{ps.estimand}-weighted {'survival' if cause is None else 'cumulative incidence'}"
    res.n_clusters = G
    res.title = f"Weighted {res.kind} ({ps.estimand} weights)"
    return res


# --------------------------------------------------------------------------- rates

def weighted_rate_ratio(
    df: pd.DataFrame,
    ps: PropensityResult,
    count: str,
    person_time: str,
    *,
    cluster: str | None = None,
    conf_level: float = 0.95,
) -> WeightedEffectResult:
    """Ratio of weighted event rates per person-time (compared / reference arm).

    People without person-time (and so without events) add nothing to either sum.

    ``rate_a = sum_{arm a} w y / sum_{arm a} w t``: the estimate of a weighted Poisson
    model of ``count`` on arm with offset ``log(person_time)`` (R ``glm(y ~ arm +
    offset(log(t)), quasipoisson, weights = w)``), whose sandwich variance
    (``sandwich::vcovCL``, HC0) is ``se_known``; valid under any overdispersion.

    References
    ----------
    Robins JM, Hernan MA, Brumback B. Marginal structural models and causal inference in
    epidemiology. Epidemiology 2000;11:550-560. Zeileis A. Object-oriented computation of
    sandwich estimators. J Stat Softw 2006;16(9).
    """
    d = _aligned(df, ps, [count, person_time, *([cluster] if cluster else [])])
    if d[[count, person_time]].isna().any().any() or (d[person_time] < 0).any():
        raise ValueError("counts and person-time (>= 0) are needed for everyone the propensity "
                         "model kept")
    if ((d[person_time] == 0) & (d[count] > 0)).any():
        raise ValueError("events without person-time")
    y, pt = d[count].to_numpy(float), d[person_time].to_numpy(float)
    a = ps.treated.to_numpy()
    codes, G = _clusters(d, cluster)

    def parts(w):
        r1 = np.sum(w[a] * y[a]) / np.sum(w[a] * pt[a])
        r0 = np.sum(w[~a] * y[~a]) / np.sum(w[~a] * pt[~a])
        return r1, r0

    w = ps.weights.to_numpy()
    r1, r0 = parts(w)
    T1, T0 = np.sum(w[a] * pt[a]), np.sum(w[~a] * pt[~a])
    infl = np.where(a, w * (y - r1 * pt) / (r1 * T1), -w * (y - r0 * pt) / (r0 * T0))
    J = _jacobian(lambda al: np.array([np.log(np.divide(*parts(ps.weights_at(al))))]), ps.alpha,
                  _steps(ps._design.X))
    v_known, v = _variances(infl[:, None], J, ps.influence, codes, G)
    summary = _wald_rows(["rate ratio"], np.array([np.log(r1 / r0)]), v, v_known, [True],
                         conf_level)
    res = WeightedEffectResult(summary, [])
    res.arms = pd.DataFrame({"arm": ["treated", "control"], "rate": [r1, r0],
                             "weighted_events": [np.sum(w[a] * y[a]), np.sum(w[~a] * y[~a])],
                             "weighted_person_time": [T1, T0]})
    res.n, res.n_clusters = len(d), G
    res.estimand = f"marginal rate ratio, {ps.estimand} weights"
    res.method = "ratio of weighted rates (weighted Poisson, sandwich variance); " + CARRIED
    res.title = f"Weighted rate ratio ({ps.estimand} weights)"
    return res


# --------------------------------------------------------------------------- binary

def weighted_risk(
    df: pd.DataFrame,
    ps: PropensityResult,
    outcome: str,
    *,
    method: str = "ipw",
    outcome_covariates: Sequence[str] | None = None,
    cluster: str | None = None,
    conf_level: float = 0.95,
    missing_words: str = "without the outcome",
) -> WeightedEffectResult:
    """Risk difference, risk ratio and odds ratio of a binary outcome between the arms.

    Parameters
    ----------
    df, ps : as :func:`weighted_cox`
        People with a missing outcome are left out (their weights are not renormalised:
        say so, or model the missingness, e.g. with multiple imputation).
    outcome : str
        0/1 (or boolean) column.
    method : {"ipw", "aipw"}
        ``"ipw"``: weighted risks ``sum w y / sum w`` per arm (Hajek). ``"aipw"``: the
        augmented (doubly robust) estimator of the average treatment effect (ATE weights
        only): ``mean(m1 + A (Y - m1) / e) - mean(m0 + (1 - A)(Y - m0) / (1 - e))``, ``m_a``
        from a logistic outcome model fitted in arm ``a``; consistent when either the
        propensity or the outcome model is right.
    outcome_covariates : list of str, optional
        Covariates of the outcome model (``aipw``); the propensity covariates by default.
    cluster : str, optional
    conf_level : float
    missing_words : str
        Who the people with a missing outcome are, for the note ("N of M people
        <missing_words> left out"); the analysis plan's words for the outcome's definition.

    Returns
    -------
    WeightedEffectResult
        Rows ``risk difference``, ``risk ratio``, ``odds ratio``; ``arms`` holds the risks.
        ``se_known`` (IPW) is the sandwich of ``svyglm(y ~ arm)`` (identity, log or logit
        link) treating the weights as known; for AIPW it is the influence-function variance
        with every nuisance model known, and ``se`` carries both the propensity and the
        outcome models.

    References
    ----------
    Lunceford JK, Davidian M. Stratification and weighting via the propensity score in
    estimation of causal treatment effects. Stat Med 2004;23:2937-2960. Robins JM,
    Rotnitzky A, Zhao LP. Estimation of regression coefficients when some regressors are
    not always observed. JASA 1994;89:846-866. Funk MJ, Westreich D, Wiesen C, Sturmer T,
    Brookhart MA, Davidian M. Doubly robust estimation of causal effects. Am J Epidemiol
    2011;173:761-767.
    """
    if method not in ("ipw", "aipw"):
        raise ValueError("method must be 'ipw' or 'aipw'")
    if method == "aipw" and ps.estimand != "ATE":
        raise ValueError("the augmented estimator here targets the ATE: use ATE weights")
    ocov = list(outcome_covariates or ps.covariates)
    cols = [outcome, *([cluster] if cluster else [])]
    d_all = _aligned(df, ps, cols + (ocov if method == "aipw" else []))
    notes = []
    have = d_all[outcome].notna().to_numpy()
    if not have.all():
        notes.append(f"{int((~have).sum())} of {len(d_all)} people {missing_words} left out.")
    y_all = d_all[outcome].astype(float).to_numpy()
    a_all = ps.treated.to_numpy()
    codes, G = _clusters(d_all, cluster)
    n = len(d_all)

    if method == "ipw":
        def risks(w):
            m1, m0 = a_all & have, ~a_all & have
            return (np.sum(w[m1] * y_all[m1]) / np.sum(w[m1]),
                    np.sum(w[m0] * y_all[m0]) / np.sum(w[m0]))

        w = ps.weights.to_numpy()
        p1, p0 = risks(w)
        W1, W0 = np.sum(w[a_all & have]), np.sum(w[~a_all & have])
        yy = np.nan_to_num(y_all)
        i1 = np.where(a_all & have, w * (yy - p1) / W1, 0.0)
        i0 = np.where(~a_all & have, w * (yy - p0) / W0, 0.0)
        nuis = [(ps.alpha, ps.influence, _steps(ps._design.X), lambda al: risks(ps.weights_at(al)))]
        method_words = "weighted risks per arm (Hajek)"
    else:
        cov, names = _prepare_covariates(d_all, ocov, "indicator", notes)
        X = design_matrix(cov, names).to_numpy(float)
        e_fit = ps.ps.to_numpy()
        gam, infl_g = {}, {}
        Xa = {}
        for arm_flag in (True, False):
            m = (a_all == arm_flag) & have
            # terms without variation in this arm (a rare level absent from it) leave its model
            cols = [0] + [j for j in range(1, X.shape[1]) if np.ptp(X[m, j]) > 0]
            dropped = X.shape[1] - len(cols)
            if dropped:
                notes.append(f"the {'compared' if arm_flag else 'reference'} arm's outcome model "
                             f"leaves out {dropped} term(s) constant in that arm.")
            Xa[arm_flag] = X[:, cols]
            g, bread, ok = _fit_logistic(Xa[arm_flag][m], y_all[m].astype(bool),
                                         what="the outcome model")
            if not ok:
                notes.append("an outcome model did not converge (a level with only one outcome?).")
            gam[arm_flag] = g
            mu = 1 / (1 + np.exp(-(Xa[arm_flag] @ g)))
            ig = np.zeros((n, len(g)))
            ig[m] = (Xa[arm_flag][m] * (y_all[m] - mu[m])[:, None]) @ bread
            infl_g[arm_flag] = ig
        yy = np.nan_to_num(y_all)

        def psi(e, g1, g0):
            m1 = 1 / (1 + np.exp(-(Xa[True] @ g1)))
            m0 = 1 / (1 + np.exp(-(Xa[False] @ g0)))
            # people without the outcome: their augmentation term is zero (missing at
            # random given covariates and arm is assumed)
            r1 = np.where(have, a_all * (yy - m1) / e, 0.0)
            r0 = np.where(have, ~a_all * (yy - m0) / (1 - e), 0.0)
            return m1 + r1, m0 + r0

        def risks_at(e, g1, g0):
            s1, s0 = psi(e, g1, g0)
            return s1.mean(), s0.mean()

        s1, s0 = psi(e_fit, gam[True], gam[False])
        p1, p0 = s1.mean(), s0.mean()
        i1, i0 = (s1 - p1) / n, (s0 - p0) / n
        design = ps._design
        nuis = [(ps.alpha, ps.influence, _steps(design.X),
                 lambda al: risks_at(design.scores(al), gam[True], gam[False])),
                (gam[True], infl_g[True], _steps(Xa[True]),
                 lambda g: risks_at(e_fit, g, gam[False])),
                (gam[False], infl_g[False], _steps(Xa[False]),
                 lambda g: risks_at(e_fit, gam[True], g))]
        method_words = ("augmented inverse probability weighting (doubly robust; logistic "
                        f"outcome model per arm on {', '.join(ocov)})")
        if np.any(~have):
            notes.append("AIPW with missing outcomes assumes they are missing at random given "
                         "the covariates and arm; the outcome model fills them in.")

    def effects(r):
        q1, q0 = r
        return np.array([q1 - q0, np.log(q1 / q0), np.log(q1 / (1 - q1)) - np.log(q0 / (1 - q0))])

    est = effects((p1, p0))
    # delta method: gradients of the three effects in (p1, p0)
    grad = np.array([[1.0, -1.0], [1 / p1, -1 / p0],
                     [1 / (p1 * (1 - p1)), -1 / (p0 * (1 - p0))]])
    infl_known = np.column_stack([i1, i0]) @ grad.T
    infl_total = infl_known.copy()
    for coef, phi, steps, fn in nuis:
        Jr = _jacobian(lambda c, fn=fn: np.array(fn(c)), coef, steps)  # (2, p)
        infl_total += phi @ (grad @ Jr).T
    ak = _cluster_sums(infl_known, codes, G)
    at_ = _cluster_sums(infl_total, codes, G)
    summary = _wald_rows(["risk difference", "risk ratio", "odds ratio"], est, at_.T @ at_,
                         ak.T @ ak, [False, True, True], conf_level)
    res = WeightedEffectResult(summary, notes)
    res.arms = pd.DataFrame({"arm": ["treated", "control"], "risk": [p1, p0]})
    res.n, res.n_clusters = int(have.sum()), G
    res.estimand = f"marginal risk difference / ratio, {ps.estimand} weights"
    res.method = method_words + "; " + CARRIED
    res.title = f"Weighted risks ({'AIPW' if method == 'aipw' else 'IPW'}, {ps.estimand})"
    return res
