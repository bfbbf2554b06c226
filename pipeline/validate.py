"""Stage 2, validate: every raw row ends in ``clean.<table>`` or ``quarantine.<table>``.

``quarantine.<table>`` is a table of the rows that broke a rule, with the rules each broke;
``clean.<table>`` is a view of the other raw rows of the validated loads
(:func:`clean_view`), so the warehouse holds each row once.

The rules are generated from ``schemas/``: each kind of rule is one SQL audit under
``pipeline/sql/validate/`` returning the rows that break it (see the README there), so a
rule and its check are one thing. Rule ids follow ``schemas/README.md``. Every rule is
evaluated on every raw row, so a quarantined row lists *all* the rules it broke.

Order matters only for cascades: tables are validated in contract order (people first,
contacts before contact_staff), so the events of a quarantined person, and the staff rows
of a quarantined contact, are quarantined with them.

Invariant, checked on every run for each table and load: raw rows = clean + quarantined.
A table whose quarantined share passes its threshold (``params.yaml``
``validate.max_quarantine_share``) is fatal: the run stops and the warehouse is left as it
was (the data-quality report is still written, to show why).

Then, unless ``validate.great_expectations`` is false, the great-expectations suites of
:mod:`pipeline.ge_suites` count every rule's rows a second time, independently (on a
deterministic sample for tables over ``validate.great_expectations_sample_rows``, with
the SQL rules counted on the same rows); any disagreement stops the run
(:func:`compare_expectations`). great-expectations is imported in a thread while the
SQL rules run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from pipeline.config import SQL_DIR
from pipeline.errors import OdevalError
from pipeline.ingest import _sql_str
from pipeline.schemas import Column, Table, load_contract
from pipeline.warehouse import quote_ident, transaction

SQL = SQL_DIR / "validate"

#: Cascades: a reference whose target, once quarantined, takes the referring row with it.
CASCADES = {("people", "person_id"): "person_quarantined",
            ("contacts", "contact_id"): "contact_quarantined"}

DEFAULTS: dict[str, Any] = {
    "extract_date": None,              # null: the latest people.data_end_date not after the load date
    "after_data_end_tolerance_days": 7,
    "max_quarantine_share": 0.25,      # a number, or {default: .., <table>: ..}
    "examples_per_rule": 3,
    "great_expectations": True,
    # GE cross-checks tables up to this many raw rows whole; a larger one on a deterministic
    # sample of about this many rows (its key hashed), the SQL rules counted on the same rows
    "great_expectations_sample_rows": 250_000,
}


@dataclass(frozen=True)
class Rule:
    """One rule instance: what it checks, where, and its SQL audit."""

    id: str
    table: str
    column: str | None
    kind: str
    category: str
    message: str
    template: str
    identifiers: tuple[tuple[str, str], ...] = ()
    values: tuple[tuple[str, Any], ...] = ()

    def sql(self) -> str:
        text = (SQL / f"{self.template}.sql").read_text(encoding="utf-8")
        for name, value in self.identifiers:
            text = text.replace("{" + name + "}", value)
        return text

    def params(self) -> dict[str, Any]:
        p = {"rule": self.id, "table": self.table, **dict(self.values)}
        # bind only what the template names
        text = self.sql()
        return {k: v for k, v in p.items() if f"${k}" in text}


_q = quote_ident


def _kind_rule(table: Table, col: Column, kind: str, category: str, message: str,
               **values: Any) -> Rule:
    return Rule(id=f"{table.name}.{col.name}.{kind}", table=table.name, column=col.name,
                kind=kind, category=category, message=message, template=kind,
                identifiers=(("table", table.name), ("column", _q(col.name))),
                values=tuple(values.items()))


def row_rules(table: Table) -> list[Rule]:
    """Rules that look at one row at a time (type, required, vocabulary, range, order, checks)."""
    rules = [Rule(id=f"{table.name}.<column>.type", table=table.name, column=None, kind="type",
                  category="conformance", message="value cannot be read as the column's type",
                  template="type", identifiers=(("table", table.name),))]
    for c in table.columns:
        if c.required:
            rules.append(_kind_rule(table, c, "required", "completeness",
                                    f"required value {c.name} is empty", column=c.name))
        if c.vocabulary is not None:
            rules.append(_kind_rule(table, c, "vocabulary", "conformance",
                                    f"{c.name} is not one of {', '.join(c.vocabulary)}",
                                    vocabulary=list(c.vocabulary)))
        if c.min is not None or c.max is not None or c.min_exclusive is not None:
            bounds = [f">= {c.min}" if c.min is not None else "",
                      f"<= {c.max}" if c.max is not None else "",
                      f"> {c.min_exclusive}" if c.min_exclusive is not None else ""]
            rules.append(_kind_rule(table, c, "range", "plausibility",
                                    f"{c.name} must be {' and '.join(b for b in bounds if b)}",
                                    min=c.min, max=c.max, min_exclusive=c.min_exclusive))
        if c.not_before:
            rules.append(Rule(id=f"{table.name}.{c.name}.not_before", table=table.name,
                              column=c.name, kind="not_before", category="plausibility",
                              message=f"{c.name} is earlier than {c.not_before}",
                              template="not_before",
                              identifiers=(("table", table.name), ("column", _q(c.name)),
                                           ("other", _q(c.not_before)))))
    for chk in table.checks:
        rules.append(Rule(id=chk.id, table=table.name, column=None, kind="check",
                          category=chk.category, message=chk.message, template="check",
                          identifiers=(("table", table.name), ("check_sql", chk.sql))))
    return rules


def table_rules(table: Table, tables: dict[str, Table], settings: dict[str, Any],
                extract_date: dt.date) -> list[Rule]:
    """Every rule of a table, in a stable order."""
    rules = row_rules(table)
    key_cols = [_q(k) for k in table.key]
    values = []
    for c in table.columns:
        values.append(f"lower({_q(c.name)})" if c.vocabulary is not None else _q(c.name))
    rules.append(Rule(
        id=f"{table.name}.key", table=table.name, column=None, kind="key",
        category="conformance", message=f"key ({', '.join(table.key)}) shared by several rows",
        template="key",
        identifiers=(("table", table.name),
                     ("key_list", ", ".join(key_cols)),
                     ("key_not_null", " and ".join(f"{k} is not null" for k in key_cols)),
                     ("value_columns", ", ".join(values)))))
    referenced = {c.references[1] for t in tables.values() for c in t.columns
                  if c.references and c.references[0] == table.name}
    for col in sorted(c for c in referenced if (c,) != tuple(table.key)):
        rules.append(Rule(
            id=f"{table.name}.{col}.ambiguous", table=table.name, column=col, kind="ambiguous",
            category="conformance",
            message=f"{col} belongs to more than one ({', '.join(table.key)}); other tables "
                    f"refer to it on its own", template="ambiguous",
            identifiers=(("table", table.name), ("column", _q(col)),
                         ("key_columns", "struct_pack(" + ", ".join(
                             f"{_q(k)} := {_q(k)}" for k in table.key) + ")"))))
    for c in table.columns:
        if c.references:
            rt, rc = c.references
            ids = (("table", table.name), ("column", _q(c.name)), ("ref_table", rt),
                   ("ref_column", _q(rc)))
            optional = tables[rt].optional
            rules.append(Rule(id=f"{table.name}.{c.name}.reference", table=table.name,
                              column=c.name, kind="reference", category="conformance",
                              message=f"{c.name} matches no {rt}.{rc} (orphan)"
                              + (f", and the extract gives {rt}" if optional else ""),
                              template="reference_if_given" if optional else "reference",
                              identifiers=ids))
            if (rt, rc) in CASCADES:
                kind = CASCADES[(rt, rc)]
                rules.append(Rule(id=f"{table.name}.{c.name}.{kind}", table=table.name,
                                  column=c.name, kind=kind, category="conformance",
                                  message=f"its {rt} row was quarantined", template="cascade",
                                  identifiers=ids))
    for c in table.columns:
        if c.same_as:
            rt, rc, via = c.same_as
            this = f"lower(t.{_q(c.name)})" if c.vocabulary is not None else f"t.{_q(c.name)}"
            rules.append(Rule(
                id=f"{table.name}.{c.name}.same_as", table=table.name, column=c.name,
                kind="same_as", category="conformance",
                message=f"{c.name} is not the {rt}.{rc} of its {via}", template="same_as",
                identifiers=(("table", table.name), ("ref_table", rt),
                             ("ref_key", _q(table.column(via).references[1])),
                             ("via", _q(via)), ("ref_column", _q(rc)), ("this_value", this))))
    for c in table.columns:
        if c.type in ("date", "timestamp"):
            rules.append(_kind_rule(table, c, "after_extract", "plausibility",
                                    f"{c.name} is after the extract date {extract_date}",
                                    extract_date=extract_date))
        if c.event_date and "person_id" in table.column_names:
            tol = int(settings["after_data_end_tolerance_days"])
            rules.append(_kind_rule(table, c, "after_data_end", "plausibility",
                                    f"{c.name} is more than {tol} days after the person's "
                                    "data_end_date", tolerance_days=tol))
            rules.append(_kind_rule(table, c, "before_birth", "plausibility",
                                    f"{c.name} is before the person's birth_year"))
    return rules


# --------------------------------------------------------------------------- running

@dataclass
class TableResult:
    table: str
    n_raw: int
    n_clean: int
    n_quarantined: int
    rule_counts: dict[str, int] = field(default_factory=dict)

    @property
    def quarantined_share(self) -> float:
        return self.n_quarantined / self.n_raw if self.n_raw else 0.0


def quarantine_message(table: str, quarantined: str, rows: str, share: str, limit: float) -> str:
    """Why a table stops the run, its counts and share given as text (exact here and in the
    Spark engine; as the tables show them in the data-quality report)."""
    return (f"table {table}: {quarantined} of {rows} rows quarantined ({share}), above the "
            f"threshold {limit:.0%}")


@dataclass
class ValidationReport:
    extract_date: dt.date
    #: how the extract date was chosen, in words (the data-quality report says it)
    extract_date_rule: str = "params.yaml validate.extract_date"
    tables: dict[str, TableResult] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    fatal: list[str] = field(default_factory=list)
    #: tables whose quarantined share broke their limit: {table: limit} (the fatal reasons)
    over_threshold: dict[str, float] = field(default_factory=dict)
    expectations: list[dict[str, Any]] = field(default_factory=list)
    #: tables cross-checked on a sample: {table: {"rows": raw rows, "sampled": rows checked,
    #: "modulus": m (one key hash in m)}}
    expectations_sampled: dict[str, dict[str, int]] = field(default_factory=dict)


def _settings(params: dict[str, Any] | None) -> dict[str, Any]:
    return {**DEFAULTS, **(params or {})}


def _threshold(settings: dict[str, Any], table: str) -> float:
    v = settings["max_quarantine_share"]
    if isinstance(v, dict):
        return float(v.get(table, v.get("default", DEFAULTS["max_quarantine_share"])))
    return float(v)


def _extract_date(con: duckdb.DuckDBPyConnection, settings: dict[str, Any]) -> tuple[dt.date, str]:
    """The extract date and how it was chosen.

    ``validate.extract_date`` when set; else the latest ``people.data_end_date`` that is not
    after the date of the load (the latest ``meta.loads.loaded_at``): a trial with staggered
    entry gives each person their own data_end_date (the end of their follow-up, or
    withdrawal), and the latest of them is the extract's; a date after the load is from the
    future, a typing error (a typed century), and cannot move it. (Before issue 17 the
    default was the most common data_end_date, which quarantined most of a staggered
    trial.) A mistyped date in the past but after the real extract date does move it:
    set ``validate.extract_date`` where the extract date is known.
    """
    if settings.get("extract_date"):
        value = settings["extract_date"]
        return (value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)),
                "params.yaml validate.extract_date")
    load_day = con.execute("select max(loaded_at)::date from meta.loads").fetchone()[0]
    got = con.execute("select max(data_end_date) from raw.people where data_end_date <= "
                      "coalesce($load_day, current_date)", {"load_day": load_day}).fetchone()[0]
    if got is None:
        if not con.execute("select count(*) from raw.people").fetchone()[0]:
            raise OdevalError("raw.people is empty: nothing to validate; run `odeval ingest` "
                              "first", rule="validate.no_people")
        raise OdevalError("no people.data_end_date could be typed (or every one is after the "
                          "load date), so the extract date is unknown: set "
                          "validate.extract_date in params.yaml", rule="validate.extract_date")
    return got, (f"the latest people.data_end_date not after the load date "
                 f"({load_day or dt.date.today()}); set validate.extract_date if the extract "
                 "date is known")


def _clean_select(table: Table) -> str:
    cols = [f"lower({_q(c.name)}) as {_q(c.name)}" if c.vocabulary is not None else _q(c.name)
            for c in table.columns]
    return ", ".join(cols + ["_load_id", "_row_number"] + (["_extra"] if table.keep_extra else []))


def clean_view(table: Table, loads: list[str]) -> str:
    """The query of the view ``clean.<table>``: the rows of ``loads`` in ``raw.<table>``
    that no rule quarantined, vocabulary values lower-cased.

    ``loads`` are the table's loads as validated (``meta.loads``; a load's id carries its
    file's sha256, so its raw rows are fixed), so rows of a load ingested later are not
    clean until validate has judged them. Raw's rows are scanned in storage order and the
    quarantined ones, usually few, are looked up in a hash table of their keys.
    """
    where = (f"r._load_id in ({', '.join(_sql_str(x) for x in loads)})" if loads else "false")
    return (f"select {_clean_select(table)} from raw.{table.name} as r "
            f"anti join (select _load_id, _row_number from quarantine.{table.name}) as q "
            f"using (_load_id, _row_number) where {where}")


def _replace_clean(con: duckdb.DuckDBPyConnection, table: Table, loads: list[str]) -> None:
    """Point ``clean.<table>`` at its rows (:func:`clean_view`), replacing what was there:
    the view of an earlier run, or the table earlier versions of validate wrote."""
    kind = con.execute("select table_type from information_schema.tables "
                       "where table_schema = 'clean' and table_name = ?", [table.name]).fetchone()
    if kind is not None and kind[0] != "VIEW":
        con.execute(f"drop table clean.{table.name}")
    con.execute(f"create or replace view clean.{table.name} as {clean_view(table, loads)}")


def validate_table(con: duckdb.DuckDBPyConnection, table: Table, rules: list[Rule]) -> TableResult:
    """Run a table's rules: write ``quarantine.<table>`` (the rows that broke any, in
    ``(_load_id, _row_number)`` order, with the rules each broke) and point the view
    ``clean.<table>`` at the others (:func:`clean_view`).

    Clean is a view, not a copy: copying 47 M contacts and 77 M contact-staff rows took
    31 of national validate's 75 s of SQL (measured), and doubled what the warehouse
    stores of them.
    """
    con.execute("create or replace temp table _failures "
                "(_load_id varchar, _row_number bigint, rule varchar)")
    for rule in rules:
        con.execute(f"insert into _failures {rule.sql()}", rule.params())
    con.execute(f"""
        create or replace table quarantine.{table.name} as
        select r.*, f._rules
        from raw.{table.name} as r
        join (select _load_id, _row_number, list(distinct rule order by rule) as _rules
              from _failures group by _load_id, _row_number) as f
          using (_load_id, _row_number)
        order by r._load_id, r._row_number
    """)
    loads = [r[0] for r in con.execute("select load_id from meta.loads where table_name = ? "
                                       "order by load_id", [table.name]).fetchall()]
    _replace_clean(con, table, loads)
    counts = dict(con.execute(
        "select rule, count(distinct (_load_id, _row_number)) from _failures "
        "group by rule order by rule").fetchall())
    n_raw, n_clean, n_q = con.execute(
        f"select (select count(*) from raw.{table.name}), (select count(*) from clean.{table.name}), "
        f"(select count(*) from quarantine.{table.name})").fetchone()
    return TableResult(table.name, n_raw, n_clean, n_q, counts)


def _check_invariant(con: duckdb.DuckDBPyConnection) -> None:
    """raw = clean + quarantined for every table and load, and no row in both."""
    con.execute("""
        create or replace table meta.validation_counts (
            table_name varchar, load_id varchar, n_raw bigint, n_clean bigint,
            n_quarantined bigint)
    """)
    for t in load_contract():
        con.execute(f"""
            insert into meta.validation_counts
            select $t, _load_id, sum(raw), sum(clean), sum(quar) from (
                select _load_id, 1 as raw, 0 as clean, 0 as quar from raw.{t}
                union all select _load_id, 0, 1, 0 from clean.{t}
                union all select _load_id, 0, 0, 1 from quarantine.{t}
            ) group by _load_id order by _load_id
        """, {"t": t})
        both = con.execute(f"select count(*) from clean.{t} join quarantine.{t} "
                           "using (_load_id, _row_number)").fetchone()[0]
        if both:
            raise AssertionError(f"{t}: {both} rows are both clean and quarantined")
    broken = con.execute("select table_name, load_id, n_raw, n_clean, n_quarantined "
                         "from meta.validation_counts where n_raw <> n_clean + n_quarantined"
                         ).fetchall()
    if broken:
        raise AssertionError(f"rows lost or duplicated by validation: {broken}")


def validate(
    con: duckdb.DuckDBPyConnection,
    params: dict[str, Any] | None = None,
    *,
    progress: Callable[[int, int, str], None] | None = None,
    report_dir: Path | None = None,
    disclosure: dict[str, Any] | None = None,
) -> ValidationReport:
    """Validate every raw table into clean and quarantine, all or nothing.

    Parameters
    ----------
    con : a writable warehouse connection with the raw tables loaded.
    params : the ``validate:`` section of params.yaml (see ``DEFAULTS``).
    progress : optional callback ``progress(done, total, description)`` per table.
    report_dir : where the data-quality report goes (HTML and JSON); none if ``None``.
    disclosure : small-count suppression for the report (params.yaml ``disclosure``).

    Raises
    ------
    OdevalError : a table's quarantined share passes its threshold (rule
        ``validate.quarantine_share``): the warehouse is left as it was, and the
        data-quality report (if asked for) says why. Or the great-expectations cross-check
        counts other rows than the SQL rules for some rule (``validate.cross_check``): the
        clean tables are written but validate is recorded as failed, so no later stage
        reads them; the report lists the counts.
    """
    from pipeline import outputs, runstate

    runstate.require(con, ["ingest"], command="validate")
    if report_dir is not None:
        outputs.claim(Path(report_dir), "validate", outputs.warehouse_source(con))
    settings = _settings(params)
    tables = load_contract()
    extract_date, how = _extract_date(con, settings)
    report = ValidationReport(extract_date=extract_date, extract_date_rule=how)
    from pipeline import dq_report  # noqa: F401  (imported before great-expectations starts to)
    from pipeline.disclosure import DEFAULTS as DISCLOSURE

    cfg = {**DISCLOSURE, **(disclosure or {})}
    importing = None
    if settings["great_expectations"]:
        from pipeline.ge_suites import preload

        importing = preload()  # while the SQL rules run
    try:
        _validate_tables(con, report, tables, settings, cfg, report_dir, progress)
    finally:
        if importing is not None:
            importing.join()
    if settings["great_expectations"]:
        if progress:
            progress(len(tables), len(tables) + 1, "great-expectations")
        try:
            report.expectations = compare_expectations(con, report, settings)
            disagree = [r for r in report.expectations if not r["agree"]]
            if disagree:
                raise OdevalError(
                    f"great-expectations and the SQL rules count different rows for "
                    f"{len(disagree)} of {len(report.expectations)} rules ("
                    + ", ".join(f"{r['rule_id']}: {r['ge_unexpected']:,} and {r['sql_rows']:,}"
                                for r in disagree[:3])
                    + (", ..." if len(disagree) > 3 else "")
                    + "): one of them miscounts, so the validation is not used; see the "
                    "data-quality report", rule="validate.cross_check")
        except BaseException as exc:
            # the clean tables are committed, but validate is not done until its cross-check
            # is: later stages refuse them as a failed validate (pipeline.runstate)
            runstate.revoke(con, "validate", exc)
            if isinstance(exc, OdevalError) and report_dir is not None:
                _write_dq(con, report, Path(report_dir), cfg)
            raise
    if report_dir is not None:
        _write_dq(con, report, Path(report_dir), cfg)
    if progress:
        progress(len(tables) + 1, len(tables) + 1, "done")
    return report


def _validate_tables(con: duckdb.DuckDBPyConnection, report: ValidationReport,
                     tables: dict[str, Table], settings: dict[str, Any], cfg: dict[str, Any],
                     report_dir: Path | None, progress) -> None:
    """The SQL rules, the invariant and the thresholds, in one transaction (validate's body)."""
    from pipeline import dq_report, runstate

    with transaction(con):
        for i, table in enumerate(tables.values()):
            if progress:
                progress(i, len(tables) + 1, table.name)
            rules = table_rules(table, tables, settings, report.extract_date)
            report.rules += rules
            report.tables[table.name] = validate_table(con, table, rules)
        _check_invariant(con)
        for name, res in report.tables.items():
            limit = _threshold(settings, name)
            if res.quarantined_share > limit:
                report.over_threshold[name] = limit
                report.fatal.append(quarantine_message(
                    name, f"{res.n_quarantined:,}", f"{res.n_raw:,}", f"{res.quarantined_share:.1%}",
                    limit))
        dq_report.write_results(con, report, settings)
        if report.fatal:
            if report_dir is not None:
                _write_dq(con, report, Path(report_dir), cfg)
            raise OdevalError("; ".join(report.fatal) + " (params.yaml validate.max_quarantine_share;"
                              " see the data-quality report)", rule="validate.quarantine_share")
        runstate.record(con, "validate", settings)


def _write_dq(con: duckdb.DuckDBPyConnection, report: ValidationReport, folder: Path,
              cfg: dict[str, Any]) -> None:
    """The data-quality report (HTML and JSON): the ``validate`` outputs of ``folder``."""
    from pipeline import dq_report, outputs

    with outputs.publish(folder, "validate", source=outputs.warehouse_source(con),
                         rule="validate.write") as stage:
        dq_report.write_files(con, report, stage, cfg)


def sql_counts(con: duckdb.DuckDBPyConnection, table: Table, sample=None) -> dict[str, int]:
    """The SQL rules' count of each rule's rows in ``table``, as great-expectations counts
    them, on the rows of ``sample`` (a :class:`pipeline.ge_suites.Sample`) or all rows.

    Read from ``quarantine.<table>``, where each row lists every rule it broke. For the key
    (``<table>.key``) GE counts every row of a key that several rows share, the SQL rule
    quarantines the conflicts and every copy but the first: conflicts + duplicates + one
    first copy per duplicated key.
    """
    t = table.name
    where = f"where {sample.predicate()}" if sample is not None else ""
    counts = dict(con.execute(
        f"select rule, count(*) from (select unnest(_rules) as rule from quarantine.{t} {where}) "
        "group by rule").fetchall())
    keys = ", ".join(_q(k) for k in table.key)
    first_copies = con.execute(
        f"select count(distinct ({keys})) from quarantine.{t} "
        f"where list_contains(_rules, $rule) {'and ' + sample.predicate() if sample else ''}",
        {"rule": f"{t}.key.duplicate"}).fetchone()[0]
    counts[f"{t}.key"] = (counts.get(f"{t}.key.conflict", 0) + counts.get(f"{t}.key.duplicate", 0)
                          + first_copies)
    return counts


def compare_expectations(con: duckdb.DuckDBPyConnection, report: ValidationReport,
                         settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Run the great-expectations suites and set their counts beside the SQL rules'.

    Returns one row per expectation: rule id, GE unexpected rows, SQL rows, agree, and the
    rows both counted (a table's raw rows, or its sample: a table with more rows than
    ``great_expectations_sample_rows`` is checked on a deterministic sample of about that
    many, :func:`pipeline.ge_suites.sample_for`, listed in ``report.expectations_sampled``).
    The SQL side is :func:`sql_counts`. Also stored in ``results.dq_expectations``.
    """
    from pipeline.ge_suites import run_suites, sample_for

    tables = load_contract()
    size = int(settings["great_expectations_sample_rows"])
    samples = {t: s for t, r in report.tables.items()
               if (s := sample_for(tables[t], tables, r.n_raw, size)) is not None}
    ge, checked = run_suites(con, report.extract_date,
                             int(settings["after_data_end_tolerance_days"]),
                             tables=list(report.tables), samples=samples)
    report.expectations_sampled = {t: {"rows": report.tables[t].n_raw, "sampled": checked[t],
                                       "modulus": s.modulus} for t, s in samples.items()}
    sql = {t: sql_counts(con, tables[t], samples.get(t)) for t in report.tables}
    rows = []
    for rule, n_ge in ge.items():
        table = rule.split(".")[0]
        n_sql = sql[table].get(rule, 0)
        rows.append({"rule_id": rule, "ge_unexpected": n_ge, "sql_rows": n_sql,
                     "agree": n_ge == n_sql, "rows_checked": checked[table]})
    with transaction(con):
        con.execute("create or replace table results.dq_expectations (rule_id varchar, "
                    "ge_unexpected bigint, sql_rows bigint, agree boolean, rows_checked bigint)")
        con.executemany("insert into results.dq_expectations values (?, ?, ?, ?, ?)",
                        [[r["rule_id"], r["ge_unexpected"], r["sql_rows"], r["agree"],
                          r["rows_checked"]] for r in rows])
    return rows
