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
    the column is a ``pd.Categorical``, else sorted order. The dense form of
    :func:`sparse_design`.
    """
    names, X = dense_design(df, covariates, intercept)
    return pd.DataFrame(X, columns=names, index=df.index)


def _terms(df: pd.DataFrame, covariates: Sequence[str], intercept: bool):
    """The terms of :func:`design_matrix`: ``(names, parts)``, a part per term either
    ``(None, values)`` (one numeric column) or ``(codes, levels)`` (a factor: each row's
    level, 0 the reference and -1 missing, which gets no indicator)."""
    n = len(df)
    names: list[str] = []
    parts: list[tuple] = []
    if intercept:
        names.append("(Intercept)")
        parts.append((None, np.ones(n)))
    for name in covariates:
        s = df[name]
        if is_categorical(s):
            levels = levels_of(s)
            if pd.api.types.is_bool_dtype(s):
                levels = [False, True]
            code = pd.Categorical(s, categories=levels).codes.astype(np.int64)
            parts.append((code, levels))
            names += [f"{name}{'TRUE' if lev is True else lev}" for lev in levels[1:]]
        else:
            parts.append((None, s.to_numpy(float)))
            names.append(name)
    return names, parts


def dense_design(df: pd.DataFrame, covariates: Sequence[str], intercept: bool = True
                 ) -> tuple[list[str], np.ndarray]:
    """Column names and the model matrix of :func:`design_matrix` as an array, built
    directly (not through the sparse matrix)."""
    names, parts = _terms(df, covariates, intercept)
    return names, dense_matrix(len(df), len(names), parts)


def dense_matrix(n: int, p: int, parts: list[tuple], transposed: bool = False) -> np.ndarray:
    """The ``n x p`` model matrix of the terms ``parts`` (:func:`_terms`); with
    ``transposed``, its ``p x n`` transpose, built as such (each column a contiguous row)."""
    X = np.zeros((p, n) if transposed else (n, p))
    col = 0
    for codes, values in parts:
        if codes is None:
            X[(col, slice(None)) if transposed else (slice(None), col)] = values
            col += 1
            continue
        rows = np.flatnonzero(codes > 0)
        cols = col + codes[rows] - 1
        X[(cols, rows) if transposed else (rows, cols)] = 1.0
        col += max(len(values) - 1, 0)
    return X


def sparse_design(
    df: pd.DataFrame, covariates: Sequence[str], intercept: bool = True
) -> tuple[list[str], "sparse.csr_matrix"]:
    """Column names and the model matrix of :func:`design_matrix` as a ``scipy.sparse``
    CSR matrix: a categorical column of k levels costs one stored value per row instead
    of k - 1, so a site term over a national extract stays small."""
    from scipy import sparse

    n = len(df)
    names, parts = _terms(df, covariates, intercept)
    blocks = []
    for codes, values in parts:
        if codes is None:
            blocks.append(sparse.csr_matrix(values.reshape(-1, 1)))
        else:
            rows = np.flatnonzero(codes > 0)
            blocks.append(sparse.csr_matrix((np.ones(len(rows)), (rows, codes[rows] - 1)),
                                            shape=(n, max(len(values) - 1, 0))))
    X = sparse.hstack(blocks, format="csr") if blocks else sparse.csr_matrix((n, 0))
    return names, X


def sparse_rank(X, chunk: int = 200_000) -> int:
    """``numpy.linalg.matrix_rank`` of a tall sparse matrix without densifying it: the R
    factor of a QR decomposition has the singular values of ``X``; it is built a block of
    rows at a time (TSQR) and its rank taken with matrix_rank's default tolerance for ``X``."""
    n, p = X.shape
    r = np.zeros((0, p))
    for start in range(0, n, chunk):
        block = X[start:start + chunk].toarray()
        r = np.linalg.qr(np.vstack([r, block]), mode="r")
    if p == 0:
        return 0
    s = np.linalg.svd(r, compute_uv=False)
    return int(np.sum(s > s.max() * max(n, p) * np.finfo(float).eps))


def factor_gram(dense_t: np.ndarray, dense_pos: np.ndarray, codes: np.ndarray,
                block_pos: np.ndarray, w: np.ndarray, out: np.ndarray | None = None
                ) -> np.ndarray:
    """``X' diag(w) X`` for a model matrix whose columns ``block_pos`` are one factor's
    treatment dummies (row ``i`` has its 1 in ``block_pos[codes[i] - 1]``, none at level
    0) and whose other columns, at ``dense_pos``, are the rows of ``dense_t`` (the dense
    columns transposed, each contiguous: a weighted sum per level of a strided column is
    five times slower): the dense block by one product, the factor's diagonal and its
    cross-products with the dense columns by sums per level, at the cost of the dense
    columns alone. ``out``: an array of ``dense_t``'s shape to hold ``dense_t * w`` (a
    caller's work array across calls: at national size a new one each call, 70 MB, cost
    page faults as well as the product)."""
    k = len(block_pos) + 1
    G = np.zeros((len(dense_pos) + len(block_pos),) * 2)
    Dw = np.multiply(dense_t, w, out=out)
    G[np.ix_(dense_pos, dense_pos)] = Dw @ dense_t.T
    cross = np.stack([np.bincount(codes, weights=row, minlength=k) for row in Dw], axis=1)[1:]
    G[np.ix_(block_pos, dense_pos)] = cross
    G[np.ix_(dense_pos, block_pos)] = cross.T
    G[block_pos, block_pos] = np.bincount(codes, weights=w, minlength=k)[1:]
    return G
