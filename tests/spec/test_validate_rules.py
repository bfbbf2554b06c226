"""Validation rules, one spec each: a tiny table that breaks the rule, and one that does not.

Each case names the rows of one table (beside a valid person P1 and staff member ST1) and
the rules each row must end up with: ``[]`` means the row is clean.
"""

from __future__ import annotations

import pytest

from pipeline.ingest import ingest
from pipeline.validate import validate
from pipeline.warehouse import connect

P1 = {"person_id": "P1", "site_id": "S1", "arm": "open_dialogue", "index_date": "2023-01-05",
      "data_end_date": "2024-01-01", "sex": "female", "diagnosis_group": "psychosis",
      "birth_year": "1980"}
ST1 = {"staff_id": "ST1", "site_id": "S1", "role": "nurse"}
C1 = {"contact_id": "C1", "person_id": "P1", "start_at": "2023-01-06T10:00",
      "contact_type": "network_meeting", "location": "home", "attended": "true"}
ADM = {"admission_id": "A1", "person_id": "P1", "admitted_on": "2023-03-01",
       "discharged_on": "2023-03-10", "admission_method": "emergency"}
RX = {"prescription_id": "RX1", "person_id": "P1", "drug": "olanzapine", "route": "oral",
      "daily_dose_mg": "10", "start_on": "2023-02-01"}

CASES = {
    # table, rows, expected rules per row (in row order)
    "type: untypable date": ("admissions", [{**ADM, "admitted_on": "01/03/2023"}],
                             [["admissions.admitted_on.type"]]),
    "type: typable passes": ("admissions", [ADM], [[]]),
    "required: empty value": ("contacts", [{**C1, "location": ""}],
                              [["contacts.location.required"]]),
    "required: untypable is a type failure, not a missing value": (
        "contacts", [{**C1, "attended": "maybe"}], [["contacts.attended.type"]]),
    "vocabulary: unknown value": ("contacts", [{**C1, "location": "car park"}],
                                  [["contacts.location.vocabulary"]]),
    "vocabulary: other case passes": ("contacts", [{**C1, "location": "Place_Of_Choice"}], [[]]),
    "range: above max": ("contacts", [{**C1, "duration_min": "1441"}],
                         [["contacts.duration_min.range"]]),
    "range: at max passes": ("contacts", [{**C1, "duration_min": "1440"}], [[]]),
    "range: below min": ("contacts", [{**C1, "network_members_present": "-1"}],
                         [["contacts.network_members_present.range"]]),
    "range: min_exclusive zero dose": ("prescriptions", [{**RX, "daily_dose_mg": "0"}],
                                       [["prescriptions.daily_dose_mg.range"]]),
    "range: small positive dose passes": ("prescriptions", [{**RX, "daily_dose_mg": "0.5"}], [[]]),
    "not_before: discharge before admission": (
        "admissions", [{**ADM, "discharged_on": "2023-02-28"}],
        [["admissions.discharged_on.not_before"]]),
    "not_before: same day passes": ("admissions", [{**ADM, "discharged_on": "2023-03-01"}], [[]]),
    "check: birth year after index year": ("people", [P1, {**P1, "person_id": "P2",
                                                           "birth_year": "2024"}],
                                           [[], ["people.birth_year_not_after_index"]]),
    "key: exact duplicate keeps the first copy": (
        "admissions", [ADM, ADM], [[], ["admissions.key.duplicate"]]),
    "key: duplicate after case normalisation": (
        "admissions", [ADM, {**ADM, "admission_method": "EMERGENCY"}],
        [[], ["admissions.key.duplicate"]]),
    "key: conflicting copies are all quarantined": (
        "admissions", [ADM, {**ADM, "admission_method": "planned"}],
        [["admissions.key.conflict"], ["admissions.key.conflict"]]),
    "key: composite key (employment)": (
        "employment", [{"person_id": "P1", "recorded_on": "2023-05-01", "status": "employed"},
                       {"person_id": "P1", "recorded_on": "2023-05-01", "status": "unemployed"},
                       {"person_id": "P1", "recorded_on": "2023-06-01", "status": "unemployed"}],
        [["employment.key.conflict"], ["employment.key.conflict"], []]),
    "ambiguous: one person_id at two sites": (
        "people", [P1, {**P1, "site_id": "S2"}, {**P1, "person_id": "P2"}],
        [["people.person_id.ambiguous"], ["people.person_id.ambiguous"], []]),
    "reference: orphan person": ("admissions", [{**ADM, "person_id": "P404"}],
                                 [["admissions.person_id.reference"]]),
    "reference: orphan staff": ("contact_staff", [{"contact_id": "C1", "staff_id": "ST404"}],
                                [["contact_staff.staff_id.reference"]]),
    "reference: optional reference empty passes": ("contacts", [{**C1, "referral_id": ""}], [[]]),
    "reference: optional reference unknown": ("contacts", [{**C1, "referral_id": "R404"}],
                                              [["contacts.referral_id.reference"]]),
    "after_extract: a date after the extract date": (
        "admissions", [{**ADM, "admitted_on": "2030-01-01", "discharged_on": ""}],
        [["admissions.admitted_on.after_data_end", "admissions.admitted_on.after_extract"]]),
    "after_data_end: within tolerance passes": (
        "admissions", [{**ADM, "admitted_on": "2024-01-01", "discharged_on": ""}], [[]]),
    "before_birth: event before the birth year": (
        "admissions", [{**ADM, "admitted_on": "1979-12-31", "discharged_on": "1980-01-02"}],
        [["admissions.admitted_on.before_birth"]]),
}


