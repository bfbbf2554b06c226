-- name:  derived.int_admission_spells
-- grain: one row per inpatient hospital spell (admissions chained by transfer)
-- key:   spell_id
--
-- Admissions of a person are ordered by admitted_on, then non-transfer before transfer,
-- then discharged_on (open last), then admission_id. An admission continues the spell of
-- the admission just before it in that order iff
--     admission_method = 'transfer'
--     and admitted_on <= previous discharged_on + $transfer_gap_days
-- otherwise it starts a new spell. As in SQL, a comparison with a missing discharged_on is
-- not true: a transfer after an admission with no discharge date starts a new spell (the
-- contract's rule taken literally, shared with the synthetic-data generator). A spell starts on the admitted_on of its first
-- admission, so a transfer continuing a spell that began before index_date does not start
-- a spell of its own (and is not a relapse).
--
-- parameters: $transfer_gap_days

with admissions as (
    select
        a.admission_id,
        a.person_id,
        a.admitted_on,
        a.discharged_on,
        a.admission_method,
        row_number() over (
            partition by a.person_id
            order by a.admitted_on,
                     case when a.admission_method = 'transfer' then 1 else 0 end,
                     a.discharged_on nulls last,
                     a.admission_id
        ) as admission_seq
    from clean.admissions as a
),

with_previous as (
    select
        *,
        lag(discharged_on) over (partition by person_id order by admission_seq)
            as previous_discharged_on
    from admissions
),

flagged as (
    select
        *,
        case
            when admission_method = 'transfer'
                 and previous_discharged_on is not null
                 and date_diff('day', previous_discharged_on, admitted_on)
                     <= $transfer_gap_days
            then 0 else 1
        end as starts_spell
    from with_previous
),

numbered as (
    select
        *,
        sum(starts_spell) over (
            partition by person_id order by admission_seq
            rows between unbounded preceding and current row
        ) as spell_seq
    from flagged
),

final as (
    select
        min(case when starts_spell = 1 then admission_id end)
                                   as spell_id,        -- admission_id of the first admission
        person_id,
        cast(spell_seq as bigint)  as spell_seq,       -- 1, 2, ... per person
        min(admitted_on)           as spell_start_on,  -- admitted_on of the first admission
        count(*)                   as n_admissions     -- admissions chained into the spell
    from numbered
    group by person_id, spell_seq
)

select * from final  -- intermediate: row order is not part of the contract
