"""Simulation-based power and sample size for multi-site and cluster-randomised designs.

``odeval power`` and :func:`power` answer a planning question (how many sites, clusters
and people, for how long, to detect a relapse hazard ratio of 0.8?) by drawing trials of
the planned design from the synthetic generator's model (:mod:`pipeline.simulation.draw`)
and analysing each with the method the analysis plan would use
(:mod:`pipeline.simulation.methods`, the estimators of :mod:`pipeline.stats`; ``auto``
is the few-cluster default the simulation study chose, :mod:`pipeline.simulation.defaults`):

* power: the share of trials with the planted effect whose two-sided p-value is below
  ``alpha`` (a trial whose analysis fails counts as not significant, and is counted), with
  its Monte Carlo standard error ``sqrt(P (1 - P) / R)``;
* type I error: the same share among trials of the same design without any effect;
* expected events: the mean number of relapses (detentions, people in work) per arm;
* the analytic answer beside it (:mod:`pipeline.stats.sample_size`): Schoenfeld's formula
  for time to relapse, the two-proportions formula for work at two years, each with the
  design effect ``1 + ((cv^2 + 1) m - 1) rho`` of the simulated cluster sizes, on the
  normal reference (as calculators use it) and on a t reference with the analysis' df.

:func:`search` finds the smallest number of clusters per arm per site (or people per
cluster) reaching a target power; :func:`curve` computes power over effect sizes and
:meth:`CurveResult.plot` draws it.

Design (:class:`Design`): sites; clusters per arm in each site, or ``None`` for individual
randomisation within sites; mean people per cluster (per site when individually
randomised) and the coefficient of variation of cluster sizes; how many times more people
an Open Dialogue cluster recruits; follow-up per person; the usual-care risk of relapse by
two years, detentions per person and risk of death; the ICC on each outcome's latent
scale (or the cluster frailty variance); any other generator parameter
(:data:`pipeline.synth.params.EFFECTS`).

Effect: ``hr``, the hazard ratio of every route to relapse (admission, crisis, detention;
conditional on site and cluster, as the generator plants it); ``rate_ratio`` of
detentions (default ``hr``; giving it also analyses detentions); ``rtw_risk``, the Open
Dialogue arm's probability of work or education at two years (giving it analyses that
outcome). The Cox model estimates a marginal hazard ratio slightly nearer 1 than the
conditional one when clusters vary: the table shows the one it estimates.

Replicates are cached (``data/power/<key>/`` or ``$ODEVAL_POWER_CACHE``, blocks of 25 written whole by
:func:`pipeline.simulation.study.run`) under a key of the design, effects, methods,
seed, the source of the estimators and a fingerprint of the draws (:func:`code_version`); run in at most two processes at
``nice`` 15 with one BLAS thread each. Replicate ``r`` has seed ``SeedSequence([seed,
r])`` whatever the design and effect (common random numbers: power curves and searches
compare like with like), so a seed gives the same answer in any number of processes.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
from scipy import optimize, special

from pipeline.config import PROJ_ROOT
from pipeline.errors import OdevalError
from pipeline.simulation import study
from pipeline.simulation.draw import Shape, draw_people, draw_structure, icc_to_variances
from pipeline.stats import sample_size as ss

__all__ = ["Design", "DEMO", "power", "search", "curve", "plot_power_curve", "PowerResult", "SearchResult",
           "CurveResult", "resolve_methods", "analytic_power"]

CACHE = PROJ_ROOT / "data" / "power"
#: environment variable naming another cache folder (the notebook tests use a temporary one)
CACHE_ENV = "ODEVAL_POWER_CACHE"
DEFAULT_SEED = 20261205
OUTCOMES = ("relapse", "involuntary", "rtw")
OUTCOME_WORDS = {"relapse": "time to relapse", "involuntary": "involuntary detentions",
                 "rtw": "work or education at 2 years"}
#: methods that apply to each outcome (the simulation study's candidates)
APPLIES = {"relapse": ("model", "CR1", "jackknife-cluster", "jackknife-site", "cluster-level", "permutation"),
           "involuntary": ("model", "CR1", "CR2", "MD", "KC", "jackknife-cluster", "jackknife-site",
                           "cluster-level", "permutation"),
           "rtw": ("model", "CR1", "CR2", "MD", "KC", "jackknife-cluster", "jackknife-site", "cluster-level",
                   "permutation")}
NEEDS_CLUSTERS = {"CR1", "CR2", "MD", "KC", "jackknife-cluster", "cluster-level", "permutation"}
#: where a replicate's analysis starts: the cache key hashes this file and every
#: ``pipeline`` module it imports, transitively (:func:`source_files`), so that a change to
#: an estimator recomputes while a module the replicates never run (a report, another
#: estimator) leaves the cache valid
_ROOTS = ("simulation/methods.py",)
#: the columns of a drawn trial that a replicate reads (the generator's fingerprint)
_USED = ("site", "cluster", "od", "relapse_time", "relapse_only", "involuntary_count", "person_years", "rtw_2y")


def _fail(message: str, rule: str = "power.design") -> OdevalError:
    return OdevalError(message, rule=rule)


# ----------------------------------------------------------------------------- design

@dataclass(frozen=True)
class Design:
    """A planned trial (see the module docstring). The defaults are the demo's shape: 7
    sites, one GP-practice cluster per arm in each (pair-matched), 100 people per cluster
    spread as the generator spreads them, two years of follow-up, the generator's
    baseline risks and cluster variance.

    Attributes
    ----------
    sites : int
    clusters_per_arm : int or None
        Clusters per arm in each site; ``None``: people randomised 1:1 within sites.
    cluster_size : float
        Mean people per cluster (per site when individually randomised).
    cluster_size_cv : float or None
        Coefficient of variation of cluster sizes (SD / mean; 0.65 is typical of GP
        practices, Eldridge 2006); ``None``: the generator's spread (site sizes
        Dirichlet(4), clusters within a site Dirichlet(3): CV about 0.6 in the demo).
    recruitment_ratio : float
        How many times more people an Open Dialogue cluster recruits than a usual-care
        one of the same size (1 = balanced).
    follow_up_days : int
        Follow-up per person (730: two years). People recruited late are also censored
        at the extract, ``min_follow_up_days`` after the last index date.
    recruitment_days, min_follow_up_days : int
        Length of recruitment (staggered over sites) and days from the last index date to
        the extract (the generator's 820 and 300).
    relapse_risk_2y : float or None
        Usual-care probability of relapse by two years, without death or censoring,
        averaged over sites and clusters; ``None``: the generator's (0.59).
        Admission, crisis and detention hazards are scaled together to reach it (only
        admission and crisis when ``detentions_2y`` is given).
    detentions_2y : float or None
        Usual-care mean number of involuntary detentions per person in two years.
    rtw_2y : float
        Usual-care probability of work or education at two years.
    death_risk_2y : float
        Two-year risk of death (competing with relapse; no arm effect).
    icc : float or None
        Intracluster correlation on each outcome's latent scale: sets the cluster
        log-frailty variance of the relapse and detention hazards and the cluster
        variance of the log-odds of work (:func:`pipeline.simulation.draw.icc_to_variances`).
        ``None``: the generator's (cluster frailty variance 0.01, ICC 0.006; no
        clustering of work).
    cluster_frailty_var : float or None
        The cluster log-frailty variance directly (instead of ``icc``; work unclustered).
    generator : dict
        Any other parameter of :data:`pipeline.synth.params.EFFECTS` (e.g.
        ``{"site_frailty_var": 0.2}``).
    """

    sites: int = 7
    clusters_per_arm: int | None = 1
    cluster_size: float = 100.0
    cluster_size_cv: float | None = None
    recruitment_ratio: float = 1.0
    follow_up_days: int = 730
    recruitment_days: int = 820
    min_follow_up_days: int = 300
    relapse_risk_2y: float | None = None
    detentions_2y: float | None = None
    rtw_2y: float = 0.25
    death_risk_2y: float = 0.02
    icc: float | None = None
    cluster_frailty_var: float | None = None
    generator: dict = field(default_factory=dict)

    def __post_init__(self):
        def bad(name, rule):
            raise _fail(f"design {name}={getattr(self, name)!r}: {rule}")

        if int(self.sites) != self.sites or self.sites < 1:
            bad("sites", "a whole number >= 1")
        if self.clusters_per_arm is not None and (int(self.clusters_per_arm) != self.clusters_per_arm
                                                  or self.clusters_per_arm < 1):
            bad("clusters_per_arm", "a whole number >= 1, or None for individual randomisation")
        if not self.cluster_size >= 2:
            bad("cluster_size", "at least 2 people")
        if self.cluster_size_cv is not None and not 0 <= self.cluster_size_cv <= 3:
            bad("cluster_size_cv", "between 0 and 3")
        if not self.recruitment_ratio > 0:
            bad("recruitment_ratio", "> 0")
        if not 30 <= self.follow_up_days <= 3650:
            bad("follow_up_days", "between 30 and 3650")
        if not 1 <= self.recruitment_days <= 3650:
            bad("recruitment_days", "between 1 and 3650")
        if not 0 <= self.min_follow_up_days <= 3650:
            bad("min_follow_up_days", "between 0 and 3650")
        if self.relapse_risk_2y is not None and not 0 < self.relapse_risk_2y < 1:
            bad("relapse_risk_2y", "a probability in (0, 1)")
        if self.detentions_2y is not None and not self.detentions_2y > 0:
            bad("detentions_2y", "> 0")
        if not 0 < self.rtw_2y < 1:
            bad("rtw_2y", "a probability in (0, 1)")
        if not 0 <= self.death_risk_2y < 1:
            bad("death_risk_2y", "a probability in [0, 1)")
        if self.icc is not None and not 0 <= self.icc < 1:
            bad("icc", "in [0, 1)")
        if self.cluster_frailty_var is not None and not self.cluster_frailty_var >= 0:
            bad("cluster_frailty_var", ">= 0")
        if self.icc is not None and self.cluster_frailty_var is not None:
            raise _fail("design: give icc or cluster_frailty_var, not both")
        from pipeline.synth.params import EFFECTS

        own = {"cluster_frailty_var", "rtw_cluster_logit_var", "death_risk_2y", "rtw_2y_usual_care",
               "rtw_2y_open_dialogue", "hr_admission", "hr_crisis", "rr_involuntary", "recruitment_days",
               "min_follow_up_days", "involuntary_rate_2y"}
        for k in self.generator:
            if k not in EFFECTS:
                raise _fail(f"design generator parameter {k!r} is not one of pipeline.synth.params.EFFECTS")
            if k in own:
                raise _fail(f"design generator parameter {k!r}: set it through the design's own field")

    # -- derived
    @property
    def individual(self) -> bool:
        return self.clusters_per_arm is None

    @property
    def type(self) -> str:
        """The analysis plan's design type."""
        return "individually_randomised" if self.individual else "cluster_randomised"

    @property
    def clusters(self) -> int:
        return 0 if self.individual else 2 * self.clusters_per_arm * self.sites

    @property
    def people(self) -> int:
        """Expected people in the trial."""
        units = self.sites if self.individual else self.clusters
        return int(round(units * self.cluster_size))

    def replace(self, **changes) -> "Design":
        return dataclasses.replace(self, **changes)

    def shape(self) -> Shape:
        return Shape("power", sites=int(self.sites), clusters_per_arm=self.clusters_per_arm, people=self.people,
                     od_recruitment_ratio=float(self.recruitment_ratio), cluster_size_cv=self.cluster_size_cv,
                     follow_up_days=int(self.follow_up_days))

    def cluster_variances(self) -> dict[str, float]:
        if self.individual:
            return {}
        if self.icc is not None:
            return icc_to_variances(self.icc)
        if self.cluster_frailty_var is not None:
            return {"cluster_frailty_var": float(self.cluster_frailty_var)}
        return {}

    def baseline(self) -> dict[str, float]:
        """The generator parameters of the usual-care arm this design implies (no arm
        effects): the generator's defaults, the design's fields, hazards scaled to
        ``relapse_risk_2y`` (computed once per design)."""
        return dict(_baseline(json.dumps(dataclasses.asdict(self), sort_keys=True)))

    def _baseline(self) -> dict[str, float]:
        e = {**{k: float(v) for k, v in self.generator.items()}, **self.cluster_variances(),
             "death_risk_2y": float(self.death_risk_2y), "rtw_2y_usual_care": float(self.rtw_2y),
             "recruitment_days": float(self.recruitment_days),
             "min_follow_up_days": float(self.min_follow_up_days)}
        if self.detentions_2y is not None:
            e["involuntary_rate_2y"] = float(self.detentions_2y)
        if self.relapse_risk_2y is not None:
            e.update(_scale_to_relapse_risk(e, self.relapse_risk_2y, self.individual,
                                            scale_detentions=self.detentions_2y is None))
        return e

    def describe(self) -> str:
        if self.individual:
            where = f"{self.sites} sites, individually randomised, {self.cluster_size:g} people per site"
        else:
            cv = "generator's spread" if self.cluster_size_cv is None else f"CV {self.cluster_size_cv:g}"
            k = self.clusters_per_arm
            where = (f"{self.sites} sites x {k} cluster{'s' if k > 1 else ''} per arm, "
                     f"{self.cluster_size:g} people per cluster ({cv})")
        bits = [where, f"{self.people} people"]
        if self.recruitment_ratio != 1:
            bits.append(f"Open Dialogue clusters recruit x{self.recruitment_ratio:g}")
        bits.append(f"follow-up {self.follow_up_days} days")
        return "; ".join(bits)


