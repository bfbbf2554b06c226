"""The report's section on estimands, missing data and sensitivity analyses, from the
disclosure-controlled results of :mod:`pipeline.analyses.sensitivity`
(``analysis_estimands_public``, ``analysis_missing_data_public``,
``analysis_sensitivity_ph_periods_<outcome>_public``, ``analysis_estimates_public``).

Three parts: each outcome's estimand in one sentence; per outcome and arm, who is analysed
and who is missing or cut short and why (rounded counts, shares from the rounded counts,
the differential flag); per time-to-event outcome, the sensitivity table (the primary
estimate beside each sensitivity estimate with its interval and a one-line reading of
whether the conclusion holds) and the hazard ratio per period of follow-up as a figure.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import disclosure
from pipeline.analyses.observational import UNADJUSTED
from pipeline.analyses.sensitivity import LABELS, REASONS
from pipeline.report import _arm_label, _count_td
from pipeline.report_words import p_text, p_value

OUTCOME_WORDS = {"relapse": "Relapse", "involuntary_admission": "Involuntary admission",
                 "antipsychotic_any": "Any antipsychotic use",
                 "antipsychotic_last_days": "Antipsychotic use at the end",
                 "return_to_work": "Work or education at 2 years"}


def _tables(con) -> set[str]:
    return {r[0] for r in con.execute("select table_name from information_schema.tables "
                                       "where table_schema = 'results'").fetchall()}


# --------------------------------------------------------------------------- figure

def periods_figure(tab: pd.DataFrame, overall: pd.Series | None, what: str):
    """Hazard ratio per period of follow-up with its interval (log scale), the whole-period
    (primary) estimate as a dashed line: a slope or a crossing of 1 is what a departure
    from proportional hazards looks like."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = tab[tab["hr"].notna()].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    y = np.arange(len(t))[::-1]
    ax.errorbar(t["hr"], y, xerr=[t["hr"] - t["lower"], t["upper"] - t["hr"]], fmt="s",
                color="#005eb8", ecolor="#005eb8", capsize=3)
    ax.axvline(1.0, color="black", lw=0.8)
    if overall is not None and np.isfinite(overall.estimate):
        ax.axvline(overall.estimate, color="#d5281b", ls="--", lw=1,
                   label=f"whole follow-up (primary): {overall.estimate:.2f}")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), fontsize=8, frameon=False)
    ax.set_xscale("log")
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullLocator

    lo = float(np.nanmin(np.r_[t["lower"], 1.0]))
    hi = float(np.nanmax(np.r_[t["upper"], 1.0]))
    ticks = [v for v in (0.1, 0.2, 0.25, 0.33, 0.5, 0.67, 1, 1.5, 2, 3, 4, 5, 10)
             if lo / 1.05 <= v <= hi * 1.05]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.set_yticks(y)
    ax.set_yticklabels(t["period"])
    ax.set_ylim(-0.6, len(t) - 0.4)
    ax.set_xlabel(f"Hazard ratio of {what}, Open Dialogue vs usual care (log scale)")
    ax.set_title("Hazard ratio per period of follow-up (95% CI)", fontsize=9)
    fig.tight_layout()
    return fig


def figures(con, folder: Path, save_figure) -> dict[str, dict]:
    out = {}
    have = _tables(con)
    for name in sorted(have):
        if not (name.startswith("analysis_sensitivity_ph_periods_") and name.endswith("_public")):
            continue
        outcome = name.removeprefix("analysis_sensitivity_ph_periods_").removesuffix("_public")
        tab = con.execute(f"select * from results.{name} order by start").df()
        if tab["hr"].notna().sum() < 2:
            continue
        prim = con.execute("select * from results.analysis_estimates_public where analysis = "
                           "'primary' and outcome = ? and measure = 'hazard ratio'",
                           [outcome]).df()
        fig = periods_figure(tab, prim.iloc[0] if len(prim) else None,
                             OUTCOME_WORDS.get(outcome, outcome).lower())
        out[f"ph_periods_{outcome}"] = save_figure(fig, folder, f"ph_periods_{outcome}")
    return out


# --------------------------------------------------------------------------- readings

def _ci(est, lo, hi, digits=2) -> str:
    if est is None or pd.isna(est):
        return "not estimated"
    return f"{est:.{digits}f} ({lo:.{digits}f} to {hi:.{digits}f})"


