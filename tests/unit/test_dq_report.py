"""The data-quality report hides every count that could be worked out from the others."""

from __future__ import annotations

import datetime as dt
import json
import re

import duckdb
import numpy as np
import pandas as pd
import pytest

from pipeline import disclosure, dq_report
from pipeline.check_outputs import check
from pipeline.metrics import protect_dq
from pipeline.validate import TableResult, ValidationReport

CFG = dict(disclosure.DEFAULTS)

#: (site, table, rows in, clean, quarantined): the audit's case, staff 84 = 81 + 3
FLOW = [("S01", "staff", 20, 17, 3), ("S02", "staff", 64, 64, 0),
        ("S01", "people", 108, 104, 4), ("S02", "people", 250, 240, 10),
        ("S03", "people", 90, 90, 0)]
#: (table, site, month, clean rows): S03's 90 clean people are 87 + 3 in two months
MONTHS = [("people", "S03", "2024-01", 87), ("people", "S03", "2024-02", 3),
          ("people", "S01", "2024-01", 104), ("people", "S02", "2024-01", 240)]
#: (rule, table, rows failing): people's quarantined 14 = 12 + 2
RULES = [("people.sex.vocabulary", "people", 12), ("people.key.duplicate", "people", 2),
         ("staff.role.required", "staff", 3)]
#: (site, clean admissions, open, open beyond a year): S02's 9 = 3 + ... hidden in pairs
OPEN = [("S01", 400, 25, 0), ("S02", 500, 30, 3), ("S03", 90, 9, 9)]


@pytest.fixture
def con():
    c = duckdb.connect()
    c.execute("create schema results")
    c.execute("create table results.dq_tables (site_id varchar, table_name varchar, "
              "n_raw bigint, n_clean bigint, n_quarantined bigint)")
    c.executemany("insert into results.dq_tables values (?, ?, ?, ?, ?)", FLOW)
    c.execute("create table results.dq_completeness (site_id varchar, table_name varchar, "
              "month varchar, n_clean bigint)")
    c.executemany("insert into results.dq_completeness values (?, ?, ?, ?)",
                  [(s, t, m, n) for t, s, m, n in MONTHS])
    c.execute("create table results.dq_rules (rule_id varchar, table_name varchar, "
              "column_name varchar, kind varchar, category varchar, message varchar, "
              "n_rows bigint)")
    c.executemany("insert into results.dq_rules values (?, ?, null, 'x', 'conformance', ?, ?)",
                  [(r, t, r, n) for r, t, n in RULES])
    c.execute("create table results.dq_open_records (site_id varchar, table_name varchar, "
              "column_name varchar, rule_id varchar, n_rows bigint, n_open bigint, "
              "n_open_beyond_max bigint)")
    c.executemany("insert into results.dq_open_records values (?, 'admissions', "
                  "'discharged_on', 'admissions.discharged_on.open_beyond_max', ?, ?, ?)",
                  OPEN)
    c.execute("create table results.dq_examples (rule_id varchar, source_file varchar, "
              "row_number bigint)")
    c.executemany("insert into results.dq_examples values (?, ?, ?)",
                  [("people.key.duplicate", "people.parquet", 7),
                   ("people.key.duplicate", "people.parquet", 9),
                   ("staff.role.required", "staff.parquet", 1),
                   ("staff.role.required", "staff.parquet", 2),
                   ("staff.role.required", "staff.parquet", 5)])
    yield c
    c.close()


def _report(over_threshold=None):
    tables = {}
    for t in ("people", "staff"):
        rows = [r for r in FLOW if r[1] == t]
        tables[t] = TableResult(t, *(sum(r[i] for r in rows) for i in (2, 3, 4)))
    return ValidationReport(extract_date=dt.date(2025, 3, 31), tables=tables,
                            over_threshold=dict(over_threshold or {}))


