"""Kaplan-Meier and log-rank against R's survival package.

Golden values come from ``tests/reference/survival/make_golden.R`` (R 4.2.2, survival
3.5-3); each test names the R call it reproduces (also stored as ``call`` in the JSON).
Regenerate with ``cd tests/reference/survival && Rscript make_golden.R``.
"""

from __future__ import annotations

import pytest

from pipeline.stats import kaplan_meier, logrank
from tests.reference.survival._golden import assert_close, data, golden


KM = golden("km.json")


@pytest.mark.parametrize(
    ("case", "conf_type"), [("lung_sex_log", "log"), ("lung_sex_loglog", "log-log")]
)
def test_km_table_by_group_matches_summary_survfit(case, conf_type):
    """R: ``summary(survfit(Surv(time, status) ~ sex, data = lung, conf.type = <type>), censored = TRUE)``."""
    g = KM[case]
    km = kaplan_meier(data("lung"), "time", "status", group="sex", conf_type=conf_type)
    tab = km.table
    assert tab["group"].astype(str).tolist() == g["table"]["group"]
    for col in ["time", "n_risk", "n_event", "n_censor", "survival", "se", "lower", "upper"]:
        assert_close(tab[col], g["table"][col])


@pytest.mark.parametrize(
    ("case", "conf_type"), [("lung_sex_log", "log"), ("lung_sex_loglog", "log-log")]
)
def test_km_median_and_ci_match_print_survfit(case, conf_type):
    """R: ``summary(survfit(...))$table[, c("median", "0.95LCL", "0.95UCL")]``."""
    g = KM[case]["median"]
    med = kaplan_meier(data("lung"), "time", "status", group="sex", conf_type=conf_type).median
    for col in ["median", "lower", "upper"]:
        assert_close(med[col], g[col])


@pytest.mark.parametrize("conf_type", ["log", "log-log"])
def test_km_limits_at_one_before_the_first_event_match_r(conf_type):
    """R: ``summary(survfit(Surv(time, status) ~ 1, data = early_censor, conf.type = <type>),
    censored = TRUE)`` and ``summary(fit, times = c(0, 1.5, 3, 7), extend = TRUE)``: censored
    times before the first event have S = 1; log limits 1 and 1, log-log limits NA (NaN),
    except at a time before every observed time (0), where R gives 1 and 1."""
    g = KM[f"early_censor_{conf_type.replace('-', '')}"]
    km = kaplan_meier(data("early_censor"), "time", "status", conf_type=conf_type,
                      times=[0, 1.5, 3, 7])
    for col in ["time", "n_risk", "survival", "se", "lower", "upper"]:
        assert_close(km.table[col], g["table"][col])
        assert_close(km.risk[col], g["risk"][col])


def test_km_ungrouped_with_90_percent_limits():
    """R: ``summary(survfit(Surv(time, status) ~ 1, data = veteran, conf.int = 0.90), censored = TRUE)``."""
    g = KM["veteran_all_log90"]
    km = kaplan_meier(data("veteran"), "time", "status", conf_level=0.90)
    for col in ["time", "n_risk", "survival", "se", "lower", "upper"]:
        assert_close(km.table[col], g["table"][col])
    for col in ["median", "lower", "upper"]:
        assert_close(km.median[col], [g["median"][col]])


def test_km_risk_table_matches_summary_at_times():
    """R: ``summary(fit, times = c(0, 180, 360, 540, 720, 900), extend = TRUE)`` for lung by sex."""
    g = KM["lung_sex_log"]["risk"]
    times = [0, 180, 360, 540, 720, 900]
    km = kaplan_meier(data("lung"), "time", "status", group="sex", times=times)
    risk = km.risk
    assert risk["group"].astype(str).tolist() == g["group"]
    for col in ["time", "n_risk", "n_event", "n_censor", "survival", "se", "lower", "upper"]:
        assert_close(risk[col], g[col])


LR = golden("logrank.json")


@pytest.mark.parametrize(
    ("case", "group", "strata", "dataset"),
    [
        ("lung_sex", "sex", None, "lung"),
        ("veteran_celltype", "celltype", None, "veteran"),
        ("lung_sex_strata_ecog", "sex", "ph.ecog", "lung"),
        ("veteran_trt_strata_celltype", "trt", "celltype", "veteran"),
    ],
)
def test_logrank_matches_survdiff(case, group, strata, dataset):
    """R: the ``survdiff`` call stored in ``logrank.json[case]['call']`` (plain and ``strata()``)."""
    g = LR[case]
    res = logrank(data(dataset), "time", "status", group=group, strata=strata)
    assert res.df == g["df"]
    assert_close(res.chisq, g["chisq"])
    assert_close(res.p, g["p"])
    assert res.table["group"].astype(str).tolist() == g["group"]
    assert_close(res.table["n"], g["n"])
    assert_close(res.table["observed"], g["observed"])
    assert_close(res.table["expected"], g["expected"])
