"""Few-cluster estimators: what they refuse, and properties R cannot check (the Monte
Carlo permutation test, the interval's inversion)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.stats import cluster_level, glm_clustered, permutation_test


def _trial(seed=1, sites=4, per_arm=2, m=30):
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(sites):
        for c, a in enumerate(rng.permutation([0, 1] * per_arm)):
            u = rng.normal(0, 0.3)
            t = rng.exponential(1 / np.exp(u - 0.3 * a), m)
            rows.append(pd.DataFrame({"site": f"S{s}", "cluster": f"S{s}C{c}", "arm": a,
                                      "time": np.minimum(t, 1.5), "event": (t <= 1.5).astype(int),
                                      "y": rng.binomial(1, 0.3, m)}))
    return pd.concat(rows, ignore_index=True)


def test_robust_variances_need_a_cluster_column():
    with pytest.raises(ValueError, match="needs a cluster column"):
        glm_clustered(_trial(), "y", ["arm"], vcov="CR2")


def test_k_minus_p_df_need_more_clusters_than_coefficients():
    d = _trial(sites=1, per_arm=1)
    with pytest.raises(ValueError, match="K-p df need more clusters"):
        glm_clustered(d, "y", ["arm"], cluster="cluster", vcov="MD")


def test_the_method_says_variance_clusters_and_df_in_words():
    r = glm_clustered(_trial(), "y", ["arm", "site"], cluster="cluster", vcov="CR2")
    assert r.method.startswith("bias-reduced cluster-robust sandwich (CR2, Bell-McCaffrey) by cluster (16 clusters)")
    assert r.method.endswith("t on Satterthwaite df")
    j = glm_clustered(_trial(), "y", ["arm", "site"], cluster="site", vcov="jackknife")
    assert j.method == "jackknife deleting one site at a time (4 of them); t on K - 1 = 3 df"


def test_cluster_level_refuses_an_arm_that_varies_within_a_cluster():
    d = _trial()
    d.loc[0, "arm"] = 1 - d.loc[0, "arm"]
    with pytest.raises(ValueError, match="arm varies within a cluster"):
        cluster_level(d, "survival", cluster="cluster", arm="arm", strata="site", duration="time", event="event")


def test_monte_carlo_permutation_p_value_is_close_to_the_exact_one():
    """6^4 = 1,296 allocations enumerated, against 4,999 drawn at random: the Monte Carlo
    p-value's standard error is at most sqrt(0.25 / 4999) = 0.007; allowed 4 of them."""
    res = cluster_level(_trial(), "survival", cluster="cluster", arm="arm", strata="site",
                        duration="time", event="event")
    v, a, s = res.clusters["value"], res.clusters["arm"], res.clusters["stratum"]
    exact = permutation_test(v, a, s).summary.iloc[0]
    mc = permutation_test(v, a, s, max_exact=100, n_perm=4999, seed=3)
    assert not mc.exact and mc.n_allocations == 4999 and "Monte Carlo" in mc.notes[0]
    assert abs(mc.summary.iloc[0]["p"] - exact["p"]) <= 4 * np.sqrt(0.25 / 4999)


def test_the_permutation_interval_is_where_the_test_does_not_reject():
    """Just inside each end the shifted test accepts; just outside it rejects."""
    res = cluster_level(_trial(seed=5), "survival", cluster="cluster", arm="arm", strata="site",
                        duration="time", event="event")
    v, a, s = (res.clusters[c].to_numpy() for c in ("value", "arm", "stratum"))
    ci = permutation_test(v, a, s).summary.iloc[0]
    lo, hi = np.log(ci["lower"]), np.log(ci["upper"])
    assert lo < ci["coef"] < hi
    p = lambda delta: permutation_test(v - delta * a, a, s).summary.iloc[0]["p"]  # noqa: E731
    assert p(lo + 1e-7) > 0.05 and p(hi - 1e-7) > 0.05
    assert p(lo - 1e-7) <= 0.05 and p(hi + 1e-7) <= 0.05


