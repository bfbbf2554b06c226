"""Faults: a run killed (SIGKILL) at random points leaves the warehouse as it was before
that run, and the next run completes; full disks and unwritable outputs give a clear
error and no partial output.

Kill tests run the real ``odeval`` console script in a subprocess on a small synthetic
study, kill it after a random delay, then open the warehouse as the next run would
(DuckDB replays or discards its write-ahead log on open) and compare every table's
content with the snapshots taken before and after an uninterrupted run of the same
command: each kill must leave exactly one of the two.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
import yaml

from pipeline.errors import OdevalError
from pipeline.ingest import ingest
from pipeline.warehouse import connect
from tests.conftest import write_extract
from tests.reliability.conftest import ODEVAL, fingerprint, snapshot
from tests.reliability.tally import count

REPO = Path(__file__).resolve().parents[2]
#: Kill points per stage command (set ODEVAL_KILL_POINTS to try more).
KILL_POINTS = int(os.environ.get("ODEVAL_KILL_POINTS", "6"))
SEED = int(os.environ.get("ODEVAL_KILL_SEED", "20261125"))


def _open_fingerprint(path: Path, *, stable: bool = False) -> dict:
    con = duckdb.connect(str(path))  # writable, as the next run opens it: replays the WAL
    try:
        return fingerprint(con, stable=stable)
    finally:
        con.close()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project root in tmp: schemas and package linked, stamps and reports written here.

    Great-expectations is off in these runs only to keep the kill tests within their time
    budget: it re-counts validation's results in a separate transaction (see the report).
    """
    from pipeline.synth import generate_study

    root = tmp_path_factory.mktemp("killproj")
    (root / "schemas").symlink_to(REPO / "schemas")
    (root / "pipeline").symlink_to(REPO / "pipeline")
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params.setdefault("validate", {})["great_expectations"] = False
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    generate_study(root / "study_a", people=90, sites=2, seed=1, fmt="csv", faults=0.05)
    generate_study(root / "study_b", people=90, sites=2, seed=2, fmt="parquet")
    return root


def _odeval(project: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "ODEVAL_PROJECT_ROOT": str(project), "COLUMNS": "2000"}
    return subprocess.Popen([str(ODEVAL), *args], cwd=project, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _params(project: Path) -> dict:
    return yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))


def _stage_in_process(stage: str, con, project: Path) -> None:
    """The stage as the CLI runs it, without the process start-up (for the next runs)."""
    from pipeline.derive import derive
    from pipeline.validate import validate

    p = _params(project)
    if stage == "ingest":
        ingest(con, [project / "study_b"], replace=True)
    elif stage == "validate":
        validate(con, p["validate"])
    else:
        derive(con, p["derive"])


STAGES = ("ingest", "validate", "derive")
COMMANDS = {"ingest": ["ingest", "study_b", "--replace"], "validate": ["validate"],
            "derive": ["derive"]}


@pytest.fixture(scope="module")
def chain(project):
    """Warehouse states W0..W3 and each command's wall time: W0 is study A ingested,
    validated and derived; then the CLI's ``ingest study_b --replace`` gives W1,
    ``validate`` W2 and ``derive`` W3, each uninterrupted."""
    from pipeline.derive import derive
    from pipeline.validate import validate

    states = project / "states"
    states.mkdir()
    wh = project / "w.duckdb"
    con = connect(wh)
    ingest(con, [project / "study_a"])
    validate(con, _params(project)["validate"])
    derive(con, _params(project)["derive"])
    con.close()
    shutil.copy(wh, states / "W0.duckdb")
    out = {"W0": states / "W0.duckdb", "seconds": {}}
    for i, stage in enumerate(STAGES, start=1):
        t0 = time.monotonic()
        code, _, err = _finish(_odeval(project, *COMMANDS[stage], "-w", str(wh)))
        assert code == 0, err
        out["seconds"][stage] = time.monotonic() - t0
        shutil.copy(wh, states / f"W{i}.duckdb")
        out[f"W{i}"] = states / f"W{i}.duckdb"
    return out


def _kill_at(project: Path, args: list[str], wh: Path, delay: float) -> str:
    """Run the command, SIGKILL it after ``delay`` seconds; 'killed' or 'finished'."""
    proc = _odeval(project, *args, "-w", str(wh))
    try:
        proc.wait(timeout=delay)
        proc.communicate()
        return "finished"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the process group this test started
        proc.communicate()
        return "killed"


