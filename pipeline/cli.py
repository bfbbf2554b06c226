"""The ``odeval`` command line: argument parsing only; the work is in the stage modules."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

# One BLAS thread for the command line, set before numpy loads (a variable already in the
# environment wins). The analyses multiply many small and tall-thin matrices (a cluster's
# rows, a refit's information), where a second OpenBLAS thread spins more than it computes:
# on this project's 2-core machine a 50,000 x 53 weighted cross-product cost 0.18-0.81 CPU s
# with two threads against 0.014 s with one, and the frailty ICC 172 against 19.5 CPU s
# (docs/performance.md). DuckDB keeps its own threads (``warehouse.threads``).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table as RichTable

from pipeline import __version__
from pipeline.config import DEFAULT_WAREHOUSE, PROJ_ROOT
from pipeline.errors import OdevalError, existing_folder
from pipeline.params import load_params, section

# the CLI only writes figures to files; a notebook importing pipeline.stats keeps its own
# (inline) backend
os.environ.setdefault("MPLBACKEND", "Agg")

app = typer.Typer(
    name="odeval",
    help="Reproducible evaluation of Open Dialogue services and trials: "
    "ingest, validate, derive, metrics, analyse, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
#: a terminal gets its own width; a pipe or a log (``make demo > demo.log``) is read in an
#: editor or pager, not wrapped: rich's default of 80 columns would cut table cells to
#: "antipsychotic…", so tables there get room for their content
out = Console(width=None if sys.stdout.isatty() else 200)


def _plain_help() -> None:
    """Help that names things as people type them. typer (0.2x) prints a type after every
    option, flags included (``--help <bool>``), a list as ``<list[Path]>`` and a required
    argument as a template (``{out_dir}``); here flags have no type, a list shows its
    items' type (``<path>``) and an argument is named in capitals, bracketed only when
    optional (``OUT_DIR``, ``[FOLDER]``, ``DIRS...``), as click itself does.
    ``tests/e2e/test_pipeline_cli.py`` checks every command's help."""
    from typer import core

    def plain_type(shown: str | None) -> str | None:
        if shown and shown.startswith("<list[") and shown.endswith("]>"):
            return f"<{shown[6:-2].lower()}>"
        return shown

    option_type = core.TyperOption.display_type_rich
    argument_type = core.TyperArgument.display_type_rich
    core.TyperOption.display_type_rich = (  # type: ignore[method-assign]
        lambda self, ctx: None if self.is_flag else plain_type(option_type(self, ctx)))
    core.TyperArgument.display_type_rich = (  # type: ignore[method-assign]
        lambda self, ctx: plain_type(argument_type(self, ctx)))
    core.TyperArgument.display_name_raw = property(  # type: ignore[method-assign]
        lambda self: self.metavar if self.metavar is not None else self.name.upper())

    def usage_name(self) -> str:
        name = self.display_name_raw + ("..." if self.nargs != 1 else "")
        return name if self.required else f"[{name}]"

    core.TyperArgument._usage_display_name = usage_name  # type: ignore[method-assign]


_plain_help()

# Defaults that are not the parameter's Python default are given as show_default strings,
# which typer prints as "[default: (...)]". Never write "[default: ...]" into a help text:
# rich takes the brackets for markup and drops them with their content.
WarehouseOpt = Annotated[
    Optional[Path],
    typer.Option("--warehouse", "-w", help="DuckDB warehouse file.",
                 show_default="params.yaml warehouse.path, else data/warehouse.duckdb"),
]
ParamsOpt = Annotated[
    Optional[Path], typer.Option("--params", help="Parameters file.", show_default="params.yaml")
]


def _fail(exc: OdevalError) -> None:
    # escape: the message ends in "[rule ...]", which rich would take for markup and drop
    console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except OdevalError as exc:
        _fail(exc)


@contextlib.contextmanager
def _progress(description: str) -> Iterator:
    """A rich progress bar; a callback ``update(done, total, text)`` is yielded."""
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
        console=console, transient=False, disable=not sys.stderr.isatty(),
    ) as bar:
        task = bar.add_task(description, total=None, detail="")

        def update(done: int, total: int, text: str = "") -> None:
            bar.update(task, completed=done, total=total, detail=text)

        yield update


def _warehouse_path(warehouse: Path | None, params: dict) -> Path:
    """The warehouse file: --warehouse, else params.yaml warehouse.path (relative to the
    project), else data/warehouse.duckdb."""
    if warehouse is not None:
        return warehouse
    path = Path(section(params, "warehouse").get("path") or DEFAULT_WAREHOUSE)
    return path if path.is_absolute() else PROJ_ROOT / path


def _out_folder(out_dir: Path | None, warehouse: Path | None, params: dict) -> Path:
    """Where a command writes (--out, else beside the warehouse: reports/ for the project's
    default warehouse, <warehouse stem>_reports/ for another; pipeline.outputs)."""
    from pipeline import config, outputs

    if out_dir is not None:
        return out_dir
    return outputs.default_folder(_warehouse_path(warehouse, params),
                                  _warehouse_path(None, params), config.REPORTS_DIR)


