"""Return to work or education: the outcome analysed with its missing data (ICH E9(R1)).

The outcome ``rtw_2y`` is the last employment status recorded in the window of days
``follow_up_days - rtw_window_days .. follow_up_days`` (derive; default 640..730). Who it is
due from, and what is done about whom it is missing:

* **population**: people whose records run into the window (``window_reached``:
  ``data_end_date`` on or after the window's start). People whose records end before it
  (recruited too late for the data cut, transferred out) are not in it: their status at two
  years is not due, and with randomisation and staggered entry their absence does not
  depend on the outcome (the count is stated);
* **death before the window** (an intercurrent event): counted as not in work or education
  (composite strategy; ``analyse.rtw.deaths: composite``), or the people who died left out
  (``while_alive``: the effect among people alive at two years, a sensitivity analysis);
* **no status recorded in the window** (followed into it, alive): the status is imputed.

Analyses (rows of ``results.analysis_estimates``, outcome ``return_to_work``, measures
risk difference and risk ratio, the analysis labels in :data:`LABELS`):

* ``primary (multiple imputation)``: ``m`` proper imputations (``analyse.rtw.imputations``,
  seeded) of the missing statuses by logistic regression within each arm (chained
  equations reduce to this one model: no other variable is incomplete), on the site or
  cluster, the baseline activity, the last status recorded before the window and the plan's
  covariates (:func:`pipeline.stats.impute.impute_binary`); each completed dataset analysed
  as the plan analyses the outcome (:func:`pipeline.analyses.trial_effects.effects`:
  adjusted, standardised, the design's few-cluster variance and df), the estimates pooled
  by Rubin's rules with Barnard-Rubin df from the complete-data df (risk ratio on the log
  scale);
* ``complete case``: the same analysis of the people with a status (deaths before the
  window counted as not working): valid only if the missing statuses are missing
  completely at random within arm and site;
* ``while alive (multiple imputation)``: deaths left out;
* ``among not in work at baseline (multiple imputation)``: the people whose baseline
  activity is known and not in work or education;
* ``time to first return``: cumulative incidence of the first status in work or education
  (Aalen-Johansen, death competing, people not in work at baseline), difference between
  arms at 1 and 2 years (infinitesimal-jackknife standard errors: people treated as
  independent);
* the **tipping point** (table ``rtw_tipping``): the imputed log-odds shifted by
  ``delta_OD`` in the Open Dialogue arm and ``delta_UC`` in usual care over a grid
  (``analyse.rtw.deltas``), each cell re-pooled; where the pooled interval stops excluding
  0 (Ratitch et al. 2013; Cro et al. 2020). The same imputations (drawn coefficients and
  uniforms) are re-thresholded for every delta, so the map is smooth.

Nothing here crashes on an arm without returns (the imputation model is augmented), one
site, no clusters, or an observational design (the estimates then read as associations).

References: ICH E9(R1) addendum on estimands and sensitivity analysis (2019). Carpenter
JR, Kenward MG. Multiple Imputation and its Application. Wiley, 2013. Ratitch B, O'Kelly M,
Tosiello R. Missing data in clinical trials: from clinical assumptions to statistical
analysis using pattern mixture models. Pharm Stat 2013;12:337-47. Cro S, Morris TP,
Kenward MG, Carpenter JR. Sensitivity analysis for clinical trials with missing continuous
outcome data using controlled multiple imputation: a practical guide. Stat Med
2020;39:2815-42. White IR, Royston P, Wood AM. Multiple imputation using chained
equations: issues and guidance for practice. Stat Med 2011;30:377-99.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline import disclosure
from pipeline.analyses import AnalysisResult, with_columns
from pipeline.analyses.covariates import adjustment, with_cluster_covariates
from pipeline.analyses.trial_effects import (_NOT_ESTIMABLE, Effect, binary_effects,
                                             binary_model, effects, has_clusters,
                                             not_estimated, row, warm_start)
from pipeline.plan import AnalysisPlan, OutcomePlan
from pipeline.stats.impute import BinaryImputation, impute_binary, rubin

OUTCOME = "return_to_work"
#: analysis labels of the rows this family adds to ``results.analysis_estimates``
LABELS = {"mi": "primary (multiple imputation)", "cc": "complete case",
          "alive": "while alive (multiple imputation)",
          "baseline": "among not in work at baseline (multiple imputation)",
          "time": "time to first return"}
DEFAULTS: dict[str, Any] = {
    "imputations": 20,          # m
    "seed": 20261206,
    "deaths": "composite",      # composite (death before the window = not working) | while_alive
    "deltas": [-2.0, -1.0, 0.0, 1.0, 2.0],   # tipping-point grid (log-odds), per arm
    "cif_times": [365, 730],
    # the tipping map refits the primary model len(deltas)^2 x imputations times (500 at
    # the defaults): above this many people in the imputed population it is listed as not
    # shown, with its cost, instead of computed (about 8 CPU s per 25,000 people measured)
    "tipping_max_people": 200_000,
}
WORK = ("employed", "self_employed", "education", "training")
#: the tipping-point map's item in ``not_shown`` when it is not made
MAP_ITEM = "return to work or education: tipping-point map"


def settings(p: dict[str, Any]) -> dict[str, Any]:
    from pipeline import params as params_mod

    s = params_mod.merged("analyse.rtw", p.get("rtw"), DEFAULTS)
    if s["deaths"] not in ("composite", "while_alive"):
        from pipeline.errors import OdevalError

        raise OdevalError(f"analyse.rtw.deaths must be composite or while_alive, got "
                          f"{s['deaths']!r}", rule="analyse.params.rtw", file="params.yaml")
    if int(s["imputations"]) < 2:
        from pipeline.errors import OdevalError

        raise OdevalError("analyse.rtw.imputations must be at least 2",
                          rule="analyse.params.rtw", file="params.yaml")
    return s


def _status_group(x: pd.Series, work: tuple[str, ...]) -> pd.Series:
    """work | not_working | unknown (missing or the vocabulary's 'unknown')."""
    s = x.astype(object)
    out = np.where(s.isin(work), "work", np.where(s.isna() | (s == "unknown"), "unknown",
                                                  "not_working"))
    return pd.Series(out, index=x.index)


def in_population(d: pd.DataFrame, deaths: str = "composite") -> pd.Series:
    """Who the status at two years is due from: records reaching the window, and a death
    before it kept (``composite``, not working) or left out (``while_alive``). The
    imputation's people (:func:`population`), CONSORT's analysed and the missing-data
    table's."""
    reached = d["window_reached"].fillna(False).astype(bool)
    if deaths == "while_alive":
        return reached & ~d["died_before_window"].fillna(False).astype(bool)
    return reached


def population(d: pd.DataFrame, deaths: str = "composite",
               work: tuple[str, ...] = WORK) -> pd.DataFrame:
    """The people the status at two years is due from (:func:`in_population`), with
    ``rtw_y`` (1 in work or education, 0 not, NaN missing: to impute), ``rtw_missing`` and
    the imputation model's predictors ``rtw_place`` (cluster, else site), ``rtw_base`` and
    ``rtw_last``."""
    # the selection is a new frame: a shallow copy of it (not a second deep one) takes columns
    pop = d[in_population(d, deaths)].copy(deep=False)
    died = pop["died_before_window"].fillna(False).astype(bool)
    y = pop["rtw_2y"].astype(float)
    y = y.where(~died, 0.0)
    pop["rtw_y"] = y
    pop["rtw_missing"] = y.isna()
    pop["rtw_place"] = (pop["cluster_id"].astype(str) if has_clusters(pop)
                        else pop["site_id"].astype(str))
    pop["rtw_base"] = _status_group(pop["baseline_activity"], work)
    pop["rtw_last"] = _status_group(pop["last_status_pre"], work)
    return pop


def _op(plan: AnalysisPlan) -> OutcomePlan | None:
    return next((o for o in plan.outcomes if o.name == OUTCOME), None)


def _design_frame(pop, plan, clusters):
    names = [*plan.covariates, *plan.cluster_covariates]
    if not names:
        return pop, [], []
    return adjustment(with_cluster_covariates(pop, plan, clusters), names)


def _analyse_completed(frame, y, plan, op, p, cols, method, start=None, model=None):
    """Effects (risk difference, risk ratio) of one completed dataset; ``start``: the
    logistic model's coefficients on another completed dataset (the same convergence
    criterion from a nearer start: completed datasets differ only in imputed statuses).
    ``model``: the logistic model of ``frame`` built once (:func:`_model`), only ``y``
    differing between the fits that share it (the same numbers as without it)."""
    if model is not None:
        return binary_effects(model, y, start=start)
    col = op.outcome.column("outcome")
    return effects(with_columns(frame, **{col: y.to_numpy()}), plan, op, p, cols, method,
                   start=start)


def _model(frame, plan, op, p, cols, method):
    """The logistic model of :func:`effects` on every row of ``frame`` (a completed
    dataset has every status), or None for the cluster-level analysis."""
    if method in ("cluster-level", "permutation"):
        return None
    return binary_model(frame, plan, op, p, cols, method)


def _fits(frame, imp, plan, op, p, cols, method, delta=0.0, starts=None, fn=None, model=None):
    """Each completed dataset analysed by ``fn`` (default :func:`_analyse_completed`), each
    fit started from ``starts[j]`` (updated in place) or else from the previous
    imputation's fit; ``model`` as :func:`_analyse_completed` takes it."""
    fn = fn or _analyse_completed
    starts = {} if starts is None else starts
    fits, prev = [], None
    for j in range(imp.m):
        effs = fn(frame, imp.completed(j, delta), plan, op, p, cols, method,
                  start=starts.get(j, prev), model=model)
        prev = starts[j] = warm_start(effs)
        fits.append(effs)
    return fits


def _pool(effs_list, conf):
    """Rubin's rules per measure; returns {measure: (Pooled, Effect of the first)}."""
    out = {}
    for k, e0 in enumerate(effs_list[0]):
        es = [effs[k] for effs in effs_list]
        log = e0.measure == "risk ratio"
        q = [np.log(e.estimate) if log else e.estimate for e in es]
        u = [e.se ** 2 for e in es]
        out[e0.measure] = (rubin(q, u, dfcom=e0.df if np.isfinite(e0.df) else np.inf,
                                 conf_level=conf), e0, log)
    return out


def _mi(pop, plan, op, p, clusters, s, seed_key) -> tuple[BinaryImputation, list, Any]:
    frame, cols, cov_notes = _design_frame(pop, plan, clusters)
    preds = ["rtw_place", "rtw_base", "rtw_last", *cols]
    imp = impute_binary(frame, "rtw_y", preds, m=int(s["imputations"]), by="od",
                        seed=np.random.SeedSequence([int(s["seed"]), seed_key]))
    method = plan.method(op.name)
    return imp, (frame, cols, method, _model(frame, plan, op, p, cols, method)), cov_notes


def _pooled_rows(label, imp, ctx, plan, op, p, estimand, notes, delta=0.0):
    frame, cols, method, model = ctx
    fits = _fits(frame, imp, plan, op, p, cols, method, delta, model=model)
    pooled = _pool(fits, plan.conf_level)
    rows = []
    for measure, (pl, e0, log) in pooled.items():
        f = np.exp if log else (lambda x: x)
        words = (f"multiple imputation (m = {imp.m}, logistic by arm on site or cluster, "
                 "baseline activity, last status before the window and the plan's covariates; "
                 f"proper draws), each completed dataset by the plan's analysis: {e0.method}; "
                 f"Rubin's rules, Barnard-Rubin df {pl.df:.3g}")
        rows.append(row(label, op.name, measure, estimand.replace(
            f"Marginal {op.measure}", f"Marginal {measure}"), f(pl.estimate), f(pl.lower),
            f(pl.upper), pl.p, pl.se, words, e0.n, None, e0.n_clusters,
            [*notes, f"Fraction of missing information {pl.fmi:.2f}."], pl.df))
    return rows, pooled


def return_to_work(d: pd.DataFrame, plan: AnalysisPlan, p: dict[str, Any],
                   clusters: pd.DataFrame | None, cfg: dict[str, Any],
                   work: tuple[str, ...] = WORK, tipping_map: bool = True) -> AnalysisResult:
    """The return-to-work analyses (see the module): estimate rows, the tipping-point table
    (``rtw_tipping``) and the counts behind the population (``rtw_population``, rounded).
    ``tipping_map=False``: without the map's table, which the caller makes in parts
    (:func:`tipping_part`, then :func:`with_tipping`: the same numbers)."""
    res = AnalysisResult("return_to_work")
    op = _op(plan)
    if op is None:
        res.not_shown.append({"item": "return to work or education",
                              "reason": "the plan has no return_to_work outcome"})
        return res
    if "window_reached" not in d:
        res.not_shown.append({"item": "return to work or education (missing data)",
                              "reason": "the warehouse predates derived.activity's window "
                                        "columns: run derive again"})
        return res
    s = settings(p)
    estimand = plan.estimand(op)
    pop = population(d, s["deaths"], work)
    res.tables["rtw_population"] = _population_counts(d, pop, plan, s)
    res.public["rtw_population"] = _protect_counts(res.tables["rtw_population"], cfg)
    n_miss = int(pop["rtw_missing"].sum())
    n_pop = len(pop)
    tip = n_pop <= int(s["tipping_max_people"])   # the tipping-point map is made
    death_words = ("deaths before the window counted as not in work or education (composite)"
                   if s["deaths"] == "composite" else "deaths before the window left out "
                   "(while alive)")
    base_notes = [f"People whose records reach the window; {death_words}."]

    def guarded(label, fn):
        try:
            return fn()
        except _NOT_ESTIMABLE as exc:
            res.estimates.extend(not_estimated(label, op.name, m, estimand, str(exc),
                                               n=n_pop) for m in op.outcome.measures)
            return None

    def by_mi(label, sub, key, notes):
        _check_statuses(sub)
        imp, ctx, cov_notes = _mi(sub, plan, op, p, clusters, s, key)
        rows, pooled = _pooled_rows(label, imp, ctx, plan, op, p, estimand,
                                    [*notes, *imp.notes, *cov_notes])
        res.estimates.extend(rows)
        return imp, ctx, pooled

    mi = guarded(LABELS["mi"], lambda: by_mi(
        LABELS["mi"], pop, 1, [*base_notes, f"{_words_n(n_miss, cfg)} statuses imputed."]))
    m_imputed = None if mi is None else mi[0].m
    if not tip:   # only the map reads the imputations and model: freed now, not at the end
        mi = None
    guarded(LABELS["cc"], lambda: _complete_case(res, pop, plan, op, p, clusters, estimand,
                                                 base_notes))
    if s["deaths"] == "composite":
        alive = population(d, "while_alive", work)
        guarded(LABELS["alive"], lambda: by_mi(
            LABELS["alive"], alive, 2, ["Deaths before the window left out (while alive)."]))
        del alive
    nw = pop[pop["rtw_base"] == "not_working"]
    del pop   # (each population freed once its last analysis is made: 0.2 GB at national size)
    guarded(LABELS["baseline"], lambda: by_mi(
        LABELS["baseline"], nw, 3, [*base_notes, "People not in work or education at "
                                                 "baseline (baseline activity known)."]))
    del nw
    if m_imputed is not None:
        if not tip:
            res.not_shown.append({
                "item": MAP_ITEM,
                "reason": f"{len(s['deltas']) ** 2 * m_imputed} refits of the primary model over {n_pop:,} people are "
                          "more than this run computes: the map is computed up to "
                          f"analyse.rtw.tipping_max_people ({int(s['tipping_max_people']):,}) "
                          "people; raise it to compute the map"})
        elif tipping_map:
            imp, ctx, _ = mi
            parts = [_tipping_or_why(imp, ctx, plan, op, p, s["deltas"], k)
                     for k in range(TIPPING_PARTS)]
            del mi, imp, ctx
            _add_tipping(res, parts)
    res.estimates.extend(time_to_return(d, plan, op, s, work))
    return res


#: The tipping map's cells (``delta_OD`` by ``delta_UC``, row by row) are computed in this
#: many parts of about equal size, each from its own starting values, so that the analyse
#: stage's two processes can share the map (:func:`tipping_part`): at trust size its 500
#: refits are 8.5 of return to work's 10.4 s. The numbers are the same whichever process
#: computes each part: its imputations are made again from the same seed, and its fits
#: start from the same values.
TIPPING_PARTS = 2


def tipping_cells(n_deltas: int, part: int, parts: int = TIPPING_PARTS) -> range:
    """The cells (row-major indices into the ``n_deltas`` x ``n_deltas`` grid) of ``part``."""
    n = n_deltas * n_deltas
    return range(n * part // parts, n * (part + 1) // parts)


def _tipping_or_why(imp, ctx, plan, op, p, deltas, part) -> pd.DataFrame | str:
    """Part ``part`` of the map, or why a cell of it is not estimable (then no map is
    shown: a map with holes would read as cells where nothing tips)."""
    try:
        return tipping(imp, ctx, plan, op, p, deltas, part)
    except _NOT_ESTIMABLE as exc:
        return str(exc) or type(exc).__name__


def _add_tipping(res: AnalysisResult, parts: list[pd.DataFrame | str]) -> None:
    why = [x for x in parts if isinstance(x, str)]
    if why:
        res.not_shown.append({"item": MAP_ITEM,
                              "reason": f"a cell of the map is not estimable: {why[0]}"})
        return
    res.tables["rtw_tipping"] = pd.concat(parts, ignore_index=True)
    res.public["rtw_tipping"] = res.tables["rtw_tipping"].round(6)


def tipping_part(d: pd.DataFrame, plan: AnalysisPlan, p: dict[str, Any],
                 clusters: pd.DataFrame | None, cfg: dict[str, Any], part: int,
                 work: tuple[str, ...] = WORK) -> pd.DataFrame | str | None:
    """Part ``part`` of the tipping-point map as :func:`return_to_work` makes it, in a unit
    of work of its own: the primary population imputed again (the same seed: the same
    imputations) and the part's cells refitted. None where :func:`return_to_work` makes no
    map (no outcome, the window columns missing, more people than
    ``analyse.rtw.tipping_max_people``, the primary imputation not estimable: it says why);
    a text where a cell is not estimable. :func:`with_tipping` adds the parts."""
    op = _op(plan)
    if op is None or "window_reached" not in d:
        return None
    s = settings(p)
    reached = d["window_reached"].fillna(False).astype(bool)
    if s["deaths"] == "while_alive":
        reached &= ~d["died_before_window"].fillna(False).astype(bool)
    if int(reached.sum()) > int(s["tipping_max_people"]):   # len(population(...)), counted
        return None
    pop = population(d, s["deaths"], work)
    try:
        _check_statuses(pop)
        imp, ctx, _ = _mi(pop, plan, op, p, clusters, s, 1)
    except _NOT_ESTIMABLE:
        return None
    del pop
    return _tipping_or_why(imp, ctx, plan, op, p, s["deltas"], part)


def with_tipping(res: AnalysisResult, parts: list[pd.DataFrame | str | None]) -> AnalysisResult:
    """``res`` (:func:`return_to_work` without its map) with the map made of ``parts``
    (:func:`tipping_part`, in order) where it made one: where its primary multiple
    imputation has an estimate and the map was not listed as not shown."""
    made = any(r["analysis"] == LABELS["mi"] and np.isfinite(r["estimate"])
               for r in res.estimates)
    listed = any(x["item"] == MAP_ITEM
                 for x in res.not_shown)
    if made and not listed and all(x is not None for x in parts):
        _add_tipping(res, parts)
    return res


def _check_statuses(sub: pd.DataFrame) -> None:
    if sub["rtw_y"].notna().groupby(sub["od"]).sum().reindex([0, 1]).fillna(0).min() == 0 \
            or sub["od"].nunique() < 2:
        raise ValueError("an arm has no one with a status recorded")


def _words_n(n: int, cfg) -> str:
    r = disclosure.round_count(n, cfg)
    if r is None and n:
        return "Fewer than " + str(cfg["suppress_max"] + 1)
    # "About" whenever counts are rounded, not only when rounding moved this one: its
    # absence would say the count is exactly the number shown
    return f"About {r}" if int(cfg.get("round_to") or 1) > 1 and n else str(r)


def _complete_case(res, pop, plan, op, p, clusters, estimand, notes):
    _check_statuses(pop)   # an arm without anyone whose status is known: not estimated, as for MI
    cc = pop[pop["rtw_y"].notna()]
    frame, cols, cov_notes = _design_frame(cc, plan, clusters)
    method = plan.method(op.name)
    effs = _analyse_completed(frame, cc["rtw_y"].astype(int), plan, op, p, cols, method)
    for e in effs:
        res.estimates.append(row(
            LABELS["cc"], op.name, e.measure, estimand.replace(
                f"Marginal {op.measure}", f"Marginal {e.measure}"), e.estimate, e.lower,
            e.upper, e.p, e.se, e.method, e.n, e.events, e.n_clusters,
            [*notes, "People without a status in the window left out (complete cases).",
             *e.notes, *cov_notes], e.df))


def _rd_only(frame, y, plan, op, p, cols, method, start=None, model=None):
    """The risk difference alone of one completed dataset, as :func:`_analyse_completed`
    finds it (the cluster-level analysis on the difference scale only: half the work)."""
    if method in ("cluster-level", "permutation"):
        from pipeline.stats import cluster_level

        col = op.outcome.column("outcome")
        res = cluster_level(with_columns(frame, **{col: y.to_numpy()}), "binary", cluster="cluster_id",
                            arm="od", strata=plan.design.strata, covariates=cols,
                            scale="difference", conf_level=plan.conf_level, outcome=col)
        r = res.summary.iloc[0]
        return [Effect("risk difference", float(r["estimate"]), float(r["lower"]),
                       float(r["upper"]), float(r["p"]), float(r["se"]), float(r["df"]), "",
                       res.n, None, res.n_clusters)]
    return _analyse_completed(frame, y, plan, op, p, cols, method, start=start,
                              model=model)[:1]


def tipping(imp: BinaryImputation, ctx, plan, op, p, deltas, part: int | None = None
            ) -> pd.DataFrame:
    """The pooled risk difference for each (delta_OD, delta_UC): the imputed log-odds
    shifted by delta in each arm. ``significant``: the interval excludes 0. ``part``: the
    cells of that part alone (:func:`tipping_cells`); None: every part, in order. Each
    part's first cell starts as the primary analysis does, and each later cell from the
    fits of the one before."""
    frame, cols, method, model = ctx
    grid = [(d_od, d_uc) for d_od in deltas for d_uc in deltas]
    rows = []
    for k in range(TIPPING_PARTS) if part is None else [part]:
        starts: dict = {}   # imputation j's fit at the last cell: the next cell's start
        for cell in tipping_cells(len(deltas), k):
            d_od, d_uc = grid[cell]
            shift = {"1": float(d_od), "0": float(d_uc)}
            fits = _fits(frame, imp, plan, op, p, cols, method, shift, starts, fn=_rd_only,
                         model=model)
            pl, _, _ = _pool(fits, plan.conf_level)["risk difference"]
            rows.append(dict(delta_od=float(d_od), delta_uc=float(d_uc),
                             estimate=pl.estimate, lower=pl.lower, upper=pl.upper, p=pl.p,
                             significant=bool(pl.lower > 0 or pl.upper < 0)))
    return pd.DataFrame(rows, columns=["delta_od", "delta_uc", "estimate", "lower", "upper",
                                       "p", "significant"])


def imputed_as_tested(effects: AnalysisResult, rtw_res: AnalysisResult,
                      plan: AnalysisPlan) -> bool:
    """Make the return-to-work rows of the secondary family (``analysis`` ``secondary``,
    the ones the multiplicity procedure tests and the summary and section 4.4 report) those
    of the declared strategy: the multiple imputation with deaths before the window as the
    plan says (``LABELS["mi"]``, copied; its own rows stay where they are), in place of the
    plan's analysis of the statuses recorded (which left the missing statuses and the
    deaths out: neither the composite estimand nor the imputation). False, with the rows as
    they were, when this run has no imputation rows (the family did not run or the
    warehouse predates the window columns)."""
    op = _op(plan)
    mi = [] if op is None else [r for r in rtw_res.estimates
                                if r["analysis"] == LABELS["mi"] and r["outcome"] == op.name]
    if not mi:
        return False
    rows, placed = [], False
    for r in effects.estimates:
        if r["analysis"] == "secondary" and r["outcome"] == op.name:
            if not placed:
                rows += [dict(x, analysis="secondary") for x in mi]
                placed = True
            continue
        rows.append(r)
    if not placed:
        rows += [dict(x, analysis="secondary") for x in mi]
    effects.estimates[:] = rows
    return True


def time_to_return(d: pd.DataFrame, plan: AnalysisPlan, op: OutcomePlan, s: dict,
                   work: tuple[str, ...] = WORK) -> list[dict]:
    """Cumulative incidence of the first return (death competing) among people not in work
    at baseline: the difference between arms at each of ``cif_times``, with the design's
    variance: with clusters (or sites), the delete-one-group jackknife of the difference
    that :func:`pipeline.analyses.sensitivity.jackknife_unit` picks for a cumulative
    incidence (the site's, as for the RMST: 94.0-94.9 % coverage in simulation, where each
    arm's infinitesimal-jackknife error, people independent, covered 59.5-75.5 %), t on G -
    1 df; without, each arm's infinitesimal-jackknife error and a normal interval."""
    from scipy import stats as st

    from pipeline.analyses.sensitivity import jackknife_unit
    from pipeline.stats.competing import aalen_johansen, cif_difference_jackknife

    label = LABELS["time"]
    unit, why = jackknife_unit(d, plan, op, "cif")
    used = [c for c in dict.fromkeys(("arm", "od", "rtw_time", "rtw_event", unit))
            if c is not None and c in d]   # their rows alone
    nw = d.loc[(_status_group(d["baseline_activity"], work) == "not_working").to_numpy(), used]
    out = []
    est = ("Difference in the cumulative incidence of a first status in work or education "
           "by day {t} (death a competing event), " + plan.contrast +
           ", people not in work or education at baseline.")
    arms = [plan.comparison_arm, plan.reference_arm]
    have = [a for a in arms if (nw["arm"].astype(str) == a).any()]

    def none_for(reason):
        return [not_estimated(label, op.name, f"cumulative incidence difference at {t} days",
                              est.format(t=t), reason, n=len(nw)) for t in s["cif_times"]]

    if len(have) < 2 or "rtw_time" not in nw:
        return none_for("an arm has no one not in work at baseline")
    f = with_columns(nw, grp=nw["arm"].astype(str), t=nw["rtw_time"].astype(float),
                     e=nw["rtw_event"].astype(int))
    aj = aalen_johansen(f, "t", "e", cause=1, group="grp", conf_level=plan.conf_level)
    at = aj.at(s["cif_times"])
    if unit is None:
        z = st.norm.ppf(1 - (1 - plan.conf_level) / 2)
        dist, q, df = st.norm, z, np.nan
        g = None
        method = ("Aalen-Johansen, death competing; infinitesimal-jackknife standard errors, "
                  "normal interval (people independent)")
    else:
        try:
            v, _, g = cif_difference_jackknife(f, "t", "e", 1, s["cif_times"], "od", unit)
        except _NOT_ESTIMABLE as exc:
            return none_for(str(exc))
        df = float(g - 1)
        dist, q = st.t(df), float(st.t.ppf(1 - (1 - plan.conf_level) / 2, df))
        what = "cluster" if unit == "cluster_id" else "site"
        method = (f"Aalen-Johansen, death competing; delete-one-{what} jackknife of the "
                  f"difference ({g} {what}s), t on {g - 1} df")
    for k, t in enumerate(s["cif_times"]):
        a = at[(at["time"] == t) & (at["cause"] == 1)].set_index("group")
        c1, c0 = a.loc[arms[0], "cif"], a.loc[arms[1], "cif"]
        se = (float(np.hypot(a.loc[arms[0], "se"], a.loc[arms[1], "se"])) if unit is None
              else float(np.sqrt(v[k, k])))
        diff = c1 - c0
        pv = float(2 * dist.sf(abs(diff / se))) if se > 0 else np.nan
        out.append(row(label, op.name, f"cumulative incidence difference at {t} days",
                       est.format(t=t), diff, diff - q * se, diff + q * se, pv, se,
                       method, len(nw), None, g if unit == "cluster_id" else None,
                       [f"Cumulative incidence {c1:.3f} (comparison) and {c0:.3f} "
                        "(reference).", f"Variance unit: {why}."], df))
    return out


def _population_counts(d, pop, plan, s) -> pd.DataFrame:
    """People per arm: in the trial, records not reaching the window, died before it,
    status recorded, status missing (imputed)."""
    rows = []
    for a in (plan.comparison_arm, plan.reference_arm):
        da = d[d["arm"].astype(str) == a]
        reached = da["window_reached"].fillna(False).astype(bool)
        died = da["died_before_window"].fillna(False).astype(bool) & reached
        pa = pop[pop["arm"].astype(str) == a]
        observed = int((pa["rtw_y"].notna() & ~pa["died_before_window"].fillna(False)
                        .astype(bool)).sum())
        rows.append(dict(arm=a, people=len(da), not_reaching_window=int((~reached).sum()),
                         died_before_window=int(died.sum()), status_recorded=observed,
                         status_missing=int(pa["rtw_missing"].sum())))
    return pd.DataFrame(rows)


def _protect_counts(t: pd.DataFrame, cfg) -> pd.DataFrame:
    out = t.copy()
    for c in out.columns[1:]:
        out[c] = [disclosure.round_count(v, cfg) for v in t[c]]
    return out
