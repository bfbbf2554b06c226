"""Shared input handling for the survival estimators: column checks and dropped-row notes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats


def check_columns(df: pd.DataFrame, columns: Sequence[str]) -> None:
    """Raise ``KeyError`` naming every requested column that ``df`` lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(f"column(s) not in data frame: {', '.join(map(repr, missing))}")


def complete_rows(
    df: pd.DataFrame, columns: Sequence[str], notes: list[str]
) -> pd.DataFrame:
    """Rows of ``df`` with no missing value in ``columns``; add a note naming what was dropped."""
    cols = list(dict.fromkeys(c for c in columns if c is not None))
    check_columns(df, cols)
    sub = df[cols]
    bad = sub.isna()
    n_bad = int(bad.any(axis=1).sum())
    if n_bad:
        per = ", ".join(f"{c}: {int(bad[c].sum())}" for c in cols if bad[c].any())
        notes.append(f"{n_bad} of {len(df)} rows dropped for missing values ({per}).")
        return df.loc[~bad.any(axis=1)]
    return df


def durations_events(
    d: pd.DataFrame, duration: str, event: str, *, multi: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Validated float times and integer event codes (0 = censored)."""
    t = pd.to_numeric(d[duration]).to_numpy(dtype=float)
    if np.any(t < 0):
        raise ValueError(f"{duration!r} has negative times")
    e_raw = d[event]
    if e_raw.dtype == bool:
        e = e_raw.to_numpy(dtype=int)
    else:
        e_f = pd.to_numeric(e_raw).to_numpy(dtype=float)
        if np.any(e_f != np.round(e_f)) or np.any(e_f < 0):
            raise ValueError(f"{event!r} must hold integer codes >= 0 (0 = censored)")
        e = e_f.astype(int)
    if not multi and np.any(e > 1):
        raise ValueError(f"{event!r} must be 0 (censored) or 1 (event)")
    return t, e


def z_value(conf_level: float) -> float:
    """Two-sided normal quantile for ``conf_level``."""
    if not 0 < conf_level < 1:
        raise ValueError("conf_level must lie strictly between 0 and 1")
    return float(stats.norm.ppf(1 - (1 - conf_level) / 2))


def group_labels(values: pd.Series) -> list:
    """Sorted distinct labels of a grouping column (as R orders factor levels)."""
    return sorted(pd.unique(values), key=lambda v: (str(type(v)), v))


def group_codes(values: pd.Series) -> tuple[list, np.ndarray]:
    """:func:`group_labels` and each row's position among them: one pass over the rows
    (the distinct values found and each row coded at once), after which selecting a group
    compares integers, not (object) labels."""
    codes, uniques = pd.factorize(values, use_na_sentinel=False)   # in pd.unique's order
    order = sorted(range(len(uniques)), key=lambda i: (str(type(uniques[i])), uniques[i]))
    rank = np.empty(len(uniques), dtype=np.intp)
    rank[order] = np.arange(len(uniques))
    return [uniques[i] for i in order], rank[codes]


def group_rows(gcode: np.ndarray, n_groups: int) -> list[np.ndarray]:
    """The positions of each group's rows (``gcode == k``), in the rows' order: one stable
    sort, not a pass over every row per group (a national extract has hundreds)."""
    order = np.argsort(gcode, kind="stable")
    bounds = np.searchsorted(gcode[order], np.arange(n_groups + 1))
    return [order[bounds[k]:bounds[k + 1]] for k in range(n_groups)]


def design_matrix(
    d: pd.DataFrame, covariates: Sequence[str], notes: list[str]
) -> tuple[np.ndarray, list[str], dict[str, list[int]]]:
    """Model matrix of ``covariates`` with text columns coded as factors, as R's formulas do.

    A numeric or boolean column enters as it is. A text column (or a pandas
    ``Categorical``) is a factor with treatment contrasts, R's default
    ``contr.treatment``: one 0/1 column per level but the first, the reference. The levels
    are a ``Categorical``'s categories in their order, or else the distinct values sorted
    (R's ``factor()`` of a character vector in the C locale); levels absent from ``d`` are
    dropped. Columns of a factor are named ``column[T.level]`` and a note names the
    reference level. Any other column (dates, mixed text and numbers) is refused in one
    line naming it.

    Returns
    -------
    X : ndarray, shape (n_rows, n_columns)
    names : list of str, length n_columns
    terms : dict
        Each covariate and the positions of its columns in ``X`` (one for a number, levels
        - 1 for a factor): tests of a whole term (e.g. ``cox.zph``'s) use them.
    """
    # the columns' kinds and levels first, then each written into one preallocated matrix:
    # building blocks and stacking them held the model matrix twice (a national model's
    # is 0.2 GB)
    fills: list = []   # (values of a number, or a factor's codes and number of levels)
    names: list[str] = []
    terms: dict[str, list[int]] = {}
    for col in covariates:
        s = d[col]
        if isinstance(s.dtype, pd.CategoricalDtype):
            kind = "categorical"
        elif pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):
            kind = "numeric"
        else:
            kind = pd.api.types.infer_dtype(s, skipna=True)
        if kind in ("integer", "floating", "mixed-integer-float", "boolean", "decimal", "numeric"):
            fills.append(s)
            terms[col] = [len(names)]
            names.append(col)
            continue
        if kind not in ("string", "categorical"):
            raise ValueError(
                f"covariate {col!r} is neither numeric nor text (its values are {kind}, dtype "
                f"{s.dtype}): give numbers, or text levels to enter it as a factor")
        if kind == "categorical":
            cat = s.astype("category") if not isinstance(s.dtype, pd.CategoricalDtype) else s
            present = set(cat.dropna().unique())
            levels = [lv for lv in cat.cat.categories if lv in present]
        else:
            levels = sorted(s.dropna().unique())
        if len(levels) < 2:
            # one level: a constant column, refused below like any constant covariate
            fills.append(None)
            terms[col] = [len(names)]
            names.append(col)
            continue
        fills.append((pd.Categorical(s, categories=levels).codes, len(levels)))
        terms[col] = list(range(len(names), len(names) + len(levels) - 1))
        names += [f"{col}[T.{lv}]" for lv in levels[1:]]
        notes.append(f"{col}: text entered as a factor, {len(levels)} levels compared with the "
                     f"reference level {levels[0]!r} (treatment contrasts, as R).")
    X = np.empty((len(d), len(names)))
    j = 0
    for fill in fills:
        if fill is None:
            X[:, j] = 0.0
            j += 1
        elif isinstance(fill, tuple):
            codes, k = fill
            X[:, j:j + k - 1] = codes[:, None] == np.arange(1, k)[None, :]
            j += k - 1
        else:
            X[:, j] = pd.to_numeric(fill).to_numpy(dtype=float)
            j += 1
    return X, names, terms


def constant_columns(X: np.ndarray) -> np.ndarray:
    """Whether each column of ``X`` has ``X.std(axis=0) == 0``, without the ``n x p`` array
    of deviations ``std`` builds (a national model matrix's size: 0.2 GB): the same mean,
    then each column's squared deviations summed alone. The sum of non-negative terms is 0
    (or, divided by ``n``, underflows to 0) in every order of summation or in none: it is 0
    only when every term is, and a sum small enough to underflow is of subnormal terms,
    whose sums are exact. NaN or infinite values give False, as ``std`` gives NaN."""
    n, p = X.shape
    mean = X.mean(axis=0)   # np.std's own: the same reduction, divided by n
    out = np.zeros(p, dtype=bool)
    for j in range(p):
        dev = X[:, j] - mean[j]
        np.multiply(dev, dev, out=dev)
        out[j] = dev.sum() / n == 0
    return out
