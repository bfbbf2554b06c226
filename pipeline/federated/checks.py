"""A bundle checked on read (:func:`read_bundle`): the manifest, sha256s, columns and
types, values, keys and totals; each violation an error naming the file and a rule
``bundle.<file>.<check>``."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import OdevalError, existing_folder
from pipeline.federated.bundle import (
    BUNDLE_SCHEMA,
    FIDELITY,
    FIDELITY_KINDS,
    MANIFEST,
    MEASURES,
    RISK_SETS,
    SCHEMA_VERSION,
    SITE_EFFECTS,
    TABLE_ONE,
    TABLE_ONE_KINDS,
    VALIDATION_RULES,
    VALIDATION_TABLES,
    _sha256,
    with_n_risk)


# --------------------------------------------------------------------------- read and check

def _refuse(path: Path, name: str, message: str, check: str) -> OdevalError:
    stem = name.removesuffix(".parquet").removesuffix(".json")
    return OdevalError(message, rule=f"bundle.{stem}.{check}", file=path / name)


def _read_manifest(path: Path) -> dict[str, Any]:
    existing_folder(path, rule="bundle.manifest.missing", what="bundle folder")
    mf = path / MANIFEST
    if not mf.is_file():
        raise _refuse(path, MANIFEST, "not a bundle: manifest.json missing", "missing")
    try:
        manifest = json.loads(mf.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _refuse(path, MANIFEST, f"manifest.json is not valid JSON: {exc}", "invalid") from None
    types = {"bundle_schema_version": int, "site": str, "params_hash": str, "files": dict,
             "analysis_settings": dict, "disclosure_settings": dict}
    if not isinstance(manifest, dict):
        raise _refuse(path, MANIFEST, "manifest.json is not a JSON object", "invalid")
    missing = sorted(set(types) - set(manifest))
    if missing:
        raise _refuse(path, MANIFEST, f"manifest.json lacks {missing}", "invalid")
    bad = sorted(k for k, t in types.items() if not isinstance(manifest[k], t)
                 or (t is int and isinstance(manifest[k], bool)))
    if bad:
        raise _refuse(path, MANIFEST, f"manifest.json: wrong type of {bad}", "invalid")
    return manifest


def _read_table(path: Path, name: str) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path / name)
    except Exception as exc:  # noqa: BLE001 - any reader error means the same to a person
        raise _refuse(path, name, f"not a readable Parquet file: {exc}", "schema") from None
    got = [(f.name, str(f.type)) for f in schema]
    want = list(BUNDLE_SCHEMA[name].items())
    if got != want:
        raise _refuse(path, name, f"columns and types {got}, expected {want}", "schema")
    return pq.read_table(path / name).to_pandas()


def _check_values(path: Path, name: str, df: pd.DataFrame, nullable: Sequence[str] = ()) -> None:
    for col, typ in BUNDLE_SCHEMA[name].items():
        x = df[col]
        if col not in nullable and x.isna().any():
            raise _refuse(path, name, f"column {col}: {int(x.isna().sum())} null value(s)",
                          "values")
        if typ == "int64" and (x < 0).any():
            raise _refuse(path, name, f"column {col}: negative count(s)", "values")
        if typ == "double":
            v = x.dropna().to_numpy(float)
            if not np.all(np.isfinite(v)):
                raise _refuse(path, name, f"column {col}: infinite value(s)", "values")


def _check_key(path: Path, name: str, df: pd.DataFrame, key: list[str]) -> None:
    dup = df.duplicated(key, keep=False)
    if dup.any():
        first = df[dup].iloc[0][key].tolist()
        raise _refuse(path, name, f"{int(dup.sum())} rows share a key {key}, e.g. {first}", "key")


def _check_vocab(path: Path, name: str, df: pd.DataFrame, col: str, allowed) -> None:
    bad = sorted(set(df[col]) - set(allowed))
    if bad:
        raise _refuse(path, name, f"column {col}: unknown value(s) {bad[:5]}; expected one of "
                      f"{sorted(allowed)}", "values")


def _adds_up(total: float, parts: Sequence[float], base: int) -> bool:
    """Exact counts add up exactly; counts each rounded to ``base`` may differ from their
    rounded total by up to half a base per term."""
    if base <= 1:
        return int(total) == int(sum(parts))
    return abs(total - sum(parts)) <= (len(parts) + 1) * base / 2


def _moments_ok(n: float, s: float, s2: float) -> bool:
    """A sum of squares is at least the square of the sum over n (variance >= 0)."""
    if n <= 0:
        return s == 0 and s2 == 0
    return s2 >= s * s / n - 1e-9 * max(abs(s2), 1.0)


def check_bundle(path: Path, manifest: dict[str, Any], t: dict[str, pd.DataFrame]) -> None:
    """The totals and consistency rules of one bundle (rules ``bundle.<file>.<check>``)."""
    settings, disc = manifest["analysis_settings"], manifest["disclosure_settings"]
    arms = {settings.get("reference_arm"), settings.get("comparison_arm")}
    base = int(disc.get("round_to", 1)) if disc.get("round_counts") else 1
    step = int(disc.get("curve_step", 1)) if disc.get("round_risk_sets") else 1

    # table_one: the arms' people, each variable adding up to them
    t1 = t[TABLE_ONE]
    _check_values(path, TABLE_ONE, t1, nullable=("value_sum", "value_sum2"))
    _check_vocab(path, TABLE_ONE, t1, "kind", TABLE_ONE_KINDS)
    _check_vocab(path, TABLE_ONE, t1, "arm", arms)
    _check_key(path, TABLE_ONE, t1, ["variable", "kind", "arm", "level"])
    people = t1[t1["kind"] == "people"].set_index("arm")["n"].to_dict()
    variables = sorted(set(t1.loc[t1["kind"] != "people", "variable"]))
    if sorted(settings.get("table_one", [])) != variables or not people:
        raise _refuse(path, TABLE_ONE, f"variables {variables} (and people rows for "
                      f"{sorted(people)}); the manifest's analysis settings list "
                      f"{sorted(settings.get('table_one', []))}", "variables")
    cont = t1["kind"] == "continuous"
    sums = t1[["value_sum", "value_sum2"]]
    if sums[cont].isna().any().any() or sums[~cont].notna().any().any():
        raise _refuse(path, TABLE_ONE, "value_sum and value_sum2 must be given for continuous "
                      "rows and only for them", "values")
    for (var, arm), g in t1[t1["kind"] != "people"].groupby(["variable", "arm"], sort=True):
        kinds = set(g["kind"])
        if arm not in people:
            raise _refuse(path, TABLE_ONE, f"{var}: arm {arm} has no people row", "totals")
        if kinds & {"level"} and kinds & {"continuous", "value"} or "missing" not in kinds:
            raise _refuse(path, TABLE_ONE, f"{var}, arm {arm}: rows of kinds {sorted(kinds)}; a "
                          "variable is categorical (level, missing) or continuous (continuous, "
                          "missing, value)", "variables")
        miss = int(g.loc[g["kind"] == "missing", "n"].sum())
        if "continuous" in kinds:
            c = g[g["kind"] == "continuous"].iloc[0]
            if not _adds_up(people[arm], [int(c["n"]), miss], base):
                raise _refuse(path, TABLE_ONE, f"{var}, arm {arm}: n {int(c['n'])} + missing "
                              f"{miss} is not the arm's {people[arm]} people", "totals")
            if not _moments_ok(c["n"], c["value_sum"], c["value_sum2"]):
                raise _refuse(path, TABLE_ONE, f"{var}, arm {arm}: value_sum2 is less than "
                              "value_sum^2 / n (a negative variance)", "moments")
            vals = g[g["kind"] == "value"]
            if len(vals):
                if not _adds_up(int(c["n"]), list(vals["n"]), base):
                    raise _refuse(path, TABLE_ONE, f"{var}, arm {arm}: people per value add up "
                                  f"to {int(vals['n'].sum())}, not n {int(c['n'])}", "totals")
                x = pd.to_numeric(vals["level"], errors="coerce").to_numpy(float)
                if not np.all(np.isfinite(x)):
                    raise _refuse(path, TABLE_ONE, f"{var}: value levels must be numbers",
                                  "values")
                if base == 1 and not (
                        math.isclose(float(np.dot(x, vals["n"])), c["value_sum"],
                                     rel_tol=1e-9, abs_tol=1e-9)
                        and math.isclose(float(np.dot(x * x, vals["n"])), c["value_sum2"],
                                         rel_tol=1e-9, abs_tol=1e-9)):
                    raise _refuse(path, TABLE_ONE, f"{var}, arm {arm}: the people per value do "
                                  "not give value_sum and value_sum2", "moments")
        else:
            levels = list(g.loc[g["kind"] == "level", "n"])
            if not _adds_up(people[arm], [*levels, miss], base):
                raise _refuse(path, TABLE_ONE, f"{var}, arm {arm}: levels ({sum(levels)}) + "
                              f"missing ({miss}) is not the arm's {people[arm]} people", "totals")

    # risk_sets: n_risk what the counts imply; at the first time, the arm's people
    risk = t[RISK_SETS]
    _check_values(path, RISK_SETS, risk)
    _check_vocab(path, RISK_SETS, risk, "arm", arms)
    _check_key(path, RISK_SETS, risk, ["outcome", "arm", "time"])
    leaving = risk["n_event"] + risk["n_competing"] + risk["n_censor"]
    if (leaving == 0).any():
        raise _refuse(path, RISK_SETS, "a time with no event, death or censoring", "values")
    ordered = risk.sort_values(["outcome", "arm", "time"], kind="mergesort").reset_index(drop=True)
    if not ordered.equals(with_n_risk(risk.drop(columns="n_risk"))):
        raise _refuse(path, RISK_SETS, "n_risk does not fall by the events, deaths and "
                      "censorings of each time (n_risk = those leaving at or after it)", "n_risk")
    first = ordered.groupby(["outcome", "arm"], sort=True)["n_risk"].first()
    for outcome in sorted(set(ordered["outcome"])):
        for arm, n in sorted(people.items()):
            got = int(first.get((outcome, arm), 0))
            # rounding: the table's count by up to base/2, the risk sets' by step/2 per status
            tol = (base / 2 if base > 1 else 0) + (3 * step / 2 if step > 1 else 0)
            ok = abs(got - n) <= tol
            if not ok:
                raise _refuse(path, RISK_SETS, f"{outcome}, arm {arm}: {got} at risk at the first "
                              f"time, but the arm has {n} people (table_one)", "arm_n")

    # site_effects: the three measures; variance = se^2; counts within the site
    se = t[SITE_EFFECTS]
    _check_values(path, SITE_EFFECTS, se, nullable=("estimate", "se", "variance"))
    _check_key(path, SITE_EFFECTS, se, ["outcome", "measure"])
    got = sorted(zip(se["outcome"], se["measure"], se["scale"]))
    if got != sorted(MEASURES):
        raise _refuse(path, SITE_EFFECTS, f"measures {got}, expected {sorted(MEASURES)}",
                      "measures")
    for _, r in se.iterrows():
        what = f"{r.outcome} {r.measure}"
        if pd.notna(r.estimate):
            if not (pd.notna(r.se) and r.se > 0 and pd.notna(r.variance)
                    and math.isclose(r.variance, r.se ** 2, rel_tol=1e-9)):
                raise _refuse(path, SITE_EFFECTS, f"{what}: variance {r.variance!r} is not the "
                              f"square of a positive se {r.se!r}", "variance")
        elif pd.notna(r.se) or pd.notna(r.variance) or not str(r.note).strip():
            raise _refuse(path, SITE_EFFECTS, f"{what}: no estimate, so no se or variance, and "
                          "a note saying why", "variance")
        total = sum(people.values())
        tol = (len(people) + 1) * base / 2 if base > 1 else 0
        if r.n > total + tol or (r.measure != "log rate ratio" and r.n_events > r.n):
            raise _refuse(path, SITE_EFFECTS, f"{what}: n {r.n}, n_events {r.n_events} for a "
                          f"site of {total} people", "n")
    hr = se[se["measure"] == "log hazard ratio"].iloc[0]
    relapses = int(risk.loc[risk["outcome"] == "relapse", "n_event"].sum())
    if base == 1 and step == 1 and relapses and int(hr.n_events) != relapses:
        raise _refuse(path, SITE_EFFECTS, f"relapse log hazard ratio: n_events {hr.n_events}, "
                      f"but the risk sets have {relapses} relapses", "n")

    # fidelity: numerators within denominators
    f = t[FIDELITY]
    _check_values(path, FIDELITY, f)
    _check_vocab(path, FIDELITY, f, "indicator", FIDELITY_KINDS)
    _check_vocab(path, FIDELITY, f, "arm", arms)
    _check_key(path, FIDELITY, f, ["indicator", "arm"])
    for _, r in f.iterrows():
        what = f"{r.indicator}, arm {r.arm}"
        if r.kind != FIDELITY_KINDS[r.indicator]:
            raise _refuse(path, FIDELITY, f"{what}: kind {r.kind}, expected "
                          f"{FIDELITY_KINDS[r.indicator]}", "values")
        if r.kind in ("binary", "share") and not (
                0 <= r.value_sum <= r.n_referrals * (1 + 1e-12)):
            raise _refuse(path, FIDELITY, f"{what}: numerator {r.value_sum:g} outside 0.."
                          f"{r.n_referrals} referrals", "numerator")
        if r.kind == "binary" and not (r.value_sum == round(r.value_sum)
                                       and r.value_sum2 == r.value_sum):
            raise _refuse(path, FIDELITY, f"{what}: a binary indicator's numerator must be a "
                          "whole count equal to its sum of squares", "numerator")
        if not _moments_ok(r.n_referrals, r.value_sum, r.value_sum2) or (
                base == 1 and r.kind == "share" and r.value_sum2 > r.value_sum * (1 + 1e-12)):
            raise _refuse(path, FIDELITY, f"{what}: sum of squares {r.value_sum2:g} impossible "
                          f"for {r.n_referrals} values summing to {r.value_sum:g}", "moments")

    # validation: raw = clean + quarantined; rules within quarantined
    vt, vr = t[VALIDATION_TABLES], t[VALIDATION_RULES]
    _check_values(path, VALIDATION_TABLES, vt)
    _check_key(path, VALIDATION_TABLES, vt, ["table_name"])
    _check_values(path, VALIDATION_RULES, vr)
    _check_key(path, VALIDATION_RULES, vr, ["table_name", "rule_id"])
    for _, r in vt.iterrows():
        if not _adds_up(r.n_raw, [r.n_clean, r.n_quarantined], base):
            raise _refuse(path, VALIDATION_TABLES, f"{r.table_name}: {r.n_raw} rows received, "
                          f"but {r.n_clean} clean + {r.n_quarantined} quarantined", "totals")
    quarantined = vt.set_index("table_name")["n_quarantined"].to_dict()
    for table, g in vr.groupby("table_name", sort=True):
        if table not in quarantined:
            raise _refuse(path, VALIDATION_RULES, f"rules of table {table}, which "
                          "validation_tables does not list", "totals")
        q, tol = quarantined[table], (base / 2 if base > 1 else 0)
        if (g["n_rows"] > q + tol).any() or g["n_rows"].sum() < q - tol * (len(g) + 1):
            raise _refuse(path, VALIDATION_RULES, f"{table}: rules quarantined {list(g['n_rows'])} "
                          f"rows, but the table has {q} quarantined (each rule at most that, "
                          "together at least that)", "totals")
    for table, q in quarantined.items():
        if q > base and table not in set(vr["table_name"]):
            raise _refuse(path, VALIDATION_RULES, f"{table}: {q} rows quarantined by no rule",
                          "totals")


def read_bundle(path: str | Path) -> dict[str, Any]:
    """Read and validate one bundle: manifest, files and their sha256, each file's columns
    and types, values, keys and totals (:func:`check_bundle`).

    Raises :class:`OdevalError` naming the bundle file and the rule broken
    (``bundle.<file>.<check>``): ``bundle.manifest.missing`` / ``invalid`` / ``files``,
    ``bundle.<file>.sha256``, ``.schema``, ``.values``, ``.key``, and per file
    ``risk_sets.n_risk`` / ``arm_n``, ``site_effects.measures`` / ``variance`` / ``n``,
    ``table_one.variables`` / ``totals`` / ``moments``, ``fidelity.numerator`` /
    ``moments``, ``validation_tables.totals``, ``validation_rules.totals``.
    """
    path = Path(path)
    manifest = _read_manifest(path)
    files = manifest["files"]
    if sorted(files) != sorted(BUNDLE_SCHEMA):
        raise _refuse(path, MANIFEST, f"the manifest lists files {sorted(files)}, a bundle of "
                      f"schema version {SCHEMA_VERSION} has {sorted(BUNDLE_SCHEMA)}", "files")
    extra = sorted(p.name for p in path.iterdir() if p.name != MANIFEST and p.name not in files)
    if extra:
        raise _refuse(path, MANIFEST, f"files not in the manifest: {extra}", "files")
    for name, sha in sorted(files.items()):
        if not (path / name).is_file():
            raise _refuse(path, MANIFEST, f"{name} listed in the manifest is missing", "files")
        if _sha256(path / name) != sha:
            raise _refuse(path, name, f"{name}: sha256 does not match the manifest (changed "
                          "after export)", "sha256")
    tables = {name: _read_table(path, name) for name in BUNDLE_SCHEMA}
    check_bundle(path, manifest, tables)
    return dict(path=path, manifest=manifest, tables=tables, risk_sets=tables[RISK_SETS],
                site_effects=tables[SITE_EFFECTS])
