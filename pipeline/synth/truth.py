"""The planted truth of a synthetic study (``truth.json``)."""

from __future__ import annotations

import numpy as np

from pipeline.synth.observational import marginal_truth
from pipeline.synth.params import EFFECTS
from pipeline.synth.simulate import KC, KI, KV, OUTCOMES
from pipeline.synth.study import (CHUNK_PEOPLE, CLINICAL_ROLES, EXTRACT_DATE, FIDELITY_NAMES, FOLLOW_UP_DAYS,
                                  INVOLUNTARY_SECTIONS, RTW_WINDOW_START, WORK_STATUSES, Study, EPOCH)

import datetime as dt

CONVENTIONS = {
    "day": "day(d) = d - index_date in whole days (timestamps: their date)",
    "fu_end_day": "min(day(death_date), day(data_end_date), 730)",
    "end_reason": "death if death_date is given and day(death_date) == fu_end_day, else data_end if "
                  "day(data_end_date) == fu_end_day and < 730, else end_of_follow_up (priority death > "
                  "data_end > end_of_follow_up on ties)",
    "outcome_window": "an event counts iff 1 <= day <= fu_end_day; day 0 (index date) is never an outcome; an "
                      "outcome event on the day of death counts as the event",
    "relapse": "first start of an acute-care episode in the window: admissions, crisis episodes and "
               "detentions under 2, 3, 4, 37 merged into one episode when they overlap or one starts <= 2 days "
               "after the latest end of the episode so far (derive.episode_gap_days), so crisis-then-admission "
               "and back-to-back crisis episodes are one; an episode under way on day 0 is not a relapse, nor "
               "anything merged into it. relapse_count = episodes starting in the window",
    "first_admission": "first admission spell start in the window (admissions chained by transfer: "
                       "admission_method transfer with admitted_on <= previous discharged_on + 1 day)",
    "first_crisis": "first crisis episode start in the window",
    "involuntary_admission": "Mental Health Act episodes: detentions under 2, 3, 4, 37, 135, 136, 5(2), 5(4) "
                             "merged when the next starts <= 1 day after the latest end so far "
                             "(derive.detention_gap_days), so a section 2 converted to a 3, or a 136 leading "
                             "into a 2, is one episode; an episode with a 2/3/4/37 is an involuntary admission "
                             "on the start of its first 2/3/4/37 when that day is in the window (a detention of "
                             "someone already in hospital counts); time = the first such day. involuntary_count "
                             "= such episodes; place_of_safety_count, holding_power_count = episodes of "
                             "135/136 or 5(2)/5(4) alone whose first such section starts in the window",
    "days_detained": "follow-up days inside involuntary Mental Health Act episodes, [start, end)",
    "bed_days": "follow-up nights inside admissions, overlaps counted once",
    "open_records": "a record with no end date ends as derive.open_end says: admissions at the person's last "
                    "day of data, crisis episodes after 42 days, detentions at their section's legal limit "
                    "(2: 28 days, 4 and 5(2): 3, 5(4): 1, 135/136: 2; 3 and 37 at the last day of data), "
                    "or at the last day of data if sooner",
    "rtw": "status in (employed, self_employed, education, training); time = first such record in the "
           "window; rtw_2y = whether the LAST employment record with day in [640, min(730, fu_end_day)] has "
           "such a status, null if there is none",
    "death": "death_event 1 iff end_reason == death; death_time = fu_end_day",
    "event_codes": "<outcome>_event: 0 censored, 1 event, 2 competing death (no event and end_reason == death); "
                   "<outcome>_time = event day if event else fu_end_day",
}


def _gh(n=24):
    x, w = np.polynomial.hermite_e.hermegauss(n)
    return x, w / w.sum()


def _surv(t, comps, inv, x, c_sd, b, theta, k):
    """Marginal survival at days t for arm x (0/1), averaging a normal cluster log-frailty
    (sd c_sd) and the gamma frailty of the involuntary component, given site log-frailty b."""
    nodes, weights = _gh()
    s = np.zeros_like(t, dtype=float)
    base = (t / FOLLOW_UP_DAYS) ** k
    for c, w in zip(nodes * c_sd, weights):
        f = np.exp(b + c)
        h_fixed = sum(a * hr ** x for a, hr in comps) * f * base
        part = np.exp(-h_fixed)
        if inv is not None:
            a, rr = inv
            lam = a * rr ** x * f * base
            part = part * ((1 + theta * lam) ** (-1 / theta) if theta > 0 else np.exp(-lam))
        s += w * part
    return s


