"""``odeval check-outputs``: scan the outputs meant for people for disclosure breaches.

Every text file under the folder (default ``reports/``: HTML, CSV, JSON, SVG, Markdown,
text; SVG figures embedded in HTML as ``data:`` URIs are decoded and scanned too) is
checked for

* ``identifier.column``: a column, key or table heading naming a person or staff identifier
  (``person_id``, ``staff_id``, ``referral_id``, ``contact_id``, ...);
* ``identifier.value``: any identifier value held in the warehouse (person, staff,
  referral, contact, prescription, admission, detention, episode ids; compared in DuckDB, so
  it scales to millions of ids) when a warehouse is given;
* ``identifier.nhs_number``: a 10-digit number passing the NHS Modulus 11 check;
* ``count.small``: a count in 1..``suppress_max`` where counts are shown: CSV columns and
  JSON keys named as counts (:data:`pipeline.disclosure.COUNT_NAME`), HTML elements of
  class ``count`` (odeval's report) or ``n`` (the data-quality report);
* ``count.unrounded``: such a count that is not a multiple of ``round_to``, except in the
  files listed in ``disclosure.unrounded_ok`` (outputs of other stages that only suppress);
* ``count.derivable``: a row (HTML table row, CSV row, JSON object) whose counts include
  exactly one suppressed cell and whose largest shown count exceeds the sum of its other
  shown counts by 1..``suppress_max``, the shape of "rows in 84, clean 81, quarantined
  [c]": the suppressed cell is that difference wherever the row adds up, which secondary
  suppression (:func:`pipeline.disclosure.secondary_suppress`) rules out. Sums across
  rows or tables (sites to a total) are not checked: the scan cannot know which rows add
  up; :mod:`pipeline.disclosure` protects them where the counts are made.

* ``injection.formula``: a CSV cell, JSON key or JSON string that a spreadsheet would run
  as a formula (starts with ``=``, ``+``, ``-``, ``@``, tab or carriage return and is not a
  number; the OWASP CSV-injection rule, :func:`pipeline.output_policy.is_formula`).

With ``attack=True`` (``odeval check-outputs --attack``, and always inside ``odeval report``
and ``odeval pool``) the attacker of :mod:`pipeline.attack` also runs over every published
file together; each count it narrows below the policy's protection interval is a breach
``attack.<channel>`` naming the file and the cell.

PNG files cannot be read for text; every PNG odeval writes has an SVG twin that is checked.
"""

from __future__ import annotations

import base64
import html as htmllib
import json
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import duckdb

from pipeline import disclosure
from pipeline.output_policy import is_formula

TEXT_SUFFIXES = {".html", ".htm", ".csv", ".json", ".svg", ".md", ".txt", ".tsv"}

IDENTIFIER_COLUMNS = {"person_id", "staff_id", "referral_id", "contact_id", "prescription_id",
                      "admission_id", "detention_id", "episode_id", "first_contact_staff_id",
                      "nhs_number"}

#: (schema-less table, column) pairs holding identifiers in the warehouse.
ID_SOURCES = [("people", "person_id"), ("staff", "staff_id"), ("referrals", "referral_id"),
              ("contacts", "contact_id"), ("prescriptions", "prescription_id"),
              ("admissions", "admission_id"), ("detentions", "detention_id"),
              ("crisis_episodes", "episode_id")]

_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]*")
#: ten digits (spaced 3-3-4 or not) standing on their own: not inside a longer run of
#: letters and digits such as a sha256 in the provenance footer ("...5fe3160535339ed6...")
_NHS = re.compile(r"(?<![0-9A-Za-z.])(\d{3}[ -]?\d{3}[ -]?\d{4})(?![0-9A-Za-z.])")
_DATA_URI = re.compile(r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)")
_INT = re.compile(r"^\d{1,3}(,\d{3})*$|^\d+$")


@dataclass(frozen=True)
class Breach:
    file: str
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.file}: {self.rule}: {self.detail}"


def _nhs_valid(digits: str) -> bool:
    from pipeline.synth.nhs import is_valid

    return is_valid(digits)


