"""Journal-style survival figures: Kaplan-Meier with numbers at risk, cumulative incidence."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

from pipeline.stats._style import PALETTE, style
from pipeline.stats.competing import AalenJohansenResult
from pipeline.stats.survival import KaplanMeierResult

__all__ = ["plot_cumulative_incidence", "plot_kaplan_meier"]


def _steps(time: np.ndarray, *ys: np.ndarray, start: float):
    """Prepend the origin so a step curve starts at (0, start)."""
    return (np.r_[0.0, time], *(np.r_[start, y] for y in ys))


def _default_times(tmax: float, n: int = 6) -> np.ndarray:
    ticks = plt.MaxNLocator(nbins=n - 1, steps=[1, 2, 2.5, 5, 10]).tick_values(0, tmax)
    return ticks[(ticks >= 0) & (ticks <= tmax)]


def _figure(ax, risk_table: bool, n_groups: int):
    if ax is not None:
        return ax.figure, ax, None
    if risk_table:
        fig = plt.figure(figsize=(6.0, 4.2 + 0.18 * n_groups))
        gs = fig.add_gridspec(2, 1, height_ratios=[4.0, 0.45 + 0.22 * n_groups], hspace=0.35)
        return fig, fig.add_subplot(gs[0]), fig.add_subplot(gs[1])
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    return fig, ax, None


def _draw_risk_table(rax, ax, table, groups, times, colors, label="Number at risk"):
    rax.set_xlim(ax.get_xlim())
    rax.set_ylim(-0.5, len(groups) - 0.5)
    for i, g in enumerate(groups):
        y = len(groups) - 1 - i
        for _, row in table[table["group"] == g].iterrows():
            rax.text(row["time"], y, f"{int(row['n_risk'])}", ha="center", va="center",
                     color=colors[i], fontsize=8)
    rax.set_yticks(range(len(groups)))
    rax.set_yticklabels([str(g) for g in groups][::-1])
    for lab, c in zip(rax.get_yticklabels(), colors[: len(groups)][::-1]):
        lab.set_color(c)
    rax.set_xticks(times)
    rax.tick_params(axis="both", length=0)
    rax.tick_params(axis="y", pad=18)  # keep labels clear of the numbers at time 0
    rax.tick_params(axis="x", labelbottom=False)
    for side in ("top", "right", "bottom", "left"):
        rax.spines[side].set_visible(False)
    rax.set_title(label, loc="left", fontsize=8)


def plot_kaplan_meier(
    km_result: KaplanMeierResult,
    ax=None,
    risk_table: bool = True,
    times: Sequence[float] | None = None,
    ci: bool = True,
    xlabel: str = "Time",
    ylabel: str = "Survival probability",
):
    """Kaplan-Meier step curves with confidence bands and a numbers-at-risk table.

    Parameters
    ----------
    km_result : KaplanMeierResult
        From :func:`pipeline.stats.kaplan_meier`.
    ax : matplotlib Axes, optional
        Draw into this axes (no risk table is added then, as there is no room for it).
    risk_table : bool, default True
        Numbers at risk under the plot at ``times``.
    times : array-like, shape (n_times,), optional
        Times for the risk table and x ticks; round ticks up to the last time by default.
    ci : bool, default True
        Shade the pointwise confidence band.

    Returns
    -------
    matplotlib.figure.Figure

    References
    ----------
    Pocock SJ, Clayton TC, Altman DG. Survival plots of time-to-event outcomes in clinical
    trials: good practice and pitfalls. Lancet 2002;359:1686-1689.
    """
    groups = km_result.groups
    tab = km_result.table
    with style():
        fig, ax, rax = _figure(ax, risk_table, len(groups))
        tmax = float(tab["time"].max())
        times = _default_times(tmax) if times is None else np.asarray(times, dtype=float)
        colors = [PALETTE[i % len(PALETTE)] for i in range(len(groups))]
        for i, g in enumerate(groups):
            tg = tab[tab["group"] == g]
            x, s, lo, up = _steps(tg["time"].to_numpy(), tg["survival"].to_numpy(),
                                  tg["lower"].to_numpy(), tg["upper"].to_numpy(), start=1.0)
            label = str(g) if km_result.group_name is not None else None
            ax.step(x, s, where="post", color=colors[i], lw=1.4, label=label)
            if ci:
                ax.fill_between(x, lo, up, step="post", color=colors[i], alpha=0.15, lw=0)
            cens = tg[tg["n_censor"] > 0]
            ax.plot(cens["time"], cens["survival"], ls="none", marker="|", ms=5, color=colors[i])
        ax.set_xlim(0, max(tmax, times.max() if len(times) else tmax) * 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_xticks(times)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if km_result.group_name is not None:
            ax.legend(title=km_result.group_name, loc="upper right")
        if rax is not None:
            _draw_risk_table(rax, ax, km_result.risk_table(times), groups, times, colors)
    return fig


def plot_cumulative_incidence(
    aj_result: AalenJohansenResult,
    ax=None,
    cause: int | None = None,
    risk_table: bool = True,
    times: Sequence[float] | None = None,
    ci: bool = True,
    xlabel: str = "Time",
    ylabel: str = "Cumulative incidence",
):
    """Aalen-Johansen cumulative incidence curves (per group and cause) with CI bands.

    Parameters
    ----------
    aj_result : AalenJohansenResult
        From :func:`pipeline.stats.aalen_johansen`.
    ax : matplotlib Axes, optional
    cause : int, optional
        Plot only this cause; every reported cause by default (solid for the first, dashed
        for the others).
    risk_table : bool, default True
        Numbers still event-free and under observation, under the plot.
    times : array-like, optional
        Risk-table times and x ticks.
    ci : bool, default True

    Returns
    -------
    matplotlib.figure.Figure

    References
    ----------
    Pintilie M. Competing Risks: A Practical Perspective. Wiley 2006, chapter 4.
    """
    tab = aj_result.table
    causes = aj_result.causes if cause is None else [cause]
    groups = aj_result.groups
    styles = ["-", "--", ":", "-."]
    with style():
        fig, ax, rax = _figure(ax, risk_table, len(groups))
        tmax = float(tab["time"].max())
        times = _default_times(tmax) if times is None else np.asarray(times, dtype=float)
        colors = [PALETTE[i % len(PALETTE)] for i in range(len(groups))]
        for i, g in enumerate(groups):
            for j, c in enumerate(causes):
                tg = tab[(tab["group"] == g) & (tab["cause"] == c)]
                x, f, lo, up = _steps(tg["time"].to_numpy(), tg["cif"].to_numpy(),
                                      tg["lower"].fillna(0).to_numpy(), tg["upper"].fillna(0).to_numpy(),
                                      start=0.0)
                parts = ([str(g)] if len(groups) > 1 else []) + ([f"cause {c}"] if len(causes) > 1 else [])
                ax.step(x, f, where="post", color=colors[i], ls=styles[j % len(styles)], lw=1.4,
                        label=", ".join(parts) or None)
                if ci:
                    ax.fill_between(x, lo, up, step="post", color=colors[i], alpha=0.12, lw=0)
        ax.set_xlim(0, max(tmax, times.max() if len(times) else tmax) * 1.02)
        ax.set_ylim(0, None)
        ax.set_xticks(times)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if len(groups) > 1 or len(causes) > 1:
            ax.legend(loc="upper left")
        if rax is not None:
            at = aj_result.at(times)
            _draw_risk_table(rax, ax, at[at["cause"] == causes[0]], groups, times, colors)
    return fig
