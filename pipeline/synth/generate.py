"""``generate_study``: the synthetic multi-site study, streamed chunk by chunk."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.schemas import load_contract
from pipeline.synth import arrowutil as au
from pipeline.synth.params import resolve
from pipeline.synth.simulate import simulate_chunk
from pipeline.synth.study import build_study
from pipeline.synth.writer import TableWriter

DESIGNS = ("cluster", "individual", "observational")
FORMATS = ("parquet", "csv")


def generate_study(out: Path, *, people: int, sites: int, seed: int, fmt: str = "parquet",
                   faults: float = 0.0, nhs_numbers: bool = False, design: str = "cluster",
                   staggered: bool = False, progress: Callable[[int, int], None] | None = None, **effects) -> dict:
    """Write a synthetic multi-site Open Dialogue study with planted truth to ``out``.

    Writes one file per contract table (``OUT/<table>.parquet`` or ``.csv``), the planted
    truth (``truth.json``: data-generating model, effect sizes, fidelity per site;
    ``truth_people.parquet``: what the default outcome definitions must derive per person)
    and ``faults.csv`` (every injected fault and the rule that must catch it).

    Args:
        out: Folder to write (created; files of a previous study there are replaced).
        people: Number of people (trial participants) across all sites.
        sites: Number of pilot sites (NHS trusts); each has both arms.
        seed: Random seed. The same seed and options give byte-identical files.
        fmt: File format of the tables: ``parquet`` (typed columns) or ``csv``.
        faults: Share of rows per table (0..0.5) given one injected data-quality fault each
            (wrong vocabularies, dates out of order, orphans, duplicates, conflicting keys,
            impossible values, unparseable values, missing required values, dates after the
            extract) or a harmless case/whitespace variant; all listed in faults.csv.
        nhs_numbers: Replace a few person_ids by valid NHS numbers (test range 999...), which
            must make validation refuse the whole extract.
        design: ``cluster``: GP-practice clusters nested in sites are randomised (cluster_id
            filled); ``individual``: people are randomised one by one (no cluster_id);
            ``observational``: not randomised: the arm follows age, prior admissions,
            diagnosis and site, which also change the outcomes (measured confounding; see
            :mod:`pipeline.synth.observational`, and ``truth.json`` ``observational`` for the
            marginal effects, computed from both potential outcomes).
        staggered: each person is followed for their own two years (their data_end_date is
            index + 730 days, or earlier on transfer out) and the extract is taken a month
            after the last of them: no data_end_date is the extract date.
        progress: Optional callable ``progress(done_people, total_people)`` called after each
            chunk (for a progress bar).
        **effects: Overrides of the data-generating parameters (see
            ``pipeline.synth.params.EFFECTS``), e.g. ``hr_admission=0.7``.

    Returns:
        Summary: rows per table, files written, and the truth file paths.
    """
    from pipeline.synth import faults as faultmod
    from pipeline.synth import truth as truthmod

    if people < 1 or sites < 1:
        raise ValueError("people and sites must be >= 1")
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}")
    if design not in DESIGNS:
        raise ValueError(f"design must be one of {DESIGNS}")
    if not 0 <= faults <= 0.5:
        raise ValueError("faults must be in [0, 0.5]")
    eff = resolve(**effects)
    st = build_study(people=people, sites=sites, seed=seed, design=design, effects=eff,
                     staggered=staggered)
    contract = load_contract()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in list(contract) + ["truth_people", "faults", "truth"]:
        for ext in ("parquet", "csv", "json"):
            p = out / f"{name}.{ext}"
            if p.exists():
                p.unlink()

    injector = faultmod.Injector(st, contract, faults, nhs_numbers) if (faults > 0 or nhs_numbers) else None
    string_cols = injector.string_columns if injector else {}
    writers = {name: TableWriter(out, t, fmt, frozenset(string_cols.get(name, ()))) for name, t in contract.items()}
    truth_schema = None
    truth_writer = None
    unknown: dict[str, int] = {}
    try:
        from pipeline.synth.writer import arrow_schema
        staff = pa.table({c: st.staff[c] for c in contract["staff"].column_names},
                         schema=arrow_schema(contract["staff"]))
        if injector:
            staff = injector.inject_staff(staff, writers["staff"].rows)
        writers["staff"].write(staff)
        for i in range(st.n_chunks):
            ch = simulate_chunk(st, i)
            tables = ch.tables
            truth = ch.truth
            if injector:
                tables, truth = injector.inject_chunk(i, tables, truth, {n: w.rows for n, w in writers.items()})
            for name in contract:
                if name == "staff":
                    continue
                writers[name].write(tables[name])
            if truth_writer is None:
                truth_schema = truth.schema
                truth_writer = pq.ParquetWriter(out / "truth_people.parquet", truth_schema, compression="zstd")
            truth_writer.write_table(truth, row_group_size=max(1, truth.num_rows))
            for k, v in ch.unknown_drugs.items():
                unknown[k] = unknown.get(k, 0) + v
            if progress is not None:
                progress(min((i + 1) * len(ch.person_ids) if i + 1 < st.n_chunks else people, people), people)
    finally:
        for w in writers.values():
            w.close()
        if truth_writer is not None:
            truth_writer.close()
    rows = {name: w.rows for name, w in writers.items()}
    files = [str(w.path) for w in writers.values()] + [str(out / "truth_people.parquet")]
    fault_counts = {}
    if injector is not None:
        fault_counts = injector.write(out / "faults.csv")
    else:
        faultmod.write_empty(out / "faults.csv")
    files.append(str(out / "faults.csv"))
    truth_doc = truthmod.truth_document(st, rows=rows, unknown_drugs=unknown, faults=faults,
                                        nhs_numbers=nhs_numbers, fmt=fmt, fault_counts=fault_counts)
    (out / "truth.json").write_text(json.dumps(truth_doc, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    files.append(str(out / "truth.json"))
    return {"out": str(out), "people": people, "sites": sites, "seed": seed, "format": fmt,
            "design": design, "rows": rows, "files": files, "faults": fault_counts}


def sha256_files(out: Path) -> dict[str, str]:
    """sha256 of every file in ``out`` (for determinism checks)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(out).iterdir()) if p.is_file()}