def expected_cox(comps, inv, st: Study) -> dict:
    """Event-weighted average of the log marginal (within-site) hazard ratio over days 1..730:
    the approximate target of a site-stratified Cox model that ignores clusters and the
    individual frailty (uncensored approximation)."""
    e = st.effects
    k = e.weibull_shape
    c_sd = np.sqrt(e.cluster_frailty_var) if st.design == "cluster" else 0.0
    t = np.arange(0, FOLLOW_UP_DAYS + 1, dtype=float)
    num = den = 0.0
    for b, w_site in zip(st.site_logfrailty, st.site_weight):
        s0 = _surv(t, comps, inv, 0, c_sd, b, e.involuntary_frailty_var, k)
        s1 = _surv(t, comps, inv, 1, c_sd, b, e.involuntary_frailty_var, k)
        h0 = -np.diff(np.log(s0))
        h1 = -np.diff(np.log(s1))
        dens = (s0[:-1] - s0[1:]) + (s1[:-1] - s1[1:])
        ok = (h0 > 0) & (h1 > 0)
        num += w_site * np.sum(dens[ok] * np.log(h1[ok] / h0[ok]))
        den += w_site * np.sum(dens[ok])
    return {"expected_site_stratified_cox_hr": round(float(np.exp(num / den)), 4) if den > 0 else None}


def _rtw_log_surv(p: float, e) -> float:
    """log P(no first return by day 640) of an arm: log(1 - p / (1 - rtw_leave_prob))."""
    return float(np.log1p(-min(p / (1 - e.rtw_leave_prob), 1 - 1e-12)))


def _rtw_marginal(p: float, st: Study) -> float:
    """P(rtw_2y) of an arm averaged over the cluster effect on its log-odds (the arm's
    probability itself without one)."""
    v = st.effects.rtw_cluster_logit_var
    keep = 1 - st.effects.rtw_leave_prob   # P(in work at 2 y) = min(p / keep, 1) keep
    if st.design != "cluster" or v <= 0:
        return p if p <= keep else keep
    x, w = _gh(40)
    pc = 1 / (1 + np.exp(-(np.log(p / (1 - p)) + np.sqrt(v) * x)))
    return round(float(np.sum(w * np.minimum(pc / keep, 1.0) * keep)), 6)


def _cluster_imbalance(st: Study) -> float:
    tot = 0.0
    for s in range(st.sites):
        m = st.cluster_site == s
        w, c, a = st.cluster_weight[m], st.cluster_logfrailty[m], st.cluster_arm[m]
        if a.min() == a.max():
            continue
        tot += st.site_weight[s] * (np.average(c[a == 1], weights=w[a == 1]) - np.average(c[a == 0], weights=w[a == 0]))
    return float(tot)


def _date(day: int) -> str:
    return (EPOCH + dt.timedelta(days=int(day))).isoformat()


