-- name:  derived.recurrent
-- grain: one row per person
-- key:   person_id
--
-- Counts of outcome events during follow-up (events on days 1..fu_end_day, from
-- derived.int_outcome_events), days spent in hospital, detained or in acute care (from
-- derived.int_follow_up_intervals, overlaps counted once) and the person-time of the rates.
--   relapse_count          acute-care episodes that are relapses (derived.acute_episodes):
--                          an admission the day after a crisis episode, back-to-back crisis
--                          episodes, a readmission within derive.episode_gap_days are one
--   admission_spell_count  admission spells starting in follow-up (transfers chained)
--   crisis_episode_count   crisis episodes starting in follow-up (each record)
--   involuntary_count      involuntary admissions: Mental Health Act episodes with a
--                          detention under the involuntary sections starting in follow-up
--                          (derived.mha_episodes; a section 2 converted to a section 3, or a
--                          136 or 5(2) leading into a section 2, is one)
--   detained_in_hospital_count  of the involuntary episodes starting in follow-up, those that
--                          began while the person was already in hospital (counted in
--                          involuntary_count when derive.involuntary_in_hospital is true)
--   place_of_safety_count  episodes of sections 135/136 alone (not leading into a detention)
--   holding_power_count    episodes of holding powers 5(2)/5(4) alone
--   bed_days               nights in hospital in [0, fu_end_day), any admission method
--   days_detained          nights inside involuntary Mental Health Act episodes in
--                          [0, fu_end_day)
--   acute_days             nights inside acute-care episodes in [0, fu_end_day)
--   person_days            = fu_end_day;  person_years = person_days / 365.25
--   relapse_at_risk_days   follow-up days after the grace period, [g, fu_end_day) with
--                          g = $relapse_grace_days, outside an acute-care episode (when a
--                          new relapse can begin)
--   involuntary_at_risk_days  follow-up days not detained (and, when
--                          $involuntary_in_hospital is false, not in hospital either)
--   relapse_person_years, involuntary_person_years   the denominators of the rates, by
--                          $rate_person_time: 'follow_up' (default) max(fu_end_day - g, 0)
--                          and person_days; 'at_risk' the at-risk days above; / 365.25.
--                          Follow-up by default, as trials of recurrent admissions report
--                          rates (e.g. Rogers et al., Eur J Heart Fail 2014;16:33-40): an
--                          at-risk denominator is shortened by the outcome itself (longer
--                          admissions, less time at risk), mixing frequency with duration
--
-- parameters: $relapse_grace_days, $involuntary_in_hospital, $rate_person_time

with people as (
    select person_id, site_id, arm, cluster_id, person_days, fu_end_day from derived.people
),

counts as (
    select
        person_id,
        sum(case when event_type = 'relapse_episode' then 1 else 0 end)      as relapse_count,
        sum(case when event_type = 'admission_spell' then 1 else 0 end)
            as admission_spell_count,
        sum(case when event_type = 'crisis_episode' then 1 else 0 end)
            as crisis_episode_count,
        sum(case when event_type = 'involuntary_admission' then 1 else 0 end)
            as involuntary_count,
        sum(case when event_type = 'detained_in_hospital' then 1 else 0 end)
            as detained_in_hospital_count,
        sum(case when event_type = 'place_of_safety' then 1 else 0 end)
            as place_of_safety_count,
        sum(case when event_type = 'holding_power' then 1 else 0 end)
            as holding_power_count
    from derived.int_outcome_events
    group by person_id
),

days as (
    select
        person_id,
        sum(case when kind = 'bed' then to_day - from_day else 0 end)      as bed_days,
        sum(case when kind = 'detained' then to_day - from_day else 0 end) as days_detained,
        sum(case when kind = 'bed_or_detained' then to_day - from_day else 0 end)
            as days_inpatient_or_detained,
        sum(case when kind = 'acute' then to_day - from_day else 0 end)    as acute_days,
        sum(case
                when kind = 'acute'
                then greatest(to_day - greatest(from_day, $relapse_grace_days), 0)
                else 0
            end) as acute_days_after_grace
    from derived.int_follow_up_intervals
    where kind in ('bed', 'detained', 'bed_or_detained', 'acute')
    group by person_id
),

at_risk as (
    select
        p.*,
        c.relapse_count, c.admission_spell_count, c.crisis_episode_count, c.involuntary_count,
        c.detained_in_hospital_count, c.place_of_safety_count, c.holding_power_count,
        coalesce(d.bed_days, 0)       as bed_days,
        coalesce(d.days_detained, 0)  as days_detained,
        coalesce(d.acute_days, 0)     as acute_days,
        greatest(p.fu_end_day - $relapse_grace_days, 0)
            - coalesce(d.acute_days_after_grace, 0)          as relapse_at_risk_days,
        p.person_days - case
            when $involuntary_in_hospital then coalesce(d.days_detained, 0)
            else coalesce(d.days_inpatient_or_detained, 0)
        end                                                   as involuntary_at_risk_days
    from people as p
    left join counts as c on c.person_id = p.person_id
    left join days as d on d.person_id = p.person_id
),

final as (
    select
        person_id,
        site_id,
        arm,
        cluster_id,
        cast(coalesce(relapse_count, 0) as bigint)               as relapse_count,
        cast(coalesce(admission_spell_count, 0) as bigint)       as admission_spell_count,
        cast(coalesce(crisis_episode_count, 0) as bigint)        as crisis_episode_count,
        cast(coalesce(involuntary_count, 0) as bigint)           as involuntary_count,
        cast(coalesce(detained_in_hospital_count, 0) as bigint)  as detained_in_hospital_count,
        cast(coalesce(place_of_safety_count, 0) as bigint)       as place_of_safety_count,
        cast(coalesce(holding_power_count, 0) as bigint)         as holding_power_count,
        cast(bed_days as bigint)                                 as bed_days,
        cast(days_detained as bigint)                            as days_detained,
        cast(acute_days as bigint)                               as acute_days,
        person_days,
        person_days / 365.25                                     as person_years,
        cast(relapse_at_risk_days as bigint)                     as relapse_at_risk_days,
        cast(involuntary_at_risk_days as bigint)                 as involuntary_at_risk_days,
        case when $rate_person_time = 'at_risk' then relapse_at_risk_days
             else greatest(fu_end_day - $relapse_grace_days, 0)
        end / 365.25                                             as relapse_person_years,
        case when $rate_person_time = 'at_risk' then involuntary_at_risk_days
             else person_days
        end / 365.25                                             as involuntary_person_years
    from at_risk
)

select * from final
order by person_id
