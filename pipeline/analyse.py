"""Analyse stage: runs the analyses the plan declares and stores what they find.

The plan (``params.yaml`` ``design:``, :mod:`pipeline.plan`) is parsed once and checked
against the data before anything is estimated; each family of analyses lives in
:mod:`pipeline.analyses` and is a function from the person frame
(:func:`pipeline.metrics.person_frame`) and the plan to an
:class:`~pipeline.analyses.AnalysisResult`. This module only orchestrates: which families
run is ``analyse.run``; their options are the rest of ``analyse:``.

Families (``analyse.run`` names):

* ``flow``: CONSORT-cluster flow and recruitment per cluster (:mod:`~pipeline.analyses.flow`);
* ``primary``, ``secondary``: each outcome of the plan, adjusted for its covariates with the
  design's variance, the unadjusted estimate as a sensitivity analysis, the secondary
  outcomes tested in order with the multiplicity method
  (:mod:`~pipeline.analyses.trial_effects`); the primary outcome's curves and its log-rank
  test as a sensitivity analysis (:mod:`~pipeline.analyses.curves`);
* ``weighting``: for an observational design, the primary analysis: propensity-score
  weighting with its diagnostics, every outcome weighted with the unadjusted estimate
  beside it, E-values (:mod:`~pipeline.analyses.observational`); the plan's outcome
  regressions then become sensitivity analyses;
* ``icc``: the ICC (or frailty variance) of every outcome with its interval
  (:mod:`~pipeline.analyses.icc`);
* ``subgroups``: interaction tests and per-level effects (:mod:`~pipeline.analyses.subgroups`);
* ``table_one``, ``cluster_table_one``: baseline tables (:mod:`~pipeline.analyses.baseline`);
* ``site_meta``, ``funnel``, ``fidelity_meta_regression``: the site comparison
  (:mod:`~pipeline.analyses.site_comparison`);
* ``return_to_work``: return to work or education with its missing statuses: multiple
  imputation, complete case, while alive, among people not in work at baseline, time to
  first return, tipping point (:mod:`~pipeline.analyses.return_to_work`; options
  ``analyse.rtw``);
* ``sensitivity``: each outcome's estimand in one sentence, its missing or cut-short data
  per arm and why (flagged when the arms differ), and the sensitivity analyses of the
  time-to-event outcomes: proportional-hazards test and hazard ratio per period, RMST
  difference, admissions-only relapse, Fine-Gray, transfer out as the event
  (:mod:`~pipeline.analyses.sensitivity`; options ``analyse.sensitivity``).

Results go to the ``results`` schema: exact estimates in ``results.analysis_estimates``
(one row per analysis and measure, with the estimand, method, degrees of freedom and notes
in words), and, for people, disclosure-controlled tables (``*_public``) and the rounded
counts behind every curve (``results.analysis_curve_counts``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from pipeline import disclosure, metrics, output_policy, parallel
from pipeline import params as params_mod
from pipeline import plan as plan_mod
from pipeline.analyses import AnalysisResult
from pipeline.analyses.baseline import protect_table_one  # noqa: F401  (pooled report)
from pipeline.analyses.trial_effects import has_clusters as _has_clusters  # noqa: F401
from pipeline.analyses.trial_effects import row as _row
from pipeline.errors import OdevalError

DEFAULTS: dict[str, Any] = {
    "run": ["flow", "primary", "secondary", "weighting", "icc", "subgroups", "table_one",
            "cluster_table_one", "site_meta", "funnel", "fidelity_meta_regression",
            "return_to_work", "sensitivity"],
    "rtw": {},
    "sensitivity": {},               # sensitivity: pipeline.analyses.sensitivity.DEFAULTS                       # return_to_work: pipeline.analyses.return_to_work.DEFAULTS
    "conf_level": 0.95,
    "reference_arm": "usual_care",
    "comparison_arm": "open_dialogue",
    "ties": "efron",
    "jackknife_max_clusters": 200,   # above it the cluster jackknife, CR2, KC and MD give way to CR1
    "rate_family": "negbin",         # poisson | negbin
    "table_one": ["sex", "age_at_index", "ethnicity_group", "diagnosis_group",
                  "prior_admissions_2y", "baseline_activity"],
    "nonnormal": ["prior_admissions_2y"],
    "meta_method": "REML",
    "meta_test": "knha",
    "funnel_overdispersion": "additive",   # additive | multiplicative | null
    "funnel_limits": [0.95, 0.998],
    "moderators": ["p1_within_24h"],  # open-dialogue-arm fidelity indicators per site
    "curve_times": [0, 90, 180, 365, 545, 730],
    # 2: the families shared with a forked process (Linux), each taking the next from its
    # end of SCHEDULE; 1: everything in this one
    "workers": 2,
    # GB (10^9 bytes) the two processes may hold together: the worker is forked only when
    # it is expected to fit (pipeline.parallel.worker_fits); null: always
    "memory_budget_gb": 3,
}

#: Memory one process allocates of its own for the analyses at their peak, per person in
#: the frame (pipeline.parallel.worker_fits: a forked worker and this process need twice
#: this beside what they share), rounded up from the most measured. At national size (1 M
#: people), seven forked runs: this process held 0.73-0.80 GB at the fork and the two
#: peaked at 1.96-2.11 GB together (summed PSS), 575-660 MB each of their own (before the
#: families freed each model once read: 1.03-1.13 GB each, 2.83-3.07 GB together).
WORK_BYTES_PER_PERSON = 700

#: the order in which the families are shared between this process, which takes them from
#: the front, and a second worker, which takes them from the back
#: (:func:`pipeline.parallel.two_ends`): the two largest here (the effects, then the
#: sensitivity analyses) and the two next largest there (return to work, then subgroups),
#: the small ones between for whichever is free first. Measured in one process (units
#: timed alone, 2 cores): national effects 27 s, return to work 33.5, sensitivity 18.3,
#: subgroups 7.9, the intraclass correlations 5.7, table one 2.6, the rest 2; trust effects
#: 3.9, return to work 12.2, sensitivity 8.9, subgroups 3.3, the rest 0.8. The sensitivity
#: analyses sat in the middle before, after the small ones: at national size this process
#: reached them while the worker was still in return to work, and the worker then waited
#: idle once it had finished subgroups. The site meta-analysis and the fidelity
#: meta-regression, which reads it, are one unit. Return to work and subgroups are
#: computed in parts (the analyses, each half of the tipping map; each subgroup), taken
#: from the back by the worker first: at trust size the map alone is 8.5 s, and this
#: process, done with the rest, waited 2.7 s for the worker before they were parts
#: (trust analyse, two alternating pairs: 16.2-16.7 -> 14.9-15.1 s).
SCHEDULE = (("effects",), ("sensitivity",), ("weighting",), ("cluster_table_one",), ("flow",),
            ("funnel",), ("site_meta", "fidelity_meta_regression"), ("table_one",), ("icc",),
            ("subgroups",), ("return_to_work",))

Progress = Callable[[int, int, str], None]


def resolve_params(params: dict | None) -> dict[str, Any]:
    p = params_mod.merged("analyse", params, DEFAULTS)
    bad = sorted(set(p["run"]) - set(DEFAULTS["run"]))
    if bad:
        raise OdevalError(f"analyse.run: unknown analyses {bad}; known: {DEFAULTS['run']}",
                          rule="analyse.params.run", file="params.yaml")
    if not isinstance(p["workers"], int) or isinstance(p["workers"], bool) \
            or p["workers"] not in (1, 2):
        raise OdevalError(f"analyse.workers must be 1 or 2, got {p['workers']!r}",
                          rule="analyse.params.workers", file="params.yaml")
    b = p["memory_budget_gb"]
    if b is not None and (isinstance(b, bool) or not isinstance(b, int | float) or b <= 0):
        raise OdevalError(f"analyse.memory_budget_gb must be a positive number of GB or null, "
                          f"got {b!r}", rule="analyse.params.memory_budget_gb", file="params.yaml")
    return p


@dataclass
class Analyses:
    """Everything the analyse stage found: the plan, result objects (for notebooks) and tidy
    tables."""

    params: dict[str, Any]
    estimates: pd.DataFrame
    plan: Any = None                                               # pipeline.plan.AnalysisPlan
    results: dict[str, Any] = field(default_factory=dict)        # pipeline.stats results
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # exact, warehouse only
    public: dict[str, pd.DataFrame] = field(default_factory=dict)  # disclosure-controlled
    notes: list[str] = field(default_factory=list)
    family: dict[str, AnalysisResult] = field(default_factory=dict)
    site_notes: list[str] = field(default_factory=list)  # sites without a hazard ratio, why
    not_shown: list[dict] = field(default_factory=list)  # figures and tables not built, why

    def add(self, name: str, res: AnalysisResult) -> None:
        """Store what one family of :mod:`pipeline.analyses` found."""
        self.family[name] = res
        for r in res.estimates:
            self.estimates.loc[len(self.estimates)] = {
                **_row("", "", "", "", np.nan, np.nan, np.nan), **r}
        self.results.update(res.results)
        self.tables.update(res.tables)
        self.public.update(res.public)
        self.notes += res.notes
        self.site_notes += res.site_notes
        self.not_shown += res.not_shown


def prepare(persons: pd.DataFrame, plan, copy: bool = True) -> pd.DataFrame:
    """The person frame for the analyses: ``od`` (1 = comparison arm), ``relapse_only``
    (first relapse, deaths censored), ``arm`` as a categorical with the reference first.
    ``copy=False``: those columns are set on ``persons`` itself (a frame nothing else
    holds: a national one's copy is 0.26 GB more at the analyses' start)."""
    d = persons.copy() if copy else persons
    d["od"] = (d["arm"] == plan.comparison_arm).astype(int)
    d["relapse_only"] = (d["relapse_event"] == 1).astype(int)
    d["arm"] = pd.Categorical(d["arm"], categories=[plan.reference_arm, plan.comparison_arm])
    return d


def compute(con: duckdb.DuckDBPyConnection, params: dict | None = None,
            progress: Progress | None = None, met: metrics.MetricsResult | None = None,
            keep_results: bool = True) -> Analyses:
    """Run the analyses named in ``analyse.run`` (``params`` is the whole params.yaml).

    ``met``: the metrics stage's result for the same warehouse and parameters, when the
    caller has it (``odeval run``); else the metrics stage's tables when they are current
    (:func:`pipeline.metrics.stored`), else computed here. The person frame is the one
    ``met`` holds when it was just computed (taken over: ``met.persons`` is then None),
    else read from the temporary relation ``person_outcomes``, which is then dropped, and
    DuckDB's cached blocks are let go (:func:`pipeline.warehouse.release_cache`, the limit
    then set again to params.yaml's ``warehouse.memory_limit``, or DuckDB's default).

    ``keep_results``: keep each family's result objects (fitted models, for notebooks) in
    ``Analyses.results``; without them (the command line, which stores tables) each is
    freed as its family ends, instead of holding up to a million rows of residuals and
    sorted data per model to the end.
    """
    from pipeline import runstate
    from pipeline.params import section
    from pipeline.warehouse import release_cache
    from pipeline.analyses import (baseline, curves, flow, icc, observational,
                                   return_to_work, sensitivity, site_comparison, subgroups,
                                   trial_effects)

    params = params or {}
    runstate.require(con, ["derive"], command="analyse")
    p = resolve_params(params.get("analyse"))
    cfg = disclosure.settings(params)
    if met is None:   # the metrics stage's tables when current, else computed here
        met = metrics.stored(con, params) or metrics.compute(con, params.get("metrics"), cfg)
    persons, met.persons = met.persons, None   # the frame the metrics read, taken over
    if persons is None:
        if not con.execute("select count(*) from duckdb_tables() where temporary and "
                           "table_name = 'person_outcomes'").fetchone()[0]:
            metrics.build_temp_tables(con, metrics.resolve_params(params.get("metrics")),
                                      ("person_outcomes",))
        persons = metrics.read_persons(con)
    # read once: DuckDB's copy of it is memory the rest of the stage needs (0.26 GB at
    # national size), as are the blocks DuckDB keeps cached from building it (0.8 GB more)
    con.execute("drop table if exists temp.person_outcomes")
    release_cache(con, section(params, "warehouse").get("memory_limit"))
    clusters = clusters_frame(con)
    from pipeline.derive import definitions

    words = metrics.denominators(definitions(con))
    plan = (plan_mod.parse(params).with_definitions(words)
            .check_data(persons, clusters))  # before any estimate
    d = prepare(persons, plan, copy=False)   # the frame taken over or read above
    del persons
    out = Analyses(p, pd.DataFrame(columns=list(_row("", "", "", "", 0, 0, 0))), plan=plan)
    out.public["plan"] = pd.DataFrame(plan.describe(weighted="weighting" in p["run"]),
                                     columns=["item", "plan"])
    run = p["run"]
    sites: dict[str, AnalysisResult] = {}

    weighted = "weighting" in run and not plan.design.randomised
    # return to work's tested rows are its imputation's (return_to_work.imputed_as_tested),
    # so the secondary family is tested once both families are in (below)
    test_later = (not weighted and {"primary", "secondary", "return_to_work"} <= set(run)
                  and any(o.name == return_to_work.OUTCOME for o in plan.secondary))

    def effects():
        res = trial_effects.outcomes(d, plan, p, clusters, run_primary="primary" in run,
                                     run_secondary="secondary" in run,
                                     test_family=not weighted and not test_later,
                                     keep_results=keep_results)
        if weighted:  # observational: the weighted analysis is the primary one
            res = observational.as_sensitivity(res, plan)
        return res.merge(observational.unadjusted(curves.primary_curves(d, plan, p, cfg), plan)
                         ) if "primary" in run else res

    def site_meta():
        sites["meta"] = observational.unadjusted(site_comparison.site_meta(d, p, cfg, met), plan)
        return sites["meta"]

    def fidelity():
        return observational.unadjusted(site_comparison.fidelity_meta_regression(
            met, p, cfg, sites.get("meta") or AnalysisResult("site_comparison")), plan)

    def site_and_fidelity():   # one unit: the fidelity meta-regression reads site_meta's
        return {n: f() for n, f in (("site_meta", site_meta),
                                     ("fidelity_meta_regression", fidelity)) if wanted(n)}

    steps = [("flow", lambda: flow.consort_flow(d, clusters, plan, cfg)),
             ("effects", effects),   # primary and/or secondary: outcomes, multiplicity, curves
             ("weighting", lambda: observational.weighting(d, plan, p, cfg)),
             ("icc", lambda: icc.outcome_iccs(d, plan)),
             ("subgroups", None),   # in parts: see split below
             ("table_one", lambda: baseline.table_one(d, p, cfg)),
             ("cluster_table_one", lambda: baseline.cluster_table_one(d, clusters, plan, cfg)),
             ("site_meta", site_meta),
             ("funnel", lambda: site_comparison.funnels(met, p, cfg)),
             ("fidelity_meta_regression", fidelity),
             ("return_to_work", None),   # in parts: see split below
             ("sensitivity", lambda: observational.unadjusted(
                 sensitivity.sensitivity(d, plan, p, clusters, cfg), plan))]

    def wanted(n):
        return n in run or (n == "effects" and bool({"primary", "secondary"} & set(run)))

    todo = [(n, f) for n, f in steps if wanted(n)]
    fn_of = dict(todo)

    def unit(fn):
        """``fn`` with the fitted models of what it returns freed unless kept: a family's
        results ``{name: AnalysisResult}`` or a part's piece (see split below)."""
        def run_unit():
            res = fn()
            if not keep_results:
                for r in res.values() if isinstance(res, dict) else [res]:
                    if isinstance(r, AnalysisResult):
                        r.results = {}
            return res
        return run_unit

    # families computed in parts, which the two processes share: a part's label is
    # (family, k), its result a piece that the family's combine (the second of the pair)
    # puts together as one call makes it. At trust size return to work's tipping map (8.5
    # of its 10.4 s) and the three subgroups (2.8 s) left this process idle for 2.7 s
    # while the worker finished them
    pieces: dict[str, dict[int, Any]] = {}
    split: dict[str, tuple[list[Callable[[], Any]], Callable[[list], AnalysisResult]]] = {}
    if wanted("subgroups"):
        split["subgroups"] = (
            [lambda only=only: subgroups.subgroup_effects(d, plan, p, cfg, keep_results, only)
             for only in subgroups.parts(plan)],
            lambda got: observational.unadjusted(subgroups.combine(got), plan))
    if wanted("return_to_work"):
        split["return_to_work"] = (
            [lambda: return_to_work.return_to_work(d, plan, p, clusters, cfg,
                                                   tipping_map=False)]
            + [lambda k=k: return_to_work.tipping_part(d, plan, p, clusters, cfg, k)
               for k in range(return_to_work.TIPPING_PARTS)],
            lambda got: observational.unadjusted(
                return_to_work.with_tipping(got[0], got[1:]), plan))

    units = []
    for names in SCHEDULE:
        if not any(wanted(n) for n in names):
            continue
        if names[0] in split:
            units += [((names[0], k), unit(fn)) for k, fn in enumerate(split[names[0]][0])]
        else:
            units.append((names, unit((lambda f=fn_of[names[0]], n=names[0]: {n: f()})
                                      if len(names) == 1 else site_and_fidelity)))
    done: dict[str, AnalysisResult] = {}
    fork = p["workers"] > 1 and parallel.worker_fits(p["memory_budget_gb"],
                                                     2 * WORK_BYTES_PER_PERSON * len(d))
    for label, res in parallel.two_ends(units, fork):
        if len(label) == 2 and isinstance(label[1], int):   # a part of a split family
            name, k = label
            pieces.setdefault(name, {})[k] = res
            if len(pieces[name]) < len(split[name][0]):
                continue
            got = pieces.pop(name)
            # (the parts' models, freed or kept, are all the combined result holds)
            res, label = {name: split[name][1]([got[i] for i in range(len(got))])}, (name,)
        done.update(res)
        if progress:
            progress(len(done), len(todo), ", ".join(n for n in label if n in res))
    if test_later and "effects" in done:
        from pipeline.analyses.multiplicity import test_in_order

        return_to_work.imputed_as_tested(done["effects"], done["return_to_work"], plan)
        mt = test_in_order(done["effects"].estimates, plan)
        if mt is not None:
            done["effects"].tables["multiplicity"] = done["effects"].public["multiplicity"] = mt
    for name, _ in todo:   # in the plan's order, wherever each was computed
        out.add(name, done[name])
    out.metrics = met
    out.public["estimates"] = protect_estimates(out.estimates, cfg)
    out.public["not_shown"] = pd.DataFrame(out.not_shown, columns=["item", "reason"])
    return out