class _Cells(HTMLParser):
    """Text of elements with class ``count``/``n`` and of table headings."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []
        self.counts: list[str] = []
        self.rows: list[list[str]] = []  # count cells of each table row
        self.headings: list[str] = []
        self._row: list[str] | None = None
        self._buf: list[str] | None = None
        self._heading: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        cls = (dict(attrs).get("class") or "").split()
        if "count" in cls or (tag == "td" and "n" in cls):
            self._buf = []
            self.stack.append((tag, True))
        else:
            self.stack.append((tag, False))
        if tag == "th":
            self._heading = []
        if tag == "tr":
            self._row = []
            self.rows.append(self._row)

    def handle_endtag(self, tag):
        while self.stack:
            t, is_count = self.stack.pop()
            if is_count and self._buf is not None:
                self.counts.append("".join(self._buf).strip())
                if self._row is not None:
                    self._row.append(self.counts[-1])
                self._buf = None
            if t == tag:
                break
        if tag in ("tr", "table"):
            self._row = None
        if tag == "th" and self._heading is not None:
            self.headings.append("".join(self._heading).strip())
            self._heading = None

    def handle_data(self, data):
        if self._buf is not None:
            self._buf.append(data)
        if self._heading is not None:
            self._heading.append(data)


def _check_count(text: str, file: str, where: str, cfg: dict[str, Any], rounding: bool,
                 out: list[Breach]) -> None:
    t = text.strip()
    if t in ("", disclosure.SUPPRESSED, "null", "None") or t.startswith("<="):
        return
    if not _INT.match(t):
        try:
            v = float(t)
        except ValueError:
            return
        if v != int(v):
            out.append(Breach(file, "count.unrounded", f"{where}: {t} is not a whole count"))
            return
        n = int(v)
    else:
        n = int(t.replace(",", ""))
    if disclosure.is_small(n, cfg):
        out.append(Breach(file, "count.small", f"{where}: {n} is a small count (suppress "
                          f"{cfg['suppress_min']}..{cfg['suppress_max']})"))
    elif rounding and not disclosure.allowed(n, cfg):
        out.append(Breach(file, "count.unrounded", f"{where}: {n} is not rounded to "
                          f"{cfg['round_to']}"))


def _suppressed(text: str) -> bool:
    t = text.strip()
    return t in (disclosure.SUPPRESSED, "null", "None") or t.startswith("<=")


def _shown(text: str) -> int | None:
    t = text.strip()
    if _INT.match(t):
        return int(t.replace(",", ""))
    return None


def _check_row(cells: list[str], file: str, where: str, cfg: dict[str, Any],
               out: list[Breach], rounding: bool = False) -> None:
    """``count.derivable``: one suppressed count in a row that gives it away as the
    difference of the largest shown count and the others (``84, 81, [c]``). An HTML table
    row of a page whose counts are rounded (``rounding``, passed for HTML only: the CSV and
    JSON rows it reads are named partitions such as rows in, clean and quarantined) whose
    shown counts are all multiples of ``round_to`` gives an interval, not a value, and such
    a page's rows are mostly no sums at all: it is left to the attacker's audit
    (:mod:`pipeline.attack`), which solves the published tables' sums over the rounding
    intervals. This check refused 57 of 523 small studies on an outcome's people and events
    per arm (``15 - 0 - 10 = 5``)."""
    if sum(_suppressed(c) for c in cells) != 1:
        return
    shown = sorted(n for n in (_shown(c) for c in cells) if n is not None)
    if len(shown) < 2:
        return
    step = int(cfg.get("round_to", disclosure.DEFAULTS["round_to"]))
    if rounding and step > 1 and all(n % step == 0 for n in shown):
        return
    diff = shown[-1] - sum(shown[:-1])
    if disclosure.is_small(diff, cfg):
        out.append(Breach(file, "count.derivable", f"{where}: the suppressed count is "
                          f"{shown[-1]} - {' - '.join(map(str, shown[:-1]))} = {diff}"))


def _json_counts(obj, path: str, file: str, cfg, rounding, out):
    if isinstance(obj, str) and is_formula(obj):
        out.append(Breach(file, "injection.formula", f"value {path.rstrip('.') or '(top)'}: a "
                          f"text starting with {obj[:1]!r} runs as a spreadsheet formula"))
    if isinstance(obj, dict):
        for k in obj:
            if is_formula(str(k)):
                out.append(Breach(file, "injection.formula", f"key {path}{k!s:.30}: starts like a "
                                  "spreadsheet formula"))
        row = ["null" if v is None else str(v) for k, v in obj.items()
               if disclosure.COUNT_NAME.match(str(k)) and (v is None or (
                   isinstance(v, int) and not isinstance(v, bool)))]
        _check_row(row, file, f"object {path.rstrip('.') or '(top)'}", cfg, out)
        for k, v in obj.items():
            if str(k).lower() in IDENTIFIER_COLUMNS:
                out.append(Breach(file, "identifier.column", f"key {path}{k}"))
            if disclosure.COUNT_NAME.match(str(k)) and isinstance(v, (int, float)) \
                    and not isinstance(v, bool):
                _check_count(str(v), file, f"{path}{k}", cfg, rounding, out)
            else:
                _json_counts(v, f"{path}{k}.", file, cfg, rounding, out)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _json_counts(v, f"{path}{i}.", file, cfg, rounding, out)


def _csv_counts(text: str, file: str, cfg, rounding, out):
    import csv
    import io

    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return
    header = rows[0]
    for c in header:
        if c.strip().lower() in IDENTIFIER_COLUMNS:
            out.append(Breach(file, "identifier.column", f"column {c}"))
    idx = [i for i, c in enumerate(header) if disclosure.COUNT_NAME.match(c.strip())]
    for r, row in enumerate(rows, start=1):
        for i, v in enumerate(row):
            if is_formula(v):
                where = f"header column {i + 1}" if r == 1 else \
                    f"row {r} column {header[i] if i < len(header) else i + 1}"
                out.append(Breach(file, "injection.formula", f"{where}: a text cell starting "
                                  f"with {v[:1]!r} runs as a spreadsheet formula"))
    for r, row in enumerate(rows[1:], start=2):
        for i in idx:
            if i < len(row):
                _check_count(row[i], file, f"row {r} column {header[i]}", cfg, rounding, out)
        _check_row([row[i] for i in idx if i < len(row)], file, f"row {r}", cfg, out)


def scan_text(text: str, name: str, cfg: dict[str, Any], rounding: bool) -> tuple[list[Breach], set[str]]:
    """Breaches found in one file's text (identifier values excepted) and its tokens."""
    out: list[Breach] = []
    suffix = Path(name).suffix.lower()
    embedded = []
    if suffix in (".html", ".htm"):
        for m in _DATA_URI.finditer(text):
            try:
                embedded.append(base64.b64decode(m.group(1)).decode("utf-8", "replace"))
            except ValueError:
                out.append(Breach(name, "file.unreadable", "an embedded figure is not base64"))
        body = _DATA_URI.sub("data:", text)
        parser = _Cells()
        parser.feed(body)
        for t in parser.counts:
            _check_count(htmllib.unescape(t), name, "count cell", cfg, rounding, out)
        for i, row in enumerate(parser.rows, start=1):
            _check_row([htmllib.unescape(t) for t in row], name, f"table row {i}", cfg, out,
                       rounding)
        for h in parser.headings:
            if h.strip().lower() in IDENTIFIER_COLUMNS:
                out.append(Breach(name, "identifier.column", f"table heading {h}"))
        texts = [body, *embedded]
    elif suffix == ".csv":
        _csv_counts(text, name, cfg, rounding, out)
        texts = [text]
    elif suffix == ".json":
        try:
            _json_counts(json.loads(text), "", name, cfg, rounding, out)
        except json.JSONDecodeError:
            out.append(Breach(name, "file.unreadable", "not valid JSON"))
        texts = [text]
    else:
        texts = [text]
    tokens: set[str] = set()
    for t in texts:
        for m in _NHS.finditer(t):
            digits = re.sub(r"[ -]", "", m.group(1))
            if _nhs_valid(digits):
                out.append(Breach(name, "identifier.nhs_number",
                                  f"{m.group(1)} is shaped like an NHS number"))
        for tok in _TOKEN.findall(t):
            tokens.add(tok)
            if "-" in tok:
                tokens.update(p for p in tok.split("-") if p)
    return out, tokens


