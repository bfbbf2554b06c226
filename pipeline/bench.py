"""``odeval bench``: wall time and peak memory per stage, beside the obvious alternatives.

Not a test: nothing here asserts a timing. For one size (``params.yaml`` ``bench.sizes``):

1. the synthetic study is generated once and cached under ``data/bench/study/`` (by size,
   people, sites and seed; a ``.complete`` marker is written last, so an interrupted
   generation is redone);
2. the *floor*: every input file loaded once into a fresh DuckDB file with
   ``create table ... as select * from read_parquet(...)`` and no checks, the time no
   pipeline that stores its inputs can beat;
3. each stage (``odeval ingest``, ``validate``, ``derive`` and the later stages once they
   exist) in a fresh subprocess, then ``odeval run`` (every stage in one process) on a
   second fresh warehouse; ``validate_sql`` is validate again with its great-expectations
   cross-check switched off (``validate.great_expectations: false``), so that the SQL
   rules' time and the cross-check's show apart;
4. where ``bench.pandas_sizes`` says, the plain pandas derive in ``benchmarks/`` on the same
   Parquet files, and where ``bench.polars_sizes`` says, the lazy polars derive beside it
   (``scan_parquet``, one ``collect_all``), each one's results checked equal to ``derived.*``;
5. where ``bench.cox_sizes`` says, lifelines ``CoxPHFitter`` beside ``pipeline.stats.cox``
   on the primary Cox model, coefficients checked equal;
6. with ``baseline`` (a git commit, e.g. the one the README's last table was measured at):
   each stage and ``odeval run`` of that commit too, each right after ours in the same
   bench run and on the same study, from a detached worktree under
   ``data/bench/baseline/<commit>`` and the same Python environment; the table then has the
   baseline's figures and ours over them, so that a regression cannot hide in a change of
   machine load between two runs.

Every step runs in its own subprocess, so that one step's memory cannot hide another's.
Peak memory is given twice: the largest resident set of any one process of the step
(``wait4`` rusage), and on Linux the step's processes together, their proportional set
sizes (PSS: a page shared by a forked worker and its parent counted once) summed every
0.25 s (:class:`TreeMemory`). The second is what the machine must hold when analyse or
metrics forks a worker; the first alone understated it (4.4 GB summed against 2.8 GB for
the largest process, national ``odeval run``, measured). Wall time is measured around
it. Stage subprocesses write their DVC stamps and reports under ``data/bench/<size>/`` instead of ``data/stamps`` and ``reports/``, so benchmarking never
disturbs the project's own outputs. Results: ``reports/bench/<size>.json`` and ``.md``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipeline.config import DATA_DIR, PROJ_ROOT, REPORTS_DIR
from pipeline.errors import OdevalError

#: Stages in pipeline order; those the CLI has are benchmarked.
STAGES = ("ingest", "validate", "derive", "metrics", "analyse", "report")

DEFAULTS: dict[str, Any] = {
    "seed": 20261125,
    "sizes": {
        "pilot": {"people": 1000, "sites": 7},
        "trust": {"people": 50_000, "sites": 10},
        "national": {"people": 1_000_000, "sites": 50},
    },
    "pandas_sizes": ["pilot", "trust"],
    "polars_sizes": ["pilot", "trust", "national"],
    "cox_sizes": ["pilot", "trust", "national"],
    "run": True,
}

Log = Callable[[str], None]

#: The derive relations the pandas and polars benchmarks compute, with the intermediates
#: they need (every relation of ``pipeline/sql/derive/`` they read, reference tables aside).
OUTCOME_RELATIONS = ("people", "int_care_records", "int_acute_episode_records",
                     "acute_episodes", "int_mha_episode_records", "mha_episodes",
                     "int_admission_spells", "int_outcome_events", "int_antipsychotic_exposures",
                     "int_follow_up_intervals", "time_to_event", "recurrent", "antipsychotic",
                     "activity")


def settings(params: dict[str, Any] | None) -> dict[str, Any]:
    """The ``bench:`` section merged over :data:`DEFAULTS`."""
    s = {**DEFAULTS, **(params or {})}
    s["sizes"] = {**DEFAULTS["sizes"], **(params or {}).get("sizes", {})}
    return s


def available_stages() -> list[str]:
    """The stages of :data:`STAGES` (each is an ``odeval`` command; bench runs them through
    ``python -m pipeline`` and never imports the command line, which imports bench)."""
    return list(STAGES)


# --------------------------------------------------------------------------- measuring

def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover - not on Linux/macOS
        return None


class TreeMemory:
    """The largest sum, over a process and all its descendants, of their proportional set
    sizes (psutil's ``memory_full_info().pss``, from ``/proc/<pid>/smaps_rollup``),
    sampled every ``interval`` seconds by a thread between :meth:`start` and :meth:`stop`
    (Linux; elsewhere ``peak_mb`` stays None). A spike shorter than the interval can be
    missed."""

    def __init__(self, pid: int, interval: float = 0.25):
        import threading

        self.pid, self.interval, self.peak_mb = pid, interval, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> TreeMemory:
        if sys.platform.startswith("linux"):
            self._thread.start()
        return self

    def stop(self) -> float | None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        return self.peak_mb

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:  # ended since the last sample
                procs = []
            total = 0
            for proc in procs:
                try:
                    total += proc.memory_full_info().pss
                except (psutil.NoSuchProcess, psutil.AccessDenied):  # gone, or not ours
                    pass
            if total:
                self.peak_mb = max(self.peak_mb or 0.0, round(total / 2**20, 1))
            self._stop.wait(self.interval)


def measure(argv: Sequence[str], *, cwd: Path = PROJ_ROOT, log_file: Path | None = None,
            env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``argv`` in a fresh process; its wall time, CPU time and peak memory.

    ``peak_rss_mb``: the largest resident set of the process and of the children it waited
    for (``ru_maxrss`` from ``wait4``, kB on Linux): one process's, at least the size of
    the process that forked it (Linux carries that over the exec; the bench's own is
    small). ``peak_all_mb``: its processes together (:class:`TreeMemory`; None off Linux).
    Output goes to ``log_file``.
    """
    out = open(log_file, "w") if log_file else subprocess.DEVNULL  # noqa: SIM115
    load0 = _loadavg()
    t0 = time.perf_counter()
    tree = None
    try:
        proc = subprocess.Popen(list(argv), cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})
        tree = TreeMemory(proc.pid).start()
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if tree is not None:
            tree.stop()
        if log_file:
            out.close()
    wall = time.perf_counter() - t0
    rss = ru.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return {"wall_s": round(wall, 3), "cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
            "peak_rss_mb": round(rss / 2**20, 1), "peak_all_mb": tree.peak_mb,
            "exit_code": proc.returncode, "load_before": load0, "load_after": _loadavg()}


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