@pytest.mark.parametrize("stage", STAGES)
def test_a_killed_stage_leaves_the_warehouse_as_before_and_the_next_run_completes(
        stage, project, chain, tmp_path):
    i = STAGES.index(stage)
    before_file, duration = chain[f"W{i}"], chain["seconds"][stage]
    before = _open_fingerprint(before_file)
    after = _open_fingerprint(chain[f"W{i + 1}"], stable=True)
    assert _open_fingerprint(before_file, stable=True) != after, "the command must change something"
    rng = random.Random(f"{SEED}-{stage}")
    outcomes = []
    for point in range(KILL_POINTS):
        wh = tmp_path / f"k{point}.duckdb"
        shutil.copy(before_file, wh)
        # kill points spread over the run; the first ~third is mostly process start-up
        delay = rng.uniform(0.25, 1.0) * duration
        how = _kill_at(project, COMMANDS[stage], wh, delay)
        wal = Path(f"{wh}.wal")
        had_wal = wal.exists() and wal.stat().st_size > 0
        con = duckdb.connect(str(wh))  # as the next run opens it: replays or drops the WAL
        got = fingerprint(con)
        if got == before:
            state = "as before"
        elif fingerprint(con, stable=True) == after:
            state = "as after (committed before the kill)"
        else:
            changed = sorted(k for k in set(got) | set(before) if got.get(k) != before.get(k))
            raise AssertionError(f"kill at {delay:.2f}s ({how}) left a state that is neither "
                                 f"before nor after {stage}: tables changed {changed}")
        outcomes.append((round(delay, 2), how, state, had_wal))
        count(f"kill {stage}", "kill points")
        count(f"kill {stage}", f"{how}, warehouse {state}")
        if had_wal:
            count(f"kill {stage}", "WAL left by the kill, recovered on open")
        # the next run completes and gives what an uninterrupted run gives
        _stage_in_process(stage, con, project)
        assert fingerprint(con, stable=True) == after
        con.close()
        count(f"kill {stage}", "next run completed, same result")
        wh.unlink()
    print(f"\nkill points for {stage} ({duration:.1f}s uninterrupted): {outcomes}")
    assert any(how == "killed" for _, how, _, _ in outcomes), "no kill landed inside the run"


