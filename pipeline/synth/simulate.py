"""Per-chunk simulation: people, their latent event processes, the records and the truth.

``simulate_chunk(study, i)`` is a pure function of the study and the chunk number: it
uses only the chunk's own generator (``study.chunk_seeds[i]``), so chunks can be made in
any order. All times are whole days from ``index_date`` ("day"); day 0 is the index date.
A latent continuous time t > 0 is recorded on day ceil(t) >= 1, so no simulated outcome
falls on day 0; the records dated day 0 or earlier are planted on purpose and are never
outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from scipy import special

from pipeline.schemas import load_contract
from pipeline.synth import arrowutil as au
from pipeline.synth import missingness
from pipeline.synth.study import (CHUNK_PEOPLE, DETENTION_GAP_DAYS, EPISODE_GAP_DAYS, FOLLOW_UP_DAYS,
                                  HOLDING_POWER_SECTIONS, INVOLUNTARY_SECTIONS, PLACE_OF_SAFETY_SECTIONS,
                                  RTW_WINDOW_START, WORK_STATUSES, Study, vocab, vocab_probs)

NEVER = 10**7          # "no such event" day
#: truth_people columns the records do not show (so no derivation can reproduce them): the
#: status at 2 years whether recorded or not, and whether its records were removed on purpose
LATENT_TRUTH = ("rtw_2y_true", "rtw_missing_planted")
DAY = 86400
KV, KI, KC = 5, 10, 6  # max non-compulsory admissions, detentions, crisis episodes simulated

OUTCOMES = ("relapse", "involuntary_admission", "first_admission", "first_crisis", "rtw", "death")


@dataclass
class Chunk:
    tables: dict[str, pa.Table]
    truth: pa.Table
    person_ids: pa.Array
    unknown_drugs: dict[str, int]


def _ceil_day(t: np.ndarray) -> np.ndarray:
    d = np.ceil(t)
    d = np.where(np.isfinite(d), np.maximum(d, 1), NEVER)
    return np.minimum(d, NEVER).astype(np.int64)


def _episodes(person: np.ndarray, start: np.ndarray, end: np.ndarray, gap: int):
    """Records (half-open day intervals) merged per person into episodes: by start, a record
    joins the current episode when it starts no later than ``gap`` days after the latest end
    so far. Returns each episode's person, start and end, and each record's episode."""
    if not len(person):
        z = np.zeros(0, np.int64)
        return z, z, z, z
    o = np.lexsort((end, start, person))
    p, s, e = person[o].astype(np.int64), start[o].astype(np.int64), end[o].astype(np.int64)
    shift = p << 32
    run = np.maximum.accumulate(shift + e) - shift       # latest end so far, within the person
    new = np.ones(len(p), bool)
    new[1:] = (p[1:] != p[:-1]) | (s[1:] > run[:-1] + gap)
    first = np.flatnonzero(new)
    of = np.empty(len(p), np.int64)
    of[o] = np.cumsum(new) - 1
    return p[first], s[first], np.maximum.reduceat(e, first), of


def _open_end(table: str, start: np.ndarray, detail: np.ndarray | None, last: np.ndarray) -> np.ndarray:
    """Where an open record ends under the default derive.open_end (schemas/ open_max_days):
    its start plus the plausible maximum of its kind, or the last day of data if sooner;
    without a maximum (section 3, 37), the last day of data."""
    col = {"crisis_episodes": "end_on", "detentions": "end_on"}[table]
    om = load_contract()[table].column(col).open_max_days
    caps = dict(om.rows())
    days = (np.full(len(start), caps[None], float) if om.by is None
            else np.array([caps.get(x, np.nan) for x in detail], float))
    last = np.maximum(start, last)
    return np.where(np.isnan(days), last, np.minimum(start + np.nan_to_num(days), last)).astype(np.int64)


def _codes(rng, p, size) -> np.ndarray:
    return rng.choice(len(p), size=size, p=p)


def _index(values, name) -> int:
    return list(values).index(name)


def _table(name: str, cols: dict[str, pa.Array]) -> pa.Table:
    t = load_contract()[name]
    return pa.table({c: cols[c] for c in t.column_names})


def simulate_chunk(st: Study, i: int, *, arm: int | None = None,
                   outcomes_only: bool = False) -> Chunk:
    """The people of chunk ``i`` with their records and planted truth.

    ``arm``: every person in this arm (1 Open Dialogue, 0 usual care) whatever the design
    assigned, all other draws unchanged: the potential outcomes under that arm, from which
    :mod:`pipeline.synth.observational` computes the marginal effects of an observational
    study. ``outcomes_only``: stop once the person-level truth is drawn (no service records:
    ``tables`` is empty), several times faster; the truth is the same.
    """
    e = st.effects
    rng = np.random.default_rng(st.chunk_seeds[i])
    g0 = i * CHUNK_PEOPLE
    n = min(CHUNK_PEOPLE, st.people - g0)
    k = e.weibull_shape

    # ------------------------------------------------------------------ people
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
        u_arm = rng.random(n)  # observational: compared with the propensity below
        od = u_arm < 0.5
        cfr = np.zeros(n)
    start = st.site_start[site]
    index_abs = np.floor(start + rng.random(n) * (st.recruit_end - start)).astype(np.int64)

    transfer = rng.random(n) < e.transfer_out_prob
    tday = rng.integers(30, 1100, n)
    # staggered: everyone not transferred out is followed for their own two years (their
    # own data_end_date); else the records of everyone run to the extract date
    end_abs = index_abs + FOLLOW_UP_DAYS if st.staggered else st.extract_day
    data_end_abs = np.where(transfer, np.minimum(end_abs, index_abs + tday), end_abs)
    data_end_day = data_end_abs - index_abs
    x_death = rng.exponential(1.0, n)

    sex_v, sex_p = vocab_probs("people", "sex", {"female": 0.45, "male": 0.52, "other": 0.01, "unknown": 0.02})
    sex = _codes(rng, sex_p, n)
    index_year = (index_abs.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970)
    age = np.clip(np.round(rng.normal(31, 11, n)), 16, 75).astype(np.int64)
    birth_year = index_year - age
    by_valid = rng.random(n) > 0.02
    eth_v = np.array(["white", "asian", "black", "mixed", "other", "unknown"], dtype=object)
    eth = _codes(rng, [0.72, 0.1, 0.08, 0.05, 0.03, 0.02], n)
    eth_valid = rng.random(n) > 0.04
    dx_v, dx_p = vocab_probs("people", "diagnosis_group", {
        "psychosis": 0.55, "bipolar": 0.12, "depression": 0.12, "personality": 0.08, "anxiety": 0.05,
        "other": 0.05, "unknown": 0.03})
    dx = _codes(rng, dx_p, n)
    prior = rng.poisson(0.6 * rng.gamma(1.0, 1.0, n))
    prior_valid = rng.random(n) > 0.05
    # everyone is out of work or education at index (inclusion criterion of the synthetic trial)
    st_v = vocab("employment", "status")
    nonwork = np.array([v for v in st_v if v not in WORK_STATUSES], dtype=object)
    nw_w = {"unemployed": 0.45, "long_term_sick": 0.3, "volunteering": 0.05, "carer_homemaker": 0.07,
            "other": 0.05, "unknown": 0.08}
    nw_p = np.array([nw_w.get(v, 0.0) for v in nonwork])
    nw_p = nw_p / nw_p.sum()
    base_act = _codes(rng, nw_p, n)
    base_valid = rng.random(n) > 0.03
    lx = 0.0  # log-hazard shift from measured confounders (observational design only)
    if st.design == "observational":
        from pipeline.synth.observational import assign_arm
        od, lx, rtw_logit = assign_arm(st, site, age, prior, dx_v[dx] == "psychosis", u_arm)
        # the confounders are fully recorded, so that weighting can recover the truth
        by_valid[:] = True
        prior_valid[:] = True
    if arm is not None:
        od = np.full(n, bool(arm))
    arm = od.astype(np.int64)
    lam_d = -np.log1p(-e.death_risk_2y) / FOLLOW_UP_DAYS * np.where(od, e.hr_death, 1.0)
    t_death = _ceil_day(x_death / lam_d)
    death_obs = t_death <= data_end_day
    death_day = np.where(death_obs, t_death, NEVER)
    last_day = np.minimum(data_end_day, death_day)          # records exist on days <= last_day
    fu_end = np.minimum(np.minimum(death_day, data_end_day), FOLLOW_UP_DAYS)
    reason = np.where(death_obs & (death_day == fu_end), 0,
                      np.where((data_end_day == fu_end) & (data_end_day < FOLLOW_UP_DAYS), 1, 2))

    pid = au.id_arr("P", np.arange(g0 + 1, g0 + n + 1), st.id_width)

    # ------------------------------------------------------------------ frailties
    lp = st.site_logfrailty[site] + cfr + lx
    theta = e.involuntary_frailty_var
    z = rng.gamma(1.0 / theta, theta, n) if theta > 0 else np.ones(n)

    # ------------------------------------------------------------------ admissions (non-compulsory)
    def weibull(cumhaz2y, lin):
        return FOLLOW_UP_DAYS * (rng.exponential(1.0, n) / (cumhaz2y * np.exp(lin))) ** (1.0 / k)

    # ------------------------------------------------------------------ crisis episodes (latent)
    lin_c = lp + np.log(e.hr_crisis) * od
    c_start = np.empty((n, KC))
    c_len = rng.integers(7, 43, (n, KC))
    c_gap = np.ceil(rng.exponential(1.0, (n, KC)) / (e.recrisis_rate_py / 365.25 * np.exp(lin_c))[:, None])
    # back-to-back crisis episodes: some begin 1 or 2 days after the previous one ended (one
    # acute-care episode under the default gap)
    c_gap = np.where(rng.random((n, KC)) < 0.15, rng.integers(1, 3, (n, KC)), np.maximum(c_gap, 1))
    c_start[:, 0] = _ceil_day(weibull(e.crisis_cumhaz_2y, lin_c))
    for j in range(1, KC):
        c_start[:, j] = c_start[:, j - 1] + c_len[:, j - 1] + c_gap[:, j]
    first_crisis = np.minimum(c_start[:, 0], NEVER).astype(np.int64)

    lin_a = lp + np.log(e.hr_admission) * od
    v_start = np.empty((n, KV))
    v_end = np.empty((n, KV))
    v_start[:, 0] = _ceil_day(weibull(e.admission_cumhaz_2y, lin_a))
    los = np.clip(np.round(rng.lognormal(np.log(21), 0.8, (n, KV))), 1, 365)
    gap = np.ceil(rng.exponential(1.0, (n, KV)) / (e.readmission_rate_py / 365.25 * np.exp(lin_a))[:, None])
    for j in range(KV):
        if j:
            v_start[:, j] = v_end[:, j - 1] + np.maximum(gap[:, j], 2)
        v_end[:, j] = v_start[:, j] + los[:, j]
    v_start = np.where(v_start >= NEVER, np.inf, v_start)
    v_end = np.where(np.isfinite(v_start), v_end, np.inf)

    # ------------------------------------------------------------------ involuntary detentions
    lin_i = lp + np.log(e.rr_involuntary) * od
    ecum = np.cumsum(rng.exponential(1.0, (n, KI)), axis=1)
    t_inv = FOLLOW_UP_DAYS * (ecum / (e.involuntary_rate_2y * z * np.exp(lin_i))[:, None]) ** (1.0 / k)
    i_start = _ceil_day(t_inv).astype(float)
    i_start[i_start >= NEVER] = np.inf
    # a detention 3 days or less after the previous one cannot be told apart from it in the
    # records of the Act: thinned, so that each simulated detention is one episode
    close = np.zeros_like(i_start, bool)
    with np.errstate(invalid="ignore"):                     # inf - inf: no such detention
        close[:, 1:] = i_start[:, 1:] - i_start[:, :-1] <= 3
    i_start = np.sort(np.where(close, np.inf, i_start), axis=1)
    inv_sec_v = np.array(INVOLUNTARY_SECTIONS, dtype=object)
    inv_sec = _codes(rng, [0.6, 0.32, 0.03, 0.05], (n, KI))        # 2, 3, 4, 37
    dur = np.select(
        [inv_sec == 0, inv_sec == 1, inv_sec == 2],
        [rng.integers(3, 29, (n, KI)),
         np.clip(np.round(rng.lognormal(np.log(60), 0.6, (n, KI))), 7, 180),
         rng.integers(1, 4, (n, KI))],
        np.clip(np.round(rng.lognormal(np.log(150), 0.5, (n, KI))), 30, 365))
    i_los = np.maximum(dur, np.clip(np.round(rng.lognormal(np.log(30), 0.7, (n, KI))), 1, 365))
    # the records of a detention end 3 days before the next one starts (so that the next, or
    # a place of safety or holding power leading into it, is a new Mental Health Act episode)
    nxt = np.concatenate([i_start[:, 1:], np.full((n, 1), np.inf)], axis=1)
    limit = nxt - DETENTION_GAP_DAYS - 2
    d1_end = np.minimum(i_start + dur, limit)
    # converted sections: a section 2 followed by a section 3 from its last day or the next
    conv_len = np.clip(np.round(rng.lognormal(np.log(60), 0.6, (n, KI))), 7, 180)
    conv_start = d1_end + (rng.random((n, KI)) < 0.3)
    conv = (inv_sec == 0) & (rng.random((n, KI)) < 0.3) & (conv_start + 1 <= limit)
    conv_end = np.minimum(conv_start + conv_len, limit)
    det_total_end = np.where(conv, conv_end, d1_end)
    # an open section 2 (no end date: derive ends it at the legal 28 days) where 28 days
    # stay clear of the next detention
    open_s2 = (inv_sec == 0) & ~conv & (rng.random((n, KI)) < 0.06) & (i_start + 28 <= limit)
    det_total_end = np.where(open_s2, np.maximum(det_total_end, i_start + 28), det_total_end)
    with np.errstate(invalid="ignore"):
        i_los = np.maximum(i_los, det_total_end - i_start)   # the admission covers the detention
    i_end = i_start + i_los

    # ------------------------------------------------------------------ spells: union of intervals
    S = np.concatenate([i_start, v_start], axis=1)
    E = np.concatenate([i_end, v_end], axis=1)
    is_vol = np.concatenate([np.zeros((n, KI), bool), np.ones((n, KV), bool)], axis=1)
    src = np.concatenate([np.tile(np.arange(KI), (n, 1)), -np.ones((n, KV), np.int64)], axis=1)
    key = np.where(np.isfinite(S), S * 2 + is_vol, np.inf)      # ties: the detention first
    order = np.argsort(key, axis=1, kind="stable")
    S = np.take_along_axis(S, order, 1)
    E = np.take_along_axis(E, order, 1)
    is_vol = np.take_along_axis(is_vol, order, 1)
    src = np.take_along_axis(src, order, 1)
    run = np.maximum.accumulate(E, axis=1)
    new = np.ones_like(S, bool)
    new[:, 1:] = S[:, 1:] > run[:, :-1]
    valid = np.isfinite(S)
    pr, pc_ = np.nonzero(valid)
    flat_new = new[pr, pc_]
    first_pos = np.flatnonzero(flat_new)
    comp_person = pr[first_pos]
    comp_start = S[pr, pc_][first_pos].astype(np.int64)
    comp_end = np.maximum.reduceat(E[pr, pc_], first_pos).astype(np.int64) if len(first_pos) else np.zeros(0, np.int64)
    comp_vol = is_vol[pr, pc_][first_pos]
    comp_src = src[pr, pc_][first_pos]
    keep = comp_start <= last_day[comp_person]
    comp_person, comp_start, comp_end, comp_vol, comp_src = (a[keep] for a in
                                                              (comp_person, comp_start, comp_end, comp_vol, comp_src))
    first_adm = np.full(n, NEVER, np.int64)
    np.minimum.at(first_adm, comp_person, comp_start)
    # a detention starting while an earlier admission is under way: detained in hospital
    in_hosp = np.zeros((n, KI), bool)
    hr_, hc_ = np.nonzero(valid & ~is_vol)
    in_hosp[hr_, src[hr_, hc_]] = ~new[hr_, hc_]

    # detention rows of the involuntary process (d_open: planted without an end date)
    sec_v = vocab("detentions", "legal_section")
    dr, dc = np.nonzero(np.isfinite(i_start) & (i_start <= last_day[:, None]))
    det_person = [dr]
    det_start = [i_start[dr, dc].astype(np.int64)]
    det_end = [d1_end[dr, dc].astype(np.int64)]
    det_sec = [np.array([_index(sec_v, s) for s in inv_sec_v])[inv_sec[dr, dc]]]
    det_open = [open_s2[dr, dc]]
    # ... the section 3 a section 2 was converted to
    cv = conv[dr, dc]
    det_person.append(dr[cv])
    det_start.append(conv_start[dr, dc][cv].astype(np.int64))
    det_end.append(conv_end[dr, dc][cv].astype(np.int64))
    det_sec.append(np.full(cv.sum(), _index(sec_v, "3")))
    det_open.append(np.zeros(cv.sum(), bool))
    # ... and what led into it: a holding power (5(2)) when the person was already in
    # hospital, a place of safety (136) otherwise, from the day before
    u_lead = rng.random(len(dr))
    ih = in_hosp[dr, dc]
    lead = (ih & (u_lead < 0.5)) | (~ih & (u_lead < 0.2))
    det_person.append(dr[lead])
    det_start.append(i_start[dr, dc][lead].astype(np.int64) - 1)
    det_end.append(i_start[dr, dc][lead].astype(np.int64))
    det_sec.append(np.where(ih[lead], _index(sec_v, "5(2)"), _index(sec_v, "136")))
    det_open.append(np.zeros(lead.sum(), bool))
    first_inv = np.where(np.isfinite(i_start[:, 0]), np.minimum(i_start[:, 0], NEVER), NEVER).astype(np.int64)

    # spell present on or before index (pre-index or index-day admission), ending before the
    # first post-index acute care (admission or crisis) by more than the episode gap, so that
    # the index episode never absorbs a relapse
    first_acute = np.minimum(first_adm, first_crisis)
    has_pre = rng.random(n) < 0.08
    s0 = np.where(rng.random(n) < 0.3, 0, -rng.integers(1, 61, n))
    e0 = s0 + np.clip(np.round(rng.lognormal(np.log(25), 0.7, n)), 1, 200).astype(np.int64)
    e0 = np.minimum(e0, first_acute - EPISODE_GAP_DAYS - 1)
    has_pre &= e0 >= s0
    pre_det = has_pre & (rng.random(n) < 0.3)

    adm_rows_person, adm_rows_in, adm_rows_out, adm_rows_method, adm_rows_det = [], [], [], [], []
    meth_v = vocab("admissions", "admission_method")
    EMERG, PLANNED, TRANSFER = (_index(meth_v, m) for m in ("emergency", "planned", "transfer"))

    def add_spells(person, s_in, s_out, method, detained):
        """One spell; some are split in two rows by a transfer (second row method transfer,
        admitted on the first row's discharge day or the day after)."""
        split = (s_out - s_in >= 3) & (rng.random(len(person)) < 0.15)
        m = s_in + 1 + np.floor(rng.random(len(person)) * (s_out - s_in - 1)).astype(np.int64)
        m2 = m + (rng.random(len(person)) < 0.3)
        adm_rows_person.extend([person, person[split]])
        adm_rows_in.extend([s_in, m2[split]])
        adm_rows_out.extend([np.where(split, m, s_out), s_out[split]])
        adm_rows_method.extend([method, np.full(split.sum(), TRANSFER)])
        adm_rows_det.extend([detained, np.zeros(split.sum(), bool)])

    pp = np.flatnonzero(has_pre)
    add_spells(pp, s0[pp], e0[pp], np.where(rng.random(len(pp)) < 0.8, EMERG, PLANNED), pre_det[pp])
    method = np.where(comp_vol, np.where(rng.random(len(comp_person)) < 0.12, PLANNED, EMERG), EMERG)
    add_spells(comp_person, comp_start, comp_end, method, ~comp_vol)
    a_person = np.concatenate(adm_rows_person)
    a_in = np.concatenate(adm_rows_in)
    a_out = np.concatenate(adm_rows_out)
    a_meth = np.concatenate(adm_rows_method)
    a_det = np.concatenate(adm_rows_det)
    keep = a_in <= last_day[a_person]
    a_person, a_in, a_out, a_meth, a_det = (x[keep] for x in (a_person, a_in, a_out, a_meth, a_det))
    died_in = death_obs[a_person] & (a_out > last_day[a_person])
    a_out = np.where(died_in, death_day[a_person], a_out)
    a_out_valid = a_out <= last_day[a_person]
    a_det_valid = rng.random(len(a_person)) > 0.03

    # detentions at the start of pre-index / index-day spells (never outcomes), within the spell
    pd_ = np.flatnonzero(pre_det)
    det_person.append(pd_)
    det_start.append(s0[pd_])
    sec_pre = np.where(rng.random(len(pd_)) < 0.7, _index(sec_v, "2"), _index(sec_v, "3"))
    det_end.append(np.minimum(s0[pd_] + np.where(sec_pre == _index(sec_v, "2"), rng.integers(3, 29, len(pd_)),
                                                 rng.integers(30, 180, len(pd_))), e0[pd_]))
    det_sec.append(sec_pre)
    det_open.append(np.zeros(len(pd_), bool))
    # holding powers 5(2)/5(4) during some non-compulsory spells
    hp = np.flatnonzero(comp_vol & (rng.random(len(comp_person)) < 0.08))
    hp_start = comp_start[hp] + np.minimum(rng.integers(0, 6, len(hp)), comp_end[hp] - comp_start[hp])
    det_person.append(comp_person[hp])
    det_start.append(hp_start)
    det_end.append(np.minimum(hp_start + 3, comp_end[hp]))
    det_sec.append(np.where(rng.random(len(hp)) < 0.85, _index(sec_v, "5(2)"), _index(sec_v, "5(4)")))
    det_open.append(np.zeros(len(hp), bool))
    # places of safety (135/136) and other sections, any time from a year before index
    n_pos = rng.poisson(0.12 * (np.minimum(last_day, 1200) + 365) / 365.25)
    n_pos = np.minimum(n_pos, 3)
    pos_person = np.repeat(np.arange(n), n_pos)
    pos_start = -365 + np.floor(rng.random(len(pos_person)) * (last_day[pos_person] + 366)).astype(np.int64)
    u = rng.random(len(pos_person))
    pos_sec = np.where(u < 0.85, _index(sec_v, "136"), np.where(u < 0.95, _index(sec_v, "135"), _index(sec_v, "other")))
    det_person.append(pos_person)
    det_start.append(pos_start)
    det_end.append(pos_start + rng.integers(0, 2, len(pos_person)))
    det_sec.append(pos_sec)
    det_open.append(np.zeros(len(pos_person), bool))
    d_person = np.concatenate(det_person)
    d_start = np.concatenate(det_start)
    d_end = np.concatenate(det_end)
    d_sec = np.concatenate(det_sec)
    d_open = np.concatenate(det_open)
    keep = d_start <= last_day[d_person]
    d_person, d_start, d_end, d_sec, d_open = (x[keep] for x in (d_person, d_start, d_end, d_sec, d_open))
    d_end = np.where(death_obs[d_person] & (d_end > last_day[d_person]), death_day[d_person], d_end)
    d_end_valid = (d_end <= last_day[d_person]) & ~d_open

    # ------------------------------------------------------------------ crisis episodes (records)
    has_prec = rng.random(n) < 0.10
    cs0 = np.where(rng.random(n) < 0.3, 0, -rng.integers(1, 31, n))
    ce0 = np.minimum(cs0 + rng.integers(7, 43, n), first_acute - EPISODE_GAP_DAYS - 1)
    has_prec &= ce0 >= cs0
    cr, cc = np.nonzero(c_start <= last_day[:, None])
    pc0 = np.flatnonzero(has_prec)
    # crisis, then admission: the crisis team's episode ends on the day of an admission (or
    # the day before) that starts after the person's first crisis episode (so the first
    # crisis and the first relapse stay as simulated)
    k_before = rng.integers(2, 15, len(comp_person))
    ca = (rng.random(len(comp_person)) < 0.3) & (comp_start - k_before > first_crisis[comp_person])
    ca_end = comp_start - (rng.random(len(comp_person)) < 0.5)
    cr_person = np.concatenate([pc0, cr, comp_person[ca]])
    cr_start = np.concatenate([cs0[pc0], c_start[cr, cc].astype(np.int64), (comp_start - k_before)[ca]])
    cr_end = np.concatenate([ce0[pc0], (c_start[cr, cc] + c_len[cr, cc]).astype(np.int64), ca_end[ca]])
    # some episodes after the index date recorded without an end date (derive ends them
    # after 6 weeks)
    cr_open = np.concatenate([np.zeros(len(pc0), bool), rng.random(len(cr) + ca.sum()) < 0.04])
    keep = cr_start <= last_day[cr_person]
    cr_person, cr_start, cr_end, cr_open = (x[keep] for x in (cr_person, cr_start, cr_end, cr_open))
    cr_end = np.where(death_obs[cr_person] & (cr_end > last_day[cr_person]), death_day[cr_person], cr_end)
    cr_end_valid = (cr_end <= last_day[cr_person]) & ~cr_open


    # ------------------------------------------------------------------ return to work or education
    p_rtw = np.where(od, e.rtw_2y_open_dialogue, e.rtw_2y_usual_care)
    if st.design == "cluster" and e.rtw_cluster_logit_var > 0:
        p_rtw = special.expit(special.logit(p_rtw) + st.cluster_rtw_logit[cluster])
    if st.design == "observational":
        p_rtw = special.expit(special.logit(p_rtw) + rtw_logit)
    # people who return may lose work before the window and not come back before it
    # (probability rtw_leave_prob); the first return is correspondingly likelier, so that
    # P(in work or education at 2 years) stays p_rtw (while p_rtw <= 1 - rtw_leave_prob).
    # Drawn from a stream of their own (the other tables' draws do not move)
    rng_w = np.random.default_rng(np.random.SeedSequence(
        st.chunk_seeds[i].entropy, spawn_key=(*st.chunk_seeds[i].spawn_key, 1000)))
    q_rtw = np.minimum(p_rtw / (1.0 - e.rtw_leave_prob), 1.0 - 1e-12)
    t_w = RTW_WINDOW_START * (rng.exponential(1.0, n) / -np.log1p(-q_rtw)) ** (1.0 / e.rtw_shape)
    rtw_day = np.where(t_w <= RTW_WINDOW_START, _ceil_day(t_w), NEVER)
    leaves = (rtw_day < RTW_WINDOW_START) & (rng_w.random(n) < e.rtw_leave_prob)
    gap = np.maximum(RTW_WINDOW_START - rtw_day, 1)
    leave_day = np.where(leaves, rtw_day + 1 + np.floor(rng_w.random(n) * (gap - 1)).astype(np.int64), NEVER)
    work_2y = (rtw_day < NEVER) & (leave_day == NEVER)   # the true status in the window
    n_rev = 12
    rev = 91 * np.arange(1, n_rev + 1)[None, :] + rng.integers(-14, 15, (n, n_rev))
    rev_ok = rng.random((n, n_rev)) < 0.8
    two_y = rng.integers(645, 729, n)
    two_ok = rng.random(n) < 0.9
    day0_ok = (rng.random(n) < 0.9) & base_valid
    ed = np.concatenate([np.zeros((n, 1), np.int64), rev, two_y[:, None], rtw_day[:, None]], axis=1).astype(float)
    # the return itself is recorded on its day with probability rtw_record_prob (else it
    # shows at the next review that finds the person in work)
    rtw_rec = (rtw_day < NEVER) & (rng_w.random(n) < e.rtw_record_prob)
    eok = np.concatenate([day0_ok[:, None], rev_ok, two_ok[:, None], rtw_rec[:, None]], axis=1)
    ed = np.where(eok & (ed <= last_day[:, None]), ed, np.inf)
    # planted missingness (pipeline.synth.missingness): every record in the window removed,
    # with a probability by arm, the last status recorded before the window (MAR) and the
    # true status in the window (MNAR)
    before = np.where(ed < RTW_WINDOW_START, ed, -1).max(axis=1)
    prev_work = (before >= rtw_day) & (before < leave_day)
    drop = missingness.planted(e, od, prev_work, work_2y, rng_w)
    ed[drop[:, None] & (ed >= RTW_WINDOW_START)] = np.inf
    ed.sort(axis=1)
    dup = np.zeros_like(ed, bool)
    dup[:, 1:] = ed[:, 1:] == ed[:, :-1]
    ed[dup] = np.inf
    ed.sort(axis=1)
    er, ec = np.nonzero(np.isfinite(ed))
    emp_person = er
    emp_day = ed[er, ec].astype(np.int64)
    working = (emp_day >= rtw_day[er]) & (emp_day < leave_day[er])
    work_v = np.array(WORK_STATUSES, dtype=object)
    w_first = _codes(rng, [0.55, 0.1, 0.25, 0.1], n)
    w_any = _codes(rng, [0.55, 0.1, 0.25, 0.1], len(er))
    w_code = np.where(rng.random(len(er)) < 0.85, w_first[er], w_any)
    nw_any = _codes(rng, nw_p, len(er))
    nw_code = np.where(base_valid[er] & (rng.random(len(er)) < 0.8), base_act[er], nw_any)
    work_code = np.array([_index(st_v, s) for s in work_v])
    nonwork_code = np.array([_index(st_v, s) for s in nonwork])
    status_code = np.where(working, work_code[w_code], nonwork_code[nw_code])

    # rtw_2y: last record in [640, min(730, fu_end)]
    in_win = (ed >= RTW_WINDOW_START) & (ed <= np.minimum(FOLLOW_UP_DAYS, fu_end)[:, None])
    has_win = in_win.any(axis=1)
    last_win = np.where(has_win, np.max(np.where(in_win, ed, -1), axis=1), -1)
    rtw2y = has_win & (last_win >= rtw_day) & work_2y

    # ------------------------------------------------------------------ truth
    in_fu = lambda d, p: (d >= 1) & (d <= fu_end[p])  # noqa: E731
    fa = np.full(n, NEVER, np.int64)
    ok = in_fu(comp_start, comp_person)
    np.minimum.at(fa, comp_person[ok], comp_start[ok])
    fc = np.full(n, NEVER, np.int64)
    okc = in_fu(cr_start, cr_person)
    np.minimum.at(fc, cr_person[okc], cr_start[okc])
    inv_mask = np.isin(d_sec, [_index(sec_v, s) for s in INVOLUNTARY_SECTIONS])
    fi = np.full(n, NEVER, np.int64)
    oki = inv_mask & in_fu(d_start, d_person)
    np.minimum.at(fi, d_person[oki], d_start[oki])
    # the first RECORDED status in work or education (on day 1 or later)
    first_w = np.full(n, NEVER, np.int64)
    okw = working & (emp_day >= 1)
    np.minimum.at(first_w, er[okw], emp_day[okw])
    rtw_t = np.where(first_w <= fu_end, first_w, NEVER)
    assert np.array_equal(fa, np.where(first_adm <= fu_end, first_adm, NEVER)), "first admission drifted"
    assert np.array_equal(fi, np.where(first_inv <= fu_end, first_inv, NEVER)), "first detention drifted"

    # the end of each record as the default definitions read it (derive.open_end: an open
    # admission at the last day of data, a crisis episode after 6 weeks, a detention at its
    # section's legal limit; always by the last day of data)
    a_used = np.where(a_out_valid, a_out, last_day[a_person])
    cr_used = np.where(cr_end_valid, cr_end, _open_end("crisis_episodes", cr_start, None, last_day[cr_person]))
    d_used = np.where(d_end_valid, d_end, _open_end("detentions", d_start, np.asarray(sec_v, dtype=object)[d_sec],
                                                    last_day[d_person]))
    # relapses: acute-care episodes (admissions, crisis episodes, involuntary detentions merged
    # when they start within EPISODE_GAP_DAYS of the episode's end) starting in follow-up
    ep_person, ep_start, ep_end, _ = _episodes(
        np.concatenate([a_person, cr_person, d_person[inv_mask]]),
        np.concatenate([a_in, cr_start, d_start[inv_mask]]),
        np.concatenate([a_used, cr_used, d_used[inv_mask]]), EPISODE_GAP_DAYS)
    okr = in_fu(ep_start, ep_person)
    relapse_count = np.bincount(ep_person[okr], minlength=n)
    fr = np.full(n, NEVER, np.int64)
    np.minimum.at(fr, ep_person[okr], ep_start[okr])
    assert np.array_equal(fr, np.minimum(fa, fc)), "first relapse drifted"
    # involuntary admissions: Mental Health Act episodes (detentions, with the places of safety
    # and holding powers leading into them, merged when the next starts within
    # DETENTION_GAP_DAYS of the episode's end) holding a 2/3/4/37, on its first such start
    group = np.select([inv_mask, np.isin(d_sec, [_index(sec_v, x) for x in PLACE_OF_SAFETY_SECTIONS]),
                       np.isin(d_sec, [_index(sec_v, x) for x in HOLDING_POWER_SECTIONS])], [0, 1, 2], -1)
    m = group >= 0
    mh_person, mh_start, mh_end, mh_of = _episodes(d_person[m], d_start[m], d_used[m], DETENTION_GAP_DAYS)
    firsts = np.full((3, len(mh_person)), NEVER, np.int64)
    for g_ in range(3):
        sel = group[m] == g_
        np.minimum.at(firsts[g_], mh_of[sel], d_start[m][sel])
    inv_ep = firsts[0] < NEVER
    oki = inv_ep & in_fu(firsts[0], mh_person)
    inv_count = np.bincount(mh_person[oki], minlength=n)
    fie = np.full(n, NEVER, np.int64)
    np.minimum.at(fie, mh_person[oki], firsts[0][oki])
    assert np.array_equal(fie, fi), "first involuntary admission drifted"
    pos_count = np.bincount(mh_person[~inv_ep & in_fu(firsts[1], mh_person)], minlength=n)
    hold_count = np.bincount(mh_person[~inv_ep & in_fu(firsts[2], mh_person)], minlength=n)
    clip = lambda p_, a_, b_: np.maximum(np.minimum(b_, fu_end[p_]) - np.maximum(a_, 0), 0)  # noqa: E731
    days_detained = np.bincount(mh_person[inv_ep], clip(mh_person, mh_start, mh_end)[inv_ep], minlength=n)
    bp, bs, be, _ = _episodes(a_person, np.maximum(a_in, 0), np.minimum(a_used, fu_end[a_person]), 0)
    bed_days = np.bincount(bp, clip(bp, bs, be), minlength=n)

    end_reason_v = ["death", "data_end", "end_of_follow_up"]
    truth = {
        "person_id": pid,
        "site_id": au.cat_arr(st.site_ids, site),
        "arm": au.cat_arr(vocab("people", "arm"), np.where(od, _index(vocab("people", "arm"), "open_dialogue"),
                                                          _index(vocab("people", "arm"), "usual_care"))),
        "fu_end_day": au.int_arr(fu_end),
        "end_reason": au.cat_arr(end_reason_v, reason),
    }
    is_death = reason == 0
    for name, t in (("relapse", np.minimum(fa, fc)), ("involuntary_admission", fi), ("first_admission", fa),
                    ("first_crisis", fc), ("rtw", rtw_t)):
        ev = t < NEVER
        truth[f"{name}_time"] = au.int_arr(np.where(ev, t, fu_end))
        truth[f"{name}_event"] = au.int_arr(np.where(ev, 1, np.where(is_death, 2, 0)))
    truth["death_time"] = au.int_arr(fu_end)
    truth["death_event"] = au.int_arr(is_death.astype(int))
    truth["rtw_2y"] = au.bool_arr(rtw2y, has_win)
    # the status in the window whether recorded or not (people alive and followed to day 640)
    truth["rtw_2y_true"] = au.bool_arr(work_2y, fu_end >= RTW_WINDOW_START)
    truth["rtw_missing_planted"] = au.bool_arr(drop)
    truth["relapse_count"] = au.int_arr(relapse_count)
    truth["involuntary_count"] = au.int_arr(inv_count)
    truth["place_of_safety_count"] = au.int_arr(pos_count)
    truth["holding_power_count"] = au.int_arr(hold_count)
    truth["days_detained"] = au.int_arr(days_detained.astype(np.int64))
    truth["bed_days"] = au.int_arr(bed_days.astype(np.int64))

    arm_v = vocab("people", "arm")
    arm_code = np.where(od, _index(arm_v, "open_dialogue"), _index(arm_v, "usual_care"))
    act_v = vocab("people", "baseline_activity")
    people_tbl = _table("people", {
        "person_id": pid,
        "site_id": au.cat_arr(st.site_ids, site),
        "arm": au.cat_arr(arm_v, arm_code),
        "cluster_id": au.cat_arr(st.cluster_ids or ["-"], np.maximum(cluster, 0), cluster >= 0),
        "index_date": au.date_arr(index_abs),
        "data_end_date": au.date_arr(data_end_abs),
        # why the records end (no random draw: the rest of the study is unchanged)
        "data_end_reason": au.cat_arr(
            ("transfer_out", "end_of_follow_up" if st.staggered else "end_of_extract"),
            np.where(transfer & (data_end_abs < end_abs), 0, 1)),
        "sex": au.cat_arr(sex_v, sex),
        "birth_year": au.int_arr(birth_year, by_valid),
        "ethnicity": au.cat_arr(eth_v, eth, eth_valid),
        "diagnosis_group": au.cat_arr(dx_v, dx),
        "prior_admissions_2y": au.int_arr(prior, prior_valid),
        "baseline_activity": au.cat_arr(act_v, np.array([_index(act_v, s) for s in nonwork])[base_act], base_valid),
        "death_date": au.date_arr(index_abs + np.where(death_obs, death_day, 0), death_obs),
    })
    if outcomes_only:
        return Chunk(tables={"people": people_tbl}, truth=pa.table(truth), person_ids=pid,
                     unknown_drugs={})

    # ------------------------------------------------------------------ referrals, contacts, staff
    pool = site * 2 + arm
    p_start = st.pool_start.reshape(-1)[pool]
    p_size = st.pool_size.reshape(-1)[pool]
    i0 = rng.integers(0, 1 << 30, n) % p_size
    core = np.stack([st.pool_clin[p_start + (i0 + j) % p_size] for j in range(3)], axis=1)
    peer = st.pool_peer[st.peer_start.reshape(-1)[pool] + rng.integers(0, 1 << 30, n) % st.peer_size.reshape(-1)[pool]]
    fid = {name: a[site, arm] for name, a in st.fidelity.items()}

    accepted = index_abs * DAY + 9 * 3600 + 900 * rng.integers(0, 33, n)
    received = accepted - 60 * rng.integers(60, 72 * 60, n)
    fcs_valid = rng.random(n) > 0.03
    svc_day = _ceil_day(600 * rng.exponential(1.0, n) ** (1 / 1.5))
    discharged = svc_day <= last_day
    dis_v = vocab("referrals", "discharge_decided_by")
    u = rng.random(n)
    other_dec = np.where(u < 0.55, _index(dis_v, "clinician"), np.where(u < 0.85, _index(dis_v, "person"),
                                                                        _index(dis_v, "other")))
    dec = np.where(rng.random(n) < fid["discharge_by_network"], _index(dis_v, "network"), other_dec)
    transferred_out = transfer & (data_end_day < end_abs - index_abs) & ~death_obs
    dis_day = np.where(discharged, svc_day, np.where(transferred_out | death_obs, last_day, NEVER))
    dec = np.where(discharged, dec, np.where(death_obs, _index(dis_v, "death"), _index(dis_v, "transfer")))
    dis_valid = dis_day < NEVER
    dis_at = (index_abs + np.where(dis_valid, dis_day, 0)) * DAY + 9 * 3600 + 900 * rng.integers(0, 36, n)
    dis_at = np.maximum(dis_at, received + 3600)
    rid = au.suffix_ids(pid, "-R", np.ones(n, np.int64), 1)

    # first contact: od, an attended network meeting, within 24 h with probability p1
    fast = rng.random(n) < np.nan_to_num(fid["p1_first_meeting_24h"])
    delay_h = np.where(od, np.where(fast, rng.uniform(1, 23.5, n), rng.uniform(24.5, 24 * 14, n)),
                       rng.uniform(24, 24 * 28, n))
    first_at = received + (np.round(delay_h * 4) * 900).astype(np.int64)
    first_day = (first_at // DAY) - index_abs
    serv_end = np.where(discharged, svc_day, last_day)
    L = np.maximum(serv_end - first_day, 0).astype(float)
    a_rate, tau, b_rate = np.where(od, 0.5, 0.2), np.where(od, 40.0, 60.0), np.where(od, 0.07, 0.085)
    n1 = rng.poisson(a_rate * tau * (1 - np.exp(-L / tau)))
    n2 = rng.poisson(b_rate * L)
    p1_ = np.repeat(np.arange(n), n1)
    t1 = -tau[p1_] * np.log1p(-rng.random(len(p1_)) * (1 - np.exp(-L[p1_] / tau[p1_])))
    p2_ = np.repeat(np.arange(n), n2)
    t2 = rng.random(len(p2_)) * L[p2_]
    c_person = np.concatenate([np.arange(n), p1_, p2_])
    c_off = np.concatenate([np.zeros(n), np.floor(t1), np.floor(t2)]).astype(np.int64)
    c_first = np.concatenate([np.ones(n, bool), np.zeros(len(p1_) + len(p2_), bool)])
    c_at = np.where(c_first, np.concatenate([first_at, np.zeros(len(p1_) + len(p2_), np.int64)]),
                    (index_abs[c_person] + first_day[c_person] + 1 + c_off) * DAY
                    + 8 * 3600 + 900 * rng.integers(0, 45, len(c_person)))
    c_day = c_at // DAY - index_abs[c_person]
    keep = c_day <= last_day[c_person]
    c_person, c_at, c_first = c_person[keep], c_at[keep], c_first[keep]
    o = np.lexsort((c_at, c_person))
    c_person, c_at, c_first = c_person[o], c_at[o], c_first[o]
    nc = len(c_person)
    c_od = od[c_person]
    ct_v = vocab("contacts", "contact_type")
    _, ct_od = vocab_probs("contacts", "contact_type", {"network_meeting": 0.68, "individual": 0.1, "phone": 0.14,
                                                        "video": 0.05, "other": 0.03})
    _, ct_uc = vocab_probs("contacts", "contact_type", {"network_meeting": 0.03, "individual": 0.57, "phone": 0.27,
                                                        "video": 0.08, "other": 0.05})
    NM, IND, PHONE, VIDEO = (_index(ct_v, x) for x in ("network_meeting", "individual", "phone", "video"))
    ctype = np.where(c_od, _codes(rng, ct_od, nc), _codes(rng, ct_uc, nc))
    ctype = np.where(c_first, np.where(c_od, NM, IND), ctype)
    is_nm = ctype == NM
    cfid = {name: a[c_person] for name, a in fid.items()}
    loc_v = vocab("contacts", "location")
    HOME, POC, CLINIC, WARD, REMOTE, LOTHER = (_index(loc_v, x) for x in
                                               ("home", "place_of_choice", "clinic", "inpatient_ward", "remote", "other"))
    u = rng.random(nc)
    u2 = rng.random(nc)
    nm_loc = np.where(u < cfid["p3_home_or_choice"], np.where(u2 < 0.7, HOME, POC),
                      np.where(u2 < 0.85, CLINIC, np.where(u2 < 0.95, WARD, LOTHER)))
    ind_loc = np.where(u2 < 0.7, CLINIC, np.where(u2 < 0.85, HOME, np.where(u2 < 0.93, WARD, LOTHER)))
    loc = np.select([is_nm, ctype == IND, (ctype == PHONE) | (ctype == VIDEO)],
                    [nm_loc, ind_loc, np.full(nc, REMOTE)], np.where(u2 < 0.6, LOTHER, CLINIC))
    duration = np.select([is_nm, ctype == IND, ctype == PHONE, ctype == VIDEO],
                         [60 + 15 * rng.integers(0, 4, nc), 30 + 15 * rng.integers(0, 3, nc),
                          rng.integers(5, 31, nc), rng.integers(20, 61, nc)], rng.integers(10, 91, nc))
    dur_valid = rng.random(nc) > 0.03
    att_p = np.select([is_nm, ctype == IND, (ctype == PHONE) | (ctype == VIDEO)], [0.92, 0.88, 0.95], 0.9)
    attended = (rng.random(nc) < att_p) | c_first
    present = attended & np.where(is_nm, rng.random(nc) < cfid["p7_person_present"], True)
    present_valid = is_nm | (rng.random(nc) > 0.02)
    nmp = np.where(is_nm, attended * (rng.random(nc) < cfid["p2_network_present"]) * (1 + rng.poisson(0.8, nc)),
                   (ctype == IND) * (rng.random(nc) < 0.1))
    nmp_valid = is_nm | (ctype == IND) | ((ctype != LOTHER) & (rng.random(nc) < 0.5))
    nmp_valid &= ctype != _index(ct_v, "other")
    ref_valid = rng.random(nc) > 0.04
    cseq = au.seq_within(c_person)
    cid = au.suffix_ids(pid.take(pa.array(c_person)), "-C", cseq, 4)

    # staff at each contact: clinical slots filled by the core team (continuity) or others
    n_clin = np.where(is_nm, np.where(rng.random(nc) < cfid["p5a_two_clinicians"],
                                      np.where(rng.random(nc) < 0.7, 2, 3), 1),
                      np.where(rng.random(nc) < 0.85, 1, 2))
    first_nm = c_first & c_od
    p4 = rng.random(nc) < np.nan_to_num(cfid["p4_first_contact_at_first_meeting"])
    shift = first_nm & ~p4
    cp_size = p_size[c_person]
    r = rng.integers(0, 1 << 30, nc) % (cp_size - 3)
    slots = np.full((nc, 4), -1, np.int64)
    for j in range(3):
        use_core = rng.random(nc) < cfid["p5b_core_continuity"]
        use_core = np.where(first_nm & p4 & (j == 0), True, use_core)
        cj = j + shift
        core_j = np.where(cj < 3, core[c_person, np.minimum(cj, 2)], -1)
        non = st.pool_clin[p_start[c_person] + (i0[c_person] + 3 + (r + j) % (cp_size - 3)) % cp_size]
        pick = np.where(use_core & (core_j >= 0), core_j, non)
        slots[:, j] = np.where(j < n_clin, pick, -1)
    peer_here = rng.random(nc) < np.where(is_nm, cfid["p5c_peer_worker"], 0.03)
    slots[:, 3] = np.where(peer_here, peer[c_person], -1)
    sr, sc = np.nonzero(slots >= 0)
    cs_contact = sr
    cs_staff = slots[sr, sc]

    # ------------------------------------------------------------------ prescriptions
    drugs = st.drugs
    ap_oral = drugs.pick(antipsychotic=True, route="oral", others=0.005, weights={
        "olanzapine": 0.3, "aripiprazole": 0.25, "quetiapine": 0.14, "risperidone": 0.12,
        "amisulpride": 0.05, "haloperidol": 0.03, "clozapine": 0.03, "lurasidone": 0.03,
        "paliperidone": 0.02, "sulpiride": 0.01, "cariprazine": 0.01})
    ap_depot = drugs.pick(antipsychotic=True, route="depot", others=0.01, weights={
        "paliperidone palmitate": 0.3, "aripiprazole": 0.25, "zuclopenthixol decanoate": 0.12,
        "flupentixol decanoate": 0.1, "haloperidol decanoate": 0.08, "risperidone": 0.08,
        "olanzapine pamoate": 0.03})
    antidep = drugs.pick(antipsychotic=False, route="oral", others=0.0, weights={
        "sertraline": 0.3, "citalopram": 0.2, "mirtazapine": 0.15, "fluoxetine": 0.15, "escitalopram": 0.08,
        "venlafaxine": 0.07, "duloxetine": 0.03, "amitriptyline": 0.01, "trazodone": 0.01})
    mood = drugs.pick(antipsychotic=False, route="oral", others=0.0, weights={
        "lithium": 0.5, "sodium valproate": 0.2, "semisodium valproate": 0.1, "lamotrigine": 0.15,
        "carbamazepine": 0.05})
    hypn = drugs.pick(antipsychotic=False, route="oral", others=0.0, weights={
        "zopiclone": 0.4, "diazepam": 0.25, "lorazepam": 0.2, "temazepam": 0.1, "clonazepam": 0.05})
    dx_names = dx_v[dx]
    base_ap = {"psychosis": 0.85, "bipolar": 0.6, "depression": 0.15, "personality": 0.2, "anxiety": 0.05,
               "other": 0.3, "unknown": 0.4}
    p_ap = np.array([base_ap.get(x, 0.2) for x in dx_v])[dx] * np.where(od, e.antipsychotic_ratio_od, 1.0)
    rx = {"person": [], "start": [], "len": [], "drug": [], "route": [], "dose": []}
    drug_names: list[str] = []
    route_v = vocab("prescriptions", "route")

    def add_rx(person, start, length, table, route):
        names, p, ddd = table
        if not len(person):
            return
        code = _codes(rng, p, len(person))
        factor = np.array([0.5, 0.75, 1.0, 1.5, 2.0])[_codes(rng, [0.25, 0.25, 0.3, 0.15, 0.05], len(person))]
        base = len(drug_names)
        drug_names.extend(str(x) for x in names)
        rx["person"].append(person)
        rx["start"].append(start)
        rx["len"].append(length)
        rx["drug"].append(base + code)
        rx["route"].append(np.full(len(person), _index(route_v, route)))
        rx["dose"].append(np.round(ddd[code] * factor, 3))

    user = np.flatnonzero(rng.random(n) < p_ap)
    st0 = np.where(rng.random(len(user)) < 0.3, -rng.integers(1, 366, len(user)),
                   np.floor(rng.exponential(15, len(user)))).astype(np.int64)
    cur_start, cur_person = st0, user
    for step in range(3):
        ln = np.ceil(rng.lognormal(np.log(180), 1.0, len(cur_person))).astype(np.int64) + 6
        depot = rng.random(len(cur_person)) < (0.08 if step == 0 else 0.2)
        add_rx(cur_person[~depot], cur_start[~depot], ln[~depot], ap_oral, "oral")
        add_rx(cur_person[depot], cur_start[depot], ln[depot], ap_depot, "depot")
        cont = rng.random(len(cur_person)) < (0.35 if step == 0 else 0.15)
        end = cur_start + ln
        nxt = np.where(rng.random(len(cur_person)) < 0.5, end - rng.integers(0, 15, len(cur_person)),
                       end + rng.integers(1, 60, len(cur_person)))
        cur_person, cur_start = cur_person[cont], nxt[cont]
    # rapid tranquillisation (route other) at some involuntary admissions
    rt = np.flatnonzero((~comp_vol) & (rng.random(len(comp_person)) < 0.2))
    if len(rt):
        halo = drugs.pick(antipsychotic=True, route="oral", others=0.0, weights={"haloperidol": 0.6, "olanzapine": 0.4})
        add_rx(comp_person[rt], comp_start[rt], np.zeros(len(rt), np.int64), halo, "other")
    ad_p = {"depression": 0.7, "anxiety": 0.5, "personality": 0.4, "psychosis": 0.2, "bipolar": 0.2}
    ad_user = np.flatnonzero(rng.random(n) < np.array([ad_p.get(x, 0.3) for x in dx_v])[dx])
    add_rx(ad_user, np.where(rng.random(len(ad_user)) < 0.4, -rng.integers(1, 366, len(ad_user)),
                             rng.integers(0, 90, len(ad_user))),
           np.ceil(rng.lognormal(np.log(200), 0.8, len(ad_user))).astype(np.int64), antidep, "oral")
    ms_user = np.flatnonzero(rng.random(n) < np.where(dx_names == "bipolar", 0.6, 0.03))
    add_rx(ms_user, np.where(rng.random(len(ms_user)) < 0.5, -rng.integers(1, 730, len(ms_user)),
                             rng.integers(0, 120, len(ms_user))),
           np.ceil(rng.lognormal(np.log(400), 0.8, len(ms_user))).astype(np.int64), mood, "oral")
    hy_user = np.flatnonzero(rng.random(n) < 0.15)
    add_rx(hy_user, rng.integers(-30, 400, len(hy_user)), rng.integers(7, 29, len(hy_user)), hypn, "oral")
    r_person = np.concatenate(rx["person"])
    r_start = np.concatenate(rx["start"])
    r_end = r_start + np.concatenate(rx["len"])
    r_drug = np.concatenate(rx["drug"])
    r_route = np.concatenate(rx["route"])
    r_dose = np.concatenate(rx["dose"])
    keep = r_start <= last_day[r_person]
    r_person, r_start, r_end, r_drug, r_route, r_dose = (x[keep] for x in (r_person, r_start, r_end, r_drug, r_route, r_dose))
    o = np.lexsort((r_drug, r_start, r_person))
    r_person, r_start, r_end, r_drug, r_route, r_dose = (x[o] for x in (r_person, r_start, r_end, r_drug, r_route, r_dose))
    r_end = np.where(death_obs[r_person] & (r_end > last_day[r_person]), death_day[r_person], r_end)
    r_end_valid = r_end <= last_day[r_person]
    unknown = rng.random(len(r_person)) < e.unknown_drug_rate
    base = len(drug_names)
    drug_names.extend(drugs.unknown)
    r_drug = np.where(unknown, base + rng.integers(0, len(drugs.unknown), len(r_person)), r_drug)
    unknown_counts: dict[str, int] = {}
    for nm_, c in zip(*np.unique(np.array(drug_names, dtype=object)[r_drug[unknown]].astype(str), return_counts=True)):
        unknown_counts[str(nm_)] = int(c)

    # ------------------------------------------------------------------ tables
    tables = {"people": people_tbl}
    staff_ids = st.staff["staff_id"]
    tables["referrals"] = _table("referrals", {
        "referral_id": rid,
        "person_id": pid,
        "received_at": au.ts_arr(received),
        "accepted_at": au.ts_arr(accepted),
        "first_contact_staff_id": au.cat_arr(staff_ids, core[:, 0], fcs_valid),
        "discharged_at": au.ts_arr(dis_at, dis_valid),
        "discharge_decided_by": au.cat_arr(dis_v, dec, dis_valid),
    })
    tables["contacts"] = _table("contacts", {
        "contact_id": cid,
        "person_id": pid.take(pa.array(c_person)),
        "referral_id": rid.take(pa.array(c_person, mask=~ref_valid)),
        "start_at": au.ts_arr(c_at),
        "duration_min": au.int_arr(duration, dur_valid),
        "contact_type": au.cat_arr(ct_v, ctype),
        "location": au.cat_arr(loc_v, loc),
        "attended": au.bool_arr(attended),
        "person_present": au.bool_arr(present, present_valid),
        "network_members_present": au.int_arr(nmp, nmp_valid),
    })
    tables["contact_staff"] = _table("contact_staff", {
        "contact_id": cid.take(pa.array(cs_contact)),
        "staff_id": au.cat_arr(staff_ids, cs_staff),
    })

    o = np.lexsort((a_meth == TRANSFER, a_in, a_person))
    a_person, a_in, a_out, a_meth, a_det, a_out_valid, a_det_valid = (
        x[o] for x in (a_person, a_in, a_out, a_meth, a_det, a_out_valid, a_det_valid))
    ia = index_abs[a_person]
    tables["admissions"] = _table("admissions", {
        "admission_id": au.suffix_ids(pid.take(pa.array(a_person)), "-A", au.seq_within(a_person), 2),
        "person_id": pid.take(pa.array(a_person)),
        "admitted_on": au.date_arr(ia + a_in),
        "discharged_on": au.date_arr(ia + a_out, a_out_valid),
        "admission_method": au.cat_arr(meth_v, a_meth),
        "detained_on_admission": au.bool_arr(a_det, a_det_valid),
    })
    o = np.lexsort((d_sec, d_start, d_person))
    d_person, d_start, d_end, d_sec, d_end_valid = (x[o] for x in (d_person, d_start, d_end, d_sec, d_end_valid))
    idd = index_abs[d_person]
    tables["detentions"] = _table("detentions", {
        "detention_id": au.suffix_ids(pid.take(pa.array(d_person)), "-D", au.seq_within(d_person), 2),
        "person_id": pid.take(pa.array(d_person)),
        "legal_section": au.cat_arr(sec_v, d_sec),
        "start_on": au.date_arr(idd + d_start),
        "end_on": au.date_arr(idd + d_end, d_end_valid),
    })
    o = np.lexsort((cr_start, cr_person))
    cr_person, cr_start, cr_end, cr_end_valid = (x[o] for x in (cr_person, cr_start, cr_end, cr_end_valid))
    ic = index_abs[cr_person]
    tables["crisis_episodes"] = _table("crisis_episodes", {
        "episode_id": au.suffix_ids(pid.take(pa.array(cr_person)), "-E", au.seq_within(cr_person), 2),
        "person_id": pid.take(pa.array(cr_person)),
        "start_on": au.date_arr(ic + cr_start),
        "end_on": au.date_arr(ic + cr_end, cr_end_valid),
    })
    ir = index_abs[r_person]
    tables["prescriptions"] = _table("prescriptions", {
        "prescription_id": au.suffix_ids(pid.take(pa.array(r_person)), "-M", au.seq_within(r_person), 2),
        "person_id": pid.take(pa.array(r_person)),
        "drug": au.cat_arr(drug_names, r_drug),
        "route": au.cat_arr(route_v, r_route),
        "daily_dose_mg": au.float_arr(r_dose),
        "start_on": au.date_arr(ir + r_start),
        "end_on": au.date_arr(ir + r_end, r_end_valid),
    })
    tables["employment"] = _table("employment", {
        "person_id": pid.take(pa.array(emp_person)),
        "recorded_on": au.date_arr(index_abs[emp_person] + emp_day),
        "status": au.cat_arr(st_v, status_code),
    })
    return Chunk(tables=tables, truth=pa.table(truth), person_ids=pid, unknown_drugs=unknown_counts)
