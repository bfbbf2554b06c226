-- name:  derived.antipsychotic
-- grain: one row per person
-- key:   person_id
--
-- Antipsychotic exposure during follow-up, from derived.int_antipsychotic_exposures
-- (prescriptions of reference-list antipsychotics, days start_on..end_on inclusive, open
-- prescriptions to the end of follow-up, clipped to follow-up days [0, fu_end_day)) and
-- their merged intervals in derived.int_follow_up_intervals (kind 'antipsychotic').
--   any_use             a prescription covers at least one follow-up day
--   use_last_days       a prescription covers a day in the last $last_days_antipsychotic
--                       days of follow-up, [max(0, fu_end_day - N), fu_end_day)
--   covered_days        follow-up days covered by at least one prescription (once each)
--   proportion_covered  covered_days / person_days; null when person_days = 0
--   mean_daily_ddd      time-weighted mean daily dose over covered days, in WHO DDDs,
--                       concurrent antipsychotics summed:
--                       sum over prescriptions (daily_dose_mg / ddd_mg * days) / covered_days;
--                       null when covered_days = 0 or no covering prescription converts
--   mean_daily_cpz_mg   the same in mg/day of oral chlorpromazine:
--                       sum(daily_dose_mg * 100 / cpz_equiv_mg * days) / covered_days
--   dose_incomplete     some covering prescription has no conversion for its route (e.g.
--                       route 'other'); its days count in covered_days but not in the
--                       numerators, so both means are then lower bounds
--   first_use_day       first follow-up day covered (0: in use at index); null if none
-- Equal windows. any_use and use_last_days describe each person's own follow-up, which is
-- shorter for people censored or dead before day $follow_up_days: a comparison of them
-- compares unequal windows. The binary outcomes of the analyses use the fixed window
-- [0, $follow_up_days) instead (derive.binary_window, default whole_window):
--   window_observed     fu_end_day >= $follow_up_days: the whole window is observed
--   any_use_window      any_use when window_observed, else null (not known)
--   use_last_window     use in the last $last_days_antipsychotic days of the window, when
--                       window_observed (then the same days as use_last_days), else null
--
-- parameters: $last_days_antipsychotic, $follow_up_days

with people as (
    select person_id, site_id, arm, cluster_id, person_days, fu_end_day from derived.people
),

coverage as (
    select
        i.person_id,
        sum(i.to_day - i.from_day) as covered_days,
        min(i.from_day)            as first_use_day,
        max(case
                when i.to_day > greatest(p.fu_end_day - $last_days_antipsychotic, 0)
                then 1 else 0
            end) as use_last_days
    from derived.int_follow_up_intervals as i
    inner join people as p on p.person_id = i.person_id
    where i.kind = 'antipsychotic'
    group by i.person_id
),

dose as (
    select
        person_id,
        sum(daily_ddd * days)     as ddd_days,
        sum(daily_cpz_mg * days)  as cpz_mg_days,
        max(case when daily_ddd is null or daily_cpz_mg is null then 1 else 0 end)
                                  as dose_incomplete
    from derived.int_antipsychotic_exposures
    group by person_id
),

final as (
    select
        p.person_id,
        p.site_id,
        p.arm,
        p.cluster_id,
        coalesce(c.covered_days, 0) > 0              as any_use,
        coalesce(c.use_last_days, 0) = 1             as use_last_days,
        cast(coalesce(c.covered_days, 0) as bigint) as covered_days,
        p.person_days,
        case when p.person_days > 0
             then coalesce(c.covered_days, 0) * 1.0 / p.person_days
        end                                          as proportion_covered,
        case when c.covered_days > 0
             then d.ddd_days / c.covered_days
        end                                          as mean_daily_ddd,
        case when c.covered_days > 0
             then d.cpz_mg_days / c.covered_days
        end                                          as mean_daily_cpz_mg,
        coalesce(d.dose_incomplete, 0) = 1           as dose_incomplete,
        c.first_use_day,
        p.fu_end_day >= $follow_up_days              as window_observed,
        case when p.fu_end_day >= $follow_up_days
             then coalesce(c.covered_days, 0) > 0 end
                                                     as any_use_window,
        case when p.fu_end_day >= $follow_up_days
             then coalesce(c.use_last_days, 0) = 1 end
                                                     as use_last_window
    from people as p
    left join coverage as c on c.person_id = p.person_id
    left join dose as d on d.person_id = p.person_id
)

select * from final
order by person_id
