"""A small synthetic study's warehouse, built once per test session (reused by e2e tests).

600 people in 5 sites, cluster-randomised like the demo (GP practices within sites), run
through every stage by calling the stage modules, so nothing is written into the
repository's data/ or reports/: the warehouse, the validation report and the report of
the study live in one temporary folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.params import load_params


@dataclass
class Study:
    root: Path          # the temporary folder
    raw: Path           # the synthetic extract (with truth.json)
    warehouse: Path     # DuckDB file holding every stage's tables
    reports: Path       # report.html, metrics.json, figures/, tables/, metrics/
    params: dict
    truth: dict


def build_study(root: Path, *, people: int = 600, sites: int = 5, seed: int = 20261125) -> Study:
    from pipeline import analyse, metrics, report
    from pipeline.derive import derive
    from pipeline.ingest import ingest
    from pipeline.params import section
    from pipeline.synth import generate_study
    from pipeline.validate import validate
    from pipeline.warehouse import connect

    params = load_params()
    raw, wh, reports = root / "raw", root / "warehouse.duckdb", root / "reports"
    generate_study(raw, people=people, sites=sites, seed=seed, fmt="parquet")
    con = connect(wh, threads=2)
    try:
        ingest(con, [raw], replace=True)
        validate(con, section(params, "validate"), report_dir=reports,
                 disclosure=section(params, "disclosure"))
        derive(con, section(params, "derive"))
        metrics.run(con, params, reports / "metrics")
        analyse.run(con, params)
        report.build(con, params, reports)
    finally:
        con.close()
    truth = json.loads((raw / "truth.json").read_text())
    return Study(root, raw, wh, reports, params, truth)


@pytest.fixture(scope="session")
def study(tmp_path_factory) -> Study:
    """The small synthetic study, every stage run, report written (read-only for tests:
    copy ``study.reports`` before changing anything in it)."""
    return build_study(tmp_path_factory.mktemp("study"))
