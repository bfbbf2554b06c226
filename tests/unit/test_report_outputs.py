"""The study report's tables, boxes and figures say what they hold: ``[c]`` only for a
suppressed count, rounded-count percentages labelled so, one flag per funnel site, a
meta-regression slope that cannot be read as a hazard ratio, and figures whose labels do
not run into each other."""

from __future__ import annotations

import io
import re

import duckdb
import matplotlib
import numpy as np
import pandas as pd
import pytest

from pipeline import disclosure, report
from pipeline.stats import meta_analysis, plot_forest
from pipeline.stats._style import label_points, plain_log_ticks, style

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _csv(df, tmp_path, exact=None) -> pd.DataFrame:
    path = tmp_path / "t.csv"
    report.write_table(df, path, exact=exact)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


# --------------------------------------------------------------------------- [c] vs empty

def test_not_applicable_counts_are_empty_and_only_suppressed_ones_are_c(tmp_path):
    # analysis_estimates: a log-rank row has no n or events (NULL in the exact table too);
    # a suppressed n is NULL in the public table only
    public = pd.DataFrame({"analysis": ["primary", "primary", "secondary"],
                           "measure": ["hazard ratio", "log-rank chi-square", "risk ratio"],
                           "estimate": [0.6, 7.5, 1.2],
                           "n": [1400, None, None], "events": [595, None, 10]}, dtype=object)
    exact = public.copy()
    exact["n"] = [1403, None, 6]
    exact["events"] = [597, None, 11]
    out = _csv(public, tmp_path, exact)
    assert list(out["n"]) == ["1400", "", disclosure.SUPPRESSED]
    assert list(out["events"]) == ["595", "", "10"]


def test_table_one_n_of_a_continuous_variable_is_empty_not_c(tmp_path):
    t1 = pd.DataFrame({"variable": ["age_at_index", "sex"], "level": ["", "other"],
                       "kind": ["mean (SD)", "n (%)"], "n": [None, None],
                       "summary": ["30.7 (10.2)", ""], "suppressed": [False, True]}, dtype=object)
    out = _csv(t1, tmp_path)
    assert list(out["n"]) == ["", disclosure.SUPPRESSED]


def test_the_exact_counterpart_is_used_only_when_it_holds_the_same_rows():
    con = duckdb.connect()
    con.execute("create schema results")
    con.execute("create table results.t as select * from (values ('a', 13), ('b', null)) "
                "as v(measure, n)")
    con.execute("create table results.t_public as select * from (values ('a', 15), ('b', null)) "
                "as v(measure, n)")
    con.execute("create table results.u as select * from (values ('b', 1), ('a', 2)) "
                "as v(measure, n)")
    con.execute("create table results.u_public as select * from (values ('a', null), "
                "('b', null)) as v(measure, n)")
    df = con.execute("select * from results.t_public order by rowid").df()
    ex = report.exact_counterpart(con, "t_public", df)
    assert ex is not None and pd.isna(ex["n"].iat[1])
    df = con.execute("select * from results.u_public order by rowid").df()
    assert report.exact_counterpart(con, "u_public", df) is None  # rows in another order


# --------------------------------------------------------------------------- labels

def test_per_site_relapse_percentages_are_not_called_aalen_johansen_estimates():
    header = report._relapse_site_header("Site", 365)
    rel = [h for h in header if "relapsed" in h]
    assert len(rel) == 2 and all("from rounded counts" in h and "by 1 year" in h for h in rel)
    assert not any("AJ %" in h for h in header)
    note = report._rounded_note(10)
    assert "multiples of 10" in note and "exact estimate" in note


def test_the_fidelity_meta_regression_box_is_a_log_hazard_ratio_slope_not_a_hazard_ratio():
    e = pd.Series(dict(analysis="fidelity", outcome="relapse",
                       measure="change in log hazard ratio per unit of p1_within_24h",
                       estimand="Meta-regression ... change in log HR from 0 to 1",
                       estimate=0.526111, lower=-0.477059, upper=1.529280, p=0.235, clusters=7,
                       method="REML mixed-effects meta-regression"))
    box = report._slope_box(e)
    text = re.sub(r"<[^>]+>", "", box)
    assert "meta-regression): 0.53" not in text  # the audit's hazard-ratio look
    assert "slope +0.53 (95% CI -0.48 to 1.53) in log hazard ratio" in text
    assert "not a hazard ratio" in text
    assert "1.05 (95% CI 0.95 to 1.17) for every 10 percentage points" in text
    assert "less benefit" in text and "first network meeting within 24 h" in text


# --------------------------------------------------------------------------- figures

