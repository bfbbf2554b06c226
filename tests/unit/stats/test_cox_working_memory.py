"""The Cox fit's memory savings give the values the plain computations gave, to the bit:
the constant-column check without the deviations' matrix (:func:`pipeline.stats.
_surv_data.constant_columns`), the model matrix written in place (:func:`design_matrix`)
and the events' score terms a block at a time (:meth:`pipeline.stats.coxph._Terms.
cluster_scores`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.stats import coxph
from pipeline.stats._surv_data import constant_columns, design_matrix


@pytest.mark.parametrize("n", [1, 2, 7, 1000, 100_003])
def test_constant_columns_is_std_zero(n):
    """Including columns whose values are all equal but whose mean is not exactly that value
    (0.1, 1/3: std is then not 0, and the fit, not this check, meets them), subnormal
    values, infinities and NaN."""
    rng = np.random.default_rng(n)
    X = np.column_stack([np.full(n, 0.1), np.full(n, 1 / 3), np.zeros(n), np.ones(n),
                         rng.normal(size=n), np.full(n, 1e-160), np.full(n, 5e-324),
                         np.r_[np.full(n - 1, 2.0), 2.0 + 1e-15], np.full(n, np.inf),
                         np.r_[np.full(n - 1, 0.7), np.nan], rng.integers(0, 2, n) * 1.0])
    with np.errstate(invalid="ignore"):
        expected = X.std(axis=0) == 0
        got = constant_columns(X)
    assert got.dtype == bool and got.tolist() == expected.tolist()
    assert got[2] and got[3] and (n == 1 or not got[4])


def test_design_matrix_is_the_stacked_columns():
    rng = np.random.default_rng(1)
    n = 500
    d = pd.DataFrame({"x": rng.normal(size=n), "k": rng.integers(0, 5, n),
                      "b": rng.random(n) < 0.3,
                      "t": rng.choice(["a", "b", "c"], n),
                      "c": pd.Categorical(rng.choice(["lo", "mid", "hi"], n),
                                          categories=["mid", "hi", "lo", "unused"]),
                      "one": "only"})
    cols = ["x", "t", "k", "c", "b", "one"]
    X, names, terms = design_matrix(d, cols, [])
    t_codes = pd.Categorical(d["t"], categories=["a", "b", "c"]).codes
    c_codes = pd.Categorical(d["c"], categories=["mid", "hi", "lo"]).codes
    expected = np.hstack([d[["x"]].to_numpy(float),
                          (t_codes[:, None] == np.arange(1, 3)).astype(float),
                          d[["k"]].to_numpy(float),
                          (c_codes[:, None] == np.arange(1, 3)).astype(float),
                          d[["b"]].to_numpy(float), np.zeros((n, 1))])
    assert X.flags.c_contiguous and X.dtype == np.float64
    np.testing.assert_array_equal(X, expected)
    assert names == ["x", "t[T.b]", "t[T.c]", "k", "c[T.hi]", "c[T.lo]", "b", "one"]
    assert terms == {"x": [0], "t": [1, 2], "k": [3], "c": [4, 5], "b": [6], "one": [7]}


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_cluster_scores_in_blocks_are_the_whole(monkeypatch, ties):
    """A block smaller than the events (and not dividing them) gives the robust variance
    and score test of one block, bit for bit."""
    rng = np.random.default_rng(5)
    n = 3000
    d = pd.DataFrame({"time": rng.integers(1, 60, n), "event": (rng.random(n) < 0.4) * 1,
                      "od": rng.integers(0, 2, n), "z": rng.normal(size=n),
                      "g": rng.choice(["a", "b", "c"], n), "site": rng.integers(0, 4, n),
                      "cl": rng.integers(0, 40, n)})

    def fit():
        return coxph.cox(d, "time", "event", ["od", "z", "g"], strata="site", cluster="cl",
                         ties=ties, small_sample="cr1")

    monkeypatch.setattr(coxph, "_EVENT_BLOCK", 10**9)
    whole = fit()
    monkeypatch.setattr(coxph, "_EVENT_BLOCK", 97)
    assert int(d["event"].sum()) > 10 * 97
    blocks = fit()
    pd.testing.assert_frame_equal(blocks.summary, whole.summary, check_exact=True)
    np.testing.assert_array_equal(blocks.vcov, whole.vcov)
    assert blocks.robust_score_test == whole.robust_score_test
