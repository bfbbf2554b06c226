"""The lazy polars derive that `odeval bench` races against agrees with the product.

As for the pandas peer (test_bench_pandas_agrees.py): on a small synthetic study without
faults every column the polars version computes equals ``derived.*`` row for row (floats
to 1e-12 relative), also after the round trip through Parquet that the bench's ``check``
step reads. The comparer itself is shown to catch each kind of wrong value, so that
"equal" cannot be a comparer that sees nothing. No timing is tested here.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import polars as pl
import pytest

from benchmarks import agreement, polars_derive
from pipeline.derive import resolve_params
from pipeline.params import load_params, section


@pytest.fixture(scope="module")
def relations(bench_study) -> dict[str, pl.DataFrame]:
    out, _ = bench_study
    return polars_derive.derive_all(out, resolve_params(section(load_params(), "derive")))


def _assert_equal(report: dict) -> None:
    for name, r in report["relations"].items():
        assert r["rows"][0] == r["rows"][1] > 0, name
        assert r["differences"] == {}, (name, r["differences"])
        assert r["not_compared"] == [], (name, r["not_compared"])
    assert report["equal"]


def test_polars_derive_equals_derived_tables(bench_study, relations):
    _, con = bench_study
    assert all(isinstance(df, pl.DataFrame) for df in relations.values())
    _assert_equal(agreement.compare(relations, con))


def test_equal_after_the_parquet_round_trip(bench_study, relations, tmp_path):
    """What ``polars_derive check`` compares: the files ``derive`` wrote, read back."""
    _, con = bench_study
    for name, df in relations.items():
        df.write_parquet(tmp_path / f"{name}.parquet")
    back = {n: pd.read_parquet(tmp_path / f"{n}.parquet") for n in agreement.RELATIONS}
    _assert_equal(agreement.compare(back, con))


def test_the_plans_are_lazy(bench_study):
    out, _ = bench_study
    plans = polars_derive.plans(out, resolve_params(section(load_params(), "derive")))
    assert tuple(plans) == agreement.RELATIONS
    assert all(isinstance(lf, pl.LazyFrame) for lf in plans.values())


def _first_where(df: pl.DataFrame, predicate: pl.Expr) -> int:
    return df.with_row_index("_i").filter(predicate)["_i"][0]


def _set(df: pl.DataFrame, i: int, col: str, value) -> pl.DataFrame:
    return df.with_columns(pl.when(pl.int_range(pl.len()) == i).then(pl.lit(value, df.schema[col]))
                           .otherwise(pl.col(col)).alias(col))


# Each deliberate fault: relation, column, what to do to one row; the comparer must report
# exactly that column with exactly one differing row.
FAULTS = {
    "count off by one": ("recurrent", "bed_days", pl.col("bed_days") > 0,
                         lambda v: v + 1),
    "boolean flipped": ("acute_episodes", "relapse", pl.lit(True), lambda v: not v),
    "date a day late": ("time_to_event", "event_date", pl.col("event_date").is_not_null(),
                        lambda v: v + dt.timedelta(days=1)),
    "value lost (null)": ("activity", "status_2y", pl.col("status_2y").is_not_null(),
                          lambda v: None),
    "null filled in": ("antipsychotic", "mean_daily_ddd", pl.col("mean_daily_ddd").is_null(),
                       lambda v: 0.0),
    "float off by 1e-9 relative": ("antipsychotic", "proportion_covered",
                                   pl.col("proportion_covered") > 0, lambda v: v * (1 + 1e-9)),
    "string changed": ("mha_episodes", "person_id", pl.lit(True), lambda v: v + "x"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_compare_catches_a_wrong_relation(bench_study, relations, fault):
    _, con = bench_study
    name, col, where, change = FAULTS[fault]
    df = relations[name]
    i = _first_where(df, where)
    wrong = {**relations, name: _set(df, i, col, change(df[col][i]))}
    report = agreement.compare(wrong, con)
    assert not report["equal"]
    bad = {k: r["differences"] for k, r in report["relations"].items() if r["differences"]}
    expected = "<keys>" if col in agreement.KEYS[name] else col
    assert bad == {name: {expected: 1}}


def test_compare_catches_a_missing_row_and_a_missing_column(bench_study, relations):
    _, con = bench_study
    report = agreement.compare({**relations, "people": relations["people"][1:]}, con)
    assert not report["equal"]
    assert report["relations"]["people"]["differences"] == {"<keys>": 1}
    report = agreement.compare({**relations, "activity": relations["activity"].drop("rtw_2y")}, con)
    assert not report["equal"]
    assert report["relations"]["activity"]["not_compared"] == ["rtw_2y"]


def test_bench_states_polars_beside_pandas():
    """The bench's summary and markdown carry the polars step as they carry pandas (figures
    made up: no timing is measured here)."""
    from pipeline.bench import markdown, settings, summarise

    assert settings(None)["polars_sizes"] == ["pilot", "trust", "national"]
    ok = {"exit_code": 0, "cpu_s": 1.0, "peak_rss_mb": 100.0}
    r = {"size": "trust", "people": 50_000, "sites": 10, "seed": 1, "started": "t",
         "machine": {"cpus": 2, "memory_gb": 1}, "warehouse_settings": {"threads": 2, "memory_limit": "3GB"},
         "steps": {"derive": {**ok, "wall_s": 2.0},
                   "derive_sql": {**ok, "wall_s": 2.5, "relations": {"time_to_event": {"wall_s": 0.5, "cpu_s": 0.25}}},
                   "pandas": {**ok, "wall_s": 3.0, "check": {"equal": True}, "inner": {"read_and_compute_s": 1.5}},
                   "polars": {**ok, "wall_s": 5.0, "check": {"equal": False},
                              "inner": {"read_and_compute_s": 1.0, "read_and_compute_cpu_s": 1.5}}}}
    sm = summarise(r)
    assert (sm["polars_over_derive"], sm["polars_equal"], sm["polars_compute_over_outcome_sql"]) == (2.5, False, 2.0)
    assert (sm["pandas_over_derive"], sm["pandas_equal"], sm["pandas_compute_over_outcome_sql"]) == (1.5, True, 3.0)
    r["summary"] = sm
    md = markdown(r)
    assert "| polars | 5.00 |" in md and "equal to ours: False" in md
    assert "- polars derive / our derive: **2.5x**, results equal: False (pandas: 1.5x)" in md
    assert sm["polars_compute_cpu_over_outcome_sql"] == 6.0 and "pandas_compute_cpu_s" not in sm
    assert ("polars read + compute 1.00 s / our SQL for them 0.50 s = **2.0x** (target >= 1x); "
            "CPU 1.50 s / 0.25 s = 6.0x") in md
    assert "pandas read + compute 1.50 s / our SQL for them 0.50 s = **3.0x**\n" in md


def test_the_ratio_on_the_same_relations_times_all_they_need():
    """``OUTCOME_RELATIONS`` (our SQL time the peers' read + compute is divided by) is every
    relation of pipeline/sql/derive/ that the peers' relations read, directly or not."""
    import re

    from pipeline.bench import OUTCOME_RELATIONS
    from pipeline.config import PROJ_ROOT
    from pipeline.derive import REFERENCES

    sql = {f.stem: f.read_text() for f in (PROJ_ROOT / "pipeline" / "sql" / "derive").glob("*.sql")}
    need, todo = set(), list(agreement.RELATIONS)
    while todo:
        name = todo.pop()
        if name in need or name in REFERENCES:
            continue
        need.add(name)
        todo += re.findall(r"derived\.(\w+)", sql[name])
    assert set(OUTCOME_RELATIONS) == need
