"""No traceback on any study shape (issue 17): hypothesis draws study shapes and
``odeval run`` must end either in a report that passes ``check-outputs`` or in a one-line
``error: ... [rule ...]``, never a Python traceback.

Shapes (:class:`tests.studyshapes.Shape`): 1 to 60 sites, 2 to 400 people per site,
cluster-randomised (the generator's practices, one practice per site, one per arm and
site) or individually randomised, one arm missing at some sites, no admission, crisis or
detention in one arm, everyone censored (no event, no death), everyone dead within a month.
``make test`` tries a fixed (derandomised) set of small studies, at most 600 people
(:data:`FAST`); ``make test-slow`` many more, up to 60 x 400 people (:data:`SLOW`).
Each example runs the whole CLI in this process on a study the generator writes in well
under a second; the great-expectations cross-check is off (it does not depend on the
shape, and tests/unit/test_validate_faults.py runs it) to keep the cost near 3 s a shape.
A failing shape is printed (``Shape(...)``) and can be rerun with
``tests.studyshapes.run_shape``; shrinking is off (each example is a whole run).
"""

from __future__ import annotations

import os
import shutil

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.studyshapes import ARMS, Shape, refusal, run_shape

#: (examples, most sites, most people per site, most people in all) per suite.
FAST = (int(os.environ.get("ODEVAL_SHAPES", "24")), 12, 50, 600)
SLOW = (int(os.environ.get("ODEVAL_SHAPES_SLOW", "150")), 60, 400, 24_000)

TALLY: dict[str, int] = {}


def shapes(max_sites: int, max_per_site: int, max_people: int):
    @st.composite
    def draw(d) -> Shape:
        sites = d(st.integers(1, max_sites))
        per_site = d(st.integers(2, max(2, min(max_per_site, max_people // sites))))
        design = d(st.sampled_from(["cluster", "individual"]))
        clusters = d(st.sampled_from(["many", "one_per_site", "one_per_arm"])) \
            if design == "cluster" else "many"
        ending = d(st.sampled_from(["none", "no_events_arm", "all_censored", "dead_early"]))
        return Shape(sites=sites, people_per_site=per_site, design=design, clusters=clusters,
                     empty_arm_sites=d(st.integers(0, sites)) if d(st.booleans()) else 0,
                     no_events_arm=d(st.sampled_from(ARMS)) if ending == "no_events_arm" else None,
                     all_censored=ending == "all_censored", dead_early=ending == "dead_early",
                     seed=d(st.integers(1, 10_000)))
    return draw()


@pytest.fixture(scope="module")
def params_file(tmp_path_factory):
    from pipeline.params import load_params

    p = load_params()
    p["validate"]["great_expectations"] = False
    path = tmp_path_factory.mktemp("shapes") / "params.yaml"
    path.write_text(yaml.safe_dump(p), encoding="utf-8")
    return path


def _check(shape: Shape, tmp_path_factory, params_file) -> None:
    folder = tmp_path_factory.mktemp("shape")
    run = run_shape(shape, folder, params=params_file)
    outcome = "report" if run.ok else "refused" if run.refused else "FAILED"
    TALLY[outcome] = TALLY.get(outcome, 0) + 1
    if outcome == "refused":
        rule = refusal(run.output)
        TALLY[f"refused: {rule}"] = TALLY.get(f"refused: {rule}", 0) + 1
        print(f"\n{shape!r}: refused [rule {rule}]")
    assert outcome != "FAILED", (f"{shape!r} ended in neither a report that passes "
                                 f"check-outputs nor a one-line error:\n{run.output[-3000:]}\n"
                                 f"check-outputs: {run.check}")
    shutil.rmtree(folder, ignore_errors=True)  # a passing shape's files are not needed


def _settings(n: int, **kw):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.generate], print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture], **kw)


@_settings(FAST[0])
@given(shape=shapes(*FAST[1:]))
def test_odeval_run_on_any_small_study_shape_ends_in_a_report_or_a_one_line_error(
        shape, tmp_path_factory, params_file):
    _check(shape, tmp_path_factory, params_file)


@pytest.mark.slow
@_settings(SLOW[0])
@given(shape=shapes(*SLOW[1:]))
def test_odeval_run_on_any_study_shape_ends_in_a_report_or_a_one_line_error(
        shape, tmp_path_factory, params_file):
    _check(shape, tmp_path_factory, params_file)


def teardown_module() -> None:
    if TALLY:
        print("\nstudy shapes: " + ", ".join(f"{k} {v}" for k, v in sorted(TALLY.items())))
