"""Site comparison's funnels (``site_comparison.funnels``) and per-site differences
(``report.site_differences``) on hand-made public metrics tables: every measure drawn or
named with why, directions, the Aalen-Johansen standard error from its published interval,
suppressed sites left out, and nothing computed from anything but published values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipeline import analyse
from pipeline.analyses import site_comparison
from pipeline.metrics import FIDELITY_LABELS, MetricsResult
from pipeline.report import site_differences

SITES = ["S01", "S02", "S03", "S04", "S05"]
Z = stats.norm.ppf(0.975)


def _aj_row(level, arm, n, p, se):
    """A published Aalen-Johansen point with its log-scale interval."""
    lo, hi = p * np.exp(-Z * se / p), min(p * np.exp(Z * se / p), 1.0)
    return dict(dimension="site", level=level, arm=arm, outcome="relapse", metric="aj_365d",
                label="Relapse by day 365", unit="proportion", n=n, events=None, estimate=p,
                lower=lo, upper=hi, ci_method="Aalen-Johansen, infinitesimal jackknife")


def _binary_row(level, arm, outcome, metric, n, e, label):
    return dict(dimension="site", level=level, arm=arm, outcome=outcome, metric=metric,
                label=label, unit="proportion", n=n, events=e,
                estimate=np.nan if e is None or n is None else e / n, lower=np.nan,
                upper=np.nan, ci_method="Wilson score")


@pytest.fixture
def met():
    o = []
    aj = {"S01": (50, 0.20, 0.05), "S02": (80, 0.25, 0.048), "S03": (210, 0.33, 0.032),
          "S04": (160, 0.25, 0.034), "S05": (120, np.nan, np.nan)}  # S05 hidden (flagged)
    for s, (n, p, se) in aj.items():
        o.append(_aj_row(s, "open_dialogue", n, p, se) if np.isfinite(p) else
                 {**_aj_row(s, "open_dialogue", n, 0.5, 0.05), "estimate": np.nan,
                  "lower": np.nan, "upper": np.nan})
        o.append(_aj_row(s, "usual_care", n, 0.4, 0.05))
    o.append(_aj_row("all", "open_dialogue", 620, 0.27, 0.02))
    ap = {"S01": (25, None), "S02": (30, 15), "S03": (60, 30), "S04": (65, 20), "S05": (45, 15)}
    for s, (n, e) in ap.items():
        o.append(_binary_row(s, "open_dialogue", "antipsychotic", "any", n, e, "Any antipsychotic"))
        o.append(_binary_row(s, "usual_care", "antipsychotic", "any", n, None if s == "S02"
                             else 20, "Any antipsychotic"))
    # return to work: one site only shown
    for s in SITES:
        o.append(_binary_row(s, "open_dialogue", "return_to_work", "at_2y", 30,
                             15 if s == "S01" else None, "In work or education at 2 years"))
    f = []
    for s, (n, e) in zip(SITES, [(55, 10), (70, 60), (220, 190), (155, 135), (125, 105)]):
        f.append(dict(site_id=s, arm="open_dialogue", indicator="p1_within_24h", kind="binary",
                      n=n, events=e, estimate=e / n, lower=np.nan, upper=np.nan,
                      measurable=True))
        m, sd = 0.5 + 0.08 * SITES.index(s), 0.2
        h = stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n)
        f.append(dict(site_id=s, arm="open_dialogue", indicator="p7_share_person_present",
                      kind="share", n=n, events=None, estimate=m, lower=m - h, upper=min(m + h, 1),
                      measurable=True))
        f.append(dict(site_id=s, arm="open_dialogue", indicator="p1_hours_to_first_meeting",
                      kind="hours", n=n, events=None, estimate=20.0, lower=np.nan,
                      upper=np.nan, measurable=True))
        f.append(dict(site_id=s, arm="open_dialogue", indicator="p6_tolerance_of_uncertainty",
                      kind="not_measurable", n=None, events=None, estimate=np.nan,
                      lower=np.nan, upper=np.nan, measurable=False))
    f.append(dict(site_id="all", arm="open_dialogue", indicator="p7_share_person_present",
                  kind="share", n=625, events=None, estimate=0.66, lower=0.64, upper=0.68,
                  measurable=True))
    fid = pd.DataFrame(f)
    out = pd.DataFrame(o)
    return MetricsResult(params={"conf_level": 0.95, "landmark_days": 365}, outcomes=out,
                         outcomes_public=out, fidelity=fid, fidelity_public=fid,
                         dq=pd.DataFrame(), dq_public=pd.DataFrame())


@pytest.fixture
def res(met):
    p = analyse.resolve_params(None)
    return site_comparison.funnels(met, p, {"round_to": 5, "suppress_max": 7})


def test_every_measure_is_drawn_or_named_with_why(res):
    fu = res.public["funnel"]
    drawn = set(fu.indicator)
    why = {n["item"].removeprefix("funnel_"): n["reason"] for n in res.not_shown}
    assert {"p1_within_24h", "p7_share_person_present", "relapse_by_day_365",
            "any_antipsychotic"} <= drawn
    assert "median of hours" in why["p1_hours_to_first_meeting"]
    assert "not measurable" in why["p6_tolerance_of_uncertainty"]
    assert why["in_work_at_2y"].startswith("1 of 5 sites with values that can be shown")
    assert set(fu.kind) == {"binomial", "mean", "time_to_event"}
    assert set(FIDELITY_LABELS) >= {i for i in drawn if i.startswith("p")}


def test_directions_name_better_and_worse(res):
    fu = res.public["funnel"]
    assert fu.loc[fu.indicator == "p1_within_24h", "higher_is_better"].all()
    assert not fu.loc[fu.indicator.isin(["relapse_by_day_365", "any_antipsychotic"]),
                      "higher_is_better"].any()
    p1 = fu[fu.indicator == "p1_within_24h"].set_index("site_id")
    # S01 10/55 (18%) is far below the others: worse for a standard to meet
    assert p1.at["S01", "flag"].startswith("low") and p1.at["S01", "assessment"] == "worse"
    assert site_comparison.assessment("low_95", False) == "better"
    assert site_comparison.assessment("high_998", False) == "worse"
    assert site_comparison.assessment("within", True) == "within"


def test_relapse_is_the_aalen_johansen_point_with_its_published_standard_error(res):
    fu = res.public["funnel"]
    r = fu[fu.indicator == "relapse_by_day_365"].set_index("site_id")
    np.testing.assert_allclose(r.loc[["S01", "S02", "S03", "S04"], "se"],
                               [0.05, 0.048, 0.032, 0.034], rtol=1e-9)
    np.testing.assert_allclose(r.loc["S01", "denominator"], 0.2 * 0.8 / 0.05**2)
    assert r.at["S05", "flag"] == "suppressed" and np.isnan(r.at["S05", "value"])
    assert r["target"].iloc[0] == pytest.approx(0.27)  # the published all-sites value
    assert r["events"].isna().all()  # no count is published for a curve point


def test_binomial_funnels_use_the_published_counts_only(res, met):
    fu = res.public["funnel"]
    a = fu[fu.indicator == "any_antipsychotic"].set_index("site_id")
    assert a.at["S01", "flag"] == "suppressed"
    shown = a.drop(index="S01")
    assert a["target"].iloc[0] == pytest.approx(shown["events"].sum() / shown["n"].sum())
    from pipeline.stats import funnel

    again = funnel(shown["events"], shown["n"], target=a["target"].iloc[0],
                   overdispersion="additive")
    assert list(again.table["flag"]) == list(shown["flag"])
    assert again.phi == pytest.approx(a["phi"].iloc[0])


def test_the_share_funnel_reads_the_standard_error_off_the_t_interval(res):
    fu = res.public["funnel"]
    s = fu[fu.indicator == "p7_share_person_present"].set_index("site_id")
    np.testing.assert_allclose(s["se"], 0.2 / np.sqrt(s["n"].astype(float)), rtol=1e-9)
    assert s["target"].iloc[0] == pytest.approx(0.66)


def test_site_differences_come_from_the_published_values(met):
    d, left = site_differences(met.outcomes_public, "antipsychotic", "any")
    assert set(left) == {"S01", "S02"}  # a hidden count in one arm
    r = d.set_index("site").loc["S03"]
    assert r.yi == pytest.approx(100 * (30 / 60 - 20 / 60))
    assert r.vi == pytest.approx(1e4 * (0.5 * 0.5 / 60 + (1 / 3) * (2 / 3) / 60))
    d, left = site_differences(met.outcomes_public, "relapse", "aj_365d")
    assert "S05" in left
    r = d.set_index("site").loc["S01"]
    assert r.yi == pytest.approx(100 * (0.2 - 0.4))
    assert r.vi == pytest.approx(1e4 * (0.05**2 + 0.05**2), rel=1e-9)
