"""Run state that cannot be mixed (issue 17): every stage records what it was built from
(``meta.builds``, :mod:`pipeline.runstate`), and every later command refuses a warehouse
whose stages were built from different upstream states, naming the stage to rerun.

The case that mixed data before: a good ``odeval run`` of study A, then ``odeval run`` of
study B refused by validate (quarantine share). Ingest had already replaced raw with B
while clean, derived and results still held A; ``export`` then wrote B's file hashes
beside A's rows and ``report`` named B in A's report. Now both stop with one line.
"""

from __future__ import annotations

import json

import duckdb
import pytest
import yaml
from typer.testing import CliRunner

from pipeline import runstate
from pipeline.cli import app
from tests.reliability.tally import count
from tests.studyshapes import one_line_error


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """Study A (clean), study B (so faulty that validate refuses it), a params file
    without the great-expectations cross-check (it is not what these tests are about)."""
    from pipeline.params import load_params
    from pipeline.synth import generate_study

    root = tmp_path_factory.mktemp("runstate")
    generate_study(root / "a", people=120, sites=2, seed=1, fmt="parquet")
    generate_study(root / "b", people=120, sites=2, seed=2, fmt="csv", faults=0.4)
    params = load_params()
    params["validate"]["great_expectations"] = False
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return root


def _cli(root, *args):
    res = CliRunner().invoke(app, [*args, "--params", str(root / "params.yaml")])
    return res.exit_code, res.output


def _raw_loads(wh) -> set[str]:
    con = duckdb.connect(str(wh), read_only=True)
    try:
        return {r[0] for r in con.execute("select source_file from meta.loads").fetchall()}
    finally:
        con.close()


def test_a_refused_run_after_a_good_one_makes_export_and_report_refuse(studies, tmp_path):
    root, wh = studies, tmp_path / "w.duckdb"
    code, out = _cli(root, "run", str(root / "a"), "-w", str(wh))
    assert code == 0, out
    code, out = _cli(root, "export", "--site", "S01", "--out", str(tmp_path / "bundle_a"),
                     "-w", str(wh))
    assert code == 0, out

    reports = tmp_path / "w_reports"
    assert (reports / "report.html").exists() and (reports / "metrics").is_dir()
    code, out = _cli(root, "run", str(root / "b"), "-w", str(wh))
    assert code == 2 and "validate.quarantine_share" in out, out
    assert all("/b/" in f for f in _raw_loads(wh))  # raw holds B, clean and derived A
    # the folder holds B's data-quality report (why it was refused) and no longer A's
    # report and metrics beside it (A's report linked to B's data-quality report)
    left = json.loads((reports / ".odeval-outputs.json").read_text())["commands"]
    assert set(left) == {"validate"}, left
    assert not (reports / "report.html").exists() and not (reports / "metrics").exists()
    assert "fatal" in json.loads((reports / "data_quality.json").read_text())
    assert "Withdrawn from" in out and "report.html" in out

    for args in (["export", "--site", "S01", "--out", str(tmp_path / "bundle_b")],
                 ["report"], ["metrics"], ["analyse"], ["derive"]):
        code, out = _cli(root, *args, "-w", str(wh))
        assert code == 2 and one_line_error(out), (args, out)
        line = " ".join(out.split())
        assert "[rule run.stale]" in line and "rerun from validate" in line, line
        assert "the last validate failed" in line or "its last run failed" in line, line
        count("run state", f"{args[0]} refused after a refused run")
    assert not (tmp_path / "bundle_b").exists()
    print("\nexport after the refused run:", " ".join(out.split()))

    # rerunning the good study makes every command work again, with A's loads
    code, out = _cli(root, "run", str(root / "a"), "-w", str(wh))
    assert code == 0, out
    assert runstate.problem(duckdb.connect(str(wh), read_only=True), ["metrics", "analyse"]) \
        is None
    code, out = _cli(root, "export", "--site", "S01", "--out", str(tmp_path / "bundle_a2"),
                     "-w", str(wh))
    assert code == 0, out
    m1 = json.loads((tmp_path / "bundle_a" / "manifest.json").read_text())
    m2 = json.loads((tmp_path / "bundle_a2" / "manifest.json").read_text())
    assert m1["inputs"] == m2["inputs"]


def test_ingest_since_validate_makes_the_later_stages_refuse_until_validate_reruns(
        studies, tmp_path):
    root, wh = studies, tmp_path / "w.duckdb"
    assert _cli(root, "ingest", str(root / "a"), "-w", str(wh))[0] == 0
    code, out = _cli(root, "derive", "-w", str(wh))
    assert code == 2 and "rerun from validate" in out and "validate has not run" in out, out
    assert _cli(root, "validate", "-w", str(wh))[0] == 0
    assert _cli(root, "derive", "-w", str(wh))[0] == 0
    assert _cli(root, "ingest", str(root / "b"), "-w", str(wh))[0] == 0  # appended
    code, out = _cli(root, "metrics", "-w", str(wh))
    line = " ".join(out.split())
    assert code == 2 and "validate was built from other loads than the warehouse holds now " \
        "(ingest ran since); rerun from validate" in line, line


