"""Equal windows for the binary outcomes (derive.binary_window, default whole_window).

Rule: "any antipsychotic use", "use in the last 90 days" and "any involuntary admission" are
compared over the same window for everyone, days 0..729 after the index date: a person
followed for all of it has the outcome yes or no; a person censored or dead before day 730
has it not known (null), whatever was seen before, so that the denominator is the people
followed for the whole window (stated in the report). With 'follow_up' each person's own
follow-up is used (unequal windows, as before).

  person  follow-up ends   antipsychotic (days)   whole window: any, last 90   follow_up: any, last 90
  p1      730              100..199               no gap: yes, no               yes, no
  p2      730              -                      no, no                        no, no
  p3      300 (data end)   250..299               not known                     yes, yes
  p4      300 (data end)   -                      not known                     no, no
  p5      730              680..729               yes, yes                      yes, yes
"""

import pytest

from tests.spec.conftest import by_person, run_derive

TABLES = dict(people="""
  person_id | index_date | data_end_date
  p1        | +0         | +2000
  p2        | +0         | +2000
  p3        | +0         | +300
  p4        | +0         | +300
  p5        | +0         | +2000
""", prescriptions="""
  person_id | drug       | start_on | end_on
  p1        | olanzapine | +100     | +199
  p3        | olanzapine | +250     | +299
  p5        | olanzapine | +680     | +729
""")


def test_the_fixed_window_is_known_only_for_people_followed_for_all_of_it():
    con = run_derive(**TABLES)
    assert by_person(con, "antipsychotic", "window_observed") == {
        "p1": True, "p2": True, "p3": False, "p4": False, "p5": True}
    assert by_person(con, "antipsychotic", "any_use_window") == {
        "p1": True, "p2": False, "p3": None, "p4": None, "p5": True}
    assert by_person(con, "antipsychotic", "use_last_window") == {
        "p1": False, "p2": False, "p3": None, "p4": None, "p5": True}
    # each person's own follow-up, kept beside them
    assert by_person(con, "antipsychotic", "any_use") == {
        "p1": True, "p2": False, "p3": True, "p4": False, "p5": True}
    assert by_person(con, "antipsychotic", "use_last_days") == {
        "p1": False, "p2": False, "p3": True, "p4": False, "p5": True}
    assert by_person(con, "antipsychotic", "first_use_day") == {
        "p1": 100, "p2": None, "p3": 250, "p4": None, "p5": 680}


@pytest.mark.parametrize(("rule", "any_use", "last"), [
    ("whole_window", {"p1": True, "p2": False, "p3": None, "p4": None, "p5": True},
     {"p1": False, "p2": False, "p3": None, "p4": None, "p5": True}),
    ("follow_up", {"p1": True, "p2": False, "p3": True, "p4": False, "p5": True},
     {"p1": False, "p2": False, "p3": True, "p4": False, "p5": True}),
])
def test_the_analyses_binary_outcomes_follow_the_parameter(rule, any_use, last):
    from pipeline.derive import definitions
    from pipeline.metrics import METRICS_SQL_DIR

    con = run_derive({"binary_window": rule}, **TABLES)
    sql = (METRICS_SQL_DIR / "person_outcomes.sql").read_text()
    d = con.execute(sql, {"landmark_days": 365, "binary_window": definitions(con)["binary_window"]}
                    ).df().set_index("person_id")
    norm = lambda s: {k: (None if v is None or v != v else bool(v)) for k, v in s.items()}  # noqa: E731
    assert norm(d["ap_any_use"].astype(object).to_dict()) == any_use
    assert norm(d["ap_use_last_days"].astype(object).to_dict()) == last
