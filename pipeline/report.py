"""Report stage: reports/report.html (one self-contained file), reports/metrics.json,
figures (PNG and SVG) and tables (CSV), all disclosure-controlled and checked.

Every file is first written to a staging folder inside the output folder and moved into
place only when all of it has been written and ``check-outputs`` passes on it
(:func:`pipeline.outputs.publish`), so a failure (a full disk, an unwritable folder, a
disclosure breach) leaves the previous report as it was and no partial one; nothing the
report did not write is replaced or deleted.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html as htmllib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import disclosure, output_policy, report_words
from pipeline.errors import OdevalError
from pipeline.outputs import ESTIMATE_COLUMNS, write_table  # noqa: F401 (report.write_table)


# --------------------------------------------------------------------------- files

def exact_counterpart(con, public: str, df: pd.DataFrame) -> pd.DataFrame | None:
    """The exact table ``results.X`` of ``results.X_public`` (``df``), when it holds the same
    rows in the same order (checked on the text columns both have), else None."""
    name = public.removesuffix("_public")
    if name == public or name not in _results_tables(con):
        return None
    ex = con.execute(f"select * from results.{name} order by rowid").df()
    if len(ex) != len(df):
        return None
    keys = [c for c in df.columns if c in ex.columns and df[c].dtype == object
            and ex[c].dtype == object and not disclosure.COUNT_NAME.match(c)
            and c not in ("suppressed", "notes")]
    if not keys or any((df[c].fillna("").astype(str).to_numpy()
                        != ex[c].fillna("").astype(str).to_numpy()).any() for c in keys):
        return None
    return ex.reset_index(drop=True)


# --------------------------------------------------------------------------- figures

def save_figure(fig, folder: Path, stem: str) -> dict[str, Path]:
    """``stem``.svg and ``stem``.png without dates or versions (byte-identical reruns),
    each text measured once for both (:mod:`pipeline.figure_text`). Inside
    :func:`saving_beside`, possibly by a second process while this one goes on."""
    if _BESIDE and _BESIDE[-1].save(fig, folder, stem):
        return {"svg": folder / f"{stem}.svg", "png": folder / f"{stem}.png"}
    return _save_now(fig, folder, stem)


def _save_now(fig, folder: Path, stem: str) -> dict[str, Path]:
    import matplotlib.pyplot as plt

    from pipeline.figure_text import text_measured_once
    from pipeline.stats._style import style

    svg, png = folder / f"{stem}.svg", folder / f"{stem}.png"
    with style(), text_measured_once():
        fig.savefig(svg, format="svg", bbox_inches="tight",
                    metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
        fig.savefig(png, format="png", bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return {"svg": svg, "png": png}


class _Beside:
    """One forked process at a time saving a figure (:func:`_save_now`) while this one
    builds and saves the next: saving is most of the report's time and figures are
    independent. A figure whose process failed in any way is saved again here when the
    saves are joined, so that its error, if any, is raised as without the second process.
    Linux only (fork); elsewhere every figure is saved here."""

    def __init__(self) -> None:
        import sys

        self.enabled = sys.platform.startswith("linux")
        self.busy: tuple | None = None        # (pid, fig, folder, stem)
        self.failed: list[tuple] = []
        self.started = 0                      # figures given to a forked process

    def _reap(self, block: bool) -> bool:
        """Whether the forked save is over (recording a failed one)."""
        import os

        if self.busy is None:
            return True
        pid, status = os.waitpid(self.busy[0], 0 if block else os.WNOHANG)
        if pid == 0:
            return False
        if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
            self.failed.append(self.busy[1:])
        else:
            import matplotlib.pyplot as plt

            plt.close(self.busy[1])
        self.busy = None
        return True

    def save(self, fig, folder: Path, stem: str) -> bool:
        """Start saving ``fig`` in a forked process, unless one is still busy (then the
        caller saves it): whether it was started."""
        import os

        if not self.enabled or not self._reap(block=False):
            return False
        pid = os.fork()
        if pid == 0:   # the child: save, and leave without running this process's exit code
            code = 1
            try:
                from pipeline.parallel import plain_streams

                plain_streams()
                _save_now(fig, folder, stem)
                code = 0
            finally:
                os._exit(code)
        self.busy = (pid, fig, folder, stem)
        self.started += 1
        return True

    def join(self) -> None:
        self._reap(block=True)
        failed, self.failed = self.failed, []
        for fig, folder, stem in failed:
            _save_now(fig, folder, stem)


_BESIDE: list[_Beside] = []


@contextlib.contextmanager
def saving_beside():
    """:func:`save_figure` inside the block may save in a second process (:class:`_Beside`);
    every figure is written when the block ends."""
    saver = _Beside()
    _BESIDE.append(saver)
    try:
        yield saver
        _BESIDE.pop()
        saver.join()
    finally:
        if _BESIDE and _BESIDE[-1] is saver:
            _BESIDE.pop()
            saver._reap(block=True)


def _curve_frame(counts: pd.DataFrame) -> pd.DataFrame:
    """Pseudo person-level rows from the rounded curve counts."""
    reps = counts["count"].to_numpy(int)
    return pd.DataFrame({"group": np.repeat(counts["group"].to_numpy(), reps),
                         "time": np.repeat(counts["time"].to_numpy(), reps),
                         "event": np.repeat(counts["event"].to_numpy(), reps)})


def _fidelity_label(indicator: str) -> str:
    """'first network meeting within 24 h of referral' for ``p1_within_24h``."""
    from pipeline.metrics import FIDELITY_LABELS

    label = FIDELITY_LABELS.get(indicator, (None, indicator.replace("_", " ")))[1]
    return label[:1].lower() + label[1:]


def _arm_label(a: str) -> str:
    return {"open_dialogue": "Open Dialogue", "usual_care": "Usual care", "all": "Both arms"}.get(
        a, a)


def fidelity_figure(fo: pd.DataFrame, mr: pd.DataFrame):
    """Each site's hazard ratio of relapse against its fidelity indicator, with the
    meta-regression line (None with fewer than 3 sites or not one indicator).

    ``fo``: ``site_id, log_hr, se, hr`` and the indicator (a share 0..1) per site;
    ``mr``: the meta-regression's ``term, coef``. Plain tick labels on the log axis
    (0.5, 1, 2), site labels placed clear of each other and of the bubbles."""
    import matplotlib.pyplot as plt

    from pipeline.stats._style import PALETTE, label_points, plain_log_ticks, style

    mod = [c for c in fo.columns if c not in ("site_id", "log_hr", "se", "hr")]
    if len(mod) != 1 or len(fo) < 3:
        return None
    m = mod[0]
    with style():
        fig, ax = plt.subplots(figsize=(6.0, 4.2))
        w = 1 / fo["se"] ** 2
        sizes = (30 + 300 * w / w.max()).to_numpy()
        ax.scatter(100 * fo[m], fo["hr"], s=sizes, color=PALETTE[0], alpha=0.7,
                   edgecolor="white")
        coef = mr.set_index("term")["coef"]
        xs = np.linspace(0, 1, 50)
        fit = np.exp(coef["(Intercept)"] + coef[m] * xs)
        ax.plot(100 * xs, fit, color=PALETTE[1], lw=1.2, label="Meta-regression fit")
        ax.axhline(1.0, color="#777777", lw=0.8, ls="--")
        ax.set_yscale("log")
        ys = np.r_[fo["hr"].dropna().to_numpy(), fit, 1.0]
        ax.set_ylim(ys.min() / 1.25, ys.max() * 1.25)
        ax.set_xlim(-5, 105)
        ax.set_xlabel(f"Open Dialogue arm: {_fidelity_label(m)} (percent of referrals)")
        ax.set_ylabel("Site hazard ratio of relapse (log scale)")
        ax.legend(loc="upper right")
        fig.tight_layout()
        plain_log_ticks(ax, "y", min_gap_in=0.22)
        shown = (fo[m].notna() & fo["hr"].notna()).to_numpy()
        label_points(ax, 100 * fo.loc[shown, m], fo.loc[shown, "hr"],
                     list(fo.loc[shown, "site_id"]), sizes=sizes[shown])
    return fig


def subgroup_figure(sg: pd.DataFrame):
    """Forest plot of the primary outcome's hazard ratio within each subgroup level, one
    block per subgroup headed by its interaction test."""
    import matplotlib.pyplot as plt

    from pipeline.stats._style import style

    rows = []
    for var, g in sg.groupby("subgroup", sort=False):
        name = report_words.label(var)
        ip = g["interaction_p"].iloc[0]
        rows.append((f"{name[:1].upper() + name[1:]} (interaction {report_words.p_text(ip)})"
                     if pd.notna(ip) else
                     f"{name[:1].upper() + name[1:]} (too many levels for an interaction test)",
                     None))
        rows += [(f"   {report_words.label(r.level)}", r) for r in g.itertuples()]
    with style():
        fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(rows) + 1.0))
        for i, (label, r) in enumerate(rows):
            y = len(rows) - i
            if r is None:
                ax.text(0.0, y, label, transform=ax.get_yaxis_transform(), ha="right",
                        va="center", fontsize=8, fontweight="bold")
                continue
            if pd.isna(r.hr):
                ax.text(0.0, y, label, transform=ax.get_yaxis_transform(), ha="right",
                        va="center", fontsize=8)
                ax.text(1.02, y, "too few events to show", transform=ax.get_yaxis_transform(),
                        ha="left", va="center", fontsize=7.5, color="#555")
                continue
            ax.plot([r.lower, r.upper], [y, y], color="#005eb8", lw=1.2)
            ax.plot(r.hr, y, "s", color="#005eb8", ms=5)
            ax.text(0.0, y, label, transform=ax.get_yaxis_transform(), ha="right",
                    va="center", fontsize=8)
            ax.text(1.02, y, f"{r.hr:.2f} ({r.lower:.2f} to {r.upper:.2f})",
                    transform=ax.get_yaxis_transform(), ha="left", va="center", fontsize=7.5)
        ax.axvline(1.0, color="#444", lw=0.8, ls="--")
        ax.set_xscale("log")
        lo = np.nanmin(sg["lower"]) if sg["lower"].notna().any() else 0.5
        hi = np.nanmax(sg["upper"]) if sg["upper"].notna().any() else 2.0
        ticks = [t for t in (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20) if lo / 1.5 <= t <= hi * 1.5]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_yticks([])
        ax.set_ylim(0.3, len(rows) + 0.7)
        ax.set_xlabel("Hazard ratio of relapse within the subgroup, Open Dialogue vs usual "
                      "care (log scale)")
        fig.subplots_adjust(left=0.32, right=0.74)
    return fig


_FUNNEL_AXES = {
    "binomial": ("Referrals or people in the Open Dialogue arm (rounded)", "Percent"),
    "time_to_event": ("Effective number of people, p(1 - p) / variance", "Percent relapsed"),
    "mean": ("Precision of the site's mean, 1 / standard error²", "Mean percent of meetings"),
}


def funnel_figures(con, ap: dict, folder: Path) -> dict[str, dict]:
    """A funnel figure per measure of ``results.analysis_funnel_public`` (sites whose values
    are published; the limits, target and flags as published there), every site labelled,
    coloured better / worse for the measure's direction."""
    from pipeline.analyses.site_comparison import funnel_of
    from pipeline.stats import plot_funnel
    from pipeline.stats._result import NotEstimable

    fu = con.execute("select * from results.analysis_funnel_public order by rowid").df()
    out = {}
    if "kind" not in fu.columns:  # a table from before the gallery
        return out
    for ind, g in fu.groupby("indicator", sort=False):
        g = g[~g["flag"].isin(["suppressed", "not drawn"])]
        if len(g) < 2:
            continue
        used = g["limits_used"].iloc[0]
        try:
            fr = funnel_of(g, ap["funnel_limits"], None if used in ("exact", "normal") else used,
                           dispersion=(float(g["phi"].iloc[0]), float(g["tau2"].iloc[0])))
        except NotEstimable:
            continue
        xl, yl = _FUNNEL_AXES[g["kind"].iloc[0]]
        fig = plot_funnel(fr, xlabel=xl, ylabel=yl, multiplier=100, title=g["title"].iloc[0],
                          flags=list(g["flag"]), higher_is_better=bool(g["higher_is_better"].iloc[0]))
        out[f"funnel_{ind}"] = save_figure(fig, folder, f"funnel_{ind}")
    return out