# --------------------------------------------------------------------------- steps

def study_dir(size: str, s: dict[str, Any], data_dir: Path) -> Path:
    spec = s["sizes"][size]
    return data_dir / "study" / f"{size}-{spec['people']}p-{spec['sites']}s-seed{s['seed']}"


def ensure_study(size: str, s: dict[str, Any], data_dir: Path, log: Log) -> tuple[Path, dict]:
    """The cached study for ``size``; generated (and measured) when not cached yet."""
    path = study_dir(size, s, data_dir)
    marker = path / ".complete"
    if marker.exists():
        return path, {"cached": True, **json.loads(marker.read_text())}
    spec = s["sizes"][size]
    log(f"generating the {size} study ({spec['people']:,} people, {spec['sites']} sites) "
        f"in {path}")
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    m = measure(_python("-m", "pipeline.bench", "_child", "synth", str(path), str(spec["people"]),
                        str(spec["sites"]), str(s["seed"])),
                log_file=path.parent / f"{path.name}.log")
    if m["exit_code"] != 0:
        raise OdevalError(f"generating the {size} study failed; see {path.parent / (path.name + '.log')}",
                          rule="bench.synth")
    rows = json.loads((path / "rows.json").read_text())
    info = {"generated": m, "rows": rows}
    marker.write_text(json.dumps(info, indent=2) + "\n")
    return path, {"cached": False, **info}


