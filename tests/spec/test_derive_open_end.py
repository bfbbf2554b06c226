"""Open records (no end date): how each table's open records end (derive.open_end).

Defaults: an open admission or prescription runs to the person's last day of data (the
contract: still in hospital, still prescribed); an open crisis episode ends 6 weeks after
it began and an open detention at its section's legal maximum (schemas/ open_max_days),
or on the last day of data if that comes first.
"""

import pytest

from pipeline.errors import OdevalError
from tests.spec.conftest import by_person, run_derive

PEOPLE = """
  person_id | index_date | data_end_date | death_date
  p1        | +0         | +2000         |
  p2        | +0         | +300          |
  p3        | +0         | +2000         | +100
"""


def ends(con, kind: str) -> dict:
    """{person_id: (end_day used, open end rule)} of the records of one kind."""
    return {p: (e, r) for p, e, r in con.execute(
        "select person_id, end_day, open_end_rule from derived.int_care_records "
        "where kind = ? order by person_id", [kind]).fetchall()}


def test_an_open_admission_runs_to_the_last_day_of_data():
    # p1: followed to day 730, data to day 2000; p2: data end day 300; p3: died on day 100
    con = run_derive(people=PEOPLE, admissions="""
      person_id | admitted_on | discharged_on
      p1        | +700        |
      p2        | +280        |
      p3        | +90         |
    """)
    assert ends(con, "admission") == {"p1": (2000, "data_end"), "p2": (300, "data_end"),
                                      "p3": (100, "data_end")}
    # bed days are the nights in follow-up: 700..729, 280..299, 90..99
    assert by_person(con, "recurrent", "bed_days") == {"p1": 30, "p2": 20, "p3": 10}


def test_an_open_crisis_episode_ends_six_weeks_after_it_began():
    con = run_derive(people=PEOPLE, crisis_episodes="""
      person_id | start_on | end_on
      p1        | +10      |
      p2        | +280     |
      p3        | +20      | +90
    """)
    # p2's data end (day 300) comes before day 280 + 42; p3's episode has an end date
    assert ends(con, "crisis_episode") == {"p1": (52, "cap"), "p2": (300, "cap"),
                                           "p3": (90, None)}


def test_an_open_detention_ends_at_its_sections_legal_maximum():
    con = run_derive(people=PEOPLE, detentions="""
      person_id | legal_section | start_on | end_on
      p1        | 2             | +10      |
      p2        | 3             | +200     |
      p3        | 136           | +50      |
    """)
    # section 2: 28 days; section 3 is renewable: the last day of data; section 136: 24 h
    # extendable by 12, so at most 2 days by date
    assert ends(con, "detention") == {"p1": (38, "cap"), "p2": (300, "data_end"),
                                      "p3": (52, "cap")}
    assert by_person(con, "recurrent", "days_detained") == {"p1": 28, "p2": 100, "p3": 0}


def test_an_open_prescription_runs_to_the_last_day_of_data():
    con = run_derive(people=PEOPLE, prescriptions="""
      person_id | drug       | start_on | end_on
      p1        | olanzapine | +700     |
      p2        | olanzapine | +200     |
      p3        | olanzapine | +50      |
    """)
    # days covered in follow-up: 700..729, 200..299, 50..99
    assert by_person(con, "antipsychotic", "covered_days") == {"p1": 30, "p2": 100, "p3": 50}


def test_open_end_is_a_parameter_per_table():
    con = run_derive({"open_end": {"admissions": 14, "prescriptions": 30,
                                   "crisis_episodes": "data_end", "detentions": "data_end"}},
                     people=PEOPLE, admissions="""
      person_id | admitted_on | discharged_on
      p1        | +700        |
      p2        | +290        |
    """, prescriptions="""
      person_id | drug       | start_on | end_on
      p1        | olanzapine | +100     |
    """, detentions="""
      person_id | legal_section | start_on | end_on
      p1        | 2             | +10      |
    """)
    # 14 nights (p2: only 10 before its data end); a prescription covers 30 days
    assert by_person(con, "recurrent", "bed_days") == {"p1": 14, "p2": 10, "p3": 0}
    assert by_person(con, "antipsychotic", "covered_days") == {"p1": 30, "p2": 0, "p3": 0}
    assert by_person(con, "recurrent", "days_detained") == {"p1": 720, "p2": 0, "p3": 0}


@pytest.mark.parametrize("value", ["max", 0, "forever", True])
def test_an_open_end_rule_must_be_known(value):
    with pytest.raises(OdevalError, match="derive.open_end.prescriptions"):
        run_derive({"open_end": {"prescriptions": value}}, people=PEOPLE)
