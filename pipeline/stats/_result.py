"""Base class of every result object in :mod:`pipeline.stats`.

A result holds a tidy table (``summary`` for models, ``table`` for estimates), a list of
``notes`` saying what was dropped or adjusted and why, and renders itself in notebooks.
"""

from __future__ import annotations

import html

import pandas as pd


class NotEstimable(ValueError):
    """The data hold no estimate of this quantity (no events, one group, no information on a
    covariate, ...): the message says why, in words a report can print. A ``ValueError``, so
    code that catches those keeps working; arguments that are wrong whatever the data (a
    bad option) stay plain ``ValueError``."""


class Result:
    """A fitted estimate: a tidy frame plus notes.

    Subclasses set ``title`` and fill ``_frame`` (the main tidy table) and ``notes``.
    """

    title: str = "Result"

    def __init__(self, frame: pd.DataFrame | None = None, notes: list[str] | None = None):
        self._frame = frame if frame is not None else pd.DataFrame()
        self.notes: list[str] = list(notes or [])

    def _main_frame(self) -> pd.DataFrame:
        return self._frame

    def __repr__(self) -> str:
        lines = [self.title, self._main_frame().to_string()]
        lines += [f"Note: {n}" for n in self.notes]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        return (
            f"<div class='odeval-result'><strong>{html.escape(self.title)}</strong>"
            f"{self._main_frame().to_html(float_format=lambda v: f'{v:.4g}')}"
            + (f"<ul class='notes'>{notes}</ul>" if notes else "")
            + "</div>"
        )


class AttrResult(Result):
    """A result built from its tidy frame, notes and named attributes (``fit.n``,
    ``fit.vcov``, ...): the frame is also kept under :attr:`frame_name` (``summary`` for
    models, ``table`` for estimates) and every keyword becomes an attribute."""

    frame_name: str = "summary"

    def __init__(self, frame: pd.DataFrame, notes: list[str] | None = None, **attrs):
        super().__init__(frame, notes)
        setattr(self, self.frame_name, frame)
        for k, v in attrs.items():
            setattr(self, k, v)

