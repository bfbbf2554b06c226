"""The pooled report of a federated analysis, built from site bundles alone.

``odeval pool BUNDLE ... --out DIR`` writes ``DIR/report.html`` (one self-contained file),
``DIR/tables/*.csv`` and ``DIR/figures/*`` (SVG and PNG). Everything in ``DIR`` is meant
for people and disclosure-controlled exactly as the main report (:mod:`pipeline.report`):
counts from ``suppress_min`` to ``suppress_max`` suppressed (with secondary suppression
where cells add up to a shown total), every other count rounded to ``round_to``, curves
drawn from cumulative counts rounded to the curve step. The files are staged in ``DIR``,
scanned by ``odeval check-outputs`` and only then moved into place
(:func:`pipeline.outputs.publish`), so a breach or a failure leaves no partial output;
``DIR`` may hold other files (an analyst's notes), which are never touched.

The exact pooled tables (counts not rounded) are analysis files for the coordinating
centre and are written only when asked for (``odeval pool --exact DIR``,
:func:`pipeline.federated.write_exact`).

Sections: title and disclosure note; the bundles pooled (sites, creation times, parameter
hash, versions); people per site and arm; relapse curves by arm (Kaplan-Meier, death
censored, and Aalen-Johansen, death competing); the three site contrasts pooled by
random-effects meta-analysis with prediction intervals (forest plots and a table); Table 1;
fidelity per principle and arm; validation totals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline import disclosure, output_policy
from pipeline.errors import OdevalError
from pipeline.federated.bundle import MEASURES, _versions
from pipeline.federated.pooling import Pooled
from pipeline.report import (_CSS, _arm_label, _count_td, _curve_frame, _esc, _figure, _fmt,
                             _pct_ci, _table, save_figure, site_arm_rows, table_one_rows,
                             write_table)

ARMS = ("open_dialogue", "usual_care")

#: What each contrast is called in the report: (title, x axis label of its forest plot).
MEASURE_TEXT = {
    "log hazard ratio": ("Hazard ratio of relapse", "Hazard ratio, Open Dialogue vs usual "
                         "care (log scale)"),
    "log rate ratio": ("Rate ratio of involuntary admissions", "Rate ratio, Open Dialogue vs "
                       "usual care (log scale)"),
    "risk difference": ("Risk difference, in work or education at 2 years", "Risk "
                        "difference, Open Dialogue minus usual care"),
}


# --------------------------------------------------------------------------- public tables

def public_people(pooled: Pooled, cfg: dict[str, Any]) -> pd.DataFrame:
    """People per site and arm with the site, arm and overall margins: rounded, small
    counts and the cells that would reveal them suppressed."""
    p = pooled.people
    sites = sorted(p["site_id"].unique())
    arms = sorted(p["arm"].unique())
    cells = {(s, a): 0 for s in sites for a in arms}
    for s, a, n in p.itertuples(index=False):
        cells[(s, a)] = int(n)
    for s in sites:
        cells[(s, "all")] = sum(cells[(s, a)] for a in arms)
    for a in arms:
        cells[("all", a)] = sum(cells[(s, a)] for s in sites)
    cells[("all", "all")] = sum(cells[("all", a)] for a in arms)
    frame = pd.DataFrame([dict(site_id=s, arm=a, n=n) for (s, a), n in cells.items()])
    frame["n"] = disclosure.protect_grid(frame, ["site_id", "arm"], "n", cfg,
                                         constraints=disclosure.grid_constraints(sites, arms))
    from pipeline.metrics import _sort

    return _sort(frame, ["site_id", "arm"])


def public_curve_counts(pooled: Pooled, cfg: dict[str, Any], outcome: str = "relapse") -> pd.DataFrame:
    """Rounded cumulative counts behind the pooled curves of ``outcome`` (as the main
    report's ``curve_counts``): every count a multiple of the curve step."""
    from pipeline.federated import expand

    d = expand(pooled.risk_sets[pooled.risk_sets["outcome"] == outcome])
    rc = disclosure.rounded_curve_data(d, "time", "status", cfg, "arm")
    counts = rc.groupby(["arm", "time", "status"]).size().rename("count").reset_index()
    counts.insert(0, "outcome", outcome)
    return counts.rename(columns={"arm": "group", "status": "event"})


#: Why a closed-form site effect is not shown in the pooled report.
CLOSED_FORM_NOTE = ("not shown per site: a risk difference with its Wald interval gives back "
                    "the per-arm counts, which the bundles do not publish (output policy)")


def public_site_effects(pooled: Pooled, cfg: dict[str, Any]) -> pd.DataFrame:
    """Each site's contrast on its natural scale with its interval, as the output policy
    allows (:func:`pipeline.output_policy.effect`): only when the site's n and events are
    both shown, to 3 significant digits; never a risk difference (a closed form of per-arm
    counts the pooled report does not show). Counts rounded."""
    from scipy import stats

    pol = output_policy.settings(cfg)
    conf = float(pooled.settings["conf_level"])
    z = stats.norm.ppf(1 - (1 - conf) / 2)
    rows = []
    for _, e in pooled.site_effects.iterrows():
        f = np.exp if e.scale == "log" else (lambda x: x)
        est = e.estimate
        n_r = disclosure.round_count(e.n, cfg)
        ev_r = disclosure.round_count(e.n_events, cfg)
        note = e.note
        if e.scale != "log":
            shown = (None, None, None)
            note = CLOSED_FORM_NOTE if pd.notna(est) else note
        else:
            shown = output_policy.effect(f(est), f(est - z * e.se), f(est + z * e.se),
                                         [n_r, ev_r], pol)
        rows.append(dict(site=e.site, outcome=e.outcome, measure=e.measure.removeprefix("log "),
                         estimate=shown[0], lower=shown[1], upper=shown[2],
                         n=n_r, n_events=ev_r, method=e.method, note=note))
    out = pd.DataFrame(rows)
    for c in ("estimate", "lower", "upper"):
        out[c] = out[c].astype(float)
    return out


def public_table_one(pooled: Pooled, cfg: dict[str, Any]) -> pd.DataFrame:
    """Table 1 for people, protected as the main report's (:func:`pipeline.analyse.protect_table_one`)."""
    from pipeline.analyse import protect_table_one

    res = pooled.table_one
    arm_labels = pd.DataFrame({"arm": np.repeat(res.groups, [res.n_arm[g] for g in res.groups])})
    return protect_table_one(res, arm_labels, cfg, res.nonnormal)


def public_validation(pooled: Pooled, cfg: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    from pipeline.metrics import protect_dq

    rules = pooled.validation_rules.copy()
    rules["n_rows"] = [disclosure.round_count(v, cfg) for v in rules["n_rows"]]
    return protect_dq(pooled.validation, cfg), rules


def public_tables(pooled: Pooled, cfg: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """Every table of the pooled report, disclosure-controlled, by CSV stem."""
    from pipeline.metrics import protect_fidelity

    conf = float(pooled.settings["conf_level"])
    val, rules = public_validation(pooled, cfg)
    bundles = pooled.bundles.drop(columns="path")
    return {
        "bundles": bundles,
        "people": public_people(pooled, cfg),
        "curve_counts": public_curve_counts(pooled, cfg),
        "site_effects": public_site_effects(pooled, cfg),
        "site_meta": pooled.site_meta.drop(columns=["pooled"], errors="ignore"),
        "table_one": public_table_one(pooled, cfg),
        "fidelity": protect_fidelity(pooled.fidelity, cfg, conf),
        "validation": val,
        "validation_rules": rules,
    }


# --------------------------------------------------------------------------- figures

def figures(pooled: Pooled, tables: dict[str, pd.DataFrame], folder: Path) -> dict[str, dict]:
    """The relapse curves (from the rounded counts) and one forest plot per contrast."""
    from pipeline.analyse import resolve_params
    from scipy import stats

    from pipeline.stats import (aalen_johansen, kaplan_meier, meta_analysis,
                                plot_cumulative_incidence, plot_kaplan_meier)

    conf = float(pooled.settings["conf_level"])
    times = [float(t) for t in resolve_params(None)["curve_times"]]
    out: dict[str, dict] = {}
    cc = tables["curve_counts"]
    if len(cc):
        d = _curve_frame(cc)
        d["group"] = d["group"].map(_arm_label)
        d["relapse"] = (d["event"] == 1).astype(int)
        km = kaplan_meier(d, "time", "relapse", group="group", conf_level=conf)
        km.group_name = "Arm"
        out["relapse_km"] = save_figure(
            plot_kaplan_meier(km, times=times, xlabel="Days since referral accepted",
                              ylabel="Proportion without relapse"), folder, "relapse_km")
        aj = aalen_johansen(d, "time", "event", cause=1, group="group", conf_level=conf)
        out["relapse_cif"] = save_figure(
            plot_cumulative_incidence(aj, cause=1, times=times,
                                      xlabel="Days since referral accepted",
                                      ylabel="Cumulative incidence of relapse"),
            folder, "relapse_cif")
    se = tables["site_effects"]
    for outcome, measure, scale in MEASURES:
        # the sites as published (3 significant digits, hidden sites left out), so that the
        # figure gives back no more than the table
        pub = se[(se["outcome"] == outcome) & se["estimate"].notna()]
        if pooled.meta.get(measure) is None or len(pub) < 2 or scale != "log":
            continue
        y = np.log(pub["estimate"].to_numpy(float))
        v = ((np.log(pub["upper"].to_numpy(float)) - np.log(pub["lower"].to_numpy(float)))
             / (2 * stats.norm.ppf(1 - (1 - conf) / 2))) ** 2
        ma = meta_analysis(y, v, method=pooled.settings["meta_method"],
                           test=pooled.settings["meta_test"], conf_level=conf,
                           labels=list(pub["site"]))
        title, xlabel = MEASURE_TEXT[measure]
        stem = "forest_" + measure.replace(" ", "_")
        out[stem] = save_figure(_forest(ma, scale == "log", xlabel, title), folder, stem)
    return out


def _forest(ma, log: bool, xlabel: str, title: str):
    """:func:`pipeline.stats.plot_forest` on axes tall enough for its legend and notes
    below the axis with few sites (it labels ratios at plain ticks itself)."""
    import matplotlib.pyplot as plt

    from pipeline.stats import plot_forest
    from pipeline.stats._style import style

    with style():
        fig, ax = plt.subplots(figsize=(7.0, 2.6 + 0.28 * (ma.k + 3)))
    plot_forest(ma, exponentiate=log, xlabel=xlabel, title=f"{title}: site estimates", ax=ax)
    return fig


# --------------------------------------------------------------------------- HTML

def _c(v) -> str:
    return (f"<span class='count'>"
            f"{disclosure.fmt_count(None if v is None or pd.isna(v) else int(v))}</span>")


def render(pooled: Pooled, tables: dict[str, pd.DataFrame], figs: dict[str, dict],
           cfg: dict[str, Any], params: dict[str, Any]) -> str:
    """The pooled report as one HTML string (figures embedded; no external resource)."""
    from pipeline.metrics import FIDELITY_LABELS
    from pipeline.params import params_hash

    settings, disc = pooled.settings, pooled.disclosure
    step = disclosure.curve_step(cfg)
    sites = list(pooled.bundles["site"])
    P = ["<h1>Open Dialogue evaluation: pooled from site bundles</h1>",
         f"<p class='lead'>A federated analysis of {len(sites)} sites ({_esc(', '.join(sites))}): "
         "each site exported aggregates of its own data (<code>odeval export</code>) and this "
         "report was built from those bundles alone, without row-level records. Every interval "
         "is a 95% confidence interval (CI) unless it says otherwise.</p>",
         f"<div class='box'><strong>Disclosure control.</strong> Counts from "
         f"{cfg['suppress_min']} to {cfg['suppress_max']} are not shown "
         f"({disclosure.SUPPRESSED}), nor any other count or estimate from which they could "
         f"be worked out; every other count is rounded to the nearest {cfg['round_to']}, so "
         "totals may not add up. Percentages are computed from the rounded counts. Curves are "
         f"drawn from counts rounded to multiples of {step}. No person or staff identifier "
         "appears in this report. The bundles' own counts were "
         + ("rounded" if disc.get("round_counts") else "exact")
         + " (Table 1, fidelity, validation) and their risk sets "
         + ("rounded, so the pooled curves are approximate" if disc.get("round_risk_sets")
            else "exact, so the pooled curves are those of the pooled rows")
         + ".</div>"]

    # bundles
    rows = [f"<tr><td>{_esc(r.site)}</td><td>{_esc(r.created_at)}</td>"
            f"<td>{_esc(r.odeval_version)}</td><td>{_esc(r.bundle_schema_version)}</td>"
            f"<td><code>{_esc(r.params_hash[:16])}</code></td></tr>"
            for r in pooled.bundles.itertuples(index=False)]
    P.append("<h2 id='bundles'>1. The bundles pooled</h2>")
    P.append(_table("Site bundles", ["Site", "Exported (UTC)", "odeval", "Bundle schema",
                                      "Derive parameters sha256 (first 16)"], rows))
    P.append("<p class='muted'>Every bundle passed its checks (manifest, sha256 of each "
             "file, columns and types, totals adding up) and all share the bundle schema, "
             "the outcome definitions (derive parameters), the analysis settings "
             f"(comparison {_esc(settings['comparison_arm'])} vs reference "
             f"{_esc(settings['reference_arm'])}; meta-analysis {_esc(settings['meta_method'])} "
             f"with {_esc(settings['meta_test'])} test) and the disclosure settings.</p>")
    people = tables["people"]
    def received(site, arm):
        r = people[(people.site_id == site) & (people.arm == arm)]
        return r.n.iloc[0] if len(r) else None

    rows = site_arm_rows(list(sites), received)
    P.append(_table("People per site and arm", ["Site", "Open Dialogue", "Usual care",
                                                 "Both arms"], rows))

    # relapse curves
    P.append("<h2 id='relapse'>2. Relapse by arm</h2><p>A relapse is a hospital admission or "
             "a crisis resolution / home treatment episode after the referral was accepted; "
             "death ends follow-up without relapse. The curves pool every site's risk sets.</p>")
    P.append(_figure(figs.get("relapse_km"), "Kaplan-Meier curves of time to relapse by arm",
                     "Proportion without relapse by days since referral, Kaplan-Meier by arm "
                     "(deaths censored), 95% pointwise bands, numbers at risk below. Drawn from "
                     f"pooled counts rounded to multiples of {step}."))
    P.append(_figure(figs.get("relapse_cif"), "Cumulative incidence of relapse by arm",
                     "Cumulative incidence of relapse (Aalen-Johansen, death competing) by arm, "
                     f"95% pointwise bands. Drawn from pooled counts rounded to multiples of "
                     f"{step}."))

    # site contrasts
    P.append("<h2 id='effects'>3. Site estimates pooled by random-effects meta-analysis</h2>"
             "<p>Each site's contrast is estimated within the site as the single-site analysis "
             "estimates it for the whole study; the sites are pooled by random-effects "
             "meta-analysis. The confidence interval is for the mean of the sites' effects, the "
             "prediction interval for the effect in a new site. This is not the model on the "
             "pooled rows, which a federated analysis cannot fit.</p>")
    sm = tables["site_meta"]
    rows = []
    for r in sm.itertuples(index=False):
        rows.append(f"<tr><td>{_esc(r.measure.capitalize())}, {_esc(r.outcome.replace('_', ' '))}"
                    f"</td><td class='num'>{_fmt(r.estimate)} ({_fmt(r.lower)} to "
                    f"{_fmt(r.upper)})</td><td class='num'>{_fmt(r.pi_lower)} to "
                    f"{_fmt(r.pi_upper)}</td><td class='num'>{r.p:.2g}</td>"
                    f"<td class='num'>{r.tau2:.3g}</td><td class='num'>{r.i2:.0f}</td>"
                    f"<td class='num'>{int(r.k)}</td><td>{_esc(r.method)}</td></tr>")
    P.append(_table("Pooled contrasts, Open Dialogue vs usual care",
                    ["Contrast", "Pooled (95% CI)", "95% prediction interval", "p", "tau^2",
                     "I^2 (%)", "Sites", "Method"], rows))
    missing = [m for _, m, _ in MEASURES if m not in pooled.meta]
    if missing:
        P.append(f"<p class='muted'>Not pooled (fewer than two sites with an estimate): "
                 f"{_esc(', '.join(missing))}.</p>")
    for _, measure, _ in MEASURES:
        title, _ = MEASURE_TEXT[measure]
        P.append(_figure(figs.get("forest_" + measure.replace(" ", "_")), f"Forest plot: {title}",
                         f"{_esc(title)}: each site's estimate (squares, size by weight, 95% "
                         "CI), the random-effects pooled estimate (diamond, 95% CI) and the 95% "
                         "prediction interval (line). Sites whose counts are hidden are left "
                         "out of the figure, and the figure's diamond is pooled from the site "
                         "estimates as published (3 significant digits), so it can differ a "
                         "little from the table above, which pools every site exactly."))
    P.append("<p class='muted'>Site risk differences are not shown one by one: with their "
             "Wald intervals they would give back each arm's counts in the site (output "
             "policy); the pooled risk difference above uses them all.</p>")
    notes = [e for e in pooled.notes if not e.startswith(tuple(f"{v}:" for v in
                                                               settings["table_one"]))]
    if notes:
        P.append("<p class='muted'>" + "<br>".join(_esc(n) for n in notes) + "</p>")

    # table 1
    t1 = tables["table_one"]
    arms = [a for a in ARMS if a in set(t1.arm)]
    rows = table_one_rows(t1, arms, _c)
    P.append("<h2 id='table-1'>4. Table 1: the people at the start</h2><p>Counts summed over "
             "the sites; means and SDs from the sites' sums and sums of squares; medians and "
             "quartiles from the people per value where the sites carry them. The standardised "
             "difference (SMD) compares the arms.</p>")
    if pooled.table_one.notes:
        P.append("<p class='muted'>" + "<br>".join(_esc(n) for n in pooled.table_one.notes)
                 + "</p>")
    P.append(_table("Baseline characteristics by arm, all sites",
                    ["Characteristic", "Open Dialogue", "Usual care", "SMD"], rows))

    # fidelity
    fid = tables["fidelity"]
    fa = fid[fid.site_id == "all"]
    rows = []
    for ind in FIDELITY_LABELS:
        g = fa[fa.indicator == ind].set_index("arm")
        if g.empty:
            continue
        principle = g["principle"].iloc[0]
        cells = [f"<td>{_esc(principle)}</td><td>{_esc(g['label'].iloc[0])}</td>"]
        for a in ARMS:
            if a not in g.index:
                cells += ["<td></td>", "<td></td>"]
                continue
            r = g.loc[a]
            if not r.measurable:
                cells += ["<td></td>", "<td class='num muted'>not measurable</td>"]
                continue
            cells.append(_count_td(r.n))
            if r.kind == "hours":
                est = _fmt(r.estimate, 0)
                cells.append(f"<td class='num'>{est + ' h' if est else disclosure.SUPPRESSED}</td>")
            else:
                cells.append(f"<td class='num'>{_pct_ci(r.estimate, r.lower, r.upper)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    P.append("<h2 id='fidelity'>5. Fidelity to the principles of Open Dialogue</h2><p>Each "
             "indicator per referral, pooled over the sites from their numerators and "
             "denominators: percent of referrals (binary indicators) or mean percent of a "
             "referral's meetings (shares), with 95% CIs. The median hours to the first "
             "meeting cannot be pooled from bundles; its mean is shown. Principle 6 is not "
             "measurable from records.</p>")
    P.append(_table("Fidelity per principle and arm, all sites",
                    ["Principle", "Indicator", "Open Dialogue: referrals", "percent (95% CI)",
                     "Usual care: referrals", "percent (95% CI)"], rows))

    # validation
    val, rules = tables["validation"], tables["validation_rules"]
    rows = []
    for r in val[val.site_id == "all"].itertuples(index=False):
        share = "" if pd.isna(r.quarantined_share) else f"{100 * r.quarantined_share:.1f}"
        rows.append(f"<tr><td>{_esc(r.table_name)}</td>{_count_td(r.n_raw)}"
                    f"{_count_td(r.n_clean)}{_count_td(r.n_quarantined)}"
                    f"<td class='num'>{share}</td></tr>")
    P.append("<h2 id='data-quality'>6. Data quality</h2><p>Rows each site received, kept "
             "(clean) and set aside (quarantined) by validation, summed over the sites; the "
             "rules that quarantined them below. Scope per bundle: "
             + "; ".join(f"{_esc(b.site)}: {_esc(b.validation_scope)}"
                         for b in pooled.bundles.itertuples(index=False)) + ".</p>")
    P.append(_table("Rows received, clean and quarantined per input table (all sites)",
                    ["Table", "Rows received", "Clean", "Quarantined", "Quarantined (%)"], rows))
    rows = [f"<tr><td><code>{_esc(r.rule_id)}</code></td>{_count_td(r.n_rows)}</tr>"
            for r in rules.itertuples(index=False)]
    P.append(_table("Quarantined rows per rule (all sites; a row may break several rules)",
                    ["Rule", "Rows"], rows))

    # footer
    versions = ", ".join(f"{_esc(k)} {_esc(v)}" for k, v in _versions().items())
    P.append(f"<footer><h3>Provenance</h3><p>Pooled from {len(sites)} bundles of schema "
             f"version {_esc(pooled.bundles['bundle_schema_version'].iloc[0])}; derive parameters "
             f"sha256 <code>{_esc(pooled.bundles['params_hash'].iloc[0])}</code>. Pooling "
             f"parameters (params.yaml) sha256 <code>{_esc(params_hash(params))}</code>.</p>"
             f"<p>Software of the pooling: {versions}.</p></footer>")
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
            "img-src data:; style-src 'unsafe-inline'\">"
            "<title>Open Dialogue evaluation: pooled from site bundles</title>"
            f"<style>{_CSS}</style></head><body><main>" + "\n".join(p for p in P if p)
            + "</main></body></html>\n")


def build(pooled: Pooled, params: dict[str, Any], out_dir: str | Path) -> Path:
    """Write report.html, tables/ and figures/ to ``out_dir`` (the ``pool`` outputs of that
    folder, :func:`pipeline.outputs.publish`), after ``check-outputs`` passes on them. A
    previous pooled report there is replaced; nothing else in the folder is touched, and a
    folder holding files odeval did not write is refused."""
    from pipeline import outputs
    from pipeline.check_outputs import check

    cfg = disclosure.settings(params)

    def gate(staged: Path) -> None:
        breaches = check(staged, cfg, attack=True)
        if breaches:
            listing = "\n  ".join(str(b) for b in breaches[:20])
            raise OdevalError("disclosure control failed (odeval check-outputs), the pooled "
                              "report was not written:\n  " + listing,
                              rule="federated.pool.disclosure_check", file=out_dir)

    out_dir = Path(out_dir)
    with outputs.publish(out_dir, "pool", source="pool", check=gate,
                         rule="federated.pool.out") as tmp:
        (tmp / "tables").mkdir()
        (tmp / "figures").mkdir()
        tables = public_tables(pooled, cfg)
        for stem, df in tables.items():
            write_table(df, tmp / "tables" / f"{stem}.csv")
        figs = figures(pooled, tables, tmp / "figures")
        (tmp / "report.html").write_text(render(pooled, tables, figs, cfg, params),
                                         encoding="utf-8")
    return out_dir / "report.html"