def _open_warehouse(warehouse: Path | None, params_file: Path | None, *, read_only: bool = False):
    from pipeline.warehouse import connect

    global _STAMPS
    _STAMPS = warehouse is None  # an explicit --warehouse is outside the DVC graph
    params = load_params(params_file)
    wh = section(params, "warehouse")
    return connect(_warehouse_path(warehouse, params), read_only=read_only,
                   threads=wh.get("threads"), memory_limit=wh.get("memory_limit")), params


@contextlib.contextmanager
def _session(warehouse: Path | None, params_file: Path | None, *, read_only: bool = False):
    """``(connection, params)`` for one command, closed at the end. A warehouse file this
    command created is removed again when the command fails (with its write-ahead log, and
    the folders made for it if they are left empty): a failed command leaves no empty or
    half-built warehouse behind."""
    from pipeline import outputs

    path = _warehouse_path(warehouse, load_params(params_file))
    created = None if read_only else outputs._first_missing(Path(path).absolute())
    con, params = _open_warehouse(warehouse, params_file, read_only=read_only)
    try:
        yield con, params
    except BaseException:
        con.close()
        if created is not None:
            _remove_warehouse(Path(path).absolute(), created)
        raise
    con.close()


def _remove_warehouse(path: Path, created: Path) -> None:
    for p in (path, Path(f"{path}.wal")):
        p.unlink(missing_ok=True)
    folder = path.parent
    while folder != created.parent and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


@contextlib.contextmanager
def _noting_failure(con, stage: str) -> Iterator[None]:
    """A stage that fails notes it in meta.builds (its tables stay the previous build's),
    so that later commands can say why they refuse (pipeline.runstate)."""
    from pipeline import runstate

    try:
        yield
    except Exception as exc:
        if not (isinstance(exc, OdevalError) and exc.rule == "run.stale"):
            runstate.record_failure(con, stage, exc)
        raise


@app.callback(invoke_without_command=True)
def _main(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        out.print(f"odeval {__version__}")
        raise typer.Exit()


@app.command()
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the extract to (created).")],
    people: Annotated[int, typer.Option(help="Number of people in the study.")] = 1400,
    sites: Annotated[int, typer.Option(help="Number of sites.")] = 7,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same bytes.")] = 20261125,
    format: Annotated[str, typer.Option("--format", help="parquet or csv (the contract), or mhsds: "
                                        "the study as an NHS trust's MHSDS tables (OUT/mhsds/, with "
                                        "OUT/allocation.csv, OUT/local/, OUT/local_mapping.csv and "
                                        "OUT/mhsds_truth.json) for `odeval import mhsds`.")] = "parquet",
    faults: Annotated[float, typer.Option(help="Share of rows per table given an injected "
                                          "fault, listed in OUT/faults.csv.")] = 0.0,
    nhs_numbers: Annotated[bool, typer.Option("--nhs-numbers", help="Also plant a few "
                                              "NHS-number-shaped person ids (ingest must refuse them).")] = False,
    design: Annotated[str, typer.Option(help="cluster (GP-practice clusters randomised), "
                                        "individual randomisation, or observational (arms "
                                        "follow age, prior admissions, diagnosis and site: "
                                        "measured confounding; marginal truth in "
                                        "truth.json 'observational').")] = "cluster",
    staggered: Annotated[bool, typer.Option("--staggered", help="Staggered entry with per-person "
                         "end dates: everyone followed for their own two years (data_end_date "
                         "index + 730 days, or earlier on transfer out), the extract a month "
                         "after the last of them.")] = False,
) -> None:
    """Generate a synthetic multi-site Open Dialogue study with planted truth (OUT/truth.json)."""
    from pipeline.synth import generate_study

    if format not in ("parquet", "csv", "mhsds"):
        _fail(OdevalError("--format must be parquet, csv or mhsds", rule="cli.format"))
    from pipeline.synth.generate import DESIGNS

    for bad, why in ((people < 1, f"--people must be at least 1 (got {people})"),
                     (sites < 1, f"--sites must be at least 1 (got {sites})"),
                     (sites > people, f"--sites ({sites}) must not exceed --people ({people}): "
                                      "every site needs someone"),
                     (not 0 <= faults <= 0.5, f"--faults must be a share from 0 to 0.5 (got "
                                              f"{faults}): more faulty rows than good ones is "
                                              "not an extract"),
                     (design not in DESIGNS, f"--design must be one of {', '.join(DESIGNS)} "
                                             f"(got {design!r})")):
        if bad:
            _fail(OdevalError(why, rule="cli.synth"))
    if format == "mhsds" and (faults or nhs_numbers):
        _fail(OdevalError("--faults and --nhs-numbers are for the contract formats; the mhsds "
                          "format plants MHSDS's own faults (resubmissions, duplicates, invalid "
                          "rows, unlisted codes)", rule="cli.format"))
    with _errors(), _progress("synth") as update:
        if format == "mhsds":
            from pipeline.synth.mhsds import write_mhsds

            summary = write_mhsds(out_dir, people=people, sites=sites, seed=seed, design=design,
                                  progress=lambda d, t: update(d, t, "people"))
        else:
            summary = generate_study(out_dir, people=people, sites=sites, seed=seed, fmt=format,
                                     faults=faults, nhs_numbers=nhs_numbers, design=design,
                                     staggered=staggered, progress=lambda d, t: update(d, t, "people"))
    table = RichTable("table", "rows", title=f"synthetic study in {out_dir}")
    for name, n in (summary.get("rows") or {}).items():
        table.add_row(name, f"{n:,}")
    out.print(table)


