"""Private helpers shared by the effect-measure modules: R-style design matrices and checks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def check_columns(df: pd.DataFrame, columns: Sequence[str], what: str = "data frame") -> None:
    """Raise a ``KeyError`` naming every column of ``columns`` missing from ``df``."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(f"column(s) {missing} not found in the {what}; columns are {list(df.columns)}")


def check_conf_level(conf_level: float) -> None:
    if not 0 < conf_level < 1:
        raise ValueError(f"conf_level must lie strictly between 0 and 1, got {conf_level!r}")


def levels_of(series: pd.Series) -> list:
    """Levels of a categorical column in R's order: categories if categorical, else sorted."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        present = set(series.dropna().unique())
        return [c for c in series.cat.categories if c in present]
    return sorted(series.dropna().unique().tolist())


def is_categorical(series: pd.Series) -> bool:
    return (
        isinstance(series.dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(series)
        or pd.api.types.is_string_dtype(series)
        or pd.api.types.is_bool_dtype(series)
    )


def design_matrix(
    df: pd.DataFrame, covariates: Sequence[str], intercept: bool = True
) -> pd.DataFrame:
    """Model matrix as R's ``model.matrix(~ a + b, df)`` with treatment contrasts.

    Numeric columns enter as they are; categorical (category, object, string or bool)
    columns enter as indicators of every level but the first (the reference), named
    ``<column><level>`` exactly as R names them. Levels follow the categorical order if
    the column is a ``pd.Categorical``, else sorted order.
    """
    cols: dict[str, np.ndarray] = {}
    if intercept:
        cols["(Intercept)"] = np.ones(len(df))
    for name in covariates:
        s = df[name]
        if is_categorical(s):
            levels = levels_of(s)
            if pd.api.types.is_bool_dtype(s):
                levels = [False, True]
            for lev in levels[1:]:
                cols[f"{name}{'TRUE' if lev is True else lev}"] = (s == lev).to_numpy(float)
        else:
            cols[name] = s.to_numpy(float)
    return pd.DataFrame(cols, index=df.index)
