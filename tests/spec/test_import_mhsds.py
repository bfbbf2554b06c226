"""One spec per rule of `odeval import mhsds`: MHSDS rows in, contract rows and counts out.

Rules (pipeline/sql/import_mhsds/, docs/mhsds-import.md): the latest version of a
record wins (UniqMonthID, then UniqSubmissionID, then file and row); copies of the kept
version are duplicates; rows flagged invalid never win; a set table keeps the latest set
whole; codes map through their list, a code not in it is reported and gets the contract's
unknown/other value; a legal status that is no detention is not carried; only allocated
people are written.
"""

from __future__ import annotations

from tests.mhsds_helpers import read_out, run_import, write_mhsds


def test_latest_month_wins_and_earlier_months_are_superseded(tmp_path):
    write_mhsds(tmp_path, MHS501HospProvSpell="""
        UniqHospProvSpellID | Person_ID | StartDateHospProvSpell | DischDateHospProvSpell | AdmMethCodeHospProvSpell | UniqMonthID
        S1                  | P1        | 2024-01-10             |                        | 21                       | 1500
        S1                  | P1        | 2024-01-10             |                        | 21                       | 1501
        S1                  | P1        | 2024-01-10             | 2024-03-02             | 21                       | 1502
    """)
    res = run_import(tmp_path)
    assert read_out(tmp_path, "admissions") == [
        {"admission_id": "S1", "person_id": "P1", "admitted_on": "2024-01-10",
         "discharged_on": "2024-03-02", "admission_method": "emergency", "detained_on_admission": ""}]
    t = res.facts["tables"]["MHS501HospProvSpell"]
    assert (t["kept"], t["superseded"], t["duplicate"], t["invalid"]) == (1, 2, 0, 0)


def test_a_later_submission_for_the_same_month_wins(tmp_path):
    """Tie-break 1: UniqSubmissionID (a refresh submission replaces the primary one); the
    month still comes first."""
    write_mhsds(tmp_path, MHS401MHActPeriod="""
        UniqMHActEpisodeID | Person_ID | StartDateMHActLegalStatusClass | EndDateMHActLegalStatusClass | LegalStatusCode | UniqMonthID | UniqSubmissionID
        D1                 | P1        | 2024-01-10                     |                              | 02              | 1501        | 7
        D1                 | P1        | 2024-01-10                     | 2024-01-20                   | 02              | 1501        | 9
        D1                 | P1        | 2024-01-10                     |                              | 02              | 1500        | 12
    """)
    res = run_import(tmp_path)
    assert [(r["detention_id"], r["end_on"]) for r in read_out(tmp_path, "detentions")] == [("D1", "2024-01-20")]
    t = res.facts["tables"]["MHS401MHActPeriod"]
    assert (t["kept"], t["superseded"], t["duplicate"]) == (1, 2, 0)


def test_commissioner_copies_of_the_kept_version_are_duplicates_and_the_first_is_kept(tmp_path):
    write_mhsds(tmp_path, MHS201CareContact="""
        UniqCareContID | Person_ID | UniqServReqID | CareContDate | CareContTime | ConsMechanismMH | ActLocTypeCode | AttendOrDNACode | UniqMonthID | OrgIDComm
        C1             | P1        | R1            | 2024-01-06   | 10:00        | 01              | A01            | 5               | 1500        | 15A
        C1             | P1        | R1            | 2024-01-06   | 10:00        | 01              | A01            | 5               | 1500        | 15B
        C1             | P1        | R1            | 2024-01-06   | 10:00        | 01              | A01            | 5               | 1500        | 15C
    """)
    res = run_import(tmp_path)
    assert len(read_out(tmp_path, "contacts")) == 1
    t = res.facts["tables"]["MHS201CareContact"]
    assert (t["rows_read"], t["kept"], t["duplicate"], t["superseded"]) == (3, 1, 2, 0)


