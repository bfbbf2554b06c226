"""The data-quality report of the validate stage: results tables, HTML and JSON.

Organised as OHDSI's Data Quality Dashboard is (Kahn categories: conformance,
completeness, plausibility), for these tables: per site and table the rows in, clean and
quarantined; per rule its failures with a few example file/row references (never a
person identifier); completeness per site and month so that gaps in a site's submissions
show. Counts meant for people are suppressed (``disclosure`` in params.yaml).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from pipeline import disclosure, output_policy
from pipeline.schemas import Table, load_contract

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.validate import ValidationReport


#: each person's site (the smallest, should raw hold a person twice)
PERSON_SITES = "(select person_id, min(site_id) as site_id from raw.people group by person_id)"


def site_join(table: Table, alias: str = "r", persons: str = PERSON_SITES) -> tuple[str, str]:
    """(join clause, site expression) giving each row of ``table`` its site.

    People-level tables: the person's site (``persons``: a relation or subquery of
    person_id, site_id; by default :data:`PERSON_SITES`); contact_staff: the staff
    member's site.
    """
    if "site_id" in table.column_names:
        return "", f"{alias}.site_id"
    if "person_id" in table.column_names:
        return f"left join {persons} as p on p.person_id = {alias}.person_id", "p.site_id"
    if table.name == "contact_staff":
        # the site of the member of staff (the team that recorded the attendance), from the
        # small staff register; placing it by the contact's person instead joins 77 M rows to
        # 47 M contacts at national size (this query: 16.5 s against 1.3 s, measured). The
        # two agree on all 77 M clean rows of the national synthetic study.
        staff = "(select staff_id, min(site_id) as site_id from raw.staff group by staff_id)"
        return f"left join {staff} as st on st.staff_id = {alias}.staff_id", "st.site_id"
    return "", "null"


def rule_catalogue(report: "ValidationReport") -> list[dict[str, Any]]:
    """Every concrete rule id that can fire, with its table, column, kind, category, message."""
    tables = load_contract()
    out = []
    for r in report.rules:
        if r.kind == "type":
            for c in tables[r.table].columns:
                if c.type != "text":
                    out.append(dict(id=f"{r.table}.{c.name}.type", table=r.table, column=c.name,
                                    kind="type", category=r.category,
                                    message=f"{c.name} cannot be read as {c.type}"))
        elif r.kind == "key":
            out.append(dict(id=f"{r.table}.key.duplicate", table=r.table, column=None,
                            kind="duplicate", category=r.category,
                            message="exact copy of an earlier row (the first copy is kept)"))
            out.append(dict(id=f"{r.table}.key.conflict", table=r.table, column=None,
                            kind="conflict", category=r.category,
                            message="same key as another row with different values"))
        else:
            out.append(dict(id=r.id, table=r.table, column=r.column, kind=r.kind,
                            category=r.category, message=r.message))
    return out


def write_results(con: duckdb.DuckDBPyConnection, report: "ValidationReport",
                  settings: dict[str, Any]) -> None:
    """results.dq_tables, dq_rules, dq_examples, dq_completeness (exact counts, in the warehouse)."""
    tables = load_contract()
    con.execute("create or replace table results.dq_tables (site_id varchar, table_name varchar, "
                "n_raw bigint, n_clean bigint, n_quarantined bigint)")
    con.execute("create or replace table results.dq_completeness (site_id varchar, "
                "table_name varchar, month varchar, n_clean bigint)")
    con.execute("create or replace table results.dq_examples (rule_id varchar, source_file varchar, "
                "row_number bigint)")
    counts: dict[str, int] = {}
    # once, not a 1 M-person aggregate in each of the twenty queries below (national)
    con.execute(f"create or replace temp table _person_sites as select * from {PERSON_SITES}")
    for t in tables.values():
        join, site = site_join(t, persons="_person_sites")
        when = next((c.name for c in t.columns if c.event_date), None)
        when = when or ("index_date" if t.name == "people" else None)
        _counts(con, t, join, site, when)
        for rule, n in con.execute(f"select rule, count(*) from (select unnest(_rules) as rule "
                                   f"from quarantine.{t.name}) group by rule").fetchall():
            counts[rule] = n
        con.execute(f"""
            insert into results.dq_examples
            select rule, source_file, _row_number from (
                select rule, regexp_extract(l.source_file, '[^/]+$') as source_file, q._row_number,
                       row_number() over (partition by rule order by q._load_id, q._row_number) as k
                from (select _load_id, _row_number, unnest(_rules) as rule
                      from quarantine.{t.name}) as q
                join meta.loads as l on l.load_id = q._load_id
            ) where k <= $n order by rule, source_file, _row_number
        """, {"n": int(settings["examples_per_rule"])})
    _open_records(con, tables)
    catalogue = rule_catalogue(report)
    known = {r["id"] for r in catalogue}
    for rule in sorted(set(counts) - known):  # cascades or checks named outside the catalogue
        table, _, rest = rule.partition(".")
        catalogue.append(dict(id=rule, table=table, column=None, kind=rest, category="conformance",
                              message=rule))
    con.execute("create or replace table results.dq_rules (rule_id varchar, table_name varchar, "
                "column_name varchar, kind varchar, category varchar, message varchar, "
                "n_rows bigint)")
    con.executemany("insert into results.dq_rules values (?, ?, ?, ?, ?, ?, ?)",
                    [[r["id"], r["table"], r["column"], r["kind"], r["category"], r["message"],
                      counts.get(r["id"], 0)] for r in sorted(catalogue, key=lambda r: r["id"])])


def _counts(con: duckdb.DuckDBPyConnection, t: Table, join: str, site: str,
            when: str | None) -> None:
    """The ``results.dq_tables`` rows of table ``t`` and, when it has a date ``when``, its
    ``dq_completeness`` rows: its rows counted once per site and month, for both the site's
    counts and its clean rows per month (national contacts: one pass over the 47 M rows
    instead of two; the dated tables' queries 3.56 -> 2.27 s, one run each side by side,
    every row equal). Clean rows are the raw rows not quarantined, as the view
    ``clean.<table>`` reads them (validate has judged every load of raw by now)."""
    month = f"""date_trunc('month', cast(r."{when}" as date))""" if when else "cast(null as date)"
    con.execute(f"""
        create or replace temp table _dq_cells as
        select coalesce({site}, '(unknown)') as site_id, {month} as month,
               count(*) as n_raw, count(*) filter (where q._load_id is null) as n_clean,
               count(q._load_id) as n_quarantined
        from raw.{t.name} as r {join}
        left join quarantine.{t.name} as q using (_load_id, _row_number)
        group by all
    """)
    con.execute("""
        insert into results.dq_tables
        select site_id, $t, sum(n_raw), sum(n_clean), sum(n_quarantined)
        from _dq_cells group by site_id order by 1
    """, {"t": t.name})
    if when:
        con.execute("""
            insert into results.dq_completeness
            -- months formatted after grouping, not for each of 47 M contacts
            select site_id, $t, strftime(month, '%Y-%m'), sum(n_clean) from _dq_cells
            where month is not null group by site_id, month having sum(n_clean) > 0
            order by 1, 3
        """, {"t": t.name})


def open_rule_id(table: Table) -> str:
    """The id of the plausibility rule on a table's open records (schemas/README.md)."""
    return f"{table.name}.{table.period[1].name}.open_beyond_max"


