"""Effect sizes and other parameters of the synthetic study's data-generating model.

Every entry of :data:`EFFECTS` can be overridden as a keyword of
:func:`pipeline.synth.generate_study` (``generate_study(out, ..., hr_relapse=0.7)``).
Hazards are on the day scale from ``index_date``. ``od`` = open_dialogue, ``uc`` =
usual_care. The truth written to ``truth.json`` is computed from the values used.
"""

from __future__ import annotations

from dataclasses import dataclass

#: name -> (default, help text). The help text is what ``truth.json`` and ``--help`` show.
EFFECTS: dict[str, tuple[float, str]] = {
    # --- relapse components (admissions and crisis episodes) ---------------------------
    "weibull_shape": (0.8, "Weibull shape shared by the first voluntary admission, first crisis "
                           "episode and the involuntary-detention intensity (< 1: risk highest "
                           "early after index)."),
    "admission_cumhaz_2y": (0.25, "Baseline (usual care, frailties 0) cumulative hazard at day 730 "
                                  "of the first non-compulsory admission."),
    "crisis_cumhaz_2y": (0.45, "Baseline cumulative hazard at day 730 of the first crisis episode."),
    "hr_admission": (0.6, "Hazard ratio od vs uc of the first non-compulsory admission "
                          "(conditional on site and cluster frailty)."),
    "hr_crisis": (0.6, "Hazard ratio od vs uc of the first crisis episode (conditional on frailties)."),
    "readmission_rate_py": (0.5, "Rate per person-year of further non-compulsory admissions after "
                                 "discharge (times the person's frailties)."),
    "recrisis_rate_py": (0.7, "Rate per person-year of further crisis episodes after one ends."),
    # --- involuntary admissions (MHA sections 2, 3, 4, 37) -----------------------------
    "involuntary_rate_2y": (0.20, "Expected number of involuntary detentions per person in the first "
                                  "730 days in usual care (all frailties 1)."),
    "rr_involuntary": (0.6, "Rate ratio od vs uc of involuntary detentions (conditional on frailties; "
                            "also the marginal rate ratio since every frailty has mean 1 within a site)."),
    "involuntary_frailty_var": (0.8, "Variance of the person's gamma frailty (mean 1) on the detention "
                                     "intensity: counts are negative binomial."),
    # --- frailties ---------------------------------------------------------------------
    "site_frailty_var": (0.09, "Variance of the site log-frailty (normal, mean 0) shared by admissions, "
                               "crises and detentions."),
    "cluster_frailty_var": (0.01, "Variance of the cluster (GP practice) log-frailty (cluster design only)."),
    "rtw_cluster_logit_var": (0.0, "Variance of a normal cluster effect on the log-odds of being in work "
                                   "or education at 2 years (cluster design only; 0 = none): makes that "
                                   "binary outcome correlated within clusters (ICC on the latent scale "
                                   "v / (v + pi^2 / 3))."),
    # --- death -------------------------------------------------------------------------
    "death_risk_2y": (0.02, "Two-year risk of death in usual care (exponential hazard, no frailty)."),
    "hr_death": (1.0, "Hazard ratio od vs uc of death."),
    # --- return to work or education -----------------------------------------------------
    "rtw_2y_usual_care": (0.25, "Probability that a person in usual care is in work or education at "
                                "the 2-year review (UK early-intervention scale)."),
    "rtw_2y_open_dialogue": (0.45, "Same for open dialogue (between UK usual care and the Western "
                                   "Lapland reports)."),
    "rtw_shape": (1.2, "Weibull shape of the time to return to work or education (hazard zero after "
                       "day 640)."),
    "rtw_leave_prob": (0.3, "Probability that a person who returns loses work or education again "
                            "before day 640 (and is not back by then); the first return is likelier "
                            "in proportion, so the 2-year probabilities above hold."),
    "rtw_record_prob": (0.75, "Probability that the return itself is recorded on its day (else the "
                              "next review in work shows it)."),
    # --- planted missing statuses at 2 years (pipeline/synth/missingness.py) ----------------
    "rtw_miss_rate": (0.0, "Probability that every employment record in the 2-year window is "
                           "removed, for a usual-care person not in work at the last record "
                           "before the window and not in work at 2 years (0 = none planted)."),
    "rtw_miss_or_arm": (1.0, "Odds ratio of that removal for open dialogue (MAR on arm)."),
    "rtw_miss_or_prev_work": (1.0, "Odds ratio for people in work at the last record before the "
                                   "window (MAR on an observed status)."),
    "rtw_miss_or_work": (1.0, "Odds ratio for people in work at 2 years (MNAR: on the missing "
                              "status itself)."),
    # --- follow-up -------------------------------------------------------------------------
    "recruitment_days": (820, "Length of the recruitment period (staggered entry)."),
    "min_follow_up_days": (300, "Days between the last possible index date and the extract date."),
    "transfer_out_prob": (0.06, "Probability a person transfers out (earlier data_end_date)."),
    # --- treatment patterns --------------------------------------------------------------
    "antipsychotic_ratio_od": (0.6, "Ratio od vs uc of the probability of any antipsychotic "
                                    "prescription."),
    "unknown_drug_rate": (0.002, "Share of prescriptions whose drug is deliberately not in "
                                 "pipeline/reference/antipsychotics.csv (for the unknown-drug report; "
                                 "not a validation fault)."),
    "poor_fidelity_share": (0.25, "Share of sites with poor fidelity (at least one when sites >= 3)."),
    # --- observational design (design="observational" only): measured confounding -------
    "obs_ps_intercept": (-0.2, "Observational design: log odds of the Open Dialogue arm at age 31, no "
                               "prior admission, a diagnosis other than psychosis, average site."),
    "obs_ps_age": (-0.5, "Observational design: log odds of Open Dialogue per 10 years of age."),
    "obs_ps_prior": (-0.5, "Observational design: log odds of Open Dialogue per prior admission "
                           "(capped at 4)."),
    "obs_ps_psychosis": (0.8, "Observational design: log odds of Open Dialogue for a psychosis "
                              "diagnosis against any other."),
    "obs_ps_site_spread": (1.0, "Observational design: site log odds of Open Dialogue spread evenly "
                                "from -spread/2 (first site) to +spread/2 (last)."),
    "obs_hr_age": (1.2, "Observational design: hazard ratio of admission, crisis and detention per 10 "
                        "years of age (conditional; the same in both arms)."),
    "obs_hr_prior": (1.4, "Observational design: hazard ratio per prior admission (capped at 4)."),
    "obs_hr_psychosis": (0.75, "Observational design: hazard ratio for a psychosis diagnosis."),
    "obs_or_rtw_prior": (0.7, "Observational design: odds ratio of being in work or education at 2 "
                              "years per prior admission (capped at 4)."),
}


