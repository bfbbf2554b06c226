-- name:  derived.int_antipsychotic_exposures
-- grain: one row per antipsychotic prescription overlapping follow-up
-- key:   prescription_id
--
-- A prescription is antipsychotic when its drug name (lower case, trimmed) is in the
-- reference list (derived.ref_drugs, loaded from pipeline/reference/antipsychotics.csv)
-- with antipsychotic = true. It covers the days start_on .. end_on inclusive. An ongoing
-- prescription (end_on null) ends as derive.open_end.prescriptions says (a row of
-- derived.ref_open_end): data_end, through the person's last day of data,
-- least(data_end_date, death_date); cap, for max_days days (start_on .. start_on + max_days
-- - 1), or through the last day of data if sooner. Follow-up is the half-open day interval
-- [0, fu_end_day), so the clipped exposure is
--     [greatest(start_day, 0), least(end_day + 1, fu_end_day))
-- and rows with an empty clipped interval are dropped.
-- Dose conversion uses the reference row for (drug, route); when there is none (e.g.
-- route 'other', or a depot-only salt prescribed orally) daily_ddd and daily_cpz_mg are
-- null: the prescription still counts as use and coverage but not in the dose means.

with people as (
    select
        person_id,
        index_date,
        fu_end_day,
        least(data_end_date, coalesce(death_date, data_end_date)) as last_data_on
    from derived.people
),

open_end as (
    select end_rule, max_days from derived.ref_open_end
    where table_name = 'prescriptions' and detail is null
),

antipsychotic_names as (
    select drug
    from derived.ref_drugs
    group by drug
    having max(case when antipsychotic then 1 else 0 end) = 1
),

prescriptions as (
    select
        rx.prescription_id,
        rx.person_id,
        lower(trim(rx.drug)) as drug,
        rx.route,
        rx.daily_dose_mg,
        date_diff('day', p.index_date, rx.start_on) as start_day,
        date_diff('day', p.index_date, case
            when rx.end_on is not null then rx.end_on
            when o.end_rule = 'cap'
                then least(cast(rx.start_on + (o.max_days - 1) * interval '1' day as date),
                           greatest(rx.start_on, p.last_data_on))
            else greatest(rx.start_on, p.last_data_on)
        end) + 1 as end_day_exclusive,
        p.fu_end_day
    from clean.prescriptions as rx
    inner join people as p on p.person_id = rx.person_id
    inner join antipsychotic_names as a on a.drug = lower(trim(rx.drug))
    cross join open_end as o
),

clipped as (
    select
        *,
        greatest(start_day, 0)                     as from_day,
        least(end_day_exclusive, fu_end_day)       as to_day
    from prescriptions
),

final as (
    select
        c.prescription_id,
        c.person_id,
        c.drug,                                       -- normalised generic name
        c.route,                                      -- oral | depot | other
        c.daily_dose_mg,
        c.from_day,                                   -- first covered follow-up day
        c.to_day,                                     -- day after the last covered day
        c.to_day - c.from_day as days,                -- covered days of this prescription
        c.daily_dose_mg / r.ddd_mg       as daily_ddd,      -- null if not convertible
        c.daily_dose_mg * 100.0 / r.cpz_equiv_mg
                                         as daily_cpz_mg    -- null if not convertible
    from clipped as c
    left join derived.ref_drugs as r
        on r.drug = c.drug and r.route = c.route
    where c.from_day < c.to_day
)

select * from final  -- intermediate: row order is not part of the contract
