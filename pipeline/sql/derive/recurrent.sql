-- name:  derived.recurrent
-- grain: one row per person
-- key:   person_id
--
-- Counts of outcome events during follow-up (events on days 1..fu_end_day, from
-- derived.int_outcome_events) and days spent in hospital or detained (from
-- derived.int_follow_up_intervals, overlaps counted once).
--   relapse_count          admission spells + crisis episodes (each as enabled by
--                          $relapse_components); an admission and a crisis episode
--                          starting the same day count as two
--   admission_spell_count  admission spells starting in follow-up (transfers chained)
--   crisis_episode_count   crisis episodes starting in follow-up
--   involuntary_count      detentions under $involuntary_sections starting in follow-up
--                          (each detention row counts, e.g. a section 2 regraded to a
--                          section 3 is two)
--   place_of_safety_count  detentions under $place_of_safety_sections (135/136)
--   holding_power_count    detentions under $holding_power_sections (5(2)/5(4))
--   bed_days               nights in hospital in [0, fu_end_day), any admission method
--   days_detained          days detained under $involuntary_sections in [0, fu_end_day)
--   person_days            = fu_end_day
--   person_years           = person_days / 365.25
--
-- parameters: $relapse_components

with people as (
    select person_id, site_id, arm, cluster_id, person_days from derived.people
),

counts as (
    select
        person_id,
        sum(case
                when (event_type = 'admission_spell'
                      and array_contains($relapse_components, 'admissions'))
                  or (event_type = 'crisis_episode'
                      and array_contains($relapse_components, 'crisis_episodes'))
                then 1 else 0
            end) as relapse_count,
        sum(case when event_type = 'admission_spell' then 1 else 0 end)
            as admission_spell_count,
        sum(case when event_type = 'crisis_episode' then 1 else 0 end)
            as crisis_episode_count,
        sum(case when event_type = 'involuntary_detention' then 1 else 0 end)
            as involuntary_count,
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
        sum(case when kind = 'detained' then to_day - from_day else 0 end) as days_detained
    from derived.int_follow_up_intervals
    where kind in ('bed', 'detained')
    group by person_id
),

final as (
    select
        p.person_id,
        p.site_id,
        p.arm,
        p.cluster_id,
        cast(coalesce(c.relapse_count, 0) as bigint)          as relapse_count,
        cast(coalesce(c.admission_spell_count, 0) as bigint)  as admission_spell_count,
        cast(coalesce(c.crisis_episode_count, 0) as bigint)   as crisis_episode_count,
        cast(coalesce(c.involuntary_count, 0) as bigint)      as involuntary_count,
        cast(coalesce(c.place_of_safety_count, 0) as bigint)  as place_of_safety_count,
        cast(coalesce(c.holding_power_count, 0) as bigint)    as holding_power_count,
        cast(coalesce(d.bed_days, 0) as bigint)               as bed_days,
        cast(coalesce(d.days_detained, 0) as bigint)          as days_detained,
        p.person_days,
        p.person_days / 365.25                as person_years
    from people as p
    left join counts as c on c.person_id = p.person_id
    left join days as d on d.person_id = p.person_id
)

select * from final
order by person_id
