-- name:  derived.activity
-- grain: one row per person
-- key:   person_id
--
-- Employment / education status near the end of follow-up and return to work or
-- education (RTW: status in $rtw_statuses).
--   window             days [$follow_up_days - $rtw_window_days, min($follow_up_days, fu_end_day)]
--                      inclusive (default 640..730); empty when follow-up ends before 640
--   status_2y          status of the LAST employment record whose day is in the window
--                      (ties on a day cannot occur: (person_id, recorded_on) is the key
--                      of clean.employment; status breaks them anyway); null if none
--   status_2y_day      day of that record
--   rtw_2y             status_2y in $rtw_statuses; null when no record in the window
--   first_rtw_day      day of the first record with an RTW status on days 1..fu_end_day
--                      (the return_to_work event of derived.time_to_event); null if none
--   last_status_pre    status of the LAST record on days 0 .. window start - 1 (and on or
--                      before fu_end_day): the last status known before the window (an
--                      imputation model's predictor); null if none
--   last_status_pre_day  its day
--   window_reached     the person's records run into the window: data_end_day >= window
--                      start (the people a status at 2 years is due from, unless they die
--                      before it)
--   died_before_window death on a day before the window start, within the records
--                      (death_day <= data_end_day)
--
-- parameters: $follow_up_days, $rtw_window_days, $rtw_statuses

with people as (
    select person_id, site_id, arm, cluster_id, baseline_activity, index_date, fu_end_day,
           date_diff('day', index_date, data_end_date) as data_end_day,
           date_diff('day', index_date, death_date) as death_day
    from derived.people
),

in_window as (
    select
        e.person_id,
        e.status,
        date_diff('day', p.index_date, e.recorded_on) as record_day,
        row_number() over (
            partition by e.person_id
            order by e.recorded_on desc, e.status desc
        ) as recency
    from clean.employment as e
    inner join people as p on p.person_id = e.person_id
    where date_diff('day', p.index_date, e.recorded_on)
          between $follow_up_days - $rtw_window_days
              and least($follow_up_days, p.fu_end_day)
),

last_in_window as (
    select person_id, status, record_day from in_window where recency = 1
),

before_window as (
    select
        e.person_id,
        e.status,
        date_diff('day', p.index_date, e.recorded_on) as record_day,
        row_number() over (
            partition by e.person_id
            order by e.recorded_on desc, e.status desc
        ) as recency
    from clean.employment as e
    inner join people as p on p.person_id = e.person_id
    where date_diff('day', p.index_date, e.recorded_on)
          between 0 and least($follow_up_days - $rtw_window_days - 1, p.fu_end_day)
),

last_before_window as (
    select person_id, status, record_day from before_window where recency = 1
),

first_rtw as (
    select person_id, min(event_day) as first_rtw_day
    from derived.int_outcome_events
    where event_type = 'rtw_status'
    group by person_id
),

final as (
    select
        p.person_id,
        p.site_id,
        p.arm,
        p.cluster_id,
        p.baseline_activity,                          -- status at index (covariate)
        w.status       as status_2y,                  -- last status in the window
        w.record_day   as status_2y_day,              -- its day
        case
            when w.status is null then null
            else array_contains($rtw_statuses, w.status)
        end            as rtw_2y,                     -- back at work or education
        f.first_rtw_day,                              -- time to first RTW status
        b.status       as last_status_pre,            -- last status before the window
        b.record_day   as last_status_pre_day,        -- its day
        p.data_end_day >= $follow_up_days - $rtw_window_days
                       as window_reached,             -- records run into the window
        coalesce(p.death_day < $follow_up_days - $rtw_window_days
                 and p.death_day <= p.data_end_day, false)
                       as died_before_window          -- died before the window
    from people as p
    left join last_in_window as w on w.person_id = p.person_id
    left join last_before_window as b on b.person_id = p.person_id
    left join first_rtw as f on f.person_id = p.person_id
)

select * from final
order by person_id
