"""The report's first screen: what a reader needs before any section. A banner when the
data are synthetic, the design, the data period, people and clusters per arm (counts as
published: rounded by the output policy), a line on recruitment imbalance when the arms
differ notably, the primary result in words with its CI and test, the key secondary
results with what the multiplicity procedure says of each, the contents, a link to the
data-quality report and the run date.

Everything comes from the public results tables (and the month range of the derived
people), so nothing here publishes a number the rest of the report does not."""

from __future__ import annotations

import datetime as dt
import html as htmllib
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.report_words import label, p_text, reader, sentence

#: What each outcome is, for "the hazard of ..." / "the rate of ..." / "the share of ...".
OUTCOME_WORDS = {
    "relapse": "a first relapse",
    "involuntary_admission": "involuntary admissions",
    "antipsychotic_any": "people using any antipsychotic",
    "antipsychotic_last_days": "people using an antipsychotic at the end of follow-up",
    "return_to_work": "people in work or education at 2 years",
}

#: Above this ratio of people per arm (or below its inverse) the first screen says so.
IMBALANCE_RATIO = 1.25


def _esc(v) -> str:
    return htmllib.escape(str(v))


def _missing(v) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _have(con) -> set[str]:
    return {r[0] for r in con.execute("select table_name from information_schema.tables "
                                      "where table_schema = 'results'").fetchall()}


def is_synthetic(con) -> bool:
    """Whether the warehouse was loaded from an extract ``odeval synth`` wrote: its folder
    holds the planted truth (``truth.json``) beside the raw files."""
    try:
        files = [r[0] for r in con.execute("select distinct source_file from meta.loads"
                                           ).fetchall()]
    except Exception:  # not a warehouse (a test's in-memory database)
        return False
    return any((Path(f).parent / "truth.json").exists() for f in files if f)


