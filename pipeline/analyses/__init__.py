"""The analyses the plan declares, one module per family.

Each family is a function from the person frame and the :class:`~pipeline.plan.AnalysisPlan`
(with what else it needs: disclosure settings, the clusters frame) to an
:class:`AnalysisResult`: the estimates it makes, each with its estimand, method in words,
degrees of freedom and notes; the result objects of :mod:`pipeline.stats` (for notebooks);
exact tables (warehouse only); and disclosure-controlled public tables.
:mod:`pipeline.analyse` only orchestrates: it parses the plan, runs the families the plan
and ``analyse.run`` ask for, and stores what they return.

Families: :mod:`~pipeline.analyses.flow` (CONSORT-cluster flow, recruitment per cluster),
:mod:`~pipeline.analyses.trial_effects` (each outcome's effect, adjusted, with the design's
variance; multiplicity), :mod:`~pipeline.analyses.curves` (the primary outcome's curves and
log-rank test), :mod:`~pipeline.analyses.icc`, :mod:`~pipeline.analyses.subgroups`,
:mod:`~pipeline.analyses.baseline` (Table 1 of people and of clusters),
:mod:`~pipeline.analyses.site_comparison` (site effects, meta-analysis, funnels, fidelity
meta-regression). Shared pieces: :mod:`~pipeline.analyses.covariates` (the plan's
covariates as model columns), :mod:`~pipeline.analyses.multiplicity`.
A later family (observational weighting, missing data, sensitivity) is one more module
with the same signature and one more ``analyse.run`` name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd


def with_columns(d: pd.DataFrame, **columns: Any) -> pd.DataFrame:
    """``d.assign(**columns)`` without copying ``d``'s data: a shallow copy with these
    columns set (values, or functions of the frame, as ``assign`` takes them). The person
    frame of a national extract is hundreds of megabytes, which ``assign`` copied for
    every model. The result shares ``d``'s other columns: set whole columns on it, never
    write into it in place (``.loc[...] =``)."""
    out = d.copy(deep=False)
    for name, value in columns.items():
        out[name] = value(out) if callable(value) else value
    return out


@dataclass
class AnalysisResult:
    """What one family of analyses found."""

    family: str
    estimates: list[dict[str, Any]] = field(default_factory=list)  # analysis_estimates rows
    results: dict[str, Any] = field(default_factory=dict)           # pipeline.stats results
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)   # exact, warehouse only
    public: dict[str, pd.DataFrame] = field(default_factory=dict)   # disclosure-controlled
    notes: list[str] = field(default_factory=list)
    site_notes: list[str] = field(default_factory=list)  # sites without a hazard ratio, why
    not_shown: list[dict] = field(default_factory=list)  # figures and tables not built, why

    def merge(self, other: "AnalysisResult") -> "AnalysisResult":
        """This result with ``other``'s rows and tables added (in place; returns self)."""
        self.estimates += other.estimates
        self.results.update(other.results)
        self.tables.update(other.tables)
        self.public.update(other.public)
        self.notes += other.notes
        self.site_notes += other.site_notes
        self.not_shown += other.not_shown
        return self
