"""A fast person-level draw from the synthetic generator's data-generating model.

``odeval synth`` (:mod:`pipeline.synth`) writes whole extracts: every contact, admission,
prescription and staff member. A simulation study or a power calculation needs only what
the analyses read per person: site, cluster, arm, time to first relapse (death
competing), involuntary detentions and person-years, being in work or education at 2
years. :func:`draw_trial` draws exactly those, from the same model with the same
parameters (:data:`pipeline.synth.params.EFFECTS`), in about a millisecond per thousand
people instead of a second:

* study level, as :func:`pipeline.synth.study.build_study`: site weights Dirichlet(4),
  site recruitment starts staggered over the first 40% of recruitment, site log-frailty
  N(0, ``site_frailty_var``); clusters nested in sites, half of each site's clusters per
  arm, cluster weights within a site Dirichlet(3), cluster log-frailty N(0,
  ``cluster_frailty_var``) and cluster effect on the log-odds of work N(0,
  ``rtw_cluster_logit_var``);
* person level, as :func:`pipeline.synth.simulate.simulate_chunk`: index date uniform
  over the site's recruitment, transfer out, exponential death, Weibull first
  non-compulsory admission, first crisis episode and the involuntary-detention process
  (gamma person frailty), each recorded on day ``ceil(t)``; return to work by day 640
  and the employment records that make ``rtw_2y`` observed or missing.

:func:`structure_from_study` takes the study-level draws of a generator
:class:`~pipeline.synth.study.Study`, so the generator and this draw can be compared on
the same study: ``tests/unit/test_simulation_draw.py`` checks that their person-level
outcomes have the same distribution. What the draw adds to the generator are design
shapes the generator does not make by itself (:class:`Shape`): clusters per arm per
site, the spread of cluster sizes and a recruitment imbalance between arms.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import special

from pipeline.synth.params import resolve
from pipeline.synth.study import EXTRACT_DATE, FOLLOW_UP_DAYS, RTW_WINDOW_START, Study, day_number

__all__ = ["Shape", "Structure", "draw_structure", "structure_from_study", "draw_people", "draw_trial",
           "icc_to_variances"]

NEVER = 10**7


@dataclass(frozen=True)
class Shape:
    """A trial's design shape.

    Attributes
    ----------
    name : str
    sites : int
    clusters_per_arm : int or None
        Clusters (GP practices) per arm in each site; ``None`` for an individually
        randomised trial (people randomised 1:1 within sites, no clusters).
    people : int
        Expected number of people in the trial (each person's site and cluster are drawn).
    cluster_concentration : float
        Dirichlet concentration of the cluster weights within a site (the generator's 3:
        smaller means more unequal cluster sizes).
    site_concentration : float
        Dirichlet concentration of the site weights (the generator's 4).
    od_recruitment_ratio : float
        How many times more people an Open Dialogue cluster recruits than a usual-care
        cluster of the same weight (1 in the generator; recruitment after cluster
        randomisation is often uneven).
    cluster_size_cv : float or None
        ``None`` (the generator's spread): site weights Dirichlet(``site_concentration``),
        cluster weights within a site Dirichlet(``cluster_concentration``). A number: the
        coefficient of variation of the clusters' expected sizes, as sample-size formulas
        take it (Eldridge 2006): each cluster's weight is Gamma with that CV, independently
        of its site, and a site's weight is the sum of its clusters' (the concentrations
        are then not used). 0 = every cluster the same expected size.
    follow_up_days : int
        Each person's follow-up from the index date (730 in the generator: two years).
        Hazards and risks stay parametrised at day 730; only the horizon moves.
    """

    name: str
    sites: int
    clusters_per_arm: int | None
    people: int
    cluster_concentration: float = 3.0
    site_concentration: float = 4.0
    od_recruitment_ratio: float = 1.0
    cluster_size_cv: float | None = None
    follow_up_days: int = FOLLOW_UP_DAYS

    @property
    def design(self) -> str:
        return "individual" if self.clusters_per_arm is None else "cluster"

    @property
    def n_clusters(self) -> int:
        return 0 if self.clusters_per_arm is None else 2 * self.clusters_per_arm * self.sites


@dataclass
class Structure:
    """The study-level draws a person-level draw needs (the subset of a generator
    :class:`~pipeline.synth.study.Study` that outcomes depend on)."""

    design: str
    site_weight: np.ndarray
    site_start: np.ndarray
    site_logfrailty: np.ndarray
    recruit_end: int
    extract_day: int
    follow_up_days: int = FOLLOW_UP_DAYS
    cluster_site: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    cluster_arm: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    cluster_weight: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cluster_logfrailty: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cluster_rtw_logit: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def sites(self) -> int:
        return len(self.site_weight)


def icc_to_variances(icc: float) -> dict[str, float]:
    """Cluster variances giving an intracluster correlation ``icc`` on the latent scale of
    each outcome: the cluster log-frailty of the relapse and detention hazards
    (``cluster_frailty_var = icc / (1 - icc) * pi^2 / 6``: the log time of a Weibull
    proportional-hazards model has residual variance ``pi^2 / 6`` per unit shape) and the
    cluster effect on the log-odds of work (``rtw_cluster_logit_var = icc / (1 - icc) *
    pi^2 / 3``, the logistic's latent variance)."""
    if not 0 <= icc < 1:
        raise ValueError("icc must be in [0, 1)")
    r = icc / (1 - icc)
    return {"cluster_frailty_var": r * np.pi**2 / 6, "rtw_cluster_logit_var": r * np.pi**2 / 3}


def structure_from_study(st: Study) -> Structure:
    """The study-level draws of a generator study (``build_study``)."""
    s = Structure(design=st.design, site_weight=np.asarray(st.site_weight), site_start=np.asarray(st.site_start),
                  site_logfrailty=np.asarray(st.site_logfrailty), recruit_end=int(st.recruit_end),
                  extract_day=int(st.extract_day))
    if st.design == "cluster":
        s.cluster_site, s.cluster_arm = np.asarray(st.cluster_site), np.asarray(st.cluster_arm, int)
        s.cluster_weight, s.cluster_logfrailty = np.asarray(st.cluster_weight), np.asarray(st.cluster_logfrailty)
        s.cluster_rtw_logit = np.asarray(st.cluster_rtw_logit)
    return s


def draw_structure(shape: Shape, rng: np.random.Generator, **effects) -> Structure:
    """Study-level draws for ``shape`` as ``build_study`` makes them (see module docstring)."""
    e = resolve(**effects)
    S = shape.sites
    extract_day = day_number(EXTRACT_DATE)
    recruit_end = extract_day - int(e.min_follow_up_days)
    recruit_start = recruit_end - int(e.recruitment_days)
    by_cluster_cv = shape.design == "cluster" and shape.cluster_size_cv is not None
    if by_cluster_cv:
        site_weight = np.ones(S) / S  # replaced below by the sums of the clusters' weights
    else:
        site_weight = rng.dirichlet(np.full(S, shape.site_concentration)) if S > 1 else np.ones(1)
    offs = rng.uniform(0, 0.4 * e.recruitment_days, S)
    offs[0] = 0.0
    st = Structure(design=shape.design, site_weight=site_weight,
                   site_start=recruit_start + np.floor(offs).astype(np.int64),
                   site_logfrailty=rng.normal(0.0, np.sqrt(e.site_frailty_var), S),
                   recruit_end=recruit_end, extract_day=extract_day, follow_up_days=int(shape.follow_up_days))
    if shape.design == "cluster":
        k = shape.clusters_per_arm
        st.cluster_site = np.repeat(np.arange(S), 2 * k)
        st.cluster_arm = np.concatenate([rng.permutation(np.r_[np.zeros(k, int), np.ones(k, int)])
                                         for _ in range(S)])
        if by_cluster_cv:
            cv = float(shape.cluster_size_cv)
            if cv < 0:
                raise ValueError("cluster_size_cv must be >= 0")
            g = rng.gamma(1 / cv**2, cv**2, S * 2 * k) if cv > 0 else np.ones(S * 2 * k)
            st.site_weight = np.bincount(st.cluster_site, weights=g, minlength=S) / g.sum()
            w = g
        else:
            w = np.concatenate([rng.dirichlet(np.full(2 * k, shape.cluster_concentration)) for _ in range(S)])
        w = w * np.where(st.cluster_arm == 1, shape.od_recruitment_ratio, 1.0)
        st.cluster_weight = w
        st.cluster_logfrailty = rng.normal(0.0, np.sqrt(e.cluster_frailty_var), S * 2 * k)
        st.cluster_rtw_logit = rng.normal(0.0, np.sqrt(e.rtw_cluster_logit_var), S * 2 * k)
    return st


def _ceil_day(t):
    d = np.ceil(t)
    d = np.where(np.isfinite(d), np.maximum(d, 1), NEVER)
    return np.minimum(d, NEVER).astype(np.int64)


def draw_people(structure: Structure, n: int, rng: np.random.Generator, **effects) -> pd.DataFrame:
    """``n`` people of a study with the given study-level ``structure``.

    Returns
    -------
    DataFrame, one row per person
        ``site, cluster`` (integer codes; cluster -1 in an individually randomised trial),
        ``od`` (1 = open_dialogue), ``fu_end_day``, ``person_years`` (``fu_end_day /
        365.25``), ``relapse_time``, ``relapse_event`` (1 relapse, 2 death first, 0
        censored), ``relapse_only`` (``relapse_event == 1``), ``involuntary_count``
        (detentions under sections 2, 3, 4, 37 in follow-up) and ``rtw_2y`` (1/0, NaN
        when no employment record falls in the 2-year window). Each as the generator's
        ``truth_people.parquet`` defines it (``pipeline.synth.truth.CONVENTIONS``).
    """
    e = resolve(**effects)
    st = structure
    k = e.weibull_shape
    site = rng.choice(st.sites, size=n, p=st.site_weight)
    if st.design == "cluster":
        cluster = np.empty(n, np.int64)
        u = rng.random(n)
        for s in range(st.sites):
            m = site == s
            cl = np.flatnonzero(st.cluster_site == s)
            cw = np.cumsum(st.cluster_weight[cl])
            cluster[m] = cl[np.minimum(np.searchsorted(cw / cw[-1], u[m], side="right"), len(cl) - 1)]
        od = st.cluster_arm[cluster].astype(bool)
        cfr = st.cluster_logfrailty[cluster]
    else:
        cluster = np.full(n, -1)
        od = rng.random(n) < 0.5
        cfr = np.zeros(n)
    start = st.site_start[site]
    index_abs = np.floor(start + rng.random(n) * (st.recruit_end - start)).astype(np.int64)
    transfer = rng.random(n) < e.transfer_out_prob
    tday = rng.integers(30, 1100, n)
    data_end_day = np.where(transfer, np.minimum(st.extract_day, index_abs + tday), st.extract_day) - index_abs
    lam_d = -np.log1p(-e.death_risk_2y) / FOLLOW_UP_DAYS * np.where(od, e.hr_death, 1.0)
    with np.errstate(divide="ignore"):  # no death (death_risk_2y 0): never
        t_death = _ceil_day(rng.exponential(1.0, n) / lam_d)
    death_obs = t_death <= data_end_day
    death_day = np.where(death_obs, t_death, NEVER)
    fu_end = np.minimum(np.minimum(death_day, data_end_day), st.follow_up_days)
    is_death = death_obs & (death_day == fu_end)

    lp = st.site_logfrailty[site] + cfr
    theta = e.involuntary_frailty_var
    z = rng.gamma(1.0 / theta, theta, n) if theta > 0 else np.ones(n)

    def weibull(cumhaz2y, lin):
        return FOLLOW_UP_DAYS * (rng.exponential(1.0, n) / (cumhaz2y * np.exp(lin))) ** (1.0 / k)

    t_adm = _ceil_day(weibull(e.admission_cumhaz_2y, lp + np.log(e.hr_admission) * od))
    # the involuntary-detention process: event times of a Poisson process with cumulative
    # intensity rate * z * exp(lin) * (t / 730)^k, at most 10 simulated (as the generator)
    ecum = np.cumsum(rng.exponential(1.0, (n, 10)), axis=1)
    lin_i = lp + np.log(e.rr_involuntary) * od
    t_inv = _ceil_day(FOLLOW_UP_DAYS * (ecum / (e.involuntary_rate_2y * z * np.exp(lin_i))[:, None]) ** (1.0 / k))
    t_cri = _ceil_day(weibull(e.crisis_cumhaz_2y, lp + np.log(e.hr_crisis) * od))
    first = np.minimum(np.minimum(t_adm, t_inv[:, 0]), t_cri)
    relapsed = first <= fu_end
    relapse_time = np.where(relapsed, first, fu_end)
    relapse_event = np.where(relapsed, 1, np.where(is_death, 2, 0))
    inv_count = np.sum(t_inv <= fu_end[:, None], axis=1)

    p_rtw = np.where(od, e.rtw_2y_open_dialogue, e.rtw_2y_usual_care)
    if st.design == "cluster" and e.rtw_cluster_logit_var > 0:
        p_rtw = special.expit(special.logit(p_rtw) + st.cluster_rtw_logit[cluster])
    t_w = RTW_WINDOW_START * (rng.exponential(1.0, n) / -np.log1p(-p_rtw)) ** (1.0 / e.rtw_shape)
    rtw_day = np.where(t_w <= RTW_WINDOW_START, _ceil_day(t_w), NEVER)
    # employment records that can fall in the window [640, min(730, fu_end)]: the reviews
    # near days 637 and 728 (each recorded with probability 0.8), the two-year record
    # (0.9) and the return-to-work record itself
    hi = np.minimum(FOLLOW_UP_DAYS, fu_end)
    r7 = 637 + rng.integers(-14, 15, n)
    r8 = 728 + rng.integers(-14, 15, n)
    two = rng.integers(645, 729, n)
    ok7, ok8, ok2 = rng.random(n) < 0.8, rng.random(n) < 0.8, rng.random(n) < 0.9
    inwin = lambda d, ok: ok & (d >= RTW_WINDOW_START) & (d <= hi)  # noqa: E731
    has_win = (inwin(r7, ok7) | inwin(r8, ok8) | inwin(two, ok2)
               | inwin(rtw_day, rtw_day < NEVER))
    rtw_2y = np.where(has_win, (rtw_day < NEVER).astype(float), np.nan)

    return pd.DataFrame({
        "site": site, "cluster": cluster, "od": od.astype(int), "fu_end_day": fu_end,
        "person_years": fu_end / 365.25, "relapse_time": relapse_time, "relapse_event": relapse_event,
        "relapse_only": (relapse_event == 1).astype(int), "involuntary_count": inv_count, "rtw_2y": rtw_2y,
    })


def draw_trial(shape: Shape, seed, **effects) -> pd.DataFrame:
    """One synthetic trial of ``shape``: study-level draws then ``shape.people`` people.

    ``seed`` is anything ``numpy.random.default_rng`` takes (an int, a tuple of ints or a
    ``SeedSequence``): the same seed gives the same trial. ``effects`` override
    :data:`pipeline.synth.params.EFFECTS` (``hr_admission=1`` etc.). Adds string
    ``site_id`` and ``cluster_id`` columns (``S1``, ``S1-C01``).
    """
    rng = np.random.default_rng(seed)
    structure = draw_structure(shape, rng, **effects)
    d = draw_people(structure, shape.people, rng, **effects)
    d["site_id"] = "S" + (d["site"] + 1).astype(str)
    if shape.design == "cluster":
        d["cluster_id"] = d["site_id"] + "-C" + (d["cluster"] + 1).astype(str).str.zfill(2)
    else:
        d["cluster_id"] = None
    return d