#: Stamps are written only for the warehouse of params.yaml, the one dvc.yaml's stages use;
#: a run on another warehouse (--warehouse) must not change what DVC sees.
_STAMPS = True


def _stamp(stage: str, payload: dict) -> None:
    """data/stamps/<stage>.json: what a stage produced (deterministic; DVC tracks it)."""
    import json

    if not _STAMPS:
        return
    from pipeline.config import DATA_DIR

    path = DATA_DIR / "stamps" / f"{stage}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")  # written whole, then renamed: never half a stamp
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(path)


def _print_ingest(report) -> None:
    table = RichTable("table", "file", "status", "rows", "untypable rows", "extra columns",
                      title="ingest")
    for f in report.loads:
        table.add_row(f.table, f.path.name, f.status, f"{f.n_rows:,}", f"{f.untyped_rows:,}",
                      ", ".join(f.extra_columns))
    out.print(table)
    if report.n_loaded == 0:
        out.print("Nothing changed: every file was already loaded.")
    if report.ignored:
        out.print("Not contract tables, ignored: " + ", ".join(p.name for p in report.ignored))


def _do_ingest(con, dirs: list[Path], replace: bool) -> None:
    from pipeline.ingest import ingest as run_ingest

    with _progress("ingest") as update:
        report = run_ingest(con, dirs, progress=update, replace=replace)
    _print_ingest(report)
    _stamp("ingest", {"loads": sorted([f.load_id, f.n_rows] for f in report.loads)})


def _do_validate(con, params: dict, folder: Path) -> None:
    from pipeline.validate import validate as run_validate

    with _progress("validate") as update, _noting_failure(con, "validate"):
        report = run_validate(con, section(params, "validate"), progress=update,
                              report_dir=folder, disclosure=section(params, "disclosure"))
    table = RichTable("table", "rows in", "clean", "quarantined", "share", title="validate")
    for name, r in report.tables.items():
        table.add_row(name, f"{r.n_raw:,}", f"{r.n_clean:,}", f"{r.n_quarantined:,}",
                      f"{r.quarantined_share:.2%}")
    out.print(table)
    if report.expectations:  # validate stops the run when any disagree
        out.print(f"great-expectations cross-check: {len(report.expectations)} expectations "
                  "agree with the SQL rules"
                  + ("; on a sample: " + ", ".join(
                      f"{t} ({s['sampled']:,} of {s['rows']:,} rows)"
                      for t, s in report.expectations_sampled.items())
                     if report.expectations_sampled else ""))
    out.print(f"Data-quality report: {folder / 'data_quality.html'}")
    _stamp("validate", {n: [r.n_raw, r.n_clean, r.n_quarantined, r.rule_counts]
                        for n, r in report.tables.items()})


def _do_derive(con, params: dict) -> None:
    from pipeline.derive import derive as run_derive

    with _progress("derive") as update, _noting_failure(con, "derive"):
        summary = run_derive(con, section(params, "derive"), progress=update)
    table = RichTable("relation", "rows", title="derive")
    for name, n in summary["rows"].items():
        if not name.startswith("int_"):
            table.add_row(name, f"{n:,}")
    out.print(table)
    if summary["unknown_drugs"]:
        out.print("Drug names not in the reference list (not counted as antipsychotics): "
                  + ", ".join(f"{d['drug']} ({d['n_prescriptions']})" for d in summary["unknown_drugs"]))
    _stamp("derive", {"rows": summary["rows"]})


import_app = typer.Typer(
    name="import",
    help="Stage 0 (optional): turn a source's own tables into a contract extract that "
    "`odeval ingest` (or `odeval run`) then loads.",
    no_args_is_help=True,
)
app.add_typer(import_app, name="import")


