"""The fast person-level draw (pipeline.simulation.draw) follows the generator's model.

Same study (``build_study`` with a seed: the same sites, clusters, frailties and cluster
effects), two independent samples of people: the generator's ``truth_people.parquet``
(20,000 people) and the fast draw (200,000 people). Every person-level outcome the
simulation study analyses is compared per arm, as a proportion or a mean, by the z
statistic of the difference with both samples' standard errors. If the two follow the
same model each z is standard normal: with 24 comparisons, |z| > 4.5 happens by chance
with probability below 1 in 6,000 (the seeds are fixed, so the test is deterministic).
The parameters plant strong cluster effects (frailty variance 0.1, log-odds variance 0.5)
so that the cluster paths are exercised, and the test checks itself: a draw whose
relapse hazard ratio is 0.45 instead of 0.6 must fail it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.simulation.draw import Shape, draw_people, draw_trial, icc_to_variances, structure_from_study
from pipeline.synth import generate_study
from pipeline.synth.params import resolve
from pipeline.synth.study import build_study

EFFECTS = {"cluster_frailty_var": 0.1, "rtw_cluster_logit_var": 0.5}
PEOPLE, SEED = 20_000, 11


def _stats(d: pd.DataFrame) -> dict[tuple, tuple[float, float, int]]:
    """(statistic, arm) -> (value, variance of one person's contribution, n)."""
    out = {}
    for arm, g in d.groupby("od"):
        n = len(g)
        props = {"relapse": g.relapse_event == 1, "death first": g.relapse_event == 2,
                 "relapse by day 90": (g.relapse_event == 1) & (g.relapse_time <= 90),
                 "relapse by day 365": (g.relapse_event == 1) & (g.relapse_time <= 365),
                 "full follow-up": g.fu_end_day == 730, "no detention": g.involuntary_count == 0,
                 "2+ detentions": g.involuntary_count >= 2, "rtw_2y recorded": g.rtw_2y.notna()}
        for k, v in props.items():
            p = float(v.mean())
            out[(k, arm)] = (p, p * (1 - p), n)
        for k in ("fu_end_day", "involuntary_count", "relapse_time"):
            out[(f"mean {k}", arm)] = (float(g[k].mean()), float(g[k].var()), n)
        r = g.rtw_2y.dropna()
        p = float(r.mean())
        out[("rtw_2y", arm)] = (p, p * (1 - p), len(r))
    return out


def _z(a: pd.DataFrame, b: pd.DataFrame) -> pd.Series:
    sa, sb = _stats(a), _stats(b)
    return pd.Series({f"{k[0]} (od={k[1]})": (sa[k][0] - sb[k][0]) / np.sqrt(sa[k][1] / sa[k][2] + sb[k][1] / sb[k][2])
                      for k in sa})


@pytest.fixture(scope="module")
def generator_people(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    generate_study(out, people=PEOPLE, sites=7, seed=SEED, **EFFECTS)
    t = pd.read_parquet(out / "truth_people.parquet")
    return pd.DataFrame({"od": (t.arm == "open_dialogue").astype(int), "fu_end_day": t.fu_end_day,
                         "relapse_time": t.relapse_time, "relapse_event": t.relapse_event,
                         "involuntary_count": t.involuntary_count,
                         "rtw_2y": t.rtw_2y.astype("float")})


def _fast(**overrides) -> pd.DataFrame:
    eff = {**EFFECTS, **overrides}
    st = build_study(people=PEOPLE, sites=7, seed=SEED, design="cluster", effects=resolve(**EFFECTS))
    return draw_people(structure_from_study(st), 10 * PEOPLE, np.random.default_rng(5), **eff)


def test_fast_draw_and_generator_give_the_same_person_level_outcomes(generator_people):
    z = _z(_fast(), generator_people)
    assert len(z) == 24
    assert z.abs().max() < 4.5, z.round(2).to_dict()


def test_the_comparison_detects_a_wrong_hazard_ratio(generator_people):
    z = _z(_fast(hr_admission=0.45, hr_crisis=0.45), generator_people)
    assert z.abs().max() > 4.5, z.round(2).to_dict()


def test_a_trial_has_the_shape_asked_for():
    shape = Shape("six_by_three", sites=6, clusters_per_arm=3, people=1400)
    d = draw_trial(shape, 1, **icc_to_variances(0.05))
    per_site = d.groupby("site_id").cluster_id.nunique()
    assert len(per_site) == 6 and per_site.max() <= 6
    assert (d.groupby("cluster_id").od.nunique() == 1).all()
    assert d.equals(draw_trial(shape, 1, **icc_to_variances(0.05)))
    ind = draw_trial(Shape("individual", 7, None, 1400), 1)
    assert ind.cluster_id.isna().all() and ind.groupby("site_id").od.nunique().min() == 2


def test_recruitment_imbalance_shifts_people_towards_open_dialogue_clusters():
    shape = Shape("imbalanced", sites=7, clusters_per_arm=1, people=20_000, od_recruitment_ratio=3.0)
    share = np.mean([draw_trial(shape, s).od.mean() for s in range(20)])
    assert 0.7 < share < 0.8  # 3 / (3 + 1) in expectation


def test_cluster_size_cv_spreads_cluster_sizes_as_asked():
    # 200 clusters of 2,000 people on average: the multinomial adds a CV of ~0.02, so the
    # sizes' CV is the Gamma's (SE of a CV from 200 clusters ~ 0.03 at 0.6)
    for cv in (0.0, 0.6):
        shape = Shape("cv", sites=10, clusters_per_arm=10, people=400_000, cluster_size_cv=cv)
        sizes = draw_trial(shape, 3).groupby("cluster_id").size()
        assert len(sizes) == 200
        assert abs(sizes.std() / sizes.mean() - cv) < 0.12, sizes.std() / sizes.mean()
    # the default keeps the generator's Dirichlet weights (and every draw of main)
    assert Shape("d", 7, 1, 1400).cluster_size_cv is None


def test_follow_up_days_moves_the_horizon_only():
    base = Shape("fu", sites=7, clusters_per_arm=1, people=20_000)
    short = draw_trial(Shape("fu", sites=7, clusters_per_arm=1, people=20_000, follow_up_days=365), 4)
    long = draw_trial(base, 4)
    assert short.fu_end_day.max() == 365 and long.fu_end_day.max() == 730
    # the same people (same seed), followed for a shorter time: relapses by day 365 agree
    assert ((long.relapse_event == 1) & (long.relapse_time <= 365)).sum() == (short.relapse_event == 1).sum()
    assert short.rtw_2y.isna().all()  # no one reaches the two-year window
