"""The report's section for an observational design: the propensity-score weighted
comparison, its diagnostics and E-values, drawn only from the public results tables that
the analyse stage wrote (``results.analysis_weighting_*_public`` and the
``observational_*`` rows of ``analysis_estimates_public``)."""

from __future__ import annotations

import html as htmllib
import math
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import disclosure, report_words

_ARM = {"treated": "Open Dialogue", "control": "Usual care"}


def _have(con) -> set[str]:
    return {r[0] for r in con.execute("select table_name from information_schema.tables "
                                      "where table_schema = 'results'").fetchall()}


def is_observational(con) -> bool:
    """Whether the analyse stage ran the weighting family (an observational design): its
    flags table is written even when the propensity model could not be fitted."""
    return "analysis_weighting_flags_public" in _have(con)


def figures(con, folder: Path, save_figure, cfg: dict) -> dict[str, dict]:
    """Love plot and score overlap figure (empty without an observational analysis)."""
    from pipeline.stats import plot_love, plot_ps_overlap

    have = _have(con)
    out: dict[str, dict] = {}
    if "analysis_weighting_balance_public" in have:
        b = con.execute("select * from results.analysis_weighting_balance_public").df()
        b = b.assign(smd_before=pd.to_numeric(b["smd_before"]),
                     smd_after=pd.to_numeric(b["smd_after"]),
                     term=b["term"].map(term_label))
        fig = plot_love(b, labels=("Unweighted (from rounded counts)", "Weighted"),
                        title="Covariate balance before and after weighting")
        out["weighting_love"] = save_figure(fig, folder, "weighting_love")
    if "analysis_weighting_histogram_public" in have:
        h = con.execute("select * from results.analysis_weighting_histogram_public "
                        "order by arm desc, bin_lower").df()
        fig = plot_ps_overlap(h, labels=("Open Dialogue", "Usual care"),
                              title="Overlap of the propensity scores",
                              note="Bars from cumulative counts rounded to multiples of "
                                   f"{disclosure.curve_step(cfg)}: no bar shows "
                                   "a small number of people.")
        out["weighting_overlap"] = save_figure(fig, folder, "weighting_overlap")
    return out


def term_label(term: str) -> str:
    """A covariate term as a reader names it: "Diagnosis group: bipolar" for
    ``diagnosis_group: bipolar``, "Age at referral" for ``age_at_index``."""
    var, sep, level = str(term).partition(": ")
    name = report_words.label(var)
    name = name[:1].upper() + name[1:]
    return f"{name}: {report_words.label(level)}" if sep else name


def _esc(v) -> str:
    return htmllib.escape(str(v))


def _num(v, digits=2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)) or v is pd.NA:
        return disclosure.SUPPRESSED
    return f"{float(v):.{digits}f}"


def _ci(e) -> str:
    if e["method"] == "not estimated":
        return "not estimated: " + str(e["notes"] or "").removeprefix("Not estimated: ")
    if e["estimate"] is None or pd.isna(e["estimate"]):
        return disclosure.SUPPRESSED
    pct = "difference" in e["measure"]
    k, d = (100, 1) if pct else (1, 2)
    unit = " points" if pct else ""
    return (f"{k * e['estimate']:.{d}f}{unit} ({k * e['lower']:.{d}f} to "
            f"{k * e['upper']:.{d}f})")


def outcomes_note(con) -> str:
    """A line atop the report's outcome sections for an observational design: their
    estimate boxes are the weighted comparison; the per-arm tables, curves and tests
    describe the arms as they are."""
    if not is_observational(con):
        return ""
    return ("<p class='muted'>Observational design: the estimate in each box below is the "
            "weighted (adjusted) comparison of the section above, with the unadjusted "
            "estimate and the outcome regression beside it. The per-arm tables, curves, "
            "tests and subgroup and site comparisons describe the arms as they are, not "
            "adjusted for the differences between the people they serve.</p>")