#: Opens the warehouse with odeval's connect, ingests a folder in odeval's transaction and is
#: SIGKILLed by itself at a chosen point: after the commit (committed data only in the WAL,
#: no checkpoint) or inside the transaction (uncommitted data written, no commit).
SELF_KILL = """
import os, signal, sys
from pipeline.ingest import ingest
from pipeline import ingest as ingest_module
from pipeline.warehouse import connect
wh, folder, when = sys.argv[1:4]
con = connect(wh)
con.execute("pragma disable_checkpoint_on_shutdown")
con.execute("set checkpoint_threshold = '1GB'")  # keep committed data in the WAL
if when == "inside":
    real = ingest_module._load_file
    def load_then_die(*a, **kw):
        real(*a, **kw)
        os.kill(os.getpid(), signal.SIGKILL)
    ingest_module._load_file = load_then_die
ingest(con, [folder])
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("when", ["after_commit", "inside"])
def test_duckdb_wal_recovery_on_open_is_what_makes_a_kill_safe(when, tmp_path):
    """Verifies the mechanism the kill tests rely on: a kill after a commit leaves the
    committed data only in the write-ahead log, and opening the warehouse replays it; a kill
    inside a transaction leaves nothing of it after the next open."""
    people = [{"person_id": f"P{i}", "site_id": "S1", "arm": "open_dialogue",
               "index_date": "2023-01-05", "data_end_date": "2024-01-01", "sex": "female",
               "diagnosis_group": "psychosis"} for i in range(2000)]
    folder = write_extract(tmp_path / "extract", {"people": people})
    wh = tmp_path / "w.duckdb"
    con = connect(wh)
    before = fingerprint(con)
    con.close()
    proc = subprocess.run([sys.executable, "-c", SELF_KILL, str(wh), str(folder), when],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    wal = Path(f"{wh}.wal")
    if when == "after_commit":
        assert wal.exists() and wal.stat().st_size > 0, "the committed ingest is only in the WAL"
    con = duckdb.connect(str(wh))
    got = fingerprint(con)
    con.close()
    if when == "after_commit":
        assert got["raw.people"][0] == 2000 and got["meta.loads"][0] == 10
        count("faults", "WAL replayed on open after a kill (committed data kept)")
    else:
        assert got == before
        count("faults", "kill inside a transaction: nothing of it after open")
    assert not wal.exists() or wal.stat().st_size == 0, "opening checkpoints the replayed WAL"


# ------------------------------------------------------------------ full disk, unwritable

def test_unwritable_warehouse_folder_is_a_clear_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.access(ro, os.W_OK):
        # root writes through a read-only mode bit; a path below a file fails for everyone
        # (next test), and the full-disk tests below cover writes that fail midway
        ro = tmp_path / "afile"
        ro.write_text("x")
    with pytest.raises(OdevalError) as info:
        connect(ro / "sub" / "w.duckdb")
    assert info.value.rule == "warehouse.open" and "w.duckdb" in str(info.value)
    count("faults", "unwritable output: clear error")


def test_warehouse_path_under_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OdevalError) as info:
        connect(tmp_path / "afile" / "w.duckdb")
    assert info.value.rule == "warehouse.open"
    assert "afile" in str(info.value) and "not a folder" in str(info.value)
    count("faults", "unwritable output: clear error")


def test_full_disk_during_ingest_is_a_clear_error_and_writes_nothing(tmp_path, monkeypatch):
    """ENOSPC from the warehouse write: simulated, as a tiny tmpfs needs root to mount."""
    folder = write_extract(tmp_path / "extract", {"people": [
        {"person_id": "P1", "site_id": "S1", "arm": "open_dialogue", "index_date": "2023-01-05",
         "data_end_date": "2024-01-01", "sex": "female", "diagnosis_group": "psychosis"}]})
    con = connect(tmp_path / "w.duckdb")
    before = snapshot(con)

    class FullDisk:
        """A connection whose writes fail as DuckDB fails on a full disk."""

        def __init__(self, real):
            self.real = real

        def execute(self, sql, *a, **kw):
            if sql.lstrip().lower().startswith("insert into raw."):
                raise duckdb.IOException(
                    f'IO Error: Could not write file "{tmp_path / "w.duckdb"}": '
                    f"{os.strerror(errno.ENOSPC)} (errno {errno.ENOSPC})")
            return self.real.execute(sql, *a, **kw)

        def __getattr__(self, name):
            return getattr(self.real, name)

    with pytest.raises(OdevalError) as info:
        ingest(FullDisk(con), [folder])
    assert info.value.rule == "warehouse.disk_full", str(info.value)
    assert "No space left on device" in str(info.value) and "w.duckdb" in str(info.value)
    assert snapshot(con) == before
    count("faults", "full disk: clear error, nothing written")


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MB tmpfs, when this user may mount one (root in a container); else skipped:
    the simulated full disk above then stands for it."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_a_real_full_disk_stops_ingest_with_a_clear_error_and_no_change(project, tiny_disk):
    wh = tiny_disk / "w.duckdb"
    con = connect(wh)
    before = fingerprint(con)
    con.close()
    code, out, err = _finish(_odeval(project, "ingest", "study_a", "-w", str(wh)))
    assert code == 2, err
    assert "Traceback" not in err and err.startswith("error: ")
    assert "disk is full" in err and "warehouse.disk_full" in err
    assert _open_fingerprint(wh) == before
    count("faults", "real full disk (tmpfs): clear error, warehouse unchanged")


# ------------------------------------------------------------------ a killed `odeval run`

RUN_KILL_POINTS = int(os.environ.get("ODEVAL_RUN_KILL_POINTS", "4"))


def test_a_killed_run_leaves_a_warehouse_that_later_commands_use_consistently_or_refuse(
        project, tmp_path):
    """``odeval run`` commits stage by stage, so a SIGKILL can leave raw holding study B
    while clean, derived and results hold study A. Every stage's build record
    (pipeline.runstate) is committed with its tables, so the next ``odeval report`` either
    finds every stage built from what the warehouse holds (and writes the report) or stops
    with one line naming the stage to rerun (rule run.stale); the next ``odeval run``
    completes."""
    import duckdb as _duckdb

    from pipeline import runstate

    good = tmp_path / "good.duckdb"
    code, _, err = _finish(_odeval(project, "run", "study_a", "-w", str(good)))
    assert code == 0, err
    t0 = time.monotonic()
    probe = tmp_path / "probe.duckdb"
    shutil.copy(good, probe)
    code, _, err = _finish(_odeval(project, "run", "study_b", "-w", str(probe)))
    assert code == 0, err
    duration = time.monotonic() - t0
    rng = random.Random(f"{SEED}-run")
    seen = []
    for point in range(RUN_KILL_POINTS):
        wh = tmp_path / f"run{point}.duckdb"
        shutil.copy(good, wh)
        delay = rng.uniform(0.15, 1.0) * duration
        how = _kill_at(project, ["run", "study_b"], wh, delay)
        con = _duckdb.connect(str(wh))  # replays or drops the WAL, as the next command does
        found = runstate.problem(con, ["metrics", "analyse"])
        loads = {Path(r[0]).parent.name for r in con.execute(
            "select source_file from meta.loads").fetchall()}
        con.close()
        code, _, err = _finish(_odeval(project, "report", "-w", str(wh), "--out",
                                       str(tmp_path / f"out{point}")))
        if found is None:
            assert code == 0, err  # every stage built from one study: the report is written
            state = f"consistent ({', '.join(sorted(loads))})"
        else:
            line = " ".join(err.split())
            assert code == 2 and "[rule run.stale]" in line and \
                f"rerun from {found[0]}" in line, err
            assert "Traceback" not in err
            state = f"refused, rerun from {found[0]}"
        seen.append((round(delay, 1), how, state))
        count("kill run", f"{how}, then report: {state.split(' (')[0].split(',')[0]}")
        code, _, err = _finish(_odeval(project, "run", "study_b", "-w", str(wh)))
        assert code == 0, err
        count("kill run", "next run completed")
    print(f"\nkill points for odeval run ({duration:.1f}s uninterrupted): {seen}")
    assert any(how == "killed" for _, how, _ in seen), "no kill landed inside the run"
