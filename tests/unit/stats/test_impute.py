"""pipeline.stats.impute: proper logistic imputation of one binary variable, Rubin's rules.

(Against R mice: tests/reference/test_impute_reference.py.)"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.stats.impute import impute_binary, rubin


def frame(n=400, seed=1, all_zero_arm=None):
    rng = np.random.default_rng(seed)
    od = rng.integers(0, 2, n)
    site = rng.choice(["a", "b", "c"], n)
    prev = rng.choice(["work", "not_working"], n)
    y = (rng.random(n) < np.where(prev == "work", 0.7, 0.2)).astype(float)
    if all_zero_arm is not None:
        y[od == all_zero_arm] = 0.0
    y[rng.random(n) < 0.3] = np.nan
    return pd.DataFrame({"od": od, "site": site, "prev": prev, "y": y})


def test_observed_values_are_kept_and_only_missing_ones_imputed():
    d = frame()
    imp = impute_binary(d, "y", ["site", "prev"], m=5, by="od", seed=3)
    obs = d["y"].notna()
    assert sorted(imp.missing) == list(np.flatnonzero(~obs))
    for j in range(5):
        y = imp.completed(j)
        assert y[obs].tolist() == d.loc[obs, "y"].astype(int).tolist()
        assert set(y.unique()) <= {0, 1}


def test_seeded_draws_are_reproducible_and_imputations_differ():
    d = frame()
    a = impute_binary(d, "y", ["site", "prev"], m=4, by="od", seed=7)
    b = impute_binary(d, "y", ["site", "prev"], m=4, by="od", seed=7)
    assert all(a.completed(j).equals(b.completed(j)) for j in range(4))
    assert not a.completed(0).equals(a.completed(1))


def test_imputations_follow_the_predictor():
    """Among the missing, people with prev = work are imputed 1 far more often (0.7 vs 0.2
    in the data-generating model); over 200 imputations of ~120 missing values the share
    is within a few points of the model's."""
    d = frame(n=2000)
    imp = impute_binary(d, "y", ["prev"], m=200, by="od", seed=1)
    Y = np.column_stack([imp.completed(j).to_numpy() for j in range(200)])[imp.missing]
    prev = d["prev"].to_numpy()[imp.missing]
    assert abs(Y[prev == "work"].mean() - 0.7) < 0.05
    assert abs(Y[prev == "not_working"].mean() - 0.2) < 0.05


def test_an_arm_where_nobody_is_in_work_still_imputes():
    d = frame(all_zero_arm=1)
    imp = impute_binary(d, "y", ["site", "prev"], m=5, by="od", seed=3)
    assert any("augmentation" in n for n in imp.notes)
    y = imp.completed(0)
    assert np.isfinite(imp.eta).all()
    # nearly everyone imputed in that arm is 0 (the model says so, through the augmentation)
    arm1 = imp.group == "1"
    assert y.iloc[imp.missing[arm1]].mean() < 0.1


def test_delta_shifts_imputed_log_odds_monotonically():
    d = frame()
    imp = impute_binary(d, "y", ["site", "prev"], m=10, by="od", seed=3)
    lo = np.column_stack([imp.completed(j, {"1": -2.0}).to_numpy() for j in range(10)])
    mid = np.column_stack([imp.completed(j).to_numpy() for j in range(10)])
    hi = np.column_stack([imp.completed(j, {"1": 2.0}).to_numpy() for j in range(10)])
    assert (lo <= mid).all() and (mid <= hi).all()     # common random numbers: per value
    arm0 = d["od"].to_numpy() == 0
    assert (lo[arm0] == mid[arm0]).all() and (hi[arm0] == mid[arm0]).all()
    assert hi.sum() > mid.sum() > lo.sum()


def test_nothing_missing_imputes_nothing():
    d = frame().dropna()
    imp = impute_binary(d, "y", ["site"], m=3, by="od")
    assert len(imp.missing) == 0 and imp.completed(2).equals(d["y"].astype(int))


def test_bad_input_is_refused():
    d = frame()
    with pytest.raises(ValueError, match="at least 2"):
        impute_binary(d, "y", ["site"], m=1)
    with pytest.raises(ValueError, match="predictors must be complete"):
        impute_binary(d.assign(site=d["site"].where(d.index > 3)), "y", ["site"], m=3)
    with pytest.raises(ValueError, match="missing for everyone in od = 1"):
        impute_binary(d.assign(y=d["y"].where(d["od"] == 0)), "y", ["site"], m=3, by="od")


