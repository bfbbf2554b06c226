"""Bad input: every broken file is refused with a clear error or loads with every row
accounted for. Never a traceback, never a silent loss.

The hand-made corpus (``corpus/``, expectations in ``corpus/expected.yaml``) holds one
file per way an extract arrives broken; hypothesis fuzzes around it (well-formed CSV with
awkward values, byte-level damage to CSV and Parquet, wrong Parquet column types). The
50 MB line is generated at test time in tmp.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.errors import OdevalError
from pipeline.ingest import ingest
from pipeline.schemas import load_contract
from pipeline.validate import validate
from pipeline.warehouse import connect
from tests.conftest import write_extract
from tests.reliability.conftest import ODEVAL, PROFILE, snapshot
from tests.reliability.tally import count

CORPUS = Path(__file__).parent / "corpus"
EXPECTED: dict[str, dict] = yaml.safe_load((CORPUS / "expected.yaml").read_text(encoding="utf-8"))
PEOPLE = load_contract()["people"]
#: Every rule an input file can be refused with (anything else is a new, unexplained path).
FILE_RULES = {"ingest.unreadable", "ingest.empty_file", "ingest.delimiter", "ingest.header",
              "ingest.duplicate_column", "ingest.column_type", "identifier.forbidden_column",
              "identifier.nhs_number", "identifier.postcode", "identifier.email",
              "identifier.date_of_birth", "identifier.person_name"} \
    | {f"people.{c}.required_column" for c in PEOPLE.required_columns} \
    | {f"people.{c.name}.nhs_number" for c in PEOPLE.columns}
VALIDATE = {"great_expectations": False, "max_quarantine_share": 1.0}


def _place(folder: Path, data: bytes, fmt: str) -> Path:
    """Put ``data`` in as the people table of the extract in ``folder``."""
    for old in folder.glob("people.*"):
        old.unlink()
    target = folder / f"people.{fmt}"
    target.write_bytes(data)
    return target


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_corpus_and_expectations_match():
    files = {p.name for p in CORPUS.glob("*.people.*")}
    assert files == set(EXPECTED), "every corpus file needs an expectation, and only those"
    assert len(files) >= 40


# ------------------------------------------------------------------ the corpus, one by one

@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file(name, tmp_path, isolated_outputs):
    expect = EXPECTED[name]
    fmt = name.rsplit(".", 1)[1]
    folder = write_extract(tmp_path / "extract")
    target = _place(folder, (CORPUS / name).read_bytes(), fmt)
    wh = tmp_path / "w.duckdb"
    count("corpus", "files tried")
    if "refused" in expect:
        want = expect["refused"]
        # in-process: the error itself
        con = connect(wh)
        before = snapshot(con)
        with pytest.raises(OdevalError) as info:
            ingest(con, [folder])
        err = info.value
        assert err.rule == want["rule"], str(err)
        assert err.file == str(target)
        assert err.row == want.get("row"), str(err)
        if "column" in want:
            assert err.column == want["column"]
        for phrase in want["says"]:
            assert phrase.lower() in str(err).lower(), (phrase, str(err))
        assert snapshot(con) == before, "a refused ingest must leave the warehouse as it was"
        con.close()
        # the CLI: the same message, no traceback, exit code 2
        result = CliRunner().invoke(app, ["ingest", str(folder), "--warehouse", str(wh)],
                                    env={"COLUMNS": "2000"})
        shown = _flat(result.output)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        assert f"error: {_flat(str(err))}" in shown, result.output
        count("corpus", "refused with a clear error")
        return
    want = expect["loads"]
    con = connect(wh)
    report = ingest(con, [folder])
    load = next(f for f in report.loads if f.table == "people")
    assert load.n_rows == want["rows"]
    assert con.execute("select count(*) from raw.people").fetchone()[0] == want["rows"]
    count("corpus", "loaded")
    if want["rows"] == 0:
        return
    validate(con, VALIDATE)
    clean = sorted(r[0] for r in con.execute("select person_id from clean.people").fetchall())
    quarantined = dict(con.execute("select person_id, _rules from quarantine.people").fetchall())
    assert len(clean) + len(quarantined) == want["rows"], "rows lost or doubled by validate"
    assert clean == sorted(want.get("clean", []))
    assert set(quarantined) == set(want.get("quarantined", {}))
    for pid, rules in want.get("quarantined", {}).items():
        assert set(rules) <= set(quarantined[pid]), (pid, quarantined[pid])
    count("corpus", "rows accounted for (clean + quarantined)", want["rows"])


def test_a_50_mb_line_is_refused_naming_the_line(tmp_path):
    folder = write_extract(tmp_path / "extract")
    with open(folder / "people.csv", "wb") as f:
        f.write(b"person_id,site_id,arm,index_date,data_end_date,sex,diagnosis_group,ethnicity\n")
        f.write(b"P1,S1,open_dialogue,2023-01-05,2024-01-01,female,psychosis,white\n")
        start = b"P2,S1,open_dialogue,2023-01-05,2024-01-01,female,psychosis,"
        f.write(start)
        block = b"x" * (1 << 20)
        for _ in range(50):
            f.write(block)
        # nothing after it: DuckDB's parallel reader returned no rows at all for such a file
    con = connect(tmp_path / "w.duckdb")
    before = snapshot(con)
    with pytest.raises(OdevalError) as info:
        ingest(con, [folder])
    assert info.value.rule == "ingest.unreadable"
    assert f"line 3 of the file is {50 * (1 << 20) + len(start):,} bytes long" in str(info.value)
    assert snapshot(con) == before
    count("corpus", "files tried")
    count("corpus", "refused with a clear error")


@pytest.mark.parametrize("case", ["semicolon.people.csv", "truncated.people.parquet"])
def test_the_installed_cli_prints_the_error_without_a_traceback(case, tmp_path):
    import subprocess

    folder = write_extract(tmp_path / "extract")
    _place(folder, (CORPUS / case).read_bytes(), case.rsplit(".", 1)[1])
    proc = subprocess.run([str(ODEVAL), "ingest", str(folder),
                           "--warehouse", str(tmp_path / "w.duckdb")],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "2000"})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: file ")
    assert "people." in proc.stderr and "[rule ingest." in proc.stderr


# ------------------------------------------------------------------ fuzz: well-formed CSV

#: Cells an analyst's export can hold: quotes, commas, newlines, non-ASCII, spaces, blanks.
_cell = st.one_of(
    st.sampled_from(["", " ", "P1", "open_dialogue", "2023-01-05", "1,234", "01/02/2023",
                     'say "hi"', "a\nb", "a\r\nb", "Zoë", "😀", "#x", "nan", "-0", "NULL"]),
    st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
            max_size=12),
)


@st.composite
def _csv_people(draw):
    extra = draw(st.lists(st.sampled_from(["ethnicity", "birth_year", "notes", "death_date"]),
                          unique=True, max_size=3))
    header = draw(st.permutations(list(PEOPLE.required_columns) + extra))
    rows = draw(st.lists(st.lists(_cell, min_size=len(header), max_size=len(header)),
                         max_size=6))
    return header, rows


def _serialise(header, rows, *, crlf: bool, quote_all: bool, bom: bool) -> bytes:
    """RFC 4180 CSV. (Python's csv.writer leaves a value holding a lone CR unquoted when the
    line end is LF, which makes a file with mixed line ends, so it is not used here.)"""
    def field(v: str) -> str:
        if quote_all or any(ch in v for ch in ',"\r\n'):
            return '"' + v.replace('"', '""') + '"'
        return v

    end = "\r\n" if crlf else "\n"
    text = "".join(",".join(map(field, r)) + end for r in [header, *rows])
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")


@pytest.fixture(scope="module")
def fuzz_warehouse(tmp_path_factory):
    """One warehouse and extract for all fuzz examples: the other tables load once."""
    root = tmp_path_factory.mktemp("fuzz")
    folder = write_extract(root / "extract")
    con = connect(root / "w.duckdb")
    ingest(con, [folder])
    yield con, folder
    con.close()


def _state(con) -> tuple:
    return con.execute("select (select count(*) from raw.people), (select count(*) from "
                       "meta.loads)").fetchone()


def _ingest_or_refuse(con, folder, target):
    """Ingest; on refusal check the error is explained and nothing was written."""
    before = _state(con)
    try:
        return ingest(con, [folder])
    except OdevalError as err:
        _ingest_or_refuse.last = err
        assert err.rule in FILE_RULES, str(err)
        assert err.file == str(target), str(err)
        assert _state(con) == before
        return None


def _loaded_people(con, report):
    load = next(f for f in report.loads if f.table == "people")
    cur = con.execute("select * from raw.people where _load_id = $l order by _row_number",
                      {"l": load.load_id})
    names = [d[0] for d in cur.description]
    return load, [dict(zip(names, r)) for r in cur.fetchall()]


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _every_value_kept(got_rows, header, rows):
    """Each non-blank input cell is typed, or its column is listed in ``_untyped``."""
    assert [g["_row_number"] for g in got_rows] == list(range(1, len(rows) + 1))
    for got, row in zip(got_rows, rows):
        untyped = {u["column"] for u in got["_untyped"] or []}
        for name, cell in zip(header, row):
            if name not in PEOPLE.column_names:
                assert (dict(got["_extra"]).get(name) or "") == cell  # empty reads as NULL
                continue
            value = got[name]
            if cell.strip(" ") == "":
                assert _missing(value), (name, cell, value)
            elif cell.strip() == "":  # tabs, line breaks: empty, or kept as they were
                assert _missing(value) or value.strip() == "", (name, cell, value)
            elif PEOPLE.column(name).type == "text":
                # DuckDB's trim strips spaces (and Unicode spaces), not tabs or line breaks
                assert value is not None and value.strip() == cell.strip(), (name, cell, value)
            else:
                assert _missing(value) == (name in untyped), (name, cell, value, untyped)


@settings(settings.get_profile(PROFILE), max_examples=60)
@given(data=_csv_people(), crlf=st.booleans(), quote_all=st.booleans(), bom=st.booleans())
def test_fuzz_well_formed_csv_loads_every_row_and_value(fuzz_warehouse, data, crlf, quote_all, bom):
    con, folder = fuzz_warehouse
    header, rows = data
    target = _place(folder, _serialise(header, rows, crlf=crlf, quote_all=quote_all, bom=bom), "csv")
    count("fuzz csv (well-formed)", "inputs tried")
    report = _ingest_or_refuse(con, folder, target)
    if report is None:
        # A well-formed UTF-8 CSV with the contract's columns is refused only for a reason
        # the contract gives; none applies here.
        raise AssertionError(f"a well-formed CSV was refused: {_ingest_or_refuse.last}")
    load, got = _loaded_people(con, report)
    if load.status == "loaded":
        _every_value_kept(got, header, rows)
    count("fuzz csv (well-formed)", "loaded, every row and value kept")


# ------------------------------------------------------------------ fuzz: damaged bytes

_BASE_CSV = _serialise(
    list(PEOPLE.required_columns) + ["ethnicity"],
    [["P1", "S1", "open_dialogue", "2023-01-05", "2024-01-01", "female", "psychosis", 'a "b", c'],
     ["P2", "S1", "usual_care", "2023-02-10", "2024-01-01", "male", "other", "x\ny"],
     ["P3", "S2", "usual_care", "2023-03-01", "2024-01-01", "male", "other", ""]],
    crlf=False, quote_all=False, bom=False)
_NASTY = [b",", b'"', b"\n", b"\r", b"\r\n", b";", b"\t", b"\x00", b"\xff", b"\xe9", b"\xef\xbb\xbf",
          b"\xc3", b" ", b"", b"P", b"1"]


@st.composite
def _damaged(draw, base: bytes):
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "replace", "delete", "truncate"]))
        piece = draw(st.one_of(st.sampled_from(_NASTY), st.binary(min_size=1, max_size=4)))
        if kind == "insert":
            data[at:at] = piece
        elif kind == "replace":
            data[at:at + len(piece)] = piece
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        else:
            del data[at:]
    return bytes(data)


def _python_records(data: bytes) -> list[list[str]] | None:
    """The data records Python's csv module reads from a file the contract allows, or None."""
    try:
        text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
        records = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except (UnicodeDecodeError, csv.Error):
        return None
    return [r for r in records[1:] if r]