@import_app.command("mhsds")
def import_mhsds(
    source: Annotated[Path, typer.Argument(help="Folder of MHSDS table files as delivered: "
                      "<table>[_anything].csv, .txt (comma- or pipe-delimited) or .parquet, e.g. "
                      "MHS001MPI.csv, MHS201CareContact_v5.txt; several files per table allowed.")],
    allocation: Annotated[Path, typer.Option("--allocation", help="The trial's allocation list "
                          "(CSV or Parquet): Person_ID, site_id, arm, index_date; optionally "
                          "cluster_id, data_end_date, data_end_reason, birth_year, diagnosis_group, "
                          "prior_admissions_2y, baseline_activity.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Extract folder to write (new, empty, or "
                       "an earlier import, which is replaced whole).")],
    mapping: Annotated[Optional[list[Path]], typer.Option("--mapping", help="Local mapping file "
                       "(CSV: list,code,contract_value[,meaning]) adding codes to the code lists of "
                       "pipeline/reference/mhsds/ or changing what one maps to; repeat for several.")] = None,
    local: Annotated[Optional[Path], typer.Option("--local", help="Folder with the contract tables "
                     "MHSDS does not hold, in contract format: staff.csv (the staff register, "
                     "ids as MHS202 CareProfLocalId) and prescriptions.csv (or .parquet).")] = None,
    format: Annotated[str, typer.Option("--format", help="parquet or csv for the extract's files.")] = "parquet",
    extract_end: Annotated[Optional[str], typer.Option("--extract-end", help="Last day the extract "
                           "covers (YYYY-MM-DD): data_end_date of people whose allocation has none.",
                           show_default="the latest ReportingPeriodEndDate in the tables")] = None,
    report: Annotated[Optional[Path], typer.Option("--report", help="Folder for import_report.html "
                      "and .json (disclosure-controlled).", show_default="reports/import")] = None,
    params: ParamsOpt = None,
) -> None:
    """Import an NHS trust's MHSDS submission tables: keep the latest version of each record
    (by UniqMonthID, then UniqSubmissionID), drop rows flagged invalid, map codes through the
    code lists (codes not listed are reported and get the contract's unknown/other value), join
    the allocation list, and write a contract extract for `odeval ingest`; nothing is written
    when an input is refused."""
    import datetime as dt

    from pipeline.config import REPORTS_DIR
    from pipeline.importers.mhsds import import_mhsds as run_import

    with _errors():
        end = None
        if extract_end is not None:
            try:
                end = dt.date.fromisoformat(extract_end)
            except ValueError:
                raise OdevalError(f"--extract-end {extract_end!r} is not a date YYYY-MM-DD",
                                  rule="cli.extract_end") from None
        p = load_params(params)
        wh = section(p, "warehouse")
        with _progress("import mhsds") as update:
            res = run_import(source, allocation, out_dir, mappings=mapping or [], local=local,
                             fmt=format, extract_end=end, report_dir=report or REPORTS_DIR / "import",
                             disclosure=section(p, "disclosure"), threads=wh.get("threads"),
                             memory_limit=wh.get("memory_limit"), progress=update)
    f = res.facts
    table = RichTable("MHSDS table", "rows read", "kept", "superseded", "duplicate", "invalid",
                      "kept, not allocated", title="import mhsds: versions")
    for name, r in f["tables"].items():
        table.add_row(name, *(f"{r[k]:,}" for k in ("rows_read", "kept", "superseded", "duplicate",
                                                     "invalid", "kept_not_allocated")))
    out.print(table)
    unmapped = [c for c in f["codes"] if c["kind"] == "unmapped"]
    if unmapped:
        out.print("Codes not in their code list (written as the contract's unknown/other value): "
                  + "; ".join(f"{c['table']}.{c['column']} {c['code']!r} ({c['rows']:,} rows, as "
                              f"{c['contract_value'] or 'empty'!r})" for c in unmapped), highlight=False)
    a = f["allocation"]
    out.print(f"Allocated people {a['allocated_people']:,} ({a['without_mhs001mpi']:,} without an "
              f"MHS001MPI record); people in the tables without an allocation "
              f"{a['people_without_allocation']:,} (not written).")
    out.print("Extract: " + ", ".join(f"{t} {n:,}" for t, n in f["contract"].items()))
    for warning in res.warnings:
        out.print(f"[bold]Warning:[/bold] {escape(warning)}")
    if res.report_files:
        out.print(f"Import report: {res.report_files[0]}")
    out.print(f"Extract written to {res.out}; load it with `odeval ingest {res.out}` or `odeval run {res.out}`")


@app.command()
def ingest(
    dirs: Annotated[list[Path], typer.Argument(help="Extract folders: one <table>.csv or "
                                               "<table>.parquet per contract table.")],
    replace: Annotated[bool, typer.Option("--replace/--append", help="Drop every earlier load "
                                          "first, so the warehouse holds exactly these folders, "
                                          "or add these folders to the earlier loads (the "
                                          "default; a file already loaded is not loaded again)."
                                          )] = False,
    warehouse: WarehouseOpt = None,
    params: ParamsOpt = None,
) -> None:
    """Load extract folders into the warehouse's raw schema, typed, with lineage (all or nothing);
    adds to the earlier loads unless --replace."""
    with _errors(), _session(warehouse, params) as (con, _):
        _do_ingest(con, dirs, replace)


@app.command()
def validate(warehouse: WarehouseOpt = None, params: ParamsOpt = None,
             out_dir: OutOpt = None) -> None:
    """Put every raw row in clean or quarantine (with the rules it broke); count every
    rule's rows again with great-expectations (a disagreement stops the run); write the
    data-quality report (data_quality.html and .json in the output folder)."""
    with _errors(), _session(warehouse, params) as (con, p):
        _do_validate(con, p, _out_folder(out_dir, warehouse, p))


