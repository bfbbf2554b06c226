"""Small helpers that build Arrow arrays from numpy without per-row Python."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

US = 1_000_000


def _mask(valid):
    return None if valid is None else ~np.asarray(valid, bool)


def date_arr(days: np.ndarray, valid=None) -> pa.Array:
    """date32 from days since 1970-01-01."""
    d = np.asarray(days)
    if valid is not None:
        d = np.where(valid, d, 0)
    return pa.array(d.astype(np.int32), type=pa.date32(), mask=_mask(valid))


def ts_arr(secs: np.ndarray, valid=None) -> pa.Array:
    """timestamp[us] from seconds since 1970-01-01T00:00:00."""
    s = np.asarray(secs, np.int64)
    if valid is not None:
        s = np.where(valid, s, 0)
    return pa.array(s * US, type=pa.timestamp("us"), mask=_mask(valid))


def int_arr(x: np.ndarray, valid=None) -> pa.Array:
    x = np.asarray(x)
    if valid is not None:
        x = np.where(valid, x, 0)
    return pa.array(x.astype(np.int64), type=pa.int64(), mask=_mask(valid))


def float_arr(x: np.ndarray, valid=None) -> pa.Array:
    x = np.asarray(x, float)
    if valid is not None:
        x = np.where(valid, x, 0.0)
    return pa.array(x, type=pa.float64(), mask=_mask(valid))


def bool_arr(x: np.ndarray, valid=None) -> pa.Array:
    x = np.asarray(x, bool)
    return pa.array(x, type=pa.bool_(), mask=_mask(valid))


def cat_arr(values, codes: np.ndarray, valid=None) -> pa.Array:
    """String array ``values[codes]`` (null where not valid)."""
    dictionary = pa.array([str(v) for v in values], type=pa.string())
    idx = pa.array(np.asarray(codes, np.int64), mask=_mask(valid))
    return dictionary.take(idx)


def id_arr(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """``prefix`` + zero-padded number, e.g. P0000042."""
    s = pc.utf8_lpad(pa.array(np.asarray(numbers, np.int64)).cast(pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, s, "")


def suffix_ids(base: pa.Array, sep: str, numbers: np.ndarray, width: int) -> pa.Array:
    """``base`` + ``sep`` + zero-padded number, e.g. P0000042-C007."""
    s = pc.utf8_lpad(pa.array(np.asarray(numbers, np.int64)).cast(pa.string()), width, "0")
    return pc.binary_join_element_wise(base, sep, s, "")


def seq_within(group: np.ndarray) -> np.ndarray:
    """1-based running number within runs of equal, sorted ``group`` values."""
    n = len(group)
    if n == 0:
        return np.zeros(0, np.int64)
    starts = np.r_[0, np.flatnonzero(group[1:] != group[:-1]) + 1]
    lengths = np.diff(np.r_[starts, n])
    return np.arange(n) - np.repeat(starts, lengths) + 1
