"""Injected faults: every listed row breaks its rule, unlisted rows are clean, row numbers
point at the faulty rows in both formats, NHS numbers pass Modulus 11."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline.schemas import load_contract
from pipeline.synth import generate_study, nhs
from pipeline.synth.faults import TYPE_FAULT_COLUMNS
from pipeline.synth.study import EXTRACT_DATE

C = load_contract()
BOOL = {"true", "false", "1", "0", "yes", "no"}


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    csv_out = tmp_path_factory.mktemp("faulty_csv")
    pq_out = tmp_path_factory.mktemp("faulty_pq")
    kw = dict(people=700, sites=4, seed=21, faults=0.04, nhs_numbers=True)
    generate_study(csv_out, fmt="csv", **kw)
    generate_study(pq_out, fmt="parquet", **kw)
    raw = {t: pd.read_csv(csv_out / f"{t}.csv", dtype=str, keep_default_na=False) for t in C}
    faults = pd.read_csv(csv_out / "faults.csv", dtype=str, keep_default_na=False)
    return csv_out, pq_out, raw, faults


def _parses(ctype: str, v: str) -> bool:
    v = v.strip()
    try:
        if ctype == "date":
            return bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", v)) and dt.date.fromisoformat(v) is not None
        if ctype == "timestamp":
            return bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?", v)) and \
                dt.datetime.fromisoformat(v) is not None
        if ctype == "int":
            return bool(re.fullmatch(r"-?\d+", v))
        if ctype == "float":
            float(v)
            return True
        if ctype == "bool":
            return v.lower() in BOOL
    except ValueError:
        return False
    return True


def _value(ctype, v):
    if ctype == "date":
        return dt.date.fromisoformat(v)
    if ctype == "timestamp":
        return dt.datetime.fromisoformat(v)
    return float(v)


_DUPS: dict = {}
_REFS: dict = {}


def _refset(raw, rt, rc):
    if (rt, rc, id(raw[rt])) not in _REFS:
        _REFS[(rt, rc, id(raw[rt]))] = set(raw[rt][rc])
    return _REFS[(rt, rc, id(raw[rt]))]


def _dups(table, df):
    """(row is an exact copy of an earlier row, row's key has rows with different values)."""
    if (table, id(df)) not in _DUPS:
        key = list(C[table].key)
        whole = pd.util.hash_pandas_object(df, index=False)
        variants = whole.groupby([df[k] for k in key]).transform("nunique")
        _DUPS[(table, id(df))] = (df.duplicated(keep="first").to_numpy(), (variants > 1).to_numpy())
    return _DUPS[(table, id(df))]


def _quarantined(faults, table):
    f = faults[(faults["table"] == table) & (faults["expect"] == "quarantine")
               & (faults["rule"] != f"{table}.key.duplicate")]
    return set(f["key"])


def _breaks(rule: str, expect: str, table: str, i: int, raw, quarantined_people, quarantined_contacts) -> bool:
    df = raw[table]
    row = df.iloc[i]
    t = C[table]
    if rule == "people.person_id.nhs_number":
        return nhs.is_valid(row["person_id"])
    if rule == f"{table}.key.duplicate":
        return bool(_dups(table, df)[0][i])
    if rule == f"{table}.key.conflict":
        return bool(_dups(table, df)[1][i])
    if rule == f"{table}.person_id.person_quarantined":
        return row["person_id"] in quarantined_people
    if rule == "contact_staff.contact_id.contact_quarantined":
        return row["contact_id"] in quarantined_contacts
    if rule == "people.birth_year_not_after_index":
        return int(row["birth_year"]) > int(row["index_date"][:4])
    _, col, kind = rule.split(".")
    c = t.column(col)
    v = row[col]
    if kind == "vocabulary":
        norm = v.strip().lower()
        return (norm not in c.vocabulary) if expect == "quarantine" else (norm in c.vocabulary and v != norm)
    if kind == "type":
        return v != "" and not _parses(c.type, v)
    if kind == "required":
        return v == ""
    if kind == "range":
        x = float(v)
        return (c.min is not None and x < c.min) or (c.max is not None and x > c.max) or \
            (c.min_exclusive is not None and x <= c.min_exclusive)
    if kind == "not_before":
        ref = row[c.not_before]
        return _value(c.type, v[:10] if c.type == "date" else v) < _value(t.column(c.not_before).type, ref) \
            if c.type == t.column(c.not_before).type else \
            dt.date.fromisoformat(v[:10]) < dt.date.fromisoformat(ref[:10])
    if kind == "reference":
        rt, rc = c.references
        return v != "" and v not in _refset(raw, rt, rc)
    if kind == "after_extract":
        return dt.date.fromisoformat(v[:10]) > EXTRACT_DATE
    raise AssertionError(f"unknown rule {rule}")


def test_every_listed_fault_breaks_its_rule(faulty):
    _, _, raw, faults = faulty
    assert len(faults) > 0
    qp = {k.split("|")[1] for k in _quarantined(faults, "people")}
    qc = _quarantined(faults, "contacts")
    assert not faults.duplicated(["table", "row_number"]).any()  # at most one fault per row
    kinds = set()
    for f in faults.itertuples():
        i = int(f.row_number) - 1
        df = raw[f.table]
        assert 0 <= i < len(df)
        assert f.key == "|".join(df[k].iat[i] for k in C[f.table].key), (f.table, f.row_number)
        assert _breaks(f.rule, f.expect, f.table, i, raw, qp, qc), f
        kinds.add(f.rule.split(".")[-1] if f.rule.count(".") == 2 else f.rule)
    assert {"vocabulary", "type", "required", "range", "not_before", "reference", "duplicate", "conflict",
            "after_extract", "person_quarantined", "contact_quarantined", "nhs_number"} <= kinds
    assert set(faults["expect"]) == {"quarantine", "accept", "fatal"}
    assert set(faults["origin"]) == {"injected", "cascade"}


def test_unlisted_rows_are_clean(faulty):
    """faults.csv is complete: every row it does not list passes the contract's row rules."""
    _, _, raw, faults = faulty
    for table, t in C.items():
        df = raw[table]
        listed = set(faults.loc[faults["table"] == table, "row_number"].astype(int) - 1)
        clean = df.iloc[sorted(set(range(len(df))) - listed)]
        for c in t.columns:
            s = clean[c.name]
            if c.required:
                assert (s != "").all(), (table, c.name)
            s = s[s != ""]
            if c.vocabulary is not None:
                assert s.isin(c.vocabulary).all(), (table, c.name)
            assert s.map(lambda v: _parses(c.type, v)).all(), (table, c.name)
            if c.references:
                rt, rc = c.references
                assert s.isin(set(raw[rt][rc])).all(), (table, c.name)
            if c.type in ("date", "timestamp"):
                assert (s.str[:10] <= EXTRACT_DATE.isoformat()).all(), (table, c.name)
            if c.not_before:
                ref = clean.loc[s.index, c.not_before]
                assert (s.str[:19] >= ref.str[:19]).all(), (table, c.name)
        assert not clean.duplicated(list(t.key)).any(), table


def test_fault_rate_and_cascades(faulty):
    _, _, raw, faults = faulty
    inj = faults[(faults["origin"] == "injected") & (faults["expect"] != "fatal")]
    for table in ("contacts", "contact_staff", "employment"):
        share = (inj["table"] == table).sum() / len(raw[table])
        assert 0.025 < share < 0.06, (table, share)
    # every event row of a quarantined person is listed as a cascade
    qp = {k.split("|")[1] for k in _quarantined(faults, "people")}
    assert qp
    for table in ("contacts", "employment", "referrals"):
        rows = raw[table].index[raw[table]["person_id"].isin(qp)] + 1
        listed = faults[(faults["table"] == table) & (faults["rule"] == f"{table}.person_id.person_quarantined")]
        assert set(rows) == set(listed["row_number"].astype(int)), table


def test_parquet_faults_match_csv(faulty):
    csv_out, pq_out, raw, faults = faulty
    assert (csv_out / "faults.csv").read_bytes() == (pq_out / "faults.csv").read_bytes()
    for table, t in C.items():
        tbl = pq.read_table(pq_out / f"{table}.parquet")
        for c in TYPE_FAULT_COLUMNS.get(table, ()):
            assert str(tbl.schema.field(c).type) == "string", (table, c)
        assert tbl.num_rows == len(raw[table])
        keys = tbl.select(list(t.key)).to_pandas()
        f = faults[faults["table"] == table]
        for r in f.itertuples():
            row = keys.iloc[int(r.row_number) - 1]
            vals = [v.isoformat() if hasattr(v, "isoformat") else str(v) for v in row]
            assert r.key == "|".join(vals)


def test_nhs_numbers(tmp_path):
    generate_study(tmp_path, people=300, sites=2, seed=4, nhs_numbers=True)
    faults = pd.read_csv(tmp_path / "faults.csv", dtype=str)
    assert set(faults["rule"]) == {"people.person_id.nhs_number"}
    assert set(faults["expect"]) == {"fatal"}
    ppl = pd.read_parquet(tmp_path / "people.parquet")
    nums = ppl.loc[ppl["person_id"].str.fullmatch(r"\d{10}"), "person_id"]
    assert len(nums) == 3 and all(nhs.is_valid(v) for v in nums)
    assert set(nums) == set(faults["key"].str.split("|").str[1])
    rows = ppl.index[ppl["person_id"].isin(nums)] + 1
    assert set(rows) == set(faults["row_number"].astype(int))
    # their event rows carry the same number
    contacts = pd.read_parquet(tmp_path / "contacts.parquet")
    assert contacts["person_id"].isin(nums).any()


def test_modulus11_helper():
    assert nhs.is_valid("9434765919")        # the NHS's published example number
    assert not nhs.is_valid("9434765918")
    assert not nhs.is_valid("943476591")
    assert nhs.check_digit("943476591") == 9
    rng = np.random.default_rng(1)
    nums = nhs.generate(rng, 50)
    assert len(set(nums)) == 50 and all(nhs.is_valid(x) and x.startswith("999") for x in nums)
