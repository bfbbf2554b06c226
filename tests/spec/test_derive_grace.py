"""Grace period: derive.relapse_grace_days (default 0).

Rule: an acute-care episode starting on days 1..g after the index date (g = the grace
period) belongs to the index episode and is not a relapse, nor is anything merged into it;
relapses are episodes starting on days g + 1 .. end of follow-up, and the relapse rate's
person-time starts on day g. Time to relapse is still counted from the index date.

  person  records (days since index)                      g = 0: relapses, first   g = 14
  p1      admission 1..5                                   1, day 1                  0
  p2      admission 10..20, readmission 21..30             1, day 10                 0
  p3      crisis 5..8, admission 30..40                    2, day 5                  1, day 30
  p4      admission 14..20                                 1, day 14                 0
  p5      admission 15..20                                 1, day 15                 1, day 15
"""

import pytest

from pipeline.errors import OdevalError
from tests.spec.conftest import by_person, run_derive, tte

PEOPLE = "\n".join(["person_id | index_date | data_end_date"]
                   + [f"p{i} | +0 | +2000" for i in range(1, 6)])
ADMISSIONS = """
  person_id | admitted_on | discharged_on
  p1        | +1          | +5
  p2        | +10         | +20
  p2        | +21         | +30
  p3        | +30         | +40
  p4        | +14         | +20
  p5        | +15         | +20
"""
CRISES = """
  person_id | start_on | end_on
  p3        | +5       | +8
"""


@pytest.mark.parametrize(("grace", "count", "first"), [
    (0, {"p1": 1, "p2": 1, "p3": 2, "p4": 1, "p5": 1},
     {"p1": 1, "p2": 10, "p3": 5, "p4": 14, "p5": 15}),
    (14, {"p1": 0, "p2": 0, "p3": 1, "p4": 0, "p5": 1}, {"p3": 30, "p5": 15}),
])
def test_episodes_starting_in_the_grace_period_are_not_relapses(grace, count, first):
    con = run_derive({"relapse_grace_days": grace}, people=PEOPLE, admissions=ADMISSIONS,
                     crisis_episodes=CRISES)
    assert by_person(con, "recurrent", "relapse_count") == count
    times, events = tte(con, "relapse", "time_days"), tte(con, "relapse", "event")
    assert {p: t for p, t in times.items() if events[p] == 1} == first
    # the rate's person-time runs from day g to the end of follow-up (730)
    assert list(by_person(con, "recurrent", "relapse_person_years").values()) == pytest.approx(
        [(730 - grace) / 365.25] * 5, rel=1e-12)


def test_the_grace_period_must_end_before_follow_up_does():
    with pytest.raises(OdevalError, match="relapse_grace_days"):
        run_derive({"relapse_grace_days": 730}, people=PEOPLE)
