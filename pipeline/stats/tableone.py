"""Table 1: baseline characteristics by group with standardised mean differences.

Counts and percentages for categorical variables, mean (SD) or median [IQR] for
continuous ones, missing counts, and standardised mean differences (SMD) computed exactly
as the R package ``tableone`` computes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd

from pipeline.stats._eff_design import check_columns, levels_of
from pipeline.stats._result import NotEstimable, Result

_GINV_TOL = np.sqrt(np.finfo(float).eps)  # MASS::ginv's tolerance


class TableOneResult(Result):
    """Table 1 (see :func:`table_one`).

    Attributes
    ----------
    table : pandas.DataFrame
        Long and numeric, one row per variable x level x group: ``variable, level, group,
        kind, n, missing, count, pct, mean, sd, median, q1, q3`` (``n`` non-missing;
        ``count``/``pct`` for categorical levels, percent of non-missing).
    smd : pandas.Series
        Standardised mean difference per variable (mean of the pairwise SMDs when there
        are more than two groups, as tableone reports).
    formatted : pandas.DataFrame
        The printable table: one row per variable (and level), one column per group,
        plus ``SMD`` and ``Missing``.
    groups : list
        Group levels in column order.
    """

    title = "Table 1"

    @property
    def table(self) -> pd.DataFrame:
        return self._frame

    def _main_frame(self) -> pd.DataFrame:
        return self.formatted


def _label(v) -> str:
    """R-like label for a level: 1.0 -> '1', 0.5 -> '0.5', strings unchanged."""
    if isinstance(v, (float, np.floating)):
        return f"{v:g}"
    return str(v)


def smd_continuous(x: pd.Series, g: pd.Series, groups: Sequence) -> float:
    """Mean over group pairs of ``|m_i - m_j| / sqrt((s_i^2 + s_j^2) / 2)``."""
    return smd_from_moments([x[g == k].mean() for k in groups], [x[g == k].var(ddof=1) for k in groups])


def smd_from_moments(means: Sequence[float], variances: Sequence[float]) -> float:
    """:func:`smd_continuous` from each group's mean and variance (ddof 1), e.g. pooled
    from sites' sums and sums of squares."""
    out = []
    for i, j in combinations(range(len(means)), 2):
        diff, pooled = means[i] - means[j], (variances[i] + variances[j]) / 2
        out.append(0.0 if diff == 0 and pooled == 0 else abs(diff) / np.sqrt(pooled))
    return float(np.mean(out))


def smd_categorical(x: pd.Series, g: pd.Series, groups: Sequence, levels: Sequence) -> float:
    """Mean over group pairs of the Yang-Dalton multinomial SMD (Mahalanobis distance).

    ``T`` = difference in level proportions excluding the first level, ``S`` = mean of
    the two multinomial covariance matrices (``p_k(1-p_k)`` diagonal, ``-p_k p_l`` off);
    ``SMD = sqrt(T' S^+ T)`` with ``S^+`` the Moore-Penrose inverse (``MASS::ginv``).
    """
    ok = x.notna()
    tab = pd.crosstab(g[ok], x[ok]).reindex(index=list(groups), columns=list(levels), fill_value=0)
    return smd_from_counts(tab.to_numpy(float))