def test_a_row_flagged_invalid_never_wins_even_when_later(tmp_path):
    write_mhsds(tmp_path, MHS201CareContact="""
        UniqCareContID | Person_ID | UniqServReqID | CareContDate | CareContTime | ConsMechanismMH | ActLocTypeCode | AttendOrDNACode | UniqMonthID | IC_USE_Submission_Flag
        C1             | P1        | R1            | 2024-01-06   | 10:00        | 01              | A01            | 3               | 1500        | Y
        C1             | P1        | R1            | 2024-01-06   | 10:00        | 01              | A01            | 5               | 1501        | N
        C2             | P1        | R1            | 2024-01-07   | 10:00        | 02              |                | 5               |             |
        C3             |           | R1            | 2024-01-07   | 10:00        | 02              |                | 5               | 1500        |
    """)
    res = run_import(tmp_path)
    assert [(r["contact_id"], r["attended"]) for r in read_out(tmp_path, "contacts")] == [("C1", "false")]
    t = res.facts["tables"]["MHS201CareContact"]
    assert (t["kept"], t["invalid"]) == (1, 3)
    assert t["invalid_reasons"] == {"flagged invalid": 1, "no UniqMonthID": 1, "no Person_ID": 1}


def test_the_latest_set_of_other_attendees_wins_whole(tmp_path):
    """MHS203 rows are a set per contact: the latest month's rows replace earlier months',
    and a copy of a row (same MHS203UniqID) is a duplicate."""
    write_mhsds(tmp_path, MHS203OtherAttend="""
        UniqCareContID | Person_ID | MHS203UniqID | OtherPersonInAttend | UniqMonthID
        C1             | P1        | a1           | 01                  | 1500
        C1             | P1        | a2           | 01                  | 1500
        C1             | P1        | a3           | 01                  | 1500
        C1             | P1        | b1           | 01                  | 1501
        C1             | P1        | b2           | 02                  | 1501
        C1             | P1        | b2           | 02                  | 1501
    """)
    res = run_import(tmp_path)
    assert [r["network_members_present"] for r in read_out(tmp_path, "contacts")] == ["2"]
    t = res.facts["tables"]["MHS203OtherAttend"]
    assert (t["kept"], t["superseded"], t["duplicate"]) == (2, 3, 1)


def test_without_mhs203_network_members_present_is_unknown_not_zero(tmp_path):
    write_mhsds(tmp_path)
    run_import(tmp_path)
    assert [r["network_members_present"] for r in read_out(tmp_path, "contacts")] == [""]


def test_codes_map_through_their_lists_and_unlisted_codes_are_reported(tmp_path):
    write_mhsds(tmp_path, MHS401MHActPeriod="""
        UniqMHActEpisodeID | Person_ID | StartDateMHActLegalStatusClass | LegalStatusCode | UniqMonthID
        D1                 | P1        | 2024-01-10                     | 02              | 1500
        D2                 | P1        | 2024-01-11                     | 10              | 1500
        D3                 | P1        | 2024-01-12                     | 37              | 1500
        D4                 | P1        | 2024-01-13                     | 20              | 1500
        D5                 | P1        | 2024-01-14                     | 11              | 1500
        D6                 | P1        | 2024-01-15                     | 11              | 1500
        D7                 | P1        | 2024-01-16                     | 01              | 1500
    """)
    res = run_import(tmp_path)
    got = {r["detention_id"]: r["legal_section"] for r in read_out(tmp_path, "detentions")}
    # 10 is section 37; 37 is section 45A (not 37); 11 is in no list; 01 informal: no detention
    assert got == {"D1": "2", "D2": "37", "D3": "other", "D4": "136", "D5": "other", "D6": "other"}
    codes = [(c["code"], c["kind"], c["rows"], c["contract_value"]) for c in res.facts["codes"]
             if c["table"] == "MHS401MHActPeriod"]
    assert codes == [("01", "not_carried", 1, "-"), ("11", "unmapped", 2, "other")]


def test_v6_gender_identity_wins_over_v5_person_stated_gender(tmp_path):
    write_mhsds(tmp_path, MHS001MPI="""
        Person_ID | UniqMonthID | GenderIDCode | Gender | EthnicCategory | ReportingPeriodEndDate
        P1        | 1500        | 3            | 2      | M              | 2024-01-31
        P2        | 1500        |              | 1      | R              | 2024-01-31
        P3        | 1500        | 8            |        | QQ             | 2024-01-31
    """, allocation="""
        Person_ID | site_id | arm           | index_date
        P1        | S01     | open_dialogue | 2024-01-04
        P2        | S01     | usual_care    | 2024-01-04
        P3        | S01     | usual_care    | 2024-01-04
    """)
    res = run_import(tmp_path)
    got = {r["person_id"]: (r["sex"], r["ethnicity"]) for r in read_out(tmp_path, "people")}
    assert got == {"P1": ("other", "black"), "P2": ("male", "asian"), "P3": ("unknown", "unknown")}
    assert {(c["column"], c["code"]) for c in res.facts["codes"]} == {("GenderIDCode", "8"),
                                                                     ("EthnicCategory", "QQ")}