@pytest.mark.parametrize("kind", ["CR0", "CR2", "CR3"])
def test_the_batched_sandwich_is_the_per_cluster_one(kind):
    """glm_clustered's batched meat and Satterthwaite df (from each cluster's Gram matrix)
    equal the per-cluster QR form, which the R goldens check, on clusters whose own rows
    cannot estimate every coefficient (a site dummy, a one-cluster level) and one cluster
    that alone determines a coefficient (its hat eigenvalue is 1)."""
    from pipeline.stats import clustered as C

    rng = np.random.default_rng(7)
    n, p, J = 3000, 10, 12
    codes = rng.integers(0, J, n)
    Z = rng.normal(size=(n, p))
    Z[:, 1] = (codes % 3 == 0)
    Z[:, 2] = (codes == 0)          # only cluster 0's rows carry this coefficient
    e = rng.normal(size=n)
    M = np.linalg.inv(Z.T @ Z)
    groups = C._clusters_of(codes, J)
    ref, ref_df = C._sandwich(Z, e, np.ones(n), M, groups, kind, True)
    got, got_df = C._sandwich_lowrank(Z, e, M, groups, kind, True)
    assert np.max(np.abs(got - ref)) <= 1e-12 * np.max(np.abs(ref))
    np.testing.assert_allclose(got_df, ref_df, rtol=1e-10)


def _satterthwaite_j_by_j(gdiag, HZ, L):
    """The Bell-McCaffrey df as clubSandwich forms them: the J x J matrix ``P = diag(g) -
    h h'`` per coefficient (what ``clustered._satterthwaite`` computed before it summed
    ``P`` without forming it)."""
    dfs = np.empty(L.shape[0])
    for i in range(L.shape[0]):
        h = HZ[:, i, :] @ L
        P = np.diag(gdiag[:, i]) - h @ h.T
        dfs[i] = np.trace(P) ** 2 / np.sum(P**2)
    return dfs


@pytest.mark.parametrize("kind", ["CR0", "CR2", "CR3"])
@pytest.mark.parametrize("J,p", [(12, 10), (60, 24), (400, 6)])
@pytest.mark.parametrize("numbers", [1 << 20, 1])   # 1: one coefficient at a time
def test_the_satterthwaite_sums_are_the_j_by_j_matrix(monkeypatch, kind, J, p, numbers):
    """``_satterthwaite``'s sums of ``P`` in blocks equal ``P`` formed (the same numbers up
    to summation order: 1e-12 relative; measured at most 1.4e-14 here), with a cluster in the
    first block and one in the last that alone carry a coefficient (with CR0 their ``g_j``
    and ``|h_j|^2`` nearly cancel: ``||h'h||^2 - sum |h_j|^4`` was 2e-8 off there)."""
    from pipeline.stats import clustered as C

    rng = np.random.default_rng(J + p)
    n = 40 * J
    codes = rng.integers(0, J, n)
    Z = rng.normal(size=(n, p))
    Z[:, 1] = (codes % 2 == 0)
    Z[:, 2] = (codes == 0)
    Z[:, 3] = (codes == J - 1)
    M = np.linalg.inv(Z.T @ Z)
    L = C._psd_root(M)
    gdiag, HZ = np.empty((J, p)), np.empty((J, p, p))
    for j, idx in enumerate(C._clusters_of(codes, J)):   # the g and M F_j Z_j of _sandwich
        q, r = np.linalg.qr(Z[idx], mode="reduced")
        lam, V = np.linalg.eigh(r @ M @ r.T)
        f = C._power(lam, "CR2" if kind == "KC" else kind)
        RV = r.T @ V
        gdiag[j] = np.diag(M @ (RV * f**2) @ RV.T @ M)
        HZ[j] = M @ (RV * f) @ RV.T
    monkeypatch.setattr(C, "_SATT_NUMBERS", numbers)
    np.testing.assert_allclose(C._satterthwaite(gdiag, HZ, L),
                               _satterthwaite_j_by_j(gdiag, HZ, L), rtol=1e-12)