@app.command()
def derive(warehouse: WarehouseOpt = None, params: ParamsOpt = None) -> None:
    """Build the analysis datasets (derived schema): people, time_to_event, recurrent,
    antipsychotic, activity, fidelity_referral, unknown_drugs."""
    with _errors(), _session(warehouse, params) as (con, p):
        _do_derive(con, p)


@app.command()
def run(
    dirs: Annotated[list[Path], typer.Argument(help="Extract folders to ingest.")],
    replace: Annotated[bool, typer.Option("--replace/--append", help="Drop every earlier load "
                                          "first, so the warehouse holds exactly these folders "
                                          "(the default, unlike `odeval ingest`), or add these "
                                          "folders to the earlier loads.")] = True,
    warehouse: WarehouseOpt = None,
    params: ParamsOpt = None,
    engine: Annotated[Optional[str], typer.Option("--engine", help="duckdb (embedded) or spark: "
                      "where ingest, validate and derive run; spark writes Parquet to params.yaml "
                      "engine.spark_output and stops after derive.",
                      show_default="params.yaml engine.name, else duckdb")] = None,
    out_dir: OutOpt = None,
) -> None:
    """Run every stage in order: ingest (replacing earlier loads unless --append), validate,
    derive, metrics, analyse, report; print the path of the report."""
    with _errors():
        from pipeline.engines import engine_settings

        settings = engine_settings(load_params(params), engine)
        if settings["name"] == "spark":
            _do_spark_run(dirs, replace, load_params(params), settings)
            return
        with _session(warehouse, params) as (con, p):
            from pipeline import outputs

            folder = _out_folder(out_dir, warehouse, p)
            for command, where in (("validate", folder), ("metrics", folder),
                                   ("report", folder)):  # refuse a wrong folder before any work
                outputs.claim(where, command, outputs.warehouse_source(con))
            _do_ingest(con, dirs, replace)
            outputs.PUBLISHED.clear()
            try:
                _do_validate(con, p, folder)
                _do_derive(con, p)
                from pipeline.warehouse import release_cache

                release_cache(con, section(p, "warehouse").get("memory_limit"))
                met = _do_metrics(con, p, folder)
                _do_analyse(con, p, met)
                path = _do_report(con, p, folder)
            except BaseException:
                _withdraw_earlier(folder)
                raise
    out.print(f"Report: {path}")


def _withdraw_earlier(folder: Path) -> None:
    """After a run refused (or failed) past its ingest: the outputs in ``folder`` of an
    earlier run that this one did not replace describe data the warehouse no longer holds,
    beside this run's data-quality report or metrics; they are withdrawn (a report of study
    A stayed, linking to study B's data-quality report)."""
    from pipeline import outputs

    mine = {c for f, c in outputs.PUBLISHED if f == Path(folder).resolve()}
    gone = []
    for command in ("validate", "metrics", "report"):
        if command not in mine:
            gone += outputs.withdraw(folder, command)
    if gone:
        out.print(f"[yellow]Withdrawn from {folder}, as they described the data this run "
                  f"replaced: {', '.join(sorted(gone))}[/yellow]")


def _do_metrics(con, params: dict, folder: Path):
    from pipeline.metrics import run as run_metrics

    target = folder / "metrics"
    with _progress("metrics") as update, _noting_failure(con, "metrics"):
        res = run_metrics(con, params, target, progress=update)
    out.print(f"Metrics: results.metrics_* in the warehouse; CSV in {target}")
    _stamp("metrics", {"csv": _hashes(target, "*.csv"),
                       "rows": {k: len(v) for k, v in res.tables().items()}})
    return res


def _do_analyse(con, params: dict, met=None) -> None:
    from pipeline.analyse import run as run_analyse

    with _progress("analyse") as update, _noting_failure(con, "analyse"):
        res = run_analyse(con, params, progress=update, met=met, keep_results=False)
    table = RichTable("analysis", "outcome", "measure", "estimate", "95% CI", title="analyse")
    for _, e in res.estimates.iterrows():
        ci = "" if e.lower != e.lower else f"{e.lower:.3f} to {e.upper:.3f}"
        table.add_row(e.analysis, e.outcome, e.measure, f"{e.estimate:.3f}", ci)
    out.print(table)
    _stamp("analyse", {"estimates": [[e.analysis, e.outcome, e.measure, round(float(e.estimate), 6)]
                                     for _, e in res.estimates.iterrows()]})


def _do_report(con, params: dict, target: Path) -> Path:
    from pipeline.report import build

    with _progress("report") as update:
        path = build(con, params, target, progress=update)
    _stamp("report", {"files": _hashes(target, "report.html") | _hashes(target, "metrics.json")
                      | _hashes(target / "tables", "*.csv")})
    return path


