"""Section 4 of the report states the outcome definitions ``derived.*`` was built with:
what one relapse and one involuntary admission are, the rates' person-time, the binary
outcomes' denominator and how records with no end date end, from the parameters (not from
fixed text), so a pre-specified grace period or an at-risk denominator is what the reader
is told."""

from __future__ import annotations

import duckdb

from pipeline import derive, report


def _words(params: dict | None) -> tuple[dict[str, str], str]:
    p = derive.resolve_params(params)
    con = duckdb.connect()
    con.execute("create schema derived")
    for name, (columns, rows) in derive.reference_relations(p).items():
        derive._load_reference(con, name, columns, rows)
    return report._definition_words(derive.definitions(con)), report._open_end_words(con)


def test_default_definitions_are_stated():
    words, open_words = _words(None)
    assert "within 2 days of the end of the one before" in words["relapse"]
    assert "a crisis episode followed by an admission" in words["relapse"]
    assert "grace" not in words["relapse"]
    assert words["relapse"].endswith("divide by the follow-up time.")
    assert "a section 2 converted to a section 3 is one admission" in words["involuntary"]
    assert "within 1 day of the end" in words["involuntary"]
    assert "already in hospital counts" in words["involuntary"]
    assert "followed for all 730 days" in words["binary"]
    assert "crisis episodes after 42 days" in open_words
    assert "2: after 28 days" in open_words
    assert "admissions at the person's last day of data" in open_words
    assert "data-quality report counts the open records" in open_words


def test_chosen_definitions_are_stated_not_the_defaults():
    words, open_words = _words({"episode_gap_days": 0, "detention_gap_days": 3,
                                "relapse_grace_days": 14, "rate_person_time": "at_risk",
                                "involuntary_in_hospital": False, "binary_window": "follow_up",
                                "relapse_components": ["admissions"],
                                "open_end": {"crisis_episodes": 28,
                                             "detentions": "data_end"}})
    assert "after a grace period of 14 days" in words["relapse"]
    assert "within 0 days" in words["relapse"]
    assert "crisis resolution" not in words["relapse"]
    assert "days out of acute care" in words["relapse"]
    assert "within 3 days" in words["involuntary"]
    assert "already in hospital does not count" in words["involuntary"]
    assert "the days not detained and not in hospital" in words["involuntary"]
    assert "each person's own follow-up" in words["binary"]
    assert "crisis episodes after 28 days" in open_words
    assert "detentions at the person's last day of data" in open_words
