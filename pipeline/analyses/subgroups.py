"""Pre-specified subgroups: does the effect on the primary outcome differ between them?

For each subgroup variable of the plan, one model of the primary outcome (time to event:
the site-stratified Cox model of the primary analysis) with arm, the subgroup's levels and
their interaction with arm, and the plan's variance. Reported: the interaction test (q =
levels - 1 interaction terms; Wald statistic W) and the hazard ratio within each level from
the same model (for a forest plot). With a model-based or sandwich variance the test is
chi-square on q df. With the few-cluster corrections the variance has only eta degrees of
freedom (eta = G - 1 for the site jackknife, the plan's df otherwise), and W/q on F(q, eta),
the obvious analogue of the t test, is far too liberal when q > 1: on the demo's shape
(7 sites, eta = 6) its type I error was 9.2 %, 20.5 %, 31.5 % and 46.3 % for q = 2..5
(336-400 null trials per cell). The test used is Hotelling's T^2: F = W (eta - q + 1) /
(eta q) on (q, eta - q + 1) df, which treats the estimated covariance as Wishart with eta df
(6.5 %, 4.6 %, 8.3 %, 8.3 % on the same trials; tests/unit/test_subgroup_size_slow.py). It
is made only when q <= eta / 2: with more levels than that the covariance of the
interactions is too poorly estimated for any test, and the row says so (pool levels or
pre-specify fewer). The row's estimate is the ratio of the two levels' hazard ratios when
q = 1, and empty otherwise (no single number summarises several interactions). The
interaction test is the inference; the per-level ratios are description (Wang et al.,
NEJM 2007;357:2189-94; Rothwell, Lancet 2005;365:176-86): a difference between two
levels' intervals is not evidence of a difference in effect.

Levels in which an arm has at most ``disclosure.suppress_max`` events are pooled into one
level ("other (small groups)") before the model: their ratios would be unstable, and their
event counts are not published. With fewer than two levels left, no test is made.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from pipeline.analyses import AnalysisResult, with_columns
from pipeline.analyses.covariates import MISSING, _safe
from pipeline.analyses.trial_effects import _cox, row as _row
from pipeline.plan import AnalysisPlan

POOLED = "other (small groups)"


def interaction_test(b: np.ndarray, V: np.ndarray, eta: float | None, conf_level: float
                     ) -> tuple[float, str, float, float, float, float]:
    """Wald test that the q coefficients ``b`` (covariance ``V``) are all zero.

    ``eta`` None: chi-square on q df (model-based or sandwich variance). ``eta`` the df of
    a few-cluster variance: Hotelling's T^2, F = W (eta - q + 1) / (eta q) on
    (q, eta - q + 1) df, made only when q <= eta / 2 (p NaN otherwise). Returns W, the test
    in words, its two df (df2 NaN for chi-square), p, and the critical value for the
    per-level intervals (t on eta df, or normal).

    W is NaN, and no test is made, when ``V`` is singular (numerical rank below q): a
    jackknife over G sites has rank at most G - 1, so with as many interaction terms as
    sites ``b' V^-1 b`` is rounding noise (seen: -1.6e15 on a 6-site study) or raises."""
    q = len(b)
    crit = float(stats.norm.ppf(1 - (1 - conf_level) / 2) if eta is None
                 else stats.t.ppf(1 - (1 - conf_level) / 2, int(eta)))
    if not (np.all(np.isfinite(V)) and np.all(np.isfinite(b))):
        return np.nan, f"no test ({q} terms, variance not finite)", float(q), np.nan, np.nan, crit
    rank = int(np.linalg.matrix_rank(V))
    if rank < q:
        return (np.nan, f"no test ({q} terms, variance of rank {rank})", float(q), np.nan,
                np.nan, crit)
    w = float(b @ np.linalg.solve(V, b))
    if eta is None:
        return (w, f"Wald chi-square on {q} df", float(q), np.nan, float(stats.chi2.sf(w, q)),
                crit)
    eta = int(eta)
    if q == 1:   # T^2 on (1, eta) is the t test squared
        return w, f"Wald F(1, {eta})", 1.0, float(eta), float(stats.f.sf(w, 1, eta)), crit
    if 2 * q > eta:
        return w, f"no test ({q} terms, {eta} df)", float(q), np.nan, np.nan, crit
    d2 = eta - q + 1
    f = w * d2 / (eta * q)
    return (w, f"Hotelling T^2, F({q}, {d2})", float(q), float(d2),
            float(stats.f.sf(f, q, d2)), crit)