def _do_spark_run(dirs: list[Path], replace: bool, params: dict, settings: dict) -> None:
    """``run --engine spark``: typing, validate and derive on Spark (pipeline/engines)."""
    from pipeline.engines import spark as engine

    if not replace:
        raise OdevalError("--append is DuckDB only: a Spark run types exactly the folders given",
                          rule="engine.spark.append")
    target = Path(settings["spark_output"])
    target = target if target.is_absolute() else PROJ_ROOT / target
    session = engine.session(settings["spark_master"], settings["spark_conf"])
    with _progress("spark") as update:
        summary = engine.run(session, dirs, target, params, progress=update)
    table = RichTable("table", "rows in", "clean", "quarantined", title="validate (spark)")
    for name, r in summary["validate"].items():
        table.add_row(name, f"{r['n_raw']:,}", f"{r['n_clean']:,}", f"{r['n_quarantined']:,}")
    out.print(table)
    table = RichTable("relation", "rows", title="derive (spark)")
    for name, n in summary["derive"]["rows"].items():
        if not name.startswith("int_"):
            table.add_row(name, f"{n:,}")
    out.print(table)
    secs = ", ".join(f"{k} {v:.1f} s" for k, v in summary["seconds"].items())
    out.print(f"Spark {summary['spark_version']}: {secs}. Parquet under {target}/<schema>/<table>/ "
              "(pipeline.engines.read_table); metrics, analyse and report run on DuckDB only.")


def _hashes(folder: Path, pattern: str) -> dict[str, str]:
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob(pattern))}


OutOpt = Annotated[Optional[Path], typer.Option(
    "--out", help="Folder for the outputs meant for people (metrics: its metrics/ subfolder); "
    "odeval replaces only the files it wrote there (listed in .odeval-outputs.json) and refuses "
    "a folder holding other files or another warehouse's outputs.",
    show_default="beside the warehouse: reports/ for params.yaml's, <warehouse stem>_reports/ "
    "for another")]


@app.command()
def metrics(warehouse: WarehouseOpt = None, params: ParamsOpt = None, out_dir: OutOpt = None) -> None:
    """Outcome metrics per arm, site, ethnicity group and overall with CIs, the fidelity profile
    of each site and data-quality figures: results.metrics_* and CSV (reports/metrics/)."""
    with _errors(), _session(warehouse, params) as (con, p):
        _do_metrics(con, p, _out_folder(out_dir, warehouse, p))


@app.command()
def analyse(warehouse: WarehouseOpt = None, params: ParamsOpt = None) -> None:
    """Primary and secondary analyses, Table 1, site comparison, fidelity meta-regression and
    outcomes by ethnicity group (params.yaml analyse:): results.analysis_*."""
    with _errors(), _session(warehouse, params) as (con, p):
        _do_analyse(con, p)


@app.command()
def report(warehouse: WarehouseOpt = None, params: ParamsOpt = None, out_dir: OutOpt = None) -> None:
    """reports/report.html (self-contained), metrics.json, figures and tables; refuses to finish
    if anything breaks disclosure control."""
    with _errors(), _session(warehouse, params, read_only=True) as (con, p):
        path = _do_report(con, p, _out_folder(out_dir, warehouse, p))
    out.print(f"Report: {path}")


@app.command("check-outputs")
def check_outputs(
    folder: Annotated[Optional[Path], typer.Argument(
        help="Folder to scan.", show_default="the warehouse's output folder: reports/ for "
        "params.yaml's, <warehouse stem>_reports/ for another")] = None,
    warehouse: WarehouseOpt = None,
    params: ParamsOpt = None,
    attack: Annotated[bool, typer.Option(
        "--attack/--no-attack", help="Also try to rebuild every suppressed or rounded count "
        "from all the published files together (means, SMDs, model coefficients, effects, "
        "totals; docs/output-policy.md); a count pinned or narrowed below its protection "
        "interval is a breach. odeval report and pool always do.")] = False,
) -> None:
    """Scan the outputs meant for people for small or unrounded counts, identifiers (values
    from the warehouse when it exists) and spreadsheet formulas; with --attack, rebuild
    hidden counts as an attacker would; exit 1 on any breach."""
    from pipeline.check_outputs import check
    from pipeline.disclosure import settings

    with _errors():
        p = load_params(params)
        if folder is not None:  # a folder named and absent is not a clean one
            existing_folder(folder, rule="check_outputs.folder")
        con = None
        try:
            con, _ = _open_warehouse(warehouse, params, read_only=True)
        except OdevalError:
            console.print("No warehouse: identifier values are not checked, only their shapes.")
        breaches = check(folder or _out_folder(None, warehouse, p), settings(p), con,
                         attack=attack)
    for b in breaches:
        out.print(str(b), highlight=False, markup=False)
    if breaches:
        console.print(f"[bold red]{len(breaches)} disclosure breach(es)[/]")
        raise typer.Exit(code=1)
    out.print("check-outputs: no breach")


@app.command()
def export(
    site: Annotated[str, typer.Option("--site", help="The site_id whose bundle to write.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Bundle folder to write (new or empty).")],
    warehouse: WarehouseOpt = None,
    params: ParamsOpt = None,
) -> None:
    """Write a site's aggregate bundle for federated analysis, after `odeval run`: risk sets
    per outcome, arm and time; the site's log hazard ratio, log rate ratio and risk
    difference with variances; Table 1 sums; fidelity numerators and denominators; the
    validation summary; manifest.json with sha256s. No row-level data, no identifiers;
    counts exact unless params.yaml federated: rounds them."""
    from pipeline.federated import export_bundle

    with _errors():
        con, p = _open_warehouse(warehouse, params, read_only=True)
        try:
            path = export_bundle(con, site, out_dir, p)
        finally:
            con.close()
    out.print(f"Bundle: {path}")


