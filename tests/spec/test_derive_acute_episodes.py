"""Acute-care episodes: what one relapse is (derived.acute_episodes).

Rule (derive.episode_gap_days, default 2 days, the continuous inpatient spell gap of the NHS
Provider Spells Methodology): admissions, crisis resolution / home treatment episodes and
detentions under sections 2, 3, 4 and 37 (derive.relapse_components) are merged into one
episode when they overlap, touch, or start within 2 days of the episode's end. Each episode
starting in follow-up is one relapse; the time to first relapse is the first such episode's
start. An episode under way on the index date is the index episode: what merges into it is
not a relapse.

  person  records (days since index; end = discharge or end date)      relapses  first
  p1      crisis 10..20, admission 21..30 (crisis, then admitted)          1        10
  p2      crisis 10..20, crisis 22..40 (back to back)                       1        10
  p3      crisis 10..20, crisis 23..40 (3 days apart)                       2        10
  p4      admission 10..20, emergency readmission 22..30                    1        10
  p5      section 3 from 50 to 200, no admission recorded                  1        50
  p6      admission -5..3 (index episode), crisis 5..10                     0        -
  p7      section 136 on day 20 (a place of safety is not acute care)       0        -
  p8      admission 100..110, crisis 105..160 inside and after it           1       100
"""

import pytest

from tests.spec.conftest import by_person, run_derive, tte

PEOPLE = "\n".join(["person_id | index_date | data_end_date"]
                   + [f"p{i} | +0 | +2000" for i in range(1, 9)])
ADMISSIONS = """
  person_id | admitted_on | discharged_on | admission_method
  p1        | +21         | +30           | emergency
  p4        | +10         | +20           | emergency
  p4        | +22         | +30           | emergency
  p6        | -5          | +3            | emergency
  p8        | +100        | +110          | planned
"""
CRISES = """
  person_id | start_on | end_on
  p1        | +10      | +20
  p2        | +10      | +20
  p2        | +22      | +40
  p3        | +10      | +20
  p3        | +23      | +40
  p6        | +5       | +10
  p8        | +105     | +160
"""
DETENTIONS = """
  person_id | legal_section | start_on | end_on
  p5        | 3             | +50      | +200
  p7        | 136           | +20      | +21
"""


def derive_spec(params=None):
    return run_derive(params, people=PEOPLE, admissions=ADMISSIONS, crisis_episodes=CRISES,
                      detentions=DETENTIONS)


def test_one_relapse_per_acute_care_episode():
    con = derive_spec()
    assert by_person(con, "recurrent", "relapse_count") == {
        "p1": 1, "p2": 1, "p3": 2, "p4": 1, "p5": 1, "p6": 0, "p7": 0, "p8": 1}
    first = tte(con, "relapse", "time_days")
    events = tte(con, "relapse", "event")
    assert {p: first[p] for p in first if events[p] == 1} == {
        "p1": 10, "p2": 10, "p3": 10, "p4": 10, "p5": 50, "p8": 100}


def test_the_records_of_each_episode_are_kept_for_audit():
    con = derive_spec()
    rows = con.execute("select person_id, episode_seq, kind, start_day, end_day "
                       "from derived.int_acute_episode_records where person_id in ('p1', 'p6') "
                       "order by person_id, start_day").fetchall()
    assert rows == [("p1", 1, "crisis_episode", 10, 20), ("p1", 1, "admission", 21, 30),
                    ("p6", 1, "admission", -5, 3), ("p6", 1, "crisis_episode", 5, 10)]
    ep = con.execute("select start_day, end_day, n_records, n_admissions, n_crisis_episodes, "
                     "relapse from derived.acute_episodes where person_id = 'p8'").fetchall()
    assert ep == [(100, 160, 2, 1, 1, True)]


@pytest.mark.parametrize(("gap", "expected"), [
    (0, {"p1": 2, "p2": 2, "p3": 2, "p4": 2, "p5": 1, "p6": 1, "p7": 0, "p8": 1}),
    (3, {"p1": 1, "p2": 1, "p3": 1, "p4": 1, "p5": 1, "p6": 0, "p7": 0, "p8": 1}),
])
def test_episode_gap_days_is_a_parameter(gap, expected):
    assert by_person(derive_spec({"episode_gap_days": gap}), "recurrent",
                     "relapse_count") == expected


def test_relapse_components_choose_the_records():
    # admissions only: p1's relapse is the admission on day 21; crises and detentions do not count
    con = derive_spec({"relapse_components": ["admissions"]})
    assert by_person(con, "recurrent", "relapse_count") == {
        "p1": 1, "p2": 0, "p3": 0, "p4": 1, "p5": 0, "p6": 0, "p7": 0, "p8": 1}
    assert tte(con, "relapse", "time_days")["p1"] == 21
