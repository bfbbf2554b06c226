"""The report's words for readers (pipeline/report_words.py) and its first screen
(pipeline/report_summary.py): p-values as a journal prints them, labels in place of codes,
sentences that end, the primary result in words (no causal wording for an observational
design; a null interval read for what it spans), the multiplicity verdict of each secondary
outcome, the synthetic-data banner and the contents."""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

import duckdb
import numpy as np
import pandas as pd
import pytest

from pipeline import report_summary as rs
from pipeline import report_words as rw


@pytest.mark.parametrize("p, shown", [
    (1.2e-16, "p < 0.001"), (0.00099, "p < 0.001"), (0.001, "p = 0.001"),
    (0.0026, "p = 0.003"), (0.0133, "p = 0.013"), (0.049, "p = 0.049"), (0.0551, "p = 0.055"),
    (0.1295, "p = 0.13"), (0.94, "p = 0.94"), (0.996, "p > 0.99"), (float("nan"), ""),
    (None, ""),
])
def test_p_values_are_printed_for_readers_never_in_scientific_notation(p, shown):
    assert rw.p_text(p) == shown
    assert "e-" not in rw.p_value(p)


def test_codes_become_labels_as_whole_words_but_not_a_column_named_after_a_dot():
    text = ("adjusted for sex, age_at_index, diagnosis_group, prior_admissions_2y; REML tau^2, "
            "knha test; I^2 = 27%; cluster (people.cluster_id); Open Dialogue arm's "
            "p1_within_24h; negbin log-linear model; Cox with od (Efron ties)")
    out = rw.reader(text)
    for code in ("age_at_index", "diagnosis_group", "prior_admissions_2y", "knha", "tau^2",
                 "I^2", "p1_within_24h", "negbin", "with od"):
        assert code not in out
    assert "age at referral" in out and "Hartung-Knapp test" in out and "τ²" in out
    assert "first network meeting within 24 h of referral" in out
    assert "people.cluster_id" in out  # a column reference named on purpose stays
    assert rw.label("carer_homemaker") == "carer or homemaker"
    assert rw.label("open_dialogue") == "Open Dialogue"
    assert rw.label("some_new_code") == "some new code"
    assert rw.words("a < b, return_to_work") == "a &lt; b, in work or education at 2 years"


def test_an_estimand_and_the_method_after_it_do_not_run_together():
    assert rw.sentence("conditional on site") == "Conditional on site."
    assert rw.sentence("Ends here.") == "Ends here."
    assert rw.sentence("") == ""


def test_medians_of_counts_are_integers_and_other_summaries_are_left_alone():
    assert rw.integral_summary("0.0 [0.0, 1.0]") == "0 [0, 1]"
    assert rw.integral_summary("30.7 (10.2)") == "30.7 (10.2)"
    assert rw.integral_summary("2.0 [1.0, 3.5]") == "2.0 [1.0, 3.5]"
    assert rw.unit_digits("mg/day") == 0 and rw.unit_digits("DDD/day") == 2
    assert rw.unit_digits("days") == 1 and rw.unit_digits("per person-year") == 2


def test_the_glossary_lists_the_terms_the_report_uses_and_no_other():
    html = rw.glossary_html("<p>hazard ratio 0.64 (95% CI 0.35 to 1.19); p = 0.13</p>")
    assert "id='glossary'" in html
    assert "Hazard ratio" in html and "p-value" in html and "95% confidence interval" in html
    assert "Propensity" not in html and "E-value" not in html and "Holm" not in html
    assert rw.glossary_html("<p>nothing statistical</p>") == ""


# --------------------------------------------------------------------------- first screen

def _row(**kw):
    base = dict(analysis="primary", outcome="relapse", measure="hazard ratio", estimate=0.644,
                lower=0.349, upper=1.189, p=0.1295, notes="",
                method="cluster-level analysis: log(O/E); two-stage cluster-level analysis "
                       "(Hayes and Moulton), t-test on the cluster summaries (14 clusters, 6 df)")
    base.update(kw)
    return SimpleNamespace(**base)


def test_a_null_primary_interval_is_read_for_its_span_not_as_no_effect():
    text = rs.effect_words(_row(), observational=False)
    assert "hazard of a first relapse was 36% lower than with usual care" in text
    assert "hazard ratio 0.64 (95% CI 0.35 to 1.19); p = 0.13." in text
    assert "Test: two-stage cluster-level analysis (Hayes and Moulton)" in text
    assert "from a 65% lower hazard to a 19% higher hazard" in text
    assert "not evidence of no difference" in text