@settings(settings.get_profile(PROFILE), max_examples=120)
@given(data=_damaged(_BASE_CSV))
def test_fuzz_damaged_csv_is_refused_or_fully_loaded(fuzz_warehouse, data):
    con, folder = fuzz_warehouse
    target = _place(folder, data, "csv")
    count("fuzz csv (damaged bytes)", "inputs tried")
    report = _ingest_or_refuse(con, folder, target)
    if report is None:
        count("fuzz csv (damaged bytes)", "refused with a clear error")
        return
    load, got = _loaded_people(con, report)
    records = _python_records(data)
    if load.status == "loaded" and records is not None and b"\r" not in data:
        # nothing dropped: as many rows as Python's own CSV reader finds
        assert load.n_rows == len(records), (load.n_rows, records)
    assert [g["_row_number"] for g in got] == list(range(1, len(got) + 1))
    count("fuzz csv (damaged bytes)", "loaded, every row kept")


# ------------------------------------------------------------------ fuzz: Parquet

_N = 40
_BASE_TABLE = {
    "person_id": [f"P{i}" for i in range(_N)], "site_id": ["S1"] * _N,
    "arm": ["open_dialogue", "usual_care"] * (_N // 2),
    "index_date": pa.array([dt.date(2023, 1, 1) + dt.timedelta(days=i) for i in range(_N)]),
    "data_end_date": pa.array([dt.date(2024, 1, 1)] * _N),
    "sex": ["female"] * _N, "diagnosis_group": ["psychosis"] * _N,
    "birth_year": pa.array(range(1950, 1950 + _N), pa.int64()),
}


def _parquet_bytes(table: pa.Table, compression: str = "snappy") -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression=compression)
    return buf.getvalue()