def _run(tmp_path, extract, rows: dict) -> object:
    base = {"people": [P1], "staff": [ST1], "contacts": [C1], **rows}  # `rows` replaces a default
    con = connect(tmp_path / "w.duckdb")
    ingest(con, [extract(rows=base)])
    validate(con, {"max_quarantine_share": 1.0})
    return con


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_rule(case, tmp_path, extract):
    table, rows, expected = CASES[case]
    con = _run(tmp_path, extract, {table: rows})
    got = dict(con.execute(f"select _row_number, _rules from quarantine.{table}").fetchall())
    assert [sorted(got.get(i + 1, [])) for i in range(len(rows))] == expected
    n_clean = con.execute(f"select count(*) from clean.{table}").fetchone()[0]
    assert n_clean == sum(1 for e in expected if not e)


def test_cascade_person_and_contact(tmp_path, extract):
    """Events of a quarantined person, and staff rows of a quarantined contact, go with them."""
    con = _run(tmp_path, extract, {
        "people": [P1, {**P1, "person_id": "P2", "arm": "waiting_list"}],
        "contacts": [C1, {**C1, "contact_id": "C2", "person_id": "P2"}],
        "contact_staff": [{"contact_id": "C1", "staff_id": "ST1"},
                          {"contact_id": "C2", "staff_id": "ST1"}],
    })
    assert con.execute("select contact_id, _rules from quarantine.contacts").fetchall() == [
        ("C2", ["contacts.person_id.person_quarantined"])]
    assert con.execute("select contact_id, _rules from quarantine.contact_staff").fetchall() == [
        ("C2", ["contact_staff.contact_id.contact_quarantined"])]


def test_clean_rows_are_normalised_to_lower_case(tmp_path, extract):
    con = _run(tmp_path, extract, {"contacts": [{**C1, "location": " HOME ",
                                                 "contact_type": "Network_Meeting"}]})
    assert con.execute("select location, contact_type from clean.contacts").fetchone() == (
        "home", "network_meeting")


def test_every_raw_row_is_clean_or_quarantined_per_load(tmp_path, extract):
    con = _run(tmp_path, extract, {"admissions": [ADM, ADM, {**ADM, "admission_id": "A2",
                                                             "person_id": "P404"}]})
    rows = con.execute("select table_name, n_raw, n_clean, n_quarantined "
                       "from meta.validation_counts where table_name = 'admissions'").fetchall()
    assert rows == [("admissions", 3, 1, 2)]


