"""Ingest: typing, lineage, idempotency, atomicity and every fatal error's message."""

from __future__ import annotations

import random

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import OdevalError
from pipeline.ingest import ingest, nhs_number_sql
from pipeline.warehouse import connect
from tests.conftest import snapshot

PERSON = {"person_id": "P1", "site_id": "S1", "arm": "open_dialogue", "index_date": "2023-01-05",
          "data_end_date": "2024-01-01", "sex": "female", "diagnosis_group": "psychosis"}


@pytest.fixture
def con(tmp_path):
    c = connect(tmp_path / "w.duckdb")
    yield c
    c.close()


def test_values_are_typed_and_untypable_values_kept_with_their_text(con, extract):
    folder = extract(rows={"people": [
        PERSON,
        {**PERSON, "person_id": "P2", "index_date": "01/02/2023", "birth_year": "1,980"},
        {**PERSON, "person_id": "P3", "birth_year": "1.5"},
    ]})
    ingest(con, [folder])
    rows = con.execute("select person_id, index_date, birth_year, _row_number, _untyped "
                       "from raw.people order by _row_number").fetchall()
    assert rows[0][1].isoformat() == "2023-01-05" and rows[0][4] is None
    assert rows[1][1] is None and rows[1][2] is None
    assert rows[1][4] == [{"column": "index_date", "value": "01/02/2023"},
                          {"column": "birth_year", "value": "1,980"}]
    # '1.5' is not an integer: DuckDB's cast would round it to 2; we keep the text instead
    assert rows[2][2] is None and rows[2][4] == [{"column": "birth_year", "value": "1.5"}]
    assert [r[3] for r in rows] == [1, 2, 3]


@pytest.mark.parametrize("text,expected", [
    ("true", True), ("FALSE", False), ("1", True), ("0", False), ("Yes", True), (" no ", False),
    ("", None), ("maybe", "untyped"),
])
def test_booleans_accept_the_contract_spellings(con, extract, text, expected):
    contact = {"contact_id": "C1", "person_id": "P1", "start_at": "2023-01-06T10:00",
               "contact_type": "network_meeting", "location": "home", "attended": text}
    ingest(con, [extract(rows={"people": [PERSON], "contacts": [contact]})])
    value, untyped = con.execute("select attended, _untyped from raw.contacts").fetchone()
    if expected == "untyped":
        assert value is None and untyped == [{"column": "attended", "value": "maybe"}]
    else:
        assert value is expected and untyped is None


@pytest.mark.parametrize("text,expected", [
    ("10", 10.0), ("2.5", 2.5), ("1e2", 100.0), ("1e400", "untyped"), ("inf", "untyped"),
    ("nan", "untyped"), ("1,5", "untyped"),
])
def test_floats_must_be_finite_numbers(con, extract, text, expected):
    rx = {"prescription_id": "RX1", "person_id": "P1", "drug": "olanzapine", "route": "oral",
          "daily_dose_mg": text, "start_on": "2023-02-01"}
    ingest(con, [extract(rows={"people": [PERSON], "prescriptions": [rx]})])
    value, untyped = con.execute("select daily_dose_mg, _untyped from raw.prescriptions").fetchone()
    if expected == "untyped":
        assert value is None and untyped == [{"column": "daily_dose_mg", "value": text}]
    else:
        assert value == expected and untyped is None


def test_timestamps_with_and_without_seconds(con, extract):
    base = {"referral_id": "R1", "person_id": "P1"}
    ingest(con, [extract(rows={"people": [PERSON], "referrals": [
        {**base, "received_at": "2023-01-05T09:30"},
        {**base, "referral_id": "R2", "received_at": "2023-01-05T09:30:15"},
        {**base, "referral_id": "R3", "received_at": "05/01/2023 09:30"},
    ]})])
    got = con.execute("select cast(received_at as varchar) from raw.referrals "
                      "order by _row_number").fetchall()
    assert got == [("2023-01-05 09:30:00",), ("2023-01-05 09:30:15",), (None,)]


