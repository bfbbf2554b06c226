"""Derive stage: analysis datasets built in SQL from the ``clean`` schema.

Each relation is one ``.sql`` file under ``pipeline/sql/derive/``: a plain ``SELECT`` whose
header comment states its name, grain and key. This module only

1. merges the ``derive:`` parameters over :data:`DEFAULTS` and checks them,
2. loads the reference relations: the drug list (``derive.drug_list``) into
   ``derived.ref_drugs``, and how each table's open records end (``derive.open_end``
   with the plausible maxima of ``schemas/``) into ``derived.ref_open_end``,
3. runs every file as ``CREATE OR REPLACE TABLE derived.<file stem> AS <select>`` in
   dependency order (a file depends on the ``derived.<name>`` relations it reads),
   with its ``$name`` parameters bound, never formatted into the SQL text,

all in one transaction: a failure leaves the ``derived`` schema as it was. Nothing here
loops over rows; the work is DuckDB's, so memory stays within its ``memory_limit``.

Relations (see each file's header for the precise definitions):
``people``, ``time_to_event``, ``recurrent``, ``acute_episodes`` and ``mha_episodes`` (the
episodes relapses and involuntary admissions count, their records in
``int_acute_episode_records`` and ``int_mha_episode_records`` for audit), ``antipsychotic``,
``activity``, ``fidelity_referral``, ``unknown_drugs``, ``clusters``, and intermediates
``int_*``.

Open records (no end date) end as ``derive.open_end`` says, per table: ``data_end`` (the
person's last day of data: still in hospital, still prescribed, as the contract reads a
missing end), ``max`` (the plausible maximum declared in ``schemas/`` as ``open_max_days``,
or the last day of data if sooner) or a number of days.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

import duckdb

from pipeline import params as params_mod
from pipeline.config import PROJ_ROOT, SQL_DIR
from pipeline.errors import OdevalError
from pipeline.warehouse import transaction

DERIVE_SQL_DIR = SQL_DIR / "derive"

#: Default outcome definitions (CONTRACT.md); ``params.yaml`` ``derive:`` overrides them.
DEFAULTS: dict[str, Any] = {
    "follow_up_days": 730,
    # acute-care episodes: records merged when they start within episode_gap_days of the
    # episode's end (2: the continuous inpatient spell gap of hospital statistics); a relapse
    # is an episode starting after day relapse_grace_days
    "relapse_components": ["admissions", "crisis_episodes", "detentions"],
    "episode_gap_days": 2,
    "relapse_grace_days": 0,
    "transfer_gap_days": 1,
    "involuntary_sections": ["2", "3", "4", "37"],
    "place_of_safety_sections": ["135", "136"],
    "holding_power_sections": ["5(2)", "5(4)"],
    # Mental Health Act episodes: detentions merged when the next starts within
    # detention_gap_days of the episode's end; whether the detention of someone already in
    # hospital counts as an involuntary admission
    "detention_gap_days": 1,
    "involuntary_in_hospital": True,
    # denominator of the rates: follow_up (person-time in follow-up) | at_risk (out of an
    # acute-care episode / out of detention)
    "rate_person_time": "follow_up",
    # binary outcomes over the fixed window [0, follow_up_days) (people followed for all of
    # it; others not known) | follow_up (each person's own, unequal, follow-up)
    "binary_window": "whole_window",
    "rtw_window_days": 90,
    "rtw_statuses": ["employed", "self_employed", "education", "training"],
    "last_days_antipsychotic": 90,
    "clinical_roles": ["psychiatrist", "nurse", "psychologist", "social_worker",
                       "occupational_therapist"],
    "drug_list": "pipeline/reference/antipsychotics.csv",
    # how a record with no end date ends, per table: data_end | max | a number of days
    "open_end": {"admissions": "data_end", "crisis_episodes": "max", "detentions": "max",
                 "prescriptions": "data_end"},
}

#: Tables whose records may be left open, and their end column.
OPEN_END_COLUMNS = {"admissions": "discharged_on", "crisis_episodes": "end_on",
                    "detentions": "end_on", "prescriptions": "end_on"}

RELAPSE_COMPONENTS = ("admissions", "crisis_episodes", "detentions")
RATE_PERSON_TIME = ("follow_up", "at_risk")
BINARY_WINDOW = ("whole_window", "follow_up")
_INT_PARAMS = ("follow_up_days", "transfer_gap_days", "rtw_window_days", "last_days_antipsychotic",
               "episode_gap_days", "detention_gap_days", "relapse_grace_days")
_BOOL_PARAMS = ("involuntary_in_hospital",)
_LIST_PARAMS = ("relapse_components", "involuntary_sections", "place_of_safety_sections",
                "holding_power_sections", "rtw_statuses", "clinical_roles")

#: Reference relations loaded from files and parameters before the SQL runs.
REFERENCES = ("ref_drugs", "ref_open_end", "ref_definitions")

#: Relations every run must produce (the public outputs of the stage).
OUTPUTS = ("people", "time_to_event", "recurrent", "acute_episodes", "mha_episodes",
           "antipsychotic", "activity", "fidelity_referral", "unknown_drugs", "clusters")

_REF_COLUMNS = {
    "drug": "VARCHAR", "atc_code": "VARCHAR", "antipsychotic": "BOOLEAN", "route": "VARCHAR",
    "ddd_mg": "DOUBLE", "cpz_equiv_mg": "DOUBLE", "cpz_method": "VARCHAR", "source": "VARCHAR",
}

Progress = Callable[[int, int, str], None]


def resolve_params(params: dict | None = None) -> dict[str, Any]:
    """``params`` (the ``derive:`` section) merged over :data:`DEFAULTS`, checked and typed."""
    merged = params_mod.merged("derive", params, DEFAULTS)
    for name in _INT_PARAMS:
        value = merged[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise OdevalError(f"derive.{name} must be a whole number >= 0, got {value!r}",
                              rule="derive.params.type", file="params.yaml")
    if merged["follow_up_days"] < 1:
        raise OdevalError("derive.follow_up_days must be >= 1", rule="derive.params.type",
                          file="params.yaml")
    for name in _BOOL_PARAMS:
        if not isinstance(merged[name], bool):
            raise OdevalError(f"derive.{name} must be true or false, got {merged[name]!r}",
                              rule="derive.params.type", file="params.yaml")
    if merged["rate_person_time"] not in RATE_PERSON_TIME:
        raise OdevalError(f"derive.rate_person_time must be one of {list(RATE_PERSON_TIME)}, "
                          f"got {merged['rate_person_time']!r}", rule="derive.params.type",
                          file="params.yaml")
    if merged["binary_window"] not in BINARY_WINDOW:
        raise OdevalError(f"derive.binary_window must be one of {list(BINARY_WINDOW)}, "
                          f"got {merged['binary_window']!r}", rule="derive.params.type",
                          file="params.yaml")
    if merged["relapse_grace_days"] >= merged["follow_up_days"]:
        raise OdevalError("derive.relapse_grace_days must be less than follow_up_days",
                          rule="derive.params.type", file="params.yaml")
    if merged["rtw_window_days"] > merged["follow_up_days"]:
        raise OdevalError("derive.rtw_window_days must not exceed follow_up_days",
                          rule="derive.params.type", file="params.yaml")
    for name in _LIST_PARAMS:
        value = merged[name]
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise OdevalError(f"derive.{name} must be a list, got {value!r}",
                              rule="derive.params.type", file="params.yaml")
        # YAML turns an unquoted 2 into an int; sections and statuses are text.
        merged[name] = [str(v).strip().lower() for v in value]
    bad = sorted(set(merged["relapse_components"]) - set(RELAPSE_COMPONENTS))
    if bad or not merged["relapse_components"]:
        raise OdevalError(f"derive.relapse_components must be a non-empty subset of "
                          f"{list(RELAPSE_COMPONENTS)}, got {merged['relapse_components']}",
                          rule="derive.params.relapse_components", file="params.yaml")
    merged["drug_list"] = str(merged["drug_list"])
    merged["open_end"] = _open_end(merged["open_end"])
    return merged


def _open_end(value: Any) -> dict[str, str | int]:
    """``derive.open_end`` checked: every table of :data:`OPEN_END_COLUMNS` gets
    ``data_end``, ``max`` (only where ``schemas/`` declares ``open_max_days``) or days >= 1."""
    from pipeline.schemas import load_contract

    given = dict(DEFAULTS["open_end"])
    if not isinstance(value, dict):
        raise OdevalError(f"derive.open_end must map tables to data_end, max or days, got {value!r}",
                          rule="derive.params.open_end", file="params.yaml")
    unknown = sorted(set(value) - set(OPEN_END_COLUMNS))
    if unknown:
        raise OdevalError(f"derive.open_end: unknown tables {unknown}; known: "
                          f"{sorted(OPEN_END_COLUMNS)}", rule="derive.params.open_end",
                          file="params.yaml")
    given.update(value)
    tables = load_contract()
    for table, rule in given.items():
        declared = tables[table].column(OPEN_END_COLUMNS[table]).open_max_days
        whole = isinstance(rule, int) and not isinstance(rule, bool) and rule >= 1
        if not (whole or rule in ("data_end", "max")) or (rule == "max" and declared is None):
            raise OdevalError(
                f"derive.open_end.{table} must be data_end, a number of days >= 1"
                + (" or max" if declared else " (schemas/ declares no open_max_days for it)")
                + f", got {rule!r}", rule="derive.params.open_end", file="params.yaml")
    return given


def open_end_rows(params: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of ``derived.ref_open_end``: for each table (and, where the maximum depends on
    a column such as ``legal_section``, each value of it) how an open record ends:
    ``end_rule`` ``data_end`` or ``cap`` with ``max_days``. A row with ``detail`` null applies
    to every record of the table that no row with its value matches."""
    from pipeline.schemas import load_contract

    tables = load_contract()
    rows = []
    for table, rule in params["open_end"].items():
        if rule == "data_end":
            rows.append(dict(table_name=table, detail=None, end_rule="data_end", max_days=None))
        elif rule == "max":
            om = tables[table].column(OPEN_END_COLUMNS[table]).open_max_days
            for value, days in om.rows():
                rows.append(dict(table_name=table, detail=value, end_rule="cap", max_days=days))
            if om.by is not None:  # values without a maximum: the last day of data
                rows.append(dict(table_name=table, detail=None, end_rule="data_end",
                                 max_days=None))
        else:
            rows.append(dict(table_name=table, detail=None, end_rule="cap", max_days=int(rule)))
    return rows


