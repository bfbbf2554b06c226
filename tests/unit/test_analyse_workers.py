"""pipeline.analyse's second worker (analyse.workers: 2, families shared with a forked process
from the two ends of a list): results come back as computed, each family once, and a worker
that fails leaves its families to be computed in the parent, which raises an error as it
would without a worker."""

from __future__ import annotations

import os
import sys
import time

import pandas as pd
import pytest

from pipeline.parallel import two_ends
from pipeline.analyses import AnalysisResult

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork: Linux")


def _unit(name, seconds=0.0, fail_in_child_of=None, always_fail=False):
    def fn():
        time.sleep(seconds)
        if always_fail or (fail_in_child_of is not None and os.getpid() != fail_in_child_of):
            raise ValueError(f"no estimate for {name}")
        return {name: AnalysisResult(name, estimates=[{"pid": os.getpid()}],
                                     tables={"t": pd.DataFrame({"x": [1.5, 2.5]})})}
    return (name,), fn


def test_units_are_shared_between_the_ends_and_each_computed_once():
    """This process takes from the front and the worker from the back: with a slow unit
    at the front, the worker computes the rest; every unit comes back once, as computed."""
    units = [_unit("slow", 1.0), *(_unit(f"u{i}") for i in range(5))]
    got = list(two_ends(units, fork=True))
    names = [n for ns, _ in got for n in ns]
    assert sorted(names) == sorted(["slow", *(f"u{i}" for i in range(5))])
    pids = {n: r[n].estimates[0]["pid"] for ns, r in got for n in ns}
    assert pids["slow"] == os.getpid()
    assert pids["u4"] != os.getpid()        # the worker's first claim
    assert got[0][0] == ("slow",)           # this process's units first
    for _, r in got:
        assert next(iter(r.values())).tables["t"].equals(pd.DataFrame({"x": [1.5, 2.5]}))


def test_a_failed_worker_leaves_its_units_to_this_process():
    me = os.getpid()
    units = [_unit("slow", 0.5), _unit("a", fail_in_child_of=me), _unit("b")]
    got = dict((ns[0], r[ns[0]].estimates[0]["pid"]) for ns, r in two_ends(units, fork=True))
    assert set(got) == {"slow", "a", "b"} and got["a"] == me
    with pytest.raises(ValueError, match="no estimate for b"):
        list(two_ends([_unit("slow", 0.5), _unit("b", always_fail=True)], fork=True))


def test_without_fork_every_unit_is_computed_here_in_order():
    got = list(two_ends([_unit("a"), _unit("b"), _unit("c")], fork=False))
    assert [ns for ns, _ in got] == [("a",), ("b",), ("c",)]
    assert {r[ns[0]].estimates[0]["pid"] for ns, r in got} == {os.getpid()}


def test_a_failing_unit_here_stops_the_worker():
    units = [_unit("bad", always_fail=True), _unit("long", 60.0)]
    t = time.time()
    with pytest.raises(ValueError, match="no estimate for bad"):
        list(two_ends(units, fork=True))
    assert time.time() - t < 30


@pytest.mark.parametrize("value", [0, 3, "two", 1.5, True])
def test_workers_other_than_one_or_two_are_refused_in_one_line(value):
    from pipeline.analyse import resolve_params
    from pipeline.errors import OdevalError

    with pytest.raises(OdevalError, match="analyse.workers must be 1 or 2"):
        resolve_params({"workers": value})


def test_the_worker_is_forked_only_when_both_processes_are_expected_to_fit(monkeypatch):
    """analyse.memory_budget_gb: the memory held at the fork and what the two processes
    allocate of their own, per person, must fit."""
    from pipeline import analyse, parallel

    monkeypatch.setattr(parallel, "resident_bytes", lambda: 1.0e9)
    assert parallel.worker_fits(3, 2.0e9) and not parallel.worker_fits(2.9, 2.0e9)
    assert parallel.worker_fits(None, 9e99)
    monkeypatch.setattr(parallel, "resident_bytes", lambda: None)   # not Linux: no measure
    assert parallel.worker_fits(0.001, 1e9)
    # national size (1 M people) after odeval run's earlier stages (1.0 GB held): forked;
    # not if this process held 2 GB (then a trust-size frame, 50,000 people, still is)
    national, trust = (2 * analyse.WORK_BYTES_PER_PERSON * n for n in (1_000_000, 50_000))
    assert parallel.worker_fits(3, national)
    monkeypatch.setattr(parallel, "resident_bytes", lambda: 2.0e9)
    assert not parallel.worker_fits(3, national) and parallel.worker_fits(3, trust)


@pytest.mark.parametrize("value", [0, -1, "3GB", True])
def test_a_memory_budget_that_is_not_a_positive_number_is_refused_in_one_line(value):
    from pipeline.analyse import resolve_params
    from pipeline.errors import OdevalError

    with pytest.raises(OdevalError, match="analyse.memory_budget_gb must be a positive"):
        resolve_params({"memory_budget_gb": value})
