"""Readers for the R golden files in this folder (written by ``make_golden.R``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
#: Deterministic estimators must agree with R to this relative tolerance.
RTOL = 1e-6


def golden(name: str) -> dict:
    """One golden JSON file, e.g. ``golden("cox.json")``."""
    return json.loads((HERE / name).read_text())


def data(name: str) -> pd.DataFrame:
    """A dataset exported by ``make_golden.R`` (``data/<name>.csv``)."""
    return pd.read_csv(HERE / "data" / f"{name}.csv")


def r_array(values) -> np.ndarray:
    """R values as a float array; JSON null (R ``NA``) becomes NaN."""
    if isinstance(values, np.ndarray):
        return values.astype(float).ravel()
    if not isinstance(values, (list, tuple)):
        values = [values]
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def assert_close(actual, expected, rtol: float = RTOL, atol: float = 0.0) -> None:
    """``actual`` equals R's ``expected`` to ``rtol`` (NaN where R has NA)."""
    np.testing.assert_allclose(
        np.atleast_1d(np.asarray(actual, dtype=float)), r_array(expected), rtol=rtol, atol=atol
    )