def test_an_interval_reaching_infinity_is_read_not_a_crash():
    """A model at its boundary (a one-site study of 13 people) gave an upper limit of inf:
    OverflowError in round() stopped the report."""
    text = rs.effect_words(_row(upper=np.inf), observational=False)
    assert "from a 65% lower hazard to an infinitely higher hazard" in text


def test_an_estimate_that_is_not_finite_is_not_printed_as_nan():
    """A Cox fit that did not converge was printed 'Hazard ratio of relapse ...: nan'."""
    from pipeline.report import _estimate_box

    row = pd.Series(dict(estimate=np.nan, lower=np.nan, upper=np.nan, p=np.nan,
                         method="Cox, Efron ties; did not converge", estimand="Hazard ratio.",
                         notes="The fit did not converge."))
    html = _estimate_box(row, "Hazard ratio of relapse")
    assert "no finite estimate" in html and "nan" not in html.replace("Efron", "")


def test_the_love_plot_draws_a_column_of_nulls_read_back_as_int64():
    """All-null SMDs come back from DuckDB as Int64 with <NA>: 'boolean value of NA is
    ambiguous' stopped 24 of 158 small observational studies of an outside fuzzing run."""
    from pipeline.stats.figures_weighting import plot_love

    bal = pd.DataFrame({"term": ["age", "sex: male"],
                        "smd_before": pd.array([None, None], dtype="Int64"),
                        "smd_after": [0.05, np.nan]})
    fig = plot_love(bal)
    assert fig is not None


def test_an_interval_excluding_no_difference_is_not_called_null():
    text = rs.effect_words(_row(estimate=0.58, lower=0.45, upper=0.75, p=2e-5),
                           observational=False)
    assert "42% lower" in text and "p &lt; 0.001" in text
    assert "includes no difference" not in text


def test_an_observational_primary_result_has_no_causal_wording():
    text = rs.effect_words(_row(), observational=True)
    assert "In the Open Dialogue arm the hazard" in text
    assert "With Open Dialogue" not in text
    assert "not an effect of Open Dialogue" in text and "not randomised" in text


def test_a_risk_difference_is_read_in_percentage_points():
    text = rs.effect_words(_row(outcome="return_to_work", measure="risk difference",
                                estimate=0.115, lower=-0.039, upper=0.269, p=0.117),
                           observational=False)
    assert "share of people in work or education at 2 years was 11.5 percentage points higher" \
        in text
    assert "risk difference 11.5 percentage points (95% CI -3.9 to 26.9)" in text
    assert "from a share 3.9 percentage points lower to a share 26.9 percentage points higher" \
        in text


def test_a_primary_result_not_estimated_says_why():
    text = rs.effect_words(_row(method="not estimated", estimate=np.nan, lower=np.nan,
                                upper=np.nan, p=np.nan, notes="Not estimated: no relapse "
                                "in one arm"), observational=False)
    assert "not estimated" in text and "No relapse in one arm." in text


def _est() -> pd.DataFrame:
    rows = [("secondary", "involuntary_admission", "rate ratio", 0.66, 0.42, 1.01, 0.055),
            ("secondary", "antipsychotic_any", "risk difference", -0.206, -0.476, 0.064, 0.107),
            ("secondary", "antipsychotic_any", "risk ratio", 0.56, 0.29, 1.10, 0.077)]
    df = pd.DataFrame(rows, columns=["analysis", "outcome", "measure", "estimate", "lower",
                                     "upper", "p"])
    df["method"], df["notes"] = "CR2", ""
    return df


def _mt(method, confirmatory, rejected, p_adj):
    return pd.DataFrame({"outcome": ["relapse", "involuntary_admission", "antipsychotic_any"],
                         "role": ["primary", "secondary", "secondary"], "method": method,
                         "order": [0, 1, 2], "p": [0.01, 0.055, 0.107],
                         "p_adjusted": [0.01, *p_adj], "rejected": [True, *rejected],
                         "confirmatory": [True, *confirmatory], "note": ""})