def clusters_frame(con: duckdb.DuckDBPyConnection) -> pd.DataFrame | None:
    """``derived.clusters`` (None when the warehouse predates it)."""
    have = con.execute("select count(*) from information_schema.tables where table_schema = "
                       "'derived' and table_name = 'clusters'").fetchone()[0]
    return con.execute("select * from derived.clusters order by cluster_id").df() if have else None


def protect_estimates(est: pd.DataFrame, cfg: dict[str, Any]) -> pd.DataFrame:
    """The public estimates (:mod:`pipeline.output_policy`): counts rounded; estimates,
    limits and standard errors to ``effect_digits`` (3) significant digits and p-values to
    2, as the policy's effects and coefficients. An attacker solved six-digit cluster-level
    estimates, means of a few sites' differences of proportions, for the hidden per-site
    counts they rest on."""
    pub = est.copy()
    d = int(cfg.get("effect_digits", output_policy.POLICY_DEFAULTS["effect_digits"]))
    for c in ("estimate", "lower", "upper", "se"):
        if c in pub:
            pub[c] = [output_policy.significant(float(v), d) if pd.notna(v) else v
                      for v in est[c]]
    if "p" in pub:
        pub["p"] = [output_policy.significant(float(v), 2) if pd.notna(v) else v
                    for v in est["p"]]
    pub["n"] = [disclosure.round_count(v, cfg) if v is not None and not pd.isna(v) else None
                for v in est["n"]]
    pub["events"] = [disclosure.round_count(v, cfg) if v is not None and not pd.isna(v) else None
                     for v in est["events"]]
    pub["notes"] = [output_policy.note_counts(v, cfg) for v in est["notes"]]
    return pub.rename(columns={"n_clusters": "clusters"})