def test_only_allocated_people_are_written_and_both_gaps_are_counted(tmp_path):
    write_mhsds(tmp_path, MHS001MPI="""
        Person_ID | UniqMonthID | Gender | ReportingPeriodEndDate
        P1        | 1500        | 2      | 2024-01-31
        P9        | 1500        | 1      | 2024-01-31
    """, MHS004EmpStatus="""
        Person_ID | EmployStatusRecDate | EmployStatus | UniqMonthID
        P1        | 2024-01-06          | 02           | 1500
        P9        | 2024-01-06          | 01           | 1500
        P8        | 2024-01-07          | 01           | 1500
    """, allocation="""
        Person_ID | site_id | arm           | index_date | data_end_date
        P1        | S01     | open_dialogue | 2024-01-04 |
        P2        | S02     | usual_care    | 2024-01-05 | 2024-01-20
    """)
    res = run_import(tmp_path)
    people = {r["person_id"]: r for r in read_out(tmp_path, "people")}
    assert sorted(people) == ["P1", "P2"]
    assert people["P2"]["sex"] == "unknown" and people["P2"]["data_end_date"] == "2024-01-20"
    assert people["P1"]["data_end_date"] == "2024-01-31"  # end of the extract
    assert [r["person_id"] for r in read_out(tmp_path, "employment")] == ["P1"]
    a = res.facts["allocation"]
    assert (a["allocated_people"], a["with_mhs001mpi"], a["without_mhs001mpi"],
            a["people_without_allocation"]) == (2, 1, 1, 2)
    assert res.facts["tables"]["MHS004EmpStatus"]["kept_not_allocated"] == 2


def test_a_crisis_team_referral_is_a_crisis_episode_not_a_referral(tmp_path):
    write_mhsds(tmp_path, MHS101Referral="""
        UniqServReqID | Person_ID | UniqMonthID | ReferralRequestReceivedDate | ServDischDate
        R1            | P1        | 1500        | 2024-01-05                  |
        R2            | P1        | 1500        | 2024-01-12                  | 2024-01-30
    """, MHS102ServiceTypeReferredTo="""
        UniqServReqID | UniqCareProfTeamID | Person_ID | ServTeamTypeRefToMH | UniqMonthID
        R1            | T1                 | P1        | A06                 | 1500
        R2            | T2                 | P1        | A02                 | 1500
    """)
    run_import(tmp_path)
    assert [r["referral_id"] for r in read_out(tmp_path, "referrals")] == ["R1"]
    assert read_out(tmp_path, "crisis_episodes") == [
        {"episode_id": "R2", "person_id": "P1", "start_on": "2024-01-12", "end_on": "2024-01-30"}]


def test_a_local_mapping_names_network_meetings_and_overrides_a_code(tmp_path):
    write_mhsds(tmp_path, MHS202CareActivity="""
        UniqCareActID | UniqCareContID | Person_ID | CareProfLocalId | Procedure | UniqMonthID
        A1            | C1             | P1        | T001            | OD-NM     | 1500
        A2            | C1             | P1        | T002            | OD-NM     | 1500
    """)
    mapping = tmp_path / "local.csv"
    mapping.write_text("list,code,contract_value,meaning\n"
                       "network_meeting_procedure,OD-NM,network_meeting,our Open Dialogue meeting code\n"
                       "activity_location_type,A01,place_of_choice,\n")
    res = run_import(tmp_path, mappings=[mapping])
    c = read_out(tmp_path, "contacts")[0]
    assert (c["contact_type"], c["location"]) == ("network_meeting", "place_of_choice")
    assert read_out(tmp_path, "contact_staff") == [{"contact_id": "C1", "staff_id": "T001"},
                                                   {"contact_id": "C1", "staff_id": "T002"}]
    lists = {cl["name"]: cl for cl in res.facts["code_lists"]}
    assert lists["activity_location_type"]["local_overrides"] == ["A01"]