def _html_rows(text: str) -> dict[tuple[str, ...], list[str]]:
    """Table rows of the report by their leading label cells."""
    out = {}
    for row in re.findall(r"<tr>(.*?)</tr>", text):
        cells = [c for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        if cells:
            labels = tuple(c for c in cells if not re.match(r"^[\d,]+$|^\[c\]$|^&lt;=|.*%$", c))
            out[labels] = cells
    return out


def test_the_audit_case_staff_84_81_and_a_hidden_3_is_not_published(con, tmp_path):
    dq_report.write_files(con, _report(), tmp_path, CFG)
    text = (tmp_path / "data_quality.html").read_text()
    rows = _html_rows(text)
    staff = rows[("staff",)]
    assert staff[1:4].count(disclosure.SUPPRESSED) == 2, staff  # not 84 | 81 | hidden
    assert staff[4] == disclosure.SUPPRESSED  # 3.57% would give the 3 away
    assert "3.57%" not in text
    assert rows[("S01", "people")].count(disclosure.SUPPRESSED) >= 2  # not 108 | 104 | hidden
    summary = json.loads((tmp_path / "data_quality.json").read_text())
    assert summary["tables"]["staff"]["quarantined_share"] is None
    assert sum(v is None for k, v in summary["tables"]["staff"].items() if k.startswith("n_")) == 2
    # and check-outputs, run on the written files, finds nothing
    assert check(tmp_path, {**CFG, "unrounded_ok": ["data_quality.html",
                                                    "data_quality.json"]}) == []


def test_no_sum_in_the_report_has_exactly_one_hidden_cell(con):
    prot = dq_report.protect(con, CFG)
    for t in ("people", "staff"):
        sites = sorted({s for s, tt, *_ in FLOW if tt == t})
        for s in [*sites, "all"]:  # rows in = clean + quarantined
            row = [prot.flow[(t, s, k)] for k in disclosure.FLOW_KINDS]
            assert sum(v is None for v in row) != 1, (t, s, row)
        for k in disclosure.FLOW_KINDS:  # sites to the table total
            col = [prot.flow[(t, s, k)] for s in [*sites, "all"]]
            assert sum(v is None for v in col) != 1, (t, k, col)
    # months to a site's clean rows: 90 = 87 + [c] would give the 3 away
    s03 = [prot.months[("people", "S03", m)] for m in ("2024-01", "2024-02")]
    assert s03 == [None, None] or prot.flow[("people", "S03", "clean")] is None
    # rules to the table's quarantined rows: 14 = 12 + [c]
    assert prot.rules["people.key.duplicate"] is None
    assert prot.rules["people.sex.vocabulary"] is None \
        or prot.flow[("people", "all", "quarantined")] is None


def test_the_hidden_cells_are_those_of_metrics_data_quality_csv_and_the_study_report(con):
    """One suppression pattern: a cell shown (rounded) in metrics/data_quality.csv and hidden
    in data_quality.html, or the reverse, would let the two be subtracted."""
    prot = dq_report.protect(con, CFG)
    exact = pd.DataFrame(FLOW, columns=["site_id", "table_name", "n_raw", "n_clean",
                                        "n_quarantined"])
    tot = exact.groupby("table_name", as_index=False)[["n_raw", "n_clean", "n_quarantined"]].sum()
    tot["site_id"] = "all"
    exact = pd.concat([exact, tot], ignore_index=True)
    exact["quarantined_share"] = exact.n_quarantined / exact.n_raw
    public = protect_dq(exact, CFG)
    for _, r in public.iterrows():
        for col, kind in zip(("n_raw", "n_clean", "n_quarantined"), disclosure.FLOW_KINDS):
            hidden_there = r[col] is None or (isinstance(r[col], float) and np.isnan(r[col]))
            assert hidden_there == (prot.flow[(r.table_name, r.site_id, kind)] is None), \
                (r.table_name, r.site_id, kind)


def test_a_hidden_rule_count_lists_one_example_so_the_number_of_examples_tells_nothing(con):
    text = dq_report.render_html(con, _report(), {**CFG})
    dup = _html_rows(text)[("people.key.duplicate", "conformance", "people.key.duplicate",
                            "people.parquet row 7")]
    assert dup[3] == disclosure.SUPPRESSED and "row 9" not in text
    assert "staff.parquet row 1" in text and "staff.parquet row 5" not in text


def test_the_reason_for_stopping_shows_the_counts_as_the_tables_do(con):
    fatal = {"staff": 0.02}  # validate: "table staff: 3 of 84 rows quarantined (3.6%), ..."
    text = dq_report.render_html(con, _report(fatal), CFG)
    assert "3 of 84" not in text and "3.6%" not in text
    assert "table staff: [c] of 84 rows quarantined ([c]), above the threshold 2%" in text \
        or "table staff: [c] of [c] rows quarantined ([c]), above the threshold 2%" in text
    summary = dq_report.summary(con, _report(fatal), CFG)
    assert "3 of 84" not in summary["fatal"][0]


def test_open_record_counts_hide_small_counts_and_their_complements(con):
    prot = dq_report.protect(con, CFG)
    assert prot.open[("admissions", "S01", "open")] == 25
    assert prot.open[("admissions", "all", "open")] == 64
    beyond = {s: prot.open[("admissions", s, "beyond")] for s in ("S01", "S02", "S03", "all")}
    # 3 is small; the total 12 would give it away (12 - 0 - 9), so a second cell is hidden
    assert beyond["S02"] is None and sum(v is None for v in beyond.values()) >= 2
    assert beyond["S01"] == 0
    rows = {(r["table"], r["site_id"]): r for r in dq_report.open_records(con, prot)}
    assert rows[("admissions", "all")]["rule"] == "admissions.discharged_on.open_beyond_max"
    assert rows[("admissions", "all")]["open_max"] == "365 days"
    text = dq_report.render_html(con, _report(), CFG)
    assert "Open records (no end date) per table and site" in text


def test_open_records_are_counted_per_table_and_site_against_the_schema_maximum():
    """An open admission, crisis episode or detention is counted, and beyond its maximum when
    the person's last day of data (data end or death) is further from its start."""
    from pipeline.schemas import load_contract
    from tests.spec.conftest import create_clean

    c = duckdb.connect()
    create_clean(c, people="""
      person_id | site_id | index_date | data_end_date | death_date
      p1        | s1      | +0         | +800          |
      p2        | s2      | +0         | +800          | +300
    """, admissions="""
      person_id | admitted_on | discharged_on
      p1        | +10         |
      p1        | +500        |
      p1        | +20         | +30
      p2        | +10         |
    """, crisis_episodes="""
      person_id | start_on | end_on
      p1        | +700     |
      p1        | +790     |
    """, detentions="""
      person_id | legal_section | start_on | end_on
      p1        | 2           | +700     |
      p1        | 3           | +100     |
      p2        | 136         | +297     |
      p2        | 136         | +298     |
    """)
    c.execute("create schema results")
    c.execute("create temp table _person_sites as select person_id, site_id from clean.people")
    dq_report._open_records(c, load_contract())
    got = {(t, s): (n, o, b) for t, s, n, o, b in c.execute(
        "select table_name, site_id, n_rows, n_open, n_open_beyond_max "
        "from results.dq_open_records").fetchall()}
    # p1: open 790 days (> 365) and 300 days; p2 died 290 days after admission
    assert got[("admissions", "s1")] == (3, 2, 1)
    assert got[("admissions", "s2")] == (1, 1, 0)
    # 100 days open (> 42) and 10 days
    assert got[("crisis_episodes", "s1")] == (2, 2, 1)
    # section 2: 100 days (> 28); section 3 has no maximum; section 136: 3 days (> 2) and 2
    assert got[("detentions", "s1")] == (2, 2, 1)
    assert got[("detentions", "s2")] == (2, 2, 1)
    assert ("prescriptions", "s1") not in got  # no rows, no count


def test_the_grid_covers_the_extract_window_and_shades_gaps_only_inside_active_periods(con):
    """Every month from the first referral (2024-01) to the extract date (2025-03), a month
    without rows anywhere included; S01's missing 2024-02 is a gap inside its active period,
    S02's months before it started (2024-01) are blank, not gaps. The grid scrolls in its
    own box instead of widening the page."""
    con.executemany("insert into results.dq_completeness values (?, 'contacts', ?, ?)",
                    [("S01", "2024-01", 50), ("S01", "2024-03", 40), ("S02", "2024-02", 30),
                     ("S02", "2024-04", 20)])
    text = dq_report.render_html(con, _report(), CFG)
    grid = text[text.index("clean contacts rows"):]
    grid = grid[:grid.index("</table>")]
    head = re.findall(r"<th>([^<]*)</th>", grid)
    months = [f"2024-{m:02d}" for m in range(1, 13)] + ["2025-01", "2025-02", "2025-03"]
    assert head == ["site", *months]
    rows = {r[0][1]: r for r in (re.findall(r"<td class='([^']*)'>([^<]*)</td>", tr)
                                 for tr in re.findall(r"<tr>(.*?)</tr>", grid)) if r}
    s01 = rows["S01"][1:]
    assert [c for c, _ in s01[:3]] == ["n", "gap", "n"] and s01[1][1] == "0"
    assert {c for c, _ in s01[3:]} == {"off"} and {v for _, v in s01[3:]} == {""}
    s02 = rows["S02"][1:]
    assert [c for c, _ in s02[:4]] == ["off", "n", "gap", "n"] and s02[0][1] == ""
    assert "<div class='wide grid'><table><caption>Completeness: clean contacts" in text
    assert "from 2024-01 (the first referral) to 2025-03 (the extract date)" in text


def test_rules_are_listed_by_failing_rows_with_the_rules_no_row_broke_folded(con):
    """Shown counts first, largest first; hidden counts next, by id (sorting them by their
    value would tell it); rules with no failing row in a folded list."""
    con.executemany("insert into results.dq_rules values (?, ?, null, 'x', 'conformance', ?, ?)",
                    [("staff.key.duplicate", "staff", "staff.key.duplicate", 0),
                     ("people.birth_year.range", "people", "people.birth_year.range", 0),
                     ("contacts.location.required", "contacts", "location", 25),
                     ("contacts.key.duplicate", "contacts", "duplicate", 40)])
    text = dq_report.render_html(con, _report(), CFG)
    broken = text[text.index("<caption>Rules broken"):]
    broken = broken[:broken.index("</table>")]
    order = re.findall(r"<tr><td class=''>([^<]*)</td>", broken)
    # people's 12 and 2 and staff's 3 are hidden (2 and 3 small, 12 = 14 - 2)
    assert order == ["contacts.key.duplicate", "contacts.location.required",
                     "people.key.duplicate", "people.sex.vocabulary", "staff.role.required"]
    assert "5 of 7 rules" in broken
    folded = text[text.index("<details>"):text.index("</details>")]
    assert "2 rules with no failing row" in folded
    assert re.findall(r"<tr><td class=''>([^<]*)</td>", folded) == ["people.birth_year.range",
                                                                    "staff.key.duplicate"]
