"""The observational design of the synthetic study: measured confounding with a known truth.

With ``design="observational"`` nobody is randomised. A person's arm follows their age,
prior admissions, diagnosis and site (a logistic model), and the same characteristics
change their outcomes:

* ``logit P(open_dialogue) = obs_ps_intercept + obs_ps_age (age - 31) / 10 + obs_ps_prior
  min(prior, 4) + obs_ps_psychosis [psychosis] + site offset`` (site offsets spread evenly
  over ``obs_ps_site_spread``);
* the admission, crisis and detention hazards are multiplied by ``obs_hr_age^((age - 31) /
  10) obs_hr_prior^min(prior, 4) obs_hr_psychosis^[psychosis]``, on top of the site
  frailty; the odds of being in work or education at two years by
  ``obs_or_rtw_prior^min(prior, 4)``.

Defaults: Open Dialogue teams take younger people, with fewer prior admissions and more
often a first psychosis, who all relapse less (older age and prior admissions raise the
hazards, psychosis lowers them here). An unadjusted comparison therefore flatters Open
Dialogue. The confounders are fully recorded (no
missing birth year or prior admissions in this design), so that weighting on them can
recover the truth.

Conditional and marginal effects. The planted arm effects (``hr_admission``,
``hr_crisis``, ``rr_involuntary``, the ``rtw_2y_*`` probabilities at the reference
covariates) are conditional on the covariates and frailties. A propensity-weighted
analysis estimates marginal effects in a population (the study's people for the ATE),
which differ from conditional ones for hazard and odds ratios (non-collapsibility) even
without confounding. :func:`marginal_truth` computes them by simulating both potential
outcomes of many people drawn like the study's (every person once in each arm, all other
draws of the generator unchanged) and estimating each effect on them; it writes them to
``truth.json`` (``observational``) with their Monte Carlo error, beside what an
unadjusted analysis estimates in the same large sample.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.synth.study import CHUNK_PEOPLE, FOLLOW_UP_DAYS, Study

#: People simulated per arm for the marginal truth: Monte Carlo error of the log hazard
#: ratio about 0.008, against a standard error of about 0.1 for one 1,400-person study
#: (about 15 s).
TRUTH_PEOPLE = 30_000
TRUTH_HORIZONS = (365, 730)


def site_offsets(sites: int, spread: float) -> np.ndarray:
    return np.linspace(-spread / 2, spread / 2, sites) if sites > 1 else np.zeros(1)


def assign_arm(st: Study, site: np.ndarray, age: np.ndarray, prior: np.ndarray,
               psychosis: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arm (True = Open Dialogue) from the covariates and the uniform draw ``u``; the
    log-hazard shift of the outcome processes; the log-odds shift of return to work."""
    e = st.effects
    a10 = (age - 31) / 10
    p4 = np.minimum(prior, 4)
    psy = psychosis.astype(float)
    lin = (e.obs_ps_intercept + e.obs_ps_age * a10 + e.obs_ps_prior * p4 + e.obs_ps_psychosis * psy
           + site_offsets(st.sites, e.obs_ps_site_spread)[site])
    od = u < 1 / (1 + np.exp(-lin))
    lx = np.log(e.obs_hr_age) * a10 + np.log(e.obs_hr_prior) * p4 + np.log(e.obs_hr_psychosis) * psy
    return od, lx, np.log(e.obs_or_rtw_prior) * p4


def _world(st: Study, arm: int | None, seeds) -> pd.DataFrame:
    from pipeline.synth.simulate import simulate_chunk

    frames = []
    for i, ss in enumerate(seeds):
        st.chunk_seeds[i] = ss
        ch = simulate_chunk(st, i, arm=arm, outcomes_only=True)
        frames.append(ch.truth.select(["person_id", "arm", "relapse_time", "relapse_event",
                                       "involuntary_count", "fu_end_day", "rtw_2y"]).to_pandas())
    d = pd.concat(frames, ignore_index=True)
    d["od"] = (d["arm"] == "open_dialogue").astype(int)
    d["relapsed"] = (d["relapse_event"] == 1).astype(int)
    d["py"] = d["fu_end_day"] / 365.25
    return d


