"""The few-cluster inference method chosen by simulation, per design shape and outcome.

``defaults.yaml`` beside this module is written by the simulation study
(:mod:`pipeline.simulation.study`, ``make test-slow``): for each simulated shape and
outcome, the method whose type I error and coverage stayed within Monte Carlo error of
nominal at every cluster variance simulated, with the best power (the rule and the
qualifying methods are recorded with it). The analysis plan's ``auto`` reads it through
:func:`default_method`; a ``params.yaml`` choice overrides it.

Methods, and the :mod:`pipeline.stats` call that computes each (arm coefficient; site as
strata in the Cox model and as fixed effects in the GLMs):

=====================  ==================================================================
``model``              ``cox(...)`` / ``glm_clustered(vcov="model")``
``CR1``                ``cox(cluster=, small_sample="cr1")`` /
                       ``glm_clustered(vcov="CR1", df_method="K-1")``
``CR2``                ``glm_clustered(vcov="CR2")`` (Satterthwaite df; GLMs only)
``MD``                 ``glm_clustered(vcov="MD")`` (t on K - p; GLMs only)
``KC``                 ``glm_clustered(vcov="KC")`` (t on K - p; GLMs only)
``jackknife-cluster``  ``cox(cluster=cluster, small_sample="jackknife")`` /
                       ``glm_clustered(vcov="jackknife", cluster=cluster)``
``jackknife-site``     the same with ``cluster=site``
``cluster-level``      ``cluster_level(...)`` (t on clusters - sites - 1)
``permutation``        ``cluster_level(..., permutation=True).permutation``
=====================  ==================================================================
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

DEFAULTS_YAML = Path(__file__).with_name("defaults.yaml")

#: outcome families the analysis plan names, to the outcome simulated for each
OUTCOMES = {"relapse": "relapse", "time_to_event": "relapse", "survival": "relapse",
            "involuntary": "involuntary", "count": "involuntary", "rate": "involuntary",
            "rtw": "rtw", "binary": "rtw"}


@lru_cache(maxsize=1)
def load() -> dict:
    """The parsed ``defaults.yaml``."""
    return yaml.safe_load(DEFAULTS_YAML.read_text())


def shape_for(design: str, clusters_per_arm_per_site: int | None = None) -> str:
    """The simulated shape a design is closest to: ``pair_matched`` (one cluster per arm
    in each site), ``six_by_three`` (two or more per arm in each site), ``individual``."""
    if design in ("individually_randomised", "individual"):
        return "individual"
    if design in ("cluster_randomised", "cluster"):
        if clusters_per_arm_per_site is None:
            raise ValueError("a cluster-randomised design needs clusters_per_arm_per_site to choose its default")
        return "pair_matched" if clusters_per_arm_per_site <= 1 else "six_by_three"
    raise ValueError(f"no simulated default for design {design!r}: the few-cluster defaults are for "
                     "randomised designs (cluster_randomised, individually_randomised), not observational ones")


def default_method(outcome: str, design: str, clusters_per_arm_per_site: int | None = None) -> str:
    """The method chosen by simulation for ``outcome`` (``relapse``/``time_to_event``,
    ``involuntary``/``count``, ``rtw``/``binary``) in a design of that shape."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome family {outcome!r}; one of {sorted(OUTCOMES)}")
    shape = shape_for(design, clusters_per_arm_per_site)
    return load()["defaults"][shape][OUTCOMES[outcome]]["method"]


def rationale(outcome: str, design: str, clusters_per_arm_per_site: int | None = None) -> dict:
    """The rule that chose the default, its power and the other qualifying methods."""
    shape = shape_for(design, clusters_per_arm_per_site)
    return dict(load()["defaults"][shape][OUTCOMES[outcome]], shape=load()["shapes"][shape])