def _id_hits(con: duckdb.DuckDBPyConnection, tokens: dict[str, set[str]]) -> list[Breach]:
    """Tokens that are identifier values in the warehouse (joined in DuckDB)."""
    pairs = [(f, t) for f, ts in tokens.items() for t in ts]
    if not pairs:
        return []
    have = {r[0] + "." + r[1] for r in con.execute(
        "select table_schema, table_name from information_schema.tables").fetchall()}
    sources = []
    for table, col in ID_SOURCES:
        for schema in ("raw", "clean"):
            if f"{schema}.{table}" in have:
                cols = {r[0] for r in con.execute(
                    "select column_name from information_schema.columns where table_schema = ? "
                    "and table_name = ?", [schema, table]).fetchall()}
                if col in cols:
                    sources.append(f"select cast({col} as varchar) as id, '{col}' as kind "
                                   f"from {schema}.{table}")
                break
    if not sources:
        return []
    import pandas as pd

    tok = pd.DataFrame(pairs, columns=["file", "token"])
    con.register("_tokens", tok)
    try:
        hits = con.execute(
            "with ids as (" + " union all ".join(sources) + ") "
            "select distinct t.file, i.kind, t.token from _tokens as t "
            "join ids as i on i.id = t.token order by 1, 2, 3").fetchall()
    finally:
        con.unregister("_tokens")
    return [Breach(f, "identifier.value", f"a {kind} value appears in the file")
            for f, kind, _ in hits]


