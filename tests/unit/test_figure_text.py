"""pipeline.figure_text: the report's figures byte for byte the same with text measured once."""

from __future__ import annotations

import io

import matplotlib
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from matplotlib import text as mtext  # noqa: E402

from pipeline import figure_text  # noqa: E402
from pipeline.stats._style import style  # noqa: E402


def _figure():
    """Titles, tick labels on a log axis, math text, a rotated and a bold label, a legend
    placed by matplotlib ('best'), a rasterised line: every path a text's size takes."""
    with style():
        fig, (a, b) = plt.subplots(1, 2, figsize=(6, 3))
        a.plot([1, 2, 5, 10], [0.5, 1, 2, 4], label="Open Dialogue")
        a.plot([1, 2, 5, 10], [1, 1.5, 2.5, 3], label="Usual care", rasterized=True)
        a.set_xscale("log")
        a.set_title("Relapse by site")
        a.set_ylabel(r"$\hat{\theta}$ per 1,000 (log)")
        a.legend(loc="best")
        b.bar(["A", "B", "C"], [3, 1, 2])
        b.set_xticks([0, 1, 2], ["Site A", "Site B", "Site C"], rotation=30)
        b.text(0.5, 0.9, "bold note", transform=b.transAxes, fontweight="bold")
        fig.tight_layout()
    return fig


def _save(measured_once: bool) -> tuple[bytes, bytes]:
    fig = _figure()
    svg, png = io.BytesIO(), io.BytesIO()
    with style():
        ctx = figure_text.text_measured_once() if measured_once else _nothing()
        with ctx:
            fig.savefig(svg, format="svg", bbox_inches="tight",
                        metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
            fig.savefig(png, format="png", bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return svg.getvalue(), png.getvalue()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_same_bytes_with_text_measured_once():
    svg, png = _save(measured_once=False)
    # twice: the second time the sizes come from the store the first one filled
    for _ in range(2):
        assert _save(measured_once=True) == (svg, png)


def test_matplotlib_restored_after_and_after_an_error():
    before = (mtext._get_text_metrics_function, mtext.get_font)
    with pytest.raises(RuntimeError):
        with figure_text.text_measured_once():
            assert mtext._get_text_metrics_function is not before[0]
            raise RuntimeError("a figure failed")
    assert (mtext._get_text_metrics_function, mtext.get_font) == before
    assert "_find_fonts_by_props" not in vars(font_manager.fontManager)


def test_another_matplotlib_version_is_left_alone(monkeypatch):
    monkeypatch.setattr(figure_text, "CHECKED", ("0.0",))
    before = mtext._get_text_metrics_function
    with figure_text.text_measured_once():
        assert mtext._get_text_metrics_function is before
        assert "_find_fonts_by_props" not in vars(font_manager.fontManager)
