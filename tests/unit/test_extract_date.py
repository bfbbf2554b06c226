"""The default extract date on a trial with staggered entry (issue 17).

Each person of such a trial has their own data_end_date (the end of their two years, or
their transfer out). The old default, the most common data_end_date, fell on one early
person's end, and everyone who ended later broke ``after_extract``: most of a clean trial
was quarantined and validate refused it. The default is now the latest data_end_date not
after the load date, and says so in the data-quality report."""

from __future__ import annotations

import json

import pytest

from pipeline.ingest import ingest
from pipeline.synth import generate_study
from pipeline.validate import validate
from pipeline.warehouse import connect


@pytest.fixture(scope="module")
def staggered(tmp_path_factory):
    root = tmp_path_factory.mktemp("staggered")
    generate_study(root / "raw", people=400, sites=3, seed=11, staggered=True)
    return root


def test_a_clean_staggered_trial_quarantines_nothing(staggered, tmp_path):
    con = connect(tmp_path / "w.duckdb")
    ingest(con, [staggered / "raw"])
    ends = con.execute("select count(distinct data_end_date), max(data_end_date) "
                       "from raw.people").fetchone()
    assert ends[0] > 200  # per-person end dates, none shared by most people
    report = validate(con, {"great_expectations": False}, report_dir=tmp_path / "out")
    assert {t: r.n_quarantined for t, r in report.tables.items() if r.n_quarantined} == {}
    assert report.extract_date == ends[1]
    dq = json.loads((tmp_path / "out" / "data_quality.json").read_text())
    assert dq["extract_date_rule"].startswith("the latest people.data_end_date not after the "
                                              "load date")


def test_a_typed_century_cannot_move_the_extract_date(staggered, tmp_path):
    """A data_end_date 75 years ahead (after the load) is quarantined, not the extract date."""
    con = connect(tmp_path / "w.duckdb")
    ingest(con, [staggered / "raw"])
    latest = con.execute("select max(data_end_date) from raw.people").fetchone()[0]
    con.execute("update raw.people set data_end_date = data_end_date + interval 27394 day "
                "where person_id = (select min(person_id) from raw.people)")
    report = validate(con, {"great_expectations": False})
    assert report.extract_date <= latest
    assert report.tables["people"].rule_counts.get("people.data_end_date.after_extract") == 1


def test_an_extract_date_in_params_is_used_and_named(staggered, tmp_path):
    con = connect(tmp_path / "w.duckdb")
    ingest(con, [staggered / "raw"])
    report = validate(con, {"great_expectations": False, "extract_date": "2030-01-01"})
    assert str(report.extract_date) == "2030-01-01"
    assert report.extract_date_rule == "params.yaml validate.extract_date"