@st.composite
def _corrupted_parquet(draw):
    good = _parquet_bytes(pa.table(_BASE_TABLE), draw(st.sampled_from(["snappy", "zstd", "none"])))
    data = bytearray(good)
    if draw(st.booleans()):
        del data[draw(st.integers(0, len(data) - 1)):]
    else:
        for _ in range(draw(st.integers(1, 6))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@settings(settings.get_profile(PROFILE), max_examples=80)
@given(data=_corrupted_parquet())
def test_fuzz_corrupted_parquet_is_refused_or_fully_loaded(fuzz_warehouse, data):
    con, folder = fuzz_warehouse
    target = _place(folder, data, "parquet")
    count("fuzz parquet (corrupted)", "inputs tried")
    report = _ingest_or_refuse(con, folder, target)
    if report is None:
        count("fuzz parquet (corrupted)", "refused with a clear error")
        return
    load, _ = _loaded_people(con, report)
    # The row count is in the footer and in every page header: damage that DuckDB reads
    # through (Parquet pages carry no mandatory checksum) may change values, never rows.
    assert load.n_rows == _N
    count("fuzz parquet (corrupted)", "loaded, every row kept")


_ARROW_TYPES = {
    "string": lambda v: pa.array([None if x is None else str(x) for x in v], pa.string()),
    "int64": lambda v: pa.array([x if isinstance(x, int) and not isinstance(x, bool) else None
                                 for x in v], pa.int64()),
    "float64": lambda v: pa.array([float(x) if isinstance(x, (int, float)) else None for x in v],
                                  pa.float64()),
    "bool": lambda v: pa.array([x if isinstance(x, bool) else None for x in v], pa.bool_()),
    "date32": lambda v: pa.array([x if isinstance(x, dt.date) and not isinstance(x, dt.datetime)
                                  else None for x in v], pa.date32()),
    "timestamp": lambda v: pa.array([x if isinstance(x, dt.datetime) else None for x in v],
                                    pa.timestamp("us")),
    "decimal": lambda v: pa.array([x if isinstance(x, int) and not isinstance(x, bool)
                                   and abs(x) < 10**9 else None for x in v], pa.decimal128(12, 2)),
    "dictionary": lambda v: pa.array([None if x is None else str(x) for x in v],
                                     pa.string()).dictionary_encode(),
    "null": lambda v: pa.nulls(len(v)),
}
_pvalue = st.one_of(
    st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=True),
    st.dates(dt.date(1900, 1, 1), dt.date(2100, 1, 1)),
    st.datetimes(dt.datetime(1900, 1, 1), dt.datetime(2100, 1, 1)),
    st.sampled_from(["", " ", "2023-01-05", "true", "12", "1.5", "open_dialogue", "Zoë"]))


