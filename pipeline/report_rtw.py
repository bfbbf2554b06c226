"""The report's return-to-work section: the estimand, the three analyses of the missing
statuses at two years (multiple imputation, complete case, the tipping point) and the
analyses beside them, from the disclosure-controlled results of
:mod:`pipeline.analyses.return_to_work` (``analysis_estimates_public``,
``analysis_rtw_population_public``, ``analysis_rtw_tipping_public``)."""

from __future__ import annotations

from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.analyses.return_to_work import LABELS


def _have(con, name: str) -> bool:
    return con.execute("select count(*) from information_schema.tables where table_schema = "
                       "'results' and table_name = ?", [name]).fetchone()[0] > 0


def tipping_figure(tip: pd.DataFrame):
    """Pooled risk difference over the grid of log-odds shifts; cells whose interval
    excludes 0 are marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ods = np.sort(tip["delta_od"].unique())
    ucs = np.sort(tip["delta_uc"].unique())
    z = tip.pivot(index="delta_od", columns="delta_uc", values="estimate").loc[ods, ucs]
    sig = tip.pivot(index="delta_od", columns="delta_uc", values="significant").loc[ods, ucs]
    fig, ax = plt.subplots(figsize=(6.2, 4.8))
    lim = float(np.nanmax(np.abs(z.to_numpy()))) or 0.1
    du = (ucs[1] - ucs[0]) / 2 if len(ucs) > 1 else 0.5
    do = (ods[1] - ods[0]) / 2 if len(ods) > 1 else 0.5
    im = ax.imshow(z.to_numpy(), origin="lower", cmap="RdBu", vmin=-lim, vmax=lim,
                   extent=(ucs[0] - du, ucs[-1] + du, ods[0] - do, ods[-1] + do),
                   aspect="auto")
    for i, o in enumerate(ods):
        for j, u in enumerate(ucs):
            v = z.iloc[i, j]
            ax.text(u, o, f"{v:+.2f}" + ("*" if sig.iloc[i, j] else ""),
                    ha="center", va="center", fontsize=8,
                    color="white" if abs(v) > 0.6 * lim else "black",
                    fontweight="bold" if sig.iloc[i, j] else "normal")
    ax.plot([0], [0], marker="s", ms=28, mfc="none", mec="black")
    ax.set_xticks(ucs)
    ax.set_yticks(ods)
    ax.set_xlabel("Usual care: shift of the imputed log-odds (delta)")
    ax.set_ylabel("Open Dialogue: shift of the imputed log-odds (delta)")
    fig.colorbar(im, ax=ax, label="Pooled risk difference, Open Dialogue - usual care")
    ax.set_title("Tipping point: * = interval excludes 0", fontsize=9)
    fig.tight_layout()
    return fig


def figures(con, folder: Path, save_figure) -> dict[str, dict]:
    if not _have(con, "analysis_rtw_tipping_public"):
        return {}
    tip = con.execute("select * from results.analysis_rtw_tipping_public").df()
    if tip.empty:
        return {}
    return {"rtw_tipping": save_figure(tipping_figure(tip), folder, "rtw_tipping")}


def _ci(r, pct: bool) -> str:
    if pd.isna(r.estimate):
        return "not estimated"
    f = (lambda v: f"{100 * v:.1f}") if pct else (lambda v: f"{v:.2f}")
    return f"{f(r.estimate)} ({f(r.lower)} to {f(r.upper)})"


def _reading(rows: pd.DataFrame, primary_sig: bool | None) -> str:
    rd = rows[rows["measure"] == "risk difference"]
    if rd.empty or rd["estimate"].isna().all():
        return "not estimated"
    r = rd.iloc[0]
    sig = bool(r.lower > 0 or r.upper < 0)
    if primary_sig is None:
        return "interval excludes 0" if sig else "interval includes 0"
    return "same conclusion" if sig == primary_sig else "conclusion differs"


def section(con, figs: dict, fig_html) -> str:
    """HTML of the section (empty when the analyses did not run)."""
    est = con.execute("select * from results.analysis_estimates_public where outcome = "
                      "'return_to_work'").df()
    if not _have(con, "analysis_rtw_population_public") or \
            not est["analysis"].isin(LABELS.values()).any():
        return ""
    pop = con.execute("select * from results.analysis_rtw_population_public").df()
    mi = est[est["analysis"] == LABELS["mi"]]
    first_sig = None
    rd = mi[mi["measure"] == "risk difference"]
    if len(rd) and not rd["estimate"].isna().all():
        first_sig = bool(rd.iloc[0].lower > 0 or rd.iloc[0].upper < 0)
    method = escape(str(mi["method"].iloc[0])) if len(mi) else ""
    m = int(mi["method"].str.extract(r"m = (\d+)").astype(float).iloc[0, 0]) \
        if len(mi) and mi["method"].str.contains("m = ").any() else None
    P = ["<h3 id='rtw-missing'>4.4.1 Work or education at 2 years with the missing statuses "
         "analysed</h3>",
         "<p><strong>Estimand.</strong> The difference (and ratio) in the proportion of people "
         "in work or education at two years between the arms, among people whose records "
         "run into the window of the two-year status; a death before the window counts as not "
         "in work or education (composite strategy); a missing status is imputed "
         "under missing at random given arm, site or cluster, baseline activity, the last status "
         "recorded before the window and the plan's covariates; people whose records end before "
         "the window (recruited too late for this extract, or transferred out) are not in this "
         "population.</p>"]
    rows = []
    for a in pop.itertuples():
        def c(v):
            return "&lt;8" if v is None or pd.isna(v) else f"{int(v)}"
        arm = {"open_dialogue": "Open Dialogue", "usual_care": "Usual care"}.get(
            str(a.arm), str(a.arm).replace("_", " "))
        rows.append(f"<tr><td>{escape(arm)}</td><td class='count'>"
                    f"{c(a.people)}</td><td class='count'>{c(a.not_reaching_window)}</td>"
                    f"<td class='count'>{c(a.died_before_window)}</td><td class='count'>"
                    f"{c(a.status_recorded)}</td><td class='count'>{c(a.status_missing)}</td>"
                    "</tr>")
    P.append("<table><caption>People and their status at 2 years, per arm (counts rounded "
             "to 5; &lt;8: 1 to 7)</caption><tr><th>Arm</th><th>People</th><th>Records end "
             "before the window</th><th>Died before the window</th><th>Status recorded</th>"
             "<th>Status missing (imputed)</th></tr>" + "".join(rows) + "</table>")
    trows = []
    for lab, words in ((LABELS["mi"], f"Multiple imputation{f' (m = {m})' if m else ''}: "
                        "primary strategy"),
                       (LABELS["cc"], "Complete case (missing statuses left out)"),
                       (LABELS["alive"], "While alive: deaths before the window left out, "
                                         "imputed"),
                       (LABELS["baseline"], "Not in work or education at baseline, imputed")):
        g = est[est["analysis"] == lab]
        if g.empty:
            continue
        rd_ = g[g["measure"] == "risk difference"]
        rr_ = g[g["measure"] == "risk ratio"]
        trows.append(f"<tr><td>{escape(words)}</td><td class='num'>"
                     f"{_ci(rd_.iloc[0], True) if len(rd_) else ''}</td><td class='num'>"
                     f"{_ci(rr_.iloc[0], False) if len(rr_) else ''}</td><td class='num'>"
                     f"{'' if rd_.empty or pd.isna(rd_.iloc[0].df) else f'{rd_.iloc[0].df:.3g}'}"
                     f"</td><td>{_reading(g, None if lab == LABELS['mi'] else first_sig)}</td>"
                     "</tr>")
    P.append("<table><caption>In work or education at 2 years, Open Dialogue against usual "
             "care: risk difference (percentage points) and risk ratio, 95% CIs</caption><tr>"
             "<th>Analysis</th><th>Risk difference</th><th>Risk ratio</th><th>df</th>"
             "<th>Reading</th></tr>" + "".join(trows) + "</table>")
    if method:
        P.append(f"<p class='muted'>Method: {method}.</p>")
    tt = est[est["analysis"] == LABELS["time"]]
    if len(tt) and not tt["estimate"].isna().all():
        bits = [f"{escape(r.measure.replace('cumulative incidence difference at ', 'by day ').removesuffix(' days'))}"
                f": {_ci(r, True)} percentage points" for r in tt.itertuples()]
        P.append("<p><strong>Time to the first return</strong> (people not in work or "
                 "education at baseline; death a competing event; Aalen-Johansen): difference "
                 "in the cumulative incidence of a first status in work or education, "
                 + "; ".join(bits) + "; 95% CIs by "
                 + escape(str(tt["method"].iloc[0]).split("; ", 1)[-1]) + ".</p>")
    if _have(con, "analysis_rtw_tipping_public"):
        tip = con.execute("select * from results.analysis_rtw_tipping_public").df()
        if len(tip):
            flips = tip[tip["significant"] != first_sig] if first_sig is not None else tip[:0]
            words = ("The conclusion at delta = 0 (" + ("the interval excludes 0" if first_sig
                                                        else "the interval includes 0")
                     + ") " + ("holds over the whole grid." if flips.empty else
                               f"changes in {len(flips)} of {len(tip)} cells; the nearest to "
                               "no shift: delta OD "
                               f"{_nearest(flips)[0]:+.1f}, delta UC {_nearest(flips)[1]:+.1f}."))
            P.append(fig_html(figs.get("rtw_tipping"), "Tipping-point map of the pooled risk "
                              "difference", "Delta-adjusted multiple imputation: the imputed "
                              "log-odds of being in work or education shifted by delta OD in "
                              "the Open Dialogue arm and delta UC in usual care (negative: "
                              "people without a status less often in work than similar people "
                              "with one). Each cell is the pooled risk difference; * its "
                              "interval excludes 0; the square marks no shift (the primary "
                              "analysis). " + words))
    return "".join(P)


def _nearest(flips: pd.DataFrame) -> tuple[float, float]:
    k = (flips["delta_od"].abs() + flips["delta_uc"].abs()).idxmin()
    return float(flips.loc[k, "delta_od"]), float(flips.loc[k, "delta_uc"])