def test_row_numbers_count_data_rows_even_with_embedded_newlines(con, tmp_path, extract):
    folder = extract()
    (folder / "people.csv").write_text(
        "person_id,site_id,arm,index_date,data_end_date,sex,diagnosis_group,ethnicity\n"
        'P1,S1,open_dialogue,2023-01-05,2024-01-01,female,psychosis,"white\nbritish"\n'
        "P2,S1,open_dialogue,2023-01-05,2024-01-01,female,psychosis,white\n")
    ingest(con, [folder])
    assert con.execute("select person_id, _row_number from raw.people order by 2").fetchall() == [
        ("P1", 1), ("P2", 2)]


def test_parquet_input_is_typed_and_numbered(con, extract):
    folder = extract(rows={"people": [PERSON]})
    (folder / "people.csv").unlink()
    pq.write_table(pa.table({
        "person_id": ["A", "B"], "site_id": ["S1", "S1"], "arm": ["usual_care"] * 2,
        "index_date": pa.array([19000, 19001], pa.date32()),
        "data_end_date": ["2024-01-01", "2024-13-01"],  # strings: parsed like CSV text
        "sex": ["male", "male"], "diagnosis_group": ["other", "other"],
        "prior_admissions_2y": [1.0, 2.5],
    }), folder / "people.parquet")
    ingest(con, [folder])
    rows = con.execute("select person_id, index_date, data_end_date, prior_admissions_2y, "
                       "_row_number, _untyped from raw.people order by 5").fetchall()
    assert rows[0][1:5] == (rows[0][1], rows[0][2], 1, 1) and rows[0][5] is None
    assert rows[1][2] is None and rows[1][3] is None and rows[1][4] == 2
    assert {u["column"] for u in rows[1][5]} == {"data_end_date", "prior_admissions_2y"}


def test_extra_columns_are_kept_and_reported(con, extract):
    folder = extract(rows={"people": [{**PERSON, "Shoe Size": "42"}]},
                     columns={"people": [*PERSON, "Shoe Size"]})
    report = ingest(con, [folder])
    load = next(f for f in report.loads if f.table == "people")
    assert load.extra_columns == ["shoe_size"]
    assert con.execute("select _extra['shoe_size'] from raw.people").fetchone()[0] == "42"


def test_same_file_again_changes_nothing_and_says_so(con, extract):
    folder = extract(rows={"people": [PERSON]})
    first = ingest(con, [folder])
    before = snapshot(con)
    second = ingest(con, [folder])
    assert first.n_loaded == 11 and second.n_loaded == 0  # every contract table, clusters too
    assert {f.status for f in second.loads} == {"unchanged"}
    assert snapshot(con) == before


def test_lineage_names_file_and_sha256(con, extract):
    folder = extract(rows={"people": [PERSON]})
    ingest(con, [folder])
    file, sha, n = con.execute(
        "select l.source_file, l.sha256, count(*) from raw.people p "
        "join meta.loads l on p._load_id = l.load_id group by all").fetchone()
    import hashlib
    assert file == str(folder / "people.csv") and n == 1
    assert sha == hashlib.sha256((folder / "people.csv").read_bytes()).hexdigest()


def test_a_failure_midway_leaves_the_warehouse_as_it_was(con, extract):
    ingest(con, [extract("first", rows={"people": [PERSON]})])
    before = snapshot(con)
    good = extract("second", rows={"people": [{**PERSON, "person_id": "P9"}]})
    bad = extract("third", rows={"people": [{**PERSON, "person_id": "943 476 5919"}]})
    with pytest.raises(OdevalError):
        ingest(con, [good, bad])  # `good` loads fully before `bad` fails
    assert snapshot(con) == before


# ---------------------------------------------------------------- fatal errors, by rule

def _fatal(con, folder) -> OdevalError:
    with pytest.raises(OdevalError) as info:
        ingest(con, [folder])
    return info.value


