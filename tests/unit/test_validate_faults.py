"""Validation scored against the generator: every injected fault caught by its rule,
no fault-free row quarantined (recall and precision both 1.0), and great-expectations
agreeing with the SQL rules, rule by rule, on the same dirty study (whole, and on a
sample), and stopping validate when they do not."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline import runstate
from pipeline.errors import OdevalError
from pipeline.ge_suites import Spec, install_duckdb_shim, sample_for
from pipeline.ingest import ingest
from pipeline.schemas import load_contract
from pipeline.synth import generate_study
from pipeline import validate as validate_module
from pipeline.validate import compare_expectations, validate
from pipeline.warehouse import connect


@pytest.fixture(scope="module", params=["csv", "parquet"])
def dirty(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"dirty_{request.param}")
    people = 600 if request.param == "csv" else 300
    generate_study(tmp / "study", people=people, sites=4, seed=11, fmt=request.param, faults=0.04)
    con = connect(tmp / "w.duckdb")
    ingest(con, [tmp / "study"])
    report = validate(con, {"max_quarantine_share": 1.0})
    con.execute("create temp table faults as select \"table\" as tbl, "
                "cast(row_number as bigint) as rn, rule, expect "
                f"from read_csv('{tmp / 'study' / 'faults.csv'}', all_varchar = true)")
    con.execute("create temp table quarantined as " + " union all ".join(
        f"select '{t}' as tbl, _row_number as rn, _rules from quarantine.{t}"
        for t in report.tables))
    yield con, report
    con.close()


def test_the_study_has_faults_of_every_kind(dirty):
    con, _ = dirty
    kinds = {r[0] for r in con.execute(
        "select distinct split_part(rule, '.', -1) from faults where expect = 'quarantine'"
    ).fetchall()}
    assert {"type", "required", "vocabulary", "range", "not_before", "reference", "duplicate",
            "conflict", "person_quarantined", "after_extract"} <= kinds


def test_recall_every_fault_is_caught_by_the_rule_named_for_it(dirty):
    con, _ = dirty
    n, missed = con.execute("""
        select count(*), count(*) filter (where q._rules is null or not list_contains(q._rules, f.rule))
        from faults as f left join quarantined as q using (tbl, rn)
        where f.expect = 'quarantine'""").fetchone()
    assert n > 500 and missed == 0


def test_precision_no_row_without_a_fault_is_quarantined(dirty):
    con, _ = dirty
    extra = con.execute("""
        select q.tbl, q.rn, q._rules from quarantined as q
        where not exists (select 1 from faults as f
                          where f.tbl = q.tbl and f.rn = q.rn and f.expect = 'quarantine')
        limit 5""").fetchall()
    assert extra == []


def test_case_and_space_variants_are_accepted_and_normalised(dirty):
    con, _ = dirty
    n, quarantined = con.execute("""
        select count(*), count(q.rn) from faults as f left join quarantined as q using (tbl, rn)
        where f.expect = 'accept'""").fetchone()
    assert n > 10 and quarantined == 0


def test_great_expectations_agree_with_the_sql_rules(dirty):
    con, report = dirty
    disagree = [r for r in report.expectations if not r["agree"]]
    assert disagree == []
    failing = {r["rule_id"] for r in report.expectations if r["ge_unexpected"] > 0}
    assert len(failing) >= 20  # the comparison is made on rules that actually fire


def test_on_a_sample_both_counts_are_of_the_same_rows_and_agree(dirty):
    """Tables over great_expectations_sample_rows are checked on a hash sample of their
    key; the SQL rules are counted on exactly those rows, so the counts still compare."""
    con, report = dirty
    copy = dataclasses.replace(report)
    rows = compare_expectations(con, copy, {**validate_module.DEFAULTS,
                                            "great_expectations_sample_rows": 500})
    sampled = copy.expectations_sampled
    assert {"contacts", "contact_staff"} <= set(sampled)
    for table, s in sampled.items():
        assert 0 < s["sampled"] < s["rows"] == report.tables[table].n_raw
    assert [r for r in rows if not r["agree"]] == []
    on_sample = {r["rule_id"]: r["ge_unexpected"] for r in rows
                 if r["rule_id"].split(".")[0] in sampled}
    whole = {r["rule_id"]: r["ge_unexpected"] for r in report.expectations}
    assert sum(n > 0 for n in on_sample.values()) >= 10  # rules that fire on the sample too
    assert any(0 < on_sample[rule] < whole[rule] for rule in on_sample)  # a real subset
    # the sample is gone afterwards, and the views read the whole raw tables again
    assert con.execute("select count(*) from duckdb_databases() "
                       "where database_name = 'ge_input'").fetchone()[0] == 0
    assert con.execute("select count(*) from ge.contacts").fetchone()[0] == \
        report.tables["contacts"].n_raw


def test_a_sample_keeps_every_group_a_rule_compares_whole():
    tables = load_contract()
    assert sample_for(tables["contacts"], tables, 1000, 1000) is None
    assert sample_for(tables["contacts"], tables, 1001, 1000).columns == ("contact_id",)
    assert sample_for(tables["contacts"], tables, 2_390_792, 250_000).modulus == 10
    assert sample_for(tables["contact_staff"], tables, 10, 1).columns == ("contact_id", "staff_id")
    # people.person_id is referenced on its own (the ambiguous rule groups by it)
    assert sample_for(tables["people"], tables, 10, 1).columns == ("person_id",)


def test_a_disagreement_stops_validate_and_later_stages(tmp_path, monkeypatch):
    """A SQL rule that miscounts (here the contacts vocabulary rule left out) is caught by
    the cross-check: validate stops with one line naming the rule and both counts, and
    validate counts as failed, so derive refuses its clean tables."""
    generate_study(tmp_path / "study", people=150, sites=3, seed=5, fmt="parquet", faults=0.05)
    con = connect(tmp_path / "w.duckdb")
    ingest(con, [tmp_path / "study"])
    rules = validate_module.row_rules
    monkeypatch.setattr(validate_module, "row_rules", lambda table: [
        r for r in rules(table) if r.id != "contacts.contact_type.vocabulary"])
    with pytest.raises(OdevalError) as err:
        validate(con, {"max_quarantine_share": 1.0}, report_dir=tmp_path / "out")
    message = str(err.value)
    assert err.value.rule == "validate.cross_check" and "\n" not in message
    assert "contacts.contact_type.vocabulary: " in message and " and 0" in message
    assert "disagree on: contacts.contact_type.vocabulary" in (
        tmp_path / "out" / "data_quality.html").read_text()
    with pytest.raises(OdevalError, match="the last validate failed") as stale:
        runstate.require(con, ["validate"], command="derive")
    assert stale.value.rule == "run.stale"
    con.close()


def test_the_duckdb_shim_still_fits_great_expectations():
    """Fails loudly if an upgrade changes the GE internals the shim relies on."""
    import great_expectations as gx
    from great_expectations.execution_engine.sqlalchemy_execution_engine import (
        SqlAlchemyExecutionEngine,
    )

    assert gx.__version__ == "1.24.1"
    install_duckdb_shim()
    assert SqlAlchemyExecutionEngine.get_connection.__qualname__.endswith(
        "install_duckdb_shim.<locals>.get_connection")


def test_row_queries_are_great_expectations_own_expectation_asking_only_the_count():
    """The cross-table rules stay GE's UnexpectedRowsExpectation (its query, its count,
    its observed_value), but GE is not asked for example rows, a second run of the query."""
    from great_expectations.expectations import UnexpectedRowsExpectation

    built = Spec("t.c.reference", "UnexpectedRowsExpectation", (
        ("unexpected_rows_query", "select _load_id from {batch} where c is null"),)).build()
    assert isinstance(built, UnexpectedRowsExpectation)
    assert built.meta == {"rule": "t.c.reference"}
    assert built.metric_dependencies == ("unexpected_rows_query.row_count",)
    assert built._validate({"unexpected_rows_query.row_count": 3}) == {
        "success": False, "result": {"observed_value": 3}}


def test_column_expectations_are_great_expectations_own_without_the_unexpected_values():
    """Each map expectation is GE's class (its metrics, its _validate, its count), asked
    for every metric it asks for itself except the sample of unexpected values."""
    from great_expectations.expectations import ExpectColumnValuesToBeInSet

    built = Spec("t.c.vocabulary", "ExpectColumnValuesToBeInSet",
                 (("column", "c"), ("value_set", ["a", "b"]))).build()
    plain = ExpectColumnValuesToBeInSet(column="c", value_set=["a", "b"])
    assert isinstance(built, ExpectColumnValuesToBeInSet)
    basic = {"result_format": {"result_format": "BASIC", "partial_unexpected_count": 0}}
    ours = set(built.get_validation_dependencies(runtime_configuration=basic).get_metric_names())
    theirs = set(plain.get_validation_dependencies(runtime_configuration=basic).get_metric_names())
    assert theirs - ours == {"column_values.in_set.unexpected_values"} and ours < theirs


def test_importing_great_expectations_does_not_end_a_python_c_process():
    """pyspark (installed for the Spark engine) exits 0 on import of Spark Connect when
    __main__ has no file, and GE imports it: a `python -c` validate stopped silently."""
    import subprocess
    import sys

    code = ("from pipeline.ge_suites import import_gx, install_duckdb_shim; import_gx(); "
            "install_duckdb_shim(); print('still running')")
    # GE loads without pyspark (hidden meanwhile), which imports afterwards as before
    code += "; import sys; assert 'pyspark' not in sys.modules; import pyspark.sql"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "still running", proc.stderr[-2000:]
