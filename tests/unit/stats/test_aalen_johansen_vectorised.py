"""The vectorised Aalen-Johansen estimator against the plain step-by-step recursions.

``pipeline.stats.competing._aj_one`` computes the incidences, the infinitesimal-jackknife
(IJ) variance and cmprsk's delta-method variance without a loop over times. Here the
same quantities come from the textbook recursions, one subject at a time and one
distinct time at a time: each subject's influence on the event-free probability and on
each incidence updated at every event time, the IJ variance the sum of their squares,
and Gray's ``cinc`` recursion for the delta-method variance. The R goldens
(``tests/reference/test_competing_reference.py``) check the recursions themselves.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.stats.competing import _aj_one


def step_by_step(t: np.ndarray, e: np.ndarray, causes: list[int]) -> dict:
    """Per-time loop over subjects: ``cif``, IJ ``var`` and cuminc ``var_delta`` at every
    distinct time, shape (n_times, n_causes)."""
    times = np.unique(t)
    n, K = len(t), len(causes)
    U0, Uk = np.zeros(n), np.zeros((n, K))  # each subject's influence on p0 and on F_k
    p0, F = 1.0, np.zeros(K)
    v1, v2, v3, vd = np.zeros(K), np.zeros(K), np.zeros(K), np.zeros(K)
    out = {k: np.zeros((len(times), K)) for k in ("cif", "var", "var_delta")}
    for i, s in enumerate(times):
        at_risk = (t >= s).astype(float)
        Y = at_risk.sum()
        dN = np.stack([(t == s) & (e == c) for c in causes], axis=1).astype(float)
        dN_any = ((t == s) & (e > 0)).astype(float)
        d = dN.sum(axis=0)
        D = dN_any.sum()
        if D > 0:
            dA, dA_tot = d / Y, D / Y
            Uk = Uk + U0[:, None] * dA + p0 * (dN - at_risk[:, None] * dA) / Y
            U0 = U0 * (1 - dA_tot) - p0 * (dN_any - at_risk * dA_tot) / Y
            p_next = p0 * (Y - D) / Y
            F_next = F + p0 * dA
            for j in range(K):
                f = F_next[j]
                for nd, own in ((D - d[j], False), (d[j], True)):
                    if nd == 0 or (not own and p_next == 0):
                        continue
                    t6 = p0 * p0 * (1 - (nd - 1) / (Y - 1) if nd > 1 else 1.0) * nd / Y**2
                    t3 = 1 / p_next if p_next > 0 else 0.0
                    t4 = 1 + t3 * f if own else f * t3
                    v1[j] += t4 * t4 * t6
                    v2[j] += t3 * t4 * t6
                    v3[j] += t3 * t3 * t6
                if d[j] > 0:
                    vd[j] = v1[j] + f * f * v3[j] - 2 * f * v2[j]
            p0, F = p_next, F_next
        out["cif"][i] = F
        out["var"][i] = (Uk**2).sum(axis=0)
        out["var_delta"][i] = vd
    return {"time": times, **out}


def check(t, e, causes, rtol=1e-12):
    t, e = np.asarray(t, dtype=float), np.asarray(e, dtype=int)
    got, ref = _aj_one(t, e, causes), step_by_step(t, e, causes)
    np.testing.assert_array_equal(got["time"], ref["time"])
    for key in ("cif", "var", "var_delta"):
        np.testing.assert_allclose(got[key], ref[key], rtol=rtol, atol=0, err_msg=key)
    # between a cause's own event times all three stay exactly where they were (0 before)
    for j, c in enumerate(causes):
        quiet = ~np.isin(got["time"], t[e == c])
        for key in ("cif", "var", "var_delta"):
            before = np.r_[0.0, got[key][:-1, j]]
            np.testing.assert_array_equal(got[key][quiet, j], before[quiet], err_msg=key)


def test_ties_three_causes_censoring_at_event_times_and_everyone_failing_last():
    """Ties within and across causes, censored subjects at event times and between them, a
    time with only a competing cause, a cause with no events (4), and a last time where
    all still at risk have an event (the event-free probability reaches 0)."""
    t = [1, 1, 1, 2, 2, 3, 3, 3, 3, 4, 5, 5, 5, 6, 7, 7, 8, 8, 8, 9, 9]
    e = [1, 1, 0, 2, 0, 1, 3, 3, 0, 0, 2, 2, 2, 0, 1, 0, 3, 0, 1, 1, 2]
    check(t, e, [1, 2, 3, 4])
    assert _aj_one(np.asarray(t, float), np.asarray(e), [1, 2, 3])["cif"][-1].sum() == pytest.approx(1)


def test_censoring_after_the_last_event_and_at_it():
    t = [2, 2, 3, 4, 4, 4, 6, 6, 8, 10]
    e = [1, 2, 0, 1, 1, 0, 2, 0, 0, 0]
    check(t, e, [1, 2])


def test_first_times_censored_only_and_a_single_subject_at_risk():
    t = [0.5, 0.5, 1, 2, 2.5, 3, 3, 4]
    e = [0, 0, 1, 0, 2, 1, 0, 1]
    check(t, e, [1, 2])


def test_no_events():
    got = _aj_one(np.array([1.0, 2.0, 2.0]), np.array([0, 0, 0]), [1, 2])
    for key in ("cif", "var", "var_delta"):
        assert got[key].shape == (2, 2) and not got[key].any()


@pytest.mark.parametrize("seed", range(6))
def test_random_data_with_many_ties(seed):
    """A few hundred subjects on 5 to 60 distinct times (many ties, every kind of pair)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 400))
    t = rng.integers(1, int(rng.integers(5, 60)), n).astype(float)
    e = rng.choice([0, 1, 2, 3], n, p=rng.dirichlet(np.ones(4)))
    causes = sorted(set(e[e > 0].tolist()) | {1})
    check(t, e, causes)
