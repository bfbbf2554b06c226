"""End to end: the CLI and ``dvc repro`` on a small synthetic study, in a copy of the project.

The copy (``ODEVAL_PROJECT_ROOT``) keeps the runs from writing into the repository's own
data/ and reports/. Each command runs in a subprocess, as a user would run it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml

from pipeline.config import PROJ_ROOT

BIN = Path(sys.executable).parent
OUTCOMES = {"relapse": "relapse", "involuntary_admission": "involuntary_admission",
            "first_admission": "first_admission", "first_crisis": "first_crisis",
            "return_to_work": "rtw", "death": "death"}


def _copy_project(dest: Path, **synth) -> Path:
    """The files a run reads (params, dvc.yaml, schemas, pipeline) in a fresh folder."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        if (PROJ_ROOT / name).exists():
            shutil.copy2(PROJ_ROOT / name, dest / name)
    for name in ("schemas", "pipeline"):
        shutil.copytree(PROJ_ROOT / name, dest / name,
                        ignore=shutil.ignore_patterns("__pycache__", ".*"))
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["synth"].update(synth)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dest


def _run(args: list[str], root: Path, check: bool = True) -> subprocess.CompletedProcess:
    # the environment's bin/ first on PATH, as `uv run` does: dvc.yaml's commands call `odeval`
    env = {**os.environ, "ODEVAL_PROJECT_ROOT": str(root), "COLUMNS": "200",
           "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")])}
    proc = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def study_run(tmp_path_factory):
    """synth + run on a 500-person, 4-site CSV study; returns the project copy."""
    root = _copy_project(tmp_path_factory.mktemp("project"))
    _run([str(BIN / "odeval"), "synth", "data/raw/s", "--people", "500", "--sites", "4",
          "--seed", "7", "--format", "csv"], root)
    _run([str(BIN / "odeval"), "run", "data/raw/s"], root)
    return root


def test_derived_outcomes_equal_the_generators_simulated_ones_exactly(study_run):
    """Issue 5's planted-truth test: every person, every outcome, exactly."""
    con = duckdb.connect(str(study_run / "data" / "warehouse.duckdb"), read_only=True)
    assert_planted_truth(con, study_run / "data" / "raw" / "s" / "truth_people.parquet", 500)


def assert_planted_truth(con: duckdb.DuckDBPyConnection, truth_file: Path, people: int) -> None:
    """The derived outcomes of the warehouse equal the generator's for every person."""
    truth = str(truth_file)
    n = con.execute(f"select count(*) from '{truth}'").fetchone()[0]
    assert n == people
    for outcome, col in OUTCOMES.items():
        mismatched = con.execute(f"""
            select count(*) from '{truth}' as t
            left join derived.time_to_event as d on d.person_id = t.person_id and d.outcome = $o
            where d.time_days is distinct from t.{col}_time or d.event is distinct from t.{col}_event
        """, {"o": outcome}).fetchone()[0]
        assert mismatched == 0, outcome
    for query in (
        "select count(*) from '{t}' as t left join derived.people as p using (person_id) "
        "where p.fu_end_day is distinct from t.fu_end_day or p.end_reason is distinct from t.end_reason",
        "select count(*) from '{t}' as t left join derived.recurrent as r using (person_id) "
        "where r.relapse_count is distinct from t.relapse_count "
        "or r.involuntary_count is distinct from t.involuntary_count "
        "or r.place_of_safety_count is distinct from t.place_of_safety_count "
        "or r.holding_power_count is distinct from t.holding_power_count "
        "or r.days_detained is distinct from t.days_detained "
        "or r.bed_days is distinct from t.bed_days",
        "select count(*) from '{t}' as t left join derived.activity as a using (person_id) "
        "where a.rtw_2y is distinct from t.rtw_2y",
    ):
        assert con.execute(query.format(t=truth)).fetchone()[0] == 0, query


def test_run_accounts_for_every_row_and_writes_the_dq_report(study_run):
    con = duckdb.connect(str(study_run / "data" / "warehouse.duckdb"), read_only=True)
    assert con.execute("select count(*) from meta.validation_counts "
                       "where n_raw <> n_clean + n_quarantined").fetchone()[0] == 0
    assert con.execute("select sum(n_quarantined) from meta.validation_counts").fetchone()[0] == 0
    assert con.execute("select count(*) from results.dq_expectations where not agree"
                       ).fetchone()[0] == 0
    assert (study_run / "reports" / "data_quality.html").stat().st_size > 1000