def run_date() -> dt.date:
    """Today (UTC), or the day of ``SOURCE_DATE_EPOCH`` when it is set (reproducible-builds
    convention: pins the only thing that differs between two runs on the same inputs)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.strip().isdigit():
        return dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc).date()
    return dt.datetime.now(dt.timezone.utc).date()


def data_period(con) -> str:
    """"referrals from March 2022 to June 2024; records to March 2025" (months only), or ""."""
    try:
        lo, hi, end = con.execute("select min(index_date), max(index_date), max(data_end_date) "
                                  "from derived.people").fetchone()
    except Exception:
        return ""
    if lo is None:
        return ""
    m = lambda d: d.strftime("%B %Y")  # noqa: E731
    return (f"people entered from {m(lo)} to {m(hi)}"
            + (f"; records to {m(end)}" if end is not None else ""))


def _is_ratio(measure: str) -> bool:
    return "ratio" in measure


def _num(v, measure: str) -> str:
    """An estimate or limit: ratios to 2 decimals, differences in percentage points to 1."""
    return f"{v:.2f}" if _is_ratio(measure) else f"{100 * v:.1f}"


def _interval(r, measure: str) -> str:
    unit = "" if _is_ratio(measure) else " percentage points"
    est = f"{measure} {_num(r.estimate, measure)}{unit}"
    if _missing(r.lower) or _missing(r.upper):
        return est
    return f"{est} (95% CI {_num(r.lower, measure)} to {_num(r.upper, measure)})"


def _change(v: float, measure: str) -> str:
    """"36% lower" / "5.2 percentage points higher" / "the same"; "infinitely higher" (or
    lower) for a limit that is not finite (a model at its boundary), "not estimable" for
    NaN."""
    if not np.isfinite(v):
        return "not estimable" if np.isnan(v) else "infinitely higher" if v > 0 else \
            "infinitely lower"
    if _is_ratio(measure):
        k = abs(1 - v) * 100
        return f"{k:.0f}% {'lower' if v < 1 else 'higher'}" if round(k) else "the same"
    k = abs(v) * 100
    return (f"{k:.1f} percentage points {'lower' if v < 0 else 'higher'}"
            if round(k, 1) else "the same")


def _span(v: float, measure: str, q: str) -> str:
    """One end of an interval in words: "a 65% lower hazard", "a share 3.9 points lower"."""
    ch = _change(v, measure)
    if ch == "the same":
        return f"the same {q}"
    if _is_ratio(measure):
        return f"{'an' if ch[0] in 'aeiou' else 'a'} {ch} {q}"
    return f"a {q} {ch}"


def _what(outcome: str, measure: str) -> tuple[str, str]:
    """(the quantity compared, of what): ("hazard", "a first relapse")."""
    of = OUTCOME_WORDS.get(outcome, label(outcome))
    if measure.startswith("hazard"):
        return "hazard", of
    if measure.startswith("rate"):
        return "rate", of
    return "share", of


def effect_words(r, observational: bool) -> str:
    """The primary (or any) comparison in words: direction and size, the estimate with its
    CI and the test; for an interval that includes no difference, what its span means.
    No causal wording for an observational design."""
    measure = str(r.measure)
    if r.method == "not estimated" or _missing(r.estimate):
        why = str(r.notes or "").removeprefix("Not estimated: ")
        return f"{_esc(label(r.outcome)).capitalize()}: not estimated. {_esc(sentence(why))}"
    q, of = _what(str(r.outcome), measure)
    ch = _change(r.estimate, measure)
    if observational:
        head = f"In the Open Dialogue arm the {q} of {of} was {ch} than in usual care"
    else:
        head = f"With Open Dialogue the {q} of {of} was {ch} than with usual care"
    if ch == "the same":
        head = head.rsplit(" than ", 1)[0] + (" as in usual care" if observational
                                              else " as with usual care")
    test = reader(str(r.method).split(";")[-1].strip())
    text = f"{head}: {_interval(r, measure)}"
    p = p_text(r.p)
    if p:
        text += f"; {p}"
    text = _esc(text) + "." + (_esc(f" Test: {test}.") if test and p else "")
    null = 1.0 if _is_ratio(measure) else 0.0
    if not (_missing(r.lower) or _missing(r.upper)) and r.lower <= null <= r.upper:
        text += _esc(f" The interval includes no difference ({null:g}): the data are "
                     f"compatible with anything from {_span(r.lower, measure, q)} to "
                     f"{_span(r.upper, measure, q)}, so they neither show a difference nor rule "
                     "out one that matters; this is not evidence of no difference.")
    if observational:
        text += _esc(" The arms were not randomised: this is an association after "
                     "adjustment for the measured differences between the people, not an "
                     "effect of Open Dialogue.")
    return text


def _verdict(m, method: str) -> str:
    """What the multiplicity procedure says of one secondary outcome."""
    adj = p_text(m.p_adjusted).replace("p ", "adjusted p ", 1) if not _missing(
        m.p_adjusted) else ""
    if method == "none":
        return "descriptive only (the plan adjusts for no multiplicity)"
    if not bool(m.confirmatory):
        return ("descriptive only: the testing sequence did not reach it"
                if method == "hierarchical" else
                "descriptive only: the primary test did not reject")
    if bool(m.rejected):
        return "confirmed after the multiplicity adjustment" + (f" ({adj})" if adj else "")
    return "not confirmed" + (f" ({adj})" if adj else "") + (
        "; the testing sequence stops here" if method == "hierarchical" else "")


def secondary_items(est: pd.DataFrame, mt: pd.DataFrame | None) -> list[str]:
    """One list item per secondary outcome of the plan, in its order: the plan's first
    measure with its CI and p-value, and the multiplicity verdict. When every outcome has
    the same "descriptive only" verdict it is said once, in a last item, not on each."""
    sec = est[est.analysis == "secondary"]
    if mt is not None and len(mt):
        order = [(r.outcome, r) for r in mt[mt.role == "secondary"].itertuples()]
        method = str(mt["method"].iloc[0])
    else:
        order = [(o, None) for o in dict.fromkeys(sec.outcome)]
        method = "none"
    items, verdicts = [], []
    for outcome, m in order:
        rows = sec[sec.outcome == outcome]
        if rows.empty:
            continue
        r = rows.iloc[0]
        name = label(outcome)
        name = name[:1].upper() + name[1:]
        if r.method == "not estimated" or _missing(r.estimate):
            body = "not estimated"
        else:
            body = _interval(r, str(r.measure))
            p = p_text(r.p)
            body += f"; {p}" if p else ""
        verdict = _verdict(m, method) if m is not None else \
            "descriptive only (no multiplicity procedure declared)"
        verdicts.append(verdict)
        items.append((name, body))
    if len(items) > 1 and len(set(verdicts)) == 1 and verdicts[0].startswith("descriptive"):
        every = verdicts[0].replace("descriptive only", "all descriptive only", 1)
        every = every.replace(": the testing sequence did not reach it",
                              ": the testing sequence did not reach them")
        return ([f"<li><strong>{_esc(n)}</strong>: {_esc(b)}.</li>" for n, b in items]
                + [f"<li class='verdict'><em>{_esc(every[:1].upper() + every[1:])}.</em></li>"])
    return [f"<li><strong>{_esc(n)}</strong>: {_esc(b)}; <em>{_esc(v)}</em>.</li>"
            for (n, b), v in zip(items, verdicts)]


def _clusters(con, have: set[str]) -> dict[str, int]:
    if "analysis_flow_public" not in have:
        return {}
    fl = con.execute("select * from results.analysis_flow_public").df()
    fl = fl[(fl.unit == "clusters") & fl.clusters.notna()]
    for stage in ("with_people", "allocated"):
        g = fl[fl.stage == stage]
        if len(g):
            return {r.arm: int(r.clusters) for r in g.itertuples()}
    return {}


def _imbalance(con, have: set[str], est: pd.DataFrame, arm_n: dict, n_sites: int,
               clustered: bool) -> str:
    """A line when the arms' numbers differ notably or sites are flagged, else "".
    ``clustered``: a cluster-randomised design (people recruited after randomisation)."""
    od, uc = arm_n.get("open_dialogue"), arm_n.get("usual_care")
    bits = []
    ratio = od / uc if not (_missing(od) or _missing(uc)) and uc else None
    if ratio is not None and not 1 / IMBALANCE_RATIO <= ratio <= IMBALANCE_RATIO:
        bits.append(f"the Open Dialogue arm has {ratio:.2f} times as many people as usual "
                    "care")
    rr = est[(est.analysis == "flow") & (est.measure == "recruitment rate ratio")]
    flagged, per = 0, "cluster"
    if "analysis_recruitment_sites_public" in have:
        s = con.execute("select imbalanced, per from results.analysis_recruitment_sites_public"
                        ).df()
        flagged = int(s.imbalanced.fillna(False).astype(bool).sum())
        per = str(s.per.iloc[0]) if len(s) and not _missing(s.per.iloc[0]) else per
    if not bits and not flagged:
        return ""
    if len(rr) and not _missing(rr.iloc[0].estimate):
        r = rr.iloc[0]
        extra = [f"95% CI {r.lower:.2f} to {r.upper:.2f}"] if not (
            _missing(r.lower) or _missing(r.upper)) else []
        extra += [p_text(r.p)] if p_text(r.p) else []
        bits.append(f"recruitment per {per} {r.estimate:.2f} times as high"
                    + (f" ({'; '.join(extra)})" if extra else ""))
    if flagged:
        bits.append(f"in {flagged} of {n_sites} site{'s' if n_sites != 1 else ''} one arm "
                    "recruited more than twice as fast as the other")
    text = "; ".join(bits)
    why = ("People recruited after their cluster was randomised can differ between the arms "
           "(recruitment bias): compare the arms in Table 1 (section 3) and the recruitment "
           "per cluster (section 1)." if clustered else
           "Compare who is in each arm in Table 1 (section 3).")
    return f"{text[:1].upper()}{text[1:]}. {why}"


def meta_line(dq_href: str | None, date: dt.date) -> str:
    """Under the title: the run date, the link to the data-quality report (when it is beside
    the report), the contents and the glossary."""
    dq = (f"<a href='{_esc(dq_href)}'>Data-quality report</a> (rows received, quarantined and "
          "why, per table, site and month)" if dq_href else
          "Data-quality report: not in this folder (<code>odeval validate</code> writes "
          "data_quality.html)")
    return (f"<p class='meta'>Run date {_esc(date.isoformat())} &middot; {dq} &middot; "
            "<a href='#contents'>Contents</a> &middot; <a href='#glossary'>Glossary</a></p>")


def section(con, est: pd.DataFrame, arm_n: dict, n_sites: int, count, *,
            observational: bool, contents: str = "<!--contents-->") -> str:
    """The first screen's HTML. ``arm_n``: people per arm as published (rounded);
    ``count``: the report's count formatter (``<span class='count'>``); ``contents``: a
    placeholder the caller replaces with the list of sections."""
    have = _have(con)
    plan = (dict(con.execute("select item, plan from results.analysis_plan_public").fetchall())
            if "analysis_plan_public" in have else {})
    rows = []

    def row(head: str, html: str) -> None:
        rows.append(f"<tr><th scope='row'>{_esc(head)}</th><td>{html}</td></tr>")

    design = plan.get("Design", "Observational comparison" if observational else "")
    shape = plan.get("Shape of the data")
    if design:
        row("Design", _esc(design) + (f": {_esc(reader(shape))}" if shape else "")
            + (f"; {n_sites} site{'s' if n_sites != 1 else ''}" if n_sites else ""))
    period = data_period(con)
    if period:
        row("Data period", _esc(period[:1].upper() + period[1:]))
    clusters = _clusters(con, have)
    arms = []
    for arm, words in (("open_dialogue", "Open Dialogue"), ("usual_care", "Usual care")):
        k = clusters.get(arm)
        arms.append(f"{words}: {count(arm_n.get(arm))} people"
                    + (f" in {k} cluster{'s' if k != 1 else ''}" if k is not None else ""))
    row("People analysed", "; ".join(arms) + " <span class='muted'>(people rounded as "
        "everywhere in this report; clusters as they are)</span>")
    imb = _imbalance(con, have, est, arm_n, n_sites,
                     clustered=bool(clusters) and not observational)
    if imb:
        row("Recruitment imbalance", _esc(imb))
    prim = est[est.analysis == "primary"]
    if len(prim):
        r = prim.iloc[0]
        outcome = label(r.outcome)
        row(f"Primary result ({outcome})", effect_words(r, observational))
    mt = (con.execute("select * from results.analysis_multiplicity_public order by \"order\""
                      ).df() if "analysis_multiplicity_public" in have else None)
    items = secondary_items(est, mt)
    if items:
        how = ""
        if mt is not None and len(mt):
            how = {"hierarchical": "tested in the plan's fixed order, each only if the primary "
                   "and every earlier test rejected", "holm": "Holm-adjusted, tested only if "
                   "the primary test rejected", "none": "not adjusted for multiplicity"}.get(
                str(mt["method"].iloc[0]), "")
        row("Secondary results", (f"<span class='muted'>{_esc(how[:1].upper() + how[1:])}; "
                                  "estimates and "
                                  "intervals not adjusted.</span>" if how else "")
            + f"<ul>{''.join(items)}</ul>")
    table = ("<table class='facts'><tbody>" + "".join(rows)
             + "</tbody></table>")
    return ("<h2 id='summary'>Summary</h2>" + table
            + f"<nav class='contents' id='contents' aria-label='Contents'><strong>Contents"
              f"</strong>{contents}</nav>")


def synthetic_banner() -> str:
    return ("<div class='synthetic' role='note'><strong>Synthetic data.</strong> This report "
            "was built from a study generated by <code>odeval synth</code> (its planted truth, "
            "truth.json, is beside the raw files): no real person is in it, and its results "
            "show what the pipeline does, not what Open Dialogue does.</div>")


def contents_html(report_html: str) -> str:
    """An ordered list of links to the report's h2 sections (the summary excepted)."""
    heads = re.findall(r"<h2 id=['\"]([^'\"]+)['\"][^>]*>(.*?)</h2>", report_html, re.S)
    items = "".join(f"<li><a href='#{i}'>{re.sub(r'<[^>]+>', '', t)}</a></li>"
                    for i, t in heads if i != "summary")
    return f"<ul>{items}</ul>" if items else ""