def write_results(con: duckdb.DuckDBPyConnection, res: Analyses,
                  params: dict | None = None) -> dict[str, int]:
    """Store exact and public tables in the ``results`` schema, and the analyse stage's
    build record (:mod:`pipeline.runstate`; ``params``: what it ran with), in one transaction."""
    from pipeline import runstate
    from pipeline.warehouse import transaction

    tables = {"analysis_estimates": res.estimates}
    tables.update({f"analysis_{k}": v for k, v in res.tables.items()})
    tables.update({f"analysis_{k}_public": v for k, v in res.public.items()
                   if k != "curve_counts"})
    if "curve_counts" in res.public:
        tables["analysis_curve_counts"] = res.public["curve_counts"]
    with transaction(con):
        con.execute("create schema if not exists results")
        for name in [r[0] for r in con.execute(
                "select table_name from information_schema.tables where table_schema = "
                "'results' and table_name like 'analysis_%'").fetchall()]:
            con.execute(f"drop table results.{name}")
        for name, df in tables.items():
            con.register("_frame", metrics._for_duckdb(df))
            con.execute(f"create table results.{name} as select * from _frame")
            con.unregister("_frame")
        runstate.record(con, "analyse", params if params is not None else res.params)
    return {k: len(v) for k, v in tables.items()}


def run(con: duckdb.DuckDBPyConnection, params: dict, progress: Progress | None = None,
        met: metrics.MetricsResult | None = None, keep_results: bool = True) -> Analyses:
    """The ``odeval analyse`` stage: compute and store in ``results`` (``met``,
    ``keep_results``: see :func:`compute`)."""
    res = compute(con, params, progress, met, keep_results)
    write_results(con, res, {k: (params or {}).get(k) for k in ("analyse", "metrics", "disclosure")})
    return res