def section(con, figs: dict, figure_html) -> str:
    """HTML of the section, right after the plan (it is the primary analysis of an
    observational design); empty without the analysis."""
    from pipeline.report import _count_td as _count, _table

    if not is_observational(con):
        return ""
    have = _have(con)
    est = con.execute("select * from results.analysis_estimates_public where analysis in "
                      "('primary', 'secondary', 'observational_weighted', "
                      "'observational_unadjusted')").df()
    est["weighted"] = est["analysis"] != "observational_unadjusted"
    flags = con.execute("select * from results.analysis_weighting_flags_public").df()["flag"].tolist()
    method = est[est["analysis"] == "primary"]["method"]
    P = ["<h2 id='observational'>Adjusted comparison: the primary analysis of this "
         "observational design</h2>"]
    P.append("<div class='box'><p><strong>Not a randomised comparison.</strong> People were "
             "not allocated to Open Dialogue at random, so the arms differ in who they serve. "
             "The estimates below weight each person by the inverse of their estimated chance "
             "of being in the arm they were in, given the measured characteristics "
             "(propensity score), so that the weighted arms resemble each other on those "
             "characteristics. They estimate the effect of Open Dialogue only if (1) no "
             "unmeasured characteristic influences both the arm a person was in and their "
             "outcome, (2) every kind of person could have been in either arm, and (3) the "
             "propensity model is right. None of these can be checked from the data alone; "
             "the diagnostics check what can be checked, and the E-values say how strong an "
             "unmeasured confounder would have to be to explain an estimate away.</p></div>")
    if len(method):
        P.append(f"<p class='muted'>Method: {report_words.words(method.iloc[0])}.</p>")
    if "analysis_weighting_balance_public" not in have:   # the model could not be fitted
        P.append("<div class='box'><p><strong>No weighted comparison:</strong></p><ul>"
                 + "".join(f"<li>{_esc(f)}</li>" for f in flags) + "</ul></div>")
        return "\n".join(P)
    w = con.execute("select * from results.analysis_weighting_weights_public").df()
    ev = con.execute("select * from results.analysis_weighting_evalues_public").df()
    bal = con.execute("select * from results.analysis_weighting_balance_public").df()
    # diagnostics
    P.append("<h3>Balance and overlap</h3>")
    n_bad = int((bal["smd_after"].abs() > 0.1).sum())
    P.append(f"<p>Standardised mean differences of {len(bal)} covariate terms: before "
             f"weighting the largest is {_num(bal['smd_before'].abs().max())}, after weighting "
             f"{_num(bal['smd_after'].abs().max())}; {n_bad} term(s) exceed 0.1 after "
             "weighting.</p>")
    P.append(figure_html(figs.get("weighting_love"), "Love plot",
                         "Standardised mean difference of each covariate (each level of a "
                         "categorical one) between Open Dialogue and usual care, before "
                         "(open circles; from the rounded counts, means and SDs published in "
                         "the tables) and after weighting (filled; two decimals). The shaded "
                         "band is |SMD| &lt; 0.1, the usual threshold of balance."))
    P.append(figure_html(figs.get("weighting_overlap"), "Propensity score overlap",
                         "Propensity scores by arm (share of each arm per bin of width 0.05; "
                         "Open Dialogue above, usual care below). Where one arm has people and "
                         "the other none, the comparison rests on extrapolation."))
    rows = []
    for _, r in w.iterrows():
        rows.append("<tr>" + "".join([
            f"<td>{_esc(_ARM.get(r['arm'], r['arm']))}</td>",
            _count(r["n"]), _count(r["ess"]),
            f"<td class='num'>{_num(r['share_top_weights'], 1)}</td>",
            f"<td class='num'>{_num(r['share_top_1pct'], 1)}</td>"]) + "</tr>")
    top = int(w["top_weights"].iloc[0]) if len(w) else 10
    P.append(_table("Weights per arm",
                    ["Arm", "People", "Effective sample size",
                     f"% of the arm's weight on its {top} largest weights",
                     "% on its largest 1%"], rows))
    P.append("<p class='muted'>Effective sample size: (sum of weights)<sup>2</sup> / sum of "
             "squared weights (Kish), rounded like a count; [c] in the last column: the "
             "largest 1% of the arm is too few people to show. Individual weights are not "
             "published; a few large weights carrying a large share of an arm would make its "
             "estimates rest on a few people.</p>")
    if flags:
        P.append("<div class='box'><p><strong>Diagnostics flagged:</strong></p><ul>"
                 + "".join(f"<li>{_esc(f)}</li>" for f in flags) + "</ul></div>")
    else:
        P.append("<p>No diagnostic flagged: every covariate term within 0.1 after weighting, "
                 "every variance ratio within 0.5 to 2, no score outside the other arm's "
                 "range or below 0.05 or above 0.95, effective sample sizes above half of "
                 "each arm.</p>")
    # estimates
    P.append("<h3>Weighted estimates, with the unadjusted ones beside them</h3>")
    rows, weighted = [], {}
    for (outcome, measure), g in est.groupby(["outcome", "measure"], sort=False):
        wr = g[g["weighted"]]
        ur = g[~g["weighted"]]
        if wr.empty:
            continue
        weighted[(outcome, measure)] = wr.iloc[0]
        rows.append("<tr>" + "".join([
            f"<td>{_esc(outcome.replace('_', ' '))}</td>", f"<td>{_esc(measure)}</td>",
            f"<td class='num'><strong>{_esc(_ci(wr.iloc[0]))}</strong></td>",
            f"<td class='num'>{_esc(_ci(ur.iloc[0])) if len(ur) else ''}</td>"]) + "</tr>")
    P.append(_table("Open Dialogue vs usual care: weighted (primary) and unadjusted estimates "
                    "with 95% confidence intervals",
                    ["Outcome", "Measure", "Weighted (adjusted for measured covariates)",
                     "Unadjusted (confounded)"], rows))
    P.append("<p class='muted'>Intervals of the weighted estimates include the uncertainty "
             "of the estimated propensity model (stacked estimating equations). Risk "
             "differences are in percentage points. The unadjusted column uses the same "
             "estimator with every weight 1: the difference between the columns is what the "
             "measured confounders did.</p>")
    # E-values
    if len(ev):
        P.append("<h3>Sensitivity to unmeasured confounding (E-values)</h3>")
        rows = []
        for _, r in ev.iterrows():
            rows.append("<tr>" + "".join([
                f"<td>{_esc(str(r['outcome']).replace('_', ' '))}</td>",
                f"<td>{_esc(r['measure'])}</td>",
                # the weighted row as the table above shows it (the E-value table's own
                # copy is rounded to significant digits: rounding it again could differ)
                f"<td class='num'>{_esc(_ci(weighted[(r['outcome'], r['measure'])]))}</td>"
                if (r["outcome"], r["measure"]) in weighted else
                f"<td class='num'>{_num(r['estimate'])} ({_num(r['lower'])} to "
                f"{_num(r['upper'])})</td>",
                f"<td class='num'>{_num(r['evalue_estimate'])}</td>",
                f"<td class='num'>{_num(r['evalue_ci'])}</td>"]) + "</tr>")
        P.append(_table("E-values of the weighted ratios",
                        ["Outcome", "Measure", "Weighted estimate (95% CI)",
                         "E-value of the estimate", "E-value of the CI limit nearer 1"], rows))
        P.append("<p class='muted'>An E-value is the minimum strength of association, on the "
                 "risk ratio scale, that an unmeasured confounder would need with both the arm "
                 "and the outcome, beyond the measured covariates, to explain the estimate (or "
                 "move its confidence interval to include no difference) away (VanderWeele and "
                 "Ding 2017). Hazard ratios of a common outcome are converted to the risk "
                 "ratio scale first. An E-value of 1 for the interval means the interval "
                 "already includes no difference.</p>")
    return "\n".join(P)
