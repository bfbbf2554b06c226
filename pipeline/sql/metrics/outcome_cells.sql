-- name:  outcome_cells (temporary table of the metrics stage)
-- grain: one row per dimension ('site' or 'ethnicity'), level of it and arm, with margins:
--        level 'all' (every site / ethnicity group) and arm 'all' (both arms)
-- key:   (dimension, level, arm)
--
-- Sums from which every count-based outcome metric and its confidence interval follow
-- (pipeline/metrics.py turns them into estimates): counts of people and events, person-
-- years, and the sums of squares and cross-products a robust (sandwich) variance of a
-- rate or a t interval of a mean needs. Reads the temporary table person_outcomes.
--   n_people                  people
--   person_years              follow-up in years (days / 365.25)
--   relapse_events            relapses (acute-care episodes) in follow-up
--   relapse_py                the relapse rate's person-years (relapse_person_years)
--   relapse_y2, relapse_yt, relapse_pt2   sums of relapse_count^2, relapse_count *
--                             relapse_person_years and relapse_person_years^2
--   involuntary_events, involuntary_py, involuntary_y2, involuntary_yt, involuntary_pt2
--                             the same for involuntary admissions (Mental Health Act episodes)
--   pt2                       sum of person_years^2
--   any_involuntary_n, any_involuntary_known_n   people with at least one involuntary
--                             admission / whose status is known (derive.binary_window)
--   days_detained_sum, days_detained_sum2   days detained: sum and sum of squares
--   detained_n                people with at least one day detained in follow-up
--   ap_any_n, ap_last_n       people with any antipsychotic / with use in the last days
--   ap_known_n                people whose antipsychotic status is known (the denominator:
--                             followed for the whole window, or everyone, by derive.binary_window)
--   ap_cover_n, ap_cover_sum, ap_cover_sum2   people with follow-up > 0 days: share of
--                             days covered, sum and sum of squares
--   ap_cover_users_n          of them, people with a day covered (the share's "events")
--   ap_ddd_n, ap_ddd_sum, ap_ddd_sum2   people with a mean daily dose in DDD (users)
--   ap_cpz_n, ap_cpz_sum, ap_cpz_sum2   the same in chlorpromazine-equivalent mg/day
--   rtw_n, rtw_events         people with a status in the 2-year window / in work or
--                             education
--   landmark_n, landmark_events   people whose relapse status by the landmark day is
--                             known / who relapsed by then
--   deaths_n                  people whose follow-up ended by death

with persons as (
    select *, 'site' as dimension, site_id as level from person_outcomes
    union all
    select *, 'ethnicity' as dimension, ethnicity_group as level from person_outcomes
),

cells as (
    select
        dimension,
        coalesce(level, 'all')                                   as level,
        coalesce(arm, 'all')                                     as arm,
        count(*)                                                 as n_people,
        sum(person_years)                                        as person_years,
        sum(relapse_count)                                       as relapse_events,
        sum(relapse_count * relapse_count)                       as relapse_y2,
        sum(relapse_count * relapse_person_years)                as relapse_yt,
        sum(relapse_person_years)                                as relapse_py,
        sum(relapse_person_years * relapse_person_years)         as relapse_pt2,
        sum(involuntary_count)                                   as involuntary_events,
        sum(involuntary_count * involuntary_count)               as involuntary_y2,
        sum(involuntary_count * involuntary_person_years)        as involuntary_yt,
        sum(involuntary_person_years)                            as involuntary_py,
        sum(involuntary_person_years * involuntary_person_years) as involuntary_pt2,
        sum(person_years * person_years)                         as pt2,
        count(*) filter (where any_involuntary)                  as any_involuntary_n,
        count(any_involuntary)                                   as any_involuntary_known_n,
        sum(days_detained)                                       as days_detained_sum,
        sum(days_detained * days_detained)                       as days_detained_sum2,
        count(*) filter (where days_detained > 0)                as detained_n,
        count(*) filter (where ap_any_use)                       as ap_any_n,
        count(*) filter (where ap_use_last_days)                 as ap_last_n,
        count(ap_any_use)                                        as ap_known_n,
        count(ap_proportion_covered)                             as ap_cover_n,
        sum(ap_proportion_covered)                               as ap_cover_sum,
        sum(ap_proportion_covered * ap_proportion_covered)       as ap_cover_sum2,
        count(*) filter (where ap_proportion_covered > 0)        as ap_cover_users_n,
        count(ap_mean_daily_ddd)                                 as ap_ddd_n,
        sum(ap_mean_daily_ddd)                                   as ap_ddd_sum,
        sum(ap_mean_daily_ddd * ap_mean_daily_ddd)               as ap_ddd_sum2,
        count(ap_mean_daily_cpz_mg)                              as ap_cpz_n,
        sum(ap_mean_daily_cpz_mg)                                as ap_cpz_sum,
        sum(ap_mean_daily_cpz_mg * ap_mean_daily_cpz_mg)         as ap_cpz_sum2,
        count(rtw_2y)                                            as rtw_n,
        count(*) filter (where rtw_2y)                           as rtw_events,
        count(*) filter (where relapse_landmark_known)           as landmark_n,
        count(*) filter (where relapse_by_landmark)              as landmark_events,
        count(*) filter (where end_reason = 'death')             as deaths_n
    from persons
    group by grouping sets ((dimension, level, arm), (dimension, level), (dimension, arm),
                            (dimension))
)

select * from cells
order by dimension, level, arm
