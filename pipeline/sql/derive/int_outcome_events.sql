-- name:  derived.int_outcome_events
-- grain: one row per counted outcome event (a source row can give one event per event_type)
-- key:   (event_type, source_id)
--
-- Every dated event that counts as an outcome: it falls on a day 1 <= day <= fu_end_day
-- of its person's follow-up (derived.people). Events on the index date (day 0), before
-- it, or after follow-up ends are not outcomes and are not in this table.
--
--   event_type              source                             source_id
--   admission_spell         derived.int_admission_spells start spell_id
--   crisis_episode          clean.crisis_episodes start_on     episode_id
--   involuntary_detention   detentions, section in $involuntary_sections      detention_id
--   place_of_safety         detentions, section in $place_of_safety_sections  detention_id
--   holding_power           detentions, section in $holding_power_sections    detention_id
--   rtw_status              employment, status in $rtw_statuses   person_id || recorded_on
--
-- parameters: $involuntary_sections, $place_of_safety_sections, $holding_power_sections,
--             $rtw_statuses

with people as (
    select person_id, index_date, fu_end_day from derived.people
),

spells as (
    select 'admission_spell' as event_type, spell_id as source_id, person_id,
           spell_start_on as event_on
    from derived.int_admission_spells
),

crises as (
    select 'crisis_episode' as event_type, episode_id as source_id, person_id,
           start_on as event_on
    from clean.crisis_episodes
),

detentions as (
    select 'involuntary_detention' as event_type, detention_id as source_id, person_id,
           start_on as event_on
    from clean.detentions
    where array_contains($involuntary_sections, legal_section)
    union all
    select 'place_of_safety', detention_id, person_id, start_on
    from clean.detentions
    where array_contains($place_of_safety_sections, legal_section)
    union all
    select 'holding_power', detention_id, person_id, start_on
    from clean.detentions
    where array_contains($holding_power_sections, legal_section)
),

work as (
    select 'rtw_status' as event_type,
           person_id || '|' || cast(recorded_on as varchar) as source_id,
           person_id,
           recorded_on as event_on
    from clean.employment
    where array_contains($rtw_statuses, status)
),

events as (
    select * from spells
    union all select * from crises
    union all select * from detentions
    union all select * from work
),

final as (
    select
        e.event_type,                                            -- see table above
        e.source_id,                                             -- id of the source row
        e.person_id,
        e.event_on,                                              -- date of the event
        date_diff('day', p.index_date, e.event_on) as event_day  -- 1 .. fu_end_day
    from events as e
    inner join people as p on p.person_id = e.person_id
    where date_diff('day', p.index_date, e.event_on) between 1 and p.fu_end_day
)

select * from final  -- intermediate: row order is not part of the contract
