-- name:  derived.int_follow_up_intervals
-- grain: one row per person, kind and maximal covered interval (overlaps merged)
-- key:   (person_id, kind, from_day)
--
-- Day intervals are half-open [from_day, to_day) in days since index_date, clipped to
-- follow-up [0, fu_end_day); overlapping or touching intervals of the same kind are
-- merged (gaps and islands), so a day is counted once however many rows cover it.
--   kind           rows                                         covers
--   bed            derived.int_care_records, kind admission     nights admitted_on .. end - 1
--   detained       derived.mha_episodes with involuntary        nights start .. end - 1 of
--                  (a detention under derive.involuntary_sections)  the merged episode
--   bed_or_detained  the rows of bed and detained together      either
--   acute          derived.acute_episodes                       nights start .. end - 1 of
--                                                               the merged episode
--   antipsychotic  derived.int_antipsychotic_exposures          days start_on .. end_on
-- An open row (no end date) ends as derive.open_end says (derived.int_care_records). Bed
-- days and days detained count midnights (discharge - admission, as NHS occupied bed days),
-- so an admission and a transfer on its discharge day are not counted twice.
--
-- parameters: none

with people as (
    select person_id, index_date, fu_end_day from derived.people
),

raw_intervals as (
    select k.kind, r.person_id, r.start_day as from_day, r.end_day as to_day, p.fu_end_day
    from derived.int_care_records as r
    inner join people as p on p.person_id = r.person_id
    cross join (values ('bed'), ('bed_or_detained')) as k (kind)
    where r.kind = 'admission'
    union all
    select k.kind, m.person_id, m.start_day, m.end_day, p.fu_end_day
    from derived.mha_episodes as m
    inner join people as p on p.person_id = m.person_id
    cross join (values ('detained'), ('bed_or_detained')) as k (kind)
    where m.involuntary
    union all
    select 'acute', e.person_id, e.start_day, e.end_day, p.fu_end_day
    from derived.acute_episodes as e
    inner join people as p on p.person_id = e.person_id
    union all
    select 'antipsychotic', e.person_id, e.from_day, e.to_day, p.fu_end_day
    from derived.int_antipsychotic_exposures as e
    inner join people as p on p.person_id = e.person_id
),

clipped as (
    select
        kind,
        person_id,
        greatest(from_day, 0)          as from_day,
        least(to_day, fu_end_day)      as to_day
    from raw_intervals
    where greatest(from_day, 0) < least(to_day, fu_end_day)
),

ordered as (
    -- one fixed order per person and kind, so that both windows below see tied (even
    -- identical) intervals in the same order
    select
        *,
        row_number() over (partition by person_id, kind order by from_day, to_day) as seq
    from clipped
),

with_reach as (
    -- furthest day reached by any earlier interval of the same person and kind
    select
        *,
        max(to_day) over (
            partition by person_id, kind
            order by seq
            rows between unbounded preceding and 1 preceding
        ) as previous_reach
    from ordered
),

islands as (
    select
        *,
        sum(case when previous_reach is null or from_day > previous_reach then 1 else 0 end)
            over (
                partition by person_id, kind
                order by seq
                rows between unbounded preceding and current row
            ) as island_seq
    from with_reach
),

final as (
    select
        person_id,
        kind,                             -- see the table above
        min(from_day) as from_day,        -- first covered day
        max(to_day)   as to_day           -- day after the last covered day
    from islands
    group by person_id, kind, island_seq
)

select * from final  -- intermediate: row order is not part of the contract