def _effects(d: pd.DataFrame) -> dict:
    """Every effect an analysis reports, estimated on a (large) person frame with arms."""
    from pipeline.stats import aalen_johansen, cox

    out = {}
    c = cox(d, "relapse_time", "relapsed", ["od"], cluster="person_id").summary.loc["od"]
    out["relapse_hr"] = (float(c["hr"]), float(c["se"]))
    aj = aalen_johansen(d, "relapse_time", "relapse_event", cause=1, group="od").table
    for h in TRUTH_HORIZONS:
        r = {}
        for g in (0, 1):
            tab = aj[(aj["group"] == g) & (aj["time"] <= h)]
            r[g] = (float(tab["cif"].iloc[-1]), float(tab["se"].iloc[-1])) if len(tab) else (0.0, 0.0)
        out[f"relapse_risk_{h}"] = r
    rates = {g: d.loc[d["od"] == g, "involuntary_count"].sum() / d.loc[d["od"] == g, "py"].sum()
             for g in (0, 1)}
    out["involuntary_rate_ratio"] = float(rates[1] / rates[0])
    # Monte Carlo error of the log rate ratio: each arm's influence (y - rate py) / (rate PY),
    # summed per person (everyone appears in both worlds)
    infl = np.zeros(len(d))
    for g, sign in ((1, 1.0), (0, -1.0)):
        m = (d["od"] == g).to_numpy()
        tot = d.loc[m, "py"].sum()
        infl[m] = sign * (d.loc[m, "involuntary_count"] - rates[g] * d.loc[m, "py"]) / (rates[g] * tot)
    per = pd.Series(infl).groupby(d["person_id"].to_numpy()).sum()
    out["involuntary_log_rr_se"] = float(np.sqrt(np.sum(per.to_numpy() ** 2)))
    out["involuntary_rates"] = {g: float(v) for g, v in rates.items()}
    w = d[d["rtw_2y"].notna()]
    out["rtw_2y"] = {g: float(w.loc[w["od"] == g, "rtw_2y"].astype(float).mean()) for g in (0, 1)}
    out["rtw_2y_n"] = {g: int((w["od"] == g).sum()) for g in (0, 1)}
    return out