#: Per-site forest plots of the Open Dialogue minus usual care difference, from the
#: published per-site counts: (outcome, metric, stem, x label).
SITE_FORESTS = (
    ("relapse", "aj_365d", "forest_relapse_by_day_365",
     "Relapse by day 365 (Aalen-Johansen), Open Dialogue minus usual care, percentage points"),
    ("involuntary_admission", "any", "forest_any_involuntary_admission",
     "Any involuntary admission, Open Dialogue minus usual care, percentage points"),
    ("antipsychotic", "any", "forest_any_antipsychotic",
     "Any antipsychotic, Open Dialogue minus usual care, percentage points"),
    ("antipsychotic", "last_days", "forest_antipsychotic_last_days",
     "Antipsychotic in the last days, Open Dialogue minus usual care, percentage points"),
    ("return_to_work", "at_2y", "forest_in_work_at_2y",
     "In work or education at 2 years, Open Dialogue minus usual care, percentage points"),
)


def site_differences(o: pd.DataFrame, outcome: str, metric: str, conf: float = 0.95):
    """Per-site differences (Open Dialogue minus usual care, percentage points) with their
    variances, from the *published* per-site values of ``metrics_outcomes_public``: a
    proportion from its rounded counts (Wald variance ``p (1 - p) / n``), a cumulative
    incidence read off the rounded curve with the standard error its published log-scale
    lower limit implies. Returns ``(frame of site, yi, vi, left out {site: why})``; anyone
    can recompute it from the tables, so it gives no hidden count back."""
    from scipy import stats as sps

    z = sps.norm.ppf(0.5 + conf / 2)
    sel = o[(o.dimension == "site") & (o.outcome == outcome) & (o.metric == metric)
            & (o.level != "all")]
    rows, left = [], {}
    for site, g in sel.groupby("level", sort=True):
        arm = g.set_index("arm")
        if not {"open_dialogue", "usual_care"} <= set(arm.index):
            left[site] = "one arm only"
            continue
        est, var = [], []
        for a in ("open_dialogue", "usual_care"):
            r = arm.loc[a]
            if r.ci_method.startswith(("Aalen", "Kaplan")):
                p_, lo = float(r.estimate), float(r.lower)
                if not (np.isfinite(p_) and np.isfinite(lo)) or p_ <= 0 or lo <= 0:
                    break
                se = p_ * (np.log(p_) - np.log(lo)) / z
            else:
                if pd.isna(r.n) or pd.isna(r.events) or not r.n:
                    break
                p_ = float(r.events) / float(r.n)
                se = np.sqrt(p_ * (1 - p_) / float(r.n))
            if not se > 0:
                break
            est.append(p_)
            var.append(se ** 2)
        if len(est) < 2:
            left[site] = "a count or estimate suppressed, or an arm at 0% or 100%"
            continue
        rows.append(dict(site=site, yi=100 * (est[0] - est[1]), vi=1e4 * (var[0] + var[1])))
    return pd.DataFrame(rows, columns=["site", "yi", "vi"]), left


def site_forest_figures(con, ap: dict, folder: Path) -> dict[str, dict]:
    """A forest plot per outcome of :data:`SITE_FORESTS`: the sites' differences
    (:func:`site_differences`) pooled by the random-effects meta-analysis the plan names
    (``analyse.meta_method``, ``meta_test``), with the prediction interval. Each figure
    dict carries ``left_out`` (site: why), for the caption."""
    from pipeline.stats import meta_analysis, plot_forest
    from pipeline.stats._result import NotEstimable

    o = con.execute("select * from results.metrics_outcomes_public").df()
    out = {}
    for outcome, metric, stem, xlabel in SITE_FORESTS:
        d, left = site_differences(o, outcome, metric, float(ap["conf_level"]))
        if len(d) < 2:
            continue
        try:
            ma = meta_analysis(d["yi"], d["vi"], method=ap["meta_method"], test=ap["meta_test"],
                               conf_level=float(ap["conf_level"]), labels=list(d["site"]),
                               prediction="higgins")
        except NotEstimable:
            continue
        fig = plot_forest(ma, xlabel=xlabel, title="", bounds=(-100.0, 100.0))
        out[stem] = {**save_figure(fig, folder, stem), "left_out": left}
    return out


