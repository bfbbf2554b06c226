"""Figures of a weighted (propensity score) comparison: love plot and score overlap.

Both take tables rather than people, so that what is drawn is what may be published: the
love plot the balance table (standardised differences), the overlap figure binned counts
per arm, which the caller protects first (:func:`score_histogram` gives the exact ones).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pipeline.stats._style import PALETTE, style
from pipeline.stats.propensity import SMD_THRESHOLD

_GREY = "#777777"


def score_histogram(ps: np.ndarray | pd.Series, treated: np.ndarray | pd.Series,
                    bins: int = 20) -> pd.DataFrame:
    """Counts of propensity scores per arm in ``bins`` equal bins of [0, 1].

    Returns
    -------
    DataFrame
        One row per arm and bin: ``arm`` (``treated``/``control``), ``bin_lower,
        bin_upper, count`` (exact: protect before publishing).
    """
    edges = np.linspace(0, 1, bins + 1)
    e = np.asarray(ps, float)
    a = np.asarray(treated, bool)
    rows = []
    for arm, m in (("treated", a), ("control", ~a)):
        counts, _ = np.histogram(e[m], bins=edges)
        for k in range(bins):
            rows.append(dict(arm=arm, bin_lower=edges[k], bin_upper=edges[k + 1],
                             count=int(counts[k])))
    return pd.DataFrame(rows)


def plot_love(balance: pd.DataFrame, threshold: float = SMD_THRESHOLD,
              labels: tuple[str, str] = ("Unweighted", "Weighted"),
              title: str | None = None) -> Figure:
    """Love plot: each covariate term's standardised mean difference before and after
    weighting, with the +-``threshold`` band.

    Parameters
    ----------
    balance : DataFrame
        ``term, smd_before, smd_after`` (e.g. ``PropensityResult.balance.table``).
    threshold : float
        Dashed lines at +-threshold (0.1: Austin 2009).
    labels : (str, str)
        Legend names of the two sets of points.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure

    References
    ----------
    Ahmed A, Husain A, Love TE, et al. Heart failure, chronic diuretic use, and increase in
    mortality and hospitalization. Eur Heart J 2006;27:1431-1439 (the plot's namesake).
    Greifer N. cobalt: ``love.plot``.
    """
    t = balance.reset_index(drop=True)   # a new frame: the columns set below are its own
    for c in ("smd_before", "smd_after"):   # a column of nulls read back as Int64 <NA>
        t[c] = pd.to_numeric(t[c], errors="coerce").astype(float)
    k = len(t)
    with style():
        fig, ax = plt.subplots(figsize=(6.2, 1.0 + 0.26 * max(k, 3)))
        ys = np.arange(k)[::-1]
        ax.axvspan(-threshold, threshold, color="#EEEEEE", zorder=0)
        for x in (-threshold, threshold):
            ax.axvline(x, color=_GREY, lw=0.8, ls="--", zorder=1)
        ax.axvline(0, color=_GREY, lw=0.8, zorder=1)
        for y, b, a in zip(ys, t["smd_before"], t["smd_after"]):
            if np.isfinite(b) and np.isfinite(a):
                ax.plot([b, a], [y, y], color="#BBBBBB", lw=0.8, zorder=2)
        ax.scatter(t["smd_before"], ys, marker="o", facecolor="white", edgecolor=PALETTE[1],
                   s=28, lw=1.2, zorder=3, label=labels[0])
        ax.scatter(t["smd_after"], ys, marker="o", color=PALETTE[0], s=28, zorder=4,
                   label=labels[1])
        ax.set_yticks(ys)
        ax.set_yticklabels(t["term"])
        lim = max(0.25, float(np.nanmax(np.abs(t[["smd_before", "smd_after"]].to_numpy()))) * 1.1)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-0.7, k - 0.3)
        ax.set_xlabel("Standardised mean difference (compared minus reference arm)")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.6 / max(k, 3) - 0.08), ncol=2)
        if title:
            ax.set_title(title, loc="left")
        fig.tight_layout()
    return fig


def plot_ps_overlap(hist: pd.DataFrame, labels: tuple[str, str] = ("Compared arm", "Reference arm"),
                    title: str | None = None, note: str | None = None) -> Figure:
    """Mirrored histogram of propensity scores: the compared arm above the axis, the
    reference arm below, each bar the share of its arm (so that arms of different sizes
    can be compared), from binned counts.

    Parameters
    ----------
    hist : DataFrame
        ``arm`` (``treated``/``control``), ``bin_lower, bin_upper, count``; a count of
        ``None``/NaN is a suppressed bin, drawn as a hatched outline as tall as the smallest
        visible bar of its arm (its size is not shown). Shares are of the counts shown.
    labels : (str, str)
    title, note : str, optional
        ``note`` is printed under the axis (e.g. how the counts were protected).

    Returns
    -------
    matplotlib.figure.Figure
    """
    with style():
        fig, ax = plt.subplots(figsize=(6.2, 3.6))
        top = 0.0
        for arm, sign, color, lab in (("treated", 1, PALETTE[0], labels[0]),
                                      ("control", -1, PALETTE[1], labels[1])):
            h = hist[hist["arm"] == arm]
            c = pd.to_numeric(h["count"], errors="coerce")
            total = float(c.sum())
            share = 100 * c / total if total > 0 else c * 0
            width = (h["bin_upper"] - h["bin_lower"]).to_numpy()
            ax.bar(h["bin_lower"], sign * share.fillna(0).to_numpy(), width=width, align="edge",
                   color=color, edgecolor="white", lw=0.5, label=lab)
            hid = c.isna().to_numpy()
            if hid.any():
                pos = share[share > 0]
                ref = float(pos.min()) if len(pos) else 1.0
                ax.bar(h["bin_lower"][hid], sign * ref, width=width[hid], align="edge",
                       facecolor="none", edgecolor=color, hatch="///", lw=0.6,
                       label=f"{lab}: suppressed bin")
            top = max(top, float(share.max()) if share.notna().any() else 0.0)
        top = max(top, 1.0) * 1.08
        ax.set_ylim(-top, top)
        ax.axhline(0, color="#222222", lw=0.8)
        ax.set_xlim(0, 1)
        ticks = [v for v in ax.get_yticks() if -top <= v <= top]
        ax.set_yticks(ticks)
        ax.set_yticklabels([f"{abs(v):g}" for v in ticks])
        ax.set_xlabel("Propensity score (probability of the compared arm given the covariates)")
        ax.set_ylabel("% of the arm")
        # arm names outside the plotting area, beside the axis they label
        ax.text(1.01, 0.75, f"{labels[0]}\n(above)", transform=ax.transAxes, ha="left",
                va="center", color=PALETTE[0], fontsize=8)
        ax.text(1.01, 0.25, f"{labels[1]}\n(below)", transform=ax.transAxes, ha="left",
                va="center", color=PALETTE[1], fontsize=8)
        if title:
            ax.set_title(title, loc="left")
        if note:
            fig.text(0.01, 0.01, note, fontsize=7, color=_GREY, ha="left", va="bottom")
            fig.tight_layout(rect=(0, 0.06, 1, 1))
        else:
            fig.tight_layout()
    return fig