def test_the_data_quality_tables_count_the_clean_and_quarantined_rows(tmp_path, extract):
    # per table and site: rows in = clean + quarantined; per site and month of the table's
    # date: the clean rows (the quarantined one, of no site, not counted)
    con = _run(tmp_path, extract, {
        "people": [P1, {**P1, "person_id": "P2", "site_id": "S2"}],
        "admissions": [ADM, {**ADM, "admission_id": "A2", "admitted_on": "2023-04-04",
                             "discharged_on": ""},
                       {**ADM, "admission_id": "A3", "person_id": "P404"},
                       {**ADM, "admission_id": "A4", "person_id": "P2"}],
        "contact_staff": [{"contact_id": "C1", "staff_id": "ST1"},
                          {"contact_id": "C1", "staff_id": "ST404"}]})
    got = con.execute("select site_id, n_raw, n_clean, n_quarantined from results.dq_tables "
                      "where table_name = 'admissions' order by 1").fetchall()
    assert got == [("(unknown)", 1, 0, 1), ("S1", 2, 2, 0), ("S2", 1, 1, 0)]
    month = con.execute(
        "select site_id, month, n_clean from results.dq_completeness "
        "where table_name = 'admissions' order by 1, 2").fetchall()
    dated = con.execute("""
        select p.site_id, strftime(a.admitted_on, '%Y-%m'), count(*) from clean.admissions a
        join clean.people p using (person_id) group by all order by 1, 2""").fetchall()
    assert month == dated and sum(n for _, _, n in month) == 3 and len(month) == 3
    # every table's rules counted, with or without a date (contact staff has none)
    got = con.execute("select site_id, n_raw, n_clean, n_quarantined from results.dq_tables "
                      "where table_name = 'contact_staff' order by 1").fetchall()
    assert got == [("(unknown)", 1, 0, 1), ("S1", 1, 1, 0)]
    assert dict(con.execute("select rule_id, n_rows from results.dq_rules where n_rows > 0")
                .fetchall()) == {"admissions.person_id.reference": 1,
                                 "contact_staff.staff_id.reference": 1}
    assert con.execute("select rule_id, row_number from results.dq_examples order by 1"
                       ).fetchall() == [("admissions.person_id.reference", 3),
                                        ("contact_staff.staff_id.reference", 2)]


def test_quarantined_rows_keep_lineage(tmp_path, extract):
    con = _run(tmp_path, extract, {"admissions": [ADM, {**ADM, "admission_id": "A2",
                                                        "person_id": "P404"}]})
    file, row = con.execute(
        "select l.source_file, q._row_number from quarantine.admissions q "
        "join meta.loads l on l.load_id = q._load_id").fetchone()
    assert file.endswith("admissions.csv") and row == 2


def test_quarantine_share_above_threshold_is_fatal_and_changes_nothing(tmp_path, extract):
    from pipeline.errors import OdevalError

    con = connect(tmp_path / "w.duckdb")
    ingest(con, [extract(rows={"people": [P1], "staff": [ST1], "admissions": [
        ADM, {**ADM, "admission_id": "A2", "person_id": "P404"}]})])
    validate(con, {"max_quarantine_share": 1.0})
    before = con.execute("select * from quarantine.admissions").fetchall()
    with pytest.raises(OdevalError) as info:
        validate(con, {"max_quarantine_share": {"default": 1.0, "admissions": 0.4}})
    assert info.value.rule == "validate.quarantine_share"
    assert "table admissions: 1 of 2 rows quarantined (50.0%), above the threshold 40%" in str(
        info.value)
    assert con.execute("select * from quarantine.admissions").fetchall() == before


