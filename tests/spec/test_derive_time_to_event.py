"""derived.time_to_event: which event counts, censoring and competing death."""

from tests.spec.conftest import run_derive, tte

PEOPLE = """
  person_id | index_date | data_end_date | death_date
  p1        | +0         | +2000         |
  p2        | +0         | +2000         |
  p3        | +0         | +2000         |
"""


def test_event_on_the_index_date_is_not_an_outcome():
    con = run_derive(people=PEOPLE, crisis_episodes="""
      person_id | start_on
      p1        | +0
      p2        | +0
      p2        | +40
      p3        | +1
    """)
    assert tte(con, "first_crisis", "event") == {"p1": 0, "p2": 1, "p3": 1}
    assert tte(con, "first_crisis", "time_days") == {"p1": 730, "p2": 40, "p3": 1}


def test_event_before_the_index_date_is_not_an_outcome():
    con = run_derive(people=PEOPLE, crisis_episodes="""
      person_id | start_on
      p1        | -10
    """)
    assert tte(con, "first_crisis", "event") == {"p1": 0, "p2": 0, "p3": 0}


def test_death_before_relapse_is_a_competing_event():
    con = run_derive(people="""
      person_id | index_date | data_end_date | death_date
      p1        | +0         | +2000         | +100
    """, crisis_episodes="""
      person_id | start_on
      p1        | +200
    """)
    assert tte(con, "relapse", "event") == {"p1": 2}
    assert tte(con, "relapse", "time_days") == {"p1": 100}
    assert tte(con, "relapse", "cnsr") == {"p1": 1}
    assert tte(con, "relapse", "censor_reason") == {"p1": "death"}
    assert str(tte(con, "relapse", "event_date")["p1"]) == "2021-04-14"  # the death date


def test_event_on_the_day_of_death_counts_as_the_event():
    con = run_derive(people="""
      person_id | index_date | data_end_date | death_date
      p1        | +0         | +2000         | +100
    """, crisis_episodes="""
      person_id | start_on
      p1        | +100
    """)
    assert tte(con, "relapse", "event") == {"p1": 1}
    assert tte(con, "relapse", "time_days") == {"p1": 100}
    assert tte(con, "relapse", "censor_reason") == {"p1": None}


def test_event_after_follow_up_ends_is_censored():
    con = run_derive(people="""
      person_id | index_date | data_end_date | death_date
      data_end  | +0         | +300          |
      end_fu    | +0         | +2000         |
    """, crisis_episodes="""
      person_id | start_on
      data_end  | +301
      end_fu    | +731
    """)
    assert tte(con, "relapse", "event") == {"data_end": 0, "end_fu": 0}
    assert tte(con, "relapse", "time_days") == {"data_end": 300, "end_fu": 730}
    assert tte(con, "relapse", "censor_reason") == {"data_end": "data_end",
                                                    "end_fu": "end_of_follow_up"}
    assert tte(con, "relapse", "event_date") == {"data_end": None, "end_fu": None}


def test_event_on_the_last_day_of_follow_up_counts():
    con = run_derive(people="""
      person_id | index_date | data_end_date
      p1        | +0         | +300
      p2        | +0         | +2000
    """, crisis_episodes="""
      person_id | start_on
      p1        | +300
      p2        | +730
    """)
    assert tte(con, "relapse", "event") == {"p1": 1, "p2": 1}
    assert tte(con, "relapse", "time_days") == {"p1": 300, "p2": 730}


def test_relapse_is_the_first_admission_spell_or_crisis_episode():
    con = run_derive(people=PEOPLE, admissions="""
      person_id | admitted_on | discharged_on
      p1        | +50         | +60
      p2        | +20         | +30
    """, crisis_episodes="""
      person_id | start_on
      p1        | +70
      p2        | +10
    """)
    assert tte(con, "relapse", "time_days") == {"p1": 50, "p2": 10, "p3": 730}
    assert tte(con, "first_admission", "time_days") == {"p1": 50, "p2": 20, "p3": 730}
    assert tte(con, "first_crisis", "time_days") == {"p1": 70, "p2": 10, "p3": 730}


def test_relapse_components_are_a_parameter():
    con = run_derive({"relapse_components": ["admissions"]}, people=PEOPLE, admissions="""
      person_id | admitted_on | discharged_on
      p1        | +50         | +60
    """, crisis_episodes="""
      person_id | start_on
      p1        | +10
      p2        | +10
    """)
    assert tte(con, "relapse", "time_days") == {"p1": 50, "p2": 730, "p3": 730}


def test_involuntary_admission_is_a_detention_under_2_3_4_or_37():
    con = run_derive(people=PEOPLE, detentions="""
      person_id | legal_section | start_on | end_on
      p1        | 3             | +40      | +100
      p2        | 37            | +60      |
      p3        | other         | +20      | +30
    """)
    assert tte(con, "involuntary_admission", "event") == {"p1": 1, "p2": 1, "p3": 0}
    assert tte(con, "involuntary_admission", "time_days") == {"p1": 40, "p2": 60, "p3": 730}


def test_a_detention_under_136_is_not_an_involuntary_admission():
    con = run_derive(people=PEOPLE, detentions="""
      person_id | legal_section | start_on | end_on
      p1        | 136           | +40      | +41
      p2        | 5(2)          | +40      | +42
      p2        | 2             | +42      | +60
    """)
    assert tte(con, "involuntary_admission", "event") == {"p1": 0, "p2": 1, "p3": 0}
    assert tte(con, "involuntary_admission", "time_days") == {"p1": 730, "p2": 42, "p3": 730}


def test_return_to_work_is_the_first_work_or_education_status():
    con = run_derive(people=PEOPLE, employment="""
      person_id | recorded_on | status
      p1        | +0          | employed
      p1        | +100        | unemployed
      p1        | +200        | education
      p2        | +50         | volunteering
      p3        | +60         | self_employed
    """)
    assert tte(con, "return_to_work", "event") == {"p1": 1, "p2": 0, "p3": 1}
    assert tte(con, "return_to_work", "time_days") == {"p1": 200, "p2": 730, "p3": 60}


def test_death_outcome_is_event_or_censored_never_competing():
    con = run_derive(people="""
      person_id | index_date | data_end_date | death_date
      dead      | +0         | +2000         | +500
      alive     | +0         | +2000         |
      late      | +0         | +2000         | +800
    """)
    assert tte(con, "death", "event") == {"alive": 0, "dead": 1, "late": 0}
    assert tte(con, "death", "time_days") == {"alive": 730, "dead": 500, "late": 730}
    assert tte(con, "death", "cnsr") == {"alive": 1, "dead": 0, "late": 1}


def test_death_on_the_index_date_is_not_an_outcome_but_ends_follow_up():
    con = run_derive(people="""
      person_id | index_date | data_end_date | death_date
      p1        | +0         | +2000         | +0
    """)
    assert tte(con, "death", "event") == {"p1": 0}
    assert tte(con, "relapse", "event") == {"p1": 2}
    assert tte(con, "relapse", "time_days") == {"p1": 0}


def test_every_person_has_one_row_per_outcome():
    con = run_derive(people=PEOPLE)
    rows = con.execute("select outcome, count(*) from derived.time_to_event "
                       "group by outcome order by outcome").fetchall()
    assert rows == [("death", 3), ("first_admission", 3), ("first_crisis", 3),
                    ("involuntary_admission", 3), ("relapse", 3), ("return_to_work", 3)]
