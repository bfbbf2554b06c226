"""Writing the files people read: output folders, their owners, tables. Below the stages.

Every command that writes files for people (``validate``: the data-quality report;
``metrics``: ``metrics/``; ``report``: ``report.html``, ``metrics.json``, ``figures/``,
``tables/``; ``pool``: the pooled report; ``bench``: ``bench/``; ``import mhsds``: the
import report) writes them through
:func:`publish`:

* everything is first written to a hidden staging folder inside the output folder, then
  checked (``check``, e.g. check-outputs), then moved into place: a failure leaves the
  folder as it was, and no half-written output;
* the output folder's manifest (``.odeval-outputs.json``) lists, per command, the entries
  (files or folders at the top of the output folder) it wrote, and where they came from
  (``source``: the warehouse, or ``pool``). A command replaces only its own entries; it
  never deletes or overwrites a file it did not write (an analyst's notes beside the
  report stay), and it refuses an entry name held by another command or by a file
  odeval did not write;
* a folder that is not empty and has no manifest is not odeval's: refused (hidden files
  such as ``.gitkeep``, and folders with a manifest of their own such as ``reports/import``,
  do not count); so is a folder holding the outputs of another
  warehouse, so that two studies never mix their outputs in one folder.

Default output folders (:func:`default_folder`): beside the warehouse used, ``reports/``
for the project's default warehouse, ``<warehouse stem>_reports/`` for any other.

The disclosure checks hook in through ``publish(..., check=...)``: ``check(staged)`` runs
on the staged folder after everything is written and before anything is moved; it raises
:class:`~pipeline.errors.OdevalError` to refuse, and then nothing is published.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import OdevalError

if TYPE_CHECKING:   # pandas only where a table is written: the stages that write none
    import pandas as pd  # (ingest, derive) start 0.4 s sooner without it

MANIFEST = ".odeval-outputs.json"
_STAGE = ".odeval-stage-"
_OLD = ".odeval-old-"
#: The longest file name most file systems take (bytes), and the room the staging and
#: aside names need on top of an entry's name.
NAME_MAX = 255


# --------------------------------------------------------------------------- where

def default_folder(warehouse: Path, default_warehouse: Path, reports_dir: Path) -> Path:
    """Where a command writes by default: ``reports_dir`` for the project's default
    warehouse, else ``<warehouse folder>/<warehouse stem>_reports``."""
    wh = Path(warehouse).resolve()
    if wh == Path(default_warehouse).resolve():
        return Path(reports_dir)
    return wh.parent / f"{wh.stem}_reports"


def check_path(path: Path, *, rule: str = "output.path") -> Path:
    """``path`` if the file system can hold it, else a one-line error naming the part that
    is too long or in the way (instead of an ``OSError`` traceback)."""
    path = Path(path)
    for part in path.parts:
        if len(os.fsencode(part)) > NAME_MAX - 40:
            raise OdevalError(f"the name {part[:40]}... is {len(os.fsencode(part))} bytes long; "
                              f"output names must be under {NAME_MAX - 40} bytes (file systems "
                              f"take {NAME_MAX}, and odeval adds a suffix while writing)",
                              rule=rule, file=str(path)[:80] + "...")
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe != path and not probe.is_dir():
        raise OdevalError(f"{probe} is a file, not a folder", rule=rule, file=path)
    return path


# --------------------------------------------------------------------------- manifest

def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's manifest, None when it has none."""
    path = Path(folder) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise OdevalError(f"the output manifest cannot be read ({exc}); it lists which files "
                          "odeval wrote here: restore it or choose another folder",
                          rule="output.manifest", file=path) from None
    if not isinstance(data, dict) or not isinstance(data.get("commands"), dict):
        raise OdevalError("the output manifest is not odeval's", rule="output.manifest", file=path)
    return data


def owned(folder: Path) -> dict[str, dict[str, Any]]:
    """Per command, what it wrote in ``folder`` (``entries``, ``source`` and what else it
    recorded), from the manifest; empty without one."""
    m = read_manifest(folder)
    return dict(m["commands"]) if m else {}


def _write_manifest(folder: Path, commands: dict[str, Any]) -> None:
    tmp = folder / f"{MANIFEST}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps({"odeval_outputs": 1, "commands": commands}, indent=2,
                              sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(folder / MANIFEST)


def _kind(source: str) -> str:
    return source.split(":", 1)[0]


def _claim(folder: Path, command: str, source: str, commands: dict[str, Any] | None) -> None:
    """Refuse a folder that is not odeval's or holds another study's outputs."""
    if folder.exists() and not folder.is_dir():
        raise OdevalError("the output folder is a file", rule="output.folder", file=folder)
    if commands is None:
        # an output folder of its own inside (reports/import, with its manifest) is odeval's
        foreign = sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")
                         and not (p / MANIFEST).is_file()) if folder.exists() else []
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise OdevalError(
                f"the output folder holds files odeval did not write ({shown}) and no "
                f"{MANIFEST}; give an empty or new folder (--out), or move them away (outputs "
                "of an odeval older than its manifests can be deleted)",
                rule="output.foreign", file=folder)
        return
    for other, info in commands.items():
        src = str(info.get("source", ""))
        if other != command and _kind(src) == _kind(source) and src != source:
            raise OdevalError(
                f"the output folder holds the {other} outputs of {src.split(':', 1)[-1]}, "
                f"another {_kind(source)}; give this one its own folder (--out) so that two "
                "studies never mix their outputs", rule="output.other_study", file=folder)