@settings(settings.get_profile(PROFILE), max_examples=80)
@given(cols=st.dictionaries(st.sampled_from([c.name for c in PEOPLE.columns]),
                            st.tuples(st.sampled_from(sorted(_ARROW_TYPES)),
                                      st.lists(_pvalue, min_size=3, max_size=3)),
                            min_size=1, max_size=5))
def test_fuzz_parquet_column_types_never_lose_a_value(fuzz_warehouse, cols):
    con, folder = fuzz_warehouse
    table = {k: v[:3] if isinstance(v, list) else v.slice(0, 3) for k, v in _BASE_TABLE.items()}
    for name, (kind, values) in cols.items():
        table[name] = _ARROW_TYPES[kind](values)
    arrow = pa.table(table)
    target = _place(folder, _parquet_bytes(arrow), "parquet")
    count("fuzz parquet (column types)", "inputs tried")
    report = _ingest_or_refuse(con, folder, target)
    if report is None:
        count("fuzz parquet (column types)", "refused with a clear error")
        return
    load, got_rows = _loaded_people(con, report)
    assert load.n_rows == 3
    if load.status != "loaded":
        return
    src = con.execute("select * exclude (file_row_number) from read_parquet($p, file_row_number = true) "
                      "order by file_row_number", {"p": str(target)}).fetchall()
    names = arrow.column_names
    for i in range(3):
        got = got_rows[i]
        untyped = {u["column"] for u in got["_untyped"] or []}
        for j, name in enumerate(names):
            value, source = got[name], src[i][j]
            missing = _missing(value)
            if source is None or (isinstance(source, str) and not source.strip()):
                assert missing, (name, source, value)
            else:
                assert (not missing) or name in untyped, (name, source, value)
    count("fuzz parquet (column types)", "loaded, every value typed or kept as text")


