"""The plan's pre-specified covariates as model columns.

Person-level covariates come from the person frame, cluster-level ones from the clusters
table (joined on ``cluster_id``). Each becomes numeric columns a model can take:

* a number enters as it is; where it is missing, the mean of the people who have it is put
  in and an indicator ``<name>__missing`` added (the missing-indicator method, which is
  valid for baseline covariates in a randomised trial because they cannot depend on the arm:
  White and Thompson, Stat Med 2005;24:993-1007; Groenwold et al., CMAJ 2012;184:1265-9);
* text (a category) enters as indicators of every level but the most common one (the
  reference), missing being a level of its own (``(missing)``).

A column that does not vary among the people analysed (e.g. a level nobody has) is left
out, with a note: it carries no information and would make the model singular.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from pipeline.plan import AnalysisPlan, cluster_covariate_frame

MISSING = "(missing)"


def _safe(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]+", "_", str(name)).strip("_") or "level"


def with_cluster_covariates(d: pd.DataFrame, plan: AnalysisPlan,
                            clusters: pd.DataFrame | None) -> pd.DataFrame:
    """The person frame with the plan's cluster-level covariates joined by cluster."""
    if not plan.cluster_covariates or clusters is None or not len(clusters):
        return d
    wide = cluster_covariate_frame(clusters).set_index("cluster_id")
    out = d.copy(deep=False)   # whole columns are added: d's data need not be copied
    for c in plan.cluster_covariates:
        out[c] = out["cluster_id"].map(wide[c])
    return out


def adjustment(d: pd.DataFrame, names: list[str] | tuple[str, ...]
               ) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Model columns for the covariates ``names`` of ``d``.

    Returns ``(frame, columns, notes)``: ``d`` with the numeric columns added (named
    ``cov__<covariate>[__<level>]``), their names in order, and notes (missing values
    filled, columns left out). Raises ``ValueError`` for a frame without rows (a model of
    no one: the analyses report it as not estimated).
    """
    if d.empty:
        raise ValueError("no one to analyse (no rows left for the model)")
    out = d.copy(deep=False)   # only whole columns are added: d's data need not be copied
    cols: list[str] = []
    notes: list[str] = []
    for name in names:
        x = d[name]
        numeric = pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x)
        if numeric:
            x = x.astype(float)
            miss = x.isna()
            col = f"cov__{_safe(name)}"
            if miss.all():
                notes.append(f"Covariate {name} is missing for everyone: left out.")
                continue
            out[col] = x.fillna(x[~miss].mean())
            cols.append(col)
            if miss.any():
                out[f"{col}__missing"] = miss.astype(float)
                cols.append(f"{col}__missing")
                notes.append(f"Covariate {name}: {int(miss.sum())} missing values set to the "
                             "mean, with a missing indicator.")
        else:
            x = x.astype(object).where(x.notna(), MISSING).astype(str)
            # each level's indicator from the codes (one pass over the text, not one per level)
            codes, levels = pd.factorize(x)
            counts = pd.Series(np.bincount(codes, minlength=len(levels)), index=levels)
            ref = sorted(counts[counts == counts.max()].index)[0]
            for lv in sorted(counts.index):
                if lv == ref:
                    continue
                col = f"cov__{_safe(name)}__{_safe(lv)}"
                out[col] = (codes == levels.get_loc(lv)).astype(float)
                cols.append(col)
    kept = []
    for c in cols:
        if out[c].std() == 0 or not np.isfinite(out[c].std()):
            notes.append(f"Model column {c.removeprefix('cov__')} does not vary: left out.")
        else:
            kept.append(c)
    return out, kept, notes