DEMO = Design()


@functools.lru_cache(maxsize=64)
def _baseline(design_json: str) -> tuple:
    return tuple(Design(**json.loads(design_json))._baseline().items())


def arm_effects(design: Design, hr: float | None = None, rate_ratio: float | None = None,
                rtw_risk: float | None = None) -> dict[str, float]:
    """The generator's arm-effect parameters for an effect (``None`` = no effect)."""
    h = 1.0 if hr is None else float(hr)
    return {"hr_admission": h, "hr_crisis": h, "rr_involuntary": h if rate_ratio is None else float(rate_ratio),
            "rtw_2y_open_dialogue": design.rtw_2y if rtw_risk is None else float(rtw_risk)}


# ----------------------------------------------------------------------------- model quantities

def _gh(n: int):
    from pipeline.synth.truth import _gh as gh

    return gh(n)


def _relapse_free(e, t: float, x: int, c: np.ndarray) -> np.ndarray:
    """Probability of no relapse by day ``t`` (no death, no censoring) in arm ``x`` for
    total log-frailties (site + cluster) ``c``, averaged over the person frailty of the
    detention route (the generator's model, :func:`pipeline.synth.truth._surv`)."""
    from pipeline.synth.truth import _surv

    comps = [(e.admission_cumhaz_2y, e.hr_admission), (e.crisis_cumhaz_2y, e.hr_crisis)]
    inv = (e.involuntary_rate_2y, e.rr_involuntary)
    tt = np.array([float(t)])
    return np.array([_surv(tt, comps, inv, x, 0.0, float(ci), e.involuntary_frailty_var, e.weibull_shape)[0]
                     for ci in np.atleast_1d(c)])