def _open_records(con: duckdb.DuckDBPyConnection, tables: dict[str, Table]) -> None:
    """results.dq_open_records: per table with periods (schemas/ ``period_end``) and site, the
    clean rows, those with no end date, and those of them open for longer than the table's
    ``open_max_days`` by the person's last day of data (least of data_end_date and
    death_date): rule ``<table>.<end column>.open_beyond_max``, a plausibility warning (the
    rows stay clean; the derive stage ends them by ``derive.open_end``)."""
    con.execute("create or replace table results.dq_open_records (site_id varchar, "
                "table_name varchar, column_name varchar, rule_id varchar, n_rows bigint, "
                "n_open bigint, n_open_beyond_max bigint)")
    con.execute("create or replace temp table _open_max (table_name varchar, detail varchar, "
                "max_days bigint)")
    for t in tables.values():
        if not t.period:
            continue
        start, end = t.period
        om = end.open_max_days
        if om:
            con.executemany("insert into _open_max values (?, ?, ?)",
                            [[t.name, v, d] for v, d in om.rows()])
        by = f'r."{om.by}"' if om and om.by else "cast(null as varchar)"
        match = "m.detail = d.detail" if om and om.by else "m.detail is null"
        join, site = site_join(t, "r", persons="_person_sites")
        con.execute(f"""
            insert into results.dq_open_records
            select site_id, $t, $c, $rule, count(*), count(*) filter (where is_open),
                   count(*) filter (where is_open and open_days > max_days)
            from (
                select coalesce({site}, '(unknown)') as site_id, {by} as detail,
                       r."{end.name}" is null as is_open,
                       date_diff('day', cast(r."{start.name}" as date),
                                 least(pe.data_end_date,
                                       coalesce(pe.death_date, pe.data_end_date))) as open_days
                from clean.{t.name} as r {join}
                left join clean.people as pe on pe.person_id = r.person_id
            ) as d
            left join _open_max as m on m.table_name = $t and {match}
            group by site_id order by site_id
        """, {"t": t.name, "c": end.name, "rule": open_rule_id(t)})


