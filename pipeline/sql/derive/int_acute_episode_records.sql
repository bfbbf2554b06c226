-- name:  derived.int_acute_episode_records
-- grain: one row per record of acute care that a relapse is made of (audit of the episodes)
-- key:   (kind, source_id)
--
-- Acute-care episodes (a relapse is the start of one): the records of derived.int_care_records
-- that $relapse_components enables,
--   'admissions'       every admission, any method            kind admission
--   'crisis_episodes'  every crisis resolution / home treatment episode   kind crisis_episode
--   'detentions'       detentions under $involuntary_sections (an admission under the
--                      Mental Health Act, recorded or not in admissions)  kind detention
-- each the half-open day interval [start_day, end_day) (an open record ends as
-- derive.open_end says), are merged per person into episodes: ordered by start_day, a record
-- continues the current episode when
--     start_day <= (the latest end_day of the episode's earlier records) + $episode_gap_days
-- and starts a new one otherwise. So records that overlap, touch, or start within
-- $episode_gap_days days (default 2) of the episode's end are one episode: a crisis episode
-- followed by an admission the next day, back-to-back crisis episodes, an admission and a
-- transfer or readmission two days after discharge. The default 2 days is the gap of the
-- continuous inpatient spell (NHS Digital, Provider Spells Methodology: a discharge and an
-- admission 0, 1 or 2 days later are one spell). Ties and the order among records of the
-- same start day do not change the episodes (a record never starts before its end).
--
-- parameters: $relapse_components, $involuntary_sections, $episode_gap_days

with records as (
    select kind, source_id, person_id, detail, start_day, end_day
    from derived.int_care_records
    where (kind = 'admission' and array_contains($relapse_components, 'admissions'))
       or (kind = 'crisis_episode' and array_contains($relapse_components, 'crisis_episodes'))
       or (kind = 'detention' and array_contains($relapse_components, 'detentions')
           and array_contains($involuntary_sections, detail))
),

with_reach as (
    select
        *,
        max(end_day) over (
            partition by person_id
            order by start_day, end_day, kind, source_id
            rows between unbounded preceding and 1 preceding
        ) as previous_reach
    from records
),

numbered as (
    select
        *,
        sum(case
                when previous_reach is null or start_day > previous_reach + $episode_gap_days
                then 1 else 0
            end) over (
            partition by person_id
            order by start_day, end_day, kind, source_id
            rows between unbounded preceding and current row
        ) as episode_seq
    from with_reach
),

final as (
    select
        person_id,
        cast(episode_seq as bigint) as episode_seq,     -- 1, 2, ... per person, by start
        kind,                                           -- admission | crisis_episode | detention
        source_id,                                      -- admission_id, episode_id, detention_id
        detail,                                         -- admission_method or legal_section
        start_day,                                      -- days since index_date
        end_day                                         -- exclusive (open: by derive.open_end)
    from numbered
)

select * from final  -- intermediate: row order is not part of the contract
