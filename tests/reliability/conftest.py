"""Reliability tests: bad input, faults (kills, full disk, unwritable output), concurrency.

The fuzz and fault tests are bounded (fixed example counts, derandomised hypothesis) so
that the whole folder runs in well under 3 minutes on 2 cores. Set
``HYPOTHESIS_PROFILE=explore`` (and ``ODEVAL_KILL_POINTS=N``) to try more and other inputs.
At the end of the run the counts (inputs tried, kill points, recovered) are printed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.conftest import snapshot  # noqa: F401  (re-exported for the reliability tests)

settings.register_profile(
    "reliability-ci", derandomize=True, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.data_too_large, HealthCheck.large_base_example])
settings.register_profile(
    "explore", parent=settings.get_profile("reliability-ci"), derandomize=False)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "reliability-ci")
#: The console script, run as an analyst runs it.
ODEVAL = Path(sys.executable).parent / "odeval"


def fingerprint(con, *, stable: bool = False) -> dict[str, tuple[int, int]]:
    """Every table's row count and order-free content hash (sum of row hashes).

    ``stable``: leave out what differs between two identical runs (load timestamps).
    """
    out = {}
    for schema, table in con.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_catalog = current_database() order by 1, 2").fetchall():
        cols = "* exclude (loaded_at)" if stable and (schema, table) == ("meta", "loads") else "*"
        out[f"{schema}.{table}"] = con.execute(
            f'select count(*), sum(hash(t)) from (select {cols} from "{schema}"."{table}") t'
        ).fetchone()
    return out



@pytest.fixture
def isolated_outputs(tmp_path, monkeypatch):
    """Stage stamps and reports written by the CLI go to tmp, not the shared tree."""
    import pipeline.config as config

    monkeypatch.setattr(config, "DATA_DIR", tmp_path / "data")
    monkeypatch.setattr(config, "REPORTS_DIR", tmp_path / "reports")
    return tmp_path
