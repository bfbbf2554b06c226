"""pipeline.runstate: which stage a command's refusal names."""

from __future__ import annotations

import duckdb
import pytest

from pipeline import runstate
from pipeline.errors import OdevalError


@pytest.fixture()
def con():
    c = duckdb.connect()
    c.execute("create schema meta")
    c.execute("create table meta.loads (load_id varchar)")
    yield c
    c.close()


def test_the_refusal_names_the_first_stage_missing_in_run_order(con):
    """On an empty warehouse analyse must send the user to ingest, not to derive; after
    ingest, to validate (analyse reads derive, and so everything before it); the aside about an older odeval only when a later stage has a
    build record (as an odeval without records for the earlier one would leave)."""
    assert runstate.problem(con, ["derive"]) == ("ingest", "ingest has not run on this warehouse")
    runstate.record(con, "ingest")
    assert runstate.problem(con, ["derive"]) == ("validate", "validate has not run on this warehouse")
    with pytest.raises(OdevalError, match=r"rerun from validate \(`odeval validate`"):
        runstate.require(con, ["derive"], command="analyse")
    runstate.record(con, "validate")
    runstate.record(con, "derive")
    assert runstate.problem(con, ["derive"]) is None
    assert runstate.problem(con, ["analyse", "metrics"])[0] == "metrics"
    con.execute("delete from meta.builds where stage = 'validate'")
    stage, why = runstate.problem(con, ["derive"])
    assert stage == "validate" and "older than its build records" in why