def test_secondary_results_carry_the_multiplicity_verdict_in_the_plans_order():
    items = rs.secondary_items(_est(), _mt("hierarchical", [True, True], [True, False],
                                           [0.01, 0.107]))
    assert len(items) == 2
    assert "Involuntary admissions" in items[0] and "rate ratio 0.66 (95% CI 0.42 to 1.01)" \
        in items[0]
    assert "confirmed after the multiplicity adjustment (adjusted p = 0.01)" in items[0]
    # the plan's first measure (the risk difference), in percentage points
    assert "risk difference -20.6 percentage points" in items[1] and "risk ratio" not in items[1]
    assert "not confirmed (adjusted p = 0.11); the testing sequence stops here" in items[1]


def test_secondary_results_the_sequence_did_not_reach_are_descriptive_only():
    # the same verdict for every outcome is said once, after them
    items = rs.secondary_items(_est(), _mt("hierarchical", [False, False], [False, False],
                                           [0.13, 0.13]))
    assert len(items) == 3 and "rate ratio 0.66" in items[0] and "descriptive" not in items[0]
    assert "All descriptive only: the testing sequence did not reach them." in items[2]
    items = rs.secondary_items(_est(), _mt("none", [False, False], [False, False],
                                           [np.nan, np.nan]))
    assert "All descriptive only (the plan adjusts for no multiplicity)." in items[-1]
    # different verdicts stay with their outcomes
    items = rs.secondary_items(_est(), _mt("hierarchical", [True, False], [False, False],
                                           [0.055, 0.107]))
    assert len(items) == 2 and "not confirmed (adjusted p = 0.055)" in items[0]
    assert "descriptive only: the testing sequence did not reach it" in items[1]


def test_the_synthetic_banner_follows_truth_json_beside_the_loaded_files(tmp_path):
    con = duckdb.connect()
    con.execute("create schema meta")
    con.execute("create table meta.loads (source_file varchar)")
    con.execute("insert into meta.loads values (?)", [str(tmp_path / "people.parquet")])
    assert not rs.is_synthetic(con)
    (tmp_path / "truth.json").write_text(json.dumps({}))
    assert rs.is_synthetic(con)
    assert not rs.is_synthetic(duckdb.connect())  # not a warehouse


def test_the_run_date_can_be_pinned_with_source_date_epoch(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert rs.run_date() == dt.date(2023, 11, 14)
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert rs.run_date() == dt.datetime.now(dt.timezone.utc).date()


def test_the_contents_list_every_section_heading_but_the_summary():
    html = ("<h2 id='summary'>Summary</h2><h2 id='flow'>1. Who is in the analysis</h2>"
            "<h3 id='x'>not me</h3><h2 id=\"sens\" class='s'>8. Sensitivity <em>analyses</em>"
            "</h2><h2 id='glossary'>Glossary</h2>")
    assert rs.contents_html(html) == ("<ul><li><a href='#flow'>1. Who is in the analysis</a>"
                                      "</li><li><a href='#sens'>8. Sensitivity analyses</a></li>"
                                      "<li><a href='#glossary'>Glossary</a></li></ul>")


def test_the_data_quality_link_is_given_only_when_the_report_is_beside_it():
    d = dt.date(2026, 12, 6)
    assert "href='data_quality.html'" in rs.meta_line("data_quality.html", d)
    assert "data_quality.html'" not in rs.meta_line(None, d)
    assert "Run date 2026-12-06" in rs.meta_line(None, d)


def test_recruitment_imbalance_is_a_line_only_when_the_arms_differ_notably():
    con = duckdb.connect()
    est = pd.DataFrame({"analysis": ["flow"], "measure": ["recruitment rate ratio"],
                        "estimate": [1.63], "lower": [0.57], "upper": [4.65], "p": [0.297]})
    assert rs._imbalance(con, set(), est, {"open_dialogue": 650, "usual_care": 600}, 7,
                         clustered=True) == ""
    line = rs._imbalance(con, set(), est, {"open_dialogue": 795, "usual_care": 605}, 7,
                         clustered=True)
    assert "1.31 times as many people" in line and "1.63 times as high" in line
    assert "recruitment bias" in line
    line = rs._imbalance(con, set(), est.iloc[:0], {"open_dialogue": 400, "usual_care": 900},
                         5, clustered=False)
    assert "0.44 times as many people" in line and "recruitment bias" not in line


def test_love_plot_terms_are_named_as_readers_name_them():
    from pipeline.report_weighting import term_label

    assert term_label("diagnosis_group: bipolar") == "Diagnosis group: bipolar"
    assert term_label("age_at_index") == "Age at referral"
    assert term_label("site_id: S01") == "Site: S01"
    assert term_label("baseline_activity: carer_homemaker") == \
        "Activity at referral: carer or homemaker"
