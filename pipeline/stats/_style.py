"""One figure style for every odeval figure: journal-like, colour-blind safe, deterministic."""

from __future__ import annotations

import contextlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

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
    """Context manager applying the odeval figure style."""
    with plt.rc_context(RC):
        yield
