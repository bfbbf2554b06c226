"""Fixtures shared by unit-test modules."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def bench_study(tmp_path_factory) -> tuple[Path, object]:
    """The derive peers' study (``benchmarks/``): 400 people, 4 sites, no faults (so the
    raw Parquet files are the clean tables), ingested, validated and derived; ``(study
    folder, open warehouse connection)``. Read-only for the tests that share it."""
    from pipeline.derive import derive
    from pipeline.ingest import ingest
    from pipeline.params import load_params, section
    from pipeline.synth import generate_study
    from pipeline.validate import validate
    from pipeline.warehouse import connect

    root = tmp_path_factory.mktemp("bench_peers")
    out = root / "study"
    generate_study(out, people=400, sites=4, seed=7, fmt="parquet")
    con = connect(root / "wh.duckdb", threads=2)
    ingest(con, [out])
    report = validate(con, {"great_expectations": False})
    assert all(r.n_quarantined == 0 for r in report.tables.values())
    derive(con, section(load_params(), "derive"))
    yield out, con
    con.close()
