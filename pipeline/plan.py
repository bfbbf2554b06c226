"""The declared analysis plan: ``params.yaml`` ``design:``, parsed once into a typed object.

A trial's statistical analysis plan fixes, before anyone sees the outcomes, the design and
the analyses that follow from it. odeval reads it from ``params.yaml`` ``design:`` into an
:class:`AnalysisPlan` (frozen dataclasses) that every analysis function takes, as every R
``survey`` estimator takes the one ``svydesign`` object: no analysis can forget the
clusters, the strata or the covariates, and the report states the plan before any result.

What the plan declares:

* the design: ``cluster_randomised``, ``individually_randomised`` or ``observational``; the
  unit of randomisation (``cluster``: ``people.cluster_id``; ``person``); the strata
  (``site_id``) and whether clusters were randomised in pairs within them;
* pre-specified covariates: person-level (baseline variables of the person frame) and
  cluster-level (columns of the optional ``clusters`` table: restriction variables such as
  list size or deprivation);
* the primary outcome with its test, and the secondary outcomes in their testing order
  with the multiplicity method (``hierarchical``: fixed sequence; ``holm``; ``none``);
* pre-specified subgroups (an interaction test each);
* the small-sample (few clusters) method per outcome: ``auto`` (the default the
  simulation study chose for the data's shape, :func:`default_method`) or a name of
  :data:`METHODS`.

:func:`parse` checks the plan on its own (unknown outcome, bad value); :meth:`AnalysisPlan.
check_data` checks it against the data (a covariate not in the data, a cluster design
without clusters, ...). Both raise :class:`~pipeline.errors.OdevalError` with a one-line
message naming the ``design.<key>`` at fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from pipeline.errors import OdevalError

DESIGN_TYPES = ("cluster_randomised", "individually_randomised", "observational")
UNITS = ("cluster", "person")
MULTIPLICITY = ("hierarchical", "holm", "none")

#: Baseline (pre-randomisation) variables of the person frame that may be covariates or
#: subgroups; anything else in the frame is an outcome or follow-up, never a covariate.
BASELINE = ("sex", "age_at_index", "ethnicity_group", "diagnosis_group", "prior_admissions_2y",
            "baseline_activity")
#: Typed cluster-level columns of the clusters table (schemas/clusters.yaml); any other
#: column of the clusters file may be named too (it is kept as an extra column).
CLUSTER_COLUMNS = ("list_size", "imd_decile", "randomised_on")


@dataclass(frozen=True)
class Outcome:
    """An outcome odeval derives, and how it is analysed."""

    name: str
    kind: str             # time_to_event | count | binary
    what: str             # words: "first relapse (acute-care episode)"
    measures: tuple[str, ...]  # effect measures reported; the first is the one tested
    columns: tuple[tuple[str, str], ...]  # role -> person-frame column
    event: str = ""       # one event in words ("relapse"), for "no relapse in an arm"
    #: who has no value of a binary outcome, in words ("N people ... left out")
    missing: str = "without the outcome recorded"

    def column(self, role: str) -> str:
        return dict(self.columns)[role]


#: The outcomes an analysis plan may name (CONTRACT.md default definitions).
OUTCOMES: dict[str, Outcome] = {o.name: o for o in (
    Outcome("relapse", "time_to_event", "first relapse (acute-care episode)",
            ("hazard ratio",), (("time", "relapse_time"), ("event", "relapse_event")), "relapse"),
    Outcome("involuntary_admission", "count",
            "involuntary admissions (Mental Health Act episodes with a detention under the "
            "involuntary sections) per person-year of follow-up",
            ("rate ratio",), (("count", "involuntary_count"),
                              ("exposure", "involuntary_person_years")),
            "involuntary admission"),
    Outcome("antipsychotic_any", "binary", "any antipsychotic use in follow-up",
            ("risk difference", "risk ratio"), (("outcome", "ap_any_use"),)),
    Outcome("antipsychotic_last_days", "binary",
            "antipsychotic use in the last days of follow-up",
            ("risk difference", "risk ratio"), (("outcome", "ap_use_last_days"),)),
    Outcome("return_to_work", "binary", "being in work or education at 2 years",
            ("risk difference", "risk ratio"), (("outcome", "rtw_2y"),)),
)}

#: Tests an outcome of each kind may name (the first is the default).
TESTS = {
    "time_to_event": {
        "wald": "Wald test of the Cox model's arm coefficient with the design's variance",
        "score": "robust score (log-rank) test of the Cox model (Lin and Wei 1989)",
    },
    "count": {"wald": "Wald test of the rate-ratio model's arm coefficient with the design's "
                      "variance"},
    "binary": {"wald": "Wald test of the risk difference with the design's variance"},
}

#: Small-sample (few clusters) methods, per outcome kind, in words; the names are those of
#: the simulation study (:mod:`pipeline.simulation.methods`). ``model``: no clustering in
#: the variance (individual randomisation).
_GLM_METHODS = {
    "model": "model-based variance",
    "CR1": "cluster-robust sandwich with J/(J-1) (CR1), t on J-1 df",
    "CR2": "bias-reduced cluster-robust sandwich (CR2, Bell-McCaffrey), Satterthwaite df",
    "MD": "Mancl-DeRouen bias-corrected sandwich, t on K-p df",
    "KC": "Kauermann-Carroll bias-corrected sandwich, t on K-p df",
    "jackknife-cluster": "delete-one-cluster jackknife, t on G-1 df",
    "jackknife-site": "delete-one-site (stratum) jackknife, t on S-1 df",
    "cluster-level": "two-stage cluster-level analysis (Hayes and Moulton), t-test on the "
                     "cluster summaries",
    "permutation": "stratified permutation test on the cluster summaries, interval by test "
                   "inversion",
}
METHODS: dict[str, dict[str, str]] = {
    "time_to_event": {k: v for k, v in _GLM_METHODS.items()
                      if k in ("model", "CR1", "jackknife-cluster", "jackknife-site",
                               "cluster-level", "permutation")},
    "count": dict(_GLM_METHODS),
    "binary": dict(_GLM_METHODS),
}
#: methods that need clusters (everything but the model-based variance; the site jackknife
#: needs only sites)
NEEDS_CLUSTERS = {"CR1", "CR2", "MD", "KC", "jackknife-cluster", "cluster-level", "permutation"}

#: ``auto`` before the simulation study's choice exists (pipeline/simulation/defaults.yaml):
#: the methods main had before it, and the plan says "provisional".
PROVISIONAL_METHODS: dict[str, dict[str, str]] = {
    "pair_matched": {"time_to_event": "jackknife-cluster", "count": "jackknife-cluster",
                     "binary": "CR2"},
    "clustered": {"time_to_event": "jackknife-cluster", "count": "jackknife-cluster",
                  "binary": "CR2"},
    "individual": {"time_to_event": "model", "count": "model", "binary": "model"},
}
def default_method(shape: str, kind: str) -> tuple[str, str]:
    """``auto`` resolved: ``(method, where it comes from)``. The simulation study's choice
    (:mod:`pipeline.simulation.defaults`, ``defaults.yaml`` written by ``python -m
    pipeline.simulation.study``) for the simulated shape nearest this one, else
    :data:`PROVISIONAL_METHODS`."""
    from pipeline.simulation import defaults as sim

    design, per_arm = {"pair_matched": ("cluster_randomised", 1),
                       "clustered": ("cluster_randomised", 2),
                       "individual": ("individually_randomised", None)}[shape]
    try:
        got = sim.rationale(kind, design, per_arm)
        reps = sim.load().get("replicates_per_cell")
    except (FileNotFoundError, KeyError):
        got = None
    if got and got.get("method") in METHODS[kind]:
        return got["method"], f"chosen by simulation ({reps} replicates per cell: {got['rule']})"
    return PROVISIONAL_METHODS[shape][kind], ("provisional default: the simulation study has "
                                              "no choice for this shape")


SHAPES = {
    "pair_matched": "one cluster per arm in every stratum (pair-matched clusters)",
    "clustered": "several clusters per arm",
    "individual": "people randomised or compared one by one (no clusters)",
}

ARM_WORDS = {"open_dialogue": "Open Dialogue", "usual_care": "usual care"}


def _err(message: str, key: str) -> OdevalError:
    return OdevalError(f"design.{key}: {message}", rule=f"design.{key.split('.')[0].split('[')[0]}",
                       file="params.yaml")


@dataclass(frozen=True)
class OutcomePlan:
    """One outcome of the plan: what is estimated, how it is tested, with which method."""

    outcome: Outcome
    test: str = "wald"
    small_sample: str = "auto"   # auto | a name of METHODS[kind]

    @property
    def name(self) -> str:
        return self.outcome.name

    @property
    def kind(self) -> str:
        return self.outcome.kind

    @property
    def measure(self) -> str:
        return self.outcome.measures[0]


@dataclass(frozen=True)
class Design:
    type: str = "cluster_randomised"
    unit: str = "cluster"
    strata: str | None = "site_id"
    paired: bool = False        # clusters randomised in pairs (one per arm) within strata

    @property
    def clustered(self) -> bool:
        return self.unit == "cluster"

    @property
    def randomised(self) -> bool:
        return self.type != "observational"


WEIGHTING_ESTIMANDS = ("ATE", "ATT", "ATO")
WEIGHTING_WORDS = {
    "ATE": "everyone compared (the average effect over the study's people)",
    "ATT": "the people in Open Dialogue (the average effect in those treated)",
    "ATO": "the overlap population (people who could have gone to either arm)",
}


@dataclass(frozen=True)
class WeightingPlan:
    """``design.weighting``: the confounding adjustment of an observational design
    (:mod:`pipeline.analyses.observational`): propensity-score weights for ``estimand``
    from a logistic model of the arm on ``covariates`` (default: the plan's covariates,
    else every baseline variable) and the strata (site), with optional restricted cubic
    ``splines`` of numeric covariates, ``interactions`` (``a:b``) and ``trim`` (scores
    outside [trim, 1 - trim] left out, the model refitted); ``augmented``: binary outcomes
    by the doubly robust AIPW estimator (ATE only)."""

    estimand: str = "ATE"
    covariates: tuple[str, ...] = ()
    splines: tuple[str, ...] = ()
    interactions: tuple[tuple[str, str], ...] = ()
    trim: float | None = None
    augmented: bool = False

    def describe(self, covariates: tuple[str, ...], strata: str | None) -> str:
        return (f"propensity score: logistic model of the arm on {', '.join(covariates)}"
                + (f" and {strata}" if strata else "")
                + (f", with restricted cubic splines of {', '.join(self.splines)}"
                   if self.splines else "")
                + (f", interactions {', '.join(f'{a}:{b}' for a, b in self.interactions)}"
                   if self.interactions else "")
                + f"; {self.estimand} weights ({WEIGHTING_WORDS[self.estimand]})"
                + (f"; people with a score outside [{self.trim:g}, {1 - self.trim:g}] left "
                   "out" if self.trim else "")
                + ("; binary outcomes by the doubly robust augmented estimator"
                   if self.augmented else ""))


#: Numeric baseline variables (the others are categorical): the ones splines may expand.
NUMERIC_BASELINE = ("age_at_index", "prior_admissions_2y")


def _weighting(raw: Any, plan_covariates: tuple[str, ...]) -> WeightingPlan:
    """``design.weighting``; ``plan_covariates``: ``design.covariates`` (the propensity
    model's default)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise _err(f"must be a mapping, got {raw!r}", "weighting")
    raw = dict(raw)
    est = str(raw.pop("estimand", "ATE")).upper()
    if est not in WEIGHTING_ESTIMANDS:
        raise _err(f"{est!r} is not one of {list(WEIGHTING_ESTIMANDS)}", "weighting.estimand")
    covs = _names(raw.pop("covariates", None) or [], "weighting.covariates")
    bad = [c for c in covs if c not in BASELINE]
    if bad:
        raise _err(f"{bad} not baseline variables; known: {list(BASELINE)}",
                   "weighting.covariates")
    model = covs or plan_covariates or BASELINE
    spl = _names(raw.pop("splines", None) or [], "weighting.splines")
    bad = [c for c in spl if c not in model or c not in NUMERIC_BASELINE]
    if bad:
        raise _err(f"{bad}: splines expand numeric covariates of the propensity model "
                   f"({[c for c in model if c in NUMERIC_BASELINE]})", "weighting.splines")
    inter = []
    for x in raw.pop("interactions", None) or []:
        pair = x.split(":") if isinstance(x, str) else list(x)
        if len(pair) != 2:
            raise _err(f"{x!r} is not a pair 'a:b'", "weighting.interactions")
        pair = (str(pair[0]).strip(), str(pair[1]).strip())
        if not set(pair) <= set(model) or pair[0] == pair[1]:
            raise _err(f"{x!r}: both terms must be different covariates of the propensity "
                       f"model ({list(model)})", "weighting.interactions")
        inter.append(pair)
    trim = raw.pop("trim", None)
    if trim is not None and not (isinstance(trim, (int, float)) and 0 < float(trim) < 0.5):
        raise _err(f"must lie strictly between 0 and 0.5 (or null), got {trim!r}",
                   "weighting.trim")
    aug = raw.pop("augmented", False)
    if not isinstance(aug, bool):
        raise _err(f"must be true or false, got {aug!r}", "weighting.augmented")
    if aug and est != "ATE":
        raise _err("the augmented estimator targets the ATE: set estimand ATE",
                   "weighting.augmented")
    if raw:
        raise _err(f"unknown key(s) {sorted(raw)}; known: estimand, covariates, splines, "
                   "interactions, trim, augmented", "weighting")
    return WeightingPlan(est, covs, spl, tuple(inter),
                         None if trim is None else float(trim), aug)


#: Intercurrent events (ICH E9(R1)) the plan declares a strategy for, and the strategies
#: implemented for each (the first is the default). The sensitivity analyses
#: (:mod:`pipeline.analyses.sensitivity`) vary them: Fine-Gray for death, transfer out
#: counted as an event. Death for return to work is ``analyse.rtw.deaths`` (one place).
INTERCURRENT: dict[str, dict[str, str]] = {
    "death": {"competing": "is a competing event (follow-up for the outcome ends at death: "
                           "the cause-specific hazard, among people alive)"},
    "transfer_out": {"censor": "censors follow-up (hypothetical strategy: as if followed on, "
                               "with the same hazard as people still followed)"},
    "left_service": {"censor": "censors follow-up (hypothetical strategy, as transfer out)"},
}
INTERCURRENT_WORDS = {"death": "death", "transfer_out": "transfer out",
                      "left_service": "leaving the service"}


@dataclass(frozen=True)
class Estimand:
    """One outcome's estimand (ICH E9(R1)): population, variable, intercurrent events with
    the strategy for each, and the population-level summary."""

    outcome: str
    population: str
    variable: str
    intercurrent: tuple[tuple[str, str], ...]   # (event in words, strategy in words)
    summary: str

    @property
    def sentence(self) -> str:
        """The estimand in one sentence, as the report prints it."""
        ice = "; ".join(f"{e} {s}" for e, s in self.intercurrent)
        return (f"{self.summary[0].upper()}{self.summary[1:]} of {self.variable}, among "
                f"{self.population}; {ice}.")


@dataclass(frozen=True)
class AnalysisPlan:
    """The declared analysis plan (see the module docstring); build it with :func:`parse`."""

    design: Design
    primary: OutcomePlan
    secondary: tuple[OutcomePlan, ...] = ()
    multiplicity: str = "hierarchical"
    covariates: tuple[str, ...] = ()
    cluster_covariates: tuple[str, ...] = ()
    subgroups: tuple[str, ...] = ()
    reference_arm: str = "usual_care"
    comparison_arm: str = "open_dialogue"
    conf_level: float = 0.95
    #: set by :meth:`check_data`: the data's shape, and ``auto`` resolved per outcome
    shape: str | None = None
    methods: tuple[tuple[str, str], ...] = field(default=())
    method_sources: tuple[tuple[str, str], ...] = field(default=())
    weighting: WeightingPlan = field(default_factory=WeightingPlan)
    #: ``design.intercurrent``: (event, strategy) per :data:`INTERCURRENT` event
    intercurrent: tuple[tuple[str, str], ...] = field(
        default=tuple((k, next(iter(v))) for k, v in INTERCURRENT.items()))
    #: ``analyse.rtw.deaths``: death before the window of return to work
    rtw_deaths: str = "composite"
    follow_up_days: int = 730

    # ------------------------------------------------------------------ words
    @property
    def outcomes(self) -> tuple[OutcomePlan, ...]:
        """The primary outcome, then the secondary ones in their testing order."""
        return (self.primary, *self.secondary)

    @property
    def contrast(self) -> str:
        """"Open Dialogue vs usual care"."""
        return (f"{ARM_WORDS.get(self.comparison_arm, self.comparison_arm)} vs "
                f"{ARM_WORDS.get(self.reference_arm, self.reference_arm)}")

    @property
    def causal(self) -> bool:
        """Whether effect words fit (randomised designs). An observational comparison stays
        an association, its weighted estimates too: "adjusted for the measured
        covariates", an effect only under assumptions the data cannot check."""
        return self.design.randomised

    @property
    def effect_word(self) -> str:
        return "effect" if self.causal else "association"

    def with_definitions(self, words: dict[str, str]) -> "AnalysisPlan":
        """The plan whose outcome words follow the definitions ``derived.*`` was built with
        (:func:`pipeline.metrics.denominators`): the involuntary-admission rate names its
        person-time, the binary outcomes their window and denominator."""
        what = {
            "involuntary_admission": (
                f"involuntary admissions ({words['involuntary']} with a detention under the "
                f"involuntary sections) {words['involuntary_time']}"),
            "antipsychotic_any": (
                f"any antipsychotic use {words['window']} ({words['binary']})"),
            "antipsychotic_last_days": (
                f"antipsychotic use in the last days {words['window']} ({words['binary']})"),
        }

        window = words["window"] != "in follow-up"

        def one(op: OutcomePlan) -> OutcomePlan:
            w = what.get(op.name)
            if not w:
                return op
            missing = ("not followed for the whole window (status not known)"
                       if window and op.name.startswith("antipsychotic") else op.outcome.missing)
            return replace(op, outcome=replace(op.outcome, what=w, missing=missing))

        return replace(self, primary=one(self.primary),
                       secondary=tuple(one(o) for o in self.secondary))

    def method(self, outcome: str) -> str:
        """The small-sample method an outcome uses (after :meth:`check_data`)."""
        return dict(self.methods).get(outcome) or next(
            o.small_sample for o in self.outcomes if o.name == outcome)

    def estimand(self, op: OutcomePlan, measure: str | None = None) -> str:
        """The estimand in words, following the design."""
        measure = measure or op.measure
        strata = self.design.strata
        cond = f", conditional on {strata.replace('_id', '')}" if strata else ""
        adj = (f", adjusted for {', '.join(self.covariates + self.cluster_covariates)}"
               if self.covariates or self.cluster_covariates else "")
        if op.kind == "time_to_event":
            head = f"Cause-specific hazard ratio of {op.outcome.what} (deaths censored)"
        elif op.kind == "count":
            head = f"Rate ratio of {op.outcome.what}"
        else:
            head = f"Marginal {measure} of {op.outcome.what}"
            cond = ", standardised over the sites" if strata and adj else cond
        who = self.contrast if self.causal else (
            f"people in {ARM_WORDS.get(self.comparison_arm, self.comparison_arm)} compared with "
            f"people in {ARM_WORDS.get(self.reference_arm, self.reference_arm)} (observed, not "
            "allocated: an association)")
        return f"{head}, {who}{cond}{adj}."

    def describe(self, weighted: bool | None = None) -> list[tuple[str, str]]:
        """(item, words) rows: the plan as the report states it before any result.

        ``weighted``: whether the confounding adjustment (``analyse.run`` ``weighting``)
        gives the primary estimates; by default for an observational design. Then each
        outcome's row names the weighted estimate and the outcome regression as its
        sensitivity analysis."""
        d = self.design
        weighted = (not d.randomised) if weighted is None else weighted and not d.randomised
        by_weights = ("propensity-score weighted (the confounding adjustment below), Wald "
                      "test with the robust variance carrying the propensity model; "
                      "sensitivity analysis: outcome regression adjusted for the covariates, ")
        kind = {"cluster_randomised": "Cluster-randomised trial",
                "individually_randomised": "Individually randomised trial",
                "observational": "Observational comparison (arms not allocated at random)"}[d.type]
        rows = [("Design", kind + (f"; clusters randomised in pairs within {d.strata}"
                                   if d.paired else "")),
                ("Unit of randomisation" if d.randomised else "Unit of analysis",
                 "cluster (people.cluster_id)" if d.clustered else "person"),
                ("Strata", d.strata or "none")]
        if self.shape:
            rows.append(("Shape of the data", SHAPES[self.shape] if self.shape != "individual"
                         else "people randomised one by one (no clusters)" if d.randomised
                         else "people compared one by one (no clusters)"))
        rows.append(("Comparison", self.contrast))
        rows.append(("Covariates (person)", ", ".join(self.covariates) or "none"))
        if d.clustered:
            rows.append(("Covariates (cluster)", ", ".join(self.cluster_covariates) or "none"))
        p = self.primary
        test = ("the method's own test" if self.method(p.name) in ("cluster-level",
                                                                    "permutation")
                else TESTS[p.kind][p.test])
        if weighted:
            rows.append(("Primary outcome", f"{p.outcome.what}: {p.measure}, "
                         f"{by_weights}{self._method_words(p)}"))
        else:
            rows.append(("Primary outcome", f"{p.outcome.what}: {p.measure}, {test}; "
                         f"{self._method_words(p)}"))
        for i, s in enumerate(self.secondary, start=1):
            rows.append((f"Secondary {i}", f"{s.outcome.what}: {s.measure}; "
                         + (f"{by_weights}" if weighted else "") + self._method_words(s)))
        rows.append(("Multiplicity", {
            "hierarchical": "fixed sequence: each secondary outcome is tested at the full "
                            "level only if the primary and every earlier secondary test "
                            "rejected; after the first that does not, the rest are "
                            "descriptive",
            "holm": "Holm's step-down adjustment of the secondary outcomes' p-values "
                    "(family-wise error rate), after the primary test rejected",
            "none": "none: secondary p-values are unadjusted and descriptive"}[
                self.multiplicity]))
        rows.append(("Subgroups", ", ".join(self.subgroups) + " (interaction tests)"
                     if self.subgroups else "none"))
        if weighted:
            rows.append(("Confounding adjustment (primary)",
                         self.weighting.describe(self.weighting_covariates, d.strata)
                         + "; every outcome also unadjusted, beside it; E-values for the "
                           "ratios"))
        return rows

    @property
    def weighting_covariates(self) -> tuple[str, ...]:
        """The propensity model's covariates: ``design.weighting.covariates``, else the
        plan's covariates, else every baseline variable."""
        return self.weighting.covariates or self.covariates or BASELINE

    def estimands(self) -> list[Estimand]:
        """Each outcome's estimand (primary first), from the plan, ``design.intercurrent``
        and ``analyse.rtw.deaths``."""
        ice = dict(self.intercurrent)
        years = f"{self.follow_up_days / 365.25:.3g} years"
        everyone = ("everyone allocated, in the arm allocated" if self.design.randomised
                    else "everyone in the comparison, in the arm they were in")
        out = []
        for op in self.outcomes:
            summary = {"time_to_event": "cause-specific hazard ratio",
                       "count": "rate ratio"}.get(op.kind, f"marginal {op.measure}")
            if op.kind == "binary" and len(op.outcome.measures) > 1:
                summary += f" (and {op.outcome.measures[1]})"
            summary = f"{summary} ({self.contrast})"
            death = INTERCURRENT["death"][ice["death"]]
            transfer = INTERCURRENT["transfer_out"][ice["transfer_out"]]
            left = INTERCURRENT["left_service"][ice["left_service"]]
            if op.kind == "time_to_event":
                pop = everyone
                var = f"the time to {op.outcome.what} within {years}"
                events = (("death", death + "; sensitivity: Fine-Gray subdistribution hazard "
                           "ratio, people who died kept in the risk set"),
                          ("transfer out", transfer + "; sensitivity: transfer out counted as "
                           "the event"),
                          ("leaving the service", left),
                          ("the end of the data", "is administrative censoring"))
            elif op.kind == "count":
                pop = everyone + ", with follow-up time"
                var = op.outcome.what
                events = (("death", "ends person-time (while alive)"),
                          ("transfer out", "ends person-time (hypothetical: the rate assumed "
                           "unchanged after it)"),
                          ("leaving the service", "ends person-time, as transfer out"))
            elif op.name == "return_to_work":
                pop = ("people whose records run into the window of the two-year status "
                       "(those whose records end before it, recruited late or transferred "
                       "out, have no status due)")
                var = op.outcome.what
                events = (("death before the window",
                           "counts as not in work or education (composite strategy; "
                           "sensitivity: while alive)" if self.rtw_deaths == "composite" else
                           "leaves the person out (while alive)"),
                          ("a status not recorded in the window", "is imputed (multiple "
                           "imputation, missing at random; sensitivity: complete case and a "
                           "tipping-point analysis)"))
            else:
                pop = (f"people {op.outcome.missing.replace('not followed', 'followed').replace('(status not known)', '')}"
                       .strip() if "not followed" in op.outcome.missing else everyone)
                var = op.outcome.what
                events = (("death, transfer out or leaving the service before the end of "
                           "the window", "leaves the outcome unknown: the person is left out "
                           "(complete cases, valid if these events are unrelated to the "
                           "outcome within arm and site)"),)
            out.append(Estimand(op.name, pop, var, tuple(events), summary))
        return out

    def _method_words(self, op: OutcomePlan) -> str:
        name = self.method(op.name)
        words = METHODS[op.kind].get(name, name)
        src = dict(self.method_sources).get(op.name)
        return f"{words} ({src})" if src else words

    # ------------------------------------------------------------------ data
    def check_data(self, persons: pd.DataFrame, clusters: pd.DataFrame | None = None
                   ) -> AnalysisPlan:
        """Check the plan against the data; return it with the data's shape and each
        outcome's small-sample method resolved (``auto`` -> :data:`DEFAULT_METHODS`).

        ``persons``: the person frame (:func:`pipeline.metrics.person_frame`);
        ``clusters``: ``derived.clusters`` (None or empty without a clusters table).
        """
        d = self.design
        have_cl = "cluster_id" in persons and persons["cluster_id"].notna().any()
        if d.type == "cluster_randomised":
            if not have_cl:
                raise _err("cluster_randomised, but no person has a cluster_id (people."
                           "cluster_id is empty): give the clusters, or declare "
                           "design.type individually_randomised or observational", "type")
            n_missing = int(persons["cluster_id"].isna().sum())
            if n_missing:
                raise _err(f"cluster_randomised, but {n_missing} people have no cluster_id",
                           "type")
        if d.strata and d.strata not in persons:
            raise _err(f"strata column {d.strata!r} is not in the person frame", "strata")
        arms = set(persons["arm"].astype(str).unique())
        unknown = sorted(arms - {self.reference_arm, self.comparison_arm})
        if unknown:
            raise OdevalError(f"the plan compares {self.comparison_arm} with "
                              f"{self.reference_arm}; the data have arms {sorted(arms)}",
                              rule="analyse.arms")
        for c in self.covariates + self.subgroups:
            if c not in persons:
                key = "covariates" if c in self.covariates else "subgroups"
                raise _err(f"{c!r} is not a column of the person frame", key)
        listed = clusters is not None and len(clusters) and clusters["listed"].any()
        for c in self.cluster_covariates:
            if not listed:
                raise _err(f"{c!r} needs the clusters table (clusters.csv), which the extract "
                           "does not give", "cluster_covariates")
            if c not in cluster_covariate_frame(clusters):
                raise _err(f"{c!r} is not a column of the clusters table", "cluster_covariates")
        shape = design_shape(persons, self)
        if d.paired and shape != "pair_matched":
            raise _err(f"true, but the data are not one cluster per arm in every "
                       f"{d.strata or 'stratum'} ({SHAPES[shape]})", "pairing")
        methods, sources = [], []
        for op in self.outcomes:
            m, src = default_method(shape, op.kind) if op.small_sample == "auto" else \
                (op.small_sample, "declared in the plan")
            if shape == "individual" and m in NEEDS_CLUSTERS:
                raise _err(f"{op.name}: {m!r} needs clusters, and the data have none "
                           "(use auto, model or jackknife-site)", "small_sample")
            methods.append((op.name, m))
            sources.append((op.name, src))
        return replace(self, shape=shape, methods=tuple(methods), method_sources=tuple(sources))


def design_shape(persons: pd.DataFrame, plan: AnalysisPlan) -> str:
    """``individual`` (no clusters in the analysis), ``pair_matched`` (at most one cluster
    per arm in every stratum) or ``clustered``."""
    if not plan.design.clustered or "cluster_id" not in persons \
            or persons["cluster_id"].isna().all():
        return "individual"
    by = [plan.design.strata] if plan.design.strata else []
    per = persons.groupby([*by, "arm"], observed=True)["cluster_id"].nunique()
    # a stratum left with one arm (no one recruited in the other's cluster) is still a pair
    # by design; it adds nothing to the within-stratum contrast
    return "pair_matched" if by and len(per) and (per == 1).all() else "clustered"


def cluster_covariate_frame(clusters: pd.DataFrame) -> pd.DataFrame:
    """``derived.clusters`` with its extra columns spread out: one row per cluster, a
    column per covariate (numbers where every given value reads as one, else text)."""
    out = clusters.drop(columns=["extra_columns"], errors="ignore").copy()
    if "extra_columns" in clusters:
        extra = pd.DataFrame([v if isinstance(v, dict) else {} for v in clusters["extra_columns"]],
                             index=clusters.index)
        for c in extra:
            if c in out:
                continue
            num = pd.to_numeric(extra[c], errors="coerce")
            out[c] = num if num.notna().sum() == extra[c].notna().sum() else extra[c]
    return out


# ---------------------------------------------------------------------- parsing

def _names(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise _err(f"must be a list, got {value!r}", key)
    out = tuple(str(v) for v in value)
    if len(set(out)) != len(out):
        raise _err(f"lists a name twice: {list(out)}", key)
    return out


def _outcome(raw: Any, key: str) -> OutcomePlan:
    if isinstance(raw, str):
        raw = {"outcome": raw}
    if not isinstance(raw, dict):
        raise _err(f"must be an outcome name or a mapping with outcome:, got {raw!r}", key)
    unknown = sorted(set(raw) - {"outcome", "test", "small_sample"})
    if unknown:
        raise _err(f"unknown key(s) {unknown}; known: outcome, test, small_sample", key)
    name = raw.get("outcome")
    if name not in OUTCOMES:
        raise _err(f"unknown outcome {name!r}; known: {sorted(OUTCOMES)}", key)
    o = OUTCOMES[name]
    test = raw.get("test") or next(iter(TESTS[o.kind]))
    if test not in TESTS[o.kind]:
        raise _err(f"{name}: test {test!r} is not one of {sorted(TESTS[o.kind])}", key)
    small = raw.get("small_sample") or "auto"
    if small != "auto" and small not in METHODS[o.kind]:
        raise _err(f"{name}: small_sample {small!r} is not auto or one of "
                   f"{sorted(METHODS[o.kind])}", key)
    return OutcomePlan(o, test=test, small_sample=small)


DEFAULTS: dict[str, Any] = {
    "type": "cluster_randomised",
    "unit": "cluster",
    "strata": "site_id",
    "pairing": False,
    "covariates": [],
    "cluster_covariates": [],
    "primary": {"outcome": "relapse"},
    "secondary": ["involuntary_admission", "antipsychotic_any", "antipsychotic_last_days",
                  "return_to_work"],
    "multiplicity": "hierarchical",
    "subgroups": [],
    "weighting": {},      # observational designs: pipeline.plan.WeightingPlan
    "intercurrent": {k: next(iter(v)) for k, v in INTERCURRENT.items()},
}


def parse(params: dict[str, Any] | None) -> AnalysisPlan:
    """The plan from the whole ``params.yaml`` mapping: ``design:`` over :data:`DEFAULTS`,
    with the arms and confidence level of ``analyse:``."""
    from pipeline import params as params_mod

    params = params or {}
    raw = params_mod.merged("design", params_mod.section(params, "design"), DEFAULTS)
    an = params.get("analyse") or {}
    if raw["type"] not in DESIGN_TYPES:
        raise _err(f"{raw['type']!r} is not one of {list(DESIGN_TYPES)}", "type")
    if raw["unit"] not in UNITS:
        raise _err(f"{raw['unit']!r} is not one of {list(UNITS)}", "unit")
    if raw["type"] == "cluster_randomised" and raw["unit"] != "cluster":
        raise _err("a cluster_randomised design randomises clusters: unit must be cluster",
                   "unit")
    if raw["type"] == "individually_randomised" and raw["unit"] != "person":
        raise _err("an individually_randomised design randomises people: unit must be person",
                   "unit")
    strata = raw["strata"]
    if strata is not None and not isinstance(strata, str):
        raise _err(f"must be one column name or null, got {strata!r}", "strata")
    if not isinstance(raw["pairing"], bool):
        raise _err(f"must be true or false, got {raw['pairing']!r}", "pairing")
    if raw["pairing"] and (raw["unit"] != "cluster" or not strata):
        raise _err("pairs are clusters matched within strata: needs unit cluster and strata",
                   "pairing")
    if raw["multiplicity"] not in MULTIPLICITY:
        raise _err(f"{raw['multiplicity']!r} is not one of {list(MULTIPLICITY)}",
                   "multiplicity")
    covariates = _names(raw["covariates"], "covariates")
    subgroups = _names(raw["subgroups"], "subgroups")
    cluster_cov = _names(raw["cluster_covariates"], "cluster_covariates")
    for key, names in (("covariates", covariates), ("subgroups", subgroups)):
        bad = [c for c in names if c not in BASELINE]
        if bad:
            raise _err(f"{bad} not baseline variables of the person frame (outcomes and "
                       f"follow-up cannot be {key}); known: {list(BASELINE)}", key)
    if cluster_cov and raw["unit"] != "cluster":
        raise _err("cluster-level covariates need a cluster design (unit cluster)",
                   "cluster_covariates")
    primary = _outcome(raw["primary"], "primary")
    if not isinstance(raw["secondary"], list):
        raise _err(f"must be a list in testing order, got {raw['secondary']!r}", "secondary")
    secondary = tuple(_outcome(s, f"secondary[{i}]") for i, s in enumerate(raw["secondary"]))
    names = [primary.name, *(s.name for s in secondary)]
    if len(set(names)) != len(names):
        raise _err(f"an outcome is named twice among primary and secondary: {names}",
                   "secondary")
    if raw["unit"] == "person":
        for op in (primary, *secondary):
            if op.small_sample in NEEDS_CLUSTERS:
                raise _err(f"{op.name}: {op.small_sample!r} needs clusters; the unit is person",
                           "small_sample")
    conf = float(an.get("conf_level", 0.95))
    ice = raw["intercurrent"]
    if not isinstance(ice, dict):
        raise _err(f"must be a mapping of event: strategy, got {ice!r}", "intercurrent")
    ice = {**DEFAULTS["intercurrent"], **ice}
    for k, v in ice.items():
        if k not in INTERCURRENT:
            raise _err(f"unknown event {k!r}; known: {sorted(INTERCURRENT)}", "intercurrent")
        if v not in INTERCURRENT[k]:
            raise _err(f"{v!r} is not implemented; the primary strategy is one of "
                       f"{sorted(INTERCURRENT[k])} (the sensitivity analyses vary it)",
                       f"intercurrent.{k}")
    from pipeline.analyses.return_to_work import settings as rtw_settings

    return AnalysisPlan(
        design=Design(type=raw["type"], unit=raw["unit"], strata=strata,
                      paired=raw["pairing"]),
        primary=primary, secondary=secondary, multiplicity=raw["multiplicity"],
        covariates=covariates, cluster_covariates=cluster_cov, subgroups=subgroups,
        reference_arm=str(an.get("reference_arm", "usual_care")),
        comparison_arm=str(an.get("comparison_arm", "open_dialogue")), conf_level=conf,
        weighting=_weighting(raw["weighting"], covariates),
        intercurrent=tuple((k, ice[k]) for k in INTERCURRENT),
        rtw_deaths=rtw_settings(an)["deaths"],
        follow_up_days=int((params.get("derive") or {}).get("follow_up_days", 730)))
