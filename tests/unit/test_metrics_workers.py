"""pipeline.metrics' second worker (metrics.workers: 2, the curves of each partition of the
people shared with a forked process from the two ends of CURVE_SCHEDULE): the same
estimates, to the bit, as in one process, each partition estimated once."""

from __future__ import annotations

import os
import sys

import numpy as np
import pandas as pd
import pytest

from pipeline import disclosure, metrics
from pipeline.errors import OdevalError


def _persons(n=3000, seed=7):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "relapse_time": rng.integers(1, 800, n).astype(float),
        "relapse_event": rng.choice([0, 1, 2], n, p=[0.5, 0.35, 0.15]),
        "arm": rng.choice(list(metrics.ARMS), n),
        "site_id": rng.choice([f"S{k:02d}" for k in range(12)], n),
        "ethnicity_group": rng.choice(["white", "black", "asian", "mixed", "other"], n)})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork: Linux")
@pytest.mark.parametrize("dimensions", [["site", "ethnicity"], ["ethnicity"]])
def test_two_workers_give_the_curves_of_one_bit_for_bit(dimensions, monkeypatch):
    persons = _persons()
    pids = []
    plain = metrics._partition_curves

    def noted(*args):
        pids.append(os.getpid())
        return plain(*args)

    cfg = dict(disclosure.DEFAULTS)
    p = metrics.resolve_params({"dimensions": dimensions, "workers": 1})
    one = metrics._curve_estimates(persons, p, cfg)
    monkeypatch.setattr(metrics, "_partition_curves", noted)
    two = metrics._curve_estimates(persons, {**p, "workers": 2}, cfg)
    assert list(one) == list(two) == dimensions
    for dim in dimensions:
        pd.testing.assert_frame_equal(one[dim], two[dim], check_exact=True)
        assert len(one[dim]) > 0
    # parent's calls only are noted here; the worker took at least the last partition
    assert 0 < len(pids) < 2 + 2 * len(dimensions)


@pytest.mark.parametrize("workers", [0, 3, True, "2"])
def test_workers_must_be_1_or_2(workers):
    with pytest.raises(OdevalError, match="metrics.workers must be 1 or 2"):
        metrics.resolve_params({"workers": workers})
