"""derived.int_admission_spells: admissions chained by transfer are one spell."""

from tests.spec.conftest import by_person, run_derive, tte

PEOPLE = """
  person_id | index_date | data_end_date
  p1        | +0         | +2000
  p2        | +0         | +2000
"""


def test_chained_transfers_are_one_spell():
    con = run_derive(people=PEOPLE, admissions="""
      person_id | admitted_on | discharged_on | admission_method
      p1        | +10         | +20           | emergency
      p1        | +20         | +30           | transfer
      p1        | +31         | +40           | transfer
    """)
    assert by_person(con, "recurrent", "admission_spell_count") == {"p1": 1, "p2": 0}
    assert tte(con, "first_admission", "time_days")["p1"] == 10
    assert con.execute("select n_admissions from derived.int_admission_spells").fetchall() \
        == [(3,)]


def test_a_transfer_continuing_a_pre_index_spell_is_not_a_relapse():
    # p1: a transfer continues the spell; p2: a planned readmission 3 days after discharge
    # (beyond the 2-day episode gap) is a new acute-care episode, so a relapse
    con = run_derive(people=PEOPLE, admissions="""
      person_id | admitted_on | discharged_on | admission_method
      p1        | -30         | +5            | emergency
      p1        | +5          | +40           | transfer
      p2        | -30         | +5            | emergency
      p2        | +8          | +40           | planned
    """)
    assert tte(con, "relapse", "event") == {"p1": 0, "p2": 1}
    assert by_person(con, "recurrent", "relapse_count") == {"p1": 0, "p2": 1}
    assert by_person(con, "recurrent", "admission_spell_count") == {"p1": 0, "p2": 1}


def test_a_transfer_after_the_gap_starts_a_new_spell():
    con = run_derive(people=PEOPLE, admissions="""
      person_id | admitted_on | discharged_on | admission_method
      p1        | +10         | +20           | emergency
      p1        | +21         | +30           | transfer
      p2        | +10         | +20           | emergency
      p2        | +22         | +30           | transfer
    """)
    assert by_person(con, "recurrent", "admission_spell_count") == {"p1": 1, "p2": 2}


def test_transfer_gap_days_is_a_parameter():
    con = run_derive({"transfer_gap_days": 0}, people=PEOPLE, admissions="""
      person_id | admitted_on | discharged_on | admission_method
      p1        | +10         | +20           | emergency
      p1        | +20         | +30           | transfer
      p2        | +10         | +20           | emergency
      p2        | +21         | +30           | transfer
    """)
    assert by_person(con, "recurrent", "admission_spell_count") == {"p1": 1, "p2": 2}


def test_a_transfer_after_an_admission_without_discharge_date_starts_a_spell():
    # admitted_on <= missing + gap is not true: the contract's rule read literally
    con = run_derive(people=PEOPLE, admissions="""
      person_id | admitted_on | discharged_on | admission_method
      p1        | -10         |               | emergency
      p1        | +50         | +60           | transfer
    """)
    assert tte(con, "first_admission", "time_days") == {"p1": 50, "p2": 730}


def test_a_transfer_with_no_earlier_admission_starts_a_spell():
    con = run_derive(people=PEOPLE, admissions="""
      person_id | admitted_on | discharged_on | admission_method
      p1        | +15         | +30           | transfer
    """)
    assert tte(con, "first_admission", "time_days") == {"p1": 15, "p2": 730}