def baseline_tree(ref: str, data_dir: Path) -> tuple[Path, str]:
    """A detached worktree of commit ``ref`` (made once, reused): ``(path, short commit)``."""
    def git(*args, cwd=PROJ_ROOT):
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)

    p = git("rev-parse", "--short", f"{ref}^{{commit}}")
    if p.returncode != 0:
        raise OdevalError(f"--baseline {ref!r}: not a commit of this repository "
                          f"({(p.stderr or '').strip().splitlines()[-1:] or ''})",
                          rule="bench.baseline")
    sha = p.stdout.strip()
    path = (data_dir / "baseline" / sha).resolve()
    if not (path / "pipeline" / "__main__.py").exists():
        if path.exists():
            shutil.rmtree(path)
        git("worktree", "prune")
        p = git("worktree", "add", "--detach", str(path), sha)
        if p.returncode != 0:
            raise OdevalError(f"--baseline {ref!r}: git worktree add failed: "
                              f"{p.stderr.strip()[-300:]}", rule="bench.baseline")
    return path, sha


def _stage_argv(stage: str, study: Path, warehouse: Path, work: Path) -> list[str]:
    args = [stage]
    if stage in ("ingest", "run"):
        args += [str(study), "--replace"]
    # with --warehouse, stamps are not written and outputs go beside the warehouse
    # (<work>/warehouse_reports): nothing of a benchmark lands in the project's data/, reports/
    args += ["--warehouse", str(warehouse)]
    return _python("-m", "pipeline", *args)