def _relapse_risk(e, individual: bool, t: float = 730.0, x: int = 0) -> float:
    """Risk of relapse by day ``t`` averaged over site and cluster log-frailties."""
    v = e.site_frailty_var + (0.0 if individual else e.cluster_frailty_var)
    nodes, w = _gh(24)
    return float(1 - np.sum(w * _relapse_free(e, t, x, nodes * math.sqrt(v))))


def _scale_to_relapse_risk(base: dict, target: float, individual: bool, scale_detentions: bool) -> dict:
    from pipeline.synth.params import resolve

    keys = ["admission_cumhaz_2y", "crisis_cumhaz_2y"] + (["involuntary_rate_2y"] if scale_detentions else [])
    e0 = resolve(**base)

    def risk(c):
        return _relapse_risk(resolve(**{**base, **{k: getattr(e0, k) * c for k in keys}}), individual) - target

    lo, hi = 1e-4, 1e3
    if risk(lo) > 0 or risk(hi) < 0:
        raise _fail(f"design relapse_risk_2y={target}: not reachable by scaling the relapse hazards "
                    "(detentions alone give more; lower detentions_2y)")
    c = optimize.brentq(risk, lo, hi, xtol=1e-10)
    return {k: getattr(e0, k) * c for k in keys}


def planted(design: Design, effects: dict) -> dict:
    """What the design and effect plant, on each analysis' scale: the usual-care relapse
    risk by two years, the hazard ratio a site-stratified Cox model estimates (marginal
    over clusters and the detention frailty: :func:`pipeline.synth.truth.expected_cox`,
    averaged over the site frailty), the ICC of the relapse indicator by the end of
    follow-up and of work at two years on the 0/1 scale (within sites), and the arms'
    marginal probabilities of work."""
    from pipeline.synth.params import resolve
    from pipeline.synth.truth import expected_cox

    e = resolve(**design.baseline(), **effects)
    nodes, w = _gh(12)
    st = SimpleNamespace(effects=e, design="individual" if design.individual else "cluster",
                         site_logfrailty=nodes * math.sqrt(e.site_frailty_var), site_weight=w)
    hr = expected_cox([(e.admission_cumhaz_2y, e.hr_admission), (e.crisis_cumhaz_2y, e.hr_crisis)],
                      (e.involuntary_rate_2y, e.rr_involuntary), st)["expected_site_stratified_cox_hr"]
    cv = 0.0 if design.individual else e.cluster_frailty_var
    rv = 0.0 if design.individual else e.rtw_cluster_logit_var
    x, wx = _gh(40)
    horizon = design.follow_up_days
    # relapse indicator by the horizon: within a site (the analysis is stratified), the
    # cluster log-frailty is the only shared term
    icc_rel = 0.0
    if cv > 0:
        pis = 1 - np.mean([_relapse_free(e, horizon, arm, x * math.sqrt(cv)) for arm in (0, 1)], axis=0)
        pbar = float(np.sum(wx * pis))
        icc_rel = float(np.sum(wx * (pis - pbar) ** 2) / (pbar * (1 - pbar)))

    def rtw(p):
        pc = special.expit(special.logit(p) + math.sqrt(rv) * x) if rv > 0 else np.full_like(x, p)
        pm = float(np.sum(wx * pc))
        return pm, float(np.sum(wx * (pc - pm) ** 2))

    (p0, v0), (p1, v1) = rtw(e.rtw_2y_usual_care), rtw(e.rtw_2y_open_dialogue)
    icc_rtw = ((v0 / (p0 * (1 - p0))) + (v1 / (p1 * (1 - p1)))) / 2
    return {"relapse_risk_2y": _relapse_risk(resolve(**design.baseline()), design.individual),
            "cox_hr": float(hr), "rate_ratio": float(e.rr_involuntary), "rtw_uc": p0, "rtw_od": p1,
            "icc_relapse_indicator": icc_rel, "icc_rtw": float(icc_rtw),
            "detentions_2y": float(e.involuntary_rate_2y)}


# ----------------------------------------------------------------------------- methods

def resolve_methods(design: Design, outcomes, method="auto") -> dict[str, str]:
    """The method per outcome: ``auto`` (the simulation study's default for the design's
    shape, :func:`pipeline.simulation.defaults.default_method`), one method name for every
    outcome, or a dict ``{outcome: method}`` (missing outcomes ``auto``)."""
    from pipeline.simulation import defaults

    out = {}
    for o in outcomes:
        m = method.get(o, "auto") if isinstance(method, dict) else method
        if m == "auto":
            m = defaults.default_method(o, design.type, design.clusters_per_arm)
        if m not in APPLIES[o]:
            raise _fail(f"method {m!r} does not apply to {o} (one of {', '.join(APPLIES[o])}, or auto)",
                        "power.method")
        if design.individual and m in NEEDS_CLUSTERS:
            raise _fail(f"method {m!r} needs clusters; an individually randomised design takes model, "
                        "jackknife-site or auto", "power.method")
        df = method_df(m, design)
        if df is not None and df < 1:
            raise _fail(f"method {m!r} has {df} degrees of freedom in this design "
                        f"({design.clusters} clusters in {design.sites} site{'s' if design.sites > 1 else ''}): "
                        "add sites or clusters",
                        "power.method")
        out[o] = m
    return out


SHAPE_WORDS = {"pair_matched": "one cluster per arm in every site (pair-matched)",
               "six_by_three": "two or more clusters per arm in every site",
               "individual": "people randomised one by one within sites"}


def method_source(design: Design, outcome: str, method="auto") -> str:
    """Where an outcome's method comes from, in words: ``auto`` is the analysis plan's
    default for the design's shape, the few-cluster method the simulation study chose
    (:func:`pipeline.simulation.defaults.rationale`, ``defaults.yaml``), which the plan's
    ``small_sample: auto`` reads too."""
    from pipeline.simulation import defaults

    m = method.get(outcome, "auto") if isinstance(method, dict) else method
    if m != "auto":
        return "given (not the plan's default)"
    shape = defaults.shape_for(design.type, design.clusters_per_arm)
    why = defaults.rationale(outcome, design.type, design.clusters_per_arm)
    reps = defaults.load().get("replicates_per_cell")
    return (f"the analysis plan's auto for {SHAPE_WORDS.get(shape, shape)}: chosen by the few-cluster "
            f"simulation study ({reps} replicates per cell; {why['rule']})")


