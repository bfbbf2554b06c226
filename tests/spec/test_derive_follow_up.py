"""derived.people: follow-up, its end and why it ended (one test per rule)."""

from tests.spec.conftest import by_person, run_derive


def test_follow_up_ends_at_730_days():
    con = run_derive(people="""
      person_id | index_date | data_end_date | death_date
      p1        | +0         | +2000         |
      p2        | +0         | +730          |
    """)
    assert by_person(con, "people", "fu_end_day") == {"p1": 730, "p2": 730}
    assert by_person(con, "people", "end_reason") == {"p1": "end_of_follow_up",
                                                      "p2": "end_of_follow_up"}
    assert by_person(con, "people", "person_days") == {"p1": 730, "p2": 730}


def test_follow_up_is_censored_at_data_end_date():
    con = run_derive(people="""
      person_id | index_date | data_end_date | death_date
      p1        | +0         | +300          |
      p2        | +0         | +729          | +800
    """)
    assert by_person(con, "people", "fu_end_day") == {"p1": 300, "p2": 729}
    assert by_person(con, "people", "end_reason") == {"p1": "data_end", "p2": "data_end"}


def test_follow_up_ends_at_death():
    con = run_derive(people="""
      person_id | index_date | data_end_date | death_date
      p1        | +0         | +2000         | +100
      p2        | +0         | +900          | +730
    """)
    assert by_person(con, "people", "fu_end_day") == {"p1": 100, "p2": 730}
    assert by_person(con, "people", "end_reason") == {"p1": "death", "p2": "death"}


def test_ties_are_death_then_data_end_then_end_of_follow_up():
    con = run_derive(people="""
      person_id | index_date | data_end_date | death_date
      dies      | +0         | +200          | +200
      data_end  | +0         | +200          |
      all_three | +0         | +730          | +730
    """)
    assert by_person(con, "people", "end_reason") == {
        "all_three": "death", "data_end": "data_end", "dies": "death"}


def test_fu_end_date_is_index_date_plus_fu_end_day():
    con = run_derive(people="""
      person_id | index_date | data_end_date
      p1        | 2020-02-28 | 2020-03-01
    """)
    assert str(by_person(con, "people", "fu_end_date")["p1"]) == "2020-03-01"
    assert by_person(con, "people", "fu_end_day") == {"p1": 2}  # 2020 is a leap year


def test_age_at_index_is_index_year_minus_birth_year():
    con = run_derive(people="""
      person_id | index_date | data_end_date | birth_year
      p1        | 2021-12-31 | 2023-01-01    | 1990
      p2        | 2021-01-01 | 2023-01-01    |
    """)
    assert by_person(con, "people", "age_at_index") == {"p1": 31, "p2": None}


def test_follow_up_days_is_a_parameter():
    con = run_derive({"follow_up_days": 365}, people="""
      person_id | index_date | data_end_date
      p1        | +0         | +2000
      p2        | +0         | +365
    """)
    assert by_person(con, "people", "fu_end_day") == {"p1": 365, "p2": 365}
    assert by_person(con, "people", "end_reason") == {"p1": "end_of_follow_up",
                                                      "p2": "end_of_follow_up"}
