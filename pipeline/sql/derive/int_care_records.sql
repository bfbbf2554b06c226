-- name:  derived.int_care_records
-- grain: one row per admission, crisis episode and Mental Health Act detention
-- key:   (kind, source_id)
--
-- Every dated period of acute care with the end the outcome definitions use. A period is
-- the half-open day interval [start_day, end_day) since index_date: the nights it covers,
-- as NHS occupied bed days count them (an admission on day 10 discharged on day 12 covers
-- nights 10 and 11).
--
-- A record with no end date (open) ends by the rule derived.ref_open_end gives its table
-- (params.yaml derive.open_end, with the plausible maxima declared in schemas/ as
-- open_max_days; for detentions the row of its legal_section, else the table's row):
--   data_end   on the person's last day of data, least(data_end_date, death_date): the
--              contract reads a missing discharge as "still in hospital"
--   cap        max_days after its start, or on the last day of data if that is sooner
-- A record starting after the last day of data (validation lets a few days through) ends on
-- its start day when open. Recorded ends are kept as they are.
--
-- parameters: none (the open-end rules are rows of derived.ref_open_end)

with people as (
    select
        person_id,
        index_date,
        least(data_end_date, coalesce(death_date, data_end_date)) as last_data_on
    from clean.people
),

records as (
    select 'admission' as kind, 'admissions' as table_name, admission_id as source_id,
           person_id, admission_method as detail, admitted_on as start_on,
           discharged_on as end_on
    from clean.admissions
    union all
    select 'crisis_episode', 'crisis_episodes', episode_id, person_id,
           cast(null as varchar), start_on, end_on
    from clean.crisis_episodes
    union all
    select 'detention', 'detentions', detention_id, person_id, legal_section, start_on, end_on
    from clean.detentions
),

ruled as (
    select
        r.*,
        p.index_date,
        greatest(r.start_on, p.last_data_on)      as data_end_on,
        coalesce(d.end_rule, t.end_rule)           as end_rule,
        coalesce(d.max_days, t.max_days)           as max_days
    from records as r
    inner join people as p on p.person_id = r.person_id
    left join derived.ref_open_end as d
        on d.table_name = r.table_name and d.detail = r.detail
    left join derived.ref_open_end as t
        on t.table_name = r.table_name and t.detail is null
),

ended as (
    select
        *,
        case
            when end_on is not null then end_on
            when end_rule = 'cap'
                then least(cast(start_on + max_days * interval '1' day as date), data_end_on)
            else data_end_on
        end as end_on_used
    from ruled
),

final as (
    select
        kind,                                          -- admission | crisis_episode | detention
        source_id,                                     -- admission_id, episode_id, detention_id
        person_id,
        detail,                                        -- admission_method or legal_section
        start_on,
        end_on,                                        -- as recorded (null: open)
        end_on_used,                                   -- end used by the definitions
        end_on is null                  as open_end,   -- no end date recorded
        case when end_on is null then end_rule end
                                        as open_end_rule,  -- data_end | cap (open records)
        date_diff('day', index_date, start_on)    as start_day,
        date_diff('day', index_date, end_on_used) as end_day   -- exclusive
    from ended
)

select * from final  -- intermediate: row order is not part of the contract
