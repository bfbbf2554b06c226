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
    bounds: tuple[float, float] | None = None,
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
        Draw the prediction interval on its own row under the diamond (random effects with
        three or more studies), so that it is seen even when it is no wider than the
        diamond (tau^2 = 0: it then shows only the uncertainty of the mean, and the
        footnote says so).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is made if omitted.
    bounds : (float, float), optional
        The range the measure can take (e.g. -100 and 100 for a difference of percentages):
        intervals are drawn and printed cut at it, and the footnote says so (a Wald or a
        prediction interval on few degrees of freedom can run past what is possible).

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
    cut = False
    if bounds is not None:
        ends = np.r_[f(t.ci_lower), f(t.ci_upper), f(np.asarray(meta_result.ci)),
                     f(np.asarray(meta_result.pi))]
        ends = ends[np.isfinite(ends)]
        cut = bool(((ends < bounds[0]) | (ends > bounds[1])).any())
        g = f
        f = lambda x: np.clip(g(x), *bounds)  # noqa: E731
    k = len(t)
    with style():
        if ax is None:
            fig, ax = plt.subplots(figsize=(7.0, 1.2 + 0.28 * (k + 4)))
        else:
            fig = ax.figure
        ys = np.arange(k, 0, -1) + 1.5  # studies from the top; pooled at y = 0.5
        w = t["weight"].to_numpy()
        sizes = 20 + 180 * w / w.max()
        ax.hlines(ys, f(t.ci_lower), f(t.ci_upper), color=_INK, lw=0.9, zorder=2)
        ax.scatter(f(t.yi), ys, s=sizes, marker="s", color=PALETTE[0], edgecolor="none", zorder=3)
        est, (lo, hi) = meta_result.estimate, meta_result.ci
        y0 = 0.5
        has_pi = bool(show_prediction and meta_result.method != "FE"
                      and np.all(np.isfinite(meta_result.pi)))
        y_pi = -0.5
        if has_pi:
            ax.hlines(y_pi, f(meta_result.pi[0]), f(meta_result.pi[1]), color=PALETTE[1], lw=1.6,
                      zorder=2, label=f"{100 * meta_result.conf_level:g}% prediction interval "
                      "(a new site)")
            ax.vlines([f(meta_result.pi[0]), f(meta_result.pi[1])], y_pi - 0.15, y_pi + 0.15,
                      color=PALETTE[1], lw=1.6, zorder=2)
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
        yt = list(ys) + [y0]
        if has_pi:
            labels.append("Prediction interval")
            yt.append(y_pi)
        ax.set_yticks(yt, labels)
        ax.tick_params(axis="y", length=0)
        ax.spines["left"].set_visible(False)
        ax.set_ylim(-1.1 if has_pi else -0.3, k + 2.8)
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
        if has_pi:
            ax.text(0.68, y_pi, f"[{f(meta_result.pi[0]):.2f}, {f(meta_result.pi[1]):.2f}]",
                    transform=trans, fontsize=8, va="center", color=PALETTE[1])
        het = (f"tau² = {meta_result.tau2:.3g}, I² = {meta_result.i2:.0f}%, "
               f"Q = {meta_result.q:.2f} (df = {meta_result.q_df}, p = {meta_result.q_p:.3g})"
               if meta_result.k > 1 else "one study")
        if cut:
            het += f"; intervals cut at {bounds[0]:g} and {bounds[1]:g}, the possible range"
        if has_pi and meta_result.tau2 == 0:
            het += "; τ² = 0: the prediction interval shows only the uncertainty of the mean"
        elif show_prediction and meta_result.method != "FE" and not has_pi:
            het += "; no prediction interval (fewer than 3 studies)"
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
    label_units: str = "all",
    ax: plt.Axes | None = None,
    flags=None,
    higher_is_better: bool | None = None,
) -> Figure:
    """Funnel plot: units against their denominator, the overall value and the control limits.

    Parameters
    ----------
    funnel_result : FunnelResult
        From :func:`pipeline.stats.funnel` or :func:`pipeline.stats.funnel_estimates`.
    xlabel, ylabel, title : str, optional
        Labels (defaults depend on the kind).
    multiplier : float
        Scale for the y axis (e.g. 100 for percent, 1000 for a rate per 1,000).
    label_units : {"all", "flagged", "none"}
        Which units get their label beside the point (default every unit, so that a
        reader finds their own site), placed clear of each other and of the points.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is made if omitted.
    flags : sequence of str, optional
        Each unit's flag as published elsewhere (``high_95``, ``within``, ...; same order as
        the table); default the result's own flags.
    higher_is_better : bool, optional
        The measure's direction: units outside the inner limits are then coloured and
        named "better" (green, triangle) or "worse" (vermilion, inverted triangle) than
        expected; without it "above" and "below" (no judgement).

    Returns
    -------
    matplotlib.figure.Figure
        Inner limits dashed, outer limits solid, the overall value a solid dark line
        ("Overall (all sites)"); the legend sits outside the axes, right of the data, with
        an entry per kind of point that occurs; the limits used (exact, normal, or adjusted
        for overdispersion with phi or tau^2) are named above the axes.

    References
    ----------
    Spiegelhalter DJ. Funnel plots for comparing institutional performance. Stat Med
    2005;24:1185-202.
    """
    from pipeline.stats._style import label_points

    if label_units not in ("all", "flagged", "none"):
        raise ValueError(f"label_units must be 'all', 'flagged' or 'none', got {label_units!r}")
    t = funnel_result.table
    kind = funnel_result.kind
    d = t["denominator"].to_numpy()
    inner, outer = funnel_result.limits
    s_in, s_out = (f"{100 * x:g}".replace(".", "") for x in (inner, outer))
    with style():
        if ax is None:
            fig, ax = plt.subplots(figsize=(7.4, 4.2))
        else:
            fig = ax.figure
        lo_d = max(d.min() * 0.8, 1.0 if kind == "proportion" else d.min() * 0.5)
        grid = np.linspace(lo_d, d.max() * 1.05, 600)
        if kind == "proportion" and funnel_result.limits_used == "exact":
            grid = np.unique(np.round(grid))
        curve = funnel_result.limits_curve(grid)
        for suf, ls, lab in ((s_in, "--", f"{100 * inner:g}% control limits"),
                             (s_out, "-", f"{100 * outer:g}% control limits")):
            ax.plot(grid, multiplier * curve[f"lower_{suf}"], color=_GREY, ls=ls, lw=0.9, label=lab)
            ax.plot(grid, multiplier * curve[f"upper_{suf}"], color=_GREY, ls=ls, lw=0.9)
        ax.axhline(multiplier * funnel_result.target, color=_INK, lw=0.9,
                   label="Overall (all sites)")
        flag = [str(x) for x in (t["flag"] if flags is None else flags)]
        if len(flag) != len(t):
            raise ValueError(f"flags: {len(flag)} given for {len(t)} units")
        lim = f"the {100 * inner:g}% limits"
        if higher_is_better is None:
            kinds = {"high": ("above", PALETTE[4], "^", f"Above {lim}"),
                     "low": ("below", PALETTE[5], "v", f"Below {lim}")}
        else:
            good, bad = ("high", "low") if higher_is_better else ("low", "high")
            kinds = {good: ("better", PALETTE[2], "^" if good == "high" else "v",
                            f"Better than expected (outside {lim})"),
                     bad: ("worse", PALETTE[1], "^" if bad == "high" else "v",
                           f"Worse than expected (outside {lim})")}
        side = [x[:4] if x.startswith(("high", "low")) else "within" for x in flag]
        side = [x.rstrip("_") for x in side]
        y = multiplier * t["value"].to_numpy()
        w = np.array([s == "within" for s in side])
        if w.any():
            ax.scatter(d[w], y[w], s=26, color=PALETTE[0], edgecolor="white", linewidth=0.5,
                       zorder=3, label=f"Within {lim}")
        for key, (_, colour, marker, text) in kinds.items():
            m = np.array([s == key for s in side])
            if m.any():
                ax.scatter(d[m], y[m], s=38, color=colour, marker=marker, edgecolor="white",
                           linewidth=0.5, zorder=4, label=text)
        default_x = {"proportion": "Number of people", "rate": "Person-time",
                     "ratio": "Expected events", "mean": "Precision (1 / standard error²)"}[kind]
        default_y = {"proportion": "Proportion", "rate": "Rate",
                     "ratio": "Observed / expected", "mean": "Mean"}[kind]
        ax.set_xlabel(xlabel or default_x)
        ax.set_ylabel(ylabel or default_y)
        note = {"exact": "exact limits", "normal": "normal limits",
                "multiplicative": f"multiplicative overdispersion, φ = {funnel_result.phi:.2f}",
                "additive": f"additive overdispersion, τ² = {funnel_result.tau2:.3g}"
                }[funnel_result.limits_used]
        ax.set_title(title or "", loc="left")
        ax.text(1.02, 0.0, "Limits: " + note, transform=ax.transAxes, ha="left", va="bottom",
                fontsize=7.5, color=_GREY, wrap=True)
        ax.set_xlim(0, d.max() * 1.08)
        ylo = min(np.nanmin(y), np.nanmin(multiplier * curve.filter(like="lower_").to_numpy()))
        yhi = max(np.nanmax(y), np.nanmax(multiplier * curve.filter(like="upper_").to_numpy()))
        pad = 0.06 * (yhi - ylo if yhi > ylo else 1.0)
        ax.set_ylim(ylo - pad, yhi + pad)
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7.5, borderaxespad=0)
        fig.subplots_adjust(left=0.1, right=0.66, bottom=0.13, top=0.9)
        if label_units != "none":
            pick = [i for i, s in enumerate(side) if label_units == "all" or s != "within"]
            if pick:
                label_points(ax, d[pick], y[pick], [str(t["label"].iloc[i]) for i in pick],
                             sizes=np.full(len(pick), 38.0))
    return fig
