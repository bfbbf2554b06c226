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
