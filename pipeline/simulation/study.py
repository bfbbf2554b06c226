"""The simulation study that chooses the few-cluster inference method per design shape.

For each cell (design shape x cluster variance x effect) it draws replicate trials from
the generator's model (:mod:`pipeline.simulation.draw`), runs every candidate method on
every outcome (:mod:`pipeline.simulation.methods`) and records estimate, 95% interval and
p-value with the planted truth. Then, per shape, outcome and method: type I error at 5%
(trials without effect), coverage of the 95% interval and power (trials with the demo's
effects), each with its Monte Carlo standard error ``sqrt(r (1 - r) / R)``.

Cells:

* shapes: the demo's (7 sites, one cluster per arm per site: pair-matched), 6 sites x 3
  clusters per arm, and individually randomised (7 sites); 1,400 people in each (the
  demo's size), cluster sizes as the generator spreads them;
* cluster variance: ICC 0.01 and 0.05 on each outcome's latent scale
  (:func:`pipeline.simulation.draw.icc_to_variances`; no clusters when individually
  randomised);
* effects: none (every hazard, rate and risk ratio 1, work at 2 years 25% in both arms)
  and the demo's (the generator's defaults: hazard ratios 0.6 for admission and crisis,
  rate ratio 0.6 for detentions, work at 2 years 45% vs 25%).

Replicates are cached on disk in blocks (``data/simulation/<cell>/block_NNNN.parquet``,
written whole then renamed), so a run resumes where it stopped; blocks run in at most two
processes at ``nice`` 15, each with one BLAS thread. Replicate ``r`` of a cell has seed
``SeedSequence([20261125, cell id, r])``: the same in every run, whatever the process.

Run it with ``python -m pipeline.simulation.study [--reps 1000]`` (or ``make test-slow``):
it writes ``pipeline/simulation/results/few_cluster.csv`` (the table),
``pipeline/simulation/defaults.yaml`` (the choice, read by
:mod:`pipeline.simulation.defaults`) and the table of ``docs/few-cluster-simulation.md``.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import math
import multiprocessing as mp
import os
import re
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from pipeline.config import PROJ_ROOT
from pipeline.simulation.draw import Shape, draw_people, draw_structure, icc_to_variances

BASE_SEED = 20261125
ALPHA = 0.05
BLOCK = 25
CACHE = PROJ_ROOT / "data" / "simulation"
RESULTS = Path(__file__).parent / "results" / "few_cluster.csv"
RUNINFO = Path(__file__).parent / "results" / "few_cluster_run.json"
DEFAULTS_YAML = Path(__file__).parent / "defaults.yaml"
DOC = PROJ_ROOT / "docs" / "few-cluster-simulation.md"

SHAPES = {
    "pair_matched": Shape("pair_matched", sites=7, clusters_per_arm=1, people=1400),
    "six_by_three": Shape("six_by_three", sites=6, clusters_per_arm=3, people=1400),
    "individual": Shape("individual", sites=7, clusters_per_arm=None, people=1400),
}
SHAPE_WORDS = {
    "pair_matched": "7 sites x 1 cluster per arm (the demo's, pair-matched)",
    "six_by_three": "6 sites x 3 clusters per arm",
    "individual": "individually randomised, 7 sites",
}
ICCS = (0.01, 0.05)
EFFECTS = {
    "null": {"hr_admission": 1.0, "hr_crisis": 1.0, "rr_involuntary": 1.0, "rtw_2y_open_dialogue": 0.25},
    "demo": {},
}
OUTCOME_WORDS = {"relapse": "time to relapse (Cox)", "involuntary": "involuntary detentions (rate ratio)",
                 "rtw": "work or education at 2 years (binary)"}


@dataclass(frozen=True)
class Cell:
    shape: str
    icc: float
    effect: str

    @property
    def key(self) -> str:
        return f"{self.shape}_icc{self.icc:g}_{self.effect}"

    @property
    def id(self) -> int:
        return zlib.crc32(self.key.encode())

    def effects(self) -> dict:
        e = dict(EFFECTS[self.effect])
        if SHAPES[self.shape].design == "cluster":
            e.update(icc_to_variances(self.icc))
        return e

    def replicate(self, rep: int, outcomes=None, methods=None) -> list[dict]:
        """One trial of this cell (:func:`replicate`): what :func:`run` calls per replicate.
        Any picklable object with a ``key`` (its cache folder's name) and this method can be
        run, cached and loaded as a cell (``pipeline.simulation.power`` does so)."""
        return replicate(self, rep, outcomes, methods)


def cells() -> list[Cell]:
    out = []
    for name, shape in SHAPES.items():
        iccs = ICCS if shape.design == "cluster" else (0.0,)
        out += [Cell(name, icc, eff) for icc in iccs for eff in EFFECTS]
    return out


# ----------------------------------------------------------------------------- truth

def truth(cell: Cell, structure) -> dict[str, float]:
    """The planted effect on each analysis scale for one replicate's study: the log hazard
    ratio a site-stratified Cox model estimates (``pipeline.synth.truth.expected_cox``:
    marginal over clusters and the person frailty, by quadrature, for this study's site
    frailties), the log rate ratio (marginal = conditional), and the log odds ratio and
    risk difference of the arms' marginal risks of work (averaged over the cluster effect
    on the log-odds)."""
    from pipeline.synth.params import resolve
    from pipeline.synth.truth import _gh, expected_cox

    e = resolve(**cell.effects())
    st = SimpleNamespace(effects=e, design=structure.design, site_logfrailty=structure.site_logfrailty,
                         site_weight=structure.site_weight)
    hr = expected_cox([(e.admission_cumhaz_2y, e.hr_admission), (e.crisis_cumhaz_2y, e.hr_crisis)],
                      (e.involuntary_rate_2y, e.rr_involuntary), st)["expected_site_stratified_cox_hr"]
    v = e.rtw_cluster_logit_var if structure.design == "cluster" else 0.0
    x, w = _gh(40)

    def marginal(p):
        return float(np.sum(w / (1 + np.exp(-(np.log(p / (1 - p)) + np.sqrt(v) * x))))) if v > 0 else p

    p1, p0 = marginal(e.rtw_2y_open_dialogue), marginal(e.rtw_2y_usual_care)
    return {"log hazard ratio": math.log(hr), "log rate ratio": math.log(e.rr_involuntary),
            "log odds ratio": math.log(p1 / (1 - p1)) - math.log(p0 / (1 - p0)), "risk difference": p1 - p0}


# ----------------------------------------------------------------------------- replicates

def replicate(cell: Cell, rep: int, outcomes=None, methods=None, base_seed: int = BASE_SEED) -> list[dict]:
    """One trial of ``cell``: every method on every outcome (or those given), with the
    truth. The trial depends on the cell, ``rep`` and ``base_seed`` only."""
    from pipeline.simulation.methods import METHODS, OUTCOMES, analyse_trial, scale_of

    shape = SHAPES[cell.shape]
    ss = np.random.SeedSequence([base_seed, cell.id, rep])
    rng = np.random.default_rng(ss)
    eff = cell.effects()
    structure = draw_structure(shape, rng, **eff)
    d = draw_people(structure, shape.people, rng, **eff)
    d["site_id"] = "S" + (d["site"] + 1).astype(str)
    d["cluster_id"] = d["site_id"] + "-C" + (d["cluster"] + 1).astype(str)
    tr = truth(cell, structure)
    rows = analyse_trial(d, shape.design == "cluster", outcomes=outcomes or OUTCOMES,
                         methods=methods or METHODS, seed=int(ss.generate_state(1)[0]))
    for r in rows:
        r.update(shape=cell.shape, icc=cell.icc, effect=cell.effect, rep=rep,
                 truth=tr[scale_of(r["outcome"], r["method"])])
        r.setdefault("error", None)
    return rows


def _block_path(cache: Path, cell: Cell, b: int, block: int = BLOCK) -> Path:
    return cache / cell.key / f"reps{block}_{b:04d}.parquet"


def _run_block(cell: Cell, b: int, cache: str, block: int = BLOCK, outcomes=None, methods=None) -> str:
    rows = []
    for rep in range(b * block, (b + 1) * block):
        rows += cell.replicate(rep, outcomes, methods)
    path = _block_path(Path(cache), cell, b, block)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pd.DataFrame(rows).to_parquet(tmp, index=False)
    tmp.replace(path)
    return str(path)


def _worker_init(niceness: int) -> None:
    try:
        os.nice(niceness)
    except OSError:
        pass


def pending(reps: int, cache: Path, cell_list, block: int = BLOCK) -> list[tuple]:
    """The ``(cell, block number)`` pairs not yet cached, in the order :func:`run` computes
    them: block-major (the first blocks of every cell come first, so a partial run already
    covers every cell)."""
    return [(c, b) for b in range(math.ceil(reps / block)) for c in cell_list
            if not _block_path(Path(cache), c, b, block).exists()]


def run(reps: int = 1000, cache: Path = CACHE, processes: int = 2, niceness: int = 15,
        cell_list: list[Cell] | None = None, progress=print, block: int = BLOCK,
        outcomes=None, methods=None, pool: bool = False) -> dict:
    """Run (or resume) every cell to ``reps`` replicates (rounded up to whole blocks of
    ``block``); returns wall and CPU seconds spent in this call and the blocks computed.
    ``outcomes`` and ``methods`` restrict the analyses (a cache then holds only those:
    give it its own ``cache`` folder). With one process the blocks run in this process
    (reniced) unless ``pool``: then in one worker, so that this process (a notebook's
    kernel) keeps its niceness and the worker its single BLAS thread, which cannot be
    set once numpy is loaded (on a busy machine a multithreaded BLAS made CR2 20 times
    slower)."""
    cache = Path(cache)
    todo = pending(reps, cache, cell_list or cells(), block)
    t0, c0 = time.time(), time.process_time()
    done = 0
    if todo:
        # one BLAS thread per process: the machine is shared, and per-cluster matrices are small
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = "1"
        if processes <= 1 and not pool:
            _worker_init(niceness)
            for c, b in todo:
                _run_block(c, b, str(cache), block, outcomes, methods)
                done += 1
                progress(f"{done}/{len(todo)} blocks ({c.key} {b})")
        else:
            ctx = mp.get_context("spawn")
            with cf.ProcessPoolExecutor(max(1, processes), mp_context=ctx, initializer=_worker_init,
                                        initargs=(niceness,)) as ex:
                futs = {ex.submit(_run_block, c, b, str(cache), block, outcomes, methods): (c, b)
                        for c, b in todo}
                for f in cf.as_completed(futs):
                    f.result()
                    done += 1
                    c, b = futs[f]
                    progress(f"{done}/{len(todo)} blocks ({c.key} {b})")
    children = os.times()
    return {"blocks_computed": done, "wall_seconds": time.time() - t0,
            "cpu_seconds_children": children.children_user + children.children_system,
            "cpu_seconds_self": time.process_time() - c0}


def load(reps: int = 1000, cache: Path = CACHE, cell_list: list[Cell] | None = None,
         block: int = BLOCK) -> pd.DataFrame:
    """Every cached replicate up to ``reps`` per cell."""
    frames = []
    for c in cell_list or cells():
        for b in range(math.ceil(reps / block)):
            p = _block_path(Path(cache), c, b, block)
            if p.exists():
                frames.append(pd.read_parquet(p))
    if not frames:
        raise FileNotFoundError(f"no replicates cached under {cache}")
    d = pd.concat(frames, ignore_index=True)
    return d[d.rep < reps]


# ----------------------------------------------------------------------------- summary

def summarise(reps: pd.DataFrame) -> pd.DataFrame:
    """One row per shape, ICC, effect, outcome and method: replicates, failures, rejection
    rate at 5%, coverage of the 95% interval, mean bias and SD of the estimate, each rate
    with its Monte Carlo standard error."""
    d = reps.copy()
    d["failed"] = d["error"].notna() | ~np.isfinite(d["coef"])
    ok = d[~d.failed].copy()
    ok["reject"] = ok["p"] < ALPHA
    ok["cover"] = (ok["lower"] <= ok["truth"]) & (ok["truth"] <= ok["upper"])
    ok["bias"] = ok["coef"] - ok["truth"]
    keys = ["shape", "icc", "effect", "outcome", "method"]
    g = ok.groupby(keys, sort=False)
    out = g.agg(reps=("reject", "size"), reject=("reject", "mean"), cover=("cover", "mean"),
                bias=("bias", "mean"), sd=("coef", "std"))
    out["failed"] = d.groupby(keys, sort=False)["failed"].sum()
    out["replicates"] = d.groupby(keys, sort=False)["rep"].nunique()
    out["reject_se"] = np.sqrt(out.reject * (1 - out.reject) / out.reps)
    out["cover_se"] = np.sqrt(out.cover * (1 - out.cover) / out.reps)
    return out.reset_index()


def table(summary: pd.DataFrame) -> pd.DataFrame:
    """Per shape, outcome and method: type I error (no effect), coverage and power (the
    demo's effect), per ICC, with Monte Carlo SEs."""
    null = summary[summary.effect == "null"].set_index(["shape", "outcome", "method", "icc"])
    alt = summary[summary.effect == "demo"].set_index(["shape", "outcome", "method", "icc"])
    t = pd.DataFrame({"replicates": np.minimum(null.replicates, alt.replicates),
                      "reps": np.minimum(null.reps, alt.reps), "failed": null.failed + alt.failed,
                      "type1": null.reject, "type1_se": null.reject_se,
                      "coverage": alt.cover, "coverage_se": alt.cover_se,
                      "power": alt.reject, "power_se": alt.reject_se, "bias": alt.bias})
    return t.reset_index()


def choose(t: pd.DataFrame, z_low: float = 2.576, z_high: float = 2.0) -> pd.DataFrame:
    """The default method per shape and outcome.

    A method qualifies when, at every ICC simulated, its type I error is within Monte Carlo
    error of 5% (between ``5% - z_low SE`` and ``5% + z_high SE``, SE = ``sqrt(0.05 * 0.95 /
    R)``), its coverage is at least ``95% - z_high SE``, and it failed on under 1% of
    trials; the default is the qualifying method with the highest mean power over the
    ICCs. The band is tighter on the liberal side (2 SE: 3.2% to 6.4% at 1,000
    replicates) because the default is the most powerful of up to nine methods, and a
    method that rejects too often by chance also looks more powerful; on the conservative
    side 2.576 SE, and coverage above 95% is not held against a method (it costs power,
    which the choice already weighs). If none qualifies, the method whose worst type I
    error is closest to 5% (and the rule says so).
    """
    rows = []
    for (shape, outcome), g in t.groupby(["shape", "outcome"], sort=False):
        m = g.groupby("method", sort=False).apply(lambda x: pd.Series({
            "nominal": bool(np.all(x.type1 >= ALPHA - z_low * _se(ALPHA, x.replicates))
                            and np.all(x.type1 <= ALPHA + z_high * _se(ALPHA, x.replicates))
                            and np.all(x.coverage >= 1 - ALPHA - z_high * _se(ALPHA, x.replicates))),
            "reliable": bool(x.failed.sum() < 0.01 * 2 * x.replicates.sum()),
            "power": float(x.power.mean()),
            "worst_type1": float(x.type1.max()),
        }), include_groups=False)
        sel = m.nominal & m.reliable
        if sel.any():
            best = m[sel].power.idxmax()
            rule = "type I error and coverage within Monte Carlo error of nominal; best power"
        else:
            best = (m.worst_type1 - ALPHA).abs().idxmin()
            rule = "no method keeps type I error and coverage: the one closest to 5% type I error"
        rows.append({"shape": shape, "outcome": outcome, "method": best, "rule": rule,
                     "power": round(float(m.loc[best, "power"]), 4),
                     "qualifying": [k for k in m.index if sel[k]]})
    return pd.DataFrame(rows)


def _se(p: float, n) -> np.ndarray:
    return np.sqrt(p * (1 - p) / np.asarray(n, float))


# ----------------------------------------------------------------------------- outputs

def _pct(x, se):
    return f"{100 * x:.1f} ({100 * se:.1f})"


def markdown(t: pd.DataFrame, chosen: pd.DataFrame, reps: int, runinfo: dict) -> str:
    """The documentation's table: per shape and outcome, one line per method."""
    lines = [
        f"Replicates per cell: {reps}; each rate in % with its Monte Carlo SE in brackets "
        f"(at nominal {100 * math.sqrt(0.05 * 0.95 / reps):.2f} points, for 5% and 95% alike). "
        f"Type I error: no effect planted; coverage and power: the demo's effects. "
        f"ICC on each outcome's latent scale. Wall time {runinfo.get('wall_time', '?')} "
        f"({runinfo.get('processes', 2)} processes, nice 15).",
        "",
    ]
    pick = {(r.shape, r.outcome): r.method for r in chosen.itertuples()}
    for shape in SHAPES:
        for outcome in OUTCOME_WORDS:
            g = t[(t["shape"] == shape) & (t["outcome"] == outcome)]
            if g.empty:
                continue
            iccs = sorted(g.icc.unique())
            lines.append(f"**{SHAPE_WORDS[shape]}: {OUTCOME_WORDS[outcome]}** "
                         f"(default: `{pick.get((shape, outcome), '?')}`)")
            lines.append("")
            head = ["method"]
            for icc in iccs:
                lab = f"ICC {icc:g}" if icc > 0 else "no clusters"
                head += [f"type I % ({lab})", f"coverage % ({lab})", f"power % ({lab})"]
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|" + "---|" * len(head))
            for method, mg in g.groupby("method", sort=False):
                mg = mg.set_index("icc")
                cells_ = [f"`{method}`" + (" **default**" if pick.get((shape, outcome)) == method else "")]
                for icc in iccs:
                    r = mg.loc[icc]
                    cells_ += [_pct(r.type1, r.type1_se), _pct(r.coverage, r.coverage_se), _pct(r.power, r.power_se)]
                lines.append("| " + " | ".join(cells_) + " |")
            lines.append("")
    return "\n".join(lines)


START, END = "<!-- few-cluster-simulation:start -->", "<!-- few-cluster-simulation:end -->"


def write_doc(md: str, doc: Path = DOC, start: str = START, end: str = END) -> None:
    """Replace the table between the two markers of a documentation page (``docs/``; the
    markers must be there; other simulations pass their own page and markers)."""
    text = doc.read_text()
    if start not in text or end not in text:
        raise ValueError(f"{doc}: markers {start} / {end} not found")
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    doc.write_text(pattern.sub(lambda _: f"{start}\n{md}\n{end}", text))


def write_defaults(chosen: pd.DataFrame, reps: int, path: Path = DEFAULTS_YAML) -> None:
    """``defaults.yaml``: the method chosen per shape and outcome, with the rule that chose
    it (read by :mod:`pipeline.simulation.defaults`)."""
    import yaml

    doc = {"generated_by": "python -m pipeline.simulation.study", "replicates_per_cell": reps,
           "shapes": {s: SHAPE_WORDS[s] for s in SHAPES}, "defaults": {}}
    for r in chosen.itertuples():
        doc["defaults"].setdefault(r.shape, {})[r.outcome] = {
            "method": r.method, "rule": r.rule, "power": r.power, "qualifying": list(r.qualifying)}
    path.write_text("# Generated by the few-cluster simulation study: do not edit by hand.\n"
                    + yaml.safe_dump(doc, sort_keys=False, width=100))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=1000)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=CACHE)
    ap.add_argument("--no-write", action="store_true", help="run and print, write nothing in the repository")
    a = ap.parse_args(argv)
    info = run(a.reps, a.cache, a.processes)
    reps = load(a.reps, a.cache)
    t = table(summarise(reps))
    chosen = choose(t)
    prev = json.loads(RUNINFO.read_text()) if RUNINFO.exists() else {}
    if info["blocks_computed"]:
        total = prev.get("wall_seconds", 0.0) + info["wall_seconds"] if prev.get("reps") == a.reps else info["wall_seconds"]
        runinfo = {"reps": a.reps, "processes": a.processes, "wall_seconds": round(total, 1),
                   "wall_time": f"{total / 3600:.1f} h" if total > 3600 else f"{total / 60:.0f} min",
                   "note": "wall time summed over the runs that computed blocks (resumed runs add up)"}
    else:
        runinfo = prev
    print(markdown(t, chosen, a.reps, runinfo))
    if not a.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        t.round(6).to_csv(RESULTS, index=False)
        RUNINFO.write_text(json.dumps(runinfo, indent=2) + "\n")
        write_defaults(chosen, a.reps)
        write_doc(markdown(t, chosen, a.reps, runinfo))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