def claim(folder: Path, command: str, source: str) -> None:
    """Refuse now, before any work, what :func:`publish` would refuse for the folder itself
    (a name too long, a file in the way, a folder not odeval's or holding another study's
    outputs)."""
    folder = check_path(Path(folder))
    m = read_manifest(folder) if folder.is_dir() else None
    _claim(folder, command, source, None if m is None else m["commands"])


def adopt(folder: Path, command: str, entries: list[str], *, source: str) -> None:
    """Record in ``folder``'s manifest that ``command`` writes ``entries`` there in place
    (for a writer that adds files as it goes, such as ``odeval bench``, whose ``bench/``
    keeps every size's results), after the checks :func:`publish` makes."""
    folder = check_path(Path(folder))
    m = read_manifest(folder) if folder.is_dir() else None
    commands = None if m is None else m["commands"]
    _claim(folder, command, source, commands)
    mine = list((commands or {}).get(command, {}).get("entries", []))
    for e in entries:
        owner = next((c for c, i in (commands or {}).items()
                      if c != command and e in i.get("entries", [])), None)
        if owner:
            raise OdevalError(f"{e} in the output folder belongs to `odeval {owner}`",
                              rule="output.taken", file=folder / e)
        if (folder / e).exists() and e not in mine:
            raise OdevalError(f"{e} is in the output folder but odeval did not write it; move "
                              "it away", rule="output.foreign", file=folder / e)
    folder.mkdir(parents=True, exist_ok=True)
    _write_manifest(folder, {**(commands or {}), command: {
        "entries": sorted({*mine, *entries}), "source": source}})


def _sweep(folder: Path, command: str) -> None:
    """Remove what a killed earlier ``command`` left (its staging and aside folders)."""
    for p in folder.glob(f"{_STAGE}{command}-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in folder.glob(f"{_OLD}{command}-*"):
        shutil.rmtree(p, ignore_errors=True)


# --------------------------------------------------------------------------- publish

@contextlib.contextmanager
def publish(folder: Path, command: str, *, source: str,
            check: Callable[[Path], None] | None = None,
            info: dict[str, Any] | None = None, rule: str = "output.write") -> Iterator[Path]:
    """Stage ``command``'s outputs, then move them into ``folder`` (see the module doc).

    Yields the staging folder: write every entry there. After the ``with`` block:
    ``check(staged)`` (refuses by raising); each staged entry must be new in ``folder`` or
    ``command``'s own; ``command``'s previous entries are set aside, the new ones moved in,
    the manifest updated (``source`` and ``info`` recorded), the old ones deleted. Any
    failure leaves ``folder`` as it was (a file system error becomes rule ``rule``).
    """
    folder = check_path(Path(folder))
    commands = read_manifest(folder)
    commands = None if commands is None else commands["commands"]
    _claim(folder, command, source, commands)
    stage = folder / f"{_STAGE}{command}-{os.getpid()}"
    created = _first_missing(folder)  # removed again if this command fails: it leaves nothing
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _sweep(folder, command)
        stage.mkdir()
    except OSError as exc:
        raise OdevalError(f"cannot write to {folder}: {exc.strerror or exc}", rule=rule,
                          file=folder) from None
    try:
        yield stage
        entries = sorted(p.name for p in stage.iterdir())
        mine = list((commands or {}).get(command, {}).get("entries", []))
        taken = {e: c for c, i in (commands or {}).items() if c != command
                 for e in i.get("entries", [])}
        for e in entries:
            if e in taken:
                raise OdevalError(f"{e} in the output folder belongs to `odeval {taken[e]}`; "
                                  f"give `{command}` another folder (--out)",
                                  rule="output.taken", file=folder / e)
            if (folder / e).exists() and e not in mine:
                raise OdevalError(f"{e} is in the output folder but odeval did not write it; "
                                  "nothing was replaced: move it away or give another folder "
                                  "(--out)", rule="output.foreign", file=folder / e)
        if check is not None:
            check(stage)
    except OSError as exc:
        _undo(stage, created)
        raise OdevalError(f"writing {folder} failed, nothing was replaced: "
                          f"{exc.strerror or exc}", rule=rule, file=folder) from None
    except BaseException:
        _undo(stage, created)
        raise
    _swap(folder, stage, command, entries, mine, commands or {},
          {"entries": entries, "source": source, **(info or {})}, rule)
    PUBLISHED.append((folder.resolve(), command))


#: ``(folder, command)`` of every :func:`publish` that moved its outputs into place in this
#: process, in order (``odeval run`` reads it to know which outputs a failed run replaced).
PUBLISHED: list[tuple[Path, str]] = []


def withdraw(folder: Path, command: str) -> list[str]:
    """Remove ``command``'s entries from ``folder`` and its record from the manifest (what
    it wrote there, nothing else); returns the entries removed. For outputs that describe
    data a later run replaced: ``odeval run`` refused after its ingest leaves no earlier
    report beside its own data-quality report and metrics."""
    folder = Path(folder)
    m = read_manifest(folder) if folder.is_dir() else None
    if m is None or command not in m["commands"]:
        return []
    commands = dict(m["commands"])
    entries = list(commands.pop(command).get("entries", []))
    gone = []
    for e in entries:
        path = folder / e
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink()
        gone.append(e)
    _write_manifest(folder, commands)
    return gone


def _first_missing(folder: Path) -> Path | None:
    """The outermost folder of ``folder``'s path that does not exist yet (None if it does)."""
    missing = None
    for p in [folder, *folder.parents]:
        if p.exists():
            break
        missing = p
    return missing


def _undo(stage: Path, created: Path | None) -> None:
    shutil.rmtree(stage, ignore_errors=True)
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)


