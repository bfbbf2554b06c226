"""derived.recurrent: counts in follow-up, bed days and days detained."""

import pytest

from tests.spec.conftest import by_person, run_derive

PEOPLE = """
  person_id | index_date | data_end_date
  p1        | +0         | +2000
  p2        | +0         | +2000
"""


def test_relapse_count_is_acute_care_episodes_after_the_index_episode():
    # p1: the crisis episode open on the index date (6 weeks: days 0..41) and the admission
    # on day 10 with its transfer are the index episode; day 100's admission and crisis
    # episode are one relapse. p2: after follow-up.
    con = run_derive(people=PEOPLE, admissions="""
      person_id | admitted_on | discharged_on | admission_method
      p1        | +10         | +20           | emergency
      p1        | +20         | +25           | transfer
      p1        | +100        | +120          | planned
    """, crisis_episodes="""
      person_id | start_on
      p1        | +100
      p1        | +0
      p2        | +731
    """)
    assert by_person(con, "recurrent", "relapse_count") == {"p1": 1, "p2": 0}
    assert by_person(con, "recurrent", "admission_spell_count") == {"p1": 2, "p2": 0}
    assert by_person(con, "recurrent", "crisis_episode_count") == {"p1": 1, "p2": 0}


def test_place_of_safety_and_holding_powers_are_counted_apart():
    con = run_derive(people=PEOPLE, detentions="""
      person_id | legal_section | start_on | end_on
      p1        | 136           | +10      | +11
      p1        | 135           | +20      | +21
      p1        | 5(2)          | +30      | +31
      p1        | 5(4)          | +40      | +40
      p1        | 2             | +41      | +60
      p1        | 3             | +60      | +100
      p2        | 4             | +0       | +1
    """)
    # the 5(4) on day 40 leads into the section 2 (day 41) converted to a section 3 (day 60):
    # one involuntary admission; the others are alone
    assert by_person(con, "recurrent", "place_of_safety_count") == {"p1": 2, "p2": 0}
    assert by_person(con, "recurrent", "holding_power_count") == {"p1": 1, "p2": 0}
    assert by_person(con, "recurrent", "involuntary_count") == {"p1": 1, "p2": 0}


def test_overlapping_admissions_count_bed_days_once():
    con = run_derive(people=PEOPLE, admissions="""
      person_id | admitted_on | discharged_on | admission_method
      p1        | +10         | +20           | emergency
      p1        | +15         | +30           | planned
      p1        | +30         | +35           | transfer
      p2        | +10         | +10           | emergency
    """)
    # nights 10..34; a same-day admission has no night in hospital
    assert by_person(con, "recurrent", "bed_days") == {"p1": 25, "p2": 0}


def test_bed_days_are_clipped_to_follow_up_and_open_stays_run_to_its_end():
    con = run_derive(people="""
      person_id | index_date | data_end_date
      p1        | +0         | +2000
      p2        | +0         | +100
    """, admissions="""
      person_id | admitted_on | discharged_on | admission_method
      p1        | -20         | +5            | emergency
      p1        | +700        |               | emergency
      p2        | +90         | +200          | emergency
    """)
    assert by_person(con, "recurrent", "bed_days") == {"p1": 5 + 30, "p2": 10}


def test_days_detained_count_involuntary_sections_once():
    con = run_derive(people=PEOPLE, detentions="""
      person_id | legal_section | start_on | end_on
      p1        | 2             | +10      | +38
      p1        | 3             | +38      | +60
      p1        | 3             | +50      | +55
      p1        | 136           | +100     | +101
      p2        | 3             | -100     | +10
    """)
    assert by_person(con, "recurrent", "days_detained") == {"p1": 50, "p2": 10}


def test_person_years_are_person_days_over_365_25():
    con = run_derive(people="""
      person_id | index_date | data_end_date
      p1        | +0         | +2000
      p2        | +0         | +0
    """)
    assert by_person(con, "recurrent", "person_days") == {"p1": 730, "p2": 0}
    assert by_person(con, "recurrent", "person_years") == {
        "p1": pytest.approx(730 / 365.25, rel=1e-12), "p2": 0.0}