@pytest.mark.parametrize(("args", "rule"), [
    (["ingest", "{p}", "-w", "{w}"], "ingest.folder"),
    (["run", "{p}", "-w", "{w}"], "ingest.folder"),
    (["check-outputs", "{p}"], "check_outputs.folder"),
    (["pool", "{p}", "--out", "{o}"], "bundle.manifest.missing"),
    (["import", "mhsds", "{p}", "--allocation", "{p}.csv", "--out", "{o}"], "mhsds.folder"),
])
def test_a_path_that_is_not_there_is_called_missing(args, rule, tmp_path):
    """A mistyped folder is named and called missing (it was "not a folder", and
    check-outputs reported "no breach" for it); a file where a folder belongs is named as
    a file. No warehouse is left behind."""
    for kind, target in (("missing", tmp_path / "nothere"), ("file", tmp_path / "afile")):
        if kind == "file":
            target.write_text("x")
        argv = [a.format(p=target, w=tmp_path / "w.duckdb", o=tmp_path / "out") for a in args]
        res = CliRunner().invoke(app, argv, env={"COLUMNS": "2000"})
        assert res.exit_code == 2, res.output
        line = res.output.strip()
        assert "\n" not in line and f"[rule {rule}]" in line and str(target.name) in line, line
        if kind == "missing":
            assert "missing: no " in line and "not a folder" not in line, line
        else:
            assert "expected, but this is a file" in line, line
        assert not (tmp_path / "w.duckdb").exists()


@pytest.mark.parametrize(("args", "says"), [
    (["--faults", "0.9"], "--faults must be a share from 0 to 0.5 (got 0.9)"),
    (["--faults", "-0.1"], "--faults must be a share from 0 to 0.5"),
    (["--people", "0"], "--people must be at least 1 (got 0)"),
    (["--sites", "0"], "--sites must be at least 1"),
    (["--sites", "10", "--people", "5"], "--sites (10) must not exceed --people (5)"),
    (["--design", "stepped"], "--design must be one of cluster, individual, observational"),
])
def test_synth_refuses_impossible_settings_in_one_line_and_writes_nothing(args, says, tmp_path):
    """These raised ValueError tracebacks from the generator (or, for more sites than people,
    wrote a study with empty sites)."""
    res = CliRunner().invoke(app, ["synth", str(tmp_path / "s"), *args], env={"COLUMNS": "2000"})
    line = res.output.strip()
    assert res.exit_code == 2 and "\n" not in line, res.output
    assert says in line and "[rule cli.synth]" in line, line
    assert not (tmp_path / "s").exists()