@app.command()
def pool(
    bundles: Annotated[list[Path], typer.Argument(help="Bundle folders written by `odeval export`.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the pooled report "
                       "(report.html, tables/, figures/); new, empty or a previous pooled "
                       "report, which is replaced.")],
    exact: Annotated[Optional[Path], typer.Option("--exact", help="Also write the exact pooled "
                     "tables (CSV, counts not rounded: not for publication) to this folder.")] = None,
    params: ParamsOpt = None,
) -> None:
    """Check site bundles (manifest, sha256s, columns, types, totals; same schema version,
    derive parameters, analysis and disclosure settings) and pool them: exact Kaplan-Meier
    and Aalen-Johansen, random-effects meta-analysis with prediction intervals of the site
    hazard ratios, rate ratios and risk differences, Table 1, fidelity and validation
    totals; a disclosure-controlled report checked by check-outputs."""
    from pipeline.federated import pool as pool_bundles

    with _errors():
        res, path = pool_bundles(bundles, out_dir, load_params(params), exact_dir=exact)
    out.print(f"Pooled {len(res.bundles)} bundles: " + ", ".join(res.bundles["site"])
              + f"; report: {path}" + (f"; exact tables in {exact}" if exact else ""))


@app.command()
def bench(
    size: Annotated[str, typer.Option(help="pilot, trust or national (params.yaml bench.sizes).")] = "pilot",
    stages: Annotated[Optional[list[str]], typer.Option("--stages", help="Steps to run (repeat): "
                      "floor, a stage, run, derive_sql, validate_sql, pandas, polars, cox.",
                      show_default="all that apply to the size")] = None,
    params: ParamsOpt = None,
    baseline: Annotated[Optional[str], typer.Option(
        help="A commit (e.g. the README table's) whose stages and run are measured too, each "
             "right after ours in this bench run.")] = None,
) -> None:
    """Wall time and peak memory per stage, each in a fresh process, beside the floor (plain
    Parquet load), a plain pandas derive, a lazy polars derive and lifelines:
    reports/bench/<size>.json and .md."""
    from pipeline.bench import run_bench

    with _errors():
        result = run_bench(size, stages=stages, params=load_params(params),
                           log=lambda m: console.print(m, highlight=False), baseline=baseline)
    from pipeline.bench import markdown

    out.print(markdown(result), highlight=False)


