"""Plausibility upper bounds on every count and amount of the contract (issue 17).

``prior_admissions_2y = 9223372036854775807`` passed validation as clean, moved the
Table 1 SMD from 0.02 to 0.09 and later broke ``pool`` (the bundle moments check). Every
int and float column of ``schemas/`` now has a ``max`` (a year is bounded by its checks),
and a value above it is quarantined with the column's ``range`` rule, which the
data-quality report lists."""

from __future__ import annotations

import json

import pytest

from pipeline.ingest import ingest
from pipeline.schemas import load_contract
from pipeline.validate import validate
from pipeline.warehouse import connect
from tests.conftest import write_extract

#: Columns that are years, bounded by checks against other columns rather than a maximum.
YEARS = {("people", "birth_year")}

PERSON = {"person_id": "P1", "site_id": "S1", "arm": "open_dialogue", "index_date": "2023-01-05",
          "data_end_date": "2024-01-01", "sex": "female", "diagnosis_group": "psychosis"}
ROWS = {
    "people": [{**PERSON, "prior_admissions_2y": 2}],
    "referrals": [{"referral_id": "R1", "person_id": "P1", "received_at": "2023-01-05T09:00"}],
    "contacts": [{"contact_id": "C1", "person_id": "P1", "referral_id": "R1",
                  "start_at": "2023-01-06T10:00", "duration_min": 60,
                  "contact_type": "network_meeting", "location": "home", "attended": "true",
                  "network_members_present": 2}],
    "prescriptions": [{"prescription_id": "X1", "person_id": "P1", "drug": "olanzapine",
                       "route": "oral", "daily_dose_mg": 10, "start_on": "2023-02-01"}],
}


def test_every_count_and_amount_column_has_a_plausible_maximum():
    missing = [f"{t}.{c.name}" for t, table in load_contract().items() for c in table.columns
               if c.type in ("int", "float") and (t, c.name) not in YEARS and c.max is None]
    assert missing == []


@pytest.mark.parametrize("table,column,value", [
    ("people", "prior_admissions_2y", 9223372036854775807),
    ("contacts", "network_members_present", 31),
    ("contacts", "duration_min", 1441),
    ("prescriptions", "daily_dose_mg", 6000.5),
])
def test_a_value_above_the_maximum_is_quarantined_with_its_rule(table, column, value, tmp_path):
    rows = {k: [dict(r) for r in v] for k, v in ROWS.items()}
    rows[table][0][column] = value
    con = connect(tmp_path / "w.duckdb")
    ingest(con, [write_extract(tmp_path / "x", rows)])
    rule = f"{table}.{column}.range"
    report = validate(con, {"great_expectations": False, "max_quarantine_share": 1.0},
                      report_dir=tmp_path / "out")
    assert report.tables[table].rule_counts.get(rule) == 1
    dq = json.loads((tmp_path / "out" / "data_quality.json").read_text())
    assert rule in json.dumps(dq)