def test_clean_is_the_validated_loads_rows_that_broke_no_rule(tmp_path, extract):
    """Two loads of admissions appended in either order: the same clean rows. Clean is a
    view of raw; a load ingested after validate is not clean until validate runs again."""
    first = extract("a", rows={"people": [P1], "staff": [ST1], "admissions": [
        ADM, {**ADM, "admission_id": "A2", "person_id": "P404"}, {**ADM, "admission_id": "A3"}]})
    second = extract("b", rows={"admissions": [{**ADM, "admission_id": "A4"}, ADM]})
    third = extract("c", rows={"admissions": [{**ADM, "admission_id": "A5"}]})
    got = []
    for name, folders in (("ab", [first, second]), ("ba", [second, first])):
        con = connect(tmp_path / f"{name}.duckdb")
        ingest(con, folders)
        validate(con, {"max_quarantine_share": 1.0})
        got.append(con.execute("select admission_id, _load_id, _row_number "
                               "from clean.admissions order by _load_id, _row_number").fetchall())
        quarantined = con.execute("select _load_id, _row_number from quarantine.admissions"
                                  ).fetchall()
        raw = con.execute("select admission_id, _load_id, _row_number from raw.admissions "
                          "order by _load_id, _row_number").fetchall()
        assert got[-1] == [r for r in raw if (r[1], r[2]) not in quarantined]
    assert got[0] == got[1]
    assert [r[0] for r in got[0]].count("A1") == 1 and len(got[0]) == 3  # A1 twice: one clean
    ingest(con, [third])
    assert con.execute("select count(*) from raw.admissions").fetchone()[0] == 6
    assert con.execute("select count(*) from clean.admissions").fetchone()[0] == 3
    validate(con, {"max_quarantine_share": 1.0})
    assert "A5" in [r[0] for r in con.execute("select admission_id from clean.admissions"
                                              ).fetchall()]


G1 = {"cluster_id": "G1", "site_id": "S1", "arm": "open_dialogue", "list_size": "8000",
      "imd_decile": "3"}


def test_people_name_a_listed_cluster_and_carry_its_arm_and_site(tmp_path, extract):
    """With a clusters table (the randomisation list), a person's cluster must be listed,
    and the person carries the arm the cluster was randomised to and its site. A listed
    cluster without people is kept (allocated, no one recruited)."""
    con = _run(tmp_path, extract, {
        "clusters": [G1, {**G1, "cluster_id": "G2", "arm": "usual_care"}],
        "people": [{**P1, "cluster_id": "G1"},
                   {**P1, "person_id": "P2", "cluster_id": "G9"},
                   {**P1, "person_id": "P3", "cluster_id": "G1", "arm": "Usual_Care"},
                   {**P1, "person_id": "P4", "cluster_id": "G1", "site_id": "S2"},
                   {**P1, "person_id": "P5", "cluster_id": "g1"},
                   {**P1, "person_id": "P6", "cluster_id": "", "arm": "USUAL_CARE"}]})
    got = dict(con.execute("select person_id, _rules from quarantine.people").fetchall())
    assert got == {"P2": ["people.cluster_id.reference"], "P3": ["people.arm.same_as"],
                   "P4": ["people.site_id.same_as"], "P5": ["people.cluster_id.reference"]}
    assert con.execute("select cluster_id from clean.clusters order by 1").fetchall() == [
        ("G1",), ("G2",)]


def test_without_a_clusters_table_cluster_ids_are_not_checked(tmp_path, extract):
    folder = extract(rows={"people": [{**P1, "cluster_id": "G9"}], "staff": [ST1]})
    (folder / "clusters.csv").unlink()  # optional: an individually randomised extract has none
    con = connect(tmp_path / "w.duckdb")
    ingest(con, [folder])
    validate(con, {"max_quarantine_share": 1.0})
    assert con.execute("select count(*) from clean.people").fetchone()[0] == 1
    assert con.execute("select count(*) from raw.clusters").fetchone()[0] == 0


def test_a_clusters_table_keeps_its_other_columns_as_covariates(tmp_path, extract):
    folder = extract(rows={"people": [{**P1, "cluster_id": "G1"}], "staff": [ST1],
                           "clusters": [{**G1, "Rurality": "urban"}]},
                     columns={"clusters": [*G1, "Rurality"]})
    con = connect(tmp_path / "w.duckdb")
    ingest(con, [folder])
    validate(con, {"max_quarantine_share": 1.0})
    assert con.execute("select list_size, imd_decile, _extra from clean.clusters").fetchone() == (
        8000, 3, {"rurality": "urban"})
