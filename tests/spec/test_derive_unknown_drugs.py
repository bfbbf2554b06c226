"""derived.unknown_drugs: drug names missing from the reference list are reported."""

from pipeline.derive import derive
from tests.spec.conftest import by_person, create_clean, run_derive

import duckdb


def test_unknown_drugs_are_reported_with_counts():
    tables = dict(people="""
      person_id | index_date | data_end_date
      p1        | +0         | +2000
      p2        | +0         | +2000
    """, prescriptions="""
      person_id | drug         | start_on | end_on
      p1        | Olanzapine   | +10      | +20
      p1        | zyprexa      | +10      | +20
      p1        | zyprexa      | +30      | +40
      p2        | Zyprexa      | +10      | +20
      p2        | wonderdrug   | +10      | +20
    """)
    con = duckdb.connect()
    create_clean(con, **tables)
    summary = derive(con)
    assert by_person(con, "unknown_drugs", "n_prescriptions", key="drug") == {
        "wonderdrug": 1, "zyprexa": 3}
    assert by_person(con, "unknown_drugs", "n_people", key="drug") == {
        "wonderdrug": 1, "zyprexa": 2}
    assert summary["unknown_drugs"] == [
        {"drug": "wonderdrug", "n_prescriptions": 1, "n_people": 1},
        {"drug": "zyprexa", "n_prescriptions": 3, "n_people": 2}]


def test_unknown_drugs_never_count_as_antipsychotic_use():
    con = run_derive(people="""
      person_id | index_date | data_end_date
      p1        | +0         | +2000
    """, prescriptions="""
      person_id | drug    | start_on | end_on
      p1        | zyprexa | +10      | +20
    """)
    assert by_person(con, "antipsychotic", "any_use") == {"p1": False}