def _floats(text: str | None, option: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise OdevalError(f"{option} {text!r}: comma-separated numbers, e.g. 0.6,0.7,0.8",
                          rule="power.option") from None


@app.command()
def power(
    sites: Annotated[int, typer.Option(help="Sites (services).")] = 7,
    clusters_per_arm: Annotated[int, typer.Option(help="Clusters (GP practices) per arm in each site.")] = 1,
    individual: Annotated[bool, typer.Option("--individual", help="People randomised 1:1 within sites "
                          "(no clusters; --cluster-size is then people per site).")] = False,
    cluster_size: Annotated[float, typer.Option(help="Mean people per cluster (per site with --individual).")] = 100,
    cluster_size_cv: Annotated[Optional[float], typer.Option(help="Coefficient of variation of cluster "
                               "sizes (0.65 is typical of GP practices).",
                               show_default="the generator's spread")] = None,
    recruitment_ratio: Annotated[float, typer.Option(help="How many times more people an Open Dialogue "
                                 "cluster recruits than a usual-care one.")] = 1.0,
    follow_up_days: Annotated[int, typer.Option(help="Follow-up per person, days.")] = 730,
    relapse_risk: Annotated[Optional[float], typer.Option(help="Usual-care risk of relapse by 2 years "
                            "(no death or censoring).", show_default="the generator's, 0.59")] = None,
    detentions: Annotated[Optional[float], typer.Option(help="Usual-care involuntary detentions per "
                          "person in 2 years.", show_default="the generator's, 0.2")] = None,
    rtw_baseline: Annotated[float, typer.Option(help="Usual-care probability of work or education "
                            "at 2 years.")] = 0.25,
    death_risk: Annotated[float, typer.Option(help="Two-year risk of death.")] = 0.02,
    icc: Annotated[Optional[float], typer.Option(help="ICC on each outcome's latent scale.",
                   show_default="the generator's cluster variance, ICC 0.006")] = None,
    frailty_var: Annotated[Optional[float], typer.Option(help="Cluster log-frailty variance (instead "
                           "of --icc).")] = None,
    hr: Annotated[Optional[float], typer.Option(help="Hazard ratio of relapse, Open Dialogue vs usual "
                  "care.")] = 0.8,
    rate_ratio: Annotated[Optional[float], typer.Option(help="Rate ratio of detentions (also analyses "
                          "them).", show_default="--hr, not analysed")] = None,
    rtw_risk: Annotated[Optional[float], typer.Option(help="Open Dialogue probability of work or "
                        "education at 2 years (also analyses it).")] = None,
    primary: Annotated[str, typer.Option(help="Primary outcome: relapse, involuntary or rtw.")] = "relapse",
    method: Annotated[str, typer.Option(help="The small-sample method: auto (what the analysis plan's "
                      "auto uses for the design's shape, chosen by the few-cluster simulation study), model, CR1, CR2, MD, KC, "
                      "jackknife-cluster, jackknife-site, cluster-level, permutation.")] = "auto",
    reps: Annotated[int, typer.Option(help="Simulated trials per scenario.")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same answer.")] = 20261205,
    alpha: Annotated[float, typer.Option(help="Two-sided significance level.")] = 0.05,
    processes: Annotated[int, typer.Option(help="Worker processes (1 or 2), at nice 15.")] = 2,
    search: Annotated[Optional[str], typer.Option(help="Find the smallest clusters_per_arm, "
                      "cluster_size or sites reaching --target power.")] = None,
    target: Annotated[float, typer.Option(help="Target power for --search.")] = 0.8,
    search_max: Annotated[Optional[int], typer.Option(help="Largest value --search tries.",
                          show_default="30 clusters per arm, 2000 people, 60 sites")] = None,
    curve: Annotated[Optional[str], typer.Option(help="Power curve over these effects of the primary "
                     "outcome, comma-separated (e.g. 0.5,0.6,0.7,0.8,0.9,1).")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for power.json, power.md and the "
                       "curve figure.")] = Path("reports/power"),
    cache: Annotated[Optional[Path], typer.Option(help="Folder of cached replicates.",
                     show_default="data/power")] = None,
) -> None:
    """Simulation-based power and sample size: draws trials of the design from the synthetic
    generator's model, analyses each with the method the analysis plan uses, and reports
    power with its Monte Carlo SE, type I error without effect and expected events, beside
    the analytic formula (Schoenfeld / two proportions with the design effect). Replicates
    are cached: a second run of the same question is instant."""
    import json

    from pipeline.simulation import power as pw

    with _errors():
        design = pw.Design(sites=sites, clusters_per_arm=None if individual else clusters_per_arm,
                           cluster_size=cluster_size, cluster_size_cv=cluster_size_cv,
                           recruitment_ratio=recruitment_ratio, follow_up_days=follow_up_days,
                           relapse_risk_2y=relapse_risk, detentions_2y=detentions, rtw_2y=rtw_baseline,
                           death_risk_2y=death_risk, icc=icc, cluster_frailty_var=frailty_var)
        effects = _floats(curve, "--curve")
        # everything checkable is checked before the first trial is simulated
        pw._check_effects(primary, hr, rate_ratio, rtw_risk, alpha, reps, processes)
        pw.resolve_methods(design, pw._outcomes(primary, rate_ratio, rtw_risk), method)
        if search:
            pw.search_range(design, search, target, hi=search_max)
        kw = dict(primary=primary, method=method, reps=reps, seed=seed, alpha=alpha, processes=processes,
                  cache=cache)
        eff = dict(hr=hr, rate_ratio=rate_ratio, rtw_risk=rtw_risk)
        doc, md = {}, []
        with _progress(f"power: {design.describe()}") as update:
            res = pw.power(design, **eff, **kw, progress=lambda d, t: update(d, t, "blocks of 25 trials"))
        doc["power"] = res.to_dict()
        md.append(res.markdown())
        if search:
            with _progress(f"search over {search}") as update:
                found = pw.search(design, target, search, hi=search_max, **eff, **kw,
                                  progress=lambda d, t: update(d, t, "blocks of 25 trials"))
            doc["search"] = {"over": search, "target": target, "answer": found.answer,
                             "points": json.loads(found.points.to_json(orient="records"))}
            md += ["", "## Search", "", found.markdown()]
        if effects:
            with _progress("power curve") as update:
                cur = pw.curve(design, effects, **kw, progress=lambda d, t: update(d, t, "blocks of 25 trials"))
            doc["curve"] = json.loads(cur.table.to_json(orient="records"))
            md += ["", "## Power curve", "", cur.markdown()]
        out_dir.mkdir(parents=True, exist_ok=True)
        if effects:
            fig = cur.plot(target=target)
            for ext in ("png", "svg"):
                fig.savefig(out_dir / f"power_curve.{ext}", dpi=150)
            md.append(f"\n![power curve](power_curve.png)")
        (out_dir / "power.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
        (out_dir / "power.md").write_text("\n".join(md) + "\n")
    from rich.markdown import Markdown

    text = "\n".join(m for m in md if not m.startswith("\n!["))
    # a terminal gets the tables drawn; a pipe or a log the Markdown itself
    out.print(Markdown(text) if out.is_terminal else text, highlight=False, soft_wrap=not out.is_terminal)
    out.print(f"Written: {out_dir / 'power.md'}, {out_dir / 'power.json'}"
              + (f", {out_dir / 'power_curve.png'}" if effects else ""), highlight=False)


def main() -> None:  # pragma: no cover - console entry point
    app()
