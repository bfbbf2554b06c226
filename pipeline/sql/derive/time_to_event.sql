-- name:  derived.time_to_event
-- grain: one row per person and outcome (CDISC ADaM ADTTE style)
-- key:   (person_id, outcome)
--
-- outcome                first counted event (derived.int_outcome_events, day 1..fu_end_day)
--   relapse              relapse_episode: the start of the first acute-care episode after the
--                        index episode and the grace period (derived.acute_episodes; its
--                        records as derive.relapse_components enables)
--   involuntary_admission involuntary_admission: the first Mental Health Act episode with a
--                        detention under derive.involuntary_sections starting in follow-up
--                        (derived.mha_episodes)
--   first_admission      admission_spell (a transfer continuing a spell is not a new one)
--   first_crisis         crisis_episode
--   return_to_work       rtw_status (status in $rtw_statuses)
--   death                end_reason = 'death' and fu_end_day >= 1 (a death on the index
--                        date is, like every day-0 event, not an outcome)
--
-- event      1 = the outcome happened (on or before fu_end_day; an event on the day of
--                death counts as the event, not as the competing death);
--            2 = competing death: no event and end_reason = 'death' (never for `death`);
--            0 = censored.
-- time_days  the event day if event = 1, else fu_end_day.
-- cnsr       CDISC CNSR: 0 if event = 1, else 1 (censored or competing).
-- censor_reason  null if event = 1, else end_reason (death | data_end | end_of_follow_up).
-- event_date     index_date + time_days when event is 1 or 2 (the death date for 2);
--                null when censored.
--
-- parameters: none (the definitions are in the relations read)

with people as (
    select person_id, site_id, arm, cluster_id, index_date, fu_end_day, end_reason
    from derived.people
),

outcomes as (
    select outcome from (values
        ('relapse'), ('involuntary_admission'), ('first_admission'),
        ('first_crisis'), ('return_to_work'), ('death')
    ) as o (outcome)
),

outcome_events as (
    select person_id, 'relapse' as outcome, event_day
    from derived.int_outcome_events where event_type = 'relapse_episode'
    union all
    select person_id, 'involuntary_admission', event_day
    from derived.int_outcome_events where event_type = 'involuntary_admission'
    union all
    select person_id, 'first_admission', event_day
    from derived.int_outcome_events where event_type = 'admission_spell'
    union all
    select person_id, 'first_crisis', event_day
    from derived.int_outcome_events where event_type = 'crisis_episode'
    union all
    select person_id, 'return_to_work', event_day
    from derived.int_outcome_events where event_type = 'rtw_status'
    union all
    select person_id, 'death', fu_end_day
    from people where end_reason = 'death' and fu_end_day >= 1
),

first_events as (
    select person_id, outcome, min(event_day) as event_day
    from outcome_events
    group by person_id, outcome
),

coded as (
    select
        p.person_id,
        p.site_id,
        p.arm,
        p.cluster_id,
        o.outcome,
        p.index_date,
        p.fu_end_day,
        p.end_reason,
        f.event_day,
        case
            when f.event_day is not null then 1
            when p.end_reason = 'death' and o.outcome <> 'death' then 2
            else 0
        end as event
    from people as p
    cross join outcomes as o
    left join first_events as f
        on f.person_id = p.person_id and f.outcome = o.outcome
),

final as (
    select
        person_id,
        site_id,
        arm,
        cluster_id,
        outcome,                                        -- see table above
        case when event = 1 then event_day else fu_end_day end
            as time_days,                               -- days from index_date
        event,                                          -- 0 censored, 1 event, 2 competing death
        case when event = 1 then 0 else 1 end as cnsr,  -- CDISC: 0 event, 1 censored/competing
        case when event = 1 then null else end_reason end
            as censor_reason,                           -- death | data_end | end_of_follow_up
        case
            when event = 1 then cast(index_date + event_day * interval '1' day as date)
            when event = 2 then cast(index_date + fu_end_day * interval '1' day as date)
        end as event_date                               -- date of event or competing death
    from coded
)

select * from final
order by person_id, outcome
