"""derived.antipsychotic: use, coverage and dose during follow-up."""

import pytest

from tests.spec.conftest import by_person, run_derive

PEOPLE = """
  person_id | index_date | data_end_date
  p1        | +0         | +2000
  p2        | +0         | +2000
"""


def test_overlapping_prescriptions_are_not_double_counted():
    con = run_derive(people=PEOPLE, prescriptions="""
      person_id | drug        | daily_dose_mg | start_on | end_on
      p1        | olanzapine  | 10            | +0       | +99
      p1        | olanzapine  | 10            | +50      | +149
      p1        | risperidone | 2             | +60      | +69
    """)
    assert by_person(con, "antipsychotic", "covered_days") == {"p1": 150, "p2": 0}
    assert by_person(con, "antipsychotic", "proportion_covered") == {
        "p1": pytest.approx(150 / 730, rel=1e-12), "p2": 0.0}


def test_an_ongoing_prescription_runs_to_the_end_of_follow_up():
    con = run_derive(people="""
      person_id | index_date | data_end_date
      p1        | +0         | +2000
      p2        | +0         | +400
    """, prescriptions="""
      person_id | drug       | start_on | end_on
      p1        | quetiapine | +630     |
      p2        | quetiapine | +100     |
    """)
    assert by_person(con, "antipsychotic", "covered_days") == {"p1": 100, "p2": 300}
    assert by_person(con, "antipsychotic", "use_last_days") == {"p1": True, "p2": True}


def test_prescription_days_include_start_and_end_day():
    con = run_derive(people=PEOPLE, prescriptions="""
      person_id | drug       | start_on | end_on
      p1        | olanzapine | +10      | +10
      p2        | olanzapine | -30      | +0
    """)
    assert by_person(con, "antipsychotic", "covered_days") == {"p1": 1, "p2": 1}
    assert by_person(con, "antipsychotic", "any_use") == {"p1": True, "p2": True}


def test_use_in_the_last_90_days_of_follow_up():
    con = run_derive(people="""
      person_id | index_date | data_end_date
      p1        | +0         | +2000
      p2        | +0         | +2000
      p3        | +0         | +300
    """, prescriptions="""
      person_id | drug       | start_on | end_on
      p1        | olanzapine | +100     | +640
      p2        | olanzapine | +100     | +639
      p3        | olanzapine | +100     | +215
    """)
    assert by_person(con, "antipsychotic", "use_last_days") == {
        "p1": True, "p2": False, "p3": True}


def test_lithium_and_antidepressants_are_not_antipsychotics():
    con = run_derive(people=PEOPLE, prescriptions="""
      person_id | drug       | start_on | end_on
      p1        | lithium    | +10      | +100
      p1        | sertraline | +10      | +100
    """)
    assert by_person(con, "antipsychotic", "any_use") == {"p1": False, "p2": False}
    assert con.execute("select count(*) from derived.unknown_drugs").fetchone() == (0,)


def test_mean_daily_dose_is_time_weighted_over_covered_days_in_ddd():
    # olanzapine DDD 10 mg: 20 mg for 10 days, then 10 mg for 30 days -> 50 DDD-days / 40 days
    con = run_derive(people=PEOPLE, prescriptions="""
      person_id | drug       | daily_dose_mg | start_on | end_on
      p1        | olanzapine | 20            | +1       | +10
      p1        | olanzapine | 10            | +11      | +40
    """)
    assert by_person(con, "antipsychotic", "mean_daily_ddd")["p1"] == pytest.approx(50 / 40)
    assert by_person(con, "antipsychotic", "mean_daily_ddd")["p2"] is None


def test_concurrent_antipsychotics_are_summed_in_the_daily_dose():
    # olanzapine 10 mg (1 DDD) and risperidone 5 mg (1 DDD) on the same 20 days
    con = run_derive(people=PEOPLE, prescriptions="""
      person_id | drug        | daily_dose_mg | start_on | end_on
      p1        | olanzapine  | 10            | +1       | +20
      p1        | risperidone | 5             | +1       | +20
    """)
    assert by_person(con, "antipsychotic", "mean_daily_ddd")["p1"] == pytest.approx(2.0)


def test_chlorpromazine_equivalents_use_the_reference_list():
    # Gardner 2010: olanzapine 20 mg ~ chlorpromazine 600 mg; depots per day of averaged dose
    con = run_derive(people=PEOPLE, prescriptions="""
      person_id | drug                 | route | daily_dose_mg | start_on | end_on
      p1        | olanzapine           | oral  | 20            | +1       | +20
      p2        | paliperidone palmitate | depot | 2.5         | +1       | +20
    """)
    cpz = by_person(con, "antipsychotic", "mean_daily_cpz_mg")
    assert cpz["p1"] == pytest.approx(600.0, rel=1e-4)
    assert cpz["p2"] == pytest.approx(300.0, rel=1e-4)  # 1 DDD by the Leucht 2016 method
    assert by_person(con, "antipsychotic", "mean_daily_ddd")["p2"] == pytest.approx(1.0)


def test_a_route_without_conversion_counts_as_use_but_flags_the_dose():
    con = run_derive(people=PEOPLE, prescriptions="""
      person_id | drug       | route | daily_dose_mg | start_on | end_on
      p1        | olanzapine | other | 10            | +1       | +10
      p2        | olanzapine | other | 10            | +1       | +10
      p2        | olanzapine | oral  | 10            | +11      | +20
    """)
    assert by_person(con, "antipsychotic", "covered_days") == {"p1": 10, "p2": 20}
    assert by_person(con, "antipsychotic", "dose_incomplete") == {"p1": True, "p2": True}
    assert by_person(con, "antipsychotic", "mean_daily_ddd") == {"p1": None, "p2": 0.5}


def test_no_follow_up_gives_no_proportion():
    con = run_derive(people="""
      person_id | index_date | data_end_date
      p1        | +0         | +0
    """, prescriptions="""
      person_id | drug       | start_on | end_on
      p1        | olanzapine | +0       | +10
    """)
    assert by_person(con, "antipsychotic", "proportion_covered") == {"p1": None}
    assert by_person(con, "antipsychotic", "any_use") == {"p1": False}
