"""pipeline.metrics.read_persons: the person frame DuckDB's ``.df()`` would give (values,
dtypes, missing values, order, columns), with each text column's equal values one object."""

from __future__ import annotations

import duckdb
import pandas as pd

from pipeline import metrics


ODD = '"odd ""name"""'   # a quoted column name


def _con(n=2000):
    con = duckdb.connect()
    con.execute(f"""
        create temporary table person_outcomes as
        select 'P' || lpad(cast((i * 7919) % {n} as varchar), 6, '0') as person_id,
               'S' || cast(i % 5 as varchar) as site_id,
               case when i % 3 = 0 then 'open_dialogue' else 'usual_care' end as arm,
               case when i % 11 = 0 then null else 'c' || cast(i % 40 as varchar) end as cluster_id,
               i % 97 as relapse_time,
               case when i % 13 = 0 then null else i % 2 end as rtw_2y,
               case when i % 17 = 0 then null else i % 2 = 0 end as ap_any_use,
               cast(i as integer) as age_at_index,
               i / 3.0 as person_years,
               case when i % 19 = 0 then null when i % 2 = 0 then 'x"y' else '' end as {ODD}
        from range({n}) t(i)""")
    return con


def test_read_persons_is_the_frame_duckdb_gives_with_shared_strings():
    con = _con()
    got = metrics.read_persons(con)
    want = con.execute("select * from person_outcomes order by person_id").df()
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert list(got.dtypes) == list(want.dtypes) and list(got.columns) == list(want.columns)
    for c in ("site_id", "arm", "cluster_id", 'odd "name"'):
        values = got[c].to_numpy()
        assert all(v is None or isinstance(v, str) for v in values)
        # one object per distinct value (None included); .df() gives one per row
        assert len({id(v) for v in values}) == got[c].nunique(dropna=False)
        assert len({id(v) for v in want[c].to_numpy() if v is not None}) > 100