def _extents(fig, artists):
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    return [a.get_window_extent(r) for a in artists if a.get_visible() and a.get_text()]


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_forest_plot_has_plain_separate_ticks_and_a_footnote_clear_of_the_legend():
    ma = meta_analysis(np.log([0.56, 0.47, 0.60, 0.44, 0.60, 0.74, 1.98]),
                       [0.1, 0.09, 0.025, 0.045, 0.04, 0.055, 0.35],
                       labels=[f"S0{i}" for i in range(1, 8)])
    fig = plot_forest(ma, exponentiate=True, xlabel="Hazard ratio of relapse, Open Dialogue vs "
                      "usual care (log scale)", title="Relapse: site-specific hazard ratios")
    ax = fig.axes[0]
    labels = [t for t in ax.get_xticklabels() if t.get_text()]
    assert labels and all(re.fullmatch(r"[\d.]+", t.get_text()) for t in labels), \
        [t.get_text() for t in labels]
    boxes = _extents(fig, ax.get_xticklabels() + ax.get_xticklabels(minor=True))
    assert not any(_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    legend = ax.get_legend().get_window_extent(fig.canvas.get_renderer())
    foot = [t for t in ax.texts if t.get_text().startswith("tau")][0]
    foot_box = foot.get_window_extent(fig.canvas.get_renderer())
    xlabel = ax.xaxis.label.get_window_extent(fig.canvas.get_renderer())
    assert not _overlap(foot_box, legend) and foot_box.y1 <= legend.y0
    assert not _overlap(legend, xlabel) and legend.y1 <= xlabel.y0
    plt.close(fig)


def test_plain_log_ticks_never_write_powers_of_ten():
    with style():
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.set_yscale("log")
        ax.set_ylim(0.35, 2.5)
        ticks = plain_log_ticks(ax, "y")
    fig.canvas.draw()
    assert 1.0 in ticks and all("10" not in t.get_text() for t in ax.get_yticklabels())
    plt.close(fig)


def test_fidelity_figure_labels_of_close_sites_do_not_overlap_and_the_axis_is_plain():
    fo = pd.DataFrame({"site_id": ["S01", "S02", "S03", "S04", "S05", "S06", "S07"],
                       "log_hr": np.log([0.56, 0.47, 0.60, 0.44, 0.60, 0.74, 1.98]),
                       "se": [0.32, 0.30, 0.16, 0.21, 0.2, 0.23, 0.59],
                       "hr": [0.56, 0.47, 0.60, 0.44, 0.60, 0.74, 1.98],
                       "p1_within_24h": [0.27, 0.71, 0.86, 0.32, 0.88, 0.75, 0.87]})
    mr = pd.DataFrame({"term": ["(Intercept)", "p1_within_24h"], "coef": [-0.903, 0.526]})
    fig = report.fidelity_figure(fo, mr)
    ax = fig.axes[0]
    boxes = _extents(fig, ax.texts)
    assert len(boxes) == 7
    assert not any(_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    assert "10^" not in buf.getvalue() and "×" not in buf.getvalue()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert "1" in labels and all(re.fullmatch(r"[\d.]+", t) for t in labels)
    plt.close(fig)


def test_label_points_keeps_labels_off_a_neighbouring_bubble():
    with style():
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.set_xlim(0, 100)
        ax.set_ylim(0, 10)
        ax.scatter([86, 88], [5, 5], s=[330, 200])
        anns = label_points(ax, [86, 88], [5, 5], ["S03", "S05"], sizes=[330, 200])
    a, b = _extents(fig, anns)
    assert not _overlap(a, b)
    plt.close(fig)


@pytest.fixture
def funnel_con():
    """analysis_funnel_public as analyse writes it: rounded counts and the flags, target and
    dispersion of those counts (``site_comparison.funnels``); S08 suppressed."""
    from pipeline.analyses.site_comparison import FUNNEL_COLUMNS, assessment
    from pipeline.stats import funnel

    rows = [("S01", 15, 50), ("S02", 5, 70), ("S03", 55, 195), ("S04", 50, 145),
            ("S05", 30, 110), ("S06", 20, 55), ("S07", 60, 105)]
    fr = funnel([e for _, e, _ in rows], [n for *_, n in rows], overdispersion="additive",
                labels=[s for s, *_ in rows])
    df = pd.DataFrame([dict(indicator="any_antipsychotic", title="Any antipsychotic",
                            kind="binomial", higher_is_better=False, site_id=s, events=e, n=n,
                            value=e / n, se=np.nan, denominator=n, flag=f,
                            assessment=assessment(f, False), target=fr.target,
                            limits_used=fr.limits_used, phi=fr.phi, tau2=fr.tau2, phi_p=fr.phi_p)
                       for (s, e, n), f in zip(rows, fr.table["flag"])]
                      + [dict(indicator="any_antipsychotic", title="Any antipsychotic",
                              kind="binomial", higher_is_better=False, site_id="S08",
                              events=None, n=None, value=np.nan, se=np.nan, denominator=np.nan,
                              flag="suppressed", assessment="suppressed", target=fr.target,
                              limits_used=fr.limits_used, phi=fr.phi, tau2=fr.tau2,
                              phi_p=fr.phi_p)], columns=FUNNEL_COLUMNS)
    con = duckdb.connect()
    con.execute("create schema results")
    con.register("f", df)
    con.execute("create table results.analysis_funnel_public as select * from f")
    yield con, fr
    con.close()


def test_the_funnel_figure_labels_every_site_it_draws_and_colours_by_direction(funnel_con,
                                                                               tmp_path):
    con, fr = funnel_con
    # S02 is below the limits (better: fewer antipsychotics), S07 above (worse)
    assert list(fr.table["flag"])[1].startswith("low") and list(fr.table["flag"])[6] == "high_95"
    figs = report.figures(con, {}, tmp_path)
    svg = figs["funnel_any_antipsychotic"]["svg"].read_text()
    texts = re.findall(r">([^<>]+)</text>", svg)
    assert {"S01", "S02", "S03", "S04", "S05", "S06", "S07"} <= set(texts)
    assert "S08" not in texts  # suppressed: not drawn
    assert "Overall (all sites)" in texts and "Target" not in texts
    assert any(t.startswith("Better than expected") for t in texts)
    assert any(t.startswith("Worse than expected") for t in texts)
    assert any(t.startswith("Limits: additive overdispersion") for t in texts)
