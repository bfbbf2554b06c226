"""pipeline.stats.funnel against R (goldens in tests/reference/funnel/).

FunnelPlotR is not installed; make_funnel_goldens.R codes its overdispersion steps
(transformed z-scores, 10%/90% Winsorisation, phi, tau2) from its source and
Spiegelhalter's (2005) interpolated exact binomial/Poisson limits with qbinom/qpois::

    r <- qbinom(p, n, target); alpha <- (pbinom(r, n, target) - p) /
        (pbinom(r, n, target) - pbinom(r - 1, n, target)); limit <- (r - alpha) / n

Values compared to 1e-6 relative (absolute floor 1e-12 for limits truncated at 0);
flags exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.stats import funnel

HERE = Path(__file__).parent / "funnel"
GOLD = json.loads((HERE / "funnel_goldens.json").read_text())
UNITS = pd.read_csv(HERE / "funnel_units.csv")
RTOL, ATOL = 1e-6, 1e-12


def _id(case):
    return f"{case['kind']}-{case['overdispersion']}" + ("-target" if case.get("target_given") else "")


@pytest.mark.parametrize("case", GOLD["cases"], ids=_id)
def test_funnel_matches_r(case):
    u = UNITS[UNITS.kind == case["kind"]]
    od = None if case["overdispersion"] == "none" else case["overdispersion"]
    target = case["target"] if case.get("target_given") else None
    res = funnel(u.observed, u.denominator, kind=case["kind"], target=target,
                 overdispersion=od, labels=u.label)
    t = res.table
    assert list(t.columns) == ["label", "observed", "denominator", "value", "z", "lower_95",
                               "upper_95", "lower_998", "upper_998", "flag"]
    assert list(t.label) == list(u.label)
    np.testing.assert_allclose(res.target, case["target"], rtol=RTOL)
    np.testing.assert_allclose(res.phi, case["phi"], rtol=RTOL)
    np.testing.assert_allclose(res.tau2, case["tau2"], rtol=RTOL)
    assert res.limits_used == ("exact" if case["limits_used"] == "none" else case["limits_used"])
    for col in ("value", "z", "lower_95", "upper_95", "lower_998", "upper_998"):
        np.testing.assert_allclose(t[col].to_numpy(), case[col], rtol=RTOL, atol=ATOL, err_msg=col)
    assert list(t.flag) == case["flag"]
    # the curve drawn in the figure passes through R's limits at the units' denominators
    curve = res.limits_curve(u.denominator.to_numpy(dtype=float))
    for col in ("lower_95", "upper_95", "lower_998", "upper_998"):
        np.testing.assert_allclose(curve[col].to_numpy(), case[col], rtol=RTOL, atol=ATOL,
                                   err_msg=f"curve {col}")