def marginal_truth(st: Study, people: int = TRUTH_PEOPLE) -> dict:
    """The marginal effects of an observational study, from both potential outcomes.

    ``people`` people are drawn like the study's (same sites, frailties and parameters;
    their own random stream, so they are not the study's people) and simulated twice,
    once in each arm, with every other draw unchanged; each effect is then estimated on
    the two worlds together (the arm is the only difference). The observed world of the
    same people (arms assigned by the propensity model) gives what an unadjusted analysis
    estimates. Monte Carlo standard errors come with each value (for the hazard ratio
    robust by person, since everyone appears in both worlds).
    """
    import copy

    big = copy.copy(st)
    big.people = people
    n_chunks = (people + CHUNK_PEOPLE - 1) // CHUNK_PEOPLE
    seeds = np.random.SeedSequence([st.seed, 22]).spawn(n_chunks)
    big.chunk_seeds = list(seeds)
    worlds = {a: _world(big, a, seeds) for a in (0, 1)}
    both = pd.concat([worlds[0], worlds[1]], ignore_index=True)
    m = _effects(both)
    obs = _effects(_world(big, None, seeds))
    e = st.effects

    def risk_block(r):
        (r0, s0), (r1, s1) = r[0], r[1]
        return {"usual_care": round(r0, 5), "open_dialogue": round(r1, 5),
                "risk_difference": round(r1 - r0, 5), "risk_ratio": round(r1 / r0, 5),
                "mc_se_each": round(max(s0, s1), 5)}

    hr, hr_se = m["relapse_hr"]
    rtw = m["rtw_2y"]
    rtw_mc = max(np.sqrt(rtw[g] * (1 - rtw[g]) / m["rtw_2y_n"][g]) for g in (0, 1))
    return {
        "assignment_model": (
            f"logit P(open_dialogue) = {e.obs_ps_intercept} + {e.obs_ps_age} (age - 31) / 10 + "
            f"{e.obs_ps_prior} min(prior_admissions_2y, 4) + {e.obs_ps_psychosis} [psychosis] + "
            f"site offset ({', '.join(f'{v:.3g}' for v in site_offsets(st.sites, e.obs_ps_site_spread))})"),
        "outcome_model": (
            f"admission, crisis and detention hazards x {e.obs_hr_age}^((age - 31) / 10) x "
            f"{e.obs_hr_prior}^min(prior, 4) x {e.obs_hr_psychosis}^[psychosis]; odds of work or "
            f"education at 2 years x {e.obs_or_rtw_prior}^min(prior, 4)"),
        "confounders": ["age_at_index", "prior_admissions_2y", "diagnosis_group (psychosis)",
                        "site_id"],
        "confounders_fully_recorded": True,
        "note": "outcomes.*.expected_site_stratified_cox_hr and involuntary_detentions elsewhere in "
                "truth.json leave out this design's covariate effects; the targets of an analysis "
                "are marginal_effects below",
        "conditional_effects": {
            "hr_admission": e.hr_admission, "hr_crisis": e.hr_crisis,
            "rr_involuntary": e.rr_involuntary,
            "rtw_2y_at_reference_covariates": {"usual_care": e.rtw_2y_usual_care,
                                               "open_dialogue": e.rtw_2y_open_dialogue},
            "note": "conditional on the covariates and frailties: not what a weighted (marginal) "
                    "analysis estimates, except the rate ratio (collapsible)"},
        "marginal_effects": {
            "estimand": "average treatment effect in the population the study's people come from "
                        "(everyone in Open Dialogue vs everyone in usual care), each effect as the "
                        "analysis estimates it: relapse hazard ratio from an unstratified Cox model "
                        "(deaths censored), relapse risks by Aalen-Johansen (death competing), the "
                        "ratio of involuntary-admission rates per person-year, work or education "
                        "at 2 years among people with a record in the window",
            "relapse_hazard_ratio": round(hr, 5),
            "relapse_log_hr_mc_se": round(hr_se, 5),
            **{f"relapse_risk_by_day_{h}": risk_block(m[f"relapse_risk_{h}"]) for h in TRUTH_HORIZONS},
            "involuntary_rate_ratio": round(m["involuntary_rate_ratio"], 5),
            "involuntary_log_rate_ratio_mc_se": round(m["involuntary_log_rr_se"], 5),
            "rtw_2y": {"usual_care": round(rtw[0], 5), "open_dialogue": round(rtw[1], 5),
                       "risk_difference": round(rtw[1] - rtw[0], 5),
                       "risk_ratio": round(rtw[1] / rtw[0], 5), "mc_se_each": round(rtw_mc, 5)},
        },
        "unadjusted_expected": {
            "note": "what an analysis ignoring the confounders estimates (the same large sample with "
                    "the arms the propensity model assigned): the confounding bias is the difference "
                    "from marginal_effects",
            "relapse_hazard_ratio": round(obs["relapse_hr"][0], 5),
            "relapse_risk_difference_by_day_730": round(
                obs["relapse_risk_730"][1][0] - obs["relapse_risk_730"][0][0], 5),
            "involuntary_rate_ratio": round(obs["involuntary_rate_ratio"], 5),
            "rtw_2y_risk_difference": round(obs["rtw_2y"][1] - obs["rtw_2y"][0], 5),
            "share_open_dialogue": round(float(obs["rtw_2y_n"][1] / sum(obs["rtw_2y_n"].values())), 4),
        },
        "monte_carlo": {"people_per_arm": people, "follow_up_days": FOLLOW_UP_DAYS,
                        "note": "each person simulated in both arms with their own random stream "
                                "(seed [study seed, 22]); *_mc_se are Monte Carlo standard errors"},
    }
