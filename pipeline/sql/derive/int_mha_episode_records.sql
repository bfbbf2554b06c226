-- name:  derived.int_mha_episode_records
-- grain: one row per detention under the Mental Health Act in an episode (audit)
-- key:   source_id (detention_id)
--
-- Mental Health Act episodes: the detentions of derived.int_care_records whose legal_section
-- is in $involuntary_sections (2, 3, 4, 37: group involuntary), $place_of_safety_sections
-- (135, 136: place_of_safety) or $holding_power_sections (5(2), 5(4): holding_power), each
-- the half-open day interval [start_day, end_day) (an open detention ends at its section's
-- legal limit, derive.open_end), merged per person: ordered by start_day, a detention
-- continues the current episode when
--     start_day <= (the latest end_day of the episode's earlier detentions) + $detention_gap_days
-- and starts a new one otherwise. So a section 2 converted to a section 3, a section 136 or a
-- holding power (5(2), 5(4)) followed by a section 2 or 3, and a renewal, are one episode:
-- the Act converts or renews a detention without a break (a section 3 application made
-- during a section 2 replaces it), and a day's gap (default 1) absorbs records that end on
-- the last day of one section and start the next on the day after. Sections outside the
-- three lists ('other') are not in an episode.
--
-- parameters: $involuntary_sections, $place_of_safety_sections, $holding_power_sections,
--             $detention_gap_days

with records as (
    select
        source_id,
        person_id,
        detail as legal_section,
        case
            when array_contains($involuntary_sections, detail) then 'involuntary'
            when array_contains($place_of_safety_sections, detail) then 'place_of_safety'
            else 'holding_power'
        end as section_group,
        start_day,
        end_day
    from derived.int_care_records
    where kind = 'detention'
      and (array_contains($involuntary_sections, detail)
           or array_contains($place_of_safety_sections, detail)
           or array_contains($holding_power_sections, detail))
),

with_reach as (
    select
        *,
        max(end_day) over (
            partition by person_id
            order by start_day, end_day, source_id
            rows between unbounded preceding and 1 preceding
        ) as previous_reach
    from records
),

numbered as (
    select
        *,
        sum(case
                when previous_reach is null or start_day > previous_reach + $detention_gap_days
                then 1 else 0
            end) over (
            partition by person_id
            order by start_day, end_day, source_id
            rows between unbounded preceding and current row
        ) as episode_seq
    from with_reach
),

final as (
    select
        person_id,
        cast(episode_seq as bigint) as episode_seq,  -- 1, 2, ... per person, by start
        source_id,                                   -- detention_id
        legal_section,
        section_group,                               -- involuntary | place_of_safety | holding_power
        start_day,                                   -- days since index_date
        end_day                                      -- exclusive (open: by derive.open_end)
    from numbered
)

select * from final  -- intermediate: row order is not part of the contract