def _verdict(r, ratio: bool) -> tuple[int, bool] | None:
    """(direction: +1 favours Open Dialogue, -1 usual care, 0 none; interval excludes no
    effect) of one estimate row."""
    if r is None or pd.isna(r.estimate):
        return None
    null = 1.0 if ratio else 0.0
    sig = bool(r.lower > null or r.upper < null)
    # a ratio of relapse below 1 and more days free of relapse both favour Open Dialogue
    better = (r.estimate < null) if ratio else (r.estimate > null)
    return (1 if better else -1) if r.estimate != null else 0, sig


def reading(primary, r, ratio: bool) -> str:
    """One line: does the conclusion of the primary estimate hold under this analysis?"""
    p, s = _verdict(primary, True), _verdict(r, ratio)
    if s is None:
        return "not estimated"
    if p is None:
        return "no primary estimate to compare"
    (pd_, psig), (sd_, ssig) = p, s
    side = "Open Dialogue" if sd_ > 0 else "usual care"
    if psig and ssig and pd_ == sd_:
        return f"holds: same direction, interval also excludes no difference (favours {side})"
    if not psig and not ssig:
        return ("holds: interval includes no difference, as the primary's" +
                ("" if pd_ == sd_ else "; point estimate on the other side"))
    if psig and not ssig:
        return "weaker: same direction, but the interval includes no difference" \
            if pd_ == sd_ else "differs: direction reversed, interval includes no difference"
    if not psig and ssig:
        return f"stronger: interval excludes no difference (favours {side}), the primary's does not"
    return "differs: the two intervals exclude no difference on opposite sides"


# --------------------------------------------------------------------------- HTML

def _missing_html(md: pd.DataFrame) -> str:
    cols = [c for c in REASONS if c in md and (md[c].fillna(1) != 0).any()]
    head = ("<tr><th>Outcome</th><th>Arm</th><th>People</th><th>Analysed</th><th>Missing or "
            "cut short</th>" + "".join(f"<th>{escape(REASONS[c].capitalize())}</th>"
                                       for c in cols)
            + "<th>Share missing or cut short (%)</th><th>Differs between arms?</th></tr>")
    rows = []
    for outcome, g in md.groupby("outcome", sort=False):
        first = True
        for r in g.itertuples():
            share = (f"{100 * r.missing_or_cut_short / r.people:.1f}"
                     if not pd.isna(r.missing_or_cut_short) and not pd.isna(r.people)
                     and r.people else disclosure.SUPPRESSED)
            flag = ""
            if first:
                p = "" if pd.isna(r.p) else f"; {escape(str(r.test))}, {escape(p_text(r.p))}"
                flag = (f"<td rowspan='{len(g)}'>{'<strong>Yes</strong>' if r.flag else 'No'}"
                        f"{p}</td>")
            rows.append("<tr>" + (f"<td rowspan='{len(g)}'>"
                                  f"{escape(OUTCOME_WORDS.get(outcome, outcome))}</td>"
                                  if first else "")
                        + f"<td>{escape(_arm_label(r.arm))}</td>"
                        + "".join(_count_td(getattr(r, c))
                                  for c in ("people", "analysed", "missing_or_cut_short", *cols))
                        + f"<td class='num'>{share}</td>{flag}</tr>")
            first = False
    return "<table><caption>Missing or cut-short outcome data per outcome and arm (counts " \
           "rounded to 5; [c]: 1 to 7 or hidden so it cannot be worked out)</caption>" + head \
           + "".join(rows) + "</table>"


def _sensitivity_rows(est: pd.DataFrame, outcome: str) -> tuple[list[str], str]:
    e = est[est["outcome"] == outcome]

    def one(analysis, measure):
        g = e[(e["analysis"] == analysis) & (e["measure"] == measure)]
        return g.iloc[0] if len(g) else None

    primary = one("primary", "hazard ratio")
    rows = []
    spec = [("Primary: the plan's analysis", "primary", "hazard ratio", True),
            ("Unadjusted (no covariates)", "sensitivity", "hazard ratio", True),
            ("Admissions only (crisis episodes not counted)", LABELS["admissions"],
             "hazard ratio", True),
            ("Transfer out counted as the event", LABELS["transfer"], "hazard ratio", True),
            ("Fine-Gray subdistribution hazard ratio (death competing)", LABELS["fine_gray"],
             "subdistribution hazard ratio", True)]
    for m in sorted({m for m in e["measure"] if str(m).startswith("RMST difference at ")},
                    key=lambda m: int(m.split()[-2])):
        spec.append((f"Restricted mean time free of the event, difference at "
                     f"{m.split()[-2]} days (days)", LABELS["rmst"], m, False))
    for words, analysis, measure, ratio in spec:
        r = one(analysis, measure)
        if r is None:
            continue
        read = ("the reference" if analysis == "primary" else
                "not a check of the primary: not adjusted for confounding"
                if str(getattr(r, "estimand", "")).startswith(UNADJUSTED)
                else reading(primary, r, ratio))
        pv = escape(p_value(r.p))
        rows.append(f"<tr><td>{escape(words)}</td><td class='num'>"
                    f"{_ci(r.estimate, r.lower, r.upper, 2 if ratio else 1)}</td>"
                    f"<td class='num'>{pv}</td><td>{escape(str(r.method))}</td>"
                    f"<td>{escape(read)}</td></tr>")
    ph = one(LABELS["ph"], "proportional-hazards chi-square (arm)")
    ph_words = ""
    if ph is not None and not pd.isna(ph.estimate):
        ph_words = (f"Proportional hazards: Grambsch-Therneau test of the arm term, chi-square "
                    f"{ph.estimate:.2f} on 1 df, {p_text(ph.p)} ("
                    + ("no evidence that the hazard ratio changes over follow-up" if ph.p >= 0.05
                       else "evidence that the hazard ratio changes over follow-up: read the "
                            "restricted mean difference and the ratio per period rather than "
                            "one hazard ratio")
                    + "; the test treats people as independent, so with clusters its p-value "
                      "is too small).")
    return rows, ph_words


