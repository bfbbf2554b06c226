"""End to end: a synthetic study written as MHSDS tables, imported, then run, as a user would.

`odeval synth --format mhsds` -> `odeval import mhsds` -> `odeval run`, each a subprocess in
a copy of the project. The derived outcomes must equal the generator's planted truth for
every person, exactly (the same check as for the native contract,
tests/e2e/test_pipeline_cli.py), and the import report must count what was planted.
"""

from __future__ import annotations

import json
import shutil

import duckdb
import pytest

from pipeline.disclosure import round_count, settings
from pipeline.params import load_params
from tests.e2e.test_pipeline_cli import BIN, _copy_project, _run, assert_planted_truth


@pytest.fixture(scope="module")
def mhsds_run(tmp_path_factory):
    root = _copy_project(tmp_path_factory.mktemp("project"))
    _run([str(BIN / "odeval"), "synth", "data/raw/m", "--format", "mhsds", "--people", "400",
          "--sites", "4", "--seed", "7"], root)
    imp = _run([str(BIN / "odeval"), "import", "mhsds", "data/raw/m/mhsds",
                "--allocation", "data/raw/m/allocation.csv", "--local", "data/raw/m/local",
                "--mapping", "data/raw/m/local_mapping.csv", "--out", "data/raw/extract"], root)
    _run([str(BIN / "odeval"), "run", "data/raw/extract"], root)
    return root, imp


def test_import_then_run_recovers_the_planted_truth_exactly(mhsds_run):
    root, _ = mhsds_run
    con = duckdb.connect(str(root / "data" / "warehouse.duckdb"), read_only=True)
    assert_planted_truth(con, root / "data" / "raw" / "m" / "truth_people.parquet", 400)
    assert con.execute("select sum(n_quarantined) from meta.validation_counts").fetchone()[0] == 0


def test_the_import_report_counts_what_was_planted(mhsds_run):
    root, imp = mhsds_run
    report = json.loads((root / "reports" / "import" / "import_report.json").read_text())
    planted = json.loads((root / "data" / "raw" / "m" / "mhsds_truth.json").read_text())
    cfg = settings(load_params(root / "params.yaml"))
    compared = 0
    for t, want in planted["tables"].items():
        for k in ("rows_read", "kept", "superseded", "duplicate", "invalid"):
            shown = report["tables"][t][f"n_{k}"]
            if 1 <= want[k] <= 7:
                assert shown is None, (t, k)     # small counts are never shown
            elif shown is not None:   # counts of people (MHS001MPI rows) are rounded too
                assert shown == (round_count(want[k], cfg) if t == "MHS001MPI" else want[k]), (t, k)
                compared += 1
    assert compared >= 30
    shown_codes = {(c["table"], c["column"], c["code"], c["kind"]): c["n_rows"] for c in report["codes"]}
    for c in planted["codes"]:
        n = shown_codes[(c["table"], c["column"], c["code"], c["kind"])]
        exact = round_count(c["rows"], cfg) if c["table"] == "MHS001MPI" else c["rows"]
        assert n is None if c["rows"] <= 7 else n in (None, exact), c
    assert "Import report:" in imp.stdout and "Traceback" not in imp.stderr


def test_check_outputs_and_its_attacker_find_no_breach_in_the_reports(mhsds_run):
    root, _ = mhsds_run
    proc = _run([str(BIN / "odeval"), "check-outputs", "--attack"], root, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_refused_input_is_one_line_without_traceback_and_nothing_is_written(mhsds_run, tmp_path):
    root, _ = mhsds_run
    bad = tmp_path / "mhsds"
    shutil.copytree(root / "data" / "raw" / "m" / "mhsds", bad)
    for p in bad.glob("MHS401MHActPeriod*"):
        p.unlink()
    proc = _run([str(BIN / "odeval"), "import", "mhsds", str(bad), "--allocation",
                 str(root / "data" / "raw" / "m" / "allocation.csv"), "--out", str(tmp_path / "out")],
                root, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "MHS401MHActPeriod" in lines[0] and "[rule mhsds.table_missing]" in lines[0]
    assert not (tmp_path / "out").exists()