def drug_list_path(params: dict[str, Any]) -> Path:
    path = Path(params["drug_list"])
    return path if path.is_absolute() else PROJ_ROOT / path


def read_drug_list(path: Path) -> list[dict[str, Any]]:
    """Read and check the drug reference list (key ``(drug, route)``)."""
    if not path.exists():
        raise OdevalError("drug reference list not found", rule="derive.drug_list.missing",
                          file=path)
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = sorted(set(_REF_COLUMNS) - set(reader.fieldnames or ()))
        if missing:
            raise OdevalError(f"drug reference list lacks columns {missing}",
                              rule="derive.drug_list.columns", file=path)
        rows = []
        for i, raw in enumerate(reader, start=2):
            row: dict[str, Any] = {}
            for col, typ in _REF_COLUMNS.items():
                value = (raw[col] or "").strip()
                if typ == "DOUBLE":
                    row[col] = float(value) if value else None
                elif typ == "BOOLEAN":
                    if value.lower() not in ("true", "false"):
                        raise OdevalError(f"antipsychotic must be true or false, got {value!r}",
                                          rule="derive.drug_list.value", file=path, row=i,
                                          column=col)
                    row[col] = value.lower() == "true"
                else:
                    row[col] = value or None
            if not row["drug"] or row["drug"] != row["drug"].lower():
                raise OdevalError("drug must be a non-empty lower-case name",
                                  rule="derive.drug_list.value", file=path, row=i, column="drug")
            rows.append(row)
    seen: dict[tuple[str, str], int] = {}
    kind: dict[str, bool] = {}
    for row in rows:
        key = (row["drug"], row["route"])
        if key in seen:
            raise OdevalError(f"duplicate (drug, route) {key}", rule="derive.drug_list.key",
                              file=path)
        seen[key] = 1
        if kind.setdefault(row["drug"], row["antipsychotic"]) != row["antipsychotic"]:
            raise OdevalError(f"{row['drug']}: antipsychotic differs between routes",
                              rule="derive.drug_list.value", file=path)
    return rows