def subgroup_effects(d: pd.DataFrame, plan: AnalysisPlan, p: dict[str, Any],
                     cfg: dict[str, Any], keep_results: bool = True,
                     only: tuple[str, ...] | None = None) -> AnalysisResult:
    """Interaction tests and per-level effects of the primary outcome for every subgroup
    of the plan (time-to-event primary outcomes; others are noted as not analysed).
    ``keep_results``: keep each subgroup's fitted model in ``results`` (False: each is freed
    before the next subgroup's is fitted, not held to the end; at national size each holds
    about 0.1 GB of sorted rows). ``only``: these of the plan's subgroups alone (a part of
    :func:`parts`; :func:`combine` puts the parts together as one call makes them)."""
    res = AnalysisResult("subgroups")
    op = plan.primary
    if not plan.subgroups:
        return res
    if op.kind != "time_to_event":
        res.notes.append(f"Subgroup analyses are made for a time-to-event primary outcome; "
                         f"{op.name} is {op.kind}.")
        return res
    o = op.outcome
    ev = (d[o.column("event")] == 1).astype(int)
    rows, tests = [], []
    for var in plan.subgroups if only is None else only:
        g = d[var].astype(object).where(d[var].notna(), MISSING).astype(str)
        ev_arm = pd.crosstab(g, d["od"], values=ev, aggfunc="sum").fillna(0)
        small = [lv for lv in ev_arm.index
                 if ev_arm.shape[1] < 2 or (ev_arm.loc[lv] <= cfg["suppress_max"]).any()]
        g = g.where(~g.isin(small), POOLED)
        levels = list(g.value_counts().index)   # most common first: the reference
        estimand = (f"Ratio of the {op.measure}s of {o.what} between levels of {var} "
                    f"(arm x {var} interaction), {plan.contrast}")
        if len(levels) < 2:
            res.estimates.append(_row("subgroup", o.name, f"interaction with {var}", estimand,
                                      np.nan, np.nan, np.nan, method="not estimated",
                                      notes=[f"Not estimated: fewer than two levels of {var} "
                                             "with enough events in both arms."]))
            continue
        ref = levels[0]
        dd = with_columns(d, __ev=ev)
        lv_cols, int_cols = [], []
        for lv in levels[1:]:
            c = f"sg__{_safe(lv)}"
            dd[c] = (g == lv).astype(float)
            dd[f"{c}__x"] = dd[c] * dd["od"]
            lv_cols.append(c)
            int_cols.append(f"{c}__x")
        method, notes = plan.method(o.name), []
        if method in ("cluster-level", "permutation"):  # no interactions in a two-stage test
            method = "jackknife-site" if plan.design.strata else "model"
            notes.append(f"The primary method ({plan.method(o.name)}) has no interaction "
                         f"model: the {method} variance instead.")
        try:
            eff = _cox(dd, o.column("time"), "__ev", [*lv_cols, *int_cols], method, p, plan)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            res.estimates.append(_row("subgroup", o.name, f"interaction with {var}", estimand,
                                      np.nan, np.nan, np.nan, method="not estimated",
                                      notes=[f"Not estimated: {exc}"]))
            continue
        fit, corrected = eff.result, np.isfinite(eff.df)
        notes += eff.notes[len(fit.notes):]
        names = list(fit.summary.index)
        b = fit.summary["coef"].to_numpy()
        V = np.asarray(fit.vcov)
        ii = [names.index(c) for c in int_cols]
        q = len(ii)
        w, test, df1, df2, pval, crit = interaction_test(b[ii], V[np.ix_(ii, ii)],
                                                         eff.df if corrected else None,
                                                         plan.conf_level)
        if not np.isfinite(pval):
            notes.append(f"No interaction test: {q} interaction terms with a variance on "
                         f"{int(eff.df)} df (a test needs at most {int(eff.df) // 2}); pool "
                         "levels or pre-specify fewer." if corrected and np.isfinite(w) else
                         f"No interaction test: the variance of the {q} interaction terms "
                         "is singular or not finite (as many terms as sites, or more, or a "
                         "level without events); pool levels or pre-specify fewer.")
        tests.append(dict(subgroup=var, test=test, statistic=w, df1=df1, df2=df2, p=pval))
        if keep_results:
            res.results[f"subgroup_{var}"] = fit
        ev_lv = pd.crosstab(g, d["od"], values=ev, aggfunc="sum").fillna(0)
        shown = {lv: bool(ev_lv.shape[1] == 2 and (ev_lv.loc[lv] > cfg["suppress_max"]).all())
                 for lv in levels}
        ratio = lo = hi = np.nan
        if q == 1 and all(shown.values()):
            # the ratio of the two levels' hazard ratios, with its interval (not when a
            # level's own ratio is hidden: this ratio and the other level's would give it)
            se1 = float(np.sqrt(V[ii[0], ii[0]]))
            ratio, lo, hi = (float(np.exp(b[ii[0]] + k * crit * se1)) for k in (0, -1, 1))
        res.estimates.append(_row(
            "subgroup", o.name, f"interaction with {var}", estimand, ratio, lo, hi, pval,
            method=f"{eff.method.replace('Cox,', f'Cox with arm x {var},', 1).replace(', adjusted;', ';')}; {test}",
            n=fit.n, events=fit.n_events, n_clusters=fit.n_clusters,
            notes=[*notes, *([f"Pooled into '{POOLED}' (an arm with at most "
                              f"{cfg['suppress_max']} events): {', '.join(small)}."]
                             if small else [])],
            df=float(q)))
        iod = names.index("od")
        for lv in levels:
            if lv == ref:
                est, var_ = b[iod], V[iod, iod]
            else:
                j = names.index(f"sg__{_safe(lv)}__x")
                est, var_ = b[iod] + b[j], V[iod, iod] + V[j, j] + 2 * V[iod, j]
            se = float(np.sqrt(var_))
            rows.append(dict(subgroup=var, level=lv, reference=lv == ref,
                             hr=float(np.exp(est)), lower=float(np.exp(est - crit * se)),
                             upper=float(np.exp(est + crit * se)), log_hr=float(est), se=se,
                             interaction_p=pval, test=test, shown=shown[lv]))
        del dd, eff, fit   # (freed before the next subgroup's model is built)
    _set_tables(res, rows, tests)
    return res


