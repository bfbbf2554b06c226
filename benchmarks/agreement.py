"""Whether a benchmark peer of the derive stage computed the same outcome relations.

Not part of the product. The peers (``benchmarks/pandas_derive.py``,
``benchmarks/polars_derive.py``) each write the relations of :data:`RELATIONS` as Parquet
files; :func:`compare` checks them against ``derived.*`` in a warehouse, column by column
after sorting both by the relation's key (:data:`KEYS`): nulls equal, floats to 1e-12
relative, dates to the day. ``check`` is the ``check OUT_DIR WAREHOUSE`` command both
peers share; it prints the report as one line of JSON (``{"equal": ..., ...}``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: The outcome relations a peer computes (``derived.<name>``), and each one's key.
RELATIONS = ("people", "time_to_event", "recurrent", "acute_episodes", "mha_episodes",
             "antipsychotic", "activity")
KEYS = {"people": ["person_id"], "time_to_event": ["person_id", "outcome"],
        "recurrent": ["person_id"], "acute_episodes": ["person_id", "episode_seq"],
        "mha_episodes": ["person_id", "episode_seq"], "antipsychotic": ["person_id"],
        "activity": ["person_id"]}
#: The outcomes of ``derived.time_to_event``.
OUTCOMES = ["relapse", "involuntary_admission", "first_admission", "first_crisis",
            "return_to_work", "death"]


def differing_rows(ours: pd.Series, theirs: pd.Series) -> int:
    """Number of rows where two columns differ (nulls equal; floats to 1e-12 relative)."""
    a_null, b_null = ours.isna().to_numpy(), theirs.isna().to_numpy()
    bad = a_null != b_null
    both = ~(a_null | b_null)
    num = (pd.api.types.is_numeric_dtype(ours) and not pd.api.types.is_bool_dtype(ours)
           and pd.api.types.is_numeric_dtype(theirs) and not pd.api.types.is_bool_dtype(theirs))
    if num:
        x = ours.to_numpy(dtype=float, na_value=np.nan)[both]
        y = theirs.to_numpy(dtype=float, na_value=np.nan)[both]
        bad[both] |= ~np.isclose(x, y, rtol=1e-12, atol=0)
    elif pd.api.types.is_datetime64_any_dtype(ours) or pd.api.types.is_datetime64_any_dtype(theirs):
        x = pd.to_datetime(ours).dt.normalize().to_numpy()[both]
        y = pd.to_datetime(theirs).dt.normalize().to_numpy()[both]
        bad[both] |= x != y
    else:
        x = ours.astype(object).to_numpy()[both]
        y = theirs.astype(object).to_numpy()[both]
        bad[both] |= np.array([u != v for u, v in zip(x, y)], dtype=bool)
    return int(bad.sum())


def compare(theirs: dict[str, Any], con) -> dict[str, Any]:
    """Compare a peer's relations with ``derived.*`` column by column; a JSON-able report.

    ``theirs`` maps each name of :data:`RELATIONS` to a data frame (pandas, or anything
    with ``to_pandas()``, such as a polars frame). Per relation: the rows of each side, the
    columns compared, the number of differing rows per column (``<keys>`` when the keys
    differ) and the columns of ``derived.*`` the peer lacks (``not_compared``). ``equal``:
    no differences and no column left out, in every relation.
    """
    report: dict[str, Any] = {"equal": True, "relations": {}}
    for name in RELATIONS:
        df = theirs[name]
        if not isinstance(df, pd.DataFrame):
            df = df.to_pandas()
        ours = con.execute(f"select * from derived.{name}").df()
        cols = [c for c in df.columns if c in ours.columns]
        key = KEYS[name]
        ours = ours.sort_values(key, ignore_index=True)
        df = df.sort_values(key, ignore_index=True)
        r = {"rows": [len(ours), len(df)], "columns": len(cols), "differences": {}}
        if len(ours) != len(df) or any(differing_rows(ours[k], df[k]) for k in key):
            r["differences"]["<keys>"] = abs(len(ours) - len(df)) or 1
        else:
            for c in cols:
                n = differing_rows(ours[c], df[c])
                if n:
                    r["differences"][c] = n
        missing = [c for c in ours.columns if c not in df.columns]
        r["not_compared"] = missing
        report["relations"][name] = r
        report["equal"] = report["equal"] and not r["differences"] and not missing
    return report


def check(out: Path, warehouse: str | Path) -> dict[str, Any]:
    """:func:`compare` on the Parquet files ``<out>/<relation>.parquet`` a peer wrote."""
    import duckdb

    theirs = {n: pd.read_parquet(Path(out) / f"{n}.parquet") for n in RELATIONS}
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return compare(theirs, con)
    finally:
        con.close()


def main_check(rest: list[str]) -> None:
    """``check OUT_DIR WAREHOUSE``: print :func:`check`'s report as one line of JSON."""
    out, warehouse = Path(rest[0]), rest[1]
    print(json.dumps(check(out, warehouse)))


def main(argv: list[str], derive_all: Callable[[Path], dict[str, Any]],
         write: Callable[[Any, Path], None]) -> None:
    """A peer's command line: ``derive STUDY OUT`` (its relations written by ``write`` as
    ``OUT/<name>.parquet``, read + compute and write times in ``OUT/timing.json``) or
    ``check OUT WAREHOUSE`` (:func:`main_check`)."""
    cmd, *rest = argv
    if cmd == "derive":
        study, out = Path(rest[0]), Path(rest[1])
        t0, c0 = time.perf_counter(), time.process_time()
        rel = derive_all(study)
        t1, c1 = time.perf_counter(), time.process_time()
        out.mkdir(parents=True, exist_ok=True)
        for name, df in rel.items():
            write(df, out / f"{name}.parquet")
        t2 = time.perf_counter()
        (out / "timing.json").write_text(json.dumps(
            {"read_and_compute_s": round(t1 - t0, 3), "read_and_compute_cpu_s": round(c1 - c0, 3),
             "write_s": round(t2 - t1, 3)}) + "\n")
    elif cmd == "check":
        main_check(rest)
    else:
        raise SystemExit(f"unknown command {cmd!r}")
