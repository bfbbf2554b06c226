"""derived.fidelity_referral: one indicator per principle, per referral."""

import pytest

from tests.spec.conftest import by_person, run_derive

PEOPLE = """
  person_id | index_date | data_end_date
  p1        | +0         | +2000
"""

REFERRALS = """
  referral_id | person_id | received_at | first_contact_staff_id | discharge_decided_by
  r1          | p1        | +0 09:00    | nurse1                 | network
  r2          | p1        | +0 09:00    | nurse2                 | clinician
  r3          | p1        | +0 09:00    |                        |
"""

STAFF = """
  staff_id | role
  nurse1   | nurse
  nurse2   | nurse
  psych    | psychiatrist
  peer     | peer_worker
  support  | support_worker
  other    | other
"""


def fidelity(column, **tables):
    con = run_derive(people=PEOPLE, referrals=tables.pop("referrals", REFERRALS),
                     staff=STAFF, **tables)
    return by_person(con, "fidelity_referral", column, key="referral_id")


def test_p1_hours_from_referral_to_first_attended_network_meeting():
    got = fidelity("p1_hours_to_first_meeting", contacts="""
      contact_id | referral_id | person_id | start_at  | contact_type    | attended
      c1         | r1          | p1        | +0 08:00  | individual      | true
      c2         | r1          | p1        | +0 12:30  | network_meeting | false
      c3         | r1          | p1        | +1 15:00  | network_meeting | true
      c4         | r1          | p1        | +3 10:00  | network_meeting | true
      c5         | r2          | p1        | +2 09:00  | network_meeting | true
    """)
    assert got == {"r1": pytest.approx(30.0), "r2": pytest.approx(48.0), "r3": None}


def test_p1_within_24_hours():
    got = fidelity("p1_within_24h", contacts="""
      contact_id | referral_id | person_id | start_at  | contact_type    | attended
      c1         | r1          | p1        | +1 09:00  | network_meeting | true
      c2         | r2          | p1        | +1 09:01  | network_meeting | true
    """)
    assert got == {"r1": True, "r2": False, "r3": False}  # no meeting: not within 24 h


def test_p1_a_meeting_before_the_referral_is_not_imputed():
    got = fidelity("p1_within_24h", contacts="""
      contact_id | referral_id | person_id | start_at  | contact_type    | attended
      c1         | r1          | p1        | -1 09:00  | network_meeting | true
    """)
    assert got["r1"] is None


def test_p2_share_of_meetings_with_network_members():
    got = fidelity("p2_share_network_present", contacts="""
      contact_id | referral_id | person_id | start_at  | network_members_present
      c1         | r1          | p1        | +1 09:00  | 2
      c2         | r1          | p1        | +2 09:00  | 0
      c3         | r1          | p1        | +3 09:00  | 1
      c4         | r1          | p1        | +4 09:00  |
      c5         | r2          | p1        | +4 09:00  |
    """)
    assert got == {"r1": pytest.approx(2 / 3), "r2": None, "r3": None}


def test_p3_share_of_meetings_at_home_or_place_of_choice():
    got = fidelity("p3_share_home_or_choice", contacts="""
      contact_id | referral_id | person_id | start_at  | location
      c1         | r1          | p1        | +1 09:00  | home
      c2         | r1          | p1        | +2 09:00  | place_of_choice
      c3         | r1          | p1        | +3 09:00  | clinic
      c4         | r1          | p1        | +4 09:00  | inpatient_ward
      c5         | r2          | p1        | +4 09:00  | remote
    """)
    assert got == {"r1": 0.5, "r2": 0.0, "r3": None}


def test_p4_first_contact_staff_at_the_first_meeting():
    got = fidelity("p4_first_contact_at_first_meeting", contacts="""
      contact_id | referral_id | person_id | start_at
      c1         | r1          | p1        | +1 09:00
      c2         | r2          | p1        | +1 09:00
      c3         | r2          | p1        | +2 09:00
      c4         | r3          | p1        | +2 09:00
    """, contact_staff="""
      contact_id | staff_id
      c1         | nurse1
      c2         | psych
      c3         | nurse2
      c4         | nurse1
    """)
    # r2's first contact (nurse2) came only to the second meeting; r3 has no first contact
    assert got == {"r1": True, "r2": False, "r3": None}