def method_df(method: str, design: Design) -> float | None:
    """The reference distribution's df of a method in a design (``None``: normal). For
    CR2 the Satterthwaite df varies by trial: ``clusters - sites - 1`` stands in for it."""
    C, S = design.clusters, design.sites
    return {"model": None, "CR1": C - 1, "jackknife-cluster": C - 1, "jackknife-site": S - 1,
            "cluster-level": C - S - 1, "permutation": C - S - 1, "CR2": C - S - 1, "MD": C - S - 1,
            "KC": C - S - 1}[method]


# ----------------------------------------------------------------------------- replicates

def source_files(roots=_ROOTS) -> list[Path]:
    """The ``pipeline`` source files reachable from ``roots`` by ``import`` statements
    (anywhere in a file, including imports inside functions), sorted; ``from pipeline.x
    import y`` counts ``pipeline/x/y.py`` when ``y`` is a module, else ``pipeline/x``."""
    import ast

    pkg = Path(__file__).resolve().parents[1]

    def files_of(module: str, names=()) -> list[Path]:
        parts = module.split(".")
        if parts[0] != "pipeline":
            return []
        base = pkg.joinpath(*parts[1:])
        found = []
        for n in names:
            if base.joinpath(f"{n}.py").is_file():
                found.append(base.joinpath(f"{n}.py"))
        if base.with_suffix(".py").is_file():
            found.append(base.with_suffix(".py"))
        elif base.joinpath("__init__.py").is_file() and len(found) < len(names or [None]):
            found.append(base.joinpath("__init__.py"))
        return found

    seen: set[Path] = set()
    todo = [pkg / r for r in roots]
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level:  # relative: from the file's package
                    here = f.relative_to(pkg.parent).with_suffix("").parts[:-1]
                    module = ".".join([*here[:len(here) - node.level + 1], *([module] if module else [])])
                todo += files_of(module, [a.name for a in node.names])
            elif isinstance(node, ast.Import):
                for a in node.names:
                    todo += files_of(a.name)
    return sorted(seen)


def _fingerprint_designs() -> list["Design"]:
    """Small designs that take every branch of the draw a :class:`Design` reaches
    (individual and cluster randomisation, the generator's and a given CV of cluster sizes,
    CV 0, uneven recruitment, a shorter follow-up, an ICC, a frailty variance, scaled
    baseline risks, no deaths)."""
    return [Design(sites=3, clusters_per_arm=None, cluster_size=150),
            Design(sites=3, cluster_size=60),
            Design(sites=3, clusters_per_arm=2, cluster_size=40, cluster_size_cv=0.65, recruitment_ratio=1.5,
                   icc=0.05, follow_up_days=400),
            Design(sites=2, clusters_per_arm=2, cluster_size=40, cluster_size_cv=0.0, relapse_risk_2y=0.4,
                   detentions_2y=0.3, death_risk_2y=0.0, rtw_2y=0.4, cluster_frailty_var=0.2)]