@dataclass(frozen=True)
class Effects:
    """The resolved parameter values (defaults overridden by ``**effects``)."""

    values: dict

    def __getattr__(self, name):
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None


def resolve(**overrides) -> Effects:
    """Defaults of :data:`EFFECTS` overridden by ``overrides``; unknown names are an error."""
    unknown = set(overrides) - set(EFFECTS)
    if unknown:
        raise TypeError(f"unknown effect parameter(s): {sorted(unknown)}; known: {sorted(EFFECTS)}")
    vals = {k: float(v[0]) for k, v in EFFECTS.items()}
    for k, v in overrides.items():
        vals[k] = float(v)
    for k in ("hr_admission", "hr_crisis", "rr_involuntary", "hr_death", "weibull_shape", "rtw_shape",
              "obs_hr_age", "obs_hr_prior", "obs_hr_psychosis", "obs_or_rtw_prior"):
        if vals[k] <= 0:
            raise ValueError(f"{k} must be > 0")
    for k in ("rtw_miss_or_arm", "rtw_miss_or_prev_work", "rtw_miss_or_work"):
        if vals[k] <= 0:
            raise ValueError(f"{k} must be > 0")
    if not 0 < vals["rtw_record_prob"] <= 1:
        raise ValueError("rtw_record_prob must be in (0, 1]")
    for k in ("rtw_2y_usual_care", "rtw_2y_open_dialogue", "death_risk_2y", "transfer_out_prob",
              "rtw_leave_prob", "rtw_miss_rate",
              "unknown_drug_rate", "poor_fidelity_share"):
        if not 0 <= vals[k] < 1:
            raise ValueError(f"{k} must be in [0, 1)")
    return Effects(vals)


def effects_help() -> str:
    """One line per parameter: name, default, meaning (for ``--help`` and the docs)."""
    return "\n".join(f"{k} (default {v[0]}): {v[1]}" for k, v in EFFECTS.items())