def truth_document(st: Study, *, rows: dict, unknown_drugs: dict, faults: float, nhs_numbers: bool, fmt: str,
                   fault_counts: dict) -> dict:
    e = st.effects
    k = e.weibull_shape
    cluster = st.design == "cluster"
    frailty_txt = ("site log-frailty b_s ~ N(0, site_frailty_var)" +
                   (" + cluster log-frailty c_g ~ N(0, cluster_frailty_var)" if cluster else ""))
    A = (e.admission_cumhaz_2y, e.hr_admission)
    C = (e.crisis_cumhaz_2y, e.hr_crisis)
    inv = (e.involuntary_rate_2y, e.rr_involuntary)

    def weib(comps, with_inv):
        parts = [f"{a} * {hr}^x" for a, hr in comps]
        if with_inv:
            parts.append(f"Z * {inv[0]} * {inv[1]}^x")
        return (f"cumulative hazard H(t) = exp({'b_s + c_g' if cluster else 'b_s'}) * ("
                + " + ".join(parts) + f") * (t/730)^{k}, t in days, x = 1 for open_dialogue")

    def cond_hr(comps, with_inv):
        hrs = {hr for _, hr in comps} | ({inv[1]} if with_inv else set())
        if len(hrs) == 1:
            return float(next(iter(hrs)))
        return None

    def outcome(name, comps, with_inv, desc):
        hr = cond_hr(comps, with_inv)
        d = {
            "model": "Weibull proportional hazards (shape %s) in days from index_date; " % k + desc,
            "cumulative_hazard": weib(comps, with_inv),
            "weibull_shape": k,
            "true_hr_conditional": hr,
            "conditional_on": frailty_txt + (" and the person's gamma frailty Z (mean 1, variance "
                                             f"{e.involuntary_frailty_var}) of the involuntary component"
                                             if with_inv else ""),
            "hr_note": None if hr is not None else
            "component hazard ratios differ, so the hazard ratio given Z is a Z-dependent mixture; use "
            "expected_site_stratified_cox_hr",
        }
        d.update(expected_cox(comps, inv if with_inv else None, st))
        if hr:
            d["expected_attenuation"] = round(d["expected_site_stratified_cox_hr"] / hr, 4)
        return d

    outcomes = {
        "relapse": outcome("relapse", [A, C], True,
                           "minimum of the first non-compulsory admission, the first involuntary admission "
                           "(first detention under 2/3/4/37 starts an admission unless already in hospital) "
                           "and the first crisis episode; independent components sharing the shape, so "
                           "relapse is Weibull PH given the frailties"),
        "first_admission": outcome("first_admission", [A], True,
                                   "minimum of the first non-compulsory admission and the first involuntary "
                                   "detention"),
        "first_crisis": outcome("first_crisis", [C], False, "first crisis resolution / home treatment episode"),
        "involuntary_admission": outcome("involuntary_admission", [], True,
                                         "first event of the involuntary-detention process (below)"),
        "rtw": {
            "model": f"Weibull PH (shape {e.rtw_shape}) of the first return on days 0..{RTW_WINDOW_START}, "
                     "hazard 0 afterwards, no frailty; P(first return by day 640) = rtw_2y probability of the "
                     f"arm / (1 - rtw_leave_prob); a returner loses work again before day 640 with probability "
                     f"{e.rtw_leave_prob} (uniform day between the return and 640) and is not back by then; the return "
                     f"is recorded on its day with probability {e.rtw_record_prob}, else at the next review "
                     "finding the person in work (rtw_time is the first RECORDED such status, so the Cox "
                     "targets below are those of the true return times, approximately)",
            "true_hr_conditional": round(float(_rtw_log_surv(e.rtw_2y_open_dialogue, e) / _rtw_log_surv(e.rtw_2y_usual_care, e)), 6),
            "conditional_on": "nothing (no frailty): marginal and conditional coincide",
            "expected_site_stratified_cox_hr": round(float(_rtw_log_surv(e.rtw_2y_open_dialogue, e) / _rtw_log_surv(e.rtw_2y_usual_care, e)), 4),
            "everyone_out_of_work_at_index": True,
        },
        "death": {
            "model": f"exponential hazard, 2-year risk {e.death_risk_2y} in usual care, hazard ratio {e.hr_death}; "
                     "no frailty; independent of every other process; a competing event for all outcomes "
                     "(recorded only when on or before data_end_date)",
            "rate_per_day_usual_care": float(-np.log1p(-e.death_risk_2y) / FOLLOW_UP_DAYS),
            "true_hr_conditional": e.hr_death,
            "conditional_on": "nothing (no frailty)",
            "expected_site_stratified_cox_hr": e.hr_death,
        },
    }
    fid = {}
    for s, sid in enumerate(st.site_ids):
        fid[sid] = {
            "poor_fidelity": bool(st.site_poor[s]),
            "open_dialogue": {n: float(a[s, 1]) for n, a in st.fidelity.items()},
            "usual_care": {n: (None if np.isnan(a[s, 0]) else float(a[s, 0])) for n, a in st.fidelity.items()},
        }
    return {
        "description": "Planted truth of an odeval synthetic study. truth_people.parquet is for the fault-free "
                       "study: the same seed without faults writes identical clean records (faults use their "
                       "own random stream), and tests use faults=0 for exactness.",
        "study": {
            "people": st.people, "sites": st.sites, "seed": st.seed, "design": st.design, "format": fmt,
            "extract_date": EXTRACT_DATE.isoformat(),
            "recruitment": [_date(st.recruit_start), _date(st.recruit_end)],
            "follow_up_days": FOLLOW_UP_DAYS, "chunk_people": CHUNK_PEOPLE,
            "faults": faults, "nhs_numbers": nhs_numbers,
            **({"staggered": "each person followed for their own two years; every "
                             "data_end_date is the person's own"} if st.staggered else {}),
        },
        "conventions": CONVENTIONS,
        "parameters": {k_: {"value": v, "help": EFFECTS[k_][1]} for k_, v in e.values.items()},
        "frailty": {
            "site_frailty_var": e.site_frailty_var,
            "cluster_frailty_var": e.cluster_frailty_var if cluster else 0.0,
            "note": "log-normal frailties multiply the admission, crisis and detention hazards; the site "
                    "frailty is absorbed by a site-stratified Cox model; the small cluster frailty and the "
                    "gamma frailty of the detention process attenuate the marginal hazard ratio slightly "
                    "(expected_site_stratified_cox_hr, computed by quadrature, event-weighted over days "
                    "1..730 without censoring).",
            "site_log_frailty": {sid: round(float(b), 6) for sid, b in zip(st.site_ids, st.site_logfrailty)},
            "cluster_arm_imbalance_log": round(_cluster_imbalance(st), 6) if cluster else 0.0,
            "cluster_arm_imbalance_note": "expected person-weighted mean cluster log-frailty of open_dialogue "
                                          "minus usual_care clusters within sites (site-weighted): with few "
                                          "clusters this realised imbalance shifts a Cox estimate that ignores "
                                          "clusters by about exp(imbalance); adjusting for the realised cluster "
                                          "log-frailties (listed under clusters) removes it",
        },
        "outcomes": outcomes,
        "involuntary_detentions": {
            "model": "Poisson process with intensity exp(b_s%s) * Z * rr^x * %s * d/dt (t/730)^%s; Z ~ Gamma(mean "
                     "1, variance %s) per person, so counts over a fixed period are negative binomial; sections "
                     "2 (0.6), 3 (0.32), 4 (0.03), 37 (0.05)" % (" + c_g" if cluster else "",
                                                                 e.involuntary_rate_2y, k, e.involuntary_frailty_var),
            "true_rate_ratio": e.rr_involuntary,
            "rate_ratio_note": "conditional on all frailties and also marginal (every frailty has mean 1 and is "
                               "independent of arm); cumulative intensity is not linear in time (shape), so "
                               "compare arms over the same follow-up distribution",
            "expected_count_2y_usual_care": e.involuntary_rate_2y,
            "not_involuntary_sections": ["135", "136", "5(2)", "5(4)", "other"],
            "max_simulated_per_person": KI,
        },
        "rtw_2y": {
            "usual_care": _rtw_marginal(e.rtw_2y_usual_care, st), "open_dialogue": _rtw_marginal(e.rtw_2y_open_dialogue, st),
            "definition": "data-generating probability that rtw_2y is true among people with a record in the "
                          "window (independent of follow-up, so, with no planted missingness (rtw_miss_rate 0), "
                          "also the expected observed proportion; truth_people.rtw_2y_true is the status "
                          "whether recorded or not)"
                          + ("; averaged over the normal cluster effect on the log-odds (variance "
                             f"{e.rtw_cluster_logit_var}) by quadrature: the population-averaged risk, "
                             "whose difference is the marginal risk difference"
                             if cluster and e.rtw_cluster_logit_var > 0 else ""),
            "work_statuses": list(WORK_STATUSES),
        },
        "recurrences": {
            "max_simulated_per_person": {"non_compulsory_admissions": KV, "detentions": KI, "crisis_episodes": KC},
            "readmission_rate_py": e.readmission_rate_py, "recrisis_rate_py": e.recrisis_rate_py,
        },
        "fidelity": {"definitions": FIDELITY_NAMES, "clinical_roles": list(CLINICAL_ROLES), "sites": fid,
                     "note": "data-generating probabilities; null = not planted for that arm. p1 and p4 "
                             "concern the first contact of an open_dialogue person, which is an attended "
                             "network meeting. Shares hold for attended network meetings (p3, p5 also for "
                             "all network meetings)."},
        "clusters": ({cid: {"site_id": st.site_ids[s], "arm": "open_dialogue" if a else "usual_care",
                            "log_frailty": round(float(f), 6)}
                      for cid, s, a, f in zip(st.cluster_ids, st.cluster_site, st.cluster_arm, st.cluster_logfrailty)}
                     if cluster else {}),
        "unknown_drugs": {"count_by_drug": dict(sorted(unknown_drugs.items())),
                          "prescriptions": int(sum(unknown_drugs.values())),
                          "note": "drug names deliberately absent from pipeline/reference/antipsychotics.csv; "
                                  "not a validation fault"},
        "involuntary_sections": list(INVOLUNTARY_SECTIONS),
        **({"observational": marginal_truth(st)} if st.design == "observational" else {}),
        "outcome_names": list(OUTCOMES),
        "rows": rows,
        "faults": fault_counts,
    }