def smd_from_counts(counts: np.ndarray) -> float:
    """:func:`smd_categorical` from a groups x levels table of counts."""
    counts = np.asarray(counts, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        props = counts / counts.sum(axis=1, keepdims=True)
    if props.shape[1] > 1:
        props = props[:, 1:]
    out = []
    for i, j in combinations(range(props.shape[0]), 2):
        p1, p2 = props[i], props[j]
        S1 = -np.outer(p1, p1)
        np.fill_diagonal(S1, p1 * (1 - p1))
        S2 = -np.outer(p2, p2)
        np.fill_diagonal(S2, p2 * (1 - p2))
        S, T = (S1 + S2) / 2, p1 - p2
        if np.all(S[~np.isnan(S)] == 0):
            out.append(0.0 if np.all(T == 0) else np.nan)
        else:
            out.append(float(np.sqrt(T @ np.linalg.pinv(S, rcond=_GINV_TOL) @ T)))
    return float(np.mean(out))


def table_one(
    df: pd.DataFrame,
    group: str,
    variables: Sequence[str],
    categorical: Sequence[str] | None = None,
    nonnormal: Sequence[str] | None = None,
) -> TableOneResult:
    """Baseline characteristics by group, with standardised mean differences.

    Parameters
    ----------
    df : pandas.DataFrame, shape = (n_samples, n_columns)
        One row per person.
    group : str
        Column defining the groups (columns of the table); two or more levels.
    variables : sequence of str
        Variables to summarise, in row order.
    categorical : sequence of str, optional
        Variables to summarise as counts (%). Default: the non-numeric ones. Levels are
        sorted (or in categorical order); percentages are of non-missing values.
    nonnormal : sequence of str, optional
        Continuous variables to summarise as median [Q1, Q3] (quantile type 7, R's
        default) instead of mean (SD).

    Returns
    -------
    TableOneResult
        ``.table`` (long, numeric), ``.smd`` (per variable), ``.formatted`` (printable),
        ``.notes``.

    Notes
    -----
    SMDs follow tableone (``CreateTableOne(..., smd = TRUE)``): continuous
    ``|m1 - m2| / sqrt((s1^2 + s2^2) / 2)``; categorical (including binary) the
    multivariate form of Yang and Dalton over the levels but the first; missing values
    ignored; with more than two groups the average of the pairwise SMDs. Rows with a
    missing group are dropped (noted).

    References
    ----------
    Yang D, Dalton JE. A unified approach to measuring the effect size between two groups
    using SAS. SAS Global Forum 2012, paper 335-2012. Austin PC. Using the standardized
    difference to compare the prevalence of a binary variable between two groups in
    observational research. Commun Stat Simul Comput 2009;38:1228-34. Flury BK, Riedwyl
    H. Standard distance in univariate and multivariate analysis. Am Stat 1986;40:249-51.
    Yoshida K, Bartel A. tableone: Create 'Table 1' to describe baseline characteristics
    (R package). Hyndman RJ, Fan Y. Sample quantiles in statistical packages. Am Stat
    1996;50:361-5.
    """
    variables = list(variables)
    check_columns(df, [group] + variables)
    notes: list[str] = []
    if categorical is None:
        categorical = [v for v in variables if not pd.api.types.is_numeric_dtype(df[v])
                       or pd.api.types.is_bool_dtype(df[v])]
    categorical, nonnormal = list(categorical), list(nonnormal or [])
    bad = [v for v in categorical + nonnormal if v not in variables]
    if bad:
        raise ValueError(f"{bad} listed as categorical/nonnormal but not in variables")
    both = set(categorical) & set(nonnormal)
    if both:
        raise ValueError(f"{sorted(both)} cannot be both categorical and nonnormal")

    d = df[[group] + variables]
    miss_g = d[group].isna()
    if miss_g.any():
        notes.append(f"{int(miss_g.sum())} row(s) dropped for a missing {group!r}.")
        d = d.loc[~miss_g]
    groups = levels_of(d[group])
    if len(groups) < 2:
        raise NotEstimable(f"group {group!r} needs at least two levels, found {groups}")
    g = d[group]
    glabels = [_label(k) for k in groups]

    rows: list[dict] = []
    smd: dict[str, float] = {}
    masks = [(g == k).to_numpy() for k in groups]   # each group's rows, found once
    fmt_rows: list[tuple[str, dict]] = [("n", {lab: f"{int(m.sum())}" for lab, m in zip(glabels, masks, strict=True)})]
    for v in variables:
        x = d[v]
        nmiss = int(x.isna().sum())
        if v in categorical:
            levels = levels_of(x)
            smd[v] = smd_categorical(x, g, groups, levels)
            header = f"{v} (%)"
            fmt_rows.append((header, {"SMD": f"{smd[v]:.3f}", "Missing": str(nmiss)}))
            # per group: missing (code -1), then each level's count, from the codes at once
            codes = pd.Categorical(x, categories=levels).codes.astype(np.int64) + 1
            counts = [np.bincount(codes[m], minlength=len(levels) + 1) for m in masks]
            for li, lev in enumerate(levels):
                cells = {}
                for lab, c in zip(glabels, counts, strict=True):
                    nk = int(c[1:].sum())
                    cnt = int(c[li + 1])
                    pct = 100 * cnt / nk if nk else np.nan
                    rows.append({"variable": v, "level": _label(lev), "group": lab,
                                 "kind": "categorical", "n": nk, "missing": int(c[0]),
                                 "count": cnt, "pct": pct})
                    cells[lab] = f"{cnt} ({pct:.1f})"
                fmt_rows.append((f"   {_label(lev)}", cells))
        else:
            if not pd.api.types.is_numeric_dtype(x):
                raise ValueError(f"variable {v!r} is not numeric; list it in categorical")
            x = x.astype(float)
            smd[v] = smd_continuous(x, g, groups)
            kind = "nonnormal" if v in nonnormal else "normal"
            cells = {}
            for lab, m in zip(glabels, masks, strict=True):
                xk = x[m]
                xx = xk.dropna().to_numpy()
                q1, med, q3 = (np.quantile(xx, [0.25, 0.5, 0.75]) if xx.size else [np.nan] * 3)
                row = {"variable": v, "level": "", "group": lab, "kind": kind, "n": int(xx.size),
                       "missing": int(xk.isna().sum()),
                       "mean": xx.mean() if xx.size else np.nan,
                       "sd": xx.std(ddof=1) if xx.size > 1 else np.nan,
                       "median": med, "q1": q1, "q3": q3}
                rows.append(row)
                cells[lab] = (f"{med:.2f} [{q1:.2f}, {q3:.2f}]" if kind == "nonnormal"
                              else f"{row['mean']:.2f} ({row['sd']:.2f})")
            stat = "median [IQR]" if kind == "nonnormal" else "mean (SD)"
            cells.update({"SMD": f"{smd[v]:.3f}", "Missing": str(nmiss)})
            fmt_rows.append((f"{v} ({stat})", cells))
        if nmiss:
            notes.append(f"{v}: {nmiss} missing value(s), excluded from its summaries and SMD.")

    cols = ["variable", "level", "group", "kind", "n", "missing", "count", "pct", "mean",
            "sd", "median", "q1", "q3"]
    table = pd.DataFrame(rows).reindex(columns=cols)
    formatted = pd.DataFrame([c for _, c in fmt_rows], index=[r for r, _ in fmt_rows],
                             columns=glabels + ["SMD", "Missing"]).fillna("")
    res = TableOneResult(table, notes)
    res.smd = pd.Series(smd, name="smd")
    res.formatted = formatted
    res.groups = glabels
    res.title = f"Table 1 by {group}"
    return res
