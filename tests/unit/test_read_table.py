"""Reading warehouse tables (pipeline.warehouse.read_table) and the data dictionary of the
derived tables generated from the SQL headers (pipeline.derive)."""

from __future__ import annotations

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from pipeline import derive
from pipeline.errors import OdevalError
from pipeline.warehouse import read_table


@pytest.fixture()
def con():
    c = duckdb.connect()
    c.execute("create schema derived")
    # rows stored out of key order; one column the SQL documents nowhere
    c.execute("""create table derived.time_to_event as select * from (values
        ('P2', 'S1', 'relapse', 30, 1, date '2024-02-01', 'x'),
        ('P1', 'S1', 'relapse', 700, 0, null, 'y'),
        ('P1', 'S1', 'death', 700, 0, null, 'z')
        ) t(person_id, site_id, outcome, time_days, event, event_date, undocumented)""")
    c.execute("create table derived.int_outcome_events as select 1 as event_day")
    yield c
    c.close()


def test_read_table_gives_pandas_polars_or_arrow_in_key_order(con, monkeypatch):
    monkeypatch.setattr(pl, "from_pandas", lambda *a, **k: pytest.fail("went through pandas"))
    df = read_table(con, "time_to_event")
    assert isinstance(df, pd.DataFrame)
    # the header's key is (person_id, outcome): sorted by it, not in storage order
    assert list(zip(df.person_id, df.outcome)) == [("P1", "death"), ("P1", "relapse"),
                                                   ("P2", "relapse")]
    fr = read_table(con, "derived.time_to_event", backend="polars")
    assert isinstance(fr, pl.DataFrame) and fr.schema["event_date"] == pl.Date
    pd.testing.assert_frame_equal(fr.drop("event_date").to_pandas(), df.drop(columns="event_date"),
                                  check_dtype=False)
    assert fr["event_date"].cast(pl.String).to_list() == [None, None, "2024-02-01"]
    at = read_table(con, "time_to_event", backend="arrow", columns=["event", "person_id"])
    assert isinstance(at, pa.Table) and at.column_names == ["event", "person_id"]
    assert at.column("person_id").to_pylist() == ["P1", "P1", "P2"]


def test_read_table_refuses_unknown_names_in_one_line(con):
    with pytest.raises(OdevalError, match=r"no table derived\.peple.*holds: int_outcome_events, "
                       r"time_to_event \[rule warehouse.table\]$"):
        read_table(con, "peple")
    with pytest.raises(OdevalError, match=r"no column\(s\) evnt; it has: person_id"):
        read_table(con, "time_to_event", columns=["evnt"])
    with pytest.raises(ValueError, match="backend"):
        read_table(con, "time_to_event", backend="spark")


def test_every_derive_sql_header_states_relation_grain_and_key():
    headers = derive.relation_headers()
    assert set(derive.OUTPUTS) <= set(headers)
    for stem, h in headers.items():
        assert h["relation"] == f"derived.{stem}", stem
        assert h["grain"].startswith("one row per"), stem
        assert h["key"] and all(k.isidentifier() for k in h["key"]), (stem, h["key"])
    assert headers["time_to_event"]["key"] == ["person_id", "outcome"]
    assert headers["int_mha_episode_records"]["key"] == ["source_id"]  # aside dropped


def test_data_dictionary_describes_columns_from_the_sql(con):
    d = derive.data_dictionary(con).set_index("column")
    assert set(d["table"]) == {"time_to_event"}  # int_* only when asked
    assert d.loc["time_days", "grain"].startswith("one row per person and outcome")
    assert d.loc["time_days", "key"] == "person_id, outcome"
    assert d.loc["time_days", "type"] == "INTEGER"
    assert d.loc["event", "description"].startswith("1 = the outcome happened")  # header
    assert d.loc["person_id", "description"] == "pseudonym"  # as derived.people says
    assert d.loc["undocumented", "description"] == ""
    full = derive.data_dictionary(con, intermediate=True)
    assert full.loc[full.table == "int_outcome_events", "description"].item() == "1 .. fu_end_day"
