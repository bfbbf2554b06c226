"""`odeval bench` on a tiny study: every requested step runs and lands in the results.

No timing is asserted (timings are never tested); what is checked is that each step ran
to exit 0, the ratios docs/performance.md reports are computed from them, and the markdown names
them.
"""

from __future__ import annotations

import json

from pipeline.bench import run_bench


def test_bench_runs_each_step_and_writes_the_ratios(tmp_path):
    params = {"bench": {"seed": 7, "sizes": {"tiny": {"people": 60, "sites": 2}}}}
    steps = ["floor", "ingest", "validate", "derive", "validate_sql"]
    r = run_bench("tiny", stages=steps, params=params, data_dir=tmp_path / "data",
                  out_dir=tmp_path / "out", log=lambda _: None)
    assert {k: v["exit_code"] for k, v in r["steps"].items()} == dict.fromkeys(steps, 0)
    sm = r["summary"]
    walls = {k: r["steps"][k]["wall_s"] for k in steps}
    assert sm["ingest_validate_derive_s"] == round(
        walls["ingest"] + walls["validate"] + walls["derive"], 2)
    assert sm["ingest_validate_sql_derive_s"] == round(
        walls["ingest"] + walls["validate_sql"] + walls["derive"], 2)
    assert json.loads((tmp_path / "out" / "tiny.json").read_text())["summary"] == sm
    logs = tmp_path / "data" / "tiny" / "logs"
    assert "great-expectations cross-check" in (logs / "validate.log").read_text()
    assert "great-expectations" not in (logs / "validate_sql.log").read_text()
    md = (tmp_path / "out" / "tiny.md").read_text()
    assert "validate again without its great-expectations cross-check" in md
    assert "the same with validate's SQL rules alone" in md


def test_a_baseline_commit_runs_beside_ours_in_the_same_bench_run(tmp_path):
    """--baseline: each stage of the older commit runs right after ours on the same study,
    and the table gives ours over the baseline's."""
    import subprocess

    from pipeline.config import PROJ_ROOT

    params = {"bench": {"seed": 7, "sizes": {"tiny": {"people": 60, "sites": 2}}}}
    try:
        r = run_bench("tiny", stages=["ingest"], params=params, data_dir=tmp_path / "data",
                      out_dir=tmp_path / "out", log=lambda _: None, baseline="HEAD")
        tree = tmp_path / "data" / "baseline" / r["baseline"]["commit"]
        assert (tree / "pipeline" / "bench.py").exists()
    finally:   # the worktree removed, not only pruned: pytest keeps its folder a while,
        # and prune alone left it registered in this repository until then
        for made in (tmp_path / "data" / "baseline").glob("*"):
            subprocess.run(["git", "worktree", "remove", "--force", str(made)], cwd=PROJ_ROOT,
                           capture_output=True)
        subprocess.run(["git", "worktree", "prune"], cwd=PROJ_ROOT, capture_output=True)
    assert {k: v["exit_code"] for k, v in r["steps"].items()} == {"ingest": 0,
                                                                   "ingest@baseline": 0}
    md = (tmp_path / "out" / "tiny.md").read_text()
    assert f"Baseline: commit {r['baseline']['commit']} (HEAD)" in md
    row = next(ln for ln in md.splitlines() if ln.startswith("| ingest |"))
    b, m = r["steps"]["ingest@baseline"], r["steps"]["ingest"]
    assert f"{m['wall_s'] / b['wall_s']:.2f}, {m['cpu_s'] / b['cpu_s']:.2f}" in row
    # the baseline's own warehouse, not ours
    assert (tmp_path / "data" / "tiny" / "baseline.duckdb").exists()


def test_a_baseline_that_is_not_a_commit_is_one_line(tmp_path):
    import pytest

    from pipeline.errors import OdevalError

    with pytest.raises(OdevalError, match="not a commit"):
        run_bench("tiny", stages=["ingest"], params={"bench": {"sizes": {"tiny": {
            "people": 60, "sites": 2}}}}, data_dir=tmp_path / "data", out_dir=tmp_path / "out",
            log=lambda _: None, baseline="no-such-ref-xyz")
