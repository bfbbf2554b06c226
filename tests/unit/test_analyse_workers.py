"""pipeline.analyse's second worker (analyse.workers: return to work in a forked process):
the result comes back as computed, and a worker that fails leaves the family to be
computed in the parent, which raises its error as it would without a worker."""

from __future__ import annotations

import os
import sys
import time

import pandas as pd
import pytest

from pipeline.analyse import _Forked
from pipeline.analyses import AnalysisResult

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork: Linux")


def _family(fail_in_child_of: int | None = None, always_fail: bool = False):
    def fn():
        if always_fail or (fail_in_child_of is not None and os.getpid() != fail_in_child_of):
            raise ValueError("no estimate here")
        return AnalysisResult("return_to_work", estimates=[{"pid": os.getpid()}],
                              tables={"t": pd.DataFrame({"x": [1.5, 2.5]})})
    return fn


def test_the_worker_returns_the_family_computed_in_another_process():
    res = _Forked(_family())()
    assert res.estimates[0]["pid"] != os.getpid()
    assert res.tables["t"].equals(pd.DataFrame({"x": [1.5, 2.5]}))


def test_a_failed_worker_leaves_the_family_to_the_parent():
    res = _Forked(_family(fail_in_child_of=os.getpid()))()
    assert res.estimates[0]["pid"] == os.getpid()
    with pytest.raises(ValueError, match="no estimate here"):
        _Forked(_family(always_fail=True))()


def test_stop_ends_a_worker_whose_result_is_not_wanted():
    w = _Forked(lambda: time.sleep(60))
    proc = w.proc
    w.stop()
    assert not proc.is_alive()


@pytest.mark.parametrize("value", [0, 3, "two", 1.5, True])
def test_workers_other_than_one_or_two_are_refused_in_one_line(value):
    from pipeline.analyse import resolve_params
    from pipeline.errors import OdevalError

    with pytest.raises(OdevalError, match="analyse.workers must be 1 or 2"):
        resolve_params({"workers": value})