_OPEN_END_COLUMNS = {"table_name": "VARCHAR", "detail": "VARCHAR", "end_rule": "VARCHAR",
                     "max_days": "BIGINT"}


_DEFINITION_COLUMNS = {"name": "VARCHAR", "value": "VARCHAR"}


def reference_relations(params: dict[str, Any]) -> dict[str, tuple[dict[str, str], list[dict]]]:
    """``{name: (columns with DuckDB types, rows)}`` of the reference relations the SQL reads
    (``derived.ref_drugs``, ``derived.ref_open_end``) and ``derived.ref_definitions``: every
    resolved parameter (value as JSON), so that what reads the derived tables (metrics,
    report) names the definitions they were built with, from the parameters."""
    definitions = [dict(name=k, value=json.dumps(v, sort_keys=True)) for k, v in sorted(params.items())]
    return {"ref_drugs": (_REF_COLUMNS, read_drug_list(drug_list_path(params))),
            "ref_open_end": (_OPEN_END_COLUMNS, open_end_rows(params)),
            "ref_definitions": (_DEFINITION_COLUMNS, definitions)}


def definitions(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """The derive parameters ``derived.*`` was built with (``derived.ref_definitions``);
    the defaults where a warehouse predates that table."""
    try:
        rows = con.execute("select name, value from derived.ref_definitions").fetchall()
    except duckdb.Error:
        rows = []
    return {**resolve_params(None), **{k: json.loads(v) for k, v in rows}}


def _load_reference(con: duckdb.DuckDBPyConnection, name: str, columns: dict[str, str],
                    rows: list[dict[str, Any]]) -> None:
    cols = ", ".join(f"{c} {t}" for c, t in columns.items())
    con.execute(f"CREATE OR REPLACE TABLE derived.{name} ({cols})")
    if rows:
        marks = ", ".join("?" for _ in columns)
        con.executemany(f"INSERT INTO derived.{name} VALUES ({marks})",
                        [[r[c] for c in columns] for r in rows])


_COMMENT = re.compile(r"--[^\n]*")
_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_DERIVED_REF = re.compile(r"\bderived\.([A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE)


def _code(sql: str) -> str:
    """The SQL without ``--`` comments (our files put no ``--`` inside string literals)."""
    return _COMMENT.sub("", sql)


def load_relations(sql_dir: Path = DERIVE_SQL_DIR) -> dict[str, str]:
    """``{relation name: SELECT text}`` in dependency order."""
    files = {p.stem: p.read_text(encoding="utf-8") for p in sorted(sql_dir.glob("*.sql"))}
    graph: dict[str, set[str]] = {}
    for name, sql in files.items():
        deps = {d.lower() for d in _DERIVED_REF.findall(_code(sql))} - {name}
        unknown = deps - set(files) - set(REFERENCES)
        if unknown:
            raise OdevalError(f"{name}.sql reads unknown relations {sorted(unknown)}",
                              rule="derive.sql.dependency", file=sql_dir / f"{name}.sql")
        graph[name] = deps & set(files)
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise OdevalError(f"cyclic dependency between derive SQL files: {exc.args[1]}",
                          rule="derive.sql.cycle", file=sql_dir) from None
    return {name: files[name] for name in order}


def bind_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """The resolved parameters the SQL can bind (``$name``): scalars and lists; the drug list
    and ``open_end`` reach the SQL as reference relations instead."""
    return {k: v for k, v in params.items() if k not in ("drug_list", "open_end")}


def sql_parameters(sql: str) -> list[str]:
    """Names of the ``$name`` parameters a SQL text uses (comments ignored)."""
    return sorted(set(_PARAM.findall(_code(sql))))


def _check_clean(con: duckdb.DuckDBPyConnection) -> None:
    from pipeline.schemas import TABLE_ORDER

    have = {r[0] for r in con.execute(
        "select table_name from information_schema.tables where table_schema = 'clean'"
    ).fetchall()}
    missing = [t for t in TABLE_ORDER if t not in have]
    if missing:
        raise OdevalError(f"clean tables missing: {missing}; run `odeval validate` first",
                          rule="derive.clean.missing")


def derive(
    con: duckdb.DuckDBPyConnection,
    params: dict | None = None,
    progress: Progress | None = None,
) -> dict:
    """Build the ``derived`` schema from ``clean``.

    Parameters
    ----------
    con : an open DuckDB connection holding ``clean.<table>`` for every contract table.
    params : the ``derive:`` section of params.yaml; merged over :data:`DEFAULTS`.
    progress : optional callback ``progress(done, total, description)`` per relation.

    Returns
    -------
    dict with ``rows`` (``{relation: row count}`` for every derived relation),
    ``unknown_drugs`` (``[{drug, n_prescriptions, n_people}]``, also in
    ``derived.unknown_drugs``) and ``params`` (the parameters used).
    """
    p = resolve_params(params)
    refs = reference_relations(p)
    relations = load_relations()
    absent = [name for name in OUTPUTS if name not in relations]
    if absent:
        raise OdevalError(f"derive SQL files missing for {absent}", rule="derive.sql.missing",
                          file=DERIVE_SQL_DIR)
    bind = bind_parameters(p)
    for name, sql in relations.items():
        missing = [n for n in sql_parameters(sql) if n not in bind]
        if missing:
            raise OdevalError(f"{name}.sql uses unknown parameters {missing}",
                              rule="derive.sql.parameter", file=DERIVE_SQL_DIR / f"{name}.sql")

    from pipeline import runstate

    runstate.require(con, ["validate"], command="derive")
    _check_clean(con)
    total = len(relations) + len(refs)
    with transaction(con):  # all or nothing; a full disk becomes a clear error
        con.execute("CREATE SCHEMA IF NOT EXISTS derived")
        for i, (name, (columns, rows)) in enumerate(refs.items(), start=1):
            _load_reference(con, name, columns, rows)
            if progress:
                progress(i, total, name)
        for i, (name, sql) in enumerate(relations.items(), start=len(refs) + 1):
            body = sql.strip().rstrip(";")
            used = {n: bind[n] for n in sql_parameters(sql)}
            con.execute(f"CREATE OR REPLACE TABLE derived.{name} AS\n{body}\n", used)
            if progress:
                progress(i, total, name)
        runstate.record(con, "derive", p)

    rows = {name: con.execute(f"select count(*) from derived.{name}").fetchone()[0]
            for name in [*refs, *relations]}
    unknown = [
        {"drug": d, "n_prescriptions": n, "n_people": k}
        for d, n, k in con.execute(
            "select drug, n_prescriptions, n_people from derived.unknown_drugs order by drug"
        ).fetchall()
    ]
    return {"rows": rows, "unknown_drugs": unknown, "params": p}


# --------------------------------------------------------------------------- dictionary
_HEADER_FIELD = re.compile(r"^(name|grain|key|parameters):\s*(.*)$")
_COLUMN_NOTE = re.compile(r"(?:\bas\s+)?\b([a-z_][a-z0-9_]*)\s*,?\s*--\s*(.+)$", re.IGNORECASE)


def relation_headers(sql_dir: Path = DERIVE_SQL_DIR) -> dict[str, dict[str, Any]]:
    """What each derive SQL file's header says: ``{stem: {relation, grain, key, parameters,
    description, notes}}``, in file-name order. ``key`` is the list of key columns (a
    parenthesised aside dropped), ``description`` the header's prose, ``notes`` the
    comments written beside the columns of its SELECTs (``event, -- 0 censored, ...``; the
    last one per column, the final SELECT's) and the header's own column lines
    (``-- time_days  the event day ...``)."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(sql_dir.glob("*.sql")):
        lines = path.read_text(encoding="utf-8").splitlines()
        head: list[str] = []
        for ln in lines:
            if not ln.startswith("--"):
                break
            head.append(ln[2:].removeprefix(" "))
        fields: dict[str, str] = {}
        prose: list[str] = []
        last = None
        for ln in head:
            m = _HEADER_FIELD.match(ln)
            if m:
                last = m.group(1)
                fields[last] = m.group(2).strip()
            elif last == "parameters" and ln.startswith(" ") and ln.strip():
                fields[last] += " " + ln.strip()  # a parameter list wrapped onto more lines
            else:
                last = None
                prose.append(ln)
        notes: dict[str, str] = {}
        for ln in lines[len(head):]:
            code, sep, comment = ln.partition("--")
            m = _COLUMN_NOTE.search(code.rstrip() + " -- " + comment.strip()) if sep else None
            if m and code.strip():
                notes[m.group(1).lower()] = comment.strip()
        header_cols: dict[str, str] = {}
        current: list[str] = []
        indent = 0
        for ln in prose:  # "  column   text", continued by lines indented past the name
            here = len(ln) - len(ln.lstrip())
            m = re.match(r"^\s*([a-z_][a-z0-9_]*(?:, [a-z_][a-z0-9_]*)*)(?:\s{2,}(\S.*))?$", ln)
            if current and ln.strip() and here > indent + 1:
                for c in current:
                    header_cols[c] = (header_cols[c] + " " + ln.strip()).strip()
            elif m and (m.group(2) or "_" in m.group(1)):
                current, indent = m.group(1).split(", "), here
                for c in current:
                    header_cols[c] = (m.group(2) or "").strip()
            else:
                current = []
        key = re.sub(r"\(([^()]*,[^()]*)\)", r"\1", fields.get("key", ""))  # (a, b) -> a, b
        key = re.sub(r"\s*\([^()]*\)", "", key)  # an aside: "source_id (detention_id)"
        out[path.stem] = {
            "relation": fields.get("name", f"derived.{path.stem}"),
            "grain": fields.get("grain", ""),
            "key": [k.strip() for k in key.split(",") if k.strip()],
            "parameters": fields.get("parameters", ""),
            "description": " ".join(" ".join(prose).split()),
            "notes": {c: " ".join(t.split()) for c, t in {**notes, **header_cols}.items()},
        }
    return out


def data_dictionary(con: duckdb.DuckDBPyConnection, *, intermediate: bool = False):
    """The derived tables, column by column: ``table, grain, key, column, type,
    description`` (a pandas DataFrame), from the SQL files' headers and the warehouse's
    own column types. ``intermediate=True`` adds the ``int_*`` relations. A column without
    a description in the SQL gets derived.people's for a column of that name (the person's
    columns every table carries), else an empty one (the SQL is still its definition)."""
    import pandas as pd

    headers = relation_headers()
    person = headers.get("people", {}).get("notes", {})
    types = con.execute(
        "select table_name, column_name, data_type from information_schema.columns "
        "where table_schema = 'derived' order by table_name, ordinal_position").fetchall()
    rows = []
    for table, column, dtype in types:
        h = headers.get(table)
        if h is None or (table.startswith("int_") and not intermediate):
            continue
        rows.append({"table": table, "grain": h["grain"], "key": ", ".join(h["key"]),
                     "column": column, "type": dtype,
                     "description": h["notes"].get(column.lower())
                     or person.get(column.lower(), "")})
    return pd.DataFrame(rows, columns=["table", "grain", "key", "column", "type",
                                       "description"])