def _fresh(db: Path) -> None:
    for p in (db, db.with_name(db.name + ".wal"), db.with_name(db.name + ".tmp")):
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def run_bench(size: str, *, stages: Sequence[str] | None = None,
              params: dict[str, Any] | None = None, data_dir: Path | None = None,
              out_dir: Path | None = None, log: Log = print,
              baseline: str | None = None) -> dict[str, Any]:
    """Benchmark one size; returns the results also written to ``<out_dir>/<size>.json``.

    ``stages``: any of the available stages, ``floor``, ``run``, ``derive_sql``,
    ``validate_sql``, ``pandas``, ``polars`` and ``cox`` (default: all that apply to this size).
    ``baseline``: a commit whose stages and run are measured beside ours (step names
    ``<step>@baseline``).
    """
    from pipeline.params import section

    params = params or {}
    s = settings(section(params, "bench"))
    if size not in s["sizes"]:
        raise OdevalError(f"unknown size {size!r}; params.yaml bench.sizes has "
                          f"{', '.join(s['sizes'])}", rule="bench.size")
    data_dir = Path(data_dir or DATA_DIR / "bench")
    out_dir = Path(out_dir or REPORTS_DIR / "bench")
    from pipeline import outputs

    outputs.adopt(out_dir.parent, "bench", [out_dir.name], source="bench")
    have = available_stages()
    default = ["floor", *have]
    if s["run"]:
        default.append("run")
    if "derive" in have:
        default.append("derive_sql")
    if "validate" in have:
        default.append("validate_sql")
    if size in s["pandas_sizes"]:
        default.append("pandas")
    if size in s["polars_sizes"]:
        default.append("polars")
    if size in s["cox_sizes"]:
        default.append("cox")
    wanted = list(stages or default)
    extra = ("floor", "run", "derive_sql", "validate_sql", "pandas", "polars", "cox")
    unknown = [x for x in wanted if x not in (*have, *extra)]
    if unknown:
        raise OdevalError(f"unknown bench step(s) {unknown}; have {[*have, *extra]}",
                          rule="bench.stages")
    wh = section(params, "warehouse")
    result: dict[str, Any] = {
        "size": size, **s["sizes"][size], "seed": s["seed"],
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": _machine(), "warehouse_settings": {"threads": wh.get("threads"),
                                                      "memory_limit": wh.get("memory_limit")},
        "steps": {},
    }
    result["git"] = _git_state()
    base = baseline_tree(baseline, data_dir) if baseline else None
    if base:
        result["baseline"] = {"ref": baseline, "commit": base[1]}
    study, info = ensure_study(size, s, data_dir, log)
    result["study"] = {"path": str(study), **info}
    work = data_dir / size
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    warehouse = work / "warehouse.duckdb"

    # Byte code: an installed environment keeps its .pyc files, but one run with
    # PYTHONDONTWRITEBYTECODE recompiles pandas and great-expectations in every process
    # (seconds per stage). The children keep theirs under data/bench/pycache, warmed once.
    env = {"PYTHONPYCACHEPREFIX": str(data_dir.resolve() / "pycache"),
           "PYTHONDONTWRITEBYTECODE": ""}
    warm = measure(_python("-m", "pipeline.bench", "_child", "warm"), env=env,
                   log_file=logs / "warm.log")
    result["warm_up"] = warm

    def save() -> None:
        # after every step, so that an interrupted run keeps what it measured
        result["summary"] = summarise(result)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{size}.partial.json").write_text(json.dumps(result, indent=2, default=str) + "\n")

    def step(name: str, argv: list[str], cwd: Path = PROJ_ROOT) -> dict[str, Any]:
        log(f"{size}: {name} ...")
        m = measure(argv, cwd=cwd, log_file=logs / f"{name}.log", env=env)
        result["steps"][name] = m
        save()
        log(f"{size}: {name}: {m['wall_s']:.1f} s, peak {m['peak_rss_mb']:,.0f} MB"
            + ("" if m["exit_code"] == 0 else f", FAILED (exit {m['exit_code']}, see {logs / (name + '.log')})"))
        return m

    if "floor" in wanted:
        floor_db = work / "floor.duckdb"
        _fresh(floor_db)
        step("floor", _python("-m", "pipeline.bench", "_child", "floor", str(study), str(floor_db)))
        _fresh(floor_db)
    stage_list = [x for x in have if x in wanted]
    base_wh = work / "baseline.duckdb"
    if stage_list and stage_list[0] == "ingest":
        _fresh(warehouse)
        if base:
            _fresh(base_wh)
    for stage in stage_list:
        ok = step(stage, _stage_argv(stage, study, warehouse, work))["exit_code"] == 0
        if base:  # the baseline's stage right after ours, on its own warehouse
            step(f"{stage}@baseline", _stage_argv(stage, study.resolve(), base_wh.resolve(),
                                                  work), cwd=base[0])
        if not ok:
            break
    if "validate_sql" in wanted:  # validate once more, the SQL rules alone
        import yaml

        from pipeline.params import load_params

        no_ge = load_params()
        no_ge["validate"] = {**(no_ge.get("validate") or {}), "great_expectations": False}
        params_file = work / "params_validate_sql.yaml"
        params_file.write_text(yaml.safe_dump(no_ge, sort_keys=False))
        step("validate_sql", [*_stage_argv("validate", study, warehouse, work),
                              "--params", str(params_file)])
    if "derive_sql" in wanted:
        prof = work / "derive_sql.json"
        m = step("derive_sql", _python("-m", "pipeline.bench", "_child", "derive_sql", str(warehouse),
                                       str(prof)))
        if m["exit_code"] == 0:
            m["relations"] = json.loads(prof.read_text())
            save()
    for peer in ("pandas", "polars"):  # the derive stage's peers in benchmarks/
        if peer not in wanted:
            continue
        module, peer_out = f"benchmarks.{peer}_derive", work / f"{peer}_derive"
        m = step(peer, _python("-m", module, "derive", str(study), str(peer_out)))
        if m["exit_code"] == 0:
            check = _json_child(_python("-m", module, "check", str(peer_out), str(warehouse)),
                                logs / f"{peer}_check.log")
            m["check"] = check
            timing = peer_out / "timing.json"
            if timing.exists():
                m["inner"] = json.loads(timing.read_text())
            log(f"{size}: {peer} results equal to derived.*: {check.get('equal')}")
            save()
    if "cox" in wanted:
        cox_json = work / "cox.json"
        m = step("cox", _python("-m", "benchmarks.cox_lifelines", str(warehouse), str(cox_json)))
        if m["exit_code"] == 0:
            m["fit"] = json.loads(cox_json.read_text())
            save()
    if "run" in wanted:  # last: the longest step, and a repeat of the stages above
        run_db = work / "run.duckdb"
        _fresh(run_db)
        step("run", _stage_argv("run", study, run_db, work))
        _fresh(run_db)
        if base:
            step("run@baseline", _stage_argv("run", study.resolve(), run_db.resolve(), work),
                 cwd=base[0])
            _fresh(run_db)
    result["finished"] = dt.datetime.now().isoformat(timespec="seconds")
    result["summary"] = summarise(result)
    _merge_previous(out_dir / f"{size}.json", result)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{size}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out_dir / f"{size}.md").write_text(markdown(result))
    (out_dir / f"{size}.partial.json").unlink(missing_ok=True)
    return result


