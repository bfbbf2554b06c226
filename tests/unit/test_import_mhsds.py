"""`odeval import mhsds`: formats, versions, refusals, output folder, report disclosure.

The rules of deduplication and mapping have their specs in tests/spec/test_import_mhsds.py;
here: what is read (CSV, pipe-delimited text, Parquet, several files per table), what
is refused (one error naming file, column and rule; nothing written), and what the
extract and report are.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import OdevalError
from pipeline.importers import mhsds_report
from pipeline.importers.mhsds_spec import code_key, load_code_lists
from tests.mhsds_helpers import MINIMAL, read_out, run_import, write_csv, write_mhsds
from tests.spec.conftest import parse_table


def _nothing_written(folder: Path) -> None:
    assert not (folder / "extract").exists()
    assert not (folder / "report").exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(".extract")], "scratch left behind"


def _refused(folder: Path, **kw) -> OdevalError:
    with pytest.raises(OdevalError) as err:
        run_import(folder, **kw)
    _nothing_written(folder)
    return err.value


# --------------------------------------------------------------------------- refusals

def test_a_missing_required_table_is_named(tmp_path):
    write_mhsds(tmp_path, MHS401MHActPeriod=None)
    e = _refused(tmp_path)
    assert e.rule == "mhsds.table_missing" and "MHS401MHActPeriod" in str(e)


def test_a_missing_required_column_is_named_as_mhsds_writes_it(tmp_path):
    write_mhsds(tmp_path, MHS101Referral="""
        UniqServReqID | Person_ID | UniqMonthID
        R1            | P1        | 1500
    """)
    e = _refused(tmp_path)
    assert e.rule == "MHS101Referral.ReferralRequestReceivedDate.required_column"
    assert e.column == "ReferralRequestReceivedDate" and e.file.endswith("MHS101Referral.csv")


def test_a_column_renamed_between_versions_needs_one_of_its_names(tmp_path):
    write_mhsds(tmp_path, MHS501HospProvSpell="""
        Person_ID | StartDateHospProvSpell | AdmMethCodeHospProvSpell | UniqMonthID
        P1        | 2024-01-10             | 21                       | 1500
    """)
    e = _refused(tmp_path)
    assert "UniqHospProvSpellID or UniqHospProvSpellNum" in str(e)
    assert e.rule == "MHS501HospProvSpell.UniqHospProvSpellID.required_column"


@pytest.mark.parametrize("column, value, rule", [
    ("UniqMonthID", "Jan-24", "mhsds.MHS001MPI.UniqMonthID.type"),
    ("ReportingPeriodEndDate", "31/01/2024", "mhsds.MHS001MPI.ReportingPeriodEndDate.type"),
])
def test_a_value_of_the_wrong_type_stops_the_import_naming_file_column_and_row(tmp_path, column, value, rule):
    rows = parse_table(MINIMAL["MHS001MPI"])
    rows.append({**rows[0], "Person_ID": "P2", column: value})
    header = list(rows[0])
    write_mhsds(tmp_path, MHS001MPI="\n".join(" | ".join(r[h] or "" for h in header)
                                              for r in [dict(zip(header, header)), *rows]))
    e = _refused(tmp_path)
    assert (e.rule, e.column, e.row) == (rule, column, 2)
    assert e.file.endswith("MHS001MPI.csv")


def test_a_validity_flag_other_than_y_or_n_is_refused(tmp_path):
    write_mhsds(tmp_path, MHS004EmpStatus="""
        Person_ID | EmployStatusRecDate | EmployStatus | UniqMonthID | Der_IsLatest
        P1        | 2024-01-06          | 02           | 1500        | maybe
    """)
    e = _refused(tmp_path)
    assert e.rule == "mhsds.MHS004EmpStatus.Der_IsLatest.flag" and e.row == 1


def test_an_unreadable_file_is_refused_as_ingest_refuses_it(tmp_path):
    write_mhsds(tmp_path)
    path = tmp_path / "mhsds" / "MHS201CareContact.csv"
    path.write_bytes(path.read_bytes().replace(b"P1", b"P\xe9", 1).replace(b"R1,2024", b"R\xe91,2024"))
    e = _refused(tmp_path)
    assert e.rule == "ingest.unreadable" and e.file.endswith("MHS201CareContact.csv")


def test_an_identifier_named_column_is_refused(tmp_path):
    write_mhsds(tmp_path, MHS001MPI="""
        Person_ID | LocalPatientId | UniqMonthID | Gender | ReportingPeriodEndDate
        P1        | RV5123         | 1500        | 2      | 2024-01-31
    """)
    e = _refused(tmp_path)
    assert e.rule == "identifier.forbidden_column" and e.column == "LocalPatientId"


def test_an_nhs_number_shaped_person_id_is_refused(tmp_path):
    write_mhsds(tmp_path, MHS004EmpStatus="""
        Person_ID  | EmployStatusRecDate | EmployStatus | UniqMonthID
        9434765919 | 2024-01-06          | 02           | 1500
    """)
    e = _refused(tmp_path)
    assert e.rule == "mhs004empstatus.person_id.nhs_number" and e.row == 1


def test_identifier_shaped_values_in_other_columns_are_refused(tmp_path):
    write_mhsds(tmp_path, MHS201CareContact="""
        UniqCareContID | Person_ID | CareContDate | ConsMechanismMH | AttendOrDNACode | UniqMonthID | Notes
        C1             | P1        | 2024-01-06   | 01              | 5               | 1500        | call jo@example.org
    """)
    e = _refused(tmp_path)
    assert e.rule == "identifier.email" and e.column == "Notes"


def test_the_allocation_list_is_checked_like_the_people_table(tmp_path):
    write_mhsds(tmp_path, allocation="""
        Person_ID | site_id | arm           | index_date
        P1        | S01     | open_dialogue | 2024-01-04
        P2        | S01     | open_dialogue | 04/01/2024
    """)
    e = _refused(tmp_path)
    assert e.rule == "mhsds.allocation.index_date.type" and e.row == 2


def test_a_local_mapping_with_a_value_outside_the_contract_is_refused(tmp_path):
    write_mhsds(tmp_path)
    bad = tmp_path / "local.csv"
    bad.write_text("list,code,contract_value\nmha_legal_status,11,sectioned\n")
    e = _refused(tmp_path, mappings=[bad])
    assert (e.rule, e.row, e.column) == ("mhsds.code_list.value", 1, "contract_value")


def test_the_output_must_be_new_empty_or_an_earlier_import(tmp_path):
    write_mhsds(tmp_path)
    (tmp_path / "extract").mkdir()
    (tmp_path / "extract" / "notes.txt").write_text("mine")
    with pytest.raises(OdevalError) as err:
        run_import(tmp_path)
    assert err.value.rule == "mhsds.out"
    assert (tmp_path / "extract" / "notes.txt").read_text() == "mine"


def test_an_earlier_import_is_replaced_whole(tmp_path):
    write_mhsds(tmp_path)
    run_import(tmp_path, fmt="csv")
    run_import(tmp_path, fmt="parquet")
    from pipeline.schemas import load_contract

    # one file per contract table (wt20 added the optional clusters table), nothing of the csv
    assert sorted(p.suffix for p in (tmp_path / "extract").iterdir()) == \
        [".json"] + [".parquet"] * len(load_contract())


# --------------------------------------------------------------------------- formats and versions

def test_pipe_delimited_parquet_and_several_files_per_table_with_mixed_versions(tmp_path):
    """v5 spells (UniqHospProvSpellNum) in pipe-delimited text, v6 (UniqHospProvSpellID) in
    Parquet with the codes as integers (02 arrives as 2); one spell is in both."""
    write_mhsds(tmp_path, MHS501HospProvSpell=None)
    src = tmp_path / "mhsds"
    write_csv(src / "MHS501HospProvSpell_v5.txt", """
        UniqHospProvSpellNum | Person_ID | StartDateHospProvSpell | DischDateHospProvSpell | AdmMethCodeHospProvSpell | UniqMonthID
        S1                   | P1        | 2024-01-10             |                        | 21                       | 1500
        S2                   | P1        | 2024-01-12             | 2024-01-20             | 13                       | 1500
    """, delimiter="|")
    pq.write_table(pa.table({
        "UniqHospProvSpellID": ["S1"], "Person_ID": ["P1"],
        "StartDateHospProvSpell": pa.array([pa.scalar(19732, pa.date32()).as_py()], pa.date32()),
        "DischDateHospProvSpell": pa.array([pa.scalar(19760, pa.date32()).as_py()], pa.date32()),
        "AdmMethCodeHospProvSpell": pa.array([21], pa.int64()), "UniqMonthID": pa.array([1501], pa.int64()),
    }), src / "MHS501HospProvSpell_v6.parquet")
    (src / "MHS401MHActPeriod.csv").unlink()
    pq.write_table(pa.table({
        "UniqMHActEpisodeID": ["D1"], "Person_ID": ["P1"],
        "StartDateMHActLegalStatusClass": pa.array([pa.scalar(19732, pa.date32()).as_py()], pa.date32()),
        "LegalStatusCode": pa.array([2], pa.int64()), "UniqMonthID": pa.array([1500], pa.int64()),
    }), src / "MHS401MHActPeriod.parquet")
    res = run_import(tmp_path)
    got = {r["admission_id"]: (r["discharged_on"], r["admission_method"]) for r in read_out(tmp_path, "admissions")}
    assert got == {"S1": ("2024-02-07", "emergency"), "S2": ("2024-01-20", "planned")}
    assert [r["legal_section"] for r in read_out(tmp_path, "detentions")] == ["2"]
    delims = {f.path.name: f.delimiter for f in res.files}
    assert delims["MHS501HospProvSpell_v5.txt"] == "|" and delims["MHS001MPI.csv"] == ","
    assert res.facts["tables"]["MHS501HospProvSpell"]["superseded"] == 1


def test_code_keys_ignore_case_space_and_the_leading_zeros_parquet_drops():
    assert code_key(" a01 ") == "A01" and code_key("02") == code_key(2) == "2" and code_key("0") == "0"
    for cl in load_code_lists().values():   # no list has two codes equal under the key
        assert len(cl.rows) == len({r.code for r in cl.rows.values()}), cl.name


def test_local_tables_are_copied_after_ingest_checks(tmp_path):
    write_mhsds(tmp_path)
    local = tmp_path / "local"
    local.mkdir()
    (local / "staff.csv").write_text("staff_id,site_id,role,od_trained\nT001,S01,nurse,true\n")
    run_import(tmp_path, local=local)
    assert read_out(tmp_path, "staff") == [{"staff_id": "T001", "site_id": "S01", "role": "nurse",
                                            "od_trained": "true"}]
    (local / "contacts.csv").write_text("contact_id\nC9\n")
    with pytest.raises(OdevalError) as err:
        run_import(tmp_path, local=local)
    assert err.value.rule == "mhsds.local_table"


def test_staff_no_register_lists_are_a_warning_before_validate_refuses_them(tmp_path):
    """Without a staff register (or with one lacking some ids) the contact-staff rows are
    orphans that validate quarantines; the import says so instead of leaving it to a run
    that stops at the quarantine threshold."""
    write_mhsds(tmp_path, MHS202CareActivity="""
        UniqCareActID | UniqCareContID | Person_ID | CareProfLocalId | UniqMonthID
        A1            | C1             | P1        | T001            | 1500
        A2            | C1             | P1        | T002            | 1500
    """)
    res = run_import(tmp_path)
    assert len(res.warnings) == 1 and res.warnings[0].startswith(
        "2 contact-staff rows name 2 members of staff") and "no staff register was given" in res.warnings[0]
    local = tmp_path / "local"
    local.mkdir()
    (local / "staff.csv").write_text("staff_id,site_id,role,od_trained\nT001,S01,nurse,true\n")
    res = run_import(tmp_path, local=local)
    assert len(res.warnings) == 1 and res.warnings[0].startswith(
        "1 contact-staff rows name 1 members of staff") and "does not list them" in res.warnings[0]
    (local / "staff.csv").write_text("staff_id,site_id,role,od_trained\nT001,S01,nurse,true\n"
                                     "T002,S01,psychiatrist,true\n")
    assert run_import(tmp_path, local=local).warnings == []


def test_the_extract_loads_and_validates_clean_and_rebuilds_byte_identical(tmp_path):
    from pipeline.ingest import ingest
    from pipeline.params import load_params, section
    from pipeline.validate import validate
    from pipeline.warehouse import connect

    write_mhsds(tmp_path)
    run_import(tmp_path, fmt="parquet")
    first = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "extract").iterdir()}
    run_import(tmp_path, fmt="parquet")
    again = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "extract").iterdir()}
    assert first == again
    con = connect(tmp_path / "w.duckdb")
    ingest(con, [tmp_path / "extract"])
    params = load_params()
    validate(con, {**section(params, "validate"), "great_expectations": False})
    assert con.execute("select sum(n_quarantined), sum(n_raw) from meta.validation_counts").fetchone() == (0, 6)
    con.close()


# --------------------------------------------------------------------------- report

def _constraints_hold(facts, shown):
    """No sum the report shows has exactly one hidden cell."""
    for t, r in facts["tables"].items():
        cells = [shown[("t", t, k)] for k in mhsds_report.KINDS]
        assert sum(c is None for c in cells) != 1, t


def test_the_report_suppresses_small_counts_and_what_would_give_them_away(tmp_path):
    write_mhsds(tmp_path, MHS201CareContact="""
        UniqCareContID | Person_ID | CareContDate | ConsMechanismMH | AttendOrDNACode | UniqMonthID
        C1             | P1        | 2024-01-06   | 01              | 5               | 1500
        C1             | P1        | 2024-01-06   | 01              | 5               | 1501
    """ + "\n".join(f"        C{i} | P1 | 2024-01-06 | 01 | 5 | 1500" for i in range(2, 40)))
    res = run_import(tmp_path)
    cfg = {"suppress_min": 1, "suppress_max": 7, "round_to": 5}
    shown = mhsds_report.protect(res.facts, cfg)
    t = "MHS201CareContact"
    assert res.facts["tables"][t]["superseded"] == 1 and shown[("t", t, "superseded")] is None
    assert shown[("t", t, "rows_read")] is None or shown[("t", t, "kept")] is None
    _constraints_hold(res.facts, shown)
    report = json.loads((tmp_path / "report" / "import_report.json").read_text())
    assert report["tables"][t]["n_superseded"] is None
    from pipeline.check_outputs import check
    folder = tmp_path / "outputs"
    (folder / "import").mkdir(parents=True)
    for p in (tmp_path / "report").iterdir():
        (folder / "import" / p.name).write_bytes(p.read_bytes())
    assert check(folder, {**cfg, "unrounded_ok": ["import/"]}) == []
    html = (folder / "import" / "import_report.html").read_text()
    assert "P1" not in html and "C12" not in html  # no identifiers, only counts and codes


def test_the_report_lists_every_code_list_with_its_sources(tmp_path):
    write_mhsds(tmp_path)
    res = run_import(tmp_path)
    lists = {cl["name"]: cl for cl in res.facts["code_lists"]}
    assert set(lists) == set(load_code_lists())
    for name, cl in lists.items():
        if cl["codes"]:
            assert cl["sources"] and all(s for s in cl["sources"]), name
    html = (tmp_path / "report" / "import_report.html").read_text()
    assert "UKCore-LegalStatusClassificationEngland" in html


def test_duckdb_and_the_python_code_key_agree():
    from pipeline.importers.mhsds import CODE_KEY_MACRO

    con = duckdb.connect()
    con.execute(CODE_KEY_MACRO)
    for v in [" a01 ", "02", "2", "0", "00", "ZZ", "2a", " 010 ", "", "1 2"]:
        assert con.execute("select code_key($v)", {"v": v}).fetchone()[0] == code_key(v), v