def section(con, figs: dict, fig_html) -> str:
    """HTML of the section (empty when the sensitivity family did not run)."""
    have = _tables(con)
    if "analysis_estimands_public" not in have:
        return ""
    P = ["<h3 id='sensitivity'>4.7 Estimands, missing data and sensitivity analyses</h3>",
         "<p>What each outcome's effect means (ICH E9(R1) estimand: population, variable, "
         "what is done about the events that happen after randomisation and change or end "
         "the outcome, summary measure), who is missing from each analysis and why, and "
         "whether the primary conclusion holds under other reasonable analyses.</p>"]
    ests = con.execute("select * from results.analysis_estimands_public").df()
    P.append("<p><strong>Estimands.</strong></p><ul>" + "".join(
        f"<li><strong>{escape(OUTCOME_WORDS.get(r.outcome, r.outcome))}.</strong> "
        f"{escape(r.sentence)}</li>" for r in ests.itertuples()) + "</ul>")
    if "analysis_missing_data_public" in have:
        md = con.execute("select * from results.analysis_missing_data_public").df()
        if len(md):
            P.append(_missing_html(md))
            P.append("<p class='muted'>Missing or cut short: for a time to event, people "
                     "without the event whose follow-up ended before two years; for the "
                     "rate, people followed for less than two years; for a proportion, people "
                     "whose outcome is not known (left out); for work or education, people "
                     "whose records end before the window or without a status in it (a death "
                     "before the window counts as not in work, not as missing, unless the "
                     "plan says while alive). Not followed long enough: recruited too late for "
                     "this extract's two years. Flag: the shares differ by 5 percentage points "
                     "or more, or the design's test (cluster-level t-test of the clusters' "
                     "shares; chi-square without clusters) gives p &lt; 0.05; a difference "
                     "that size can bias a comparison whatever its p-value, and with few "
                     "clusters the test has little power. For a time to event the flag "
                     "compares everyone's follow-up ending early, event or not: only people "
                     "without the event can be cut short, so the arm with fewer events has "
                     "more of them whatever its follow-up.</p>")
    est = con.execute("select * from results.analysis_estimates_public").df()
    for outcome in dict.fromkeys(est.loc[est["analysis"].isin(LABELS.values()), "outcome"]):
        rows, ph_words = _sensitivity_rows(est, outcome)
        if not rows:
            continue
        name = OUTCOME_WORDS.get(outcome, outcome)
        P.append(f"<table><caption>{escape(name)}: the primary estimate beside each "
                 "sensitivity analysis (hazard ratios, Open Dialogue vs usual care, below 1 "
                 "favours Open Dialogue; restricted mean differences in days, above 0 favours "
                 "Open Dialogue); 95% CIs</caption><tr><th>Analysis</th><th>Estimate (95% CI)"
                 "</th><th>p</th><th>Method</th><th>Does the conclusion hold?</th></tr>"
                 + "".join(rows) + "</table>")
        if ph_words:
            P.append(f"<p>{escape(ph_words)}</p>")
        P.append(fig_html(figs.get(f"ph_periods_{outcome}"),
                          f"Hazard ratio of {name.lower()} per period of follow-up",
                          "Hazard ratio in each period among the people still at risk at its "
                          "start, by the plan's analysis and few-cluster method, with 95% CIs "
                          "(log scale); the dashed line is the primary estimate over the whole "
                          "follow-up. Ratios that drift or cross 1 suggest the effect changes "
                          "over time."))
    return "".join(P)