@pytest.mark.parametrize("kappa", [1.0, 1e2, 1e4, 1e6, 1e8])
def test_the_inverse_square_root_quadrature_is_accurate_over_the_spectrum(kappa):
    """``sum_k w_k / (x + tau_k)`` is ``x^-1/2`` to 1e-13 relative for every ``x`` in
    ``[lo, hi]`` (the bound the CR2 quadrature's docstring states), at any scale."""
    from pipeline.stats import clustered as C

    for lo in (1e-6, 1.0, 1e3):
        tau, w = C._inv_sqrt_nodes(lo, lo * kappa)
        x = np.geomspace(lo, lo * kappa, 4001)
        approx = (w[None, :] / (x[:, None] + tau[None, :])).sum(axis=1)
        assert np.max(np.abs(approx * np.sqrt(x) - 1)) <= 1e-13


@pytest.mark.parametrize("n,spread,leverage", [(40, 1.5, 0.1), (1000, 10, 0.5), (1500, 100, 0.95),
                                               (800, 30, 1 - 1e-9)])
def test_cr2_by_quadrature_is_the_eigenproblem(n, spread, leverage):
    """A cluster's CR2 factor ``Z_j' G^-1/2 Theta`` by quadrature equals the ``n_j x n_j``
    eigenproblem of ``G`` (which the clubSandwich goldens check), for working variances
    spread over a ratio of up to 100 and clusters of growing leverage; one cluster that
    nearly determines a coefficient takes the eigenproblem itself. A column that is zero in
    the cluster (another site's dummy) gets zeros."""
    from pipeline.stats import clustered as C

    rng = np.random.default_rng(n)
    p = 9
    M = np.linalg.inv((lambda a: a.T @ a)(rng.normal(size=(30 * n, p))))
    Zj = rng.normal(size=(n, p))
    Zj[:, 4] = 0.0
    Zj *= np.sqrt(leverage / np.linalg.eigvalsh(Zj @ M @ Zj.T).max())
    th = 0.2 * np.exp(rng.uniform(0, np.log(spread), n))
    exact = C._cr2_f(Zj, th, M, exact=True)
    got = C._cr2_f(Zj, th, M)
    assert np.max(np.abs(got - exact)) <= 1e-11 * np.max(np.abs(exact))
    assert not np.any(got[4])


@pytest.mark.parametrize("vcov,cluster", [("KC", "cluster"), ("CR2", "cluster"),
                                          ("CR1", "cluster"), ("jackknife", "site"),
                                          ("model", None)])
def test_a_design_built_once_gives_the_same_fit_for_every_outcome(vcov, cluster):
    """glm_design + glm_clustered(design=...) (multiple imputation's completed datasets)
    is the same fit as glm_clustered alone, to the last bit, rows dropped for a missing
    covariate included."""
    from pipeline.stats import glm_design

    d = _trial(seed=4)
    d["x"] = np.random.default_rng(5).normal(size=len(d))
    d.loc[[3, 40], "x"] = np.nan
    covs = ["arm", "site", "x"]
    des = glm_design(d, covs, cluster=cluster)
    for seed in (6, 7):
        d["y"] = np.random.default_rng(seed).binomial(1, 0.4, len(d))
        plain = glm_clustered(d, "y", covs, cluster=cluster, vcov=vcov)
        fast = glm_clustered(d[["y"]], "y", covs, cluster=cluster, vcov=vcov, design=des)
        pd.testing.assert_frame_equal(plain.summary, fast.summary, check_exact=True)
        pd.testing.assert_frame_equal(plain.vcov, fast.vcov, check_exact=True)
        assert plain.notes == fast.notes and plain.method == fast.method
        pd.testing.assert_series_equal(plain.fitted, fast.fitted, check_exact=True)


def test_a_design_refuses_other_rows_other_terms_and_a_missing_outcome():
    from pipeline.stats import glm_design

    d = _trial()
    des = glm_design(d, ["arm", "site"], cluster="cluster")
    with pytest.raises(ValueError, match="rows the design was built from"):
        glm_clustered(d.iloc[1:], "y", ["arm", "site"], cluster="cluster", design=des)
    with pytest.raises(ValueError, match="other covariates"):
        glm_clustered(d, "y", ["arm"], cluster="cluster", design=des)
    d.loc[0, "y"] = np.nan
    with pytest.raises(ValueError, match="missing in 1 row"):
        glm_clustered(d, "y", ["arm", "site"], cluster="cluster", design=des)


