-- name:  person_outcomes (temporary table of the metrics stage)
-- grain: one row per person in derived.people
-- key:   person_id
--
-- Everything the metrics and analyses need about one person, joined from the derived
-- tables (each one row per person, or per person and outcome for time_to_event):
--   ethnicity_group        lower(trim(ethnicity)), 'unknown' when missing
--   relapse_time/_event    derived.time_to_event, outcome 'relapse': days from index, and
--                          0 censored, 1 relapse, 2 competing death
--   involuntary_time/_event  the same for the first involuntary admission
--   relapse_count, involuntary_count, days_detained, bed_days   derived.recurrent
--                          (relapses: acute-care episodes; involuntary admissions: Mental
--                          Health Act episodes)
--   relapse_person_years, involuntary_person_years   derived.recurrent: the rates'
--                          person-time (derive.rate_person_time: follow-up or at risk)
--   any_involuntary        involuntary_count > 0, and ap_any_use, ap_use_last_days
--                          (derived.antipsychotic), the binary outcomes, by $binary_window
--                          (derive.binary_window): 'whole_window' over the fixed window of
--                          derive.follow_up_days, null (not known) for people not followed
--                          for all of it; 'follow_up' over each person's own follow-up
--   ap_*                   derived.antipsychotic (share of follow-up days covered, mean
--                          daily dose in DDD and CPZ mg)
--   rtw_2y                 derived.activity: in work or education at 2 years (null: no
--                          status recorded in the window)
--   last_status_pre, window_reached, died_before_window   derived.activity: the last
--                          status before the rtw window, records running into it, death
--                          before it (the return-to-work analyses, pipeline.analyses.return_to_work)
--   data_end_reason        derived.people: why the records end (transfer_out, withdrawal, ...;
--                          null when the extract does not say): intercurrent events
--   admission_time/_event  derived.time_to_event, outcome 'first_admission' (admissions-only
--                          relapse, a sensitivity analysis; 0 censored, 1 admission, 2 death)
--   rtw_time, rtw_event    derived.time_to_event, outcome 'return_to_work': days to the
--                          first status in work or education; 0 censored, 1 return, 2 death
--   relapse_landmark_known the person's relapse status by day $landmark_days is known:
--                          relapse (1) or death (2) by then, or follow-up reaches it
--   relapse_by_landmark    relapse (event 1) on or before day $landmark_days
--
-- parameters: $landmark_days, $binary_window

with people as (
    select
        person_id, site_id, arm, cluster_id, sex, age_at_index,
        coalesce(nullif(lower(trim(ethnicity)), ''), 'unknown') as ethnicity_group,
        diagnosis_group, prior_admissions_2y, baseline_activity, fu_end_day, end_reason,
        data_end_reason, person_days
    from derived.people
),

tte as (                  -- the time-to-event outcomes metrics read, one row per person
    select
        person_id,
        any_value(time_days) filter (where outcome = 'relapse')               as relapse_time,
        any_value(event) filter (where outcome = 'relapse')                   as relapse_event,
        any_value(time_days) filter (where outcome = 'involuntary_admission') as involuntary_time,
        any_value(event) filter (where outcome = 'involuntary_admission')     as involuntary_event,
        any_value(time_days) filter (where outcome = 'first_admission')       as admission_time,
        any_value(event) filter (where outcome = 'first_admission')           as admission_event,
        any_value(time_days) filter (where outcome = 'return_to_work')        as rtw_time,
        any_value(event) filter (where outcome = 'return_to_work')            as rtw_event
    from derived.time_to_event
    where outcome in ('relapse', 'involuntary_admission', 'first_admission', 'return_to_work')
    group by person_id
    -- every person has a row of each (the relation's key is person and outcome); one
    -- without would have been left out by the joins this grouping replaced (a join per
    -- outcome, each over the 6 M rows: national 2.85 -> 1.95-2.0 s, every row equal)
    having count(*) filter (where outcome = 'relapse') > 0
       and count(*) filter (where outcome = 'involuntary_admission') > 0
       and count(*) filter (where outcome = 'first_admission') > 0
       and count(*) filter (where outcome = 'return_to_work') > 0
),

final as (
    select
        p.person_id,
        p.site_id,
        p.arm,
        p.cluster_id,
        p.ethnicity_group,
        p.sex,
        p.age_at_index,
        p.diagnosis_group,
        p.prior_admissions_2y,
        p.baseline_activity,
        p.end_reason,
        p.data_end_reason,
        p.fu_end_day,
        p.person_days,
        r.person_years,
        r.relapse_person_years,
        r.involuntary_person_years,
        t.relapse_time,
        t.relapse_event,
        t.involuntary_time,
        t.involuntary_event,
        t.admission_time,
        t.admission_event,
        r.relapse_count,
        r.involuntary_count,
        case when $binary_window = 'follow_up' or a.window_observed
             then r.involuntary_count > 0 end          as any_involuntary,
        r.days_detained,
        r.bed_days,
        case when $binary_window = 'follow_up' then a.any_use
             else a.any_use_window end                  as ap_any_use,
        case when $binary_window = 'follow_up' then a.use_last_days
             else a.use_last_window end                 as ap_use_last_days,
        a.proportion_covered                            as ap_proportion_covered,
        a.mean_daily_ddd                                as ap_mean_daily_ddd,
        a.mean_daily_cpz_mg                             as ap_mean_daily_cpz_mg,
        act.rtw_2y,
        act.last_status_pre,
        act.window_reached,
        act.died_before_window,
        t.rtw_time,
        t.rtw_event,
        (t.relapse_event > 0 and t.relapse_time <= $landmark_days)
            or p.fu_end_day >= $landmark_days           as relapse_landmark_known,
        t.relapse_event = 1 and t.relapse_time <= $landmark_days
                                                        as relapse_by_landmark
    from people as p
    inner join derived.recurrent as r on r.person_id = p.person_id
    inner join derived.antipsychotic as a on a.person_id = p.person_id
    inner join derived.activity as act on act.person_id = p.person_id
    inner join tte as t on t.person_id = p.person_id
)

select * from final
order by person_id
