"""Report stage: reports/report.html (one self-contained file), reports/metrics.json,
figures (PNG and SVG) and tables (CSV), all disclosure-controlled and checked.

Every file is first written to a temporary folder beside its destination and moved into
place only when all of it has been written and ``check-outputs`` passes on it
(:func:`atomic_dir`), so a failure (a full disk, an unwritable folder, a disclosure
breach) leaves the previous report as it was and no partial one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import disclosure
from pipeline.errors import OdevalError


# --------------------------------------------------------------------------- files

@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Write a folder's content to a temporary sibling, then swap it into place.

    On any error the temporary folder is removed and ``target`` is left untouched; the
    error is re-raised as an :class:`OdevalError` naming the folder.
    """
    target = Path(target)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    except OSError as exc:
        raise OdevalError(f"cannot write to {target.parent}: {exc.strerror or exc}",
                          rule="report.write", file=target.parent) from None
    try:
        yield tmp
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OdevalError(f"writing {target} failed, nothing was replaced: "
                          f"{exc.strerror or exc}", rule="report.write", file=target) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        if target.exists():
            target.rename(old)
        tmp.rename(target)
    except OSError as exc:
        if old.exists() and not target.exists():
            old.rename(target)
        shutil.rmtree(tmp, ignore_errors=True)
        raise OdevalError(f"cannot move the new {target.name} into place: {exc.strerror or exc}",
                          rule="report.write", file=target) from None
    shutil.rmtree(old, ignore_errors=True)


def _cell(v, count: bool) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA or v is pd.NaT:
        return disclosure.SUPPRESSED if count else ""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if count:
            return str(int(round(float(v))))
        return format(float(v), ".6g")
    return str(v)


ESTIMATE_COLUMNS = ("estimate", "lower", "upper")


def write_table(df: pd.DataFrame, path: Path) -> None:
    """A CSV for people: fixed float format (6 significant digits), counts as integers,
    suppressed counts and the estimates resting on them as ``[c]``; rows in the given order."""
    cols = list(df.columns)
    is_count = [bool(disclosure.COUNT_NAME.match(c)) for c in cols]
    supp = df["suppressed"].to_numpy() if "suppressed" in df.columns else np.zeros(len(df), bool)
    lines = [",".join(cols)]
    for i, row in enumerate(df.itertuples(index=False, name=None)):
        cells = []
        for c, v, cnt in zip(cols, row, is_count):
            if supp[i] and c in ESTIMATE_COLUMNS:
                cells.append(disclosure.SUPPRESSED)
                continue
            s = _cell(v, cnt)
            if any(ch in s for ch in ',"\n'):
                s = '"' + s.replace('"', '""') + '"'
            cells.append(s)
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
