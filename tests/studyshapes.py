"""Study shapes: small synthetic studies of awkward but ordinary designs, made fast.

A shape is the synthetic generator's study (``pipeline.synth.generate_study``, Parquet)
reshaped in DuckDB by deleting whole people (with every row that refers to them) or whole
kinds of events, or by moving death dates: never by writing values the contract forbids,
so a shape's extract is clean and every stage should end in a report, or in a one-line
refusal that names its rule. Used by the study-shape reproductions
(``tests/e2e/test_study_shapes.py``) and the end-to-end property test
(``tests/property/test_run_shapes.py``).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

#: Tables that refer to a person (their rows go with the person).
PERSON_TABLES = ("referrals", "contacts", "admissions", "detentions", "crisis_episodes",
                 "prescriptions", "employment")
#: The tables whose rows make the outcomes: relapse (admissions, crisis episodes) and
#: involuntary admission (detentions).
EVENT_TABLES = ("admissions", "crisis_episodes", "detentions")
ARMS = ("open_dialogue", "usual_care")


@dataclass(frozen=True)
class Shape:
    """One study shape.

    sites, people_per_site: the generator's study size (its site sizes vary around the mean).
    design: ``cluster`` (GP practices randomised), ``individual`` (no cluster_id) or
        ``observational`` (the generator's pilot comparison, arms not randomised).
    clusters: with ``cluster``: ``many`` (the generator's), ``one_per_site`` (only each
        site's first practice kept: one arm per site) or ``one_per_arm`` (one practice per
        arm and site).
    empty_arm_sites: the first N sites keep one arm only (alternating which).
    no_events_arm: this arm has no admission, crisis episode or detention.
    all_censored: nobody has an event or dies.
    dead_early: everyone dies 1 to 30 days after index.
    """

    sites: int = 3
    people_per_site: int = 40
    design: str = "cluster"
    clusters: str = "many"
    empty_arm_sites: int = 0
    no_events_arm: str | None = None
    all_censored: bool = False
    dead_early: bool = False
    seed: int = 1

    def label(self) -> str:
        return ",".join(f"{k}={v}" for k, v in asdict(self).items()
                        if v != getattr(Shape, k, None) or k in ("sites", "people_per_site"))


def _rewrite(con: duckdb.DuckDBPyConnection, folder: Path, table: str, select: str) -> None:
    path = folder / f"{table}.parquet"
    tmp = folder / f".{table}.tmp.parquet"
    source = f"read_parquet('{path}')"
    con.execute(f"copy ({select.format(t=source)}) to '{tmp}' (format parquet)")
    tmp.replace(path)


def write_shape(shape: Shape, out: Path) -> Path:
    """Write ``shape``'s extract to ``out`` (Parquet, one file per table); returns ``out``."""
    from pipeline.synth import generate_study

    out = Path(out)
    generate_study(out, people=shape.sites * shape.people_per_site, sites=shape.sites,
                   seed=shape.seed, fmt="parquet", design=shape.design)
    con = duckdb.connect()
    people = f"read_parquet('{out / 'people.parquet'}')"
    site_ids = [r[0] for r in con.execute(f"select distinct site_id from {people} order by 1")
                .fetchall()]
    keep = ["true"]
    if shape.design == "cluster" and shape.clusters != "many":
        part = "site_id" if shape.clusters == "one_per_site" else "site_id, arm"
        keep.append(f"cluster_id in (select min(cluster_id) from {people} group by {part})")
    for i, site in enumerate(site_ids[:shape.empty_arm_sites]):
        keep.append(f"not (site_id = '{site}' and arm = '{ARMS[i % 2]}')")
    _rewrite(con, out, "people", "select * from {t} where " + " and ".join(keep))
    kept = f"(select person_id from read_parquet('{out / 'people.parquet'}'))"
    for table in PERSON_TABLES:
        _rewrite(con, out, table, f"select * from {{t}} where person_id in {kept}")
    contacts = f"(select contact_id from read_parquet('{out / 'contacts.parquet'}'))"
    _rewrite(con, out, "contact_staff", f"select * from {{t}} where contact_id in {contacts}")
    if shape.all_censored or shape.no_events_arm:
        arm = "" if shape.all_censored else f" where arm = '{shape.no_events_arm}'"
        gone = f"(select person_id from read_parquet('{out / 'people.parquet'}'){arm})"
        for table in EVENT_TABLES:
            _rewrite(con, out, table, f"select * from {{t}} where person_id not in {gone}")
    if shape.all_censored:
        _rewrite(con, out, "people", "select * replace (null::date as death_date) from {t}")
    if shape.dead_early:
        _rewrite(con, out, "people", "select * replace (index_date + 1 + "
                 "cast(hash(person_id) % 30 as integer) as death_date) from {t}")
    con.close()
    return out


def one_line_error(stderr: str) -> bool:
    """True for a refusal as the CLI prints it: ``error: ... [rule x.y]``, no traceback."""
    text = stderr.strip()
    return (text.startswith("error:") and "Traceback" not in text and "\n" not in text
            and re.search(r"\[rule [\w.\-()]+\]$", text) is not None)


def refusal(output: str) -> str | None:
    """The rule of the error that ends ``output`` (``error: ... [rule x.y]``, the CLI's way
    to stop; a disclosure refusal lists its breaches on the lines before the rule), or None
    when the output ends otherwise (a traceback)."""
    text = output.strip()
    start = text.rfind("\nerror: ") + 1 if not text.startswith("error: ") else 0
    tail = text[start:]
    m = re.search(r"\[rule ([\w.\-()]+)\]$", tail)
    if not tail.startswith("error: ") or "Traceback" in tail or m is None:
        return None
    return m.group(1)


@dataclass
class ShapeRun:
    """What ``odeval run`` did on a shape: exit code, output (stdout and stderr), the
    warehouse and the report folder, and check-outputs' verdict on the report folder."""

    exit_code: int
    output: str
    warehouse: Path
    reports: Path
    check: str = ""

    @property
    def ok(self) -> bool:
        """A report that passes check-outputs."""
        return (self.exit_code == 0 and (self.reports / "report.html").exists()
                and self.check == "check-outputs: no breach")

    @property
    def refused(self) -> bool:
        """A refusal naming its rule (``error: ... [rule ...]``), no traceback."""
        return self.exit_code == 2 and refusal(self.output) is not None

    @property
    def report(self) -> Path:
        return self.reports / "report.html"


def run_shape(shape: Shape, tmp: Path, *, params: Path | None = None) -> ShapeRun:
    """Write ``shape`` under ``tmp`` and run ``odeval run`` on it in this process (typer's
    runner; the report folder is ``tmp/reports``), then ``odeval check-outputs`` on the
    report folder when the run succeeded."""
    import traceback

    from typer.testing import CliRunner

    import pipeline.config as config
    from pipeline.cli import app

    extract = write_shape(shape, Path(tmp) / "extract")
    wh, reports = Path(tmp) / "warehouse.duckdb", Path(tmp) / "reports"
    if params is None and shape.design in ("individual", "observational"):
        # the analysis plan declares the design: the project's is cluster-randomised
        import yaml

        from pipeline.params import load_params

        doc = load_params()
        doc["design"] = {**doc.get("design", {}),
                         "type": "individually_randomised" if shape.design == "individual"
                         else "observational",
                         "unit": "person", "pairing": False, "cluster_covariates": []}
        params = Path(tmp) / "params.yaml"
        params.write_text(yaml.safe_dump(doc, sort_keys=False))
    saved = config.DATA_DIR, config.REPORTS_DIR
    config.DATA_DIR, config.REPORTS_DIR = Path(tmp) / "data", Path(tmp) / "project_reports"
    try:
        extra = ["--params", str(params)] if params else []
        res = CliRunner().invoke(app, ["run", str(extract), "-w", str(wh), "--out", str(reports),
                                       *extra])
        output = res.output
        if res.exception is not None and not isinstance(res.exception, SystemExit):
            output += "".join(traceback.format_exception(res.exception))
        run = ShapeRun(res.exit_code, output, wh, reports)
        if res.exit_code == 0:
            chk = CliRunner().invoke(app, ["check-outputs", str(reports), "-w", str(wh), *extra])
            run.check = chk.output.strip().splitlines()[-1] if chk.output.strip() else ""
    finally:
        config.DATA_DIR, config.REPORTS_DIR = saved
    return run
