"""Delete-one-group jackknife variance of any estimator (few clusters).

For estimators without a small-sample cluster-robust variance of their own (restricted mean
survival time, the Fine-Gray model), the design's variance is the delete-one-cluster (or
delete-one-site) jackknife: the estimate refitted without each group ``g`` in turn,

    V = (G - 1) / G * sum_g (theta_g - theta_bar)^2,

with a t reference distribution on G - 1 degrees of freedom (the CV3 variance of MacKinnon,
Nielsen and Webb, as :func:`pipeline.stats.cox` uses it for the Cox model). Whether its
intervals cover at the nominal rate in the design shapes odeval meets is measured by
simulation (``tests/unit/stats/test_sensitivity_coverage.py``), not assumed.

References
----------
Efron B, Stein C. The jackknife estimate of variance. Ann Stat 1981;9:586-596.
MacKinnon JG, Nielsen MO, Webb MD. Cluster-robust inference: a guide to empirical
practice. J Econometrics 2023;232:272-299.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from pipeline.stats._result import NotEstimable


def group_jackknife(df: pd.DataFrame, group: str,
                    estimate: Callable[[pd.DataFrame], np.ndarray | float],
                    partial: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """Delete-one-group jackknife of ``estimate`` (a function of a data frame returning a
    number or a vector).

    Returns
    -------
    (vcov, replicates, G) : ndarray shape (p, p), ndarray shape (G, p), int
        ``vcov = (G - 1) / G * sum_g (b_g - b_mean)(b_g - b_mean)'``; the replicates in the
        order of the sorted group labels. ``partial``: an element that is not finite in
        some replicate (a term that cannot be estimated without a group, e.g. that group's
        own indicator) gets NaN variances instead of an error.
    """
    labels = group_labels(df[group])
    key = df[group]
    return combine([estimate(df[key != lab]) for lab in labels], group, partial)


def group_labels(key: pd.Series) -> list:
    """The groups of ``key`` in the order :func:`group_jackknife` deletes them (sorted as
    text), refusing fewer than 3."""
    labels = sorted(key.dropna().unique(), key=str)
    if len(labels) < 3:
        raise NotEstimable(f"the jackknife needs at least 3 groups of {key.name!r}, got "
                           f"{len(labels)}")
    return labels


def combine(reps: list, group: str, partial: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """:func:`group_jackknife`'s result from the replicates (one per group, in the order of
    :func:`group_labels`), for an estimator that computes its replicates itself (e.g. from
    arrays sorted once, without a data frame per replicate)."""
    g = len(reps)
    b = np.vstack([np.atleast_1d(np.asarray(r, dtype=float)) for r in reps])
    ok = np.isfinite(b).all(axis=0)
    if not ok.all() and not partial:
        raise NotEstimable(f"an estimate without one {group} is not finite")
    dev = np.where(ok, b - np.where(ok, b, 0).mean(axis=0), np.nan)
    return (g - 1) / g * dev.T @ dev, b, g
