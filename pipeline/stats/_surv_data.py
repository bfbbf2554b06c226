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
    """:func:`group_labels` and each row's position among them: one pass over the rows,
    after which selecting a group compares integers, not (object) labels."""
    labels = group_labels(values)
    return labels, pd.Index(labels).get_indexer(values)