@dataclass
class Protected:
    """The data-quality counts as shown: exact, or ``None`` where suppressed.

    One suppression pattern for every count of the report (HTML and JSON), built from
    additive sums so that no hidden count can be worked out from the shown ones:

    * per input table, rows in = clean + quarantined per site, and the sites add up to the
      table's total (:func:`pipeline.disclosure.flow_suppress`, the same cells the metrics
      stage hides in metrics/data_quality.csv and the study report);
    * a site's clean rows per month add up to (at most) its clean rows;
    * the rows failing each rule of a table add up to (at least) its quarantined rows.

    Complementary cells are taken among months and rules first, so the flow cells stay those
    of the metrics stage.
    """

    flow: dict[tuple[str, str, str], int | None]  # (table, site, all|clean|quarantined)
    months: dict[tuple[str, str, str], int | None]  # (table, site, month)
    rules: dict[str, int | None]  # rule id
    hidden_rules: set[str]
    open: dict[tuple[str, str, str], int | None]  # (table, site or all, open|beyond)

    def share(self, table: str, site: str = "all") -> float | None:
        """Quarantined share of a table (None when either count is suppressed)."""
        n = self.flow.get((table, site, "all"), 0)
        q = self.flow.get((table, site, "quarantined"), 0)
        if n is None or q is None:
            return None
        return q / n if n else 0.0