@pytest.mark.parametrize("n,chunk", [(1, 4096), (1000, 4096), (5000, 4096), (5000, 7),
                                     (4096 * 3, 4096)])
def test_the_blocked_factor_gram_is_the_dense_product(monkeypatch, n, chunk):
    """``factor_gram`` in blocks of rows (the last one short, or the whole data one block)
    equals ``X' diag(w) X`` of the full model matrix: the same sums in another order, 1e-12
    of the largest entry (measured at most 1e-15), with a level that no row has, dense
    columns interleaved with the factor's and weights of either sign."""
    from pipeline.stats import _eff_design as E

    rng = np.random.default_rng(n)
    k, q = 40, 6
    codes = rng.integers(0, k - 1, n)               # level k - 1 absent
    dense_t = rng.normal(size=(q, n))
    dense_t[0] = 1.0
    block_pos = np.arange(2, 2 + k - 1)
    dense_pos = np.setdiff1d(np.arange(q + k - 1), block_pos)
    w = rng.normal(size=n)
    X = np.zeros((n, q + k - 1))
    X[:, dense_pos] = dense_t.T
    X[np.flatnonzero(codes > 0), block_pos[codes[codes > 0] - 1]] = 1.0
    ref = (X * w[:, None]).T @ X
    monkeypatch.setattr(E, "FACTOR_GRAM_CHUNK", chunk)
    got = E.factor_gram(dense_t, dense_pos, codes, block_pos, w)
    assert np.max(np.abs(got - ref)) <= 1e-12 * np.max(np.abs(ref))


@pytest.mark.parametrize("family,vcov,df_method", [("binomial", "CR1", "K-1"),
                                                    ("binomial", "CR2", None),
                                                    ("poisson", "KC", None),
                                                    ("negbin", "CR1", "K-1")])
def test_a_large_factor_summed_per_level_fits_as_the_dense_product(monkeypatch, family, vcov,
                                                                  df_method):
    """Above BLOCK_MIN_DUMMIES (a national extract's 49 site indicators) the IRLS and
    information cross-products sum the factor per level instead of multiplying its dummy
    columns: the same fit to rounding (coefficients, standard errors and df to 1e-10
    relative; measured 6e-12, standard errors 8e-14), with the per-level path checked to
    have run."""
    from pipeline.stats import clustered

    d = _trial(seed=4, sites=30, per_arm=2, m=25)
    d["x"] = np.random.default_rng(2).normal(size=len(d))
    d["count"] = np.random.default_rng(3).poisson(1.5, len(d))
    y = "y" if family == "binomial" else "count"   # negbin: its theta searched too
    kw = dict(family=family, cluster="cluster", vcov=vcov, df_method=df_method)
    monkeypatch.setattr(clustered, "BLOCK_MIN_DUMMIES", 10**6)
    dense = glm_clustered(d, y, ["arm", "site", "x"], **kw)
    monkeypatch.setattr(clustered, "BLOCK_MIN_DUMMIES", 24)
    design = clustered.glm_design(d, ["arm", "site", "x"], cluster="cluster")
    assert design.block is not None and len(design.block.block_pos) == 29
    block = glm_clustered(d, y, ["arm", "site", "x"], design=design, **kw)
    for col in ("coef", "se", "df"):
        a, b = dense.summary[col].to_numpy(), block.summary[col].to_numpy()
        assert np.allclose(a, b, rtol=1e-10, atol=1e-12), col
    # the rank check reads the per-level cross-product too: a column that repeats a level's
    # indicator is refused
    d["s7"] = (d["site"] == "S7").astype(float)
    with pytest.raises(ValueError, match="collinear"):
        clustered.glm_design(d, ["arm", "site", "x", "s7"], cluster="cluster")


