"""``design: observational`` end to end (issue 22): ``odeval run`` on a study the generator
made with planted confounding (``--design observational``), with a plan that declares the
observational design, ends in a report whose primary results are the propensity-score
weighted estimates, with the unadjusted ones beside them, the diagnostics, E-values and
words that do not claim causation, and that passes check-outputs. An awkward
observational study (a site with one arm only, an arm without events) ends in a report
that says what was left out and what could not be estimated, not in a traceback."""

from __future__ import annotations

import html
import re

import duckdb
import pandas as pd
import yaml

from pipeline.params import load_params
from tests.studyshapes import Shape, run_shape


def _observational_params(tmp_path):
    doc = load_params()
    doc["design"] = {**doc["design"], "type": "observational", "unit": "person",
                     "pairing": False, "cluster_covariates": []}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _text(report) -> str:
    raw = re.sub(r"<img[^>]*>", "", report.read_text(encoding="utf-8"))
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", raw)))


def _rows(wh):
    con = duckdb.connect(str(wh), read_only=True)
    try:
        return con.execute("select analysis, outcome, measure, estimate, method, notes "
                           "from results.analysis_estimates_public").df()
    finally:
        con.close()


def test_an_observational_study_is_analysed_by_weighting_with_the_unadjusted_beside(tmp_path):
    shape = Shape(design="observational", sites=4, people_per_site=100, seed=11)
    run = run_shape(shape, tmp_path, params=_observational_params(tmp_path))
    assert run.ok, run.output
    rows = _rows(run.warehouse)
    primary = rows[rows.analysis == "primary"].iloc[0]
    assert primary.measure == "hazard ratio" and "weighted Cox" in primary.method
    assert "propensity score: logistic model" in primary.method
    for analysis in ("observational_unadjusted", "outcome_regression"):
        assert ((rows.analysis == analysis) & (rows.outcome == "relapse")
                & (rows.measure == "hazard ratio")).sum() == 1, analysis
    # the randomised analysis's unadjusted rows are replaced by the weighting family's
    assert not ((rows.analysis == "sensitivity") & (rows.measure == "hazard ratio")).any()
    text = _text(run.report)
    for words in ("Adjusted comparison: the primary analysis of this observational design",
                  "Not a randomised comparison.", "Balance and overlap",
                  "Weighted estimates, with the unadjusted ones beside them",
                  "E-values of the weighted ratios", "Confounding adjustment (primary)",
                  "Unadjusted (confounded):", "Outcome regression adjusted for the covariates",
                  "Not adjusted for confounding: in this observational design",
                  "not a check of the primary: not adjusted for confounding"):
        assert words in text, words
    # a confounded comparison is never read as confirming the weighted primary
    assert "holds: " not in text.split("Restricted mean time free of the event")[1][:400]
    # the section comes right after the plan, before the data flow
    assert text.index("Adjusted comparison") < text.index("1. Who is in the analysis")
    # no causal claim: the weighted estimands are associations under stated assumptions
    assert "An association adjusted for the measured covariates" in text
    assert "effect of Open Dialogue only if" in text
    # nor a randomisation that did not happen: the flow is STROBE's, the subgroups describe
    assert "Flow of people (STROBE)" in text and "CONSORT" not in text
    assert "from randomisation" not in text and "clusters are not people" not in text
    assert "Does the effect on relapse differ" not in text
    assert "these models compare the arms as they are, not weighted" in text
    # the first screen words the primary result as an association, not an effect
    summary = text[:text.index("Design and analysis plan")]
    assert "In the Open Dialogue arm the hazard of a first relapse was" in summary
    assert "not an effect of Open Dialogue" in summary and "With Open Dialogue" not in summary
    assert "Observational" in summary or "observational" in summary
    # the E-value table shows each weighted ratio as the weighted table does (not rounded
    # twice: 0.545 published to 3 digits, then to 2, read 0.55 beside a 0.54)
    for label in ("relapse hazard ratio", "involuntary admission rate ratio",
                  "return to work risk ratio"):
        shown = re.findall(re.escape(label) + r" (\d+\.\d\d \(\d+\.\d\d to \d+\.\d\d\))",
                           text)
        assert len(shown) == 2 and shown[0] == shown[1], (label, shown)


def test_a_site_with_one_arm_and_an_arm_without_events_end_in_a_report(tmp_path):
    shape = Shape(design="observational", sites=3, people_per_site=60, empty_arm_sites=1,
                  no_events_arm="open_dialogue", seed=3)
    run = run_shape(shape, tmp_path, params=_observational_params(tmp_path))
    assert run.ok, run.output
    text = _text(run.report)
    assert re.search(r"positivity: 1 site\(s\) with people in one arm only \(S01; (about "
                     r"\d+|a few) people\) left out of the weighted comparison", text)
    rows = _rows(run.warehouse)
    hr = rows[(rows.analysis == "primary") & (rows.measure == "hazard ratio")].iloc[0]
    assert hr.method == "not estimated" and pd.isna(hr.estimate)
    assert hr.notes.startswith("Not estimated: no relapse in the Open Dialogue arm")
    # the other outcomes are still estimated
    rtw = rows[(rows.analysis == "secondary") & (rows.outcome == "return_to_work")
               & (rows.measure == "risk difference")].iloc[0]
    assert rtw.method != "not estimated"
