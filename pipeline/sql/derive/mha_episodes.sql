-- name:  derived.mha_episodes
-- grain: one row per Mental Health Act episode (derived.int_mha_episode_records merged)
-- key:   (person_id, episode_seq)
--
-- An episode runs from its first detention's start_day to the latest end_day of its
-- detentions (days since index_date; end exclusive).
--   involuntary              it holds a detention under $involuntary_sections
--   involuntary_start_day    start of its first such detention: the involuntary admission
--                            (a section 136 or 5(2) leading into a section 2 is part of the
--                            episode, and the admission is the section 2's start)
--   in_hospital              the episode began while the person was already in hospital: an
--                            admission (derived.int_care_records) started on an earlier day
--                            and had not ended before the episode's start day
--                            (admission start_day < start_day <= admission end_day)
--   involuntary_admission    involuntary, 1 <= involuntary_start_day <= fu_end_day, and
--                            $involuntary_in_hospital or not in_hospital (default true: the
--                            detention of an informal inpatient counts, as the Mental Health
--                            Act statistics count detentions subsequent to admission beside
--                            detentions on admission). An involuntary detention that began on
--                            or before the index date and continues (converted, renewed) is
--                            not an involuntary admission in follow-up.
--   place_of_safety          not involuntary (a section 135/136 alone) and its first 135/136
--                            starts on a day 1..fu_end_day
--   holding_power            not involuntary (a 5(2)/5(4) alone) and its first holding power
--                            starts on a day 1..fu_end_day
-- Days detained (derived.recurrent) are the follow-up days inside involuntary episodes,
-- [start_day, end_day): a holding power or place of safety leading into the detention and
-- a gap of up to derive.detention_gap_days inside the episode count as detained.
--
-- parameters: $involuntary_in_hospital

with people as (
    select person_id, index_date, fu_end_day from derived.people
),

episodes as (
    select
        person_id,
        episode_seq,
        min(start_day)                                                   as start_day,
        max(end_day)                                                     as end_day,
        count(*)                                                         as n_detentions,
        min(case when section_group = 'involuntary' then start_day end)  as involuntary_start_day,
        min(case when section_group = 'place_of_safety' then start_day end)
                                                                         as place_of_safety_start_day,
        min(case when section_group = 'holding_power' then start_day end)
                                                                         as holding_power_start_day
    from derived.int_mha_episode_records
    group by person_id, episode_seq
),

admissions as (
    select person_id, start_day, end_day
    from derived.int_care_records
    where kind = 'admission'
),

in_hospital as (
    select distinct e.person_id, e.episode_seq
    from episodes as e
    inner join admissions as a
        on a.person_id = e.person_id
       and a.start_day < e.start_day
       and a.end_day >= e.start_day
),

final as (
    select
        e.person_id,
        e.episode_seq,                                        -- 1, 2, ... per person, by start
        e.start_day,                                          -- first detention's start
        e.end_day,                                            -- latest end (exclusive)
        cast(p.index_date + e.start_day * interval '1' day as date) as start_on,
        cast(p.index_date + e.end_day * interval '1' day as date)   as end_on,
        cast(e.n_detentions as bigint)        as n_detentions,     -- detentions merged
        e.involuntary_start_day is not null   as involuntary,
        e.involuntary_start_day,
        e.place_of_safety_start_day,
        e.holding_power_start_day,
        h.person_id is not null               as in_hospital,
        coalesce(e.involuntary_start_day between 1 and p.fu_end_day
                 and ($involuntary_in_hospital or h.person_id is null), false)
                                              as involuntary_admission,
        coalesce(e.involuntary_start_day is null
                 and e.place_of_safety_start_day between 1 and p.fu_end_day, false)
                                              as place_of_safety,
        coalesce(e.involuntary_start_day is null
                 and e.holding_power_start_day between 1 and p.fu_end_day, false)
                                              as holding_power
    from episodes as e
    inner join people as p on p.person_id = e.person_id
    left join in_hospital as h
        on h.person_id = e.person_id and h.episode_seq = e.episode_seq
)

select * from final
order by person_id, episode_seq
