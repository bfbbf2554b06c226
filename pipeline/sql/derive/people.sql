-- name:  derived.people
-- grain: one row per person
-- key:   person_id
--
-- The analysis population with its covariates and follow-up. Day numbers everywhere in
-- the derive stage are whole days since index_date: day(d) = d - index_date.
--
-- Follow-up ends on day fu_end_day = min(day(death_date), day(data_end_date),
-- $follow_up_days). end_reason breaks ties death > data_end > end_of_follow_up;
-- data_end only when it ends follow-up before $follow_up_days. person_days = fu_end_day:
-- follow-up is the half-open interval [day 0, day fu_end_day), and an outcome event
-- counts iff it falls on a day 1 <= day <= fu_end_day.
--
-- parameters: $follow_up_days

with source as (
    select * from clean.people
),

days as (
    select
        person_id,
        site_id,
        arm,
        cluster_id,
        sex,
        birth_year,
        ethnicity,
        diagnosis_group,
        prior_admissions_2y,
        baseline_activity,
        index_date,
        data_end_date,
        data_end_reason,
        death_date,
        date_diff('day', index_date, death_date)    as death_day,
        date_diff('day', index_date, data_end_date) as data_end_day
    from source
),

follow_up as (
    select
        *,
        least(coalesce(death_day, $follow_up_days), data_end_day, $follow_up_days)
            as fu_end_day
    from days
),

final as (
    select
        person_id,                                        -- pseudonym
        site_id,                                          -- pilot site
        arm,                                              -- open_dialogue | usual_care
        cluster_id,                                       -- unit of randomisation (nullable)
        sex,                                              -- female | male | other | unknown
        extract(year from index_date) - birth_year
            as age_at_index,                              -- whole years, year(index) - birth_year
        ethnicity,                                        -- free code (nullable)
        diagnosis_group,                                  -- psychosis | bipolar | ...
        prior_admissions_2y,                              -- admissions in the 2 years before index
        baseline_activity,                                -- employment status at index (nullable)
        index_date,                                       -- day 0
        data_end_date,                                    -- records complete up to this date
        data_end_reason,                                  -- why they end (nullable; contract vocabulary)
        death_date,                                       -- nullable
        cast(index_date + fu_end_day * interval '1' day as date)
            as fu_end_date,                               -- date follow-up ends
        fu_end_day,                                       -- day follow-up ends
        case
            when death_day is not null and death_day = fu_end_day then 'death'
            when data_end_day = fu_end_day and data_end_day < $follow_up_days then 'data_end'
            else 'end_of_follow_up'
        end as end_reason,                                -- death | data_end | end_of_follow_up
        fu_end_day as person_days                         -- days at risk, = fu_end_day
    from follow_up
)

select * from final
order by person_id