def test_missing_required_column_names_file_and_column(con, extract):
    cols = [c for c in PERSON if c != "arm"]
    err = _fatal(con, extract(rows={"people": [{k: PERSON[k] for k in cols}]},
                              columns={"people": cols}))
    assert err.rule == "people.arm.required_column" and err.column == "arm"
    assert str(err) == (f"file {err.file}, column arm: required column 'arm' of table people "
                        "is missing [rule people.arm.required_column]")
    assert err.file.endswith("people.csv")


def test_nhs_number_shaped_pseudonym_refuses_the_extract(con, extract):
    event = {"detention_id": "D1", "person_id": "9434765919", "legal_section": "2",
             "start_on": "2023-02-01"}
    err = _fatal(con, extract(rows={"people": [PERSON], "detentions": [event]}))
    assert err.rule == "detentions.person_id.nhs_number" and err.row == 1
    assert "NHS number" in str(err) and "row 1" in str(err) and "detentions.csv" in str(err)


def test_identifier_named_column_is_refused(con, extract):
    err = _fatal(con, extract(rows={"people": [{**PERSON, "Date of Birth": "1980-01-01"}]},
                              columns={"people": [*PERSON, "Date of Birth"]}))
    assert err.rule == "identifier.forbidden_column" and err.column == "Date of Birth"


def test_missing_table_file(con, extract):
    folder = extract()
    (folder / "employment.csv").unlink()
    err = _fatal(con, folder)
    assert err.rule == "ingest.table_missing" and "employment.csv" in str(err)


def test_table_given_twice(con, extract):
    folder = extract()
    (folder / "staff.parquet").write_bytes(b"")
    assert _fatal(con, folder).rule == "ingest.table_twice"


def test_unreadable_file(con, extract):
    folder = extract()
    (folder / "staff.csv").write_bytes(b"staff_id,site_id,role\n\xff\xfe,S1,nurse\n")
    err = _fatal(con, folder)
    assert err.rule == "ingest.unreadable" and err.file.endswith("staff.csv")


def test_two_columns_meaning_the_same(con, extract):
    folder = extract(columns={"staff": ["staff_id", "Staff ID", "site_id", "role"]})
    err = _fatal(con, folder)
    assert err.rule == "ingest.duplicate_column" and "staff_id" in str(err)


# ---------------------------------------------------------------- Modulus 11

def _mod11_oracle(s: str) -> bool:
    """Plain Python statement of the NHS Number check digit rule."""
    s = s.replace(" ", "").replace("-", "")
    if len(s) != 10 or not s.isdigit():
        return False
    check = 11 - sum(int(d) * w for d, w in zip(s[:9], range(10, 1, -1))) % 11
    check = 0 if check == 11 else check
    return check != 10 and check == int(s[9])


@pytest.mark.parametrize("value,valid", [
    ("9434765919", True),     # the NHS Data Dictionary's worked example
    ("943 476 5919", True),
    ("943-476-5919", True),
    ("9434765918", False),    # wrong check digit
    ("4010232137", True),
    ("1234567881", True),     # weighted sum 208, 208 % 11 = 10, check digit 11 - 10 = 1
    ("0000000000", True),     # check 11 -> 0: shaped like an NHS number
    ("1000000010", False),    # check digit would be 10: never valid
    ("943476591", False),     # 9 digits
    ("94347659199", False),   # 11 digits
    ("P000123", False),
    (None, False),
])
def test_modulus_11_on_known_numbers(value, valid):
    assert _mod11_oracle(value or "") == valid
    got = duckdb.connect().execute(f"select {nhs_number_sql('x')} from (select ?::varchar as x)",
                                   [value]).fetchone()[0]
    assert bool(got) == valid


def test_modulus_11_sql_agrees_with_python_on_random_numbers():
    rng = random.Random(11)
    values = [f"{rng.randrange(10**10):010d}" for _ in range(5000)]
    con = duckdb.connect()
    con.execute("create table v (x varchar)")
    con.executemany("insert into v values (?)", [[v] for v in values])
    got = dict(con.execute(f"select x, {nhs_number_sql('x')} from v").fetchall())
    assert sum(got.values()) > 300  # about 1 in 11 numbers is valid
    assert all(got[v] == _mod11_oracle(v) for v in values)