def protect(con: duckdb.DuckDBPyConnection, cfg: dict[str, Any]) -> Protected:
    """Primary and secondary suppression of every count of the data-quality report."""
    flow_rows = con.execute("select site_id, table_name, n_raw, n_clean, n_quarantined "
                            "from results.dq_tables order by 2, 1").fetchall()
    comp = con.execute("select table_name, site_id, month, n_clean from results.dq_completeness "
                       "order by 1, 2, 3").fetchall()
    rule_rows = con.execute("select rule_id, table_name, n_rows from results.dq_rules "
                            "order by 1").fetchall()
    vals: dict[tuple, int] = {}
    hidden: set[tuple] = set()
    flow_cons: list[tuple[tuple, list[tuple]]] = []
    tables = sorted({t for _, t, *_ in flow_rows})
    for t in tables:
        by_site = {s: (a, b, q) for s, tt, a, b, q in flow_rows if tt == t}
        v, h = disclosure.flow_suppress(by_site, cfg)
        vals.update({(t, *k): n for k, n in v.items()})
        hidden |= {(t, *k) for k in h}
        for total, parts in disclosure.grid_constraints(sorted(by_site, key=str),
                                                        ["clean", "quarantined"]):
            flow_cons.append(((t, *total), [(t, *p) for p in parts]))
    extra_cons: list[tuple[tuple, list[tuple]]] = []
    extra: dict[tuple, int] = {}
    month_cells: dict[tuple[str, str], list[tuple]] = {}
    for t, s, m, n in comp:
        key = ("month", t, s, m)
        extra[key] = int(n)
        month_cells.setdefault((t, s), []).append(key)
    for (t, s), parts in month_cells.items():
        extra_cons.append(((t, s, "clean") if (t, s, "clean") in vals else None, parts))
    rule_cells: dict[str, list[tuple]] = {}
    for rid, t, n in rule_rows:
        extra[("rule", rid)] = int(n)
        rule_cells.setdefault(t, []).append(("rule", rid))
    for t, parts in rule_cells.items():
        extra_cons.append(((t, "all", "quarantined") if (t, "all", "quarantined") in vals else None,
                           parts))
    vals.update(extra)
    hidden |= disclosure.primary(extra, cfg)
    first = lambda c: 0 if c[0] in ("month", "rule") else 1  # noqa: E731
    while True:  # each pass only adds cells: it ends
        grown = disclosure.secondary_suppress(vals, extra_cons, hidden, first)
        grown = disclosure.secondary_suppress(vals, flow_cons, grown)
        if grown == hidden:
            break
        hidden = grown
    def shown(k):
        if k in hidden:
            return None
        # rows of the people table are people: rounded as every count of people is, so the
        # report's rounded people per site cannot be read back from here (policy: count)
        people = (k[0] == "people" or (k[0] == "month" and k[1] == "people")
                  or (k[0] == "rule" and str(k[1]).startswith("people.")))
        return disclosure.round_count(vals[k], cfg) if people else vals[k]

    return Protected(
        open=_protect_open(con, cfg),
        flow={k: shown(k) for k in vals if k[0] not in ("month", "rule")},
        months={k[1:]: shown(k) for k in vals if k[0] == "month"},
        rules={k[1]: shown(k) for k in vals if k[0] == "rule"},
        hidden_rules={k[1] for k in hidden if k[0] == "rule"})


def _protect_open(con: duckdb.DuckDBPyConnection, cfg: dict[str, Any]
                  ) -> dict[tuple[str, str, str], int | None]:
    """Open-record counts as shown: small ones hidden, and the sites of a table hidden in
    pairs with its total (``all``) so that no hidden count is their difference."""
    vals: dict[tuple[str, str, str], int] = {}
    cons = []
    for t, s, n_open, n_beyond in con.execute(
            "select table_name, site_id, n_open, n_open_beyond_max from results.dq_open_records "
            "order by 1, 2").fetchall():
        vals[(t, s, "open")], vals[(t, s, "beyond")] = int(n_open), int(n_beyond)
    for t in sorted({k[0] for k in vals}):
        for kind in ("open", "beyond"):
            parts = sorted(k for k in vals if k[0] == t and k[2] == kind)
            vals[(t, "all", kind)] = sum(vals[k] for k in parts)
            cons.append(((t, "all", kind), parts))
    hidden = disclosure.secondary_suppress(vals, cons, disclosure.primary(vals, cfg))
    return {k: None if k in hidden else n for k, n in vals.items()}


def open_records(con: duckdb.DuckDBPyConnection, prot: Protected) -> list[dict[str, Any]]:
    """Per table with periods and site (and ``all``): open records and those beyond the
    table's plausible maximum, as shown (suppressed counts None)."""
    tables = load_contract()
    out = []
    for t, c, rule in con.execute("select distinct table_name, column_name, rule_id "
                                  "from results.dq_open_records order by 1").fetchall():
        om = tables[t].column(c).open_max_days
        if om is None:
            bound = None
        elif om.by is None:
            bound = f"{om.days} days"
        else:
            bound = f"by {om.by}: " + ", ".join(f"{v} {d} d" for v, d in om.values)
        sites = [s for (tt, s, k) in prot.open if tt == t and k == "open" and s != "all"]
        for s in [*sorted(sites), "all"]:
            out.append(dict(table=t, column=c, site_id=s, n_open=prot.open[(t, s, "open")],
                            n_open_beyond_max=prot.open[(t, s, "beyond")] if om else None,
                            open_max=bound, rule=rule if om else None))
    return out