def attack_breaches(folder: Path, cfg: dict[str, Any] | None = None,
                    beside: tuple[Path, ...] = ()) -> list[Breach]:
    """The attacker's findings (:func:`pipeline.attack.attack`) over ``folder`` read together
    with the published files in ``beside`` (e.g. the data-quality report next to a report
    being staged; a file in ``folder`` wins over one of the same path there), as breaches."""
    from pipeline.attack import attack

    return [Breach(f.file, f"attack.{f.channel}", f"{f.cell}: {f.detail}")
            for f in attack(Path(folder), *beside, cfg=cfg)]


def check(folder: Path, cfg: dict[str, Any] | None = None,
          con: duckdb.DuckDBPyConnection | None = None,
          unrounded_ok: list[str] | None = None, attack: bool = False,
          beside: tuple[Path, ...] = (), skip: tuple[str, ...] = ()) -> list[Breach]:
    """Every breach under ``folder`` (sorted). ``con``: warehouse for identifier values;
    ``attack``: run the attacker over ``folder`` and ``beside`` too; ``skip``: files whose
    path relative to ``folder`` starts with one of these are not read (the scan of the
    other files, and its identifier search, is the same without them)."""
    cfg = {**disclosure.DEFAULTS, **(cfg or {})}
    exempt = set(unrounded_ok if unrounded_ok is not None else cfg.get("unrounded_ok") or [])
    folder = Path(folder)
    breaches: list[Breach] = []
    tokens: dict[str, set[str]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if path.suffix.lower() not in TEXT_SUFFIXES or (skip and rel.startswith(skip)):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError) as exc:
            breaches.append(Breach(rel, "file.unreadable", str(exc)))
            continue
        exempt_here = rel in exempt or path.name in exempt or any(
            e.endswith("/") and rel.startswith(e) for e in exempt)
        found, toks = scan_text(text, rel, cfg, rounding=not exempt_here)
        breaches += found
        tokens[rel] = toks
    if con is not None:
        breaches += _id_hits(con, tokens)
    if attack:
        breaches += attack_breaches(folder, cfg, beside)
    return sorted(set(breaches), key=lambda b: (b.file, b.rule, b.detail))
