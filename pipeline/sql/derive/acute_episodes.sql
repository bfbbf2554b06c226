-- name:  derived.acute_episodes
-- grain: one row per acute-care episode (derived.int_acute_episode_records merged)
-- key:   (person_id, episode_seq)
--
-- An episode runs from its first record's start_day to the latest end_day of its records
-- (days since index_date; end exclusive). It is a relapse when it starts during follow-up
-- after the grace period:
--     greatest(1, $relapse_grace_days + 1) <= start_day <= fu_end_day
-- An episode that starts on or before the index date, or within the grace period (days
-- 1..$relapse_grace_days; default 0: none), is the index episode: neither it nor any record
-- merged into it is a relapse, however long it lasts. The relapse outcomes of
-- derived.time_to_event and derived.recurrent count these episodes, one relapse each
-- (time to first relapse: the start of the first such episode).
--
-- parameters: $relapse_grace_days

with people as (
    select person_id, index_date, fu_end_day from derived.people
),

episodes as (
    select
        person_id,
        episode_seq,
        min(start_day)                                              as start_day,
        max(end_day)                                                as end_day,
        count(*)                                                    as n_records,
        sum(case when kind = 'admission' then 1 else 0 end)         as n_admissions,
        sum(case when kind = 'crisis_episode' then 1 else 0 end)    as n_crisis_episodes,
        sum(case when kind = 'detention' then 1 else 0 end)         as n_detentions
    from derived.int_acute_episode_records
    group by person_id, episode_seq
),

final as (
    select
        e.person_id,
        e.episode_seq,                                   -- 1, 2, ... per person, by start
        e.start_day,                                     -- first record's start, days since index
        e.end_day,                                       -- latest end of its records (exclusive)
        cast(p.index_date + e.start_day * interval '1' day as date) as start_on,
        cast(p.index_date + e.end_day * interval '1' day as date)   as end_on,
        cast(e.n_records as bigint)          as n_records,          -- records merged
        cast(e.n_admissions as bigint)       as n_admissions,       -- of which admissions
        cast(e.n_crisis_episodes as bigint)  as n_crisis_episodes,  -- crisis episodes
        cast(e.n_detentions as bigint)       as n_detentions,       -- detentions (2/3/4/37)
        e.start_day >= greatest(1, $relapse_grace_days + 1)
            and e.start_day <= p.fu_end_day  as relapse          -- counts as a relapse
    from episodes as e
    inner join people as p on p.person_id = e.person_id
)

select * from final
order by person_id, episode_seq