_LEVEL_COLUMNS = ["subgroup", "level", "reference", "hr", "lower", "upper", "log_hr", "se",
                  "interaction_p", "test", "shown"]
_TEST_COLUMNS = ["subgroup", "test", "statistic", "df1", "df2", "p"]


def _set_tables(res: AnalysisResult, rows: list[dict], tests: list[dict]) -> None:
    table = pd.DataFrame(rows, columns=_LEVEL_COLUMNS)
    res.tables["subgroups"] = table
    res.tables["subgroup_tests"] = pd.DataFrame(tests, columns=_TEST_COLUMNS)
    # public: ratios of levels whose arms all have more than suppress_max events (a pooled
    # level too can have few; its members are named in the notes, its counts never shown)
    pub = table.drop(columns=["log_hr", "se"])
    pub.loc[~pub["shown"], ["hr", "lower", "upper"]] = np.nan
    res.public["subgroups"] = pub.assign(suppressed=~pub["shown"]).drop(columns="shown")


def parts(plan: AnalysisPlan) -> list[tuple[str, ...] | None]:
    """How :func:`subgroup_effects` can be computed in independent parts (its ``only``),
    so that the analyse stage's two processes can share them: one subgroup each where
    the plan's primary outcome is analysed by subgroup; else one part, the whole."""
    if plan.subgroups and plan.primary.kind == "time_to_event":
        return [(var,) for var in plan.subgroups]
    return [None]


def combine(results: list[AnalysisResult]) -> AnalysisResult:
    """The results of :func:`parts`' calls (in its order) as one call of
    :func:`subgroup_effects` makes them: the same rows, tables and fitted models."""
    if len(results) == 1:
        return results[0]
    res = AnalysisResult("subgroups")
    rows, tests = [], []
    for r in results:
        res.estimates += r.estimates
        res.results.update(r.results)
        res.notes += r.notes
        rows += r.tables["subgroups"].to_dict("records")
        tests += r.tables["subgroup_tests"].to_dict("records")
    _set_tables(res, rows, tests)
    return res
