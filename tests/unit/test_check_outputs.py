"""check-outputs finds each kind of breach, and passes clean outputs."""

from __future__ import annotations

import base64

import duckdb
import pytest

from pipeline import disclosure
from pipeline.check_outputs import check

CFG = {**disclosure.DEFAULTS, "unrounded_ok": ["data_quality.html"]}


@pytest.fixture
def warehouse():
    con = duckdb.connect()
    con.execute("create schema raw")
    con.execute("create table raw.people as select * from (values ('P0000042'), ('P0000043')) "
                "as t(person_id)")
    con.execute("create table raw.staff as select * from (values ('T00007')) as t(staff_id)")
    return con


def rules(folder, con=None):
    return sorted({(b.file, b.rule) for b in check(folder, CFG, con)})


def test_clean_outputs_pass(tmp_path, warehouse):
    (tmp_path / "t.csv").write_text("site_id,n,events,estimate\nS01,40,[c],\nS02,0,0,0.5\n")
    (tmp_path / "m.json").write_text('{"a": {"n_people": 1400, "estimate": 0.33}}')
    (tmp_path / "r.html").write_text("<table><tr><th>site</th></tr><tr><td class='count'>1,400"
                                     "</td><td class='count'>[c]</td></tr></table>")
    assert rules(tmp_path, warehouse) == []


def test_a_count_of_3_is_caught_in_csv_json_and_html(tmp_path):
    (tmp_path / "t.csv").write_text("site_id,n,events\nS01,40,3\n")
    (tmp_path / "m.json").write_text('{"x": {"n_people": 3}}')
    (tmp_path / "r.html").write_text("<p>People <span class='count'>3</span></p>")
    assert rules(tmp_path) == [("m.json", "count.small"), ("r.html", "count.small"),
                               ("t.csv", "count.small")]


def test_unrounded_counts_are_caught_except_where_allowed(tmp_path):
    (tmp_path / "t.csv").write_text("n\n1401\n")
    (tmp_path / "data_quality.html").write_text("<table><tr><td class='n'>1,401</td>"
                                                "<td class='n'>5</td></tr></table>")
    assert rules(tmp_path) == [("data_quality.html", "count.small"), ("t.csv", "count.unrounded")]


def test_person_and_staff_ids_are_caught_anywhere_even_inside_an_embedded_figure(tmp_path, warehouse):
    svg = base64.b64encode(b"<svg><text>T00007</text></svg>").decode()
    (tmp_path / "r.html").write_text(f"<p>see P0000042-R1</p><img src='data:image/svg+xml;base64,{svg}'>")
    (tmp_path / "f.svg").write_text("<svg><text>P0000043</text></svg>")
    (tmp_path / "t.csv").write_text("person_id,estimate\nx,1\n")
    assert rules(tmp_path, warehouse) == [("f.svg", "identifier.value"), ("r.html", "identifier.value"),
                                          ("t.csv", "identifier.column")]
    assert {b.detail for b in check(tmp_path, CFG, warehouse) if b.file == "r.html"} == {
        "a person_id value appears in the file", "a staff_id value appears in the file"}


def test_nhs_number_shapes_are_caught(tmp_path):
    (tmp_path / "a.txt").write_text("ref 943 476 5919 and 1234567890\n")  # valid, invalid
    assert rules(tmp_path) == [("a.txt", "identifier.nhs_number")]


def test_a_suppressed_cell_that_is_the_difference_of_two_shown_cells_is_caught(tmp_path):
    # the audit's data_quality.html row: rows in 84, clean 81, quarantined hidden (= 3)
    (tmp_path / "data_quality.html").write_text(
        "<table><tr><th>table</th><th>rows in</th><th>clean</th><th>quarantined</th></tr>"
        "<tr><td>staff</td><td class='n'>84</td><td class='n'>81</td><td class='n'>&lt;=7</td>"
        "</tr></table>")
    (tmp_path / "t.csv").write_text("site_id,n_raw,n_clean,n_quarantined\nS01,110,105,[c]\n"
                                    "S02,110,[c],[c]\n")
    (tmp_path / "dq.json").write_text('{"sites": [{"n_raw": 110, "n_clean": 105, '
                                      '"n_quarantined": null}]}')
    assert rules(tmp_path) == [("data_quality.html", "count.derivable"),
                               ("dq.json", "count.derivable"), ("t.csv", "count.derivable")]
    details = [b.detail for b in check(tmp_path, CFG) if b.file == "data_quality.html"]
    assert details == ["table row 2: the suppressed count is 84 - 81 = 3"]


def test_rows_that_do_not_give_a_hidden_cell_away_pass(tmp_path):
    # two hidden cells; a difference above the threshold; counts of months that do not add up
    (tmp_path / "t.csv").write_text("site_id,n_raw,n_clean,n_quarantined\nS01,110,[c],[c]\n"
                                    "S02,110,90,[c]\n")
    (tmp_path / "r.html").write_text("<table><tr><td class='count'>[c]</td><td class='count'>"
                                     "40</td><td class='count'>20</td><td class='count'>30</td>"
                                     "</tr></table>")
    assert rules(tmp_path) == []  # 110 - 90 = 20 and 40 - 20 - 30 < 0 give nothing away


def test_a_row_of_rounded_counts_gives_an_interval_not_a_count(tmp_path):
    """An outcome's people and events per arm in a report with counts rounded to 5 (15, 0,
    10 and one hidden): 15 - 0 - 10 = 5 is no sum (the row is not a partition), and with
    rounded parts even a partition gives an interval (the attacker's audit solves those).
    This row refused 57 of 523 small studies. The same row with an exact count is caught."""
    (tmp_path / "report.html").write_text(
        "<table><tr><td>Antipsychotic in the last days</td><td class='count'>10</td>"
        "<td class='count'>[c]</td><td class='count'>15</td><td class='count'>0</td></tr>"
        "</table>")
    assert rules(tmp_path) == []
    (tmp_path / "report.html").write_text(
        "<table><tr><td>x</td><td class='count'>84</td><td class='count'>[c]</td>"
        "<td class='count'>81</td></tr></table>")
    assert ("report.html", "count.derivable") in rules(tmp_path)


def test_a_hash_that_happens_to_hold_ten_valid_digits_is_not_an_nhs_number(tmp_path):
    # a real input sha256 of a synthetic study (400 people, faults 0.04): "3160535339"
    # passes the Modulus 11 check, and stopped `odeval report` for that study
    (tmp_path / "r.html").write_text("<li><code>crisis_episodes</code> crisis_episodes.parquet: "
                                     "<code>5fe3160535339ed60f8eefd2bafe5410f16c11584115315e0d5e8"
                                     "8fdd86a2f2d</code></li>")
    (tmp_path / "s.html").write_text("<p>NHS 3160535339</p>")
    (tmp_path / "t.txt").write_text("nhs_316 053 5339\n")
    assert [(b.file, b.detail) for b in check(tmp_path, CFG)] == [
        ("s.html", "3160535339 is shaped like an NHS number"),
        ("t.txt", "316 053 5339 is shaped like an NHS number")]
