"""The import report of ``odeval import mhsds``: HTML and JSON, under the disclosure rules
of the data-quality report.

Counts from ``suppress_min`` to ``suppress_max`` are not shown ([c] in HTML, null in
JSON), nor any count from which one could be worked out by adding or subtracting shown
ones: primary suppression, then secondary suppression
(:func:`pipeline.disclosure.secondary_suppress`) over every sum the report shows:

* per MHSDS table, and per table and month: rows read = kept + superseded + duplicate + invalid;
* months add up to their table's count of each kind; invalid reasons to a table's invalid rows;
* per table, kept rows = rows of people without allocation + rows written to the contract
  (+ rows whose code says they are not carried: MHS401 "informal" periods);
* allocated people = those with an MHS001MPI record + those without.

Counts are of rows and people, never an identifier. Like the data-quality report, counts
of rows are suppressed but not rounded (params.yaml ``disclosure.unrounded_ok`` lists the
report's folder), and counts of people (the allocation counts, the people written, the
rows of MHS001MPI: one kept row per person) are also rounded to ``round_to``. Text from
the data (codes) in the JSON goes through :func:`pipeline.output_policy.neutralise`.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Hashable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import disclosure, output_policy

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.importers.mhsds import ImportResult

KINDS = ("rows_read", "kept", "superseded", "duplicate", "invalid")
#: the contract table(s) each MHSDS table's kept rows are written to
WRITTEN_TO = {
    "MHS001MPI": ("people with an MHS001MPI record", None),
    "MHS101Referral": ("referrals + crisis_episodes", ("referrals", "crisis_episodes")),
    "MHS201CareContact": ("contacts", ("contacts",)),
    "MHS401MHActPeriod": ("detentions", ("detentions",)),
    "MHS501HospProvSpell": ("admissions", ("admissions",)),
    "MHS004EmpStatus": ("employment", ("employment",)),
}
FILES = ("import_report.html", "import_report.json")


def protect(facts: dict[str, Any], cfg: dict[str, Any]) -> dict[Hashable, int | None]:
    """Every count of the report, exact or ``None`` where suppressed (see module docstring)."""
    cells: dict[Hashable, int] = {}
    cons: list[tuple[Hashable, list[Hashable]]] = []
    for t, r in facts["tables"].items():
        for k in KINDS:
            cells[("t", t, k)] = r[k]
        cons.append((("t", t, "rows_read"), [("t", t, k) for k in KINDS[1:]]))
        reasons = [("reason", t, why) for why in r["invalid_reasons"]]
        for why, n in r["invalid_reasons"].items():
            cells[("reason", t, why)] = n
        if reasons:
            cons.append((("t", t, "invalid"), reasons))
        cells[("t", t, "not_allocated")] = r["kept_not_allocated"]
        parts = [("t", t, "not_allocated")]
        if t in WRITTEN_TO:
            cells[("t", t, "written")] = _written(facts, t)
            parts.append(("t", t, "written"))
            for c in facts["codes"]:
                if c["table"] == t and c["kind"] == "not_carried":
                    key = ("code", t, c["column"], c["code"])
                    parts.append(key)
            cons.append((("t", t, "kept"), parts))
    by_table: dict[str, dict[str, list[Hashable]]] = {}
    for m in facts["months"]:
        for k in KINDS:
            key = ("m", m["table"], m["uniq_month_id"], k)
            cells[key] = m[k]
            by_table.setdefault(m["table"], {}).setdefault(k, []).append(key)
        cons.append((("m", m["table"], m["uniq_month_id"], "rows_read"),
                     [("m", m["table"], m["uniq_month_id"], k) for k in KINDS[1:]]))
    for t, kinds in by_table.items():
        for k, keys in kinds.items():
            cons.append((("t", t, k), keys))
    for c in facts["codes"]:
        cells[("code", c["table"], c["column"], c["code"])] = c["rows"]
    a = facts["allocation"]
    for k in ("allocated_people", "with_mhs001mpi", "without_mhs001mpi", "people_without_allocation"):
        cells[("alloc", k)] = a[k]
    cons.append((("alloc", "allocated_people"), [("alloc", "with_mhs001mpi"), ("alloc", "without_mhs001mpi")]))
    for t, n in facts["contract"].items():
        cells[("contract", t)] = n
    hidden = disclosure.primary(cells, cfg)
    # months, reasons and codes are hidden before a table's totals
    first = lambda c: 0 if c[0] in ("m", "reason", "code") else 1  # noqa: E731
    hidden = disclosure.secondary_suppress(cells, cons, hidden, first)
    return {k: (None if k in hidden else disclosure.round_count(v, cfg) if _people(k) else v)
            for k, v in cells.items()}


def _people(cell: Hashable) -> bool:
    """Counts of people, rounded as every count of people is (the data-quality report rounds
    its people rows the same way): the allocation counts, the people written, and the rows
    of MHS001MPI (one kept row per person)."""
    return (cell[0] == "alloc" or cell == ("contract", "people")
            or (cell[0] in ("t", "m", "reason", "code") and cell[1] == "MHS001MPI"))


def _written(facts: dict[str, Any], table: str) -> int:
    targets = WRITTEN_TO[table][1]
    if targets is None:
        return facts["allocation"]["with_mhs001mpi"]
    return sum(facts["contract"][t] for t in targets)


def summary(result: "ImportResult", cfg: dict[str, Any], shown: dict[Hashable, int | None] | None = None
            ) -> dict[str, Any]:
    """The JSON report (suppressed counts null). Count keys are named ``n_*`` so that
    ``odeval check-outputs`` checks them."""
    f = result.facts
    shown = shown if shown is not None else protect(f, cfg)
    tables = {}
    for t, r in f["tables"].items():
        tables[t] = {"files": r["files"], **{f"n_{k}": shown[("t", t, k)] for k in KINDS},
                     "n_invalid_by_reason": {why: shown[("reason", t, why)] for why in r["invalid_reasons"]},
                     "n_not_allocated": shown[("t", t, "not_allocated")]}
        if t in WRITTEN_TO:
            tables[t]["written_to"] = WRITTEN_TO[t][0]
            tables[t]["n_written"] = shown[("t", t, "written")]
    return {
        "importer": "mhsds",
        "extract": str(result.out),
        "extract_end": f["extract_end"], "extract_end_from": f["extract_end_source"],
        "disclosure": {"suppressed": f"{cfg['suppress_min']}..{cfg['suppress_max']}",
                       "secondary": "cells from which a suppressed count could be worked out",
                       "shown_as": None},
        "inputs": [{"table": x.table, "file": x.path.name, "format": x.format,
                    "delimiter": x.delimiter or None, "status": x.status} for x in result.files],
        "ignored_files": [p.name for p in result.ignored],
        "tables": tables,
        "months": [{"table": m["table"], "uniq_month_id": m["uniq_month_id"],
                    **{f"n_{k}": shown[("m", m["table"], m["uniq_month_id"], k)] for k in KINDS}}
                   for m in f["months"]],
        "codes": [{"table": c["table"], "column": c["column"], "code_list": c["code_list"],
                   "code": c["code"], "kind": c["kind"], "contract_value": c["contract_value"],
                   "n_rows": shown[("code", c["table"], c["column"], c["code"])]} for c in f["codes"]],
        "allocation": {f"n_{k}": shown[("alloc", k)] for k in
                       ("allocated_people", "with_mhs001mpi", "without_mhs001mpi",
                        "people_without_allocation")},
        "contract": {t: {"n_rows": shown[("contract", t)]} for t in f["contract"]},
        "notes": f["notes"] and {"n_crisis_referrals": _small(f["notes"]["crisis_referrals"], cfg),
                                 "n_contacts_of_crisis_referrals":
                                     _small(f["notes"]["contacts_of_crisis_referrals"], cfg)},
        "code_lists": f["code_lists"],
    }


def _small(n: int, cfg: dict[str, Any]) -> int | None:
    return disclosure.count_or_none(n, cfg)


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:80em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 6px}
th{background:#f3f3f3}td.n{text-align:right}caption{text-align:left;font-weight:bold}
.note{color:#555}
"""