def _merge_previous(path: Path, result: dict[str, Any]) -> None:
    """A partial run (``--stages``) keeps the other steps of the last run of that size,
    marked with the time they were measured."""
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text())
    except ValueError:
        return
    if old.get("people") != result.get("people") or old.get("seed") != result.get("seed"):
        return
    for name, m in old.get("steps", {}).items():
        if name not in result["steps"]:
            result["steps"][name] = {**m, "from_run": m.get("from_run", old.get("started"))}
    result["summary"] = summarise(result)


def _json_child(argv: list[str], log_file: Path) -> dict[str, Any]:
    proc = subprocess.run(argv, cwd=PROJ_ROOT, capture_output=True, text=True)
    log_file.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        return {"equal": False, "error": (proc.stderr or proc.stdout).strip()[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _machine() -> dict[str, Any]:
    import psutil

    return {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "platform": platform.platform(),
            "duckdb": _version("duckdb"), "pandas": _version("pandas"),
            "polars": _version("polars"), "lifelines": _version("lifelines")}


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


# --------------------------------------------------------------------------- reporting

def summarise(r: dict[str, Any]) -> dict[str, Any]:
    """The ratios the targets are about (None where a step is missing)."""
    st = r["steps"]

    def wall(name):
        m = st.get(name)
        return m["wall_s"] if m and m.get("exit_code") == 0 else None

    out: dict[str, Any] = {}
    stages = [x for x in STAGES if x in st]
    if stages and all(wall(x) is not None for x in stages):
        out["stages_total_s"] = round(sum(wall(x) for x in stages), 2)
        out["stages_peak_mb"] = max(st[x]["peak_rss_mb"] for x in stages)
    ivd = [wall(x) for x in ("ingest", "validate", "derive")]
    if wall("floor") and all(v is not None for v in ivd):
        out["ingest_validate_derive_s"] = round(sum(ivd), 2)
        out["ivd_over_floor"] = round(sum(ivd) / wall("floor"), 2)
    ivd_sql = [wall(x) for x in ("ingest", "validate_sql", "derive")]
    if wall("floor") and all(v is not None for v in ivd_sql):
        out["ingest_validate_sql_derive_s"] = round(sum(ivd_sql), 2)
        out["ivd_sql_over_floor"] = round(sum(ivd_sql) / wall("floor"), 2)
    if wall("run") is not None:
        out["run_s"] = wall("run")
        out["run_peak_mb"] = st["run"]["peak_rss_mb"]
        out["run_peak_all_mb"] = st["run"].get("peak_all_mb")
    rel = (st.get("derive_sql") or {}).get("relations")
    for peer in ("pandas", "polars"):
        if wall(peer) and wall("derive"):
            out[f"{peer}_over_derive"] = round(wall(peer) / wall("derive"), 2)
            out[f"{peer}_equal"] = (st[peer].get("check") or {}).get("equal")
        inner = (st.get(peer) or {}).get("inner")
        if inner and rel:
            sql = sum(v["wall_s"] for k, v in rel.items() if k in OUTCOME_RELATIONS)
            sql_cpu = sum(v["cpu_s"] for k, v in rel.items() if k in OUTCOME_RELATIONS)
            if sql > 0:
                out["outcome_sql_s"] = round(sql, 3)
                out[f"{peer}_compute_s"] = inner["read_and_compute_s"]
                out[f"{peer}_compute_over_outcome_sql"] = round(inner["read_and_compute_s"] / sql, 2)
            if sql_cpu > 0 and "read_and_compute_cpu_s" in inner:  # CPU: less disturbed by load
                out["outcome_sql_cpu_s"] = round(sql_cpu, 3)
                out[f"{peer}_compute_cpu_s"] = inner["read_and_compute_cpu_s"]
                out[f"{peer}_compute_cpu_over_outcome_sql"] = round(inner["read_and_compute_cpu_s"] / sql_cpu, 2)
    fit = (st.get("cox") or {}).get("fit")
    if fit:
        out["lifelines_over_cox"] = round(fit["lifelines_s"] / fit["odeval_s"], 2)
        out["cox_max_abs_coef_diff"] = fit["max_abs_coef_diff"]
        if "max_abs_coef_diff_precision_1e-12" in fit:
            out["cox_max_abs_coef_diff_tight"] = fit["max_abs_coef_diff_precision_1e-12"]
    base = st.get("run@baseline")
    if out.get("run_s") and base and base.get("exit_code") == 0:
        out["run_baseline_s"] = base["wall_s"]
        out["run_over_baseline"] = round(out["run_s"] / base["wall_s"], 2)
    people = r.get("people")
    if people and out.get("run_s"):
        out["run_us_per_person"] = round(out["run_s"] / people * 1e6, 1)
    return out


def _peak(m: dict[str, Any]) -> str:
    """A step's peak memory cell: one process's, and all its processes' when measured."""
    all_mb = m.get("peak_all_mb")
    return _fmt_mb(m["peak_rss_mb"]) + (f" / {_fmt_mb(all_mb)}" if all_mb else "")


def _peak_key(m: dict[str, Any], b: dict[str, Any]) -> str:
    """The figure two steps' peaks are compared by: all processes when both have it."""
    return "peak_all_mb" if m.get("peak_all_mb") and b.get("peak_all_mb") else "peak_rss_mb"


def _fmt_mb(v) -> str:
    return f"{v:,.0f}" if v is not None else ""


def markdown(r: dict[str, Any]) -> str:
    """The results of one size as a markdown table and the ratios below it."""
    rows = r.get("study", {}).get("rows", {})
    lines = [f"# bench: {r['size']} ({r['people']:,} people, {r['sites']} sites, "
             f"{rows.get('contacts', 0):,} contacts, seed {r['seed']})", "",
             f"Machine: {r['machine']['cpus']} cores, {r['machine']['memory_gb']} GB; "
             f"DuckDB threads {r['warehouse_settings']['threads']}, memory_limit "
             f"{r['warehouse_settings']['memory_limit']}. Started {r['started']}. "
             "Load = 1-minute load average before / after the step (above 0 means other "
             "processes were running).", "",
             "Peak MB: the largest one process / the step's processes together (PSS summed, "
             "a forked worker's own memory included).", "",
             "| step | wall s | CPU s | peak MB | load | note |", "|---|---:|---:|---:|---|---|"]
    if r.get("baseline"):
        lines[-2:] = [f"Baseline: commit {r['baseline']['commit']} ({r['baseline']['ref']}), each "
                      "of its steps run right after ours on the same study; ours / baseline "
                      "below 1 is faster or smaller.", "",
                      "| step | wall s | CPU s | peak MB | baseline wall s | CPU s | peak MB "
                      "| ours / baseline: wall, CPU, peak | load | note |",
                      "|---|---:|---:|---:|---:|---:|---:|---|---|---|"]
    order = ["floor", *[x for x in STAGES if x in r["steps"]], "run", "validate_sql", "derive_sql",
             "pandas", "polars", "cox"]
    notes = {"floor": "read_parquet -> fresh DuckDB, no checks",
             "validate_sql": "validate again without its great-expectations cross-check",
             "run": "`odeval run`: every stage in one process",
             "derive_sql": "derive again in one process, each relation's SQL timed",
             "pandas": "plain pandas derive (benchmarks/pandas_derive.py)",
             "polars": "lazy polars derive (benchmarks/polars_derive.py)",
             "cox": "pipeline.stats.cox and lifelines, data loading included"}
    for name in order:
        m = r["steps"].get(name)
        if not m:
            continue
        note = notes.get(name, f"`odeval {name}`")
        if m.get("exit_code") != 0:
            note += f" FAILED (exit {m['exit_code']})"
        if name in ("pandas", "polars") and m.get("check") is not None:
            note += f"; equal to ours: {m['check'].get('equal')}"
        if name == "cox" and m.get("fit"):
            f = m["fit"]
            note += (f"; fit: ours {f['odeval_s']:.2f} s, lifelines {f['lifelines_s']:.2f} s, "
                     f"max coef diff {f['max_abs_coef_diff']:.1e}")
        if m.get("from_run"):
            note += f" (measured {m['from_run']})"
        load = f"{m.get('load_before')} / {m.get('load_after')}"
        if r.get("baseline"):
            b = r["steps"].get(f"{name}@baseline")
            cells = ["", "", "", ""]
            if b and b.get("exit_code") == 0 and m.get("exit_code") == 0:
                cells = [f"{b['wall_s']:.2f}", f"{b['cpu_s']:.2f}", _peak(b),
                         ", ".join(f"{m[k] / b[k]:.2f}" if b[k] else "" for k in
                                   ("wall_s", "cpu_s", _peak_key(m, b)))]
            elif b:
                cells[0] = f"FAILED (exit {b.get('exit_code')})"
            lines.append(f"| {name} | {m['wall_s']:.2f} | {m['cpu_s']:.2f} | "
                         f"{_peak(m)} | {' | '.join(cells)} | {load} | {note} |")
            continue
        lines.append(f"| {name} | {m['wall_s']:.2f} | {m['cpu_s']:.2f} | "
                     f"{_peak(m)} | {load} | {note} |")
    sm = r.get("summary") or {}
    lines.append("")
    rel = (r["steps"].get("derive_sql") or {}).get("relations")
    if rel:
        lines.append("derive, wall s per relation: " + ", ".join(
            f"{k} {v['wall_s']:.2f}" for k, v in rel.items() if v["wall_s"] >= 0.01) + "")
        lines.append("")
    g = r.get("git") or {}
    if g:
        lines.append(f"Commit {g.get('commit')}" + (f"; files differing from it while measured: "
                     f"{', '.join(g['dirty'])}" if g.get("dirty") else "; clean tree") + ".")
        lines.append("")
    if "ivd_over_floor" in sm:
        lines.append(f"- ingest + validate + derive: {sm['ingest_validate_derive_s']:.1f} s = "
                     f"**{sm['ivd_over_floor']:.1f}x the floor** (target <= 4x)")
    if "ivd_sql_over_floor" in sm:
        lines.append(f"- the same with validate's SQL rules alone (no great-expectations "
                     f"cross-check): {sm['ingest_validate_sql_derive_s']:.1f} s = "
                     f"**{sm['ivd_sql_over_floor']:.1f}x the floor**")
    if "run_s" in sm:
        lines.append(f"- `odeval run`: {sm['run_s']:.1f} s, peak {sm['run_peak_mb']:,.0f} MB "
                     + (f"in one process, {sm['run_peak_all_mb']:,.0f} MB all processes together "
                        if sm.get("run_peak_all_mb") else "")
                     + "(targets: trust <= 15 s; national <= 120 s, <= 3 GB)")
    if "run_over_baseline" in sm:
        lines.append(f"- `odeval run` / the baseline's, same bench run: "
                     f"**{sm['run_over_baseline']:.2f}x** ({sm['run_s']:.1f} s against "
                     f"{sm['run_baseline_s']:.1f} s)")
    if "pandas_over_derive" in sm:
        lines.append(f"- pandas derive / our derive: **{sm['pandas_over_derive']:.1f}x**, "
                     f"results equal: {sm['pandas_equal']}")
    if "polars_over_derive" in sm:
        lines.append(f"- polars derive / our derive: **{sm['polars_over_derive']:.1f}x**, results "
                     f"equal: {sm['polars_equal']}" + (f" (pandas: {sm['pandas_over_derive']:.1f}x)"
                                                       if "pandas_over_derive" in sm else ""))
    for peer in ("pandas", "polars"):
        if f"{peer}_compute_over_outcome_sql" in sm:
            lines.append(f"- same relations only, in-process: {peer} read + compute "
                         f"{sm[f'{peer}_compute_s']:.2f} s / our SQL for them {sm['outcome_sql_s']:.2f} s "
                         f"= **{sm[f'{peer}_compute_over_outcome_sql']:.1f}x**"
                         + (" (target >= 1x)" if peer == "polars" else "")
                         + (f"; CPU {sm[f'{peer}_compute_cpu_s']:.2f} s / {sm['outcome_sql_cpu_s']:.2f} s "
                            f"= {sm[f'{peer}_compute_cpu_over_outcome_sql']:.1f}x"
                            if f"{peer}_compute_cpu_s" in sm else ""))
    if "lifelines_over_cox" in sm:
        lines.append(f"- lifelines fit / our Cox fit: **{sm['lifelines_over_cox']:.1f}x** "
                     f"(target >= 1x), max |coef difference| {sm['cox_max_abs_coef_diff']:.1e} "
                     "(target <= 1e-6)"
                     + (f"; {sm['cox_max_abs_coef_diff_tight']:.1e} against lifelines run to "
                        "precision 1e-12" if "cox_max_abs_coef_diff_tight" in sm else ""))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- children

def _child(argv: list[str]) -> None:
    """Entry point of the measured subprocesses (``python -m pipeline.bench _child ...``)."""
    kind, *rest = argv
    if kind == "synth":
        from pipeline.synth import generate_study

        out, people, sites, seed = rest
        summary = generate_study(Path(out), people=int(people), sites=int(sites),
                                 seed=int(seed), fmt="parquet")
        (Path(out) / "rows.json").write_text(json.dumps(summary["rows"], indent=2) + "\n")
    elif kind == "warm":
        import importlib

        for mod in ("pipeline.cli", "pipeline.ingest", "pipeline.validate", "pipeline.dq_report",
                    "pipeline.derive", "pipeline.ge_suites", "great_expectations",
                    "great_expectations.expectations", "duckdb_engine", "pandas", "polars",
                    "lifelines",
                    "pipeline.stats.coxph", *(f"pipeline.{x}" for x in ("metrics", "analyse", "report"))):
            try:
                importlib.import_module(mod)
            except ImportError:
                pass
        import compileall

        import great_expectations  # imports most of itself lazily, while validating

        compileall.compile_dir(Path(great_expectations.__file__).parent, quiet=1)
    elif kind == "derive_sql":
        _derive_sql(Path(rest[0]), Path(rest[1]))
    elif kind == "floor":
        _floor(Path(rest[0]), Path(rest[1]))
    else:
        raise SystemExit(f"unknown child {kind!r}")


def _derive_sql(warehouse: Path, out: Path) -> None:
    """Run the derive stage in this process, timing each relation's SQL (where derive's time goes)."""
    import re

    from pipeline.derive import derive
    from pipeline.params import load_params, section
    from pipeline.warehouse import connect

    params = load_params()
    wh = section(params, "warehouse")
    con = connect(warehouse, threads=wh.get("threads"), memory_limit=wh.get("memory_limit"))
    times: dict[str, dict[str, float]] = {}

    class Timed:
        def __init__(self, con):
            self._con = con

        def __getattr__(self, name):
            return getattr(self._con, name)

        def execute(self, sql, *args, **kwargs):
            m = re.match(r"\s*create or replace table derived\.(\w+)", sql, flags=re.I)
            name = m.group(1) if m else sql.split()[0].lower()
            t, c = time.perf_counter(), time.process_time()
            r = self._con.execute(sql, *args, **kwargs)
            got = times.setdefault(name, {"wall_s": 0.0, "cpu_s": 0.0})
            got["wall_s"] += time.perf_counter() - t
            got["cpu_s"] += time.process_time() - c
            return r

    derive(Timed(con), section(params, "derive"))
    con.close()
    out.write_text(json.dumps({k: {a: round(b, 3) for a, b in v.items()} for k, v in
                               sorted(times.items(), key=lambda kv: -kv[1]["wall_s"])}, indent=2) + "\n")


def _git_state() -> dict[str, Any]:
    """The commit, and files of the package that differ from it (others edit the same tree)."""
    def git(*args):
        p = subprocess.run(["git", *args], cwd=PROJ_ROOT, capture_output=True, text=True)
        return p.stdout if p.returncode == 0 else None

    dirty = git("status", "--porcelain", "--", "pipeline", "schemas", "params.yaml", "benchmarks")
    return {"commit": (git("rev-parse", "--short", "HEAD") or "").strip() or None,
            "dirty": [ln[3:] for ln in (dirty or "").splitlines() if ln.strip()]}


def _floor(study: Path, db: Path) -> None:
    """Every input file once into a fresh DuckDB file, nothing else."""
    import duckdb

    from pipeline.params import load_params, section
    from pipeline.schemas import load_contract
    from pipeline.warehouse import _safe_size

    wh = section(load_params(), "warehouse")
    con = duckdb.connect(str(db))
    if wh.get("threads"):
        con.execute(f"set threads = {int(wh['threads'])}")
    if wh.get("memory_limit"):
        con.execute(f"set memory_limit = '{_safe_size(wh['memory_limit'])}'")
    for name in load_contract():
        con.execute(f"create table {name} as select * from read_parquet($p)",
                    {"p": str(study / f"{name}.parquet")})
    con.close()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        _child(sys.argv[2:])
