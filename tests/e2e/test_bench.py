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