def test_a_factor_block_stands_in_for_the_model_matrix_in_products_and_standardisation(
        monkeypatch):
    """The factor block's ``X @ b``, ``X.T @ v`` and per-cluster sums are the dense matrix's
    (to 1e-12 relative; they only sum in another order), and the standardised risk
    difference and log risk ratio from it equal those from the dense matrix."""
    from pipeline.analyses.trial_effects import _standardise
    from pipeline.stats import clustered

    d = _trial(seed=6, sites=30, per_arm=2, m=20).rename(columns={"arm": "od"})
    d["x"] = np.random.default_rng(7).normal(size=len(d))
    monkeypatch.setattr(clustered, "BLOCK_MIN_DUMMIES", 10**6)
    full = clustered.glm_design(d, ["od", "site", "x"], cluster="cluster")
    monkeypatch.setattr(clustered, "BLOCK_MIN_DUMMIES", 24)
    design = clustered.glm_design(d, ["od", "site", "x"], cluster="cluster")
    assert design.dense is None and full.block is None   # the matrix is built when read
    X, B = design.X, design.block
    assert B is not None and B.shape == X.shape
    np.testing.assert_array_equal(X, full.X)
    np.testing.assert_array_equal(design.column(1), full.column(1))
    rng = np.random.default_rng(8)
    b, v = rng.normal(size=X.shape[1]), rng.normal(size=X.shape[0])
    np.testing.assert_allclose(B @ b, X @ b, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(B.T @ v, X.T @ v, rtol=1e-12, atol=1e-13)
    S = B.group_sums(design.codes, len(design.levels), v)
    np.testing.assert_allclose(S, np.array([X[g].T @ v[g] for g in design.groups]),
                               rtol=1e-12, atol=1e-13)
    fit = glm_clustered(d, "y", ["od", "site", "x"], design=design, family="binomial",
                        cluster="cluster", vcov="CR1", df_method="K-1")
    x_od = X[:, design.terms.index("od")]
    np.testing.assert_allclose(np.ravel(_standardise(fit, B, x_od)),
                               np.ravel(_standardise(fit, X, x_od)), rtol=1e-12)


@pytest.mark.parametrize("n,p,extra", [(6, 14, 0), (100, 5, 1), (100, 5, 0)])
def test_the_design_rank_and_null_space_are_numpys(n, p, extra):
    """_rank agrees with numpy.linalg.matrix_rank for fewer rows than columns, an exactly
    collinear column and a full-rank matrix, and its null-space rows are annihilated by X."""
    from pipeline.stats.clustered import _rank

    X = np.random.default_rng(n + p).normal(size=(n, p))
    if extra:
        X = np.c_[X, X[:, 0] + X[:, 1]]
    r, null = _rank(X)
    assert r == np.linalg.matrix_rank(X) and len(null) == X.shape[1] - r
    assert not len(null) or np.abs(X @ null.T).max() < 1e-10


def test_cluster_level_refuses_a_cluster_that_spans_several_strata():
    d = _trial()
    d.loc[0, "site"] = "S9"
    with pytest.raises(ValueError, match="spans several site"):
        cluster_level(d, "survival", cluster="cluster", arm="arm", strata="site",
                      duration="time", event="event")


def test_the_cluster_table_is_the_clusters_grouped_by_name():
    """Rows shuffled, clusters named so that their sorted order is not the order they come
    in: each cluster's row holds its stratum, arm, size and summed observed and expected
    events, as pandas groups them (Kahan sums), in sorted order."""
    from pipeline.stats.two_stage import expected_events

    d = _trial(seed=4).sample(frac=1, random_state=2)
    d["cluster"] = "k" + d["cluster"].str[::-1]
    res = cluster_level(d, "binary", cluster="cluster", arm="arm", strata="site", outcome="y")
    obs, exp_, _ = expected_events(d, "binary", strata="site", outcome="y")
    want = (pd.DataFrame({"cluster": d["cluster"].to_numpy(), "stratum": d["site"].to_numpy(),
                          "arm": d["arm"].to_numpy(), "observed": obs, "expected": exp_})
            .groupby("cluster").agg(stratum=("stratum", "first"), arm=("arm", "first"),
                                    m=("arm", "size"), observed=("observed", "sum"),
                                    expected=("expected", "sum")).reset_index())
    pd.testing.assert_frame_equal(res.clusters.drop(columns="value"), want, check_exact=True)


def test_clusters_are_ordered_by_name_whatever_the_column_type():
    """A categorical cluster column whose categories run backwards: the clusters are still
    taken in their names' order, so the analysis and the permutation test are those of the
    plain column."""
    d = _trial(seed=7)
    c = d.assign(cluster=pd.Categorical(d["cluster"],
                                        categories=sorted(d["cluster"].unique())[::-1]))
    kw = dict(cluster="cluster", arm="arm", strata="site", duration="time", event="event",
              permutation=True, max_exact=100, n_perm=999)
    plain, cat = cluster_level(d, "survival", **kw), cluster_level(c, "survival", **kw)
    pd.testing.assert_frame_equal(cat.clusters, plain.clusters, check_exact=True)
    pd.testing.assert_frame_equal(cat.permutation.summary, plain.permutation.summary,
                                  check_exact=True)


def test_a_design_built_once_gives_the_same_analysis_and_must_fit_the_rows():
    """Outcomes of the same people share the first stage's model matrix (glm_design): the
    result is the one built inside, to the bit; a design of other rows or kinds is refused."""
    from pipeline.stats import glm_design

    d = _trial(seed=6)
    d["y2"] = 1 - d["y"]
    design = glm_design(d[["site"]], ["site"])
    for y in ("y", "y2"):
        for scale in ("difference", "ratio"):
            kw = dict(cluster="cluster", arm="arm", strata="site", outcome=y, scale=scale)
            own = cluster_level(d, "binary", **kw)
            shared = cluster_level(d, "binary", design=design, **kw)
            pd.testing.assert_frame_equal(shared.summary, own.summary, check_exact=True)
            pd.testing.assert_frame_equal(shared.clusters, own.clusters, check_exact=True)
            assert shared.notes == own.notes and shared.method == own.method
    with pytest.raises(ValueError, match="rows the design was built from"):
        cluster_level(d.iloc[1:], "binary", cluster="cluster", arm="arm", strata="site",
                      outcome="y", design=design)
    with pytest.raises(ValueError, match="design is for the count or binary"):
        cluster_level(d, "survival", cluster="cluster", arm="arm", strata="site", duration="time",
                      event="event", design=design)


@pytest.mark.parametrize("vcov", ["KC", "CR2", "MD"])
def test_a_level_without_events_has_no_variance_and_leaves_the_others_as_without_it(vcov):
    """A logistic model's rare covariate level without events stops its IRLS with fitted
    probabilities of about 1e-14 there: an information eigenvalue under 1e-16 of the largest,
    which ``inv`` inverts into entries of 1e12. That direction is not estimable (no
    variance for its term, said in a note) and the other terms' variances are those of the
    model fitted without the level's rows, its limit (before, the inverse kept it and two
    algebraically equal forms of the Kauermann-Carroll variance differed by 1.6 %)."""
    d = _trial(seed=3, sites=4, per_arm=2, m=40)
    rng = np.random.default_rng(5)
    d["g"] = rng.choice(["a", "b"], len(d))
    d.loc[[5, 100, 200], "g"] = "c"          # a rare level (3 of 320 rows) without events
    d["x"] = rng.normal(size=len(d))
    d.loc[d["g"] == "c", "y"] = 0
    full = glm_clustered(d, "y", ["arm", "x", "g"], cluster="cluster", vcov=vcov)
    s = full.summary
    assert np.isnan(s.loc["gc", "se"]) and np.isfinite(s.loc[["arm", "x", "gb"], "se"]).all()
    assert any("No finite estimate for gc" in n for n in full.notes)
    limit = glm_clustered(d[d["g"] != "c"], "y", ["arm", "x", "g"], cluster="cluster", vcov=vcov)
    for term in ("arm", "x", "gb"):
        assert s.loc[term, "coef"] == pytest.approx(limit.summary.loc[term, "coef"], rel=1e-9)
        assert s.loc[term, "se"] == pytest.approx(limit.summary.loc[term, "se"], rel=1e-9)
