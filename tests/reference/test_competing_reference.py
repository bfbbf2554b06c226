"""Competing risks against R: multi-state ``survfit``, ``cmprsk::cuminc`` and ``cmprsk::crr``.

Golden values come from ``tests/reference/survival/make_golden.R`` (R 4.2.2, survival
3.5-3, cmprsk 2.2-11); each case stores its R call as ``call`` in ``competing.json``.
The mgus2 data: ``etime = ifelse(pstat == 0, futime, ptime)``, ``event = ifelse(pstat ==
0, 2 * death, 1)`` (1 = plasma-cell malignancy, 2 = death), ``male = sex == "M"``.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.stats import aalen_johansen, fine_gray, gray_test
from tests.reference.survival._golden import assert_close, data, golden, r_array

CR = golden("competing.json")


@pytest.mark.parametrize(("case", "group"), [("aj_mgus2_all", None), ("aj_mgus2_sex", "sex")])
def test_aalen_johansen_matches_multistate_survfit(case, group):
    """R: ``summary(survfit(Surv(etime, factor(event, 0:2)) ~ <1 | sex>, data = mgus2), censored = TRUE)``.

    ``pstate``, ``std.err`` (infinitesimal jackknife), ``lower``/``upper`` (log type) of
    both causes at every observed time.
    """
    g = CR[case]
    res = aalen_johansen(data("mgus2"), "etime", "event", group=group)
    for cause in (1, 2):
        tab = res.table[res.table["cause"] == cause]
        assert tab["group"].astype(str).tolist() == g["group"]
        assert_close(tab["time"], g["time"])
        assert_close(tab["n_risk"], g["n_risk"])
        assert_close(tab["cif"], g[f"cif_{cause}"])
        assert_close(tab["se"], g[f"se_{cause}"])
        assert_close(tab["lower"], g[f"lower_{cause}"])
        assert_close(tab["upper"], g[f"upper_{cause}"])


def test_aalen_johansen_at_times_matches_survfit_summary():
    """R: ``summary(survfit(Surv(etime, factor(event, 0:2)) ~ sex, data = mgus2), times =
    c(0, 0.5, 1, 1.5, 12, 60, 120, 400, 500), extend = TRUE)``.

    Times before the first observed time (0, 0.5: incidence, se and limits 0), at and after
    an observed time where the incidence is still 0 (1, 1.5: limits NA), between event
    times, and past the last time of a group (numbers at risk 0, values carried on).
    ``n_event``: events of the cause since the previous requested time.
    """
    g = CR["aj_mgus2_sex_at"]
    res = aalen_johansen(data("mgus2"), "etime", "event", group="sex")
    at = res.at(g["times"][::-1])  # any order in, sorted out
    for cause in (1, 2):
        tab = at[at["cause"] == cause]
        assert tab["group"].astype(str).tolist() == g["group"]
        assert_close(tab["time"], g["time"])
        assert_close(tab["n_risk"], g["n_risk"])
        assert_close(tab["n_event"], g[f"n_event_{cause}"])
        assert_close(tab["cif"], g[f"cif_{cause}"])
        assert_close(tab["se"], g[f"se_{cause}"])
        assert_close(tab["lower"], g[f"lower_{cause}"])
        assert_close(tab["upper"], g[f"upper_{cause}"])


def test_aalen_johansen_at_times_delta_variance_matches_cuminc_timepoints():
    """R: ``timepoints(cuminc(mgus2$etime, mgus2$event, group = mgus2$sex), c(0.5, 1, 12,
    60, 120, 400))``: estimate and delta-method variance of each curve (``"F 1"``, ...).

    timepoints() gives NA past a curve's last event time, where ``at`` carries the values
    on as survfit does (checked above); those entries are compared only for being there."""
    g = CR["cuminc_mgus2_sex_timepoints"]
    at = aalen_johansen(data("mgus2"), "etime", "event", group="sex").at(g["times"])
    for i, curve in enumerate(g["curve"]):
        grp, cause = curve.split()
        tab = at[(at["group"] == grp) & (at["cause"] == int(cause))]
        est, var = r_array(np.asarray(g["est"])[i]), r_array(np.asarray(g["var"])[i])
        inside = ~np.isnan(est)
        assert inside.sum() >= 5
        assert_close(tab["cif"][inside], est[inside])
        assert_close(tab["se_delta"][inside] ** 2, var[inside])


def test_delta_method_se_and_estimate_match_cuminc():
    """R: ``ci <- cuminc(mgus2$etime, mgus2$event, group = mgus2$sex)``; ``ci[["F 1"]]$est``, ``$var``.

    cuminc lists each jump twice (before, after); the values after each jump are compared.
    """
    curves = CR["cuminc_mgus2_sex"]["curves"]
    res = aalen_johansen(data("mgus2"), "etime", "event", group="sex")
    for name, cur in curves.items():
        grp, cause = name.split()
        time = np.array(cur["time"])
        est = np.array(cur["est"])
        var = np.array(cur["var"])
        jumps = np.arange(2, len(time) - 1, 2)  # after-jump entries; last entry extends the curve
        tab = res.table[(res.table["group"] == grp) & (res.table["cause"] == int(cause))].set_index("time")
        assert_close(tab.loc[time[jumps], "cif"], est[jumps])
        assert_close(tab.loc[time[jumps], "se_delta"] ** 2, var[jumps])


def test_gray_test_matches_cuminc_tests():
    """R: ``cuminc(mgus2$etime, mgus2$event, group = mgus2$sex)$Tests`` (both causes)."""
    g = CR["cuminc_mgus2_sex"]["tests"]
    res = gray_test(data("mgus2"), "etime", "event", group="sex")
    assert res.table["cause"].astype(str).tolist() == g["cause"]
    assert_close(res.table["stat"], g["stat"])
    assert_close(res.table["p"], g["p"])
    assert_close(res.table["df"], g["df"])


def test_gray_test_stratified_with_rho_matches_cuminc():
    """R (colon, recurrence rows ``etype == 1``, three arms):

    ``cuminc(time, status, group = rx, strata = sex, rho = 1)$Tests``.
    """
    g = CR["cuminc_colon_rx_strata_rho1"]["tests"]
    df = data("colon")
    df = df[df["etype"] == 1]
    res = gray_test(df, "time", "status", group="rx", strata="sex", rho=1)
    assert_close(res.table["stat"], g["stat"])
    assert_close(res.table["p"], g["p"])
    assert_close(res.table["df"], g["df"])


@pytest.mark.parametrize(
    ("case", "cause", "covs"),
    [
        ("crr_mgus2_cause1", 1, ["age", "male"]),
        ("crr_mgus2_cause2", 2, ["age", "male"]),
        ("crr_mgus2_mspike", 1, ["age", "male", "mspike"]),
        ("crr_mgus2_factors", 1, ["agegrp", "sex"]),
    ],
)
def test_fine_gray_matches_crr(case, cause, covs):
    """R: ``crr(etime, event, cov1 = cbind(<covs>), failcode = <cause>, gtol = 1e-12, maxiter = 50)``.

    Coefficients, sandwich se, log-likelihood at the estimate and at zero. (crr's default
    ``gtol = 1e-6`` stops ~1e-8 relative short of the maximum; the tight fit is the target.)
    Text columns (``agegrp``, ``sex``) are R's ``model.matrix(~ agegrp + sex)[, -1]``.
    """
    g = CR[case]
    res = fine_gray(data("mgus2"), "etime", "event", cause, covs)
    assert [t.replace("[T.", "").replace("]", "") for t in res.summary.index] == g["term"]
    assert_close(res.summary["coef"], g["coef"])
    assert_close(res.summary["se"], g["se"])
    assert_close(res.loglik, g["loglik"])
    assert_close(res.loglik_null, g["loglik_null"])
