-- name:  derived.int_outcome_events
-- grain: one row per counted outcome event (a source row can give one event per event_type)
-- key:   (event_type, source_id)
--
-- Every dated event that counts as an outcome: it falls on a day 1 <= day <= fu_end_day
-- of its person's follow-up (derived.people). Events on the index date (day 0), before
-- it, or after follow-up ends are not outcomes and are not in this table.
--
--   event_type             source                                      source_id
--   relapse_episode        derived.acute_episodes with relapse, start    person_id/episode_seq
--   admission_spell        derived.int_admission_spells start            spell_id
--   crisis_episode         clean.crisis_episodes start_on                episode_id
--   involuntary_admission  derived.mha_episodes with involuntary_admission,
--                          involuntary_start_day                         person_id/episode_seq
--   detained_in_hospital   derived.mha_episodes involuntary and in_hospital,
--                          involuntary_start_day (counted or not)        person_id/episode_seq
--   place_of_safety        derived.mha_episodes with place_of_safety (135/136 alone)
--   holding_power          derived.mha_episodes with holding_power (5(2)/5(4) alone)
--   rtw_status             employment, status in $rtw_statuses      person_id || recorded_on
--
-- parameters: $rtw_statuses

with people as (
    select person_id, index_date, fu_end_day from derived.people
),

episodes as (
    select 'relapse_episode' as event_type,
           person_id || '/' || cast(episode_seq as varchar) as source_id, person_id,
           start_on as event_on
    from derived.acute_episodes
    where relapse
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

mha as (
    select m.*, p.index_date from derived.mha_episodes as m
    inner join people as p on p.person_id = m.person_id
),

detentions as (
    select 'involuntary_admission' as event_type,
           person_id || '/' || cast(episode_seq as varchar) as source_id, person_id,
           cast(index_date + involuntary_start_day * interval '1' day as date) as event_on
    from mha
    where involuntary_admission
    union all
    select 'detained_in_hospital', person_id || '/' || cast(episode_seq as varchar), person_id,
           cast(index_date + involuntary_start_day * interval '1' day as date)
    from mha
    where involuntary and in_hospital
    union all
    select 'place_of_safety', person_id || '/' || cast(episode_seq as varchar), person_id,
           cast(index_date + place_of_safety_start_day * interval '1' day as date)
    from mha
    where place_of_safety
    union all
    select 'holding_power', person_id || '/' || cast(episode_seq as varchar), person_id,
           cast(index_date + holding_power_start_day * interval '1' day as date)
    from mha
    where holding_power
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
    select * from episodes
    union all select * from spells
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