def test_rubin_rules_by_hand():
    q, u = [1.0, 2.0, 3.0], [0.5, 0.5, 0.5]
    p = rubin(q, u, dfcom=np.inf)
    # Q = 2, W = 0.5, B = 1, T = 0.5 + 4/3; lambda = (4/3)/T; df = (m-1)/lambda^2
    T = 0.5 + 4 / 3
    assert p.estimate == 2.0 and p.within == 0.5 and p.between == 1.0
    assert np.isclose(p.total, T) and np.isclose(p.df, 2 / ((4 / 3) / T) ** 2)
    same = rubin([1.0, 1.0, 1.0], u, dfcom=30)
    # nothing between imputations: mice floors lambda at 1e-4, so df = 31/33 30 (1 - 1e-4)
    assert same.between == 0 and np.isclose(same.df, 31 / 33 * 30 * (1 - 1e-4), rtol=1e-6)
    assert np.isclose(same.se, np.sqrt(0.5))
    with pytest.raises(ValueError):
        rubin([1.0], [0.1])


def test_a_predictor_with_many_levels_kept_as_codes_imputes_as_the_dense_model(monkeypatch):
    """Above CODED_MIN_LEVELS levels (1,000 practices at national size) the imputation model
    keeps the factor as codes (its cross-products summed per level); the linear predictors
    of the draws equal the dense model's to rounding (measured 1.6e-12; both fits stop at a
    relative deviance change of 1e-12), with a cluster-level covariate collinear with the
    factor's dummies too."""
    from pipeline.stats import impute

    rng = np.random.default_rng(5)
    n, k = 6000, 60
    cl = rng.integers(0, k, n)
    u = rng.normal(0, 0.5, k)[cl]
    d = pd.DataFrame({"od": cl % 2, "place": [f"c{c:03d}" for c in cl],
                      "base": rng.choice(["work", "not_working", "unknown"], n),
                      "age": rng.normal(40, 10, n), "size": rng.normal(0, 1, k)[cl]})
    lp = -0.5 + u + 1.2 * (d["base"] == "work") + 0.01 * (d["age"] - 40)
    y = (rng.random(n) < 1 / (1 + np.exp(-lp))).astype(float)
    d["y"] = np.where(rng.random(n) < 0.25, np.nan, y)
    coded, real = [], impute._fit_logistic_coded
    monkeypatch.setattr(impute, "_fit_logistic_coded",
                        lambda *a, **kw: coded.append(1) or real(*a, **kw))
    for preds in (["place", "base", "age"], ["place", "base", "age", "size"]):
        monkeypatch.setattr(impute, "CODED_MIN_LEVELS", 10**6)
        dense = impute_binary(d, "y", preds, m=4, by="od", seed=3)
        assert not coded
        monkeypatch.setattr(impute, "CODED_MIN_LEVELS", k // 4)
        codes = impute_binary(d, "y", preds, m=4, by="od", seed=3)
        assert len(coded) == 2   # one model per arm
        coded.clear()
        assert np.array_equal(codes.missing, dense.missing)
        assert np.max(np.abs(codes.eta - dense.eta)) < 1e-9



@pytest.mark.parametrize("scale", [1.0, 1e-3])
def test_columns_kept_without_the_qr_are_those_the_qr_keeps(scale):
    """_kept skips the rank-revealing QR only when the cross-product shows full rank with a
    wide margin; it then keeps what the QR keeps (every column), and with a collinear column
    (or one near it) the QR decides."""
    from pipeline.stats.impute import _kept, _qr_pivot, _rank

    X = np.random.default_rng(11).normal(size=(200, 6))
    X[:, 3] *= scale   # a small but independent column: still full rank
    def by_qr(A):
        r, piv = _qr_pivot(A)
        return np.sort(piv[:_rank(r)])
    assert np.array_equal(_kept(lambda: X.T @ X, lambda: X), by_qr(X))
    assert len(_kept(lambda: X.T @ X, lambda: X)) == 6
    Xc = np.column_stack([X, X[:, 0] + X[:, 1]])          # exactly collinear
    Xn = np.column_stack([X, X[:, 0] + 1e-9 * X[:, 2]])   # nearly: the QR drops it
    for A in (Xc, Xn):
        assert np.array_equal(_kept(lambda: A.T @ A, lambda: A), by_qr(A))
        assert len(_kept(lambda: A.T @ A, lambda: A)) == 6
