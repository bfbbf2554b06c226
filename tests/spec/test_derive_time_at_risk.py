"""Time at risk: the person-time of the relapse and involuntary-admission rates.

Rule (derive.rate_person_time): 'follow_up' (default) divides by the follow-up time; 'at_risk'
by the follow-up days on which a new event could begin: for relapses, days outside an
acute-care episode (in hospital, with the crisis team, or detained); for involuntary
admissions, days not detained (and, when derive.involuntary_in_hospital is false, not in
hospital either). derived.recurrent keeps both (relapse_at_risk_days,
involuntary_at_risk_days) and the chosen denominator (relapse_person_years,
involuntary_person_years).

  person  follow-up  acute care (days)                 detained    relapse at risk  invol. at risk
  p1      730        admission 100..160, crisis        s2 100..128     730 - 80 = 650   730 - 28 = 702
                     158..180 (one episode 100..180)
  p2      300        admission -10..20 (index)          -              300 - 20 = 280   300
  p3      730        -                                  -              730              730
"""

import pytest

from tests.spec.conftest import by_person, run_derive

PEOPLE = """
  person_id | index_date | data_end_date
  p1        | +0         | +2000
  p2        | +0         | +300
  p3        | +0         | +2000
"""
TABLES = dict(people=PEOPLE, admissions="""
  person_id | admitted_on | discharged_on
  p1        | +100        | +160
  p2        | -10         | +20
""", crisis_episodes="""
  person_id | start_on | end_on
  p1        | +158     | +180
""", detentions="""
  person_id | legal_section | start_on | end_on
  p1        | 2             | +100     | +128
""")


def test_days_at_risk():
    con = run_derive(**TABLES)
    assert by_person(con, "recurrent", "acute_days") == {"p1": 80, "p2": 20, "p3": 0}
    assert by_person(con, "recurrent", "relapse_at_risk_days") == {"p1": 650, "p2": 280, "p3": 730}
    assert by_person(con, "recurrent", "involuntary_at_risk_days") == {
        "p1": 702, "p2": 300, "p3": 730}


@pytest.mark.parametrize(("rule", "relapse", "involuntary"), [
    ("follow_up", {"p1": 730, "p2": 300, "p3": 730}, {"p1": 730, "p2": 300, "p3": 730}),
    ("at_risk", {"p1": 650, "p2": 280, "p3": 730}, {"p1": 702, "p2": 300, "p3": 730}),
])
def test_the_rates_denominator_is_a_parameter(rule, relapse, involuntary):
    con = run_derive({"rate_person_time": rule}, **TABLES)
    got = by_person(con, "recurrent", "relapse_person_years")
    assert got == pytest.approx({p: d / 365.25 for p, d in relapse.items()}, rel=1e-12)
    got = by_person(con, "recurrent", "involuntary_person_years")
    assert got == pytest.approx({p: d / 365.25 for p, d in involuntary.items()}, rel=1e-12)


def test_out_of_hospital_too_when_detentions_in_hospital_do_not_count():
    con = run_derive({"involuntary_in_hospital": False}, **TABLES)
    # p1: in hospital 100..160 (detained 100..128 inside it); p2: in hospital days 0..19
    assert by_person(con, "recurrent", "involuntary_at_risk_days") == {
        "p1": 670, "p2": 280, "p3": 730}
