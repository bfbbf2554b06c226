"""Figures saved by a second process (report.saving_beside) are the files saved inline, and a
save that fails there is made again here, raising its error as without the second process."""

import os
import sys

import pytest

from pipeline import report

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork: Linux only")


def _figure(i):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [0, i, 2 * i], label=f"series {i}")
    ax.set_title(f"Figure {i}")
    ax.legend()
    return fig


def test_figures_saved_beside_are_byte_identical_to_those_saved_inline(tmp_path):
    inline, beside = tmp_path / "inline", tmp_path / "beside"
    inline.mkdir()
    beside.mkdir()
    for i in range(5):
        report.save_figure(_figure(i), inline, f"f{i}")
    with report.saving_beside() as saver:
        for i in range(5):
            report.save_figure(_figure(i), beside, f"f{i}")
    assert saver.started >= 1   # some were saved by the second process
    names = sorted(p.name for p in inline.iterdir())
    assert names == sorted(p.name for p in beside.iterdir()) and len(names) == 10
    for n in names:
        assert (inline / n).read_bytes() == (beside / n).read_bytes(), n


def test_a_save_failing_in_the_second_process_is_made_again_here(tmp_path, monkeypatch):
    parent = os.getpid()
    real = report._save_now

    def only_here(fig, folder, stem):
        if os.getpid() != parent:
            raise OSError("no space left in the child")
        return real(fig, folder, stem)

    monkeypatch.setattr(report, "_save_now", only_here)
    with report.saving_beside() as saver:
        report.save_figure(_figure(1), tmp_path, "f1")
    assert saver.started == 1
    assert (tmp_path / "f1.svg").exists() and (tmp_path / "f1.png").exists()

    def never(fig, folder, stem):
        raise OSError("disk full")

    monkeypatch.setattr(report, "_save_now", never)
    with pytest.raises(OSError, match="disk full"):
        with report.saving_beside():
            report.save_figure(_figure(2), tmp_path, "f2")
