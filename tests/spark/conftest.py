"""Spark local-mode fixtures: one SparkSession and one small synthetic study per test session.

Every test here that starts Spark is marked ``spark`` (declared below, as ``--strict-markers``
needs); they run in ``make test``. Spark needs Java: ``.ci/run`` installs a JRE when
``java`` is missing, and a machine without one fails these tests with that message rather
than skipping them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

#: Study size: a few hundred people, faults injected so that every kind of rule fires.
STUDY = {"people": 300, "sites": 3, "seed": 5, "faults": 0.03}

#: Local mode, small: Spark's speed on a few thousand rows is all job overhead, so fewer
#: jobs (no adaptive re-planning) and no code generation; neither changes a result.
TEST_CONF = {
    "spark.driver.memory": "1g",
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.sql.adaptive.enabled": "false",
    "spark.sql.codegen.wholeStage": "false",
}


def pytest_configure(config):
    config.addinivalue_line("markers", "spark: runs Apache Spark in local mode (needs Java)")


@pytest.fixture(scope="session")
def spark():
    if shutil.which("java") is None:
        pytest.fail("Spark tests need Java (a JRE): apt-get install -y default-jre-headless")
    from pipeline.engines.spark import session

    s = session("local[2]", TEST_CONF)
    for k, v in TEST_CONF.items():  # a session started earlier in this process gets them too
        if k.startswith("spark.sql."):
            s.conf.set(k, v)
    yield s
    s.stop()


@pytest.fixture(scope="session")
def study(tmp_path_factory) -> Path:
    """A small synthetic study (Parquet, with injected faults and faults.csv)."""
    from pipeline.synth import generate_study

    out = tmp_path_factory.mktemp("spark_study") / "study"
    generate_study(out, people=STUDY["people"], sites=STUDY["sites"], seed=STUDY["seed"],
                   fmt="parquet", faults=STUDY["faults"])
    return out


@pytest.fixture(scope="session")
def duckdb_run(study, tmp_path_factory) -> Path:
    """The study through ingest, validate and derive in DuckDB: the warehouse file."""
    from pipeline.derive import derive
    from pipeline.ingest import ingest
    from pipeline.validate import validate
    from pipeline.warehouse import connect

    path = tmp_path_factory.mktemp("spark_duckdb") / "warehouse.duckdb"
    con = connect(path, threads=2)
    ingest(con, [study], replace=True)
    validate(con, {"great_expectations": False})
    derive(con, {})
    con.close()
    return path


@pytest.fixture(scope="session")
def spark_run(spark, study, tmp_path_factory) -> tuple[Path, dict]:
    """The study through the same stages on Spark: the Parquet folder and the summary."""
    from pipeline.engines.spark import run

    out = tmp_path_factory.mktemp("spark_out") / "spark"
    summary = run(spark, [study], out, {"validate": {}, "derive": {}})
    return out, summary