def _swap(folder: Path, stage: Path, command: str, entries: list[str], mine: list[str],
          commands: dict[str, Any], record: dict[str, Any], rule: str) -> None:
    aside = folder / f"{_OLD}{command}-{os.getpid()}"
    moved_out: list[str] = []
    moved_in: list[str] = []
    try:
        aside.mkdir()
        for e in mine:
            if (folder / e).exists() or (folder / e).is_symlink():
                (folder / e).rename(aside / e)
                moved_out.append(e)
        for e in entries:
            (stage / e).rename(folder / e)
            moved_in.append(e)
        _write_manifest(folder, {**commands, command: record})
    except OSError as exc:
        for e in reversed(moved_in):
            with contextlib.suppress(OSError):
                (folder / e).rename(stage / e)
        for e in reversed(moved_out):
            with contextlib.suppress(OSError):
                (aside / e).rename(folder / e)
        shutil.rmtree(stage, ignore_errors=True)
        shutil.rmtree(aside, ignore_errors=True)
        raise OdevalError(f"cannot move the new outputs into {folder}, nothing was replaced: "
                          f"{exc.strerror or exc}", rule=rule, file=folder) from None
    shutil.rmtree(aside, ignore_errors=True)
    shutil.rmtree(stage, ignore_errors=True)


# --------------------------------------------------------------------------- tables

def _missing(v) -> bool:
    import numpy as np
    import pandas as pd

    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and np.isnan(v))


def _cell(v, count: bool, suppressed: bool = True) -> str:
    """A CSV cell; a missing count is ``[c]`` only if it was suppressed (``suppressed``),
    else empty (not applicable, as every missing non-count)."""
    import numpy as np

    from pipeline import disclosure

    if _missing(v):
        return disclosure.SUPPRESSED if count and suppressed else ""
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


def write_table(df: pd.DataFrame, path: Path, exact: pd.DataFrame | None = None) -> None:
    """A CSV for people: fixed float format (6 significant digits), counts as integers,
    suppressed counts and the estimates resting on them as ``[c]``; rows in the given order;
    a text cell that a spreadsheet would run as a formula gets a leading ``'``
    (:func:`pipeline.output_policy.text`, the OWASP rule; numbers untouched).

    ``[c]`` means suppressed, never "not applicable" (left empty). A missing count is
    suppressed when ``exact`` (the exact table, row for row, e.g. from
    :func:`pipeline.report.exact_counterpart`) holds a value there; without ``exact``, when the row's
    ``suppressed`` column says so; in a table with neither, every missing count is ``[c]``.
    """
    import numpy as np

    from pipeline import disclosure, output_policy

    cols = list(df.columns)
    is_count = [bool(disclosure.COUNT_NAME.match(c)) for c in cols]
    supp = df["suppressed"].to_numpy() if "suppressed" in df.columns else np.zeros(len(df), bool)
    lines = [",".join(output_policy.text(c) for c in cols)]
    for i, row in enumerate(df.itertuples(index=False, name=None)):
        cells = []
        for c, v, cnt in zip(cols, row, is_count):
            if supp[i] and c in ESTIMATE_COLUMNS:
                cells.append(disclosure.SUPPRESSED)
                continue
            hidden = True
            if cnt and _missing(v):
                if exact is not None and c in exact.columns:
                    hidden = not _missing(exact[c].iat[i])
                elif "suppressed" in df.columns:
                    hidden = bool(supp[i])
            s = output_policy.text(_cell(v, cnt, hidden))  # no spreadsheet formulas (OWASP)
            if any(ch in s for ch in ',"\n'):
                s = '"' + s.replace('"', '""') + '"'
            cells.append(s)
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def warehouse_source(con) -> str:
    """``warehouse:<absolute path>`` of the connection's database: where its outputs come
    from (``warehouse:memory`` for an in-memory one)."""
    row = con.execute("select path from duckdb_databases() where database_name = "
                      "current_database()").fetchone()
    path = row[0] if row and row[0] else None
    return f"warehouse:{Path(path).resolve()}" if path else "warehouse:memory"
