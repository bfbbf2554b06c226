"""Concurrency: two processes on one warehouse.

A second writer while one writes gets a clear "warehouse in use" error (DuckDB's file lock,
mapped by ``pipeline.warehouse.connect``), never a corrupted warehouse; read-only opens
(report, notebooks: ``connect(path, read_only=True)``) share the warehouse while nothing
writes, and are refused with the same clear error while something does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.errors import WarehouseInUse
from pipeline.ingest import ingest
from pipeline.validate import validate
from pipeline.warehouse import connect
from tests.conftest import write_extract
from tests.reliability.tally import count
from tests.reliability.conftest import ODEVAL, fingerprint

PERSON = {"person_id": "P1", "site_id": "S1", "arm": "open_dialogue", "index_date": "2023-01-05",
          "data_end_date": "2024-01-01", "sex": "female", "diagnosis_group": "psychosis"}
VALIDATE = {"great_expectations": False}

#: A process that opens the warehouse (rw or ro) with odeval's connect and holds it until
#: told to stop on stdin.
HOLDER = """
import sys
from pipeline.warehouse import connect
con = connect(sys.argv[1], read_only=sys.argv[2] == "ro")
print(con.execute("select count(*) from raw.people").fetchone()[0], flush=True)
sys.stdin.readline()
con.close()
"""


@pytest.fixture
def warehouse(tmp_path):
    extract = write_extract(tmp_path / "extract", {"people": [PERSON, {**PERSON, "person_id": "P2"}]})
    wh = tmp_path / "w.duckdb"
    con = connect(wh)
    ingest(con, [extract])
    con.close()
    return wh, extract


class Holder:
    """A separate process holding the warehouse open (read-write or read-only)."""

    def __init__(self, path: Path, mode: str):
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), mode],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.strip().isdigit(), self.proc.stderr.read()
        self.rows = int(line)

    def release(self) -> None:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        assert self.proc.wait(timeout=60) == 0, self.proc.stderr.read()


def _odeval(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(ODEVAL), *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env={**os.environ, "COLUMNS": "2000",
                                        "ODEVAL_PROJECT_ROOT": str(cwd)})


@pytest.fixture
def project(tmp_path):
    """Stamps and reports of CLI runs go to tmp, not the shared tree."""
    root = tmp_path / "proj"
    root.mkdir()
    repo = Path(__file__).resolve().parents[2]
    (root / "schemas").symlink_to(repo / "schemas")
    (root / "pipeline").symlink_to(repo / "pipeline")
    (root / "params.yaml").write_text("validate:\n  great_expectations: false\n")
    return root


def test_a_second_writer_gets_warehouse_in_use_and_changes_nothing(warehouse, project):
    wh, extract = warehouse
    con = connect(wh, read_only=True)
    before = fingerprint(con)
    con.close()
    holder = Holder(wh, "rw")
    try:
        for args in (["ingest", str(extract), "--replace"], ["validate"], ["derive"]):
            proc = _odeval(*args, "-w", str(wh), cwd=project)
            assert proc.returncode == 2, proc.stderr
            assert "Traceback" not in proc.stderr
            assert proc.stderr.startswith(f"error: file {wh}: warehouse in use: another process "
                                          f"(PID {holder.proc.pid}"), proc.stderr
            assert "has it open for writing" in proc.stderr and "[rule warehouse.in_use]" in proc.stderr
            count("concurrency", "second writer refused: warehouse in use")
        with pytest.raises(WarehouseInUse, match="open for writing"):
            connect(wh, read_only=True)  # nor can a reader open it while it is being written
        count("concurrency", "reader refused while a writer holds it")
    finally:
        holder.release()
    con = connect(wh, read_only=True)
    assert fingerprint(con) == before
    con.close()


def _holds_lock(pid: int, path: Path) -> bool:
    """Whether process ``pid`` holds a lock on ``path`` (Linux /proc/locks)."""
    inode = os.stat(path).st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        parts = line.split()
        # "1: POSIX  ADVISORY  WRITE 24447 fe:00:2213246 0 EOF" ("->" marks a waiter)
        if "->" in parts:
            continue
        if len(parts) >= 6 and parts[4] == str(pid) and parts[5].rsplit(":", 1)[-1] == str(inode):
            return True
    return False


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux /proc/locks")
def test_while_odeval_validate_runs_other_openings_are_refused_and_it_completes(
        warehouse, project, tmp_path):
    """Real odeval against real odeval: while ``odeval validate`` runs, a second opening
    (writer or reader) is refused; the running validate completes with the same result as
    when alone."""
    wh, _ = warehouse
    alone = tmp_path / "alone.duckdb"
    alone.write_bytes(wh.read_bytes())
    con = connect(alone)
    validate(con, VALIDATE)
    expected = fingerprint(con)
    con.close()

    proc = subprocess.Popen([str(ODEVAL), "validate", "-w", str(wh)], cwd=project,
                            env={**os.environ, "ODEVAL_PROJECT_ROOT": str(project)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not _holds_lock(proc.pid, wh):
        assert proc.poll() is None, "validate ended before it was seen holding the warehouse"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    refused = 0
    for read_only in (False, True):
        try:
            connect(wh, read_only=read_only).close()
        except WarehouseInUse as err:
            assert f"PID {proc.pid}" in str(err)
            refused += 1
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert refused == 2, "both openings happened while validate held the warehouse"
    count("concurrency", "odeval validate running: second opening refused", refused)
    con = connect(wh, read_only=True)
    assert fingerprint(con) == expected, "the running validate gives what it gives alone"
    con.close()
    count("concurrency", "running writer completed, same result as alone")


def test_readers_share_the_warehouse_and_block_writers_with_a_clear_error(warehouse, project):
    wh, extract = warehouse
    reader = Holder(wh, "ro")
    try:
        con = connect(wh, read_only=True)  # a second reader (e.g. the report beside a notebook)
        assert con.execute("select count(*) from raw.people").fetchone()[0] == reader.rows == 2
        con.close()
        count("concurrency", "two readers at once")
        with pytest.raises(WarehouseInUse) as info:
            connect(wh)
        assert "open read-only" in str(info.value) and f"PID {reader.proc.pid}" in str(info.value)
        proc = _odeval("ingest", str(extract), "-w", str(wh), cwd=project)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert "warehouse in use" in proc.stderr and "open read-only" in proc.stderr
        count("concurrency", "writer refused while a reader holds it")
    finally:
        reader.release()
    con = connect(wh)  # nothing holds it now: a writer opens it
    con.close()
