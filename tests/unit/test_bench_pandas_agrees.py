"""The pandas derive that `odeval bench` races against agrees with the product.

The benchmark is only honest if both compute the same thing: on a small synthetic study
(no faults, so validation quarantines nothing and the raw Parquet files are the clean
tables), every column the pandas version computes equals ``derived.*`` (floats to 1e-12
relative). No timing is tested here.
"""

from __future__ import annotations

from benchmarks import pandas_derive
from pipeline.derive import resolve_params
from pipeline.params import load_params, section


def test_pandas_derive_equals_derived_tables(bench_study):
    out, con = bench_study
    theirs = pandas_derive.derive_all(out, resolve_params(section(load_params(), "derive")))
    report = pandas_derive.compare(theirs, con)
    for name, r in report["relations"].items():
        assert r["rows"][0] == r["rows"][1] > 0, name
        assert r["differences"] == {}, (name, r["differences"])
        assert r["not_compared"] == [], (name, r["not_compared"])
    assert report["equal"]


def test_the_study_exercises_every_outcome(bench_study):
    """Agreement means something only if events of every kind occur."""
    _, con = bench_study
    kinds = dict(con.execute("select outcome, sum(case when event = 1 then 1 else 0 end) "
                             "from derived.time_to_event group by outcome").fetchall())
    assert all(kinds[o] > 0 for o in pandas_derive.OUTCOMES), kinds
    bed, detained, covered = con.execute(
        "select sum(r.bed_days), sum(r.days_detained), sum(a.covered_days) "
        "from derived.recurrent r join derived.antipsychotic a using (person_id)").fetchone()
    assert bed > 0 and detained > 0 and covered > 0


def test_compare_notices_a_difference(bench_study):
    out, con = bench_study
    theirs = pandas_derive.derive_all(out, resolve_params(section(load_params(), "derive")))
    df = theirs["recurrent"]
    df.loc[df.index[0], "bed_days"] += 1
    report = pandas_derive.compare(theirs, con)
    assert not report["equal"]
    assert report["relations"]["recurrent"]["differences"] == {"bed_days": 1}
