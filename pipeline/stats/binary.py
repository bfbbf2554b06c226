"""Risk difference, risk ratio and odds ratio for a binary outcome between two groups.

For outcomes such as relapse, readmission within a year, or return to work, compared
between two arms (Open Dialogue vs treatment as usual). Each function returns the per-arm
risks with Wilson score intervals and the effect with its interval(s); with ``cluster``
(e.g. site or team as the unit of allocation) variances are inflated by the design effect.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from pipeline.stats._eff_design import check_columns, check_conf_level
from pipeline.stats._result import NotEstimable, Result


class BinaryEffectResult(Result):
    """Effect measure for a binary outcome between two groups.

    Attributes
    ----------
    summary : pandas.DataFrame
        One row per interval method: ``measure, method, estimate, lower, upper, se, z,
        p`` (``se`` is on the log scale for ratios; ``z`` and ``p`` are Wald tests of no
        difference; ``nan`` for score intervals, which have no single se).
    arms : pandas.DataFrame
        One row per group (comparison first, then reference): ``group, events, n, risk,
        lower, upper`` (Wilson score interval), plus ``clusters`` and ``design_effect``
        when cluster-adjusted.
    icc : float or None
        Intracluster correlation used (estimated or given); ``None`` without clusters.
    """

    title = "Binary effect"

    @property
    def summary(self) -> pd.DataFrame:
        return self._frame


def _wilson(x, n, conf_level):
    """Wilson score interval; x and n may be non-integer (effective counts)."""
    z = stats.norm.ppf(1 - (1 - conf_level) / 2)
    p = x / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return centre - half, centre + half


def _anova_icc(cells: pd.DataFrame) -> float:
    """ANOVA estimator of the ICC for a binary outcome, clusters nested in two arms.

    ``cells`` has one row per cluster: ``arm, y`` (events), ``m`` (size).
    Donner & Klar (2000), section 6.2.1 (:func:`pipeline.stats.icc.anova_icc_components`);
    truncated at 0.
    """
    from pipeline.stats.icc import anova_icc_components

    if len(cells) <= 2:
        raise NotEstimable("estimating the ICC needs more than two clusters; give icc=")
    return max(0.0, anova_icc_components(cells.m, cells.y, cells.y, cells.arm)["icc"])


def _prepare(df, outcome, group, reference, cluster, icc, conf_level):
    check_conf_level(conf_level)
    check_columns(df, [outcome, group] + ([cluster] if cluster else []))
    notes: list[str] = []
    used = [outcome, group] + ([cluster] if cluster else [])
    d = df[used]
    miss = d.isna().any(axis=1)
    if miss.any():
        cols = [c for c in used if d[c].isna().any()]
        notes.append(f"{int(miss.sum())} row(s) dropped for missing values in {cols}.")
        d = d.loc[~miss]
    y = d[outcome]
    if pd.api.types.is_bool_dtype(y):
        y = y.astype(int)
    if not set(pd.unique(y)) <= {0, 1}:
        raise ValueError(f"outcome {outcome!r} must be 0/1 or boolean, got values {sorted(pd.unique(y))[:5]}")
    levels = list(pd.unique(d[group]))
    if reference not in levels:
        raise NotEstimable(f"reference level {reference!r} not found in {group!r}: {levels}")
    if len(levels) != 2:
        raise NotEstimable(f"group {group!r} must have exactly two levels, found {levels}")
    comparison = next(lev for lev in levels if lev != reference)
    order = [comparison, reference]
    arms = pd.DataFrame(
        {
            "group": order,
            "events": [int(y[d[group] == g].sum()) for g in order],
            "n": [int((d[group] == g).sum()) for g in order],
        }
    )
    c = np.ones(2)
    used_icc = None
    if cluster:
        cells = (
            pd.DataFrame({"arm": d[group], "cl": d[cluster], "y": y})
            .groupby(["arm", "cl"], observed=True)
            .agg(y=("y", "sum"), m=("y", "size"))
            .reset_index()
        )
        both = cells.groupby("cl").arm.nunique()
        if (both > 1).any():
            notes.append(
                f"{int((both > 1).sum())} cluster(s) contain both groups; each cluster-by-group "
                "cell is treated as a cluster."
            )
        if icc is None:
            used_icc = _anova_icc(cells)
            notes.append(f"ICC estimated as {used_icc:.4g} (one-way ANOVA, clusters within groups).")
        else:
            if not 0 <= icc < 1:
                raise ValueError(f"icc must lie in [0, 1), got {icc!r}")
            used_icc = float(icc)
        # variance inflation for variable cluster sizes: sum m (1 + (m - 1) rho) / sum m
        infl = cells.assign(w=cells.m * (1 + (cells.m - 1) * used_icc)).groupby("arm").agg(
            w=("w", "sum"), m=("m", "sum"), k=("m", "size"))
        c = np.array([infl.loc[g, "w"] / infl.loc[g, "m"] for g in order])
        arms["clusters"] = [int(infl.loc[g, "k"]) for g in order]
        arms["design_effect"] = c
        notes.append(
            "Variances inflated by each group's design effect sum(m(1+(m-1)ICC))/sum(m) "
            "(Donner, Birkett & Buck 1981); Wilson intervals use the effective sample size n/DE."
        )
    arms["risk"] = arms.events / arms.n
    lo, hi = _wilson(arms.risk * arms.n / c, arms.n / c, conf_level)
    arms["lower"], arms["upper"] = lo, hi
    return arms, c, used_icc, notes


def _row(measure, method, est, lower, upper, se=np.nan, z=np.nan):
    p = 2 * stats.norm.sf(abs(z)) if np.isfinite(z) else np.nan
    return {"measure": measure, "method": method, "estimate": est, "lower": lower,
            "upper": upper, "se": se, "z": z, "p": p}


def _result(rows, arms, icc, notes, title, conf_level):
    res = BinaryEffectResult(pd.DataFrame(rows), notes)
    res.arms, res.icc, res.conf_level = arms, icc, conf_level
    res.title = f"{title}: {arms.group[0]} vs {arms.group[1]}"
    return res


_PARAMS = """
    Parameters
    ----------
    df : pandas.DataFrame, shape = (n_samples, n_columns)
        One row per person.
    outcome : str
        Column with the binary outcome, 0/1 or boolean (1 = event).
    group : str
        Column with exactly two levels.
    reference : object
        The reference level of ``group`` (the denominator / subtrahend); the other level
        is the comparison.
    conf_level : float
        Level of the confidence intervals.
    cluster : str, optional
        Column identifying clusters (e.g. team or site as the unit of allocation). The
        variance of each group's risk is multiplied by its design effect
        ``DE = sum_i m_i (1 + (m_i - 1) rho) / sum_i m_i`` over its clusters of size
        ``m_i``; score intervals use the effective sample size ``n / DE``.
    icc : float, optional
        Intracluster correlation ``rho``; if omitted with ``cluster`` it is estimated by
        the one-way ANOVA estimator with clusters nested in groups, truncated at 0.