def test_first_meeting_at_equal_start_times_is_the_lower_contact_id():
    # r1's two meetings start together: c1 (not c2, nor whichever row comes first) is its
    # first, so nurse1, its first-contact worker, was at it, and c2's staff (psych and
    # nurse1) make the later attendances, one of them by the first meeting's staff
    tables = dict(contacts="""
      contact_id | referral_id | person_id | start_at
      c2         | r1          | p1        | +1 09:00
      c1         | r1          | p1        | +1 09:00
    """, contact_staff="""
      contact_id | staff_id
      c2         | psych
      c2         | nurse1
      c1         | nurse1
    """)
    assert fidelity("p4_first_contact_at_first_meeting", **tables)["r1"] is True
    assert fidelity("p5_core_team_continuity", **tables)["r1"] == 0.5


def test_p5_share_of_meetings_with_two_clinical_staff():
    got = fidelity("p5_share_two_clinical", contacts="""
      contact_id | referral_id | person_id | start_at
      c1         | r1          | p1        | +1 09:00
      c2         | r1          | p1        | +2 09:00
      c3         | r1          | p1        | +3 09:00
      c4         | r1          | p1        | +4 09:00
    """, contact_staff="""
      contact_id | staff_id
      c1         | nurse1
      c1         | psych
      c2         | nurse1
      c2         | peer
      c3         | nurse1
      c3         | support
      c3         | other
    """)
    # peer, support and other staff are not clinical; c4 has no staff recorded
    assert got == {"r1": 0.25, "r2": None, "r3": None}


def test_p5_core_team_continuity():
    got = fidelity("p5_core_team_continuity", contacts="""
      contact_id | referral_id | person_id | start_at
      c1         | r1          | p1        | +1 09:00
      c2         | r1          | p1        | +2 09:00
      c3         | r1          | p1        | +3 09:00
      c4         | r2          | p1        | +1 09:00
    """, contact_staff="""
      contact_id | staff_id
      c1         | nurse1
      c1         | psych
      c2         | nurse1
      c2         | nurse2
      c3         | nurse1
      c3         | psych
      c4         | nurse1
    """)
    # later attendances: nurse1, nurse2, nurse1, psych -> 3 of 4 by the first meeting's team
    assert got == {"r1": 0.75, "r2": None, "r3": None}


def test_p5_peer_worker_present():
    got = fidelity("p5_peer_worker_present", contacts="""
      contact_id | referral_id | person_id | start_at
      c1         | r1          | p1        | +1 09:00
      c2         | r1          | p1        | +2 09:00
      c3         | r2          | p1        | +1 09:00
    """, contact_staff="""
      contact_id | staff_id
      c1         | nurse1
      c2         | peer
      c3         | support
    """)
    assert got == {"r1": True, "r2": False, "r3": None}


def test_p6_tolerance_of_uncertainty_is_not_measurable():
    got = fidelity("p6_tolerance_of_uncertainty", contacts="""
      contact_id | referral_id | person_id | start_at
      c1         | r1          | p1        | +1 09:00
    """)
    assert got == {"r1": None, "r2": None, "r3": None}


def test_p7_share_of_meetings_with_the_person_present():
    got = fidelity("p7_share_person_present", contacts="""
      contact_id | referral_id | person_id | start_at  | person_present
      c1         | r1          | p1        | +1 09:00  | true
      c2         | r1          | p1        | +2 09:00  | false
      c3         | r1          | p1        | +3 09:00  | true
      c4         | r1          | p1        | +4 09:00  |
      c5         | r2          | p1        | +1 09:00  | false
    """)
    assert got == {"r1": pytest.approx(2 / 3), "r2": 0.0, "r3": None}


def test_discharge_decided_by_the_network():
    got = fidelity("discharge_by_network")
    assert got == {"r1": True, "r2": False, "r3": None}


def test_meetings_not_attended_or_of_another_type_are_not_network_meetings():
    got = fidelity("n_network_meetings", contacts="""
      contact_id | referral_id | person_id | start_at  | contact_type    | attended
      c1         | r1          | p1        | +1 09:00  | network_meeting | true
      c2         | r1          | p1        | +2 09:00  | network_meeting | false
      c3         | r1          | p1        | +3 09:00  | individual      | true
      c4         |             | p1        | +3 09:00  | network_meeting | true
    """)
    assert got == {"r1": 1, "r2": 0, "r3": 0}


def test_clinical_roles_are_a_parameter():
    con = run_derive({"clinical_roles": ["nurse", "peer_worker"]}, people=PEOPLE,
                     referrals=REFERRALS, staff=STAFF, contacts="""
      contact_id | referral_id | person_id | start_at
      c1         | r1          | p1        | +1 09:00
    """, contact_staff="""
      contact_id | staff_id
      c1         | nurse1
      c1         | peer
    """)
    assert by_person(con, "fidelity_referral", "p5_share_two_clinical",
                     key="referral_id")["r1"] == 1.0