def _table(caption: str, header: list[str], rows: list[list[Any]], counts: set[int]) -> str:
    """``counts``: the column positions holding counts (class n: right-aligned, and what
    ``odeval check-outputs`` checks)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for r in rows:
        cells = "".join(f"<td class='{'n' if j in counts else ''}'>{html.escape(str(v))}</td>"
                        for j, v in enumerate(r))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><caption>{html.escape(caption)}</caption><tr>{head}</tr>{''.join(body)}</table>"


def render_html(result: "ImportResult", cfg: dict[str, Any], shown: dict[Hashable, int | None]) -> str:
    f = result.facts
    show = disclosure.fmt_count
    p = [f"<h1>MHSDS import</h1><p>Extract written to <code>{html.escape(result.out.name)}</code>; "
         f"end of the extract {html.escape(str(f['extract_end']))} "
         f"({html.escape(f['extract_end_source'])}). Counts from {cfg['suppress_min']} to "
         f"{cfg['suppress_max']} are not shown ({disclosure.SUPPRESSED}), counts of people "
         f"(allocation, people written, MHS001MPI rows) are rounded to {cfg['round_to']}, and no "
         "count is shown from which "
         "one of them could be worked out (rows read = kept + superseded + duplicate + invalid, "
         "months to their table, reasons to the invalid rows, kept rows to those written and those "
         "of people without allocation, allocated people to those with and without records).</p>"]
    p.append("<p class='note'>Latest version of each record: highest UniqMonthID, then highest "
             "UniqSubmissionID, then the first file (by name) and row. <b>superseded</b>: an earlier "
             "month or submission of a record; <b>duplicate</b>: another copy of the kept version "
             "(a commissioner copy or a repeated row); <b>invalid</b>: a validity flag N, or no "
             "UniqMonthID, Person_ID or record key.</p>")
    p.append(_table("Rows per MHSDS table", ["table", "rows read", "kept", "superseded",
                                             "duplicate", "invalid"],
                    [[t, *(show(shown[("t", t, k)]) for k in KINDS)] for t in f["tables"]],
                    {1, 2, 3, 4, 5}))
    rows = []
    for t in f["tables"]:
        written = show(shown[("t", t, "written")]) if t in WRITTEN_TO else ""
        carried = [c for c in f["codes"] if c["table"] == t and c["kind"] == "not_carried"]
        rows.append([t, show(shown[("t", t, "kept")]), show(shown[("t", t, "not_allocated")]),
                     WRITTEN_TO.get(t, ("(used with the tables above)",))[0], written,
                     "; ".join(f"{c['column']} {c['code']}" for c in carried)])
    p.append(_table("From kept rows to the contract", ["table", "kept", "people without allocation",
                                                       "written to", "rows written",
                                                       "not carried (codes below)"], rows, {1, 2, 4}))
    reasons = [[t, why, show(shown[("reason", t, why)])] for t, r in f["tables"].items()
               for why in r["invalid_reasons"]]
    if reasons:
        p.append(_table("Invalid rows by reason", ["table", "reason", "rows"], reasons, {2}))
    a = f["allocation"]
    p.append(_table("Allocation list and MHSDS", ["people", "count"], [
        ["allocated (written to people)", show(shown[("alloc", "allocated_people")])],
        ["with an MHS001MPI record", show(shown[("alloc", "with_mhs001mpi")])],
        ["allocated without MHS001MPI records (sex unknown, no ethnicity or death date)",
         show(shown[("alloc", "without_mhs001mpi")])],
        ["in the MHSDS tables without an allocation (not written)",
         show(shown[("alloc", "people_without_allocation")])]], {1}))
    codes = [[c["table"], c["column"], c["code_list"], c["code"],
              {"unmapped": "not in the list", "no_contract_value": "no contract value",
               "not_carried": "not carried"}[c["kind"]],
              c["contract_value"] if c["kind"] != "not_carried" else "(row not written)",
              show(shown[("code", c["table"], c["column"], c["code"])])] for c in f["codes"]]
    p.append(_table("Codes not mapped to a contract value (rows of allocated people)",
                    ["table", "column", "code list", "code", "why", "written as", "rows"], codes, {6})
             if codes else "<p>Every code of the allocated people's rows is in its code list.</p>")
    p.append(_table("Contract extract", ["table", "rows"],
                    [[t, show(shown[("contract", t)])] for t in f["contract"]], {1}))
    months = [[m["table"], m["uniq_month_id"], *(show(shown[("m", m["table"], m["uniq_month_id"], k)])
                                               for k in KINDS)] for m in f["months"]]
    p.append(_table("Rows per table and reporting month (UniqMonthID)",
                    ["table", "UniqMonthID", "rows read", "kept", "superseded", "duplicate", "invalid"],
                    months, {2, 3, 4, 5, 6}))
    p.append(_table("Input files", ["table", "file", "format", "delimiter", "status"],
                    [[x.table, x.path.name, x.format, x.delimiter or "", x.status] for x in result.files],
                    set()))
    p.append(_table("Code lists (pipeline/reference/mhsds/, with local mappings)",
                    ["list", "contract column", "codes", "value when a code is not listed",
                     "changed by local mapping", "sources"],
                    [[cl["name"], cl["contract"], str(cl["codes"]),
                      "(not reported)" if cl["unmapped_value"] is None else repr(cl["unmapped_value"]),
                      ", ".join(cl["local_overrides"]), " | ".join(cl["sources"])]
                     for cl in f["code_lists"]], set()))
    return ("<!doctype html><html><head><meta charset='utf-8'><title>odeval MHSDS import</title>"
            f"<style>{_CSS}</style></head><body>" + "".join(p) + "</body></html>")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write(result: "ImportResult", out: Path, cfg: dict[str, Any]) -> list[Path]:
    """``out``/import_report.html and .json; ``cfg``: the ``disclosure:`` settings."""
    from pipeline import outputs

    cfg = disclosure.settings({"disclosure": cfg})
    shown = protect(result.facts, cfg)
    out = Path(out)
    # the folder is the import's own output folder (pipeline.outputs): its two files are
    # replaced, nothing else there is touched, a folder that is not odeval's is refused
    with outputs.publish(out, "import", source="import", rule="import.write") as stage:
        _atomic_write(stage / FILES[1],
                      json.dumps(output_policy.neutralise(summary(result, cfg, shown)), indent=2,
                                 sort_keys=True) + "\n")
        _atomic_write(stage / FILES[0], render_html(result, cfg, shown))
    return [out / name for name in FILES]
