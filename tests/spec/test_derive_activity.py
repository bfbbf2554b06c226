"""derived.activity: status at two years and return to work or education."""

from tests.spec.conftest import by_person, run_derive

PEOPLE = """
  person_id | index_date | data_end_date
  p1        | +0         | +2000
  p2        | +0         | +2000
  p3        | +0         | +2000
"""


def test_the_last_employment_record_in_the_window_wins():
    con = run_derive(people=PEOPLE, employment="""
      person_id | recorded_on | status
      p1        | +650        | employed
      p1        | +700        | unemployed
      p2        | +650        | unemployed
      p2        | +720        | education
      p3        | +700        | training
      p3        | +731        | unemployed
    """)
    assert by_person(con, "activity", "status_2y") == {
        "p1": "unemployed", "p2": "education", "p3": "training"}
    assert by_person(con, "activity", "rtw_2y") == {"p1": False, "p2": True, "p3": True}


def test_no_record_in_the_window_gives_null():
    con = run_derive(people=PEOPLE, employment="""
      person_id | recorded_on | status
      p1        | +639        | employed
      p2        | +640        | employed
      p3        | +730        | employed
    """)
    assert by_person(con, "activity", "rtw_2y") == {"p1": None, "p2": True, "p3": True}


def test_the_window_ends_with_follow_up():
    con = run_derive(people="""
      person_id | index_date | data_end_date | death_date
      p1        | +0         | +680          |
      p2        | +0         | +2000         | +600
    """, employment="""
      person_id | recorded_on | status
      p1        | +660        | employed
      p1        | +690        | unemployed
      p2        | +650        | employed
    """)
    assert by_person(con, "activity", "status_2y") == {"p1": "employed", "p2": None}
    assert by_person(con, "activity", "rtw_2y") == {"p1": True, "p2": None}


def test_rtw_window_and_statuses_are_parameters():
    con = run_derive({"rtw_window_days": 30, "rtw_statuses": ["employed", "volunteering"]},
                     people=PEOPLE, employment="""
      person_id | recorded_on | status
      p1        | +699        | employed
      p2        | +700        | volunteering
      p3        | +710        | education
    """)
    assert by_person(con, "activity", "rtw_2y") == {"p1": None, "p2": True, "p3": False}


def test_first_rtw_day_is_the_first_such_status_after_index():
    con = run_derive(people=PEOPLE, employment="""
      person_id | recorded_on | status
      p1        | +0          | employed
      p1        | +30         | employed
      p2        | +30         | unemployed
      p3        | +400        | training
    """)
    assert by_person(con, "activity", "first_rtw_day") == {"p1": 30, "p2": None, "p3": 400}