def _fatal(report: "ValidationReport", prot: Protected) -> list[str]:
    """validate's reasons for stopping, with their counts as the tables show them."""
    from pipeline.validate import quarantine_message

    out = []
    for t, limit in report.over_threshold.items():
        share = prot.share(t)
        out.append(quarantine_message(
            t, disclosure.fmt_count(prot.flow[(t, "all", "quarantined")]),
            disclosure.fmt_count(prot.flow[(t, "all", "all")]),
            disclosure.SUPPRESSED if share is None else f"{share:.1%}", limit))
    return out


def _table_counts(prot: Protected, name: str) -> tuple[int | None, int | None, int | None]:
    return tuple(prot.flow.get((name, "all", k), 0) for k in disclosure.FLOW_KINDS)


def summary(con: duckdb.DuckDBPyConnection, report: "ValidationReport",
            cfg: dict[str, Any], prot: Protected | None = None) -> dict[str, Any]:
    """The JSON summary for machines (suppressed counts null)."""
    prot = prot or protect(con, cfg)
    tables = {}
    for name in report.tables:
        a, b, q = _table_counts(prot, name)
        share = prot.share(name)
        tables[name] = {"n_raw": a, "n_clean": b, "n_quarantined": q,
                        "quarantined_share": None if share is None else round(share, 6)}
    return {
        "extract_date": report.extract_date.isoformat(),
        "extract_date_rule": report.extract_date_rule,
        "fatal": _fatal(report, prot),
        "great_expectations": ge_summary(report),
        "disclosure": {"suppressed": f"{cfg['suppress_min']}..{cfg['suppress_max']}",
                       "secondary": "cells from which a suppressed count could be worked out",
                       "shown_as": None},
        "tables": tables,
        "sites": [dict(site_id=s, table=t, n_raw=prot.flow[(t, s, "all")],
                       n_clean=prot.flow[(t, s, "clean")],
                       n_quarantined=prot.flow[(t, s, "quarantined")])
                  for s, t in con.execute(
                      "select site_id, table_name from results.dq_tables order by 1, 2").fetchall()],
        "rules": [dict(id=i, table=t, category=k, message=m, n_rows=prot.rules[i])
                  for i, t, k, m in con.execute(
                      "select rule_id, table_name, category, message from results.dq_rules "
                      "where n_rows > 0 order by rule_id").fetchall()],
        "open_records": open_records(con, prot),
    }


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}body>p{max-width:75em}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 6px}
th{background:#f3f3f3}td.n,td.pct{text-align:right}td.gap{background:#fde2e2}
.fatal{color:#a00;font-weight:bold}caption{text-align:left;font-weight:bold}
.wide{overflow-x:auto;max-width:100%;margin:.5em 0 1.5em}.wide table{margin:0}
.grid td,.grid th{font-size:12px;padding:1px 4px;white-space:nowrap}
.grid td:first-child,.grid th:first-child{position:sticky;left:0;background:#fff}
.grid td.off{background:#fff;color:#bbb}details{margin:.5em 0 1.5em}summary{cursor:pointer}
"""


def extract_months(con: duckdb.DuckDBPyConnection, extract_date) -> list[str]:
    """The extract window the completeness grids cover: every month (``YYYY-MM``) from the
    first referral (the first month of ``people.index_date``; of any dated row when there are
    no people) to the extract date (or the last month with rows, if later), months without
    a row at any site included."""
    first, last = con.execute(
        "select coalesce(min(month) filter (where table_name = 'people'), min(month)), "
        "max(month) from results.dq_completeness").fetchone()
    if first is None:
        return []
    if extract_date is not None:
        last = max(last, f"{extract_date:%Y-%m}")
    y, m = int(first[:4]), int(first[5:7])
    out = []
    while f"{y:04d}-{m:02d}" <= last:
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _table(caption: str, header: list[str], rows: list[list[Any]], classes=None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, r in enumerate(rows):
        cells = []
        for j, v in enumerate(r):
            numeric = isinstance(v, str) and (v[:1].isdigit() or v == disclosure.SUPPRESSED)
            cls = (classes[i][j] if classes else "") or ("n" if numeric else "")
            cells.append(f"<td class='{cls}'>{html.escape(str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<table><caption>{html.escape(caption)}</caption><tr>{head}</tr>"
            + "".join(body) + "</table>")


def ge_summary(report: "ValidationReport") -> dict[str, Any]:
    """The great-expectations cross-check in a few figures (no counts of people)."""
    rows = report.expectations
    return {"expectations": len(rows), "agree": sum(r["agree"] for r in rows),
            "disagree": sorted(r["rule_id"] for r in rows if not r["agree"]),
            # the share sampled, not its rows (counts in a published file go through disclosure)
            "tables_on_a_sample": {t: {"one_key_in": s["modulus"]} for t, s
                                   in sorted(report.expectations_sampled.items())}}


def _ge_html(report: "ValidationReport") -> str:
    g = ge_summary(report)
    if not g["expectations"]:
        return "<p>The great-expectations cross-check was not run (validate.great_expectations).</p>"
    text = (f"<p>Cross-check: {g['expectations']} great-expectations expectations, generated from "
            f"the same schemas and run in DuckDB, counted the same rows as the SQL rules for "
            f"{g['agree']} of them.")
    if g["disagree"]:
        text += (" <span class='fatal'>They disagree on: " + html.escape(", ".join(g["disagree"]))
                 + "; validate stopped.</span>")
    if g["tables_on_a_sample"]:
        text += (" Cross-checked on a deterministic sample (more rows than "
                 "validate.great_expectations_sample_rows; both counts are of the same sampled "
                 "rows, and the SQL rules apply to every row): " + html.escape(", ".join(
                     f"{t} (about one row in {s['one_key_in']}, by a hash of its key)"
                     for t, s in g["tables_on_a_sample"].items())) + ".")
    return text + "</p>"


def render_html(con: duckdb.DuckDBPyConnection, report: "ValidationReport",
                cfg: dict[str, Any], prot: Protected | None = None) -> str:
    prot = prot or protect(con, cfg)
    show = disclosure.fmt_count
    parts = [f"<h1>Data quality</h1><p>Extract date {report.extract_date} "
             f"({html.escape(report.extract_date_rule)}). Every raw row is either "
             "clean or quarantined with the rules it broke. Counts from "
             f"{cfg['suppress_min']} to {cfg['suppress_max']} are not shown "
             f"({disclosure.SUPPRESSED}), nor any count or share from which one of them could be "
             "worked out by adding or subtracting others (rows in = clean + quarantined, sites "
             "to the table total, months to a site's clean rows, rules to a table's quarantined "
             "rows); a rule whose count is not shown lists one example row at most.</p>"]
    parts += [f"<p class='fatal'>Stopped: {html.escape(f)}</p>" for f in _fatal(report, prot)]
    rows_ = []
    for n in report.tables:
        share = prot.share(n)
        rows_.append([n, *(show(v) for v in _table_counts(prot, n)),
                      disclosure.SUPPRESSED if share is None else f"{share:.2%}"])
    parts.append(_table("Rows per table", ["table", "rows in", "clean", "quarantined", "share"],
                        rows_, [["", "n", "n", "n", "pct"]] * len(rows_)))
    rows = con.execute("select site_id, table_name from results.dq_tables order by 1, 2").fetchall()
    parts.append(_table("Rows per site and table", ["site", "table", "rows in", "clean",
                                                    "quarantined"],
                        [[s, t, *(show(prot.flow[(t, s, k)]) for k in disclosure.FLOW_KINDS)]
                         for s, t in rows]))
    examples: dict[str, list[str]] = {}
    for rule, f, rn in con.execute("select * from results.dq_examples order by 1, 2, 3").fetchall():
        examples.setdefault(rule, []).append(f"{f} row {rn}")
    # fewer examples than examples_per_rule would give a suppressed count away: one at most
    for rule in prot.hidden_rules:
        examples[rule] = examples.get(rule, [])[:1]
    rules = con.execute("select rule_id, category, message from results.dq_rules "
                        "order by rule_id").fetchall()
    # most failures first, by the count shown (a hidden count's place would give it away:
    # hidden rules follow the shown ones, by id); rules with no failures folded below
    failing = sorted([r for r in rules if prot.rules[r[0]] != 0],
                     key=lambda r: (prot.rules[r[0]] is None, -(prot.rules[r[0]] or 0), r[0]))
    passing = [r for r in rules if prot.rules[r[0]] == 0]
    header = ["rule", "category", "what it checks", "rows failing", "examples"]
    parts.append(_table(f"Rules broken (Kahn category), most failing rows first: {len(failing)} "
                        f"of {len(rules)} rules", header,
                        [[i, k, m, show(prot.rules[i]), "; ".join(examples.get(i, []))]
                         for i, k, m in failing]))
    parts.append(f"<details><summary>{len(passing)} rules with no failing row</summary>"
                 + _table("Rules no row broke", header[:3], [[i, k, m] for i, k, m in passing])
                 + "</details>")
    parts.append(_ge_html(report))
    parts.append("<p>Records with no end date stay clean (an admission with no discharge date "
                 "is read as still in hospital); the derive stage ends them as "
                 "<code>derive.open_end</code> says. Those open for longer than the table's "
                 "plausible maximum (<code>open_max_days</code> in <code>schemas/</code>) by "
                 "the person's last day of data break a plausibility rule and should be "
                 "checked at the site.</p>")
    parts.append(_table("Open records (no end date) per table and site",
                        ["table", "end column", "site", "open", "open beyond the maximum",
                         "maximum", "rule"],
                        [[r["table"], r["column"], r["site_id"], show(r["n_open"]),
                          "" if r["rule"] is None else show(r["n_open_beyond_max"]),
                          r["open_max"] or "none", r["rule"] or ""]
                         for r in open_records(con, prot)]))
    months = extract_months(con, report.extract_date)
    if months:
        parts.append(f"<p>Completeness grids: every month of the extract, from {months[0]} (the "
                     f"first referral) to {months[-1]} (the extract date), months without a "
                     "row at any site included; rows dated earlier (a prescription started "
                     "before the referral) are in the counts above, not in the grids. A "
                     "site's active period in a table runs from its first to its last month "
                     "with rows there; a month inside it without rows is a gap (shaded), "
                     "months outside it are left blank.</p>")
    for table in con.execute("select distinct table_name from results.dq_completeness "
                             "order by 1").fetchall():
        t = table[0]
        data = [(s, m, prot.months[(t, s, m)]) for s, m in con.execute(
            "select site_id, month from results.dq_completeness where table_name = ? "
            "order by 1, 2", [t]).fetchall()]
        grid: dict[str, dict[str, int | None]] = {}
        for s, m, n in data:
            if not months or m >= months[0]:
                grid.setdefault(s, {})[m] = n
        rows_, cls = [], []
        for s in sorted(grid):
            start, end = min(grid[s]), max(grid[s])
            active = [start <= m <= end for m in months]
            rows_.append([s] + [show(grid[s].get(m, 0)) if a else "" for m, a in
                                zip(months, active)])
            cls.append([""] + [("gap" if grid[s].get(m, 0) == 0 else "n") if a else "off"
                               for m, a in zip(months, active)])
        parts.append("<div class='wide grid'>"
                     + _table(f"Completeness: clean {t} rows per site and month (gaps shaded)",
                              ["site"] + months, rows_, cls) + "</div>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>odeval data quality</title>"
            f"<style>{_CSS}</style></head><body>" + "".join(parts) + "</body></html>")


def write_files(con: duckdb.DuckDBPyConnection, report: "ValidationReport", out: Path,
                cfg: dict[str, Any]) -> None:
    """``out``/data_quality.html and data_quality.json; ``cfg``: disclosure settings."""
    out.mkdir(parents=True, exist_ok=True)
    prot = protect(con, cfg)
    (out / "data_quality.json").write_text(
        json.dumps(output_policy.neutralise(summary(con, report, cfg, prot)), indent=2,
                   sort_keys=True) + "\n",
        encoding="utf-8")
    (out / "data_quality.html").write_text(render_html(con, report, cfg, prot), encoding="utf-8")