def test_fatal_error_is_one_line_without_traceback(study_run, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(study_run / "data" / "raw" / "s", bad)
    (bad / "staff.csv").unlink()
    proc = _run([str(BIN / "odeval"), "ingest", str(bad), "-w", str(tmp_path / "w.duckdb")],
                study_run, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "missing staff.csv" in proc.stderr and "[rule ingest.table_missing]" in proc.stderr


def test_a_piped_log_is_not_cut_to_80_columns(study_run, tmp_path):
    """``make demo > demo.log``: rich draws for 80 columns when it is not a terminal, which
    cut the analyse table's cells to "antipsychotic…"; a log now gets room for them."""
    wh = tmp_path / "w.duckdb"
    shutil.copy2(study_run / "data" / "warehouse.duckdb", wh)
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["ODEVAL_PROJECT_ROOT"] = str(study_run)
    proc = subprocess.run([str(BIN / "odeval"), "analyse", "-w", str(wh)], cwd=study_run,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "antipsychotic_last_days" in proc.stdout and "…" not in proc.stdout


def test_dvc_repro_runs_the_graph_then_does_nothing(tmp_path):
    """As on a fresh clone: the repository's .gitignore and .dvc/ in a new git repository
    (DVC refuses to write a dvc.lock that git ignores)."""
    root = _copy_project(tmp_path / "project", people=300, sites=3)
    shutil.copy2(PROJ_ROOT / ".gitignore", root / ".gitignore")
    (root / ".dvc").mkdir()
    for name in ("config", ".gitignore"):
        shutil.copy2(PROJ_ROOT / ".dvc" / name, root / ".dvc" / name)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    first = _run([str(BIN / "dvc"), "repro"], root)
    for stage in ("synth", "ingest", "validate", "derive"):
        assert f"Running stage '{stage}'" in first.stdout
    second = _run([str(BIN / "dvc"), "repro"], root)
    assert "Running stage" not in second.stdout
    assert "Data and pipelines are up to date." in second.stdout


def test_help_shows_the_defaults_written_for_people(tmp_path):
    """Defaults given as text survive rich's markup (a hand-written "[default: ...]" did not)."""
    help_text = " ".join(_run([str(BIN / "odeval"), "ingest", "--help"], tmp_path).stdout.split())
    assert "[default: (params.yaml warehouse.path, else data/warehouse.duckdb)]" in help_text
    assert "[default: append]" in help_text


def _commands(group, prefix=()):
    """Every command path of the click tree: ("synth",), ("import", "mhsds"), ..."""
    for name, cmd in sorted(group.commands.items()):
        yield (*prefix, name)
        if getattr(cmd, "commands", None):  # a group (typer's is not a click.Group)
            yield from _commands(cmd, (*prefix, name))


def test_every_help_names_arguments_plainly_and_gives_flags_no_type():
    """``--help <bool>``, ``<list[Path]>`` and a usage line with ``{out_dir}`` were what
    typer printed; each command's help (the group's too) now reads as people type it."""
    import re

    import typer
    from typer.testing import CliRunner

    from pipeline.cli import app

    paths = [(), *_commands(typer.main.get_command(app))]
    assert ("synth",) in paths and ("import", "mhsds") in paths
    for path in paths:
        res = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0, (path, res.output)
        text = res.output
        assert "<bool>" not in text and "<list[" not in text, (path, text)
        assert not re.search(r"\{[a-z_]+\}", text), (path, text)
        usage = next(ln for ln in text.splitlines() if "Usage:" in ln)
        assert not re.search(r"\b[a-z_]+\.\.\.|\[[a-z_]+\]", usage.split("[OPTIONS]")[-1]), usage
    synth = CliRunner().invoke(app, ["synth", "--help"], env={"COLUMNS": "200"}).output
    assert "odeval synth [OPTIONS] OUT_DIR" in synth
    ingest = CliRunner().invoke(app, ["ingest", "--help"], env={"COLUMNS": "200"}).output
    assert "odeval ingest [OPTIONS] DIRS..." in ingest and "DIRS...      <path>" in ingest
