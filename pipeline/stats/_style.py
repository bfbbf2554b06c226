"""One figure style for every odeval figure: journal-like, colour-blind safe, deterministic."""

from __future__ import annotations

import contextlib

import matplotlib
import matplotlib.pyplot as plt

#: Okabe-Ito palette (colour-blind safe); arms take the first two.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]

RC = {
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "legend.frameon": False,
    "svg.hashsalt": "odeval",  # deterministic SVG ids
    "svg.fonttype": "none",
    "path.simplify": False,
}


@contextlib.contextmanager
def style():
    """Context manager applying the odeval figure style: sets :data:`RC` and restores
    those keys, and only those, on exit. (``plt.rc_context`` restores every parameter:
    a notebook's inline backend switches interactive mode on when it draws its first
    figure, inside the context, and the restore switched it off again, so that no figure
    after the first one was shown.)"""
    old = {k: matplotlib.rcParams[k] for k in RC}
    matplotlib.rcParams.update(RC)
    try:
        yield
    finally:
        matplotlib.rcParams.update(old)


#: Tick values per decade on a log axis, finest first (see :func:`plain_log_ticks`).
_LOG_SUBS = ((1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8), (1, 1.5, 2, 3, 5, 7), (1, 2, 5), (1, 3),
             (1,))


def plain_log_ticks(ax, axis: str = "x", min_gap_in: float = 0.42) -> list[float]:
    """Label a log axis at plain numbers (0.2, 0.5, 1, 2, 5) instead of ``2x10^0``.

    Chooses the finest of :data:`_LOG_SUBS` whose neighbouring labels are at least
    ``min_gap_in`` inches apart on the axes as they are now (set the limits and the axes
    position first), so labels never run into each other; minor ticks carry no label.
    Returns the ticks.
    """
    import math

    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

    fig = ax.figure
    lo, hi = ax.get_xlim() if axis == "x" else ax.get_ylim()
    lo, hi = min(lo, hi), max(lo, hi)
    pos = ax.get_position()
    length = (pos.width * fig.get_figwidth()) if axis == "x" else (pos.height * fig.get_figheight())
    per_decade = length / max(math.log10(hi / lo), 1e-9)
    ticks: list[float] = []
    for subs in _LOG_SUBS:
        cand = sorted({round(s * 10.0 ** e, 10) for e in range(math.floor(math.log10(lo)) - 1,
                                                                math.ceil(math.log10(hi)) + 1)
                       for s in subs})
        cand = [t for t in cand if lo <= t <= hi]
        gaps = [math.log10(b / a) * per_decade for a, b in zip(cand, cand[1:])]
        if len(cand) >= 2 and min(gaps) >= min_gap_in:
            ticks = cand
            break
    if len(ticks) < 2:  # a very short or very long axis: the ends and 1 if inside
        ticks = sorted({float(f"{lo:.2g}"), float(f"{hi:.2g}")} | ({1.0} if lo < 1 < hi else set()))
        ticks = [t for t in ticks if lo <= t <= hi] or [lo, hi]
    a = ax.xaxis if axis == "x" else ax.yaxis
    a.set_major_locator(FixedLocator(ticks))
    a.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    a.set_minor_locator(NullLocator())
    a.set_minor_formatter(NullFormatter())
    return ticks


def label_points(ax, xs, ys, labels, sizes=None, fontsize: float = 7.0) -> list:
    """Label scatter points so that labels overlap neither each other nor other points.

    ``sizes``: the markers' areas in points^2 (scatter's ``s``), to clear each marker.
    Labels are placed in a fixed order (by x, then y, then text) at the first of eight
    positions around their point (right, left, above, below, then the diagonals; then the
    same farther out) that is free, so the same data give the same figure. Returns the
    annotations.
    """
    import math

    import numpy as np

    fig = ax.figure
    ax.get_xlim(), ax.get_ylim()  # apply autoscaling before reading positions
    px = fig.dpi / 72.0
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    sizes = np.full(len(xs), 36.0) if sizes is None else np.asarray(sizes, float)
    pts = ax.transData.transform(np.column_stack([xs, ys]))
    radius = np.sqrt(sizes / math.pi) * px  # marker radius in pixels
    boxes: list[tuple[float, float, float, float]] = []

    def free(box, own):
        x0, y0, x1, y1 = box
        for b in boxes:
            if x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1:
                return False
        for j, (cx, cy) in enumerate(pts):
            if j == own:
                continue
            nx, ny = min(max(cx, x0), x1), min(max(cy, y0), y1)
            if (nx - cx) ** 2 + (ny - cy) ** 2 < radius[j] ** 2:
                return False
        return True

    out = []
    order = sorted(range(len(xs)), key=lambda i: (xs[i], ys[i], str(labels[i])))
    for i in order:
        w, h = 0.6 * fontsize * len(str(labels[i])) * px, fontsize * px
        cx, cy = pts[i]
        chosen = None
        for extra in (2.0, 9.0):
            d = radius[i] + extra * px
            for ux, uy in ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, 1), (1, -1), (-1, -1)):
                k = 0.75 if ux and uy else 1.0
                ox, oy = ux * d * k, uy * d * k
                x0 = cx + ox - (0 if ux > 0 else w if ux < 0 else w / 2)
                y0 = cy + oy - (0 if uy > 0 else h if uy < 0 else h / 2)
                box = (x0, y0, x0 + w, y0 + h)
                if free(box, i):
                    chosen = (ox, oy, ux, uy, box)
                    break
            if chosen:
                break
        if chosen is None:  # nowhere free: to the right, as before
            d = radius[i] + 2.0 * px
            chosen = (d, 0.0, 1, 0, (cx + d, cy - h / 2, cx + d + w, cy + h / 2))
        ox, oy, ux, uy, box = chosen
        boxes.append(box)
        out.append(ax.annotate(
            str(labels[i]), (xs[i], ys[i]), xytext=(ox / px, oy / px), textcoords="offset points",
            ha="left" if ux > 0 else "right" if ux < 0 else "center",
            va="bottom" if uy > 0 else "top" if uy < 0 else "center", fontsize=fontsize))
    return out