@functools.lru_cache(maxsize=1)
def generator_fingerprint() -> str:
    """A hash of what the generator draws, not of its source: the baseline parameters and
    the columns a replicate reads (:data:`_USED`) of trials of :func:`_fingerprint_designs`,
    without and with an effect on every outcome. A change to the draw or to the
    generator's parameters that changes these trials recomputes the cache; a change to
    the generator's other code (the full study builder, its schemas) does not."""
    h = hashlib.sha256()
    for d in _fingerprint_designs():
        for eff in (arm_effects(d), arm_effects(d, 0.7, 0.8, 0.5)):
            cell = PowerCell(d, tuple(sorted(eff.items())), (), 1)
            t, _ = cell.draw(0)
            h.update(json.dumps(d.baseline(), sort_keys=True, default=float).encode())
            h.update(pd.util.hash_pandas_object(t[list(_USED)], index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """What a replicate's result depends on, as a hash (part of the cache key: a change
    recomputes, never reuses stale replicates): the source of the methods and every
    ``pipeline`` module they import (:func:`source_files`: the estimators), of the
    replicate itself, and the generator's draws (:func:`generator_fingerprint`)."""
    import inspect

    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for p in source_files():
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    h.update(inspect.getsource(PowerCell.replicate).encode())
    h.update(generator_fingerprint().encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class PowerCell:
    """One design and effect, the analyses run on it and the seed: what
    :func:`pipeline.simulation.study.run` runs, caches and loads."""

    design: Design
    effects: tuple  # sorted (name, value) of the generator's arm-effect parameters
    analyses: tuple  # (outcome, method) pairs
    seed: int
    label: str = ""

    def spec(self) -> dict:
        return {"design": dataclasses.asdict(self.design), "effects": dict(self.effects),
                "analyses": [list(a) for a in self.analyses], "seed": self.seed, "code": code_version()}

    @functools.cached_property
    def key(self) -> str:
        """The cache folder's name. Computed once, in the process that builds the cell,
        and pickled with it: worker processes write where the parent reads even if the
        source changes on disk while they run."""
        blob = json.dumps(self.spec(), sort_keys=True, default=float)
        return "power_" + hashlib.sha256(blob.encode()).hexdigest()[:20]

    def draw(self, rep: int) -> tuple[pd.DataFrame, np.random.SeedSequence]:
        """Trial ``rep`` of this design and effect, and its seed sequence."""
        d = self.design
        seq = np.random.SeedSequence([self.seed, rep])
        rng = np.random.default_rng(seq)
        eff = {**d.baseline(), **dict(self.effects)}
        structure = draw_structure(d.shape(), rng, **eff)
        t = draw_people(structure, d.people, rng, **eff)
        t["site_id"] = "S" + (t["site"] + 1).astype(str)
        t["cluster_id"] = t["site_id"] + "-C" + (t["cluster"] + 1).astype(str)
        return t, seq

    def replicate(self, rep: int, outcomes=None, methods=None) -> list[dict]:
        from pipeline.simulation.methods import analyse_trial

        d = self.design
        t, seq = self.draw(rep)
        clustered = not d.individual
        trial = {"rep": rep, "people": len(t), "share_od": float(t.od.mean())}
        if clustered:
            sizes = t.groupby("cluster").size()
            trial.update(clusters=int(len(sizes)), m_mean=float(sizes.mean()),
                         m_cv=float(sizes.std(ddof=0) / sizes.mean()))
        od = t.od.to_numpy() == 1
        rows = []
        for outcome, method in self.analyses:
            if outcome == "relapse":
                n0, n1 = int((~od).sum()), int(od.sum())
                e0, e1 = (int(t.relapse_only[~od].sum()), int(t.relapse_only[od].sum()))
            elif outcome == "involuntary":
                keep = t.person_years.to_numpy() > 0
                n0, n1 = int((~od & keep).sum()), int((od & keep).sum())
                e0, e1 = int(t.involuntary_count[~od].sum()), int(t.involuntary_count[od].sum())
            else:
                obs = t.rtw_2y.notna().to_numpy()
                n0, n1 = int((~od & obs).sum()), int((od & obs).sum())
                e0, e1 = int(t.rtw_2y[~od & obs].sum()), int(t.rtw_2y[od & obs].sum())
            r = analyse_trial(t, clustered, outcomes=(outcome,), methods=(method,),
                              seed=int(seq.generate_state(1)[0]))
            res = r[0] if r else {"coef": np.nan, "lower": np.nan, "upper": np.nan, "p": np.nan,
                                  "error": "no result"}
            rows.append({**trial, "outcome": outcome, "method": method, "coef": res["coef"],
                         "lower": res["lower"], "upper": res["upper"], "p": res["p"],
                         "error": res.get("error"), "n0": n0, "n1": n1, "e0": e0, "e1": e1})
        return rows


def _cells(design, scenarios: dict, analyses: dict, seed: int) -> dict:
    return {label: PowerCell(design, tuple(sorted(eff.items())), tuple(analyses.items()), int(seed), label)
            for label, eff in scenarios.items()}


def simulate(cells: list[PowerCell], reps: int, *, processes: int = 2, cache: Path | str | None = None,
             progress=None, niceness: int = 15, in_process: bool = False) -> tuple[pd.DataFrame, dict]:
    """Run (or load) ``reps`` replicates of each cell: the replicate rows (one per trial
    and analysis, ``label`` naming the cell) and what the run cost. The trials run in
    ``processes`` worker processes (at ``nice`` 15, one BLAS thread each), or in this
    one with ``in_process`` (tests of cheap analyses: no worker to start)."""
    if reps < 1:
        raise _fail(f"replicates={reps}: at least 1", "power.replicates")
    if not 1 <= processes <= 2:
        raise _fail(f"processes={processes}: 1 or 2 (the machine is shared)", "power.processes")
    cache = Path(cache or os.environ.get(CACHE_ENV) or CACHE)
    for c in cells:
        folder = cache / c.key
        folder.mkdir(parents=True, exist_ok=True)
        spec = folder / "cell.json"
        if not spec.exists():
            tmp = folder / "cell.json.tmp"
            tmp.write_text(json.dumps(c.spec(), indent=2, sort_keys=True, default=float) + "\n")
            tmp.replace(spec)
    todo = study.pending(reps, cache, cells)
    total = len(todo)
    state = {"done": 0}

    def tick(_msg):
        state["done"] += 1
        if progress:
            progress(state["done"], total)

    if progress:
        progress(0, total)
    if in_process and processes != 1:
        raise _fail("in_process runs one process", "power.processes")
    # in this process: not reniced (a test or notebook keeps its priority)
    info = study.run(reps, cache, processes=processes, niceness=0 if in_process else niceness, cell_list=cells,
                     progress=tick, pool=not in_process)
    frames = []
    for c in cells:
        d = study.load(reps, cache, [c])
        d.insert(0, "label", c.label)
        frames.append(d)
    info = {"blocks_computed": info["blocks_computed"], "blocks_cached": sum(
        math.ceil(reps / study.BLOCK) for _ in cells) - info["blocks_computed"],
        "wall_seconds": round(info["wall_seconds"], 1), "processes": processes}
    return pd.concat(frames, ignore_index=True), info


# ----------------------------------------------------------------------------- analytic

def analytic_power(outcome: str, method: str, design: Design, truth: dict, sim: dict,
                   alpha: float = 0.05) -> dict:
    """The formula's power for one outcome, from the planted effect (``truth``:
    :func:`planted`) and what the simulation measured of the design (``sim``: mean
    events, people per arm, share in Open Dialogue, realised cluster sizes and CV).
    Returns ``power_formula`` (normal reference, as calculators), ``power_formula_t``
    (t on the method's df), ``design_effect``, ``icc``, ``df``; ``None``s where no
    formula is used (detentions)."""
    out = {"power_formula": None, "power_formula_t": None, "design_effect": None, "icc": None,
           "df": method_df(method, design), "formula": None}
    if outcome == "relapse":
        icc = 0.0 if design.individual else truth["icc_relapse_indicator"]
        de = 1.0 if design.individual else ss.design_effect(max(sim["m_mean"], 1), icc, sim["m_cv"])
        events = sim["e0"] + sim["e1"]
        p = sim["share_od"]
        out.update(design_effect=de, icc=icc, formula="Schoenfeld x design effect",
                   power_formula=ss.schoenfeld_power(events, truth["cox_hr"], alpha, p, de),
                   power_formula_t=ss.schoenfeld_power(events, truth["cox_hr"], alpha, p, de, df=out["df"]))
    elif outcome == "rtw":
        icc = 0.0 if design.individual else truth["icc_rtw"]
        n0, n1 = sim["n0"], sim["n1"]
        m_obs = (n0 + n1) / max(sim.get("clusters") or 1, 1)
        de = 1.0 if design.individual else ss.design_effect(max(m_obs, 1), icc, sim["m_cv"])
        p0, p1 = truth["rtw_uc"], truth["rtw_od"]
        if p0 != p1:
            out.update(design_effect=de, icc=icc, formula="two proportions x design effect",
                       power_formula=ss.two_proportions_power(n0, n1, p0, p1, alpha, de),
                       power_formula_t=ss.two_proportions_power(n0, n1, p0, p1, alpha, de, df=out["df"]))
        else:
            out.update(design_effect=de, icc=icc, formula="two proportions x design effect",
                       power_formula=alpha, power_formula_t=alpha)
    return out


# ----------------------------------------------------------------------------- summaries

def _rate(x: pd.Series) -> tuple[float, float, int]:
    n = len(x)
    r = float(x.mean()) if n else float("nan")
    return r, math.sqrt(r * (1 - r) / n) if n else float("nan"), n


def _summarise(rows: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Per cell label and outcome: replicates, failures, rejection rate and its MC SE,
    mean people, events per arm and realised cluster sizes."""
    d = rows.copy()
    d["failed"] = d["error"].notna() | ~np.isfinite(d["p"].astype(float))
    d["reject"] = (~d.failed) & (d["p"].astype(float) < alpha)
    out = []
    for (label, outcome), g in d.groupby(["label", "outcome"], sort=False):
        r, se, n = _rate(g.reject)
        rec = {"label": label, "outcome": outcome, "method": g.method.iloc[0], "replicates": n,
               "failed": int(g.failed.sum()), "reject": r, "reject_se": se,
               "people": float(g.people.mean()), "share_od": float(g.share_od.mean()),
               "n0": float(g.n0.mean()), "n1": float(g.n1.mean()), "e0": float(g.e0.mean()),
               "e1": float(g.e1.mean()), "coef_mean": float(g.coef[~g.failed].mean())}
        for k in ("clusters", "m_mean", "m_cv"):
            rec[k] = float(g[k].mean()) if k in g and g[k].notna().any() else None
        out.append(rec)
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------- results

EFFECT_WORDS = {"relapse": "hazard ratio", "involuntary": "rate ratio", "rtw": "risk in Open Dialogue"}


@dataclass
class PowerResult:
    """What :func:`power` found. ``table``: one row per outcome (the primary first) with
    the method, planted effect, the estimand, power and type I error with their Monte
    Carlo SEs, failures, mean people and events per arm, and the formula's power beside;
    ``replicates``: every trial's row; ``run``: replicates computed and cached, wall time."""

    design: Design
    effects: dict
    methods: dict
    reps: int
    seed: int
    alpha: float
    table: pd.DataFrame
    replicates: pd.DataFrame
    truth: dict
    run: dict
    notes: list = field(default_factory=list)
    method_sources: dict = field(default_factory=dict)

    @property
    def primary(self) -> pd.Series:
        return self.table.iloc[0]

    def to_dict(self) -> dict:
        return {"design": dataclasses.asdict(self.design), "design_words": self.design.describe(),
                "effects": self.effects, "methods": self.methods,
                "method_sources": self.method_sources, "replicates": self.reps, "seed": self.seed,
                "alpha": self.alpha, "planted": self.truth, "run": self.run, "notes": self.notes,
                "table": json.loads(self.table.to_json(orient="records"))}

    def markdown(self) -> str:
        lines = [f"**Design**: {self.design.describe()}. **Replicates**: {self.reps} per scenario "
                 f"(seed {self.seed}), alpha {self.alpha:g} two-sided.", "",
                 "| outcome | method | effect | estimand | power % (MC SE) | type I % (MC SE) | events UC / OD "
                 "| formula power % (normal) | formula power % (t, df) | design effect |",
                 "|---|---|---|---|---|---|---|---|---|---|"]
        for r in self.table.itertuples():
            fp = "–" if r.power_formula is None or pd.isna(r.power_formula) else f"{100 * r.power_formula:.1f}"
            ft = ("–" if r.power_formula_t is None or pd.isna(r.power_formula_t)
                  else f"{100 * r.power_formula_t:.1f}" + ("" if r.df is None or pd.isna(r.df) else f" ({r.df:g})"))
            de = "–" if r.design_effect is None or pd.isna(r.design_effect) else f"{r.design_effect:.2f}"
            lines.append(f"| {OUTCOME_WORDS[r.outcome]} | `{r.method}` | {r.effect} | {r.estimand} | "
                         f"{100 * r.power:.1f} ({100 * r.power_se:.1f}) | {100 * r.type1:.1f} ({100 * r.type1_se:.1f}) | "
                         f"{r.events_uc:.0f} / {r.events_od:.0f} | {fp} | {ft} | {de} |")
        run = self.run
        lines += ["", f"Blocks of {study.BLOCK} trials: {run['blocks_computed']} simulated, {run['blocks_cached']} "
                  f"read from the cache; wall {run['wall_seconds']:.1f} s on {run['processes']} process(es)."]
        lines += [f"- Method for {OUTCOME_WORDS[o]}: `{m}`, {self.method_sources.get(o, '')}."
                  for o, m in self.methods.items()]
        lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.markdown()

    def _repr_markdown_(self) -> str:
        return self.markdown()


def _effect_words(outcome: str, effects: dict, truth: dict) -> tuple[str, str]:
    if outcome == "relapse":
        return f"HR {effects['hr_admission']:g}", f"Cox HR {truth['cox_hr']:.3f}"
    if outcome == "involuntary":
        return f"RR {effects['rr_involuntary']:g}", f"RR {truth['rate_ratio']:g}"
    return (f"{100 * effects['rtw_2y_open_dialogue']:.0f}% vs {100 * truth['rtw_uc']:.0f}%",
            f"{100 * truth['rtw_od']:.1f}% vs {100 * truth['rtw_uc']:.1f}% (marginal)")


def _outcomes(primary: str, rate_ratio, rtw_risk) -> list[str]:
    if primary not in OUTCOMES:
        raise _fail(f"primary outcome {primary!r}: one of {', '.join(OUTCOMES)}", "power.outcome")
    out = [primary]
    if rate_ratio is not None and primary != "involuntary":
        out.append("involuntary")
    if rtw_risk is not None and primary != "rtw":
        out.append("rtw")
    return out


def _check_effects(primary, hr, rate_ratio, rtw_risk, alpha=0.05, reps=1, processes=1):
    """Every argument of a power question that can be checked before simulating anything."""
    if primary not in OUTCOMES:
        raise _fail(f"primary outcome {primary!r}: one of {', '.join(OUTCOMES)}", "power.outcome")
    if not 0 < alpha < 1:
        raise _fail(f"alpha={alpha}: in (0, 1)", "power.alpha")
    if int(reps) != reps or reps < 1:
        raise _fail(f"replicates={reps}: a whole number >= 1", "power.replicates")
    if processes not in (1, 2):
        raise _fail(f"processes={processes}: 1 or 2 (the machine is shared)", "power.processes")
    for name, v in (("hr", hr), ("rate_ratio", rate_ratio)):
        if v is not None and not v > 0:
            raise _fail(f"{name}={v}: > 0", "power.effect")
    if rtw_risk is not None and not 0 < rtw_risk < 1:
        raise _fail(f"rtw_risk={rtw_risk}: a probability in (0, 1)", "power.effect")
    need = {"relapse": ("hr", hr), "involuntary": ("rate_ratio", rate_ratio), "rtw": ("rtw_risk", rtw_risk)}[primary]
    if need[1] is None:
        raise _fail(f"the primary outcome {primary} needs its effect {need[0]} (--{need[0].replace('_', '-')})",
                    "power.effect")


def power(design: Design = DEMO, hr: float | None = 0.8, rate_ratio: float | None = None,
          rtw_risk: float | None = None, *, primary: str = "relapse", method="auto", reps: int = 1000,
          seed: int = DEFAULT_SEED, alpha: float = 0.05, processes: int = 2, cache: Path | str | None = None,
          progress=None, null: bool = True, in_process: bool = False) -> PowerResult:
    """Simulated power (and type I error) of ``design`` for an effect.

    Parameters
    ----------
    design : Design
        The planned trial (:data:`DEMO`: the demo's shape).
    hr, rate_ratio, rtw_risk : float, optional
        The effect (module docstring). ``primary`` needs its own; a secondary outcome is
        analysed when its effect is given.
    primary : {"relapse", "involuntary", "rtw"}
    method : "auto", a method name, or {outcome: method}
        The analysis plan's small-sample method (``auto``: the simulation study's
        default for the design's shape).
    reps : int
        Trials per scenario (Monte Carlo SE of a power of 80%: 1.3 points at 1,000).
    seed : int
    alpha : float
        Two-sided significance level.
    processes : {1, 2}
    cache : path
        Folder of cached replicates (``data/power``, or ``$ODEVAL_POWER_CACHE``).
    progress : callable ``(done, total)``, optional
        Called as blocks of 25 replicates finish.
    null : bool
        Also simulate the design without effect (type I error).
    in_process : bool
        Run the trials in this process instead of worker processes (no worker to start:
        for a few cheap trials; the BLAS keeps its threads).
    """
    _check_effects(primary, hr, rate_ratio, rtw_risk, alpha, reps, processes)
    outcomes = _outcomes(primary, rate_ratio, rtw_risk)
    methods = resolve_methods(design, outcomes, method)
    alt = arm_effects(design, hr, rate_ratio, rtw_risk)
    scen = {"effect": alt, **({"null": arm_effects(design)} if null else {})}
    cells = _cells(design, scen, methods, seed)
    t0 = time.time()
    rows, info = simulate(list(cells.values()), reps, processes=processes, cache=cache, progress=progress,
                          in_process=in_process)
    info["wall_seconds_total"] = round(time.time() - t0, 1)
    summ = _summarise(rows, alpha).set_index(["label", "outcome"])
    truth = planted(design, alt)
    table, notes = [], []
    for o in outcomes:
        a = summ.loc[("effect", o)]
        nl = summ.loc[("null", o)] if null else None
        sim = {k: a[k] for k in ("e0", "e1", "n0", "n1", "share_od", "m_mean", "m_cv", "clusters")}
        an = analytic_power(o, methods[o], design, truth, sim, alpha)
        eff, est = _effect_words(o, alt, truth)
        table.append({"outcome": o, "method": methods[o], "effect": eff, "estimand": est,
                      "power": a.reject, "power_se": a.reject_se,
                      "type1": nl.reject if null else np.nan, "type1_se": nl.reject_se if null else np.nan,
                      "failed": int(a.failed + (nl.failed if null else 0)), "replicates": int(a.replicates),
                      "people": a.people, "people_uc": a.n0, "people_od": a.n1,
                      "events_uc": a.e0, "events_od": a.e1, "events_uc_null": nl.e0 if null else np.nan,
                      "events_od_null": nl.e1 if null else np.nan, "clusters": a.clusters,
                      "cluster_size_mean": a.m_mean, "cluster_size_cv": a.m_cv, **an})
        if a.failed or (null and nl.failed):
            notes.append(f"{OUTCOME_WORDS[o]}: the analysis failed on {int(a.failed)} trial(s) with the effect and "
                         f"{int(nl.failed) if null else 0} without (counted as not significant).")
    if any(o == "relapse" for o in outcomes) and rate_ratio is not None and rate_ratio != hr:
        notes.append("detentions have their own rate ratio, so relapse's hazard ratio is a mixture of the "
                     "routes': the estimand column gives the one the Cox model estimates.")
    if design.follow_up_days < 640 and "rtw" in outcomes:
        notes.append("follow-up ends before the two-year work window: work at two years is never observed.")
    return PowerResult(design=design, effects=alt, methods=methods, reps=reps, seed=seed, alpha=alpha,
                       method_sources={o: method_source(design, o, method) for o in outcomes},
                       table=pd.DataFrame(table), replicates=rows, truth=truth, run=info, notes=notes)


# ----------------------------------------------------------------------------- search

@dataclass
class SearchResult:
    """What :func:`search` found: ``answer`` (the smallest value reaching ``target``, or
    ``None`` if none up to ``hi``), ``points`` (every value simulated: power with its MC
    SE and the formula's, in the order tried) and ``at_answer`` (the full
    :class:`PowerResult` at the answer, with its type I error)."""

    over: str
    target: float
    answer: int | None
    points: pd.DataFrame
    at_answer: PowerResult | None
    hi: int

    def markdown(self) -> str:
        words = {"clusters_per_arm": "clusters per arm per site", "cluster_size": "people per cluster",
                 "sites": "sites"}[self.over]
        if self.answer is None:
            head = f"No design up to {self.hi} {words} reaches {100 * self.target:.0f}% power."
        else:
            r = self.at_answer.primary
            head = (f"Smallest {words} reaching {100 * self.target:.0f}% power: **{self.answer}** (simulated "
                    f"power {100 * r.power:.1f}% (MC SE {100 * r.power_se:.1f}), type I error {100 * r.type1:.1f}% "
                    f"({100 * r.type1_se:.1f}); the formula (normal) says {100 * r.power_formula:.1f}%).")
        pts = self.points.sort_values("value")
        lines = [head, "", f"| {words} | people | power % (MC SE) | formula % (normal) | formula % (t) |", "|---|---|---|---|---|"]
        for p in pts.itertuples():
            f = "–" if pd.isna(p.power_formula) else f"{100 * p.power_formula:.1f}"
            ft = "–" if pd.isna(p.power_formula_t) else f"{100 * p.power_formula_t:.1f}"
            lines.append(f"| {p.value} | {p.people:.0f} | {100 * p.power:.1f} ({100 * p.power_se:.1f}) | {f} | {ft} |")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.markdown()

    def _repr_markdown_(self) -> str:
        return self.markdown()


def search(design: Design = DEMO, target: float = 0.8, over: str = "clusters_per_arm", *, lo: int | None = None,
           hi: int | None = None, hr: float | None = 0.8, rate_ratio=None, rtw_risk=None, primary="relapse",
           method="auto", reps: int = 500, seed: int = DEFAULT_SEED, alpha: float = 0.05, processes: int = 2,
           cache: Path | str | None = None, progress=None, in_process: bool = False) -> SearchResult:
    """The smallest ``over`` (``clusters_per_arm``: clusters per arm in each site;
    ``cluster_size``: people per cluster, or per site when individually randomised;
    ``sites``) in ``[lo, hi]`` whose simulated power of the primary outcome reaches
    ``target``.

    Bisection on simulated power (each value ``reps`` trials with the effect; common random
    numbers across values), started where the formula on the t reference reaches the
    target: the value found has power >= target and the one below it < target, each up
    to its Monte Carlo error (both are in ``points``). The answer is then simulated
    without effect too (type I error). ``auto`` methods are re-resolved at every value
    (one cluster per arm per site is pair-matched, two or more are not)."""
    _check_effects(primary, hr, rate_ratio, rtw_risk, alpha, reps, processes)
    lo, hi = search_range(design, over, target, lo, hi)
    seen: dict[int, dict] = {}
    order = []
    kw = dict(hr=hr, rate_ratio=rate_ratio, rtw_risk=rtw_risk, primary=primary, method=method, reps=reps,
              seed=seed, alpha=alpha, processes=processes, cache=cache, progress=progress, in_process=in_process)

    def at(v: int) -> dict:
        if v not in seen:
            try:
                r = power(design.replace(**{over: v}), null=False, **kw).primary
                seen[v] = {"value": v, "people": r.people, "method": r.method, "power": r.power,
                           "power_se": r.power_se, "power_formula": r.power_formula,
                           "power_formula_t": r.power_formula_t}
            except OdevalError as exc:  # a value too small for the method (no df)
                if exc.rule != "power.method":
                    raise
                seen[v] = {"value": v, "people": np.nan, "method": None, "power": 0.0, "power_se": 0.0,
                           "power_formula": np.nan, "power_formula_t": np.nan, "note": str(exc)}
            order.append(v)
        return seen[v]

    # start where the formula (t reference) reaches the target, from one pilot value
    pilot = at(lo)
    start = lo
    if pilot["power"] < target:
        start = _formula_guess(design, over, lo, hi, target, kw)
    # find a passing value above, doubling
    if at(start)["power"] >= target:
        passing = start
        failing = lo - 1 if start == lo else None
    else:
        failing, v = start, start
        passing = None
        while v < hi:
            v = min(hi, max(v + 1, 2 * v))
            if at(v)["power"] >= target:
                passing = v
                break
            failing = v
    if passing is None:
        return SearchResult(over, target, None, pd.DataFrame([seen[v] for v in order]), None, hi)
    if failing is None:  # the start passed: look below it
        failing = lo - 1
        if at(lo)["power"] < target:
            failing = lo
    while passing - failing > 1:
        mid = (passing + failing) // 2
        if at(mid)["power"] >= target:
            passing = mid
        else:
            failing = mid
    best = power(design.replace(**{over: passing}), **kw)
    return SearchResult(over, target, passing, pd.DataFrame([seen[v] for v in order]), best, hi)


def search_range(design: Design, over: str, target: float, lo: int | None = None,
                 hi: int | None = None) -> tuple[int, int]:
    """A search's ``(lo, hi)`` (the defaults filled in), checked before anything is
    simulated: ``over`` one of ``clusters_per_arm`` (cluster designs only),
    ``cluster_size``, ``sites``; ``target`` in (0, 1)."""
    if over not in ("clusters_per_arm", "cluster_size", "sites"):
        raise _fail(f"search over {over!r}: clusters_per_arm, cluster_size or sites", "power.search")
    if over == "clusters_per_arm" and design.individual:
        raise _fail("search over clusters_per_arm needs a cluster-randomised design", "power.search")
    if not 0 < target < 1:
        raise _fail(f"target power {target}: in (0, 1)", "power.search")
    lo = lo if lo is not None else {"clusters_per_arm": 1, "cluster_size": 5, "sites": 2}[over]
    hi = hi if hi is not None else {"clusters_per_arm": 30, "cluster_size": 2000, "sites": 60}[over]
    if not 1 <= lo < hi:
        raise _fail(f"search range lo={lo}, hi={hi}: need 1 <= lo < hi", "power.search")
    return lo, hi


def _formula_guess(design, over, lo, hi, target, kw) -> int:
    """Where the formula on the t reference first reaches ``target``, from the events per
    person and cluster sizes simulated at ``lo`` (cheap: no more simulation)."""
    base = power(design.replace(**{over: lo}), null=False, **kw)
    r = base.primary
    if r.power_formula_t is None or pd.isna(r.power_formula_t):
        return lo
    rate = {k: r[k] / max(r.people, 1) for k in ("events_uc", "events_od", "people_uc", "people_od")}
    truth = base.truth
    for v in range(lo, hi + 1):
        d = design.replace(**{over: v})
        try:
            m = resolve_methods(d, [r.outcome], kw["method"])[r.outcome]
        except OdevalError:
            continue
        people = d.people
        sim = {"e0": rate["events_uc"] * people, "e1": rate["events_od"] * people,
               "n0": rate["people_uc"] * people, "n1": rate["people_od"] * people, "share_od": r.people_od / r.people,
               "m_mean": people / max(d.clusters, 1), "m_cv": r.cluster_size_cv or 0.0, "clusters": d.clusters}
        f = analytic_power(r.outcome, m, d, truth, sim, kw["alpha"])["power_formula_t"]
        if f is not None and f >= target:
            return v
    return hi


# ----------------------------------------------------------------------------- curve

@dataclass
class CurveResult:
    """Power over effect sizes of the primary outcome: ``table`` with one row per effect
    (the null's row is the type I error), simulated power and its MC SE beside the
    formula's on the normal and t references."""

    design: Design
    outcome: str
    method: str
    table: pd.DataFrame
    reps: int

    def plot(self, ax=None, target: float | None = 0.8):
        """The power curve (:func:`plot_power_curve`)."""
        return plot_power_curve(self, ax=ax, target=target)

    def markdown(self) -> str:
        lines = ["| effect | power % (MC SE) | formula % (normal) | formula % (t) |", "|---|---|---|---|"]
        for r in self.table.sort_values("effect").itertuples():
            lines.append(f"| {r.effect:g} | {100 * r.power:.1f} ({100 * r.power_se:.1f}) | "
                         f"{100 * r.power_formula:.1f} | {100 * r.power_formula_t:.1f} |")
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.markdown()


def curve(design: Design = DEMO, effects=(0.5, 0.6, 0.7, 0.8, 0.9, 1.0), *, primary: str = "relapse",
          method="auto", reps: int = 500, seed: int = DEFAULT_SEED, alpha: float = 0.05, processes: int = 2,
          cache: Path | str | None = None, progress=None, in_process: bool = False) -> CurveResult:
    """Power of the primary outcome at each effect in ``effects`` (hazard ratios for
    relapse, rate ratios for detentions, Open Dialogue risks of work for ``rtw``)."""
    effects = sorted(set(float(e) for e in effects))
    if not effects:
        raise _fail("curve: no effect sizes given", "power.curve")
    name = {"relapse": "hr", "involuntary": "rate_ratio", "rtw": "rtw_risk"}[primary]
    methods = resolve_methods(design, [primary], method)
    scen = {}
    for e in effects:
        kw = {"hr": None, "rate_ratio": None, "rtw_risk": None, name: e}
        _check_effects(primary, **kw)
        scen[f"{e:g}"] = arm_effects(design, **kw)
    cells = _cells(design, scen, methods, seed)
    rows, _ = simulate(list(cells.values()), reps, processes=processes, cache=cache, progress=progress,
                       in_process=in_process)
    summ = _summarise(rows, alpha).set_index("label")
    out = []
    for e in effects:
        a = summ.loc[f"{e:g}"]
        truth = planted(design, scen[f"{e:g}"])
        sim = {k: a[k] for k in ("e0", "e1", "n0", "n1", "share_od", "m_mean", "m_cv", "clusters")}
        an = analytic_power(primary, methods[primary], design, truth, sim, alpha)
        null_effect = (e == 1.0) if primary != "rtw" else (e == design.rtw_2y)
        if null_effect:
            an["power_formula"] = an["power_formula_t"] = alpha
        out.append({"effect": e, "power": a.reject, "power_se": a.reject_se, "failed": a.failed,
                    "events": a.e0 + a.e1, "power_formula": an["power_formula"] if an["power_formula"] is not None
                    else np.nan, "power_formula_t": an["power_formula_t"] if an["power_formula_t"] is not None
                    else np.nan, "estimand": truth["cox_hr"] if primary == "relapse" else np.nan})
    return CurveResult(design, primary, methods[primary], pd.DataFrame(out), reps)


def plot_power_curve(result: "CurveResult", ax=None, target: float | None = 0.8):
    """The power curve of a :func:`curve` result: simulated power with 95% Monte Carlo
    intervals, the formula on the normal and on the t reference, the target and alpha as
    lines. Returns the figure."""
    import matplotlib.pyplot as plt

    from pipeline.stats._style import style

    style()
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
    else:
        fig = ax.figure
    t = result.table.sort_values("effect")
    ax.errorbar(t.effect, 100 * t.power, yerr=196 * t.power_se, fmt="o-", color="#1b6ca8", capsize=3,
                label=f"simulated ({result.reps} trials each), {result.method}")
    ax.plot(t.effect, 100 * t.power_formula, "--", color="#888888", label="formula, normal reference")
    ax.plot(t.effect, 100 * t.power_formula_t, ":", color="#c4572a", label="formula, t on the analysis' df")
    if target:
        ax.axhline(100 * target, color="#bbbbbb", lw=0.8)
    ax.axhline(5, color="#bbbbbb", lw=0.8)
    ax.set_xlabel({"relapse": "hazard ratio of relapse", "involuntary": "rate ratio of detentions",
                   "rtw": "risk of work at 2 years, Open Dialogue"}[result.outcome])
    ax.set_ylabel("power (%)")
    ax.set_ylim(0, 100)
    import textwrap

    ax.set_title("\n".join(textwrap.wrap(result.design.describe(), 80)), fontsize=8)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig
