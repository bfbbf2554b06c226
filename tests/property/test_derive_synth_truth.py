"""The derive SQL reproduces the synthetic study's planted per-person truth exactly, and so
does the metrics stage's person_outcomes, which the metrics and analyses read.

pipeline.synth writes, beside the tables, ``truth_people.parquet``: what the default
outcome definitions must give for every person (follow-up end and reason, time and event
of each time-to-event outcome, rtw_2y, relapse and involuntary counts). Without injected
faults every row is clean, so the tables go straight into ``clean.*``.
"""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from pipeline.derive import derive
from pipeline.schemas import load_contract
from pipeline.synth.generate import generate_study

OUTCOME_COLUMNS = {"relapse": "relapse", "involuntary_admission": "involuntary_admission",
                   "first_admission": "first_admission", "first_crisis": "first_crisis",
                   "return_to_work": "rtw", "death": "death"}


@pytest.mark.parametrize(("seed", "design"), [(3, "cluster"), (4, "individual")])
def test_derive_reproduces_the_planted_truth(tmp_path, seed, design):
    generate_study(tmp_path, people=1500, sites=4, seed=seed, design=design)
    con = duckdb.connect()
    con.execute("create schema clean")
    for name, table in load_contract().items():
        cols = ", ".join(f'cast("{c.name}" as {c.duckdb_type}) as "{c.name}"'
                         for c in table.columns)
        extra = ", cast(null as map(varchar, varchar)) as _extra" if table.keep_extra else ""
        path = tmp_path / f"{name}.parquet"
        if table.optional and not path.exists():  # clusters: the cluster design only
            empty = ", ".join(f'cast(null as {c.duckdb_type}) as "{c.name}"' for c in table.columns)
            con.execute(f"create table clean.{name} as select {empty}, '' as _load_id, "
                        f"cast(0 as bigint) as _row_number{extra} limit 0")
            continue
        con.execute(f"create table clean.{name} as select {cols}, 'synth' as _load_id, "
                    f"cast(0 as bigint) as _row_number{extra} from read_parquet(?)", [str(path)])
    derive(con)

    from pipeline.synth.simulate import LATENT_TRUTH

    truth = (pd.read_parquet(tmp_path / "truth_people.parquet").set_index("person_id")
             .drop(columns=list(LATENT_TRUTH)))   # not in the records, by design
    got = con.sql("""
        select p.person_id, p.site_id, p.arm, p.fu_end_day, p.end_reason,
               a.rtw_2y, r.relapse_count, r.involuntary_count, r.place_of_safety_count,
               r.holding_power_count, r.days_detained, r.bed_days
        from derived.people as p
        join derived.activity as a using (person_id)
        join derived.recurrent as r using (person_id)
    """).df().set_index("person_id")
    tte = con.sql("select person_id, outcome, time_days, event "
                  "from derived.time_to_event").df()
    for outcome, prefix in OUTCOME_COLUMNS.items():
        one = tte[tte.outcome == outcome].set_index("person_id")
        got[f"{prefix}_time"] = one["time_days"]
        got[f"{prefix}_event"] = one["event"]

    assert sorted(got.index) == sorted(truth.index)
    assert len(truth) == 1500
    assert set(truth.columns) <= set(got.columns)
    got = got.loc[truth.index]
    for column in truth.columns:
        expected = [None if pd.isna(v) else v for v in truth[column].tolist()]
        actual = [None if pd.isna(v) else v for v in got[column].tolist()]
        bad = [(pid, e, a) for pid, e, a in zip(truth.index, expected, actual, strict=True)
               if e != a]
        assert not bad, f"{column}: {len(bad)} people differ, e.g. {bad[:3]}"
    # what the metrics and analyses read (metrics' person_outcomes) is the same truth
    from pipeline import metrics

    metrics.build_temp_tables(con, metrics.resolve_params(None), ("person_outcomes",))
    po = con.sql("select * from person_outcomes").df().set_index("person_id").loc[truth.index]
    for column, own in {"relapse_time": "relapse_time", "relapse_event": "relapse_event",
                        "involuntary_admission_time": "involuntary_time",
                        "involuntary_admission_event": "involuntary_event",
                        "first_admission_time": "admission_time",
                        "first_admission_event": "admission_event", "rtw_time": "rtw_time",
                        "rtw_event": "rtw_event", "rtw_2y": "rtw_2y"}.items():
        expected = [None if pd.isna(v) else v for v in truth[column].tolist()]
        actual = [None if pd.isna(v) else v for v in po[own].tolist()]
        assert expected == actual, f"person_outcomes.{own} is not the truth's {column}"
    # the study is not degenerate: every kind of event occurs
    assert {0, 1, 2} <= set(truth["relapse_event"])
    assert truth["rtw_2y"].notna().any() and truth["involuntary_count"].gt(0).any()
    assert truth["place_of_safety_count"].gt(0).any() and truth["holding_power_count"].gt(0).any()
