"""Mental Health Act episodes: what one involuntary admission is (derived.mha_episodes).

Rule (derive.detention_gap_days, default 1 day): detentions under sections 2, 3, 4 and 37,
and the place-of-safety (135, 136) and holding-power (5(2), 5(4)) sections, are merged into
one episode when the next starts within 1 day of the episode's end (a section 2 converted to
a section 3, a 136 or a 5(2) leading into a section 2). An episode holding a 2/3/4/37 is one
involuntary admission, on the start of its first 2/3/4/37; its days detained run from its
first detention's start to its last detention's end. A 135/136 or a 5(2)/5(4) alone is
counted apart. derive.involuntary_in_hospital (default true) says whether an episode that
began while the person was already in hospital (admitted on an earlier day) counts.

  person  detentions (days since index)             admissions   invol.  on day  detained  apart
  p1      s2 10..38, s3 38..150 (converted)          -              1       10       140
  p2      5(2) 20..22, s2 22..50                     15..100        1       22        30   (in hospital)
  p3      136 30..31, s2 31..59                      31..70         1       31        29
  p4      136 40..41                                 -              0        -         0   1 place of safety
  p5      5(2) 60..63                                55..70         0        -         0   1 holding power
  p6      s2 10..20, s3 22..50 (2 days apart)        -              2       10        38
  p7      s2 -10..18, s3 18..100 (before index)      -              0        -       100
"""

import pytest

from tests.spec.conftest import by_person, run_derive, tte

PEOPLE = "\n".join(["person_id | index_date | data_end_date"]
                   + [f"p{i} | +0 | +2000" for i in range(1, 8)])
DETENTIONS = """
  person_id | legal_section | start_on | end_on
  p1        | 2             | +10      | +38
  p1        | 3             | +38      | +150
  p2        | 5(2)          | +20      | +22
  p2        | 2             | +22      | +50
  p3        | 136           | +30      | +31
  p3        | 2             | +31      | +59
  p4        | 136           | +40      | +41
  p5        | 5(2)          | +60      | +63
  p6        | 2             | +10      | +20
  p6        | 3             | +22      | +50
  p7        | 2             | -10      | +18
  p7        | 3             | +18      | +100
"""
ADMISSIONS = """
  person_id | admitted_on | discharged_on
  p2        | +15         | +100
  p3        | +31         | +70
  p5        | +55         | +70
"""


def derive_spec(params=None):
    return run_derive(params, people=PEOPLE, detentions=DETENTIONS, admissions=ADMISSIONS)


def test_one_involuntary_admission_per_episode():
    con = derive_spec()
    assert by_person(con, "recurrent", "involuntary_count") == {
        "p1": 1, "p2": 1, "p3": 1, "p4": 0, "p5": 0, "p6": 2, "p7": 0}
    times, events = tte(con, "involuntary_admission", "time_days"), tte(
        con, "involuntary_admission", "event")
    assert {p: t for p, t in times.items() if events[p] == 1} == {
        "p1": 10, "p2": 22, "p3": 31, "p6": 10}
    assert by_person(con, "recurrent", "days_detained") == {
        "p1": 140, "p2": 30, "p3": 29, "p4": 0, "p5": 0, "p6": 38, "p7": 100}


def test_place_of_safety_and_holding_powers_alone_are_counted_apart():
    con = derive_spec()
    assert by_person(con, "recurrent", "place_of_safety_count") == {
        "p1": 0, "p2": 0, "p3": 0, "p4": 1, "p5": 0, "p6": 0, "p7": 0}
    assert by_person(con, "recurrent", "holding_power_count") == {
        "p1": 0, "p2": 0, "p3": 0, "p4": 0, "p5": 1, "p6": 0, "p7": 0}


def test_a_detention_of_someone_already_in_hospital_is_a_parameter():
    # p2 was admitted on day 15 and held under 5(2) on day 20: detained in hospital. p3 was
    # admitted the day its section 2 began: a detention on admission.
    con = derive_spec()
    assert by_person(con, "recurrent", "detained_in_hospital_count") == {
        "p1": 0, "p2": 1, "p3": 0, "p4": 0, "p5": 0, "p6": 0, "p7": 0}
    con = derive_spec({"involuntary_in_hospital": False})
    assert by_person(con, "recurrent", "involuntary_count") == {
        "p1": 1, "p2": 0, "p3": 1, "p4": 0, "p5": 0, "p6": 2, "p7": 0}
    assert by_person(con, "recurrent", "days_detained")["p2"] == 30


@pytest.mark.parametrize(("gap", "p6"), [(0, 2), (1, 2), (2, 1)])
def test_detention_gap_days_is_a_parameter(gap, p6):
    con = derive_spec({"detention_gap_days": gap})
    assert by_person(con, "recurrent", "involuntary_count")["p6"] == p6
    assert by_person(con, "recurrent", "involuntary_count")["p1"] == 1  # touching: always one


def test_the_records_of_each_episode_are_kept_for_audit():
    con = derive_spec()
    assert con.execute("select episode_seq, legal_section, section_group from "
                       "derived.int_mha_episode_records where person_id = 'p3' order by start_day"
                       ).fetchall() == [(1, "136", "place_of_safety"), (1, "2", "involuntary")]
    assert con.execute("select start_day, end_day, involuntary_start_day, in_hospital from "
                       "derived.mha_episodes where person_id = 'p2'").fetchall() == [
        (20, 50, 22, True)]