"""

_REFS = """
    References
    ----------
    Wilson EB. Probable inference, the law of succession, and statistical inference.
    J Am Stat Assoc 1927;22:209-12. Newcombe RG. Interval estimation for the difference
    between independent proportions: comparison of eleven methods. Stat Med
    1998;17:873-90 (method 10). Agresti A. Categorical Data Analysis, 3rd ed. Wiley,
    2013 (section 3.1). Donner A, Birkett N, Buck C. Randomization by cluster: sample
    size requirements and analysis. Am J Epidemiol 1981;114:906-14. Donner A, Klar N.
    Design and Analysis of Cluster Randomization Trials in Health Research. Arnold, 2000
    (chapter 6).
"""


def risk_difference(df, outcome, group, reference, conf_level=0.95, cluster=None, icc=None):
    """Risk difference (comparison minus reference) with Wald and Newcombe intervals."""
    arms, c, used_icc, notes = _prepare(df, outcome, group, reference, cluster, icc, conf_level)
    (p1, p0), (n1, n0) = arms.risk.to_numpy(), arms.n.to_numpy()
    (l1, l0), (u1, u0) = arms.lower.to_numpy(), arms.upper.to_numpy()
    zc = stats.norm.ppf(1 - (1 - conf_level) / 2)
    rd = p1 - p0
    se = np.sqrt(c[0] * p1 * (1 - p1) / n1 + c[1] * p0 * (1 - p0) / n0)
    z = rd / se if se > 0 else np.nan
    if se == 0:
        notes.append("Wald standard error is 0 (all or no events in both groups): use the "
                     "Newcombe interval.")
    rows = [
        _row("risk difference", "Wald", rd, rd - zc * se, rd + zc * se, se, z),
        _row("risk difference", "Newcombe hybrid score", rd,
             rd - np.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2),
             rd + np.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)),
    ]
    return _result(rows, arms, used_icc, notes, "Risk difference", conf_level)


def _log_ratio(arms, c, conf_level, notes, odds):
    x = arms.events.to_numpy(float)
    n = arms.n.to_numpy(float)
    if odds:
        zero = np.any(x == 0) or np.any(x == n)
    else:
        zero = np.any(x == 0)
    if zero:
        if (not odds and np.all(x == 0)) or (odds and (np.all(x == 0) or np.all(x == n))):
            notes.append("No events (or only events) in both groups: the ratio is undefined.")
            return np.nan, np.nan, np.nan, np.nan
        x, n = x + 0.5, n + 1.0
        notes.append("A zero cell: 0.5 added to every cell of the 2x2 table (Haldane-Anscombe).")
    if odds:
        est = np.log(x[0] / (n[0] - x[0])) - np.log(x[1] / (n[1] - x[1]))
        se = np.sqrt(np.sum(c * (1 / x + 1 / (n - x))))
    else:
        est = np.log(x[0] / n[0]) - np.log(x[1] / n[1])
        se = np.sqrt(np.sum(c * (1 - x / n) / x))
    zc = stats.norm.ppf(1 - (1 - conf_level) / 2)
    return est, se, est - zc * se, est + zc * se


def risk_ratio(df, outcome, group, reference, conf_level=0.95, cluster=None, icc=None):
    """Risk ratio (comparison / reference) with a Wald interval on the log scale."""
    arms, c, used_icc, notes = _prepare(df, outcome, group, reference, cluster, icc, conf_level)
    est, se, lo, hi = _log_ratio(arms, c, conf_level, notes, odds=False)
    rows = [_row("risk ratio", "Wald (log scale)", np.exp(est), np.exp(lo), np.exp(hi), se,
                 est / se if se > 0 else np.nan)]
    return _result(rows, arms, used_icc, notes, "Risk ratio", conf_level)


def odds_ratio(df, outcome, group, reference, conf_level=0.95, cluster=None, icc=None):
    """Odds ratio (comparison / reference) with a Wald (Woolf) interval on the log scale."""
    arms, c, used_icc, notes = _prepare(df, outcome, group, reference, cluster, icc, conf_level)
    est, se, lo, hi = _log_ratio(arms, c, conf_level, notes, odds=True)
    rows = [_row("odds ratio", "Wald (log scale)", np.exp(est), np.exp(lo), np.exp(hi), se,
                 est / se if se > 0 else np.nan)]
    return _result(rows, arms, used_icc, notes, "Odds ratio", conf_level)


risk_difference.__doc__ += f"""
    ``Wald``: ``p1 - p0 +/- z sqrt(DE1 p1(1-p1)/n1 + DE0 p0(1-p0)/n0)``. ``Newcombe
    hybrid score`` (method 10): combines the Wilson intervals ``(l1, u1)``, ``(l0, u0)``
    of the two risks: ``[d - sqrt((p1-l1)^2 + (u0-p0)^2), d + sqrt((u1-p1)^2 +
    (p0-l0)^2)]``; preferred with small counts, and defined when a risk is 0 or 1.
{_PARAMS}
    Returns
    -------
    BinaryEffectResult
        ``.summary`` (rows ``Wald`` and ``Newcombe hybrid score``), ``.arms``, ``.notes``.
{_REFS}"""

risk_ratio.__doc__ += f"""
    ``se(log RR) = sqrt(DE1 (1-p1)/x1 + DE0 (1-p0)/x0)``. With a zero count, 0.5 is
    added to every cell (noted); with no events in either group the ratio is undefined.
{_PARAMS}
    Returns
    -------
    BinaryEffectResult
        ``.summary`` (one row), ``.arms``, ``.notes``.
{_REFS}"""

odds_ratio.__doc__ += f"""
    ``se(log OR) = sqrt(DE1 (1/a + 1/b) + DE0 (1/c + 1/d))`` (Woolf). With a zero cell,
    0.5 is added to every cell (noted).
{_PARAMS}
    Returns
    -------
    BinaryEffectResult
        ``.summary`` (one row), ``.arms``, ``.notes``.
{_REFS}"""
