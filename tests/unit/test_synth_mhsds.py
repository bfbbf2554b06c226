"""`odeval synth --format mhsds`: the synthetic study as MHSDS tables, and what it plants.

The import must count exactly what the generator planted (every superseded version,
duplicate, invalid row and unlisted code, per table and month) and write back the native
study's rows. (That `odeval run` on the import recovers the planted truth is the e2e test
tests/e2e/test_import_mhsds_cli.py.)
"""

from __future__ import annotations

import hashlib
import json

import duckdb
import pytest

from pipeline.importers.mhsds import import_mhsds
from pipeline.synth.mhsds import write_mhsds


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    out = tmp_path_factory.mktemp("mhsds")
    write_mhsds(out, people=240, sites=3, seed=11)
    res = import_mhsds(out / "mhsds", out / "allocation.csv", out / "extract",
                       mappings=[out / "local_mapping.csv"], local=out / "local", fmt="parquet")
    return out, json.loads((out / "mhsds_truth.json").read_text()), res


def test_the_import_counts_every_planted_version_duplicate_and_invalid_row(planted):
    _, truth, res = planted
    for t, want in truth["tables"].items():
        got = res.facts["tables"][t]
        assert {k: got[k] for k in want} == want, t
    assert res.facts["months"] == truth["months"]
    assert all(truth["tables"][t][k] > 0 for t in ("MHS201CareContact", "MHS501HospProvSpell")
               for k in ("superseded", "duplicate", "invalid"))


def test_the_import_reports_every_planted_unlisted_code_and_row_not_carried(planted):
    _, truth, res = planted
    key = lambda c: (c["table"], c["column"], c["code"], c["kind"], c["rows"], c["contract_value"])  # noqa: E731
    assert sorted(map(key, res.facts["codes"])) == sorted(map(key, truth["codes"]))
    assert {c["kind"] for c in truth["codes"]} == {"unmapped", "not_carried"}


def test_the_allocation_gaps_are_counted(planted):
    _, truth, res = planted
    assert res.facts["allocation"] == truth["allocation"]
    assert truth["allocation"]["without_mhs001mpi"] > 0 and truth["allocation"]["people_without_allocation"] > 0


def test_the_extract_holds_the_native_studys_rows(planted):
    """Every contract row the native study has comes back (MHSDS items exactly; what MHSDS
    cannot carry is empty or from the allocation list)."""
    out, _, _ = planted
    from pipeline.synth import generate_study

    native = out / "native"
    generate_study(native, people=240, sites=3, seed=11, fmt="parquet")
    con = duckdb.connect()
    checks = {
        "people": "person_id, site_id, arm, cluster_id, index_date, data_end_date, birth_year, "
                  "diagnosis_group, prior_admissions_2y, baseline_activity, death_date",
        "admissions": "admission_id, person_id, admitted_on, discharged_on, admission_method",
        "detentions": "detention_id, person_id, legal_section, start_on, end_on",
        "crisis_episodes": "episode_id, person_id, start_on, end_on",
        "referrals": "referral_id, person_id, received_at, discharged_at",
        "contacts": "contact_id, person_id, referral_id, start_at, duration_min, contact_type, location, attended",
        "contact_staff": "contact_id, staff_id",
        "employment": "person_id, recorded_on, "
                      "case when status in ('self_employed', 'employed') then 'employed' "
                      "when status in ('training', 'education') then 'education' else status end",
        "staff": "*", "prescriptions": "*",
    }
    for t, cols in checks.items():
        a, b = (f"select {cols} from read_parquet('{d / (t + '.parquet')}')" for d in (native, out / "extract"))
        assert con.execute(f"select count(*) from (({a}) except all ({b}))").fetchone()[0] == 0, t
        assert con.execute(f"select count(*) from (({b}) except all ({a}))").fetchone()[0] == 0, t
    people = f"read_parquet('{out / 'extract' / 'people.parquet'}')"
    native_people = f"read_parquet('{native / 'people.parquet'}')"
    diff = con.execute(f"select count(*) from {people} as i join {native_people} as n using (person_id) "
                       "where i.sex <> n.sex and i.sex <> 'unknown'").fetchone()[0]
    assert diff == 0   # sex comes back, except 'unknown' for those planted without MHS001MPI


def test_mixed_versions_formats_and_flags_are_all_planted(planted):
    out, _, res = planted
    names = sorted(p.name for p in (out / "mhsds").iterdir())
    for suffix in ("_v4.txt", "_v5.csv", "_v6.parquet"):
        assert sum(n.endswith(suffix) for n in names) == 9, suffix
    delims = {f.path.name: f.delimiter for f in res.files}
    assert delims["MHS201CareContact_v4.txt"] == "|"
    head = (out / "mhsds" / "MHS201CareContact_v4.txt").read_text().splitlines()[0]
    assert "ConsMediumUsed" in head and "IC_USE_Submission_Flag" in head
    con = duckdb.connect()
    cols = [r[0] for r in con.execute(
        f"describe select * from read_parquet('{out / 'mhsds' / 'MHS501HospProvSpell_v6.parquet'}')").fetchall()]
    assert "UniqHospProvSpellID" in cols and "Der_IsLatest" in cols and "UniqHospProvSpellNum" not in cols


def test_same_seed_same_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        write_mhsds(d, people=60, sites=2, seed=5)
    digest = lambda d: {p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
                        for p in sorted(d.rglob("*")) if p.is_file()}
    assert digest(a) == digest(b)
