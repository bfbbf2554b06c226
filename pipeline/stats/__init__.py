"""Statistics for Open Dialogue evaluations, independent of the warehouse.

Every estimator takes a data frame (or arrays) and returns a result object with a tidy
``summary`` or ``table``, ``notes`` and ``_repr_html_``; each is checked against R on
public datasets (``tests/reference/``) and against planted truth in the synthetic study.

Names are imported lazily so that ``import pipeline.stats`` stays cheap.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    # _result.py: raised where the data hold no estimate (the message says why)
    "NotEstimable": "_result",
    # survival.py
    "kaplan_meier": "survival",
    "logrank": "survival",
    # coxph.py
    "cox": "coxph",
    # competing.py
    "aalen_johansen": "competing",
    "gray_test": "competing",
    "fine_gray": "competing",
    # rates.py
    "rate_ratio": "rates",
    # binary.py
    "risk_difference": "binary",
    "risk_ratio": "binary",
    "odds_ratio": "binary",
    # clustered.py: GLMs with few-cluster inference (CR1, CR2, CR3/MD, KC, jackknife)
    "glm_clustered": "clustered",
    "glm_design": "clustered",
    # two_stage.py: two-stage cluster-level analysis, stratified permutation test
    "cluster_level": "two_stage",
    "permutation_test": "two_stage",
    # icc.py: ANOVA ICC with Searle's interval, shared gamma frailty variance
    "icc_anova": "icc",
    "frailty_variance": "icc",
    # tableone.py
    "table_one": "tableone",
    # meta.py
    "meta_analysis": "meta",
    "meta_regression": "meta",
    # funnel_limits.py (a module must not share its function's name: importing it would
    # rebind the package attribute to the module)
    "funnel": "funnel_limits",
    "funnel_estimates": "funnel_limits",
    # propensity.py, weighting.py, evalue.py (observational comparisons)
    "propensity_weights": "propensity",
    "balance": "propensity",
    "weighted_cox": "weighting",
    "weighted_curves": "weighting",
    "weighted_rate_ratio": "weighting",
    "weighted_risk": "weighting",
    "evalue": "evalues",
    # figures
    "plot_love": "figures_weighting",
    "plot_ps_overlap": "figures_weighting",
    "plot_kaplan_meier": "figures_survival",
    "plot_cumulative_incidence": "figures_survival",
    "plot_forest": "figures_sites",
    "plot_funnel": "figures_sites",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline.stats' has no attribute {name!r}")
    return getattr(importlib.import_module(f"pipeline.stats.{module}"), name)
