"""Where simulated power and the formula agree, and where they part: the tables of
``docs/power.md``.

``python -m pipeline.simulation.power_study`` (or ``make test-slow``, which also checks the
agreement) runs, 1,000 trials per scenario with :func:`pipeline.simulation.power.power`'s
default seed (cached in ``data/power/``, so a second run takes seconds):

* the demo's shape (7 sites, one GP-practice cluster per arm in each, 100 people per
  cluster) at hazard ratios 0.8 and 0.6, at the generator's cluster variance and at
  ICC 0.05, with the default method (``auto``);
* the same 1,400 people in 7 sites as 1, 2, 5 and 10 clusters per arm per site (ICC 0.05,
  cluster-size CV 0.65) and individually randomised: the formula on the normal reference,
  on the t reference with the analysis' df, and the simulation;
* the search for 80% power at hazard ratio 0.8 in the demo's shape (clusters per arm per
  site; people per cluster);

and writes the tables between the ``power-study`` markers of ``docs/power.md``, with the wall time of
the demo's 1,000-trial run (both scenarios, 2 processes) when this run computed it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pipeline.simulation import power as pw
from pipeline.simulation import study

RESULTS = Path(__file__).parent / "results" / "power_study.json"
DOC = study.PROJ_ROOT / "docs" / "power.md"
START, END = "<!-- power-study:start -->", "<!-- power-study:end -->"
REPS = 1000

#: (label, design, method) of the agreement table: 1,400 people in 7 sites
AGREEMENT = [
    ("1 cluster per arm per site (14 clusters of 100)", pw.Design(clusters_per_arm=1, cluster_size=100,
                                                                  cluster_size_cv=0.65, icc=0.05), "auto"),
    ("2 per arm per site (28 of 50)", pw.Design(clusters_per_arm=2, cluster_size=50, cluster_size_cv=0.65,
                                                icc=0.05), "auto"),
    ("5 per arm per site (70 of 20)", pw.Design(clusters_per_arm=5, cluster_size=20, cluster_size_cv=0.65,
                                                icc=0.05), "auto"),
    ("10 per arm per site (140 of 10)", pw.Design(clusters_per_arm=10, cluster_size=10, cluster_size_cv=0.65,
                                                  icc=0.05), "auto"),
    ("2 per arm per site (28 of 50)", pw.Design(clusters_per_arm=2, cluster_size=50, cluster_size_cv=0.65,
                                                icc=0.05), "CR1"),
    ("5 per arm per site (70 of 20)", pw.Design(clusters_per_arm=5, cluster_size=20, cluster_size_cv=0.65,
                                                icc=0.05), "CR1"),
    ("10 per arm per site (140 of 10)", pw.Design(clusters_per_arm=10, cluster_size=10, cluster_size_cv=0.65,
                                                  icc=0.05), "CR1"),
    ("individually randomised, site strata", pw.Design(clusters_per_arm=None, cluster_size=200), "model"),
    ("individually randomised, site strata", pw.Design(clusters_per_arm=None, cluster_size=200), "auto"),
]


def _row(label, r: pw.PowerResult, auto: bool = True) -> dict:
    p = r.primary
    return {"scenario": label, "method": p.method, "auto": auto, "df": None if p.df is None else float(p.df),
            "power": p.power, "power_se": p.power_se, "type1": p.type1, "type1_se": p.type1_se,
            "events_uc": p.events_uc, "events_od": p.events_od, "power_formula": p.power_formula,
            "power_formula_t": p.power_formula_t, "design_effect": p.design_effect,
            "estimand": p.estimand, "cluster_size_cv": p.cluster_size_cv}


def run(reps: int = REPS, processes: int = 2, cache=None, log=print) -> dict:
    """Every scenario (cached replicates are read, missing ones simulated)."""
    out = {"reps": reps, "seed": pw.DEFAULT_SEED, "demo": [], "agreement": [], "search": {}}
    t0 = time.time()
    first = pw.power(pw.DEMO, hr=0.8, reps=reps, processes=processes, cache=cache)
    if first.run["blocks_computed"] == 2 * -(-reps // study.BLOCK):
        out["demo_wall_seconds"] = round(time.time() - t0, 1)
    out["demo"].append(_row("demo's shape, generator's cluster variance (ICC 0.006), HR 0.8", first))
    log(first.markdown())
    for label, d, hr in [("demo's shape, generator's cluster variance (ICC 0.006), HR 0.6", pw.DEMO, 0.6),
                         ("demo's shape, ICC 0.05, HR 0.8", pw.DEMO.replace(icc=0.05), 0.8),
                         ("demo's shape, ICC 0.05, HR 0.6", pw.DEMO.replace(icc=0.05), 0.6)]:
        r = pw.power(d, hr=hr, reps=reps, processes=processes, cache=cache)
        out["demo"].append(_row(label, r))
        log(r.markdown())
    for label, d, m in AGREEMENT:
        r = pw.power(d, hr=0.8, method=m, reps=reps, processes=processes, cache=cache)
        out["agreement"].append(_row(label, r, m == "auto"))
        log(r.markdown())
    for over in ("clusters_per_arm", "cluster_size"):
        s = pw.search(pw.DEMO, 0.8, over, hr=0.8, reps=reps, processes=processes, cache=cache)
        out["search"][over] = {"answer": s.answer, "points": s.points.to_dict(orient="records"),
                               "type1": None if s.at_answer is None else s.at_answer.primary.type1,
                               "type1_se": None if s.at_answer is None else s.at_answer.primary.type1_se,
                               "method": None if s.at_answer is None else s.at_answer.primary.method}
        log(s.markdown())
    return out


def _pct(x, se=None):
    if x is None:
        return "–"
    return f"{100 * x:.1f}" + ("" if se is None else f" ({100 * se:.1f})")


def markdown(res: dict) -> str:
    reps = res["reps"]
    lines = [f"{reps} simulated trials per scenario (seed {res['seed']}); power and type I error in % with "
             "their Monte Carlo SE in brackets; the formula beside, from the simulated events, "
             "people per arm and cluster sizes. Hazard ratio: conditional on site and cluster as "
             "planted; the estimand column is the hazard ratio a site-stratified Cox model estimates.", "",
             "**The demo's shape** (7 sites, one cluster per arm per site, 100 people per cluster: the "
             "analysis plan's default for it, `cluster-level`, t on 6 df):", "",
             "| scenario | method | power % | type I % | events UC / OD | formula % (normal) | formula % (t, df) "
             "| design effect |", "|---|---|---|---|---|---|---|---|"]

    def line(r, mark=False):
        df = "" if r["df"] is None else f" ({r['df']:g})"
        default = " (default)" if mark and r.get("auto") else ""
        return (f"| {r['scenario']} | `{r['method']}`{default} | {_pct(r['power'], r['power_se'])} | "
                f"{_pct(r['type1'], r['type1_se'])} | {r['events_uc']:.0f} / {r['events_od']:.0f} | "
                f"{_pct(r['power_formula'])} | {_pct(r['power_formula_t'])}{df} | {r['design_effect']:.2f} |")

    lines += [line(r) for r in res["demo"]]
    lines += ["", "**The same 1,400 people, hazard ratio 0.8, ICC 0.05, cluster-size CV 0.65, in fewer or "
              "more clusters** (the analysis plan's default method for each shape, and CR1 or the "
              "model-based Cox model beside it):", "",
              "| scenario | method | power % | type I % | events UC / OD | formula % (normal) | formula % (t, df) "
              "| design effect |", "|---|---|---|---|---|---|---|---|"]
    lines += [line(r, True) for r in res["agreement"]]
    lines += ["", "**Search: 80% power at hazard ratio 0.8 in the demo's shape**", ""]
    words = {"clusters_per_arm": "clusters per arm per site (100 people each)",
             "cluster_size": "people per cluster (one cluster per arm per site)"}
    for over, s in res["search"].items():
        pts = sorted(s["points"], key=lambda p: p["value"])
        ans = s["answer"]
        got = ("none up to the search's limit" if ans is None else
               f"**{ans}** (type I error {_pct(s['type1'], s['type1_se'])}%, `{s['method']}`)")
        tried = "; ".join(f"{p['value']}: {_pct(p['power'], p['power_se'])}% (formula {_pct(p['power_formula'])}%)"
                          for p in pts)
        lines.append(f"- {words[over]}: {got}. Simulated: {tried}.")
    if res.get("demo_wall_seconds"):
        lines += ["", f"Wall time of the demo's 1,000-trial run (1,000 trials with the effect and 1,000 "
                  f"without, 2 processes at nice 15, cache empty): {res['demo_wall_seconds']:.0f} s."]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=REPS)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="print only")
    a = ap.parse_args(argv)
    res = run(a.reps, a.processes)
    prev = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if "demo_wall_seconds" not in res and prev.get("reps") == a.reps and prev.get("demo_wall_seconds"):
        res["demo_wall_seconds"] = prev["demo_wall_seconds"]  # measured by the run that computed it
    md = markdown(res)
    print(md)
    if not a.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(res, indent=2, default=float) + "\n")
        study.write_doc(md, DOC, start=START, end=END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
