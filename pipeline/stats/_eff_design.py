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


#: columns of ``dense_t`` (rows of the data) per block in :func:`factor_gram`: its block
#: times the weights, the level indices and the block itself (16 x 4,096 numbers each at
#: national size, 1.5 MB together) stay in L2 (measured, n = 500,000, 15 dense rows: 31-33
#: ms a call at 3,072-4,096, 40-43 at 2,048 and 41-42 at 6,144)
FACTOR_GRAM_CHUNK = 4096


def factor_gram(dense_t: np.ndarray, dense_pos: np.ndarray, codes: np.ndarray,
                block_pos: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``X' diag(w) X`` for a model matrix whose columns ``block_pos`` are one factor's
    treatment dummies (row ``i`` has its 1 in ``block_pos[codes[i] - 1]``, none at level
    0) and whose other columns, at ``dense_pos``, are the rows of ``dense_t`` (the dense
    columns transposed, each contiguous), at the cost of the dense columns alone. One pass
    over the data in blocks of :data:`FACTOR_GRAM_CHUNK` rows: each block's dense columns
    times ``w`` go into a small reused buffer, with ``w`` itself as one more row; the dense
    block of ``G`` gains the block's product with its dense columns, and the per-level
    sums of every buffer row (the cross-products of the factor's dummies with the dense
    columns, and with ``w``'s row the factor's diagonal) come from one ``np.bincount`` over
    the buffer with the index ``codes + k * row``. ``dense_t`` is read from memory once
    (three passes over the whole of it, the product, its gram and a sum per level of each
    row, cost 53 ms a call at n = 500,000 and 15 dense rows; this 32)."""
    q, n = dense_t.shape
    k = len(block_pos) + 1
    c = max(1, min(FACTOR_GRAM_CHUNK, n))
    buf = np.empty((q + 1) * c)                  # the block's dense rows * w, then w
    idx = np.empty((q + 1) * c, dtype=np.intp)   # its level indices, codes + k * row
    offs = (k * np.arange(q + 1))[:, None]
    dense = np.zeros((q, q))
    sums = np.zeros((q + 1) * k)
    for s in range(0, n, c):
        e = min(s + c, n)
        size = (q + 1) * (e - s)
        B = buf[:size].reshape(q + 1, e - s)
        np.multiply(dense_t[:, s:e], w[s:e], out=B[:q])
        B[q] = w[s:e]
        dense += B[:q] @ dense_t[:, s:e].T
        np.add(codes[s:e], offs, out=idx[:size].reshape(q + 1, e - s))
        sums += np.bincount(idx[:size], weights=buf[:size], minlength=(q + 1) * k)
    sums = sums.reshape(q + 1, k)
    G = np.zeros((q + len(block_pos),) * 2)
    G[np.ix_(dense_pos, dense_pos)] = dense
    cross = sums[:q, 1:].T
    G[np.ix_(block_pos, dense_pos)] = cross
    G[np.ix_(dense_pos, block_pos)] = cross.T
    G[block_pos, block_pos] = sums[q, 1:]
    return G
