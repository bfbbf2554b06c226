"""Site-comparison figures: forest plot of a meta-analysis and funnel plot with limits."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Polygon
from matplotlib.transforms import ScaledTranslation, blended_transform_factory

from pipeline.stats._style import PALETTE, plain_log_ticks, style
from pipeline.stats.funnel_limits import FunnelResult
from pipeline.stats.meta import MetaAnalysisResult

_INK = "#222222"
_GREY = "#777777"


def plot_forest(
    meta_result: MetaAnalysisResult,
    exponentiate: bool = False,
    xlabel: str | None = None,
    title: str | None = None,
    null_value: float | None = None,
    show_prediction: bool = True,
    ax: plt.Axes | None = None,
) -> Figure:
    """Forest plot: per-study estimates with CIs, pooled diamond and prediction interval.

    Parameters
    ----------
    meta_result : MetaAnalysisResult
        From :func:`pipeline.stats.meta_analysis`.
    exponentiate : bool
        Plot ``exp`` of estimates on a log axis (for log ratios: rate, risk, odds ratios).
    xlabel, title : str, optional
        Axis label (default "Estimate" or "Ratio") and title.
    null_value : float, optional
        Position of the line of no effect (default 0, or 1 if ``exponentiate``).
    show_prediction : bool
        Draw the prediction interval as a line through the diamond (random effects only).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is made if omitted.

    Returns
    -------
    matplotlib.figure.Figure
        Square markers have area proportional to the study weight; the right margin lists
        each estimate with its CI and weight.

    References
    ----------
    Lewis S, Clarke M. Forest plots: trying to see the wood and the trees. BMJ
    2001;322:1479-80. IntHout J, Ioannidis JPA, Rovers MM, Goeman JJ. Plea for routinely
    presenting prediction intervals in meta-analysis. BMJ Open 2016;6:e010247.
    """
    t = meta_result.table
    f = np.exp if exponentiate else (lambda x: x)
    k = len(t)
    with style():
        if ax is None:
            fig, ax = plt.subplots(figsize=(7.0, 1.2 + 0.28 * (k + 3)))
        else:
            fig = ax.figure
        ys = np.arange(k, 0, -1) + 1.5  # studies from the top; pooled at y = 0.5
        w = t["weight"].to_numpy()
        sizes = 20 + 180 * w / w.max()
        ax.hlines(ys, f(t.ci_lower), f(t.ci_upper), color=_INK, lw=0.9, zorder=2)
        ax.scatter(f(t.yi), ys, s=sizes, marker="s", color=PALETTE[0], edgecolor="none", zorder=3)
        est, (lo, hi) = meta_result.estimate, meta_result.ci
        y0 = 0.5
        if show_prediction and meta_result.method != "FE" and np.all(np.isfinite(meta_result.pi)):
            ax.hlines(y0, f(meta_result.pi[0]), f(meta_result.pi[1]), color=PALETTE[1], lw=1.6,
                      zorder=2, label=f"{100 * meta_result.conf_level:g}% prediction interval")
        diamond = Polygon([(f(lo), y0), (f(est), y0 + 0.32), (f(hi), y0), (f(est), y0 - 0.32)],
                          closed=True, color=PALETTE[0], zorder=4,
                          label=f"Pooled ({meta_result.method})")
        ax.add_patch(diamond)
        ax.axvline(null_value if null_value is not None else (1.0 if exponentiate else 0.0),
                   color=_GREY, lw=0.8, ls="--", zorder=1)
        if exponentiate:
            ax.set_xscale("log")
            ends = np.r_[f(t.ci_lower), f(t.ci_upper), f(lo), f(hi), f(np.asarray(meta_result.pi)),
                         null_value if null_value is not None else 1.0]
            ends = ends[np.isfinite(ends) & (ends > 0)]
            ax.set_xlim(ends.min() / 1.15, ends.max() * 1.15)
        labels = list(t["label"]) + [f"Pooled ({meta_result.method}, k={meta_result.k})"]
        ax.set_yticks(list(ys) + [y0], labels)
        ax.tick_params(axis="y", length=0)
        ax.spines["left"].set_visible(False)
        ax.set_ylim(-0.3, k + 2.8)
        ax.set_xlabel(xlabel or ("Ratio (log scale)" if exponentiate else "Estimate"))
        # right-hand text column: estimate [CI] and weight
        trans = blended_transform_factory(fig.transFigure, ax.transData)
        ax.text(0.68, k + 2.4, "Estimate [95% CI]".replace("95", f"{100 * meta_result.conf_level:g}"),
                transform=trans, fontsize=8, fontweight="bold", va="center")
        ax.text(0.97, k + 2.4, "Weight", transform=trans, fontsize=8, fontweight="bold",
                va="center", ha="right")
        for y, (_, r) in zip(ys, t.iterrows(), strict=True):
            ax.text(0.68, y, f"{f(r.yi):.2f} [{f(r.ci_lower):.2f}, {f(r.ci_upper):.2f}]",
                    transform=trans, fontsize=8, va="center")
            ax.text(0.97, y, f"{r.weight:.1f}%", transform=trans, fontsize=8, va="center",
                    ha="right")
        ax.text(0.68, y0, f"{f(est):.2f} [{f(lo):.2f}, {f(hi):.2f}]", transform=trans,
                fontsize=8, va="center", fontweight="bold")
        het = (f"tau² = {meta_result.tau2:.3g}, I² = {meta_result.i2:.0f}%, "
               f"Q = {meta_result.q:.2f} (df = {meta_result.q_df}, p = {meta_result.q_p:.3g})"
               if meta_result.k > 1 else "one study")
        ax.set_title(title or "", loc="left")
        fig.subplots_adjust(left=0.28, right=0.64, bottom=max(0.12, 1.25 / fig.get_figheight()))
        if exponentiate:
            plain_log_ticks(ax, "x")
        # below the axis, in this order and fixed distances (inches) from it: tick labels
        # and axis label, the legend, the heterogeneity footnote (never on top of each other)
        below = lambda inches: ax.transAxes + ScaledTranslation(  # noqa: E731
            0, -inches, fig.dpi_scale_trans)
        ax.legend(loc="upper left", bbox_to_anchor=(0, 0), bbox_transform=below(0.5), ncol=2,
                  fontsize=7.5, borderaxespad=0)
        ax.text(0, 0, het, transform=below(0.78), fontsize=7.5, color=_GREY, va="top")
    return fig


def plot_funnel(
    funnel_result: FunnelResult,
    xlabel: str | None = None,
    ylabel: str | None = None,
    title: str | None = None,
    multiplier: float = 1.0,
    label_outliers: bool = True,
    ax: plt.Axes | None = None,
    flags=None,
) -> Figure:
    """Funnel plot: units against their denominator, the target and the control limits.

    Parameters
    ----------
    funnel_result : FunnelResult
        From :func:`pipeline.stats.funnel`.
    xlabel, ylabel, title : str, optional
        Labels (defaults depend on the kind).
    multiplier : float
        Scale for the y axis (e.g. 100 for percent, 1000 for a rate per 1,000).
    label_outliers : bool
        Annotate flagged units (outside the inner limits) with their label.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is made if omitted.
    flags : sequence of str, optional
        Each unit's flag as published elsewhere (``high_95``, ``within``, ...; same order as
        the table), e.g. from the exact counts when the points are drawn from rounded ones,
        so that the figure and the table never disagree; default the result's own flags.

    Returns
    -------
    matplotlib.figure.Figure
        Inner limits dashed, outer limits solid; units flagged above the limits orange,
        below green (a legend entry for each that occurs), and labelled.

    References
    ----------
    Spiegelhalter DJ. Funnel plots for comparing institutional performance. Stat Med
    2005;24:1185-202.
    """
    t = funnel_result.table
    kind = funnel_result.kind
    d = t["denominator"].to_numpy()
    inner, outer = funnel_result.limits
    s_in, s_out = (f"{100 * x:g}".replace(".", "") for x in (inner, outer))
    with style():
        if ax is None:
            fig, ax = plt.subplots(figsize=(6.0, 4.2))
        else:
            fig = ax.figure
        lo_d = max(d.min() * 0.8, 1.0 if kind == "proportion" else d.min() * 0.5)
        grid = np.linspace(lo_d, d.max() * 1.05, 600)
        if kind == "proportion":
            grid = np.unique(np.round(grid))
        curve = funnel_result.limits_curve(grid)
        for suf, ls, lab in ((s_in, "--", f"{100 * inner:g}% limits"),
                             (s_out, "-", f"{100 * outer:g}% limits")):
            ax.plot(grid, multiplier * curve[f"lower_{suf}"], color=_GREY, ls=ls, lw=0.9, label=lab)
            ax.plot(grid, multiplier * curve[f"upper_{suf}"], color=_GREY, ls=ls, lw=0.9)
        ax.axhline(multiplier * funnel_result.target, color=_INK, lw=0.9, label="Target")
        flag = list(t["flag"] if flags is None else flags)
        if len(flag) != len(t):
            raise ValueError(f"flags: {len(flag)} given for {len(t)} units")
        colours = {"within": PALETTE[0], f"high_{s_in}": PALETTE[1], f"high_{s_out}": PALETTE[1],
                   f"low_{s_in}": PALETTE[2], f"low_{s_out}": PALETTE[2]}
        ax.scatter(d, multiplier * t["value"], s=22, c=[colours.get(x, _GREY) for x in flag],
                   edgecolor="white", linewidth=0.5, zorder=3)
        for side, colour, text in (("high", PALETTE[1], f"above the {100 * inner:g}% limit"),
                                   ("low", PALETTE[2], f"below the {100 * inner:g}% limit")):
            if any(str(x).startswith(side) for x in flag):
                ax.scatter([], [], s=22, color=colour, label=f"Flagged {text}")
        if label_outliers:
            for (_, r), fl in zip(t.iterrows(), flag):
                if fl in colours and fl != "within":
                    ax.annotate(r.label, (r.denominator, multiplier * r.value), xytext=(3, 3),
                                textcoords="offset points", fontsize=7)
        default_x = {"proportion": "Number of people", "rate": "Person-time",
                     "ratio": "Expected events"}[kind]
        default_y = {"proportion": "Proportion", "rate": "Rate",
                     "ratio": "Observed / expected"}[kind]
        ax.set_xlabel(xlabel or default_x)
        ax.set_ylabel(ylabel or default_y)
        note = {"exact": "exact limits", "multiplicative": f"multiplicative OD, φ = {funnel_result.phi:.2f}",
                "additive": f"additive OD, τ² = {funnel_result.tau2:.3g}"}[funnel_result.limits_used]
        ax.set_title(title or "", loc="left")
        ax.text(1.0, 1.0, note, transform=ax.transAxes, ha="right", va="bottom", fontsize=7.5,
                color=_GREY)
        ax.set_xlim(0, d.max() * 1.08)
        ax.legend(loc="upper right", fontsize=7.5)
        fig.tight_layout()
    return fig
