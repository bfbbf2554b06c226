"""Awkward but ordinary studies end in a report (issue 17): each shape here ended in a
Python traceback before. Where an analysis cannot be estimated, the report says so where
the estimate would be, with the reason, and the rest of the report is built and passes
check-outputs. ``odeval run`` runs in this process (typer's runner) on a study made by
:mod:`tests.studyshapes`; the property test (tests/property/test_run_shapes.py) tries
many more shapes."""

from __future__ import annotations

import html
import re

import duckdb
import pytest

from tests.studyshapes import Shape, run_shape


def _text(report) -> str:
    """The report's visible text, tags dropped, entities decoded, spaces collapsed."""
    raw = re.sub(r"<img[^>]*>", "", report.read_text(encoding="utf-8"))
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", raw)))


def _estimate(wh, analysis: str, measure: str) -> tuple:
    con = duckdb.connect(str(wh), read_only=True)
    try:
        return con.execute("select estimate, method, notes from results.analysis_estimates "
                           "where analysis = ? and measure = ?", [analysis, measure]).fetchone()
    finally:
        con.close()


def test_a_single_site_ends_in_a_report(tmp_path):
    """Was: InvalidInputException 'Need a DataFrame with at least one column' (the empty
    funnel table). A single-site run is what each site does before `odeval export`."""
    run = run_shape(Shape(sites=1, people_per_site=120, seed=3), tmp_path)
    assert run.ok, run.output
    text = _text(run.report)
    assert ("First network meeting within 24 h of referral: 1 of 1 site with values that can "
            "be shown (small counts are suppressed); a funnel plot needs two or more") in text
    assert ("Pooled hazard ratio of relapse over sites (random effects): not estimated. 1 site "
            "with a hazard ratio; a meta-analysis needs two or more.") in text
    assert _estimate(run.warehouse, "primary", "hazard ratio")[1] != "not estimated"


def test_an_observational_study_without_e_values_ends_in_a_report(tmp_path):
    """Was: InvalidInputException 'Need a DataFrame with at least one column' (no weighted
    estimate had an E-value, so their table had no columns; 10 of 158 observational studies
    of an outside fuzzing run)."""
    run = run_shape(Shape(sites=5, people_per_site=3, design="observational", seed=977402),
                    tmp_path)
    assert run.ok, run.output


def test_an_arm_without_admissions_crises_or_detentions_ends_in_a_report(tmp_path):
    """Was: KeyError 'n' in the site meta-analysis (no site had a hazard ratio)."""
    run = run_shape(Shape(sites=3, people_per_site=60, no_events_arm="open_dialogue", seed=3),
                    tmp_path)
    assert run.ok, run.output
    text = _text(run.report)
    assert ("Hazard ratio of relapse, Open Dialogue vs usual care: not estimated. No relapse in "
            "the Open Dialogue arm: the ratio would be 0 or infinite") in text
    assert ("Rate ratio of involuntary admissions: not estimated. No involuntary admission "
            "in the Open Dialogue arm: the ratio would be 0 or infinite") in text
    assert "3 sites without a hazard ratio, left out of the meta-analysis" in text
    est, method, notes = _estimate(run.warehouse, "secondary", "rate ratio")
    assert est is None and method == "not estimated" and notes.startswith("Not estimated: ")


def test_a_hundred_sites_of_four_people_end_in_a_report(tmp_path):
    """Was: LinAlgError 'Singular matrix' in a site's Cox model (an event while only its
    own arm was at risk); such sites are left out of the meta-analysis, with the reason."""
    run = run_shape(Shape(sites=100, people_per_site=4, seed=6), tmp_path)
    assert run.ok, run.output
    notes = _estimate(run.warehouse, "site_comparison", "pooled hazard ratio")[2]
    assert "left out of the meta-analysis (the information matrix is singular" in notes
    assert "left out of the meta-analysis" in _text(run.report)


@pytest.mark.parametrize("shape", [
    Shape(sites=3, people_per_site=60, all_censored=True, seed=3),
    Shape(sites=2, people_per_site=2, seed=3),
    Shape(sites=4, people_per_site=40, clusters="one_per_site", seed=3),
    Shape(sites=3, people_per_site=40, dead_early=True, seed=3),
], ids=lambda s: s.label())
def test_shapes_that_raised_inside_numpy_scipy_or_pandas_end_in_a_report(shape, tmp_path):
    """All censored (pandas 'No objects to concatenate' in Aalen-Johansen), 2 x 2 people
    (scipy's theta search), one cluster per site (no site with both arms: singular Cox),
    everyone dead within a month (no one's return to work is known)."""
    run = run_shape(shape, tmp_path)
    assert run.ok, run.output
    assert "not estimated" in _text(run.report)
