"""Fault injection (``faults=RATE``, ``nhs_numbers``) and the ``faults.csv`` listing.

About RATE of the rows of every table get exactly one fault each (or a harmless
case/whitespace variant of a vocabulary value, which validation must accept). Every fault
is listed in ``faults.csv`` with the rule id of ``schemas/README.md`` that must catch it:

``table, row_number, key, rule, expect, origin``: row_number is the 1-based data row of
the written file (header excluded); key is the row's key values joined by ``|``; expect is
``quarantine``, ``accept`` (case variants) or ``fatal`` (NHS numbers); origin is
``injected`` or ``cascade``. Cascades: every event row of a person whose people row is
quarantined (``<table>.person_id.person_quarantined``) and every contact_staff row of a
quarantined contact (``contact_staff.contact_id.contact_quarantined``). Rows that
cascade are never given a fault of their own. A reference to a referral or staff row that
is itself faulted is *not* a cascade: the referenced row still exists in the extract (the
``reference`` rule asks whether any row of the referenced table has the value).

Faults draw from their own random streams, so the clean rows of a study with faults are
those of the same seed without faults (truth_people.parquet holds for the fault-free study).
In Parquet a column that carries typing faults (:data:`TYPE_FAULT_COLUMNS`) is written as a
string column (text as in CSV) whenever faults > 0.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.schemas import Table
from pipeline.synth import nhs
from pipeline.synth.writer import to_text

FAULT_COLUMNS = ["table", "row_number", "key", "rule", "expect", "origin"]

#: Columns that may carry unparseable values; written as strings in Parquet when faults > 0.
TYPE_FAULT_COLUMNS = {
    "people": ("birth_year", "data_end_date"),
    "staff": ("od_trained",),
    "referrals": ("accepted_at",),
    "contacts": ("start_at", "duration_min"),
    "admissions": ("discharged_on",),
    "detentions": ("end_on",),
    "crisis_episodes": ("end_on",),
    "prescriptions": ("daily_dose_mg", "end_on"),
}

WRONG_VOCAB = {
    "arm": ["OD", "TAU", "control"], "sex": ["F", "M", "x"],
    "diagnosis_group": ["schizophrenia", "F20", "psychotic"], "baseline_activity": ["student", "jobseeker"],
    "discharge_decided_by": ["team", "gp"], "contact_type": ["home visit", "group", "f2f"],
    "location": ["community", "gp surgery", "ward 3"], "admission_method": ["elective", "urgent"],
    "legal_section": ["s2", "section 3", "S136", "informal"], "route": ["im", "po", "injection"],
    "status": ["student", "sick", "job seeker"], "role": ["doctor", "rmn", "cpn"],
}

TYPE_VALUES = {
    "date": lambda v: [v.strftime("%d/%m/%Y") if v else "31/12/2023", "2023-02-30", "unknown", "2023-13-01"],
    "timestamp": lambda v: [v.strftime("%d/%m/%Y %H:%M") if v else "31/12/2023 14:00", "2023-02-30T10:00:00",
                            "not recorded"],
    "int": lambda v: ["12 min", "n/a", "?"],
    "float": lambda v: ["10mg", "ten", "n/a"],
    "bool": lambda v: ["maybe", "unknown", "?"],
}

AFTER_EXTRACT_SHIFT = dt.timedelta(days=27394)  # 75 years: a typo'd century, always after any extract date
QUARANTINE_KINDS = {"vocabulary", "not_before", "reference", "conflict", "range", "check", "type", "required",
                    "after_extract"}


def write_empty(path: Path) -> None:
    Path(path).write_text(",".join(FAULT_COLUMNS) + "\n", encoding="utf-8")


def _text(v) -> str:
    if v is None:
        return ""
    if isinstance(v, dt.datetime):
        return v.strftime("%Y-%m-%dT%H:%M:%S")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


class Injector:
    def __init__(self, st, contract: dict[str, Table], rate: float, nhs_numbers: bool):
        self.st = st
        self.contract = contract
        self.rate = float(rate)
        self.order = {name: i for i, name in enumerate(contract)}
        self.string_columns = {t: set(c) for t, c in TYPE_FAULT_COLUMNS.items()} if rate > 0 else {}
        self.records: list[tuple] = []
        self.orphan_counter = 0
        staff_ss, nhs_ss = st.study_fault_seed.spawn(2)
        self.staff_rng = np.random.default_rng(staff_ss)
        self.nhs = {}
        if nhs_numbers:
            rng = np.random.default_rng(nhs_ss)
            k = min(st.people, 3)
            who = np.sort(rng.choice(st.people, size=k, replace=False))
            self.nhs = dict(zip(who.tolist(), nhs.generate(rng, k)))

    # ------------------------------------------------------------------ public
    def inject_staff(self, tbl: pa.Table, offset: int) -> pa.Table:
        return self.inject_static("staff", tbl, offset)

    def inject_static(self, name: str, tbl: pa.Table, offset: int) -> pa.Table:
        """Faults for a table written once, not per chunk of people (staff, clusters); each
        draws from its own stream."""
        tbl = self._stringify(name, tbl)
        if self.rate <= 0:
            return tbl
        rng = self.staff_rng if name == "staff" else np.random.default_rng(
            self.st.study_fault_seed.spawn(1)[0])
        new, _ = self._inject_table(name, tbl, rng, offset, set())
        return new

    def inject_chunk(self, i: int, tables: dict[str, pa.Table], truth: pa.Table, offsets: dict[str, int]):
        from pipeline.synth.study import CHUNK_PEOPLE
        rng = np.random.default_rng(self.st.fault_seeds[i])
        tables = {n: self._stringify(n, t) for n, t in tables.items()}
        if self.nhs:
            g0 = i * CHUNK_PEOPLE
            swap = {f"P{g + 1:0{self.st.id_width}d}": num for g, num in self.nhs.items()
                    if g0 <= g < g0 + tables["people"].num_rows}
            if swap:
                tables = {n: self._swap_ids(t, swap) for n, t in tables.items()}
                truth = self._swap_ids(truth, swap)
        else:
            swap = {}
        nhs_rows = set(np.flatnonzero(np.isin(tables["people"].column("person_id").to_numpy(zero_copy_only=False),
                                              list(swap.values()))).tolist()) if swap else set()
        out = dict(tables)
        if self.rate > 0:
            people, bad_rows = self._inject_table("people", tables["people"], rng, offsets["people"], set(),
                                                  skip=nhs_rows)
            out["people"] = people
        else:
            people, bad_rows = tables["people"], []
        pids = people.column("person_id").to_pylist()
        sites = people.column("site_id").to_pylist()
        for r, p in enumerate(pids):
            if p in swap.values():
                self.records.append(("people", offsets["people"] + r + 1, f"{sites[r]}|{p}",
                                     "people.person_id.nhs_number", "fatal", "injected"))
        if self.rate <= 0:
            return out, truth
        bad_people = {people.column("person_id")[r].as_py() for r in bad_rows}
        bad_contacts: set[str] = set()
        for name in self.contract:
            if name in ("people", "staff", "clusters", "contact_staff"):
                continue
            t = tables[name]
            pid = t.column("person_id").to_numpy(zero_copy_only=False)
            protected = set(np.flatnonzero(np.isin(pid, list(bad_people))).tolist()) if bad_people else set()
            new, bad = self._inject_table(name, t, rng, offsets[name], protected,
                                          cascade_rule=f"{name}.person_id.person_quarantined")
            out[name] = new
            if name == "contacts":
                cid = new.column("contact_id")
                bad_contacts = {cid[r].as_py() for r in bad}
        cs = tables["contact_staff"]
        cid = cs.column("contact_id").to_numpy(zero_copy_only=False)
        protected = set(np.flatnonzero(np.isin(cid, list(bad_contacts))).tolist()) if bad_contacts else set()
        out["contact_staff"], _ = self._inject_table("contact_staff", cs, rng, offsets["contact_staff"], protected,
                                                     cascade_rule="contact_staff.contact_id.contact_quarantined")
        return out, truth

    def write(self, path: Path) -> dict:
        recs = sorted(self.records, key=lambda r: (self.order[r[0]], r[1], r[3]))
        with Path(path).open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(FAULT_COLUMNS)
            w.writerows(recs)
        counts: dict[str, int] = {}
        for r in recs:
            k = f"{r[3]}|{r[4]}|{r[5]}"
            counts[k] = counts.get(k, 0) + 1
        return dict(sorted(counts.items()))

    # ------------------------------------------------------------------ helpers
    def _stringify(self, name: str, tbl: pa.Table) -> pa.Table:
        cols = self.string_columns.get(name)
        if not cols:
            return tbl
        arrays = [to_text(tbl.column(c)) if c in cols and not pa.types.is_string(tbl.column(c).type)
                  else tbl.column(c) for c in tbl.column_names]
        return pa.Table.from_arrays(arrays, names=tbl.column_names)

    @staticmethod
    def _swap_ids(tbl: pa.Table, swap: dict) -> pa.Table:
        if "person_id" not in tbl.column_names:
            return tbl
        vals = [swap.get(v, v) for v in tbl.column("person_id").to_pylist()]
        i = tbl.column_names.index("person_id")
        return tbl.set_column(i, "person_id", pa.array(vals, pa.string()))

    def _kinds(self, t: Table) -> list[tuple[str, str | None]]:
        """(kind, column) pairs this table can carry."""
        key = set(t.key)
        referenced = {c.not_before for c in t.columns if c.not_before}
        ks: list[tuple[str, str | None]] = [("duplicate", None)]
        for c in t.columns:
            if c.vocabulary is not None:
                ks += [("vocabulary", c.name), ("case", c.name)]
            if c.not_before:
                ks.append(("not_before", c.name))
            # a reference to an optional table is checked only when the study writes it
            if c.references and (not self.contract[c.references[0]].optional
                                 or self.st.design == "cluster"):
                ks.append(("reference", c.name))
            if c.min is not None or c.max is not None or c.min_exclusive is not None:
                ks.append(("range", c.name))
            if c.name in TYPE_FAULT_COLUMNS.get(t.name, ()):
                ks.append(("type", c.name))
            if c.required and c.name not in key:
                ks.append(("required", c.name))
            if c.type in ("date", "timestamp") and c.name not in referenced and c.name not in TYPE_FAULT_COLUMNS.get(t.name, ()):
                ks.append(("after_extract", c.name))
        if any(c.name not in key for c in t.columns):
            ks.append(("conflict", None))
        for chk in t.checks:
            if chk.id == "people.birth_year_not_after_index":
                ks.append(("check", chk.id))
        return ks

    def _inject_table(self, name: str, tbl: pa.Table, rng: np.random.Generator, offset: int, protected: set,
                      cascade_rule: str | None = None, skip: set = frozenset()) -> tuple[pa.Table, list[int]]:
        """Faults for one chunk of one table. Returns the new table and the positions (in the new
        table) of rows that validation must quarantine (for cascades)."""
        t = self.contract[name]
        n = tbl.num_rows
        kinds = self._kinds(t)
        chosen = np.flatnonzero(rng.random(n) < self.rate)
        pick = rng.integers(0, len(kinds), len(chosen))
        aux = rng.random((len(chosen), 3))
        chosen_set = {}
        for r, kix, a in zip(chosen.tolist(), pick.tolist(), aux):
            if r in protected or r in skip:
                continue
            chosen_set[r] = (kinds[kix], a)
        inserted_before = np.zeros(n + 1, np.int64)   # copies inserted after row q shift rows > q
        copies = {r for r, ((k, _), _) in chosen_set.items() if k in ("duplicate", "conflict")}
        if copies:
            inc = np.zeros(n + 1, np.int64)
            inc[np.array(sorted(copies)) + 1] = 1
            inserted_before = np.cumsum(inc)
        pos = lambda r: r + int(inserted_before[r])  # noqa: E731

        def key_of(row: dict) -> str:
            return "|".join(_text(row[k]) for k in t.key)

        bad: list[int] = []
        pieces: list[pa.Table] = []
        prev = 0
        schema = tbl.schema
        for r in sorted(chosen_set):
            (kind, col), a = chosen_set[r]
            row = tbl.slice(r, 1).to_pylist()[0]
            rows, rules = self._apply(name, t, row, kind, col, a, rng)
            for rw in rows:   # columns written as text (type-fault columns) take text
                for f in schema:
                    if pa.types.is_string(f.type) and rw[f.name] is not None and not isinstance(rw[f.name], str):
                        rw[f.name] = _text(rw[f.name])
            pieces.append(tbl.slice(prev, r - prev))
            pieces.append(pa.Table.from_pylist(rows, schema=schema))
            prev = r + 1
            p = pos(r)
            for j, (rule, expect) in enumerate(rules):
                if rule is None:
                    continue
                self.records.append((name, offset + p + j + 1, key_of(rows[j]), rule, expect, "injected"))
            if kind in QUARANTINE_KINDS:
                bad.append(p)
                if kind == "conflict":
                    bad.append(p + 1)
        pieces.append(tbl.slice(prev, n - prev))
        for r in sorted(protected):
            row = {k: tbl.column(k)[r].as_py() for k in t.key}
            self.records.append((name, offset + pos(r) + 1, key_of(row), cascade_rule, "quarantine", "cascade"))
            bad.append(pos(r))
        new = pa.concat_tables(pieces) if len(pieces) > 1 else tbl
        return new, bad

    def _apply(self, name, t: Table, row: dict, kind: str, col: str | None, a, rng):
        """Rows to write in place of ``row`` and the (rule, expect) of each (None: not listed)."""
        row = dict(row)
        if kind == "duplicate":
            return [row, dict(row)], [(None, None), (f"{name}.key.duplicate", "quarantine")]
        if kind == "conflict":
            other = dict(row)
            self._change_value(t, other, rng)
            rule = (f"{name}.key.conflict", "quarantine")
            return [row, other], [rule, rule]
        c = t.column(col) if col and kind != "check" else None
        if kind == "vocabulary":
            opts = WRONG_VOCAB.get(col, ["n/a", "not known"])
            val = opts[int(a[0] * len(opts))]
            assert val.strip().lower() not in c.vocabulary
            row[col] = val
            return [row], [(f"{name}.{col}.vocabulary", "quarantine")]
        if kind == "case":
            v = row[col] if row[col] is not None else c.vocabulary[0]
            variants = [x for x in (v.upper(), v.title(), " " + v, v + " ", " " + v.upper() + " ") if x != v]
            row[col] = variants[int(a[0] * len(variants))]
            return [row], [(f"{name}.{col}.vocabulary", "accept")]
        if kind == "not_before":
            ref = row[c.not_before]
            row[col] = ref - dt.timedelta(days=1 + int(a[0] * 30)) if isinstance(ref, dt.date) else ref
            if isinstance(ref, str):   # a stringified (type-fault) reference column: parse it back
                row[col] = None
            return [row], [(f"{name}.{col}.not_before", "quarantine")]
        if kind == "reference":
            self.orphan_counter += 1
            k = self.orphan_counter
            rt, _ = c.references
            v = row[col]
            if rt == "people":
                row[col] = f"P{10 ** self.st.id_width + k}"
            elif rt == "referrals":
                row[col] = (v or row["person_id"] + "-R1").rsplit("-", 1)[0] + "-R9"
            elif rt == "contacts":
                row[col] = f"{v}-X{k}"
            else:
                row[col] = f"TX{k:05d}"
            return [row], [(f"{name}.{col}.reference", "quarantine")]
        if kind == "range":
            lo = c.min if c.min is not None else c.min_exclusive
            if c.max is not None and (lo is None or a[0] < 0.5):
                val = c.max + 1 + int(a[1] * 50)
            elif c.min_exclusive is not None:
                val = c.min_exclusive - (0 if a[1] < 0.5 else 1 + int(a[2] * 10))
            else:
                val = c.min - 1 - int(a[1] * 30)
            row[col] = float(val) if c.type == "float" else int(val)
            return [row], [(f"{name}.{col}.range", "quarantine")]
        if kind == "check":  # people.birth_year_not_after_index
            row["birth_year"] = row["index_date"].year + 1 + int(a[0] * 5)
            return [row], [(col, "quarantine")]
        if kind == "type":
            opts = TYPE_VALUES[c.type](row[col] if not isinstance(row[col], str) else None)
            row[col] = opts[int(a[0] * len(opts))]
            return [row], [(f"{name}.{col}.type", "quarantine")]
        if kind == "required":
            row[col] = None
            return [row], [(f"{name}.{col}.required", "quarantine")]
        if kind == "after_extract":
            v = row[col]
            if v is None:
                base = next(x for x in row.values() if isinstance(x, dt.date))
                v = base
            row[col] = v + AFTER_EXTRACT_SHIFT
            return [row], [(f"{name}.{col}.after_extract", "quarantine")]
        raise ValueError(kind)

    @staticmethod
    def _change_value(t: Table, row: dict, rng) -> None:
        key = set(t.key)
        for c in t.columns:
            if c.name in key:
                continue
            v = row[c.name]
            if c.vocabulary is not None:
                alts = [x for x in c.vocabulary if x != v]
                row[c.name] = alts[int(rng.integers(0, len(alts)))]
                return
        for c in t.columns:
            if c.name in key:
                continue
            v = row[c.name]
            if c.type == "bool" and not isinstance(v, str):
                row[c.name] = not bool(v)
                return
            if c.type == "int" and not isinstance(v, str):
                row[c.name] = (v or 0) + 1
                return
            if c.type == "float" and not isinstance(v, str):
                row[c.name] = (v or 1.0) * 2
                return
        for c in reversed(t.columns):   # a date nothing else must not precede (end_on)
            if c.name in key or c.type not in ("date", "timestamp"):
                continue
            v = row[c.name]
            if isinstance(v, str):   # a stringified (type-fault) column holds ISO text
                v = dt.date.fromisoformat(v[:10]) if c.type == "date" else dt.datetime.fromisoformat(v)
            ref = row.get(c.not_before) if c.not_before else None
            row[c.name] = (v if v is not None else ref) + dt.timedelta(days=1)
            return
        raise ValueError(f"{t.name}: no column to change for a conflict")