def figures(con, params: dict, folder: Path) -> dict[str, dict]:
    """Every figure of the report, from the results tables (disclosure-controlled)."""
    from pipeline import analyse
    from pipeline.stats import (aalen_johansen, funnel, kaplan_meier, meta_analysis,
                                plot_cumulative_incidence, plot_forest, plot_funnel,
                                plot_kaplan_meier)

    ap = analyse.resolve_params(params.get("analyse"))
    conf = float(ap["conf_level"])
    times = [float(t) for t in ap["curve_times"]]
    out: dict[str, dict] = {}
    have = {r[0] for r in con.execute("select table_name from information_schema.tables "
                                      "where table_schema = 'results'").fetchall()}
    cc = (con.execute("select * from results.analysis_curve_counts "
                      "order by outcome, \"group\", time, event").df()
          if "analysis_curve_counts" in have else None)
    if cc is not None and cc.loc[cc.outcome == "relapse", "count"].sum() > 0:
        d = _curve_frame(cc[cc.outcome == "relapse"])
        d["group"] = d["group"].map(_arm_label)
        d["relapse"] = (d["event"] == 1).astype(int)
        km = kaplan_meier(d, "time", "relapse", group="group", conf_level=conf)
        km.group_name = "Arm"
        fig = plot_kaplan_meier(km, times=times, xlabel="Days since referral accepted",
                                ylabel="Proportion without relapse")
        out["relapse_km"] = save_figure(fig, folder, "relapse_km")
        aj = aalen_johansen(d, "time", "event", cause=1, group="group", conf_level=conf)
        fig = plot_cumulative_incidence(aj, cause=1, times=times,
                                        xlabel="Days since referral accepted",
                                        ylabel="Cumulative incidence of relapse")
        out["relapse_cif"] = save_figure(fig, folder, "relapse_cif")
    if "analysis_site_effects_public" in have:
        se = con.execute("select * from results.analysis_site_effects_public order by site_id").df()
        se = se[se["log_hr"].notna() & (se["se"] > 0)]  # sites whose ratio may be shown
        if len(se) >= 2:
            ma = meta_analysis(se["log_hr"], se["se"] ** 2, method=ap["meta_method"],
                               test=ap["meta_test"], conf_level=conf, labels=list(se["site_id"]),
                               prediction="higgins")
            fig = plot_forest(ma, exponentiate=True, xlabel="Hazard ratio of relapse, Open "
                              "Dialogue vs usual care (log scale)",
                              title="Relapse: site-specific hazard ratios")
            out["forest_relapse"] = save_figure(fig, folder, "forest_relapse")
    if "analysis_subgroups_public" in have:
        sg = con.execute("select * from results.analysis_subgroups_public").df()
        if len(sg):
            out["subgroups"] = save_figure(subgroup_figure(sg), folder, "subgroups")
    if "analysis_funnel_public" in have:
        out.update(funnel_figures(con, ap, folder))
    if "metrics_outcomes_public" in have:
        out.update(site_forest_figures(con, ap, folder))
    if "analysis_fidelity_by_site_outcome_public" in have and \
            "analysis_fidelity_meta_regression_public" in have:
        fo = con.execute("select * from results.analysis_fidelity_by_site_outcome_public "
                         "order by site_id").df()
        mr = con.execute("select * from results.analysis_fidelity_meta_regression_public").df()
        fig = fidelity_figure(fo, mr)
        if fig is not None:
            out["fidelity_vs_relapse"] = save_figure(fig, folder, "fidelity_vs_relapse")
    from pipeline import report_weighting

    out.update(report_weighting.figures(con, folder, save_figure, disclosure.settings(params)))
    from pipeline import report_rtw

    out.update(report_rtw.figures(con, folder, save_figure))
    from pipeline import report_sensitivity

    out.update(report_sensitivity.figures(con, folder, save_figure))
    return out


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Arial,sans-serif;margin:0;color:#1d1d1d;
background:#fff}main{max-width:68em;margin:0 auto;padding:1.5em 2em 4em}
h1{font-size:1.7em;margin-bottom:.2em}h2{border-bottom:2px solid #005eb8;padding-bottom:.2em;
margin-top:2em}h3{margin-top:1.5em}p.lead{font-size:1.05em;color:#333}
table{border-collapse:collapse;margin:.6em 0 1.4em;font-size:.9em}
td,th{border:1px solid #cfd4d9;padding:3px 7px;vertical-align:top}th{background:#eef2f6;
text-align:left}td.num,td.count{text-align:right;font-variant-numeric:tabular-nums}
caption{caption-side:top;text-align:left;font-weight:600;padding:.3em 0}
figure{margin:1em 0 2em}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#333;max-width:60em}.box{border:1px solid #cfd4d9;
border-left:5px solid #005eb8;padding:.6em 1em;margin:1em 0;background:#f7f9fb}
.flow{display:flex;flex-wrap:wrap;gap:.8em;align-items:stretch;margin:1em 0}
.flow div{border:1px solid #005eb8;border-radius:4px;padding:.5em .9em;min-width:11em;
background:#f3f7fb}.flow .arrow{border:none;background:none;min-width:0;align-self:center;
font-size:1.4em}.consort{display:flex;gap:2em;margin:1em 0}.cf-col{flex:1;display:flex;
flex-direction:column;gap:.5em}.cf-head{font-weight:700;text-align:center;border-bottom:2px solid
#005eb8}.cf-box{border:1px solid #005eb8;border-radius:4px;padding:.4em .8em;background:#f3f7fb}
.cf-out{margin-left:2em;border-style:dashed;background:#fff}footer{margin-top:3em;font-size:.8em;color:#444;border-top:1px solid #ccc}
footer code{font-size:.95em}.muted{color:#555}
.synthetic{border:1px solid #e0a030;border-left:6px solid #d97800;background:#fff6e8;
padding:.6em 1em;margin:.8em 0}table.facts{width:100%;font-size:.95em}table.facts th{width:11em}
table.facts ul{margin:.2em 0;padding-left:1.2em}table.facts li.verdict{list-style:none}h2#summary{margin-top:1em}p.meta{margin:.2em 0 .8em;color:#444}nav.contents{margin:.6em 0 1em}
nav.contents ul{columns:2;margin:.3em 0;padding-left:1.2em}dl.glossary dt{font-weight:600;
margin-top:.6em}dl.glossary dd{margin-left:1.5em}
"""


def _esc(v) -> str:
    return htmllib.escape(str(v))


def _fmt(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
        return ""
    return f"{float(v):.{digits}f}"


def _count_td(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
        return f"<td class='count'>{disclosure.SUPPRESSED}</td>"
    return f"<td class='count'>{int(v):,}</td>"


def site_arm_rows(sites: list[str], n_of) -> list[str]:
    """HTML rows of people per site and arm: a row per site, then "All sites" (``all``);
    a cell per arm, then both arms (``all``). ``n_of(site, arm)``: the count, or None."""
    rows = []
    for s in [*sites, "all"]:
        cells = [f"<td>{_esc('All sites' if s == 'all' else s)}</td>"]
        cells += [_count_td(n_of(s, a)) for a in ("open_dialogue", "usual_care", "all")]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return rows


def _table(caption: str, header: list[str], rows: list[str]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    return (f"<table><caption>{_esc(caption)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _figure(fig: dict | None, alt: str, caption: str, missing: str = "") -> str:
    """A figure with its caption; without one, ``missing`` (why it is not drawn) if given."""
    if not fig:
        why = missing[:1].upper() + missing[1:].rstrip(".") + "." if missing else ""
        return f"<p class='muted'>{_esc(alt)}: not drawn. {_esc(why)}</p>" if missing else ""
    data = base64.b64encode(fig["svg"].read_bytes()).decode("ascii")
    return (f"<figure><img alt='{_esc(alt)}' src='data:image/svg+xml;base64,{data}'>"
            f"<figcaption>{caption}</figcaption></figure>")


def _pct_ci(est, lo, hi, pct: bool = True, digits: int | None = None) -> str:
    """A percent (``pct``, one decimal) or a number (``digits`` decimals, default 2) with
    its interval."""
    if est is None or (isinstance(est, float) and np.isnan(est)):
        return disclosure.SUPPRESSED
    k = 100 if pct else 1
    d = 1 if pct else (2 if digits is None else digits)
    s = f"{k * est:.{d}f}"
    if lo is not None and not (isinstance(lo, float) and np.isnan(lo)):
        s += f" ({k * lo:.{d}f} to {k * hi:.{d}f})"
    return s


def _not_estimated_box(e: pd.Series, what: str) -> str | None:
    """The box of an estimate the data do not hold (``method`` "not estimated"): why, in
    place of the number; None for an estimate."""
    if e.method != "not estimated":
        return None
    why = str(e.notes or "").removeprefix("Not estimated: ")
    return (f"<div class='box'><strong>{_esc(what)}: not estimated.</strong> "
            f"{_esc(why[:1].upper() + why[1:])}<br>"
            f"<span class='muted'>Estimand: {_words_sentence(e.estimand)}</span></div>")


def _words_sentence(text) -> str:
    """Reader's words (labels not codes), escaped, as one sentence."""
    return _esc(report_words.sentence(report_words.reader(text)))


def _about(e) -> str:
    """The estimand, the method and the notes of an estimate (``analysis_estimates.notes``:
    ICC, fallbacks, dropped sites), each its own sentence, in muted lines."""
    out = (f"<span class='muted'>Estimand: {_words_sentence(e.estimand)} "
           f"Method: {_words_sentence(e.method)}</span>")
    notes = getattr(e, "notes", None)
    if notes is not None and not (isinstance(notes, float) and np.isnan(notes)) \
            and str(notes).strip():
        out += f"<br><span class='muted'>Notes: {_words_sentence(notes)}</span>"
    return out


def _estimate_box(e: pd.Series, what: str) -> str:
    missing = _not_estimated_box(e, what)
    if missing:
        return missing
    if not np.isfinite(e.estimate):   # a fit that did not converge: no number to show
        return (f"<div class='box'><strong>{_esc(what)}: no finite estimate</strong> (the "
                "model gave none; its notes say why)<br>" + _about(e) + "</div>")
    ci = "" if np.isnan(e.lower) else f" (95% CI {e.lower:.2f} to {e.upper:.2f})"
    p = "" if np.isnan(e.p) else f"; {_esc(report_words.p_text(e.p))}"
    return (f"<div class='box'><strong>{_esc(what)}: {e.estimate:.2f}{ci}{p}</strong><br>"
            + _about(e) + "</div>")


def _slope_box(e: pd.Series) -> str:
    """The fidelity meta-regression slope: a change in log hazard ratio, not a hazard ratio.

    ``e``: the ``fidelity`` row of the estimates (``measure`` "change in log hazard ratio per
    unit of <indicator>", the indicator a share from 0 to 1)."""
    ind = str(e.measure).rsplit("per unit of ", 1)[-1]
    what = _fidelity_label(ind)
    missing = _not_estimated_box(e, f"Fidelity and outcome (meta-regression on {what})")
    if missing:
        return missing
    ci = "" if np.isnan(e.lower) else f" (95% CI {e.lower:.2f} to {e.upper:.2f})"
    p = "" if np.isnan(e.p) else f"; {_esc(report_words.p_text(e.p))}"
    per10 = f"{np.exp(0.1 * e.estimate):.2f}"
    if not np.isnan(e.lower):
        per10 += f" (95% CI {np.exp(0.1 * e.lower):.2f} to {np.exp(0.1 * e.upper):.2f})"
    k = getattr(e, "clusters", None)
    sites = f"{int(k)} sites" if k is not None and not pd.isna(k) else "few sites"
    return (f"<div class='box'><strong>Fidelity and outcome (meta-regression): slope "
            f"{e.estimate:+.2f}{ci} in log hazard ratio of relapse from 0% to 100% of "
            f"referrals with {_esc(what)}{p}.</strong> This is a change in the log hazard "
            f"ratio, not a hazard ratio. As a ratio of hazard ratios it is {per10} for every 10 "
            f"percentage points more. Above 0 (a ratio above 1) means that sites with more "
            f"referrals meeting this standard have a higher hazard ratio, that is less benefit "
            f"from Open Dialogue; below 0, more benefit. {sites}: read as a description.<br>"
            + _about(e) + "</div>")


def _horizon_words(days: int) -> str:
    """'1 year' for 365 days, '2 years' for 730, else 'day N'."""
    if days % 365 == 0:
        y = days // 365
        return f"{y} year{'s' if y > 1 else ''}"
    return f"day {days}"


def _definition_words(d: dict) -> dict[str, str]:
    """The outcome definitions ``derived.*`` was built with, in words (section 4)."""
    comp = {"admissions": "hospital admissions", "crisis_episodes": "crisis resolution / home "
            "treatment episodes", "detentions": "detentions under sections "
            + ", ".join(d["involuntary_sections"]) + " of the Mental Health Act (an admission "
            "under the Act, recorded as an admission or not)"}
    parts = [comp[c] for c in d["relapse_components"]]
    gap, dgap, grace = d["episode_gap_days"], d["detention_gap_days"], d["relapse_grace_days"]
    at_risk = d["rate_person_time"] == "at_risk"
    fu = d["follow_up_days"]
    relapse = (
        "A relapse is an acute-care episode starting after the referral was accepted"
        + (f" and after a grace period of {grace} days" if grace else "")
        + ": " + "; ".join(parts) + f", merged into one episode when they overlap or one starts "
        f"within {gap} day{'s' if gap != 1 else ''} of the end of the one before (the continuous "
        "inpatient spell convention of hospital statistics), so a crisis episode followed by an "
        "admission, back-to-back crisis episodes or a readmission soon after discharge are one "
        "relapse. An episode under way at the referral"
        + (" or starting in the grace period" if grace else "")
        + " is not a relapse, nor is anything merged into it. Death ends follow-up without "
        "relapse. Relapses per person-year divide by "
        + ("the days out of acute care (a day in an episode is not at risk of a new one)."
           if at_risk else "the follow-up time."))
    involuntary = (
        "An involuntary admission is a Mental Health Act episode: detentions under sections "
        + ", ".join(d["involuntary_sections"]) + ", with a place of safety ("
        + "/".join(d["place_of_safety_sections"]) + ") or holding power ("
        + "/".join(d["holding_power_sections"]) + ") leading into them, merged when the next "
        f"starts within {dgap} day{'s' if dgap != 1 else ''} of the end of the one before, so a "
        "section 2 converted to a section 3 is one admission. It counts on the start of its "
        "first detention under those sections during follow-up; "
        + ("the detention of someone already in hospital counts. " if d["involuntary_in_hospital"]
           else "the detention of someone already in hospital does not count. ")
        + "Days detained run over the whole episode. Places of safety and holding powers alone "
        "are not involuntary admissions. Involuntary admissions per person-year divide by "
        + ("the days not detained" + ("" if d["involuntary_in_hospital"] else " and not in hospital")
           + "." if at_risk else "the follow-up time."))
    binary = (f"Any use, use in the last {d['last_days_antipsychotic']} days and any "
              "involuntary admission are "
              + (f"over the same {fu} days for everyone: their denominator is the people "
                 f"followed for all {fu} days (people whose follow-up ended earlier, by death or "
                 "the end of their data, are not known and left out)."
                 if d["binary_window"] == "whole_window" else
                 "over each person's own follow-up, which is shorter for people followed for "
                 "less time (unequal windows)."))
    return {"relapse": relapse, "involuntary": involuntary, "binary": binary}


def _open_end_words(con) -> str:
    """How records with no end date were ended (``derived.ref_open_end``), in words."""
    try:
        rows = con.execute("select table_name, detail, end_rule, max_days "
                           "from derived.ref_open_end").fetchall()
    except Exception:  # a warehouse older than the open-end rules
        return ""

    def rule(end_rule, max_days):
        if end_rule == "data_end":
            return "at the person's last day of data"
        return f"after {max_days} day{'s' if max_days != 1 else ''}"

    parts = []
    for table in ("admissions", "crisis_episodes", "detentions", "prescriptions"):
        mine = [r for r in rows if r[0] == table]
        default = next((r for r in mine if r[1] is None), None)
        groups: dict[str, list[str]] = {}
        for r in sorted((r for r in mine if r[1] is not None), key=lambda r: r[1]):
            groups.setdefault(rule(r[2], r[3]), []).append(r[1])
        words = table.replace("_", " ")
        if groups:
            by = "; ".join(f"{' and '.join(secs)}: {how}" for how, secs in groups.items())
            rest = f", other sections {rule(default[2], default[3])}" if default else ""
            parts.append(f"{words} by section ({by}){rest}")
        elif default is not None:
            parts.append(f"{words} {rule(default[2], default[3])}")
    if not parts:
        return ""
    return ("A record with no end date (an open record) ends as follows, or at the person's "
            "last day of data if that is sooner: " + "; ".join(parts) + ". Bed days, days "
            "detained and days on antipsychotics count up to that end; the data-quality report "
            "counts the open records per table and site.")


def _relapse_site_header(first: str, horizon: int) -> list[str]:
    """Header of the per-site (per-group) relapse and involuntary admission table."""
    rel = f"% relapsed by {_horizon_words(horizon)} (95% CI), from rounded counts"
    return [first, "OD: n", f"OD: {rel}", "UC: n", f"UC: {rel}", "OD: n",
            "OD: involuntary admissions per person-year", "UC: n",
            "UC: involuntary admissions per person-year"]


def _funnel_note(cfg: dict, ap: dict) -> str:
    """What the funnel plots show, how their limits allow for overdispersion, and where
    their numbers come from (the caption shared by the gallery)."""
    od = ap.get("funnel_overdispersion")
    inner, outer = (f"{100 * float(x):g}" for x in sorted(ap["funnel_limits"]))
    how = {
        "additive": "adjusted for overdispersion by an additive random-effects term "
                    "(Spiegelhalter 2005; as FunnelPlotR and NHS Digital's SHMI): the limits "
                    "are widened by the between-site variance tau² estimated, as in a "
                    "DerSimonian-Laird meta-analysis, from the sites' z-scores Winsorised at "
                    "10% and 90%. This is the default because sites genuinely differ (in "
                    "case-mix, teams, recording), so a limit that allows only for chance flags "
                    "most large sites; the additive term widens the limits of large sites more "
                    "than small ones, unlike the multiplicative phi, which scales every limit "
                    "alike. With few sites tau² is itself uncertain",
        "multiplicative": "adjusted for overdispersion by the multiplicative factor phi "
                          "(Spiegelhalter 2005): the limits are widened by the square root "
                          "of phi, the mean squared z-score Winsorised at 10% and 90%",
        None: "not adjusted for overdispersion (analyse.funnel_overdispersion: null): they "
              "allow for chance alone",
    }[od]
    return (f"<p>Each funnel plot shows one measure for the Open Dialogue arm of each site "
            f"(every site labelled) against its size, with {inner}% (dashed) and {outer}% "
            f"(solid) control limits around the overall value of all sites (dark line). A site "
            f"outside the {inner}% limits is marked better (green triangle) or worse (vermilion "
            f"triangle) than expected, by the measure's direction (for fidelity, higher is "
            f"better; for relapse, involuntary admission and antipsychotic use, lower; for work "
            f"or education, higher); one outside the {outer}% limits, more so. The limits are "
            f"{how}. Above each plot: the limits used. When the sites vary no more than chance "
            f"would suggest (phi &le; 1) no adjustment is made and the limits are <em>exact</em> "
            f"for counts: the binomial quantiles interpolated as Spiegelhalter (2005) does, so "
            f"the limit is a smooth curve rather than a staircase; for an estimate with a "
            f"standard error they are <em>normal</em>. Spiegelhalter's chi-square test of no "
            f"overdispersion (k phi against chi² on k - 1 df) is given per plot.</p>"
            f"<p class='muted'>What is plotted: proportions (binary fidelity indicators and "
            f"outcomes) from the counts of the tables rounded to the nearest {cfg['round_to']}, "
            f"against the rounded number of referrals or people. Relapse by day 365 is the "
            f"Aalen-Johansen cumulative incidence (death a competing event), not the share "
            f"relapsed among people whose status is known (which leaves out those censored "
            f"earlier and overstates the risk), read off the rounded curve as in the tables (within 5 percentage points of the exact "
            f"estimate, else hidden: the disclosure policy's price), "
            f"plotted against its effective number of people p(1 - p) / variance (the number "
            f"of people a plain proportion with the same precision would need; the number of "
            f"people itself when nobody is censored). Shares of meetings are means of each "
            f"referral's share, plotted against their precision 1 / SE². The overall value, "
            f"the overdispersion and the flags are computed from these published numbers, so "
            f"anyone can check them and they give back no hidden count. Sites with suppressed "
            f"values are not drawn.</p>")


def _funnel_gallery(con, figs: dict, fnotes: dict, cfg: dict, ap: dict) -> str:
    """Section 6's funnel plots: one per measure, with its test of overdispersion; the
    measures that cannot be drawn listed with why."""
    tabs = _results_tables(con)
    if "analysis_funnel_public" not in tabs:
        return ""
    fu = con.execute("select * from results.analysis_funnel_public order by rowid").df()
    if "kind" not in fu.columns:
        return ""
    P = ["<h3 id='funnels'>Funnel plots: where each site stands</h3>", _funnel_note(cfg, ap)]
    G = []  # the gallery: two figures a row on a wide screen, one on a narrow one
    for ind, g in fu.groupby("indicator", sort=False):
        title = g["title"].iloc[0]
        fig = figs.get(f"funnel_{ind}")
        hidden = sorted(g.loc[g["flag"].isin(["suppressed", "not drawn"]), "site_id"])
        k = int((~g["flag"].isin(["suppressed", "not drawn"])).sum())
        phi, phi_p, used = g["phi"].iloc[0], g["phi_p"].iloc[0], g["limits_used"].iloc[0]
        adj = {"additive": f"additive overdispersion, tau² = {g['tau2'].iloc[0]:.3g}",
               "multiplicative": f"multiplicative overdispersion, phi = {phi:.2f}",
               "exact": "exact limits (no overdispersion adjustment)",
               "normal": "normal limits (no overdispersion adjustment)"}[used]
        better = ", ".join(sorted(g.loc[g["assessment"] == "better", "site_id"])) or "none"
        worse = ", ".join(sorted(g.loc[g["assessment"] == "worse", "site_id"])) or "none"
        pval = "p &lt; 0.001" if phi_p < 0.001 else f"p = {phi_p:.2f}"
        cap = (f"{_esc(title)}: {k} sites drawn; {adj}; phi = {phi:.2f} (test of no "
               f"overdispersion {pval}). Better than expected: {_esc(better)}; worse: "
               f"{_esc(worse)}."
               + (f" Not drawn (values suppressed): {_esc(', '.join(hidden))}." if hidden else ""))
        G.append(_figure(fig, f"Funnel plot: {title}", cap,
                         fnotes.get(f"funnel_{ind}", "fewer than two sites can be drawn")))
    P.append("<div style='display:grid;grid-template-columns:repeat(auto-fill,minmax(28em,1fr));"
             "gap:0 1.5em'>" + "\n".join(G) + "</div>")
    gone = [(item.removeprefix("funnel_"), why) for item, why in fnotes.items()
            if item.startswith("funnel_") and item.removeprefix("funnel_") not in set(fu.indicator)]
    if gone:
        from pipeline.analyses.site_comparison import OUTCOME_FUNNEL_LABELS
        from pipeline.metrics import FIDELITY_LABELS

        def name(i):
            return OUTCOME_FUNNEL_LABELS.get(i) or FIDELITY_LABELS.get(
                i, (None, i.replace("_", " ")))[1]

        items = "".join(f"<li>{_esc(name(i))}: {_esc(why)}</li>" for i, why in gone)
        P.append(f"<p>Not drawn, and why:</p><ul class='muted'>{items}</ul>")
    return "\n".join(P)


def _site_forests_html(figs: dict, ap: dict) -> str:
    """Per-site forest plots of each outcome (:func:`site_forest_figures`)."""
    P = []
    for outcome, metric, stem, xlabel in SITE_FORESTS:
        f = figs.get(stem)
        what = xlabel.split(",")[0]
        if not f:
            P.append(_figure(None, f"Forest plot: {what}", "", "fewer than two sites have both "
                             "arms' values published"))
            continue
        left = f.get("left_out") or {}
        gone = "; ".join(f"{s} ({w})" for s, w in sorted(left.items()))
        P.append(_figure(f, f"Forest plot: {what}",
                         f"{_esc(what)}: the difference between the arms in each site "
                         "(percentage points, Open Dialogue minus usual care; below 0 means "
                         "fewer in the Open Dialogue arm) with its 95% CI, from the published "
                         "per-site values (proportions from rounded counts, Wald intervals; "
                         "relapse from the rounded Aalen-Johansen curves), pooled by "
                         f"random-effects meta-analysis ({_esc(report_words.label(ap['meta_method']))}, "
                         f"{_esc(report_words.label(ap['meta_test']))}); the orange row is the 95% prediction "
                         "interval for a new site. A description of how sites differ, not a "
                         "test of the trial's hypotheses (unadjusted; clusters not allowed for)."
                         + (f" Not drawn: {_esc(gone)}." if gone else "")))
    if not P:
        return ""
    return "<h3 id='site-forests'>Differences between arms in each site</h3>" + "\n".join(P)


def _rounded_note(step: int, tol: float = 0.05) -> str:
    return (f"<p class='muted'>Percent relapsed: the Aalen-Johansen cumulative incidence (death "
            f"a competing event) read off the curve re-drawn from cumulative counts rounded to "
            f"multiples of {step}, the curves of section 4.1; with its 95% CI from the same "
            f"rounded counts. In a small group it can differ from the exact estimate by several "
            f"percentage points (exact estimates of small groups could give their counts away), "
            f"so compare groups with the hazard ratios, which use the exact "
            f"data. Where the re-drawn estimate has no interval or differs from the exact one by "
            f"more than {100 * float(tol):g} percentage points it is not shown "
            f"({disclosure.SUPPRESSED}; the flag column of tables/metrics_outcomes.csv says why). "
            f"Involuntary admissions per person-year: rounded admissions over rounded "
            f"person-years.</p>")


def _outcome_rows(o: pd.DataFrame, outcome: str, metric_list: list[str]) -> list[str]:
    rows = []
    for metric in metric_list:
        sel = o[(o.outcome == outcome) & (o.metric == metric) & (o.level == "all")]
        if sel.empty:
            continue
        label, unit = sel.label.iloc[0], sel.unit.iloc[0]
        pct = unit == "proportion"
        cells = [f"<td>{_esc(label)}{' (%)' if pct else ' (' + _esc(unit) + ')'}</td>"]
        for arm in ("open_dialogue", "usual_care"):
            r = sel[sel.arm == arm]
            if r.empty:
                cells += ["<td></td>", "<td></td>", "<td></td>"]
                continue
            r = r.iloc[0]
            cells.append(_count_td(r.n))
            cells.append(_count_td(r.events) if pd.notna(r.events) or r.suppressed
                         else "<td class='num'></td>")
            cells.append(f"<td class='num'>{_pct_ci(r.estimate, r.lower, r.upper, pct, report_words.unit_digits(unit))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return rows


_OUTCOME_HEADER = ["Measure", "Open Dialogue: n", "events / people with it", "estimate (95% CI)",
                   "Usual care: n", "events / people with it", "estimate (95% CI)"]


def _site_table(o: pd.DataFrame, metric_sel: list[tuple[str, str]]) -> list[str]:
    rows = []
    for level in [lv for lv in dict.fromkeys(o.level) if lv != "all"] + ["all"]:
        cells = [f"<td>{_esc('All sites' if level == 'all' else level)}</td>"]
        for outcome, metric in metric_sel:
            for arm in ("open_dialogue", "usual_care"):
                r = o[(o.outcome == outcome) & (o.metric == metric) & (o.level == level)
                      & (o.arm == arm)]
                if r.empty:
                    cells += ["<td></td>", "<td></td>"]
                    continue
                r = r.iloc[0]
                cells.append(_count_td(r.n))
                cells.append(f"<td class='num'>{_pct_ci(r.estimate, r.lower, r.upper, r.unit == 'proportion')}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return rows


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def table_one_rows(t1: pd.DataFrame, arms: list[str], count) -> list[str]:
    """HTML rows of a Table 1 (``variable, level, arm, kind, n, percent, summary, smd``):
    a heading row per categorical variable, a row per level or summary, one column per
    arm (counts through ``count``, the disclosure formatter) and the SMD."""
    rows: list[str] = []
    seen = set()
    for (var, level), g in t1.groupby(["variable", "level"], sort=False):
        g = g.set_index("arm")
        kind = g["kind"].iloc[0]
        if level and var not in seen and kind == "n (%)":
            smd = g["smd"].iloc[0]
            rows.append(f"<tr><td>{_esc(_cap(report_words.label(var)))}, n (%)</td>"
                        + "<td></td>" * len(arms)
                        + f"<td class='num'>{'' if pd.isna(smd) else f'{smd:.3f}'}</td></tr>")
        seen.add(var)
        name = _esc(_cap(report_words.label(var))) + ", " + _esc(kind) if not level \
            else f"&nbsp;&nbsp;{_esc(report_words.label(level))}"
        cells = [f"<td>{name}</td>"]
        for a in arms:
            r = g.loc[a]
            if kind.startswith("n"):
                pct = "" if pd.isna(r.percent) else f" ({r.percent:.1f}%)"
                cells.append(f"<td class='num'>{count(r.n)}{pct}</td>")
            else:
                cells.append(f"<td class='num'>"
                             f"{_esc(report_words.integral_summary(str(r.summary)))}</td>")
        smd = g["smd"].iloc[0] if not (level and kind == "n (%)") else np.nan
        cells.append(f"<td class='num'>{'' if pd.isna(smd) else f'{smd:.3f}'}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return rows


def provenance(con, params: dict) -> dict:
    """Input sha256s, params hash, lock-file hash and package versions (no dates)."""
    import platform
    from importlib import metadata

    from pipeline.config import PROJ_ROOT
    from pipeline.params import params_hash

    loads = con.execute("select table_name, source_file, sha256 from meta.loads "
                        "order by table_name, sha256").fetchall()
    lock = PROJ_ROOT / "uv.lock"
    versions = {"python": platform.python_version()}
    for pkg in ("odeval", "duckdb", "numpy", "pandas", "scipy", "statsmodels", "matplotlib"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return {
        "inputs": [{"table": t, "file": Path(f).name, "sha256": h} for t, f, h in loads],
        "params_sha256": params_hash(params),
        "lock_sha256": hashlib.sha256(lock.read_bytes()).hexdigest() if lock.exists() else None,
        "versions": versions,
    }


def _metrics_json(est: pd.DataFrame, o: pd.DataFrame) -> dict:
    """reports/metrics.json for ``dvc metrics show``: headline estimates (6 significant
    digits) and rounded counts."""
    def num(v):
        return None if v is None or pd.isna(v) else float(format(float(v), ".6g"))

    out: dict = {}
    for _, e in est.iterrows():
        key = f"{e.analysis}.{e.outcome}.{e.measure}".replace(" ", "_").replace("^", "")
        out[key] = {"estimate": num(e.estimate), "lower": num(e.lower), "upper": num(e.upper),
                    "p": num(e.p)}
    arms = {}
    for arm in ("open_dialogue", "usual_care", "all"):
        sel = o[(o.level == "all") & (o.arm == arm)]
        r = {}
        for _, m in sel.iterrows():
            r[f"{m.outcome}.{m.metric}"] = num(m.estimate)
        people = sel[(sel.outcome == "relapse") & (sel.metric == "rate")]
        r["n_people"] = None if people.empty or pd.isna(people.n.iloc[0]) else int(people.n.iloc[0])
        arms[arm] = r
    out["outcomes"] = arms
    return out


def render(con, params: dict, figs: dict[str, dict], prov: dict, *,
           dq_href: str | None = None, date=None) -> str:
    """The report as one HTML string (figures embedded; no external resource).

    ``dq_href``: the data-quality report's address relative to the report (None: not
    beside it); ``date``: the run date (default :func:`pipeline.report_summary.run_date`)."""
    from pipeline import report_summary
    from pipeline import analyse
    from pipeline.metrics import FIDELITY_LABELS

    cfg = disclosure.settings(params)
    ap = analyse.resolve_params(params.get("analyse"))
    q = lambda sql: con.execute(sql).df()  # noqa: E731
    o_all = q("select * from results.metrics_outcomes_public")
    o = o_all[o_all.dimension == "site"]
    fid = q("select * from results.metrics_fidelity_public")
    dq = q("select * from results.metrics_dq_public")
    est = q("select * from results.analysis_estimates_public")
    fnotes = (dict(q("select item, reason from results.analysis_not_shown_public").itertuples(
        index=False)) if "analysis_not_shown_public" in _results_tables(con) else {})
    step = disclosure.curve_step(cfg)
    from pipeline import report_weighting

    observational = report_weighting.is_observational(con)
    arm_n = {a: next(iter(o[(o.level == "all") & (o.arm == a) & (o.metric == "rate")
                           & (o.outcome == "relapse")].n), 0)
             for a in ("open_dialogue", "usual_care")}

    def c(v):
        return f"<span class='count'>{disclosure.fmt_count(None if v is None or pd.isna(v) else int(v))}</span>"

    P = []
    P.append("<h1>Open Dialogue evaluation report</h1>")
    P.append(report_summary.meta_line(dq_href, date or report_summary.run_date()))
    if report_summary.is_synthetic(con):
        P.append(report_summary.synthetic_banner())
    P.append(report_summary.section(
        con, est, arm_n, len([lv for lv in dict.fromkeys(o.level) if lv != "all"]), c,
        observational=observational))
    P.append("<p class='lead'>Outcomes of people offered Open Dialogue compared with usual care "
             "across the participating sites: relapse, involuntary admission, antipsychotic use "
             "and being in work or education, with the fidelity of each site to the seven "
             "principles of Open Dialogue. Every interval is a 95% confidence interval (CI) "
             "unless it says otherwise.</p>")
    P.append(f"<div class='box'><strong>Disclosure control.</strong> Counts from "
             f"{cfg['suppress_min']} to {cfg['suppress_max']} are not shown "
             f"({disclosure.SUPPRESSED}), nor any other count or estimate from which they could "
             f"be worked out (secondary suppression); every other count is rounded to the nearest "
             f"{cfg['round_to']}, so totals may not add up. Percentages are computed from the "
             f"rounded counts. Curves are drawn from counts rounded to multiples of {step}. No "
             "person or staff identifier appears in this report.</div>")

    P.append(_plan_section(con, est))
    P.append(report_weighting.section(con, figs, _figure))  # observational designs only

    # flow
    people = dq[(dq.table_name == "people") & (dq.site_id == "all")]
    n_rows = dq[dq.site_id == "all"]
    tot_raw = sum(int(v) for v in n_rows.n_raw if v is not None and not pd.isna(v))
    tot_q = sum(int(v) for v in n_rows.n_quarantined if v is not None and not pd.isna(v))
    P.append("<h2 id='flow'>1. Who is in the analysis</h2>")
    pr = people.iloc[0] if len(people) else None
    P.append("<div class='flow'>"
             f"<div>Records received<br><strong>{c(disclosure.round_count(tot_raw, cfg))}</strong> rows in "
             f"{len(n_rows)} tables</div><div class='arrow'>&rarr;</div>"
             f"<div>Set aside by validation (quarantined)<br><strong>{c(disclosure.round_count(tot_q, cfg))}</strong> rows</div>"
             "<div class='arrow'>&rarr;</div>"
             f"<div>People received<br><strong>{c(pr.n_raw if pr is not None else None)}</strong>; "
             f"quarantined {c(pr.n_quarantined if pr is not None else None)}</div>"
             "<div class='arrow'>&rarr;</div>"
             f"<div>People analysed<br>Open Dialogue <strong>{c(arm_n['open_dialogue'])}</strong><br>"
             f"Usual care <strong>{c(arm_n['usual_care'])}</strong></div></div>")
    rate = o[(o.outcome == "relapse") & (o.metric == "rate")]

    def analysed(level, arm):
        r = rate[(rate.level == level) & (rate.arm == arm)]
        return r.n.iloc[0] if len(r) else None

    rows = site_arm_rows([lv for lv in dict.fromkeys(o.level) if lv != "all"], analysed)
    P.append(_table("People analysed per site and arm", ["Site", "Open Dialogue", "Usual care",
                                                           "Both arms"], rows))
    P.append(_consort_section(con, c))

    # data quality
    P.append("<h2 id='data-quality'>2. Data quality</h2><p>Every row received is either clean "
             "(used) or quarantined with the rules it broke; the full data-quality report of the "
             "validation stage lists the rules.</p>")
    rows = []
    for _, r in dq[dq.site_id == "all"].iterrows():
        share = "" if pd.isna(r.quarantined_share) else f"{100 * r.quarantined_share:.1f}"
        rows.append(f"<tr><td>{_esc(_cap(report_words.label(r.table_name)))}</td>{_count_td(r.n_raw)}{_count_td(r.n_clean)}"
                    f"{_count_td(r.n_quarantined)}<td class='num'>{share}</td></tr>")
    P.append(_table("Rows received, clean and quarantined per input table (all sites)",
                    ["Table", "Rows received", "Clean", "Quarantined", "Quarantined (%)"], rows))

    # table 1
    if "analysis_table_one_public" in _results_tables(con):
        t1 = q("select * from results.analysis_table_one_public")
        arms = [a for a in ("open_dialogue", "usual_care") if a in set(t1.arm)]
        rows = table_one_rows(t1, arms, c)
        P.append("<h2 id='table-1'>3. Table 1: the people at the start</h2><p>Characteristics "
                 "at referral by arm. The standardised difference (SMD) compares the arms: "
                 "values below 0.1 are usually read as a negligible imbalance.</p>")
        P.append(_table("Baseline characteristics by arm", ["Characteristic", "Open Dialogue",
                                                            "Usual care", "SMD"], rows))
    elif "table_one" in fnotes:
        P.append("<h2 id='table-1'>3. Table 1: the people at the start</h2>"
                 f"<p class='muted'>Table 1: not built. {_esc(fnotes['table_one'])}.</p>")

    # outcomes
    def e_row(analysis, outcome, measure):
        sel = est[(est.analysis == analysis) & (est.outcome == outcome) & (est.measure == measure)]
        return sel.iloc[0] if len(sel) else None

    iccs = (q("select * from results.analysis_icc_public")
            if "analysis_icc_public" in _results_tables(con) else pd.DataFrame())

    # return to work's tested rows are its multiple imputation's (analyse's
    # return_to_work.imputed_as_tested), its unadjusted row the statuses recorded
    rtw_tested = est[(est.analysis == "secondary") & (est.outcome == "return_to_work")]
    rtw_imputed = bool(len(rtw_tested)) and rtw_tested["method"].astype(str).str.startswith(
        "multiple imputation").any()

    def box(analysis, outcome, measure, what):
        """The plan's estimate, its ICC and its unadjusted (sensitivity) estimate."""
        e = e_row(analysis, outcome, measure)
        if e is None:
            return ""
        extra = []
        # randomised: the unadjusted sensitivity row; observational (weighted primary): the
        # unadjusted comparison and the outcome regression
        for label, beside in (("Unadjusted (sensitivity)" if not (
                                   outcome == "return_to_work" and analysis == "secondary"
                                   and rtw_imputed) else
                               "Unadjusted, people with a status recorded and deaths before "
                               "the window left out (sensitivity)", "sensitivity"),
                              ("Unadjusted (confounded)", "observational_unadjusted"),
                              ("Outcome regression adjusted for the covariates, conditional "
                               "on them (sensitivity)", "outcome_regression")):
            u = e_row(beside, outcome, measure)
            if u is not None and not pd.isna(u.estimate):
                extra.append(f"{label}: {u.estimate:.2f} (95% CI {u.lower:.2f} to "
                             f"{u.upper:.2f}); {_esc(report_words.p_text(u.p))}.")
        ic = iccs[iccs.outcome == outcome] if len(iccs) else iccs
        if len(ic) and measure == e_row(analysis, outcome, measure).measure:
            r = ic.iloc[0]
            if pd.isna(r.estimate):
                extra.append(f"{_esc(r.measure)}: {_words_sentence(r.note)}")
            else:
                tau = (f"; Kendall's tau between two people of a cluster {r.kendall_tau:.3f}"
                       if not pd.isna(r.kendall_tau) else "")
                extra.append(f"Between-cluster variation: {r.measure} {r.estimate:.3f} (95% CI "
                             f"{r.lower:.3f} to {r.upper:.3f}){tau}; "
                             f"{report_words.words(r.method)}.")
        html = _estimate_box(e, what)
        if extra:
            html = html[:-len("</div>")] + "".join(
                f"<br><span class='muted'>{t}</span>" for t in extra) + "</div>"
        return html

    horizons = sorted({int(m[3:-1]) for m in o.metric if m.startswith("km_")})
    P.append("<h2 id='outcomes'>4. Outcomes</h2>")
    from pipeline.derive import definitions

    words = _definition_words(definitions(con))
    open_words = _open_end_words(con)
    P.append(report_weighting.outcomes_note(con))  # observational designs only
    if open_words:
        P.append(f"<p>{_esc(open_words)}</p>")
    P.append(f"<h3>4.1 Relapse (primary outcome)</h3><p>{_esc(words['relapse'])}</p>")
    P.append(box("primary", "relapse", "hazard ratio",
                 "Hazard ratio of relapse, Open Dialogue vs usual care"))
    ms = [f"km_{h}d" for h in horizons] + [f"aj_{h}d" for h in horizons] + ["rate"]
    P.append(_table("Relapse per arm (all sites); Kaplan-Meier and Aalen-Johansen percentages "
                    f"read off the curves drawn from counts rounded to multiples of {step}",
                    _OUTCOME_HEADER, _outcome_rows(o, "relapse", ms)))
    P.append(_figure(figs.get("relapse_km"), "Kaplan-Meier curves of time to relapse by arm",
                     "Proportion of people without relapse by days since their referral was "
                     "accepted, Kaplan-Meier estimate by arm (deaths censored), with 95% "
                     "pointwise confidence bands; the numbers still followed up and without "
                     f"relapse are shown below. Drawn from counts rounded to multiples of {step}.",
                     f"the counts behind the curves, rounded to multiples of {step}, are all 0"))
    P.append(_figure(figs.get("relapse_cif"), "Cumulative incidence of relapse by arm",
                     "Cumulative incidence of relapse (Aalen-Johansen, death a competing event) "
                     "by arm with 95% pointwise confidence bands: the share of people who have "
                     f"relapsed by each day. Drawn from counts rounded to multiples of {step}."))
    for m in ("log-rank chi-square", "Gray chi-square"):
        t = e_row("sensitivity", "relapse", m)
        if t is not None:
            P.append(f"<p class='muted'>Sensitivity analysis. {_esc(t.estimand)}: chi-square "
                     f"{t.estimate:.2f} ({_esc(t.method)}); {_esc(report_words.p_text(t.p))}.</p>")
    P.append(f"<h3>4.2 Involuntary admission</h3><p>{_esc(words['involuntary'])}</p>")
    P.append(box("secondary", "involuntary_admission", "rate ratio",
                 "Rate ratio of involuntary admissions"))
    P.append(_table("Involuntary admission per arm (all sites)", _OUTCOME_HEADER,
                    _outcome_rows(o, "involuntary_admission", ["rate", "any", "days_detained"])))
    P.append("<h3>4.3 Antipsychotic medication</h3><p>Prescriptions of antipsychotics (WHO ATC "
             "N05A, lithium excluded) overlapping follow-up; doses as WHO defined daily doses "
             f"(DDD) and chlorpromazine (CPZ) equivalents. {_esc(words['binary'])}</p>")
    for lab, name in (("antipsychotic_any", "any antipsychotic use"),
                      ("antipsychotic_last_days", "antipsychotic use at the end of follow-up")):
        for measure in ("risk difference", "risk ratio"):
            P.append(box("secondary", lab, measure, f"{measure.capitalize()}, {name}"))
    P.append(_table("Antipsychotic use per arm (all sites)", _OUTCOME_HEADER,
                    _outcome_rows(o, "antipsychotic", ["any", "last_days", "days_covered", "ddd", "cpz"])))
    P.append("<h3>4.4 Back at work or in education at 2 years</h3><p>The last employment status "
             "recorded in the last 90 days of the two years is employed, self-employed, education "
             "or training. " + (
                 "The estimates below are the declared strategy's, the ones tested: the "
                 "missing statuses multiply imputed and a death before the window handled as "
                 "the estimand says (4.4.1, which also shows the complete cases and the other "
                 "strategies)." if rtw_imputed else
                 "People with no status recorded then are left out here (complete cases); "
                 "4.4.1 imputes them.") + "</p>")
    for measure in ("risk difference", "risk ratio"):
        P.append(box("secondary", "return_to_work", measure,
                     f"{measure.capitalize()}, in work or education at 2 years"))
    P.append(_table("In work or education at 2 years per arm (all sites)", _OUTCOME_HEADER,
                    _outcome_rows(o, "return_to_work", ["at_2y"])))
    from pipeline import report_rtw

    P.append(report_rtw.section(con, figs, _figure))
    P.append(_multiplicity_section(con))
    P.append(_subgroup_section(con, figs))
    from pipeline import report_sensitivity

    P.append(report_sensitivity.section(con, figs, _figure))

    # fidelity
    P.append("<h2 id='fidelity'>5. Fidelity to the principles of Open Dialogue</h2><p>Each "
             "indicator is measured per referral from the records of its network meetings and "
             "summarised per site for the Open Dialogue arm: percent of referrals (binary "
             "indicators) or mean percent of a referral's meetings (shares), with 95% CIs. "
             "Principle 6, tolerance of uncertainty, cannot be measured from service records and "
             "is shown as not measurable.</p>")
    f_od = fid[fid.arm == ap["comparison_arm"]]
    sites = [s for s in dict.fromkeys(f_od.site_id) if s != "all"] + ["all"]
    rows = []
    for ind in FIDELITY_LABELS:
        g = f_od[f_od.indicator == ind].set_index("site_id")
        if g.empty:
            continue
        principle, label = FIDELITY_LABELS[ind]
        cells = [f"<td>{_esc(principle)}</td><td>{_esc(label)}</td>"]
        for s_ in sites:
            if s_ not in g.index:
                cells.append("<td></td>")
                continue
            r = g.loc[s_]
            if not r.measurable:
                cells.append("<td class='num muted'>not measurable</td>")
            elif r.kind == "hours":
                cells.append(f"<td class='num'>{_fmt(r.estimate, 0) or disclosure.SUPPRESSED} h</td>")
            else:
                cells.append(f"<td class='num'>{_pct_ci(r.estimate, r.lower, r.upper)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    P.append(_table("Fidelity profile of each site, Open Dialogue arm: percent (95% CI)",
                    ["Principle", "Indicator", *[("All sites" if s_ == "all" else s_) for s_ in sites]],
                    rows))
    P.append("<p>How each site stands against the others on every indicator: the funnel plots "
             "of section 6.</p>")

    # site comparison
    P.append("<h2 id='sites'>6. Comparing sites</h2>")
    e = e_row("site_comparison", "relapse", "pooled hazard ratio")
    if e is not None:
        P.append(_estimate_box(e, "Pooled hazard ratio of relapse over sites (random effects)"))
    left_out = (str(e.notes) if e is not None and e.method != "not estimated"
                and "left out of the meta-analysis" in str(e.notes) else "")
    P.append(_figure(figs.get("forest_relapse"), "Forest plot of site hazard ratios",
                     "Hazard ratio of relapse, Open Dialogue vs usual care, in each site (squares, "
                     "size by weight, with 95% CIs; model-based intervals), pooled by "
                     "random-effects meta-analysis (diamond: 95% CI of the mean hazard ratio; orange row: "
                     "95% prediction interval for the hazard ratio of a new site). A site whose "
                     "people or first relapses in an arm are too few to show is left out, and the "
                     "figure pools the sites as published (3 significant digits), so its diamond "
                     "can differ a little from the pooled estimate above, which uses every site."
                     + (f" {_esc(left_out)}" if left_out else ""),
                     "fewer than two sites have a hazard ratio that can be shown. " + left_out))
    P.append(_site_forests_html(figs, ap))
    P.append(_funnel_gallery(con, figs, fnotes, cfg, ap))
    e = est[est.analysis == "fidelity"]
    if len(e):
        P.append(_slope_box(e.iloc[0]))
    P.append(_figure(figs.get("fidelity_vs_relapse"), "Fidelity against relapse hazard ratio by site",
                     "Each site's hazard ratio of relapse against its Open Dialogue arm's percent "
                     "of first meetings within 24 hours (bubble area by the weight of the site); "
                     "the line is the meta-regression fit over the sites drawn: those whose "
                     "hazard ratio and percent are published (output policy). Sites whose percent "
                     "is suppressed are not drawn. Few sites: read as a description."))
    P.append(_table("Relapse and involuntary admission per site and arm",
                    _relapse_site_header("Site", horizons[0]),
                    _site_table(o, [("relapse", f"aj_{horizons[0]}d"),
                                    ("involuntary_admission", "rate")])))
    P.append(_rounded_note(step, output_policy.settings(cfg)['curve_tolerance']))

    # ethnicity
    oe = o_all[o_all.dimension == "ethnicity"]
    if len(oe):
        P.append("<h2 id='ethnicity'>7. Outcomes by ethnicity group</h2><p>The same measures "
                 "within each recorded ethnicity group ('unknown' where none was recorded). "
                 "Small groups are suppressed.</p>")
        P.append(_table("Relapse and involuntary admission by ethnicity group and arm",
                        _relapse_site_header("Ethnicity group", horizons[0]),
                        _site_table(oe, [("relapse", f"aj_{horizons[0]}d"),
                                         ("involuntary_admission", "rate")])))
        P.append(_rounded_note(step, output_policy.settings(cfg)['curve_tolerance']))

    # glossary of the terms the report uses, then the contents of the first screen
    body = "\n".join(p for p in P if p)
    P.append(report_words.glossary_html(body))
    contents = report_summary.contents_html("\n".join(p for p in P if p))
    P = [p.replace("<!--contents-->", contents, 1) for p in P]

    # footer
    inputs = "".join(f"<li><code>{_esc(i['table'])}</code> {_esc(i['file'])}: "
                     f"<code>{_esc(i['sha256'])}</code></li>" for i in prov["inputs"])
    versions = ", ".join(f"{_esc(k)} {_esc(v)}" for k, v in prov["versions"].items())
    P.append(f"<footer><h3>Provenance</h3><p>Inputs (sha256):</p><ul>{inputs}</ul>"
             f"<p>Parameters (params.yaml) sha256 <code>{_esc(prov['params_sha256'])}</code>; "
             f"lock file (uv.lock) sha256 <code>{_esc(prov['lock_sha256'])}</code>.</p>"
             f"<p>Software: {versions}.</p></footer>")
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
            "img-src data:; style-src 'unsafe-inline'\">"
            "<title>Open Dialogue evaluation report</title>"
            f"<style>{_CSS}</style></head><body><main>" + "\n".join(p for p in P if p)
            + "</main></body></html>\n")


def _plan_section(con, est: pd.DataFrame) -> str:
    """The declared design and analysis plan (params.yaml ``design:``) and the one primary
    result with its test, before any other result."""
    if "analysis_plan_public" not in _results_tables(con):
        return ""
    plan = con.execute("select item, plan from results.analysis_plan_public").fetchall()
    rows = [f"<tr><th scope='row'>{_esc(k)}</th><td>{report_words.words(v)}</td></tr>"
            for k, v in plan]
    prim = est[est.analysis == "primary"]
    res = ""
    if len(prim):
        r = prim.iloc[0]
        if pd.isna(r.estimate):
            res = (f"<div class='box'><strong>Primary result:</strong> {_esc(r.measure)} not "
                   f"estimated. {_words_sentence(r.notes)}</div>")
        else:
            res = (f"<div class='box'><p class='lead'><strong>Primary result:</strong> "
                   f"{_esc(r.measure)} {_fmt(r.estimate)} (95% CI {_fmt(r.lower)} to "
                   f"{_fmt(r.upper)}); {_esc(report_words.p_text(r.p))}, the one primary test.</p>"
                   + _about(r) + "</div>")
    return ("<h2 id='plan'>Design and analysis plan</h2><p>Declared before the analysis "
            "(params.yaml <code>design:</code>); every analysis below follows it.</p>"
            + _table("The analysis plan", ["", "Declared"], rows) + res)


_ARMS = (("open_dialogue", "Open Dialogue"), ("usual_care", "Usual care"))


_METHOD_WORDS = {"hierarchical": "fixed-sequence (hierarchical)", "holm": "Holm",
                 "none": "no adjustment"}


def _multiplicity_section(con) -> str:
    """The primary and secondary tests in the plan's order, with the multiplicity method."""
    if "analysis_multiplicity_public" not in _results_tables(con):
        return ""
    mt = con.execute("select * from results.analysis_multiplicity_public order by \"order\""
                     ).df()
    rows = [f"<tr><td>{_esc(r.role)}</td><td>{_esc(_cap(report_words.label(r.outcome)))}"
            f"</td><td class='num'>{_esc(report_words.p_value(r.p))}</td><td class='num'>"
            f"{_esc(report_words.p_value(r.p_adjusted))}</td><td>"
            f"{'yes' if r.rejected else 'no'}</td><td>{_esc(r.note)}</td></tr>"
            for r in mt.itertuples()]
    method = mt["method"].iloc[0] if len(mt) else ""
    return ("<h3 id='multiplicity'>4.5 Testing the outcomes in the plan's order</h3><p>One "
            "primary test; the secondary outcomes are tested in the order the plan declared, "
            f"with the <strong>{_esc(_METHOD_WORDS.get(method, method))}</strong> method, "
            "only if the primary test "
            "rejected. Estimates and intervals above are not adjusted.</p>"
            + _table("Primary and secondary tests", ["Role", "Outcome", "p", "Adjusted p",
                                                      "Rejected at 5%", "Note"], rows))


def _subgroup_section(con, figs) -> str:
    """Pre-specified subgroups: interaction tests and the forest plot."""
    if "analysis_subgroups_public" not in _results_tables(con):
        return ""
    from pipeline import report_weighting

    ask = ("Does the effect on relapse differ between subgroups?"
           if not report_weighting.is_observational(con) else
           "Does the hazard ratio of relapse differ between subgroups? Observational design: "
           "these models compare the arms as they are, not weighted or adjusted for "
           "confounding, so they describe differences and do not estimate effects.")
    return (f"<h3 id='subgroups'>4.6 Pre-specified subgroups</h3><p>{ask} The interaction "
            "test answers; the hazard ratio "
            "within each level is description, and two overlapping or non-overlapping "
            "intervals say nothing by themselves about a difference. Levels where an arm has "
            "few events are pooled into 'other (small groups)'. With a variance from few "
            "clusters the test is Hotelling's T² (an F test that allows for the variance "
            "itself being estimated from few clusters), and it is made only when a subgroup "
            "has no more than half as many comparisons as the variance has degrees of "
            "freedom; otherwise the block says there is no test.</p>"
            + _figure(figs.get("subgroups"), "Forest plot of hazard ratios by subgroup",
                      "Hazard ratio of relapse within each level of each pre-specified "
                      "subgroup (squares, 95% CIs, log scale), from one Cox model per subgroup "
                      "with the arm x subgroup interaction and the design's variance (the "
                      "primary analysis's when it is a model; a site or cluster jackknife when "
                      "the primary is a cluster-level analysis, which has no interaction term: "
                      "the method column of the subgroup table names it); the interaction "
                      "p-value heads each block."))


def _consort_section(con, c) -> str:
    """The CONSORT-cluster flow diagram (one column per arm, from the clusters randomised to
    each outcome's analysis; for an observational design the STROBE flow of people),
    recruitment per cluster with the imbalance flags, and the cluster-level Table 1; empty
    when the analyse stage wrote no flow."""
    have = _results_tables(con)
    if "analysis_flow_public" not in have:
        return ""
    fl = con.execute("select * from results.analysis_flow_public").df()
    cols = []
    for arm, words in _ARMS:
        f = fl[fl.arm == arm]
        boxes = [f"<div class='cf-head'>{_esc(words)}</div>"]
        for _, r in f.iterrows():
            if r.unit == "clusters" and r.stage == "without_people" and not r.clusters:
                continue
            v = (f"<strong>{int(r.clusters)}</strong> clusters" if r.unit == "clusters"
                 else f"<strong>{c(r.n)}</strong> people")
            cls = "cf-box cf-out" if r.stage in ("died", "ended_early", "without_people") \
                else "cf-box"
            boxes.append(f"<div class='{cls}'>{_esc(r.label)}<br>{v}</div>")
        cols.append(f"<div class='cf-col'>{''.join(boxes)}</div>")
    from pipeline import report_weighting

    # an observational design has no randomisation to flow from (STROBE item 13 instead)
    observational = report_weighting.is_observational(con)
    title = "Flow of people (STROBE)" if observational else "CONSORT-cluster flow"
    what = ("People per arm, from the records of each arm to each outcome's analysis (STROBE "
            "item 13: the numbers at each stage of an observational study; the arms were not "
            "allocated at random)." if observational else
            "Clusters and people per arm, from randomisation to each outcome's analysis "
            "(CONSORT 2010 extension to cluster randomised trials).")
    out = [f"<h3 id='consort'>{title}</h3><p>{what} Follow-up ends early for people recruited "
           "less than two years before the extract, and on transfer out or withdrawal; those "
           "people are analysed with the follow-up they have (censored).</p>",
           f"<figure><div class='consort' role='img' aria-label='{title} diagram'>"
           f"{''.join(cols)}</div><figcaption>{title} diagram. People counts rounded, small "
           "ones hidden ([c])" + ("; clusters are not people and are shown as they are"
                                  if (fl.unit == "clusters").any() else "")
           + ".</figcaption></figure>"]
    if "analysis_recruitment_public" in have:
        rec = con.execute("select * from results.analysis_recruitment_public").df()
        sites = con.execute("select * from results.analysis_recruitment_sites_public").df()
        flag = dict(zip(sites.site_id, sites.imbalanced))
        ratio = dict(zip(sites.site_id, sites.ratio))
        per = sites.per.iloc[0] if len(sites) else "cluster"
        rows = []
        for _, r in rec.iterrows():
            rr = ratio.get(r.site_id)
            rows.append(
                f"<tr><td>{_esc(r.site_id)}</td><td>{_esc(dict(_ARMS).get(r.arm, r.arm))} "
                f"{int(r.cluster)}</td>{_count_td(r.n)}<td class='num'>"
                f"{'' if pd.isna(r.list_size) else f'{int(r.list_size):,}'}</td><td class='num'>"
                f"{'' if pd.isna(r.per_1000) else f'{r.per_1000:.1f}'}</td><td class='num'>"
                f"{'' if rr is None or pd.isna(rr) else f'{rr:.2f}'}</td><td>"
                f"{'<strong>imbalanced</strong>' if flag.get(r.site_id) else ''}</td></tr>")
        out.append(_table(f"Recruitment per cluster (people per {per}); a site is flagged when "
                          "one arm recruited more than twice as fast as the other",
                          ["Site", "Cluster", "People", "List size", "Per 1,000 registered",
                           "Rate ratio (Open Dialogue / usual care)", "Flag"], rows))
    if "analysis_cluster_table_one_public" in have:
        t = con.execute("select * from results.analysis_cluster_table_one_public").df()
        rows = []
        for (var, lv), g in t.groupby(["variable", "level"], sort=False):
            vals = []
            for arm, _ in _ARMS:
                r = g[g.arm == arm]
                if not len(r) or pd.isna(r.value.iloc[0]):
                    vals.append("<td class='num'>[c]</td>")
                    continue
                r = r.iloc[0]
                txt = (f"{r.value:.1f} ({r.sd:.1f})" if r.kind == "mean (SD)" else
                       f"{r.value:.1f}" if r.kind == "mean" else f"{int(r.value)}")
                vals.append(f"<td class='num'>{txt}</td>")
            smd = g.smd.iloc[0]
            rows.append(f"<tr><td>{_esc(_cap(report_words.label(var)))}"
                        f"{(' ' + _esc(report_words.label(lv))) if lv else ''} "
                        f"<span class='muted'>{_esc(g.kind.iloc[0])}</span></td>{''.join(vals)}"
                        f"<td class='num'>{'' if pd.isna(smd) else f'{smd:.2f}'}</td></tr>")
        out.append(_table("Table 1 of the clusters (the unit of randomisation)",
                          ["Characteristic", "Open Dialogue", "Usual care", "SMD"], rows))
    return "".join(out)


def _results_tables(con) -> set[str]:
    return {r[0] for r in con.execute("select table_name from information_schema.tables "
                                      "where table_schema = 'results'").fetchall()}


REPORT_OUTPUTS = ("report.html", "metrics.json", "figures", "tables")


def build(con, params: dict, reports_dir: Path, progress=None) -> Path:
    """Write report.html, metrics.json, figures/ and tables/ into ``reports_dir`` (its
    ``report`` outputs, :mod:`pipeline.outputs`), after checking them (and the rest of
    ``reports_dir``) for disclosure breaches. Refuses a warehouse whose metrics and analyses
    were not built from what it holds now (:mod:`pipeline.runstate`)."""
    from pipeline import outputs, runstate

    runstate.require(con, ["metrics", "analyse"], command="report")
    need = {"metrics_outcomes_public", "metrics_fidelity_public", "metrics_dq_public",
            "analysis_estimates_public"}
    missing = sorted(need - _results_tables(con))
    if missing:
        raise OdevalError(f"results tables missing: {missing}; run `odeval metrics` and "
                          "`odeval analyse` first", rule="report.results.missing")
    cfg = disclosure.settings(params)
    reports_dir = Path(reports_dir)
    step = (lambda i, s: progress(i, 4, s)) if progress else (lambda i, s: None)
    with outputs.publish(reports_dir, "report", source=outputs.warehouse_source(con),
                         check=disclosure_gate(con, cfg, reports_dir),
                         info={"builds": runstate.build_ids(con, ["metrics", "analyse"])},
                         rule="report.write") as stage:
        (stage / "figures").mkdir()
        (stage / "tables").mkdir()
        with saving_beside():
            figs = figures(con, params, stage / "figures")
        step(1, "figures")
        for name in sorted(_results_tables(con)):
            if name.endswith("_public") or name == "analysis_curve_counts":
                df = con.execute(f"select * from results.{name} order by rowid").df()
                write_table(df, stage / "tables" / f"{name.removesuffix('_public')}.csv",
                            exact=exact_counterpart(con, name, df))
        step(2, "tables")
        prov = provenance(con, params)
        dq = "data_quality.html" if (reports_dir / "data_quality.html").exists() else None
        (stage / "report.html").write_text(render(con, params, figs, prov, dq_href=dq),
                                           encoding="utf-8")
        est = con.execute("select * from results.analysis_estimates_public").df()
        o = con.execute("select * from results.metrics_outcomes_public "
                        "where dimension = 'site'").df()
        mj = _metrics_json(est, o)
        mj["provenance"] = {"params_sha256": prov["params_sha256"],
                            "lock_sha256": prov["lock_sha256"]}
        (stage / "metrics.json").write_text(json.dumps(output_policy.neutralise(mj), indent=2,
                                                       sort_keys=True) + "\n",
                                            encoding="utf-8")
        step(3, "report")
    step(4, "check-outputs")
    return reports_dir / "report.html"


def disclosure_gate(con, cfg: dict, reports_dir: Path):
    """The check run on the staged report before it is moved into ``reports_dir``
    (:func:`pipeline.outputs.publish`): check-outputs with its attacker on the staged files
    read with what stays beside them, and the rest of ``reports_dir`` too; any breach
    refuses the report (rule ``report.disclosure``) and nothing is replaced."""
    from pipeline.check_outputs import check

    def gate(stage: Path) -> None:
        # the attacker reads the staged report with what stays beside it (data_quality.json)
        breaches = check(stage, cfg, con, attack=True, beside=(reports_dir,))
        # the rest of the folder (what stays beside the new report) must pass too; the
        # report's own files there (the old report, the staged one) are not read at all
        others = (check(reports_dir, cfg, con, skip=(".", *REPORT_OUTPUTS))
                  if reports_dir.exists() else [])
        if breaches or others:
            listing = "\n  ".join(str(b) for b in [*breaches, *others][:20])
            raise OdevalError("disclosure control failed (odeval check-outputs), the report was "
                              "not written:\n  " + listing, rule="report.disclosure",
                              file=reports_dir)

    return gate