def test_the_same_inputs_and_parameters_give_the_same_build_ids(studies, tmp_path):
    root = studies
    ids = []
    for name in ("w1", "w2"):
        wh = tmp_path / f"{name}.duckdb"
        assert _cli(root, "run", str(root / "a"), "-w", str(wh))[0] == 0
        con = duckdb.connect(str(wh), read_only=True)
        ids.append({s: b["build_id"] for s, b in runstate.builds(con).items()})
        con.close()
    assert ids[0] == ids[1] and set(ids[0]) == set(runstate.STAGES)


def test_analyse_reads_the_metrics_stage_only_while_it_is_current(studies, tmp_path,
                                                                  monkeypatch):
    """``odeval analyse`` alone reads the metrics stage's tables instead of computing every
    metric again, and only while that stage is current: after metrics ran with other
    parameters, or derive ran since with other parameters, it computes them."""
    from pipeline import metrics

    root, wh = studies, tmp_path / "w.duckdb"
    assert _cli(root, "run", str(root / "a"), "-w", str(wh))[0] == 0
    con = duckdb.connect(str(wh), read_only=True)
    before = con.execute("select * from results.analysis_estimates").df()
    con.close()
    real, computed = metrics.compute, []
    monkeypatch.setattr(metrics, "compute", lambda *a, **k: computed.append(1) or real(*a, **k))
    code, out = _cli(root, "analyse", "-w", str(wh))
    assert code == 0 and computed == [], out
    con = duckdb.connect(str(wh), read_only=True)
    assert con.execute("select * from results.analysis_estimates").df().equals(before)
    con.close()

    params = yaml.safe_load((root / "params.yaml").read_text())
    params["metrics"]["landmark_days"] = 180
    other = tmp_path / "other"
    other.mkdir()
    (other / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    assert _cli(other, "metrics", "-w", str(wh))[0] == 0   # landmark 180 now
    computed.clear()
    code, out = _cli(root, "analyse", "-w", str(wh))   # landmark 365: not current
    assert code == 0 and computed == [1], out
    assert _cli(root, "metrics", "-w", str(wh))[0] == 0
    params["metrics"]["landmark_days"] = 365
    params["derive"]["rtw_window_days"] = 60
    (other / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    assert _cli(other, "derive", "-w", str(wh))[0] == 0   # another derive since metrics
    computed.clear()
    code, out = _cli(root, "analyse", "-w", str(wh))
    assert code == 0 and computed == [1], out


def test_a_failed_command_leaves_no_warehouse_it_created(studies, tmp_path):
    """Issue 17: a failed ingest, or an analyse on a new path, left an empty warehouse."""
    bad = tmp_path / "bad"
    bad.mkdir()  # an extract folder without the contract's files
    wh = tmp_path / "new" / "w.duckdb"
    code, out = _cli(studies, "ingest", str(bad), "-w", str(wh))
    assert code == 2 and "[rule ingest.table_missing]" in " ".join(out.split()), out
    code, out = _cli(studies, "analyse", "-w", str(wh))
    assert code == 2 and "[rule run.stale]" in " ".join(out.split()), out
    assert not (tmp_path / "new").exists()
    # a warehouse that existed before stays, whatever fails
    assert _cli(studies, "ingest", str(studies / "a"), "-w", str(wh))[0] == 0
    code, _ = _cli(studies, "ingest", str(bad), "-w", str(wh))
    assert code == 2 and wh.exists()


def test_two_studies_write_their_outputs_beside_their_own_warehouses(studies, tmp_path):
    """Issue 17: a second study's run wrote reports/ over the first study's, whatever
    --warehouse said. Each now writes beside its warehouse; pointing the second at the
    first's folder is refused before anything runs."""
    root = studies
    a, b = tmp_path / "a.duckdb", tmp_path / "trial_b.duckdb"
    assert _cli(root, "run", str(root / "a"), "-w", str(a))[0] == 0
    report_a = (tmp_path / "a_reports" / "report.html").read_bytes()
    assert _cli(root, "run", str(root / "a"), "-w", str(b))[0] == 0
    assert (tmp_path / "trial_b_reports" / "report.html").exists()
    assert (tmp_path / "a_reports" / "report.html").read_bytes() == report_a
    code, out = _cli(root, "run", str(root / "a"), "-w", str(b), "--out",
                     str(tmp_path / "a_reports"))
    line = " ".join(out.split())
    assert code == 2 and "[rule output.other_study]" in line and "a.duckdb" in line, line
    assert (tmp_path / "a_reports" / "report.html").read_bytes() == report_a
