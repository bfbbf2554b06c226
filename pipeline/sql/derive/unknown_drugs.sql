-- name:  derived.unknown_drugs
-- grain: one row per drug name in clean.prescriptions that is not in the reference list
-- key:   drug
--
-- Drug names are compared after lower() and trim(), as everywhere in the derive stage.
-- A name missing from pipeline/reference/antipsychotics.csv is neither counted as an
-- antipsychotic nor dropped silently: it is listed here with how often it occurs, so the
-- list can be extended (or the extract corrected).

with prescriptions as (
    select prescription_id, person_id, lower(trim(drug)) as drug
    from clean.prescriptions
),

known as (
    select distinct drug from derived.ref_drugs
),

final as (
    select
        rx.drug,                                            -- normalised drug name
        count(*)                    as n_prescriptions,     -- prescriptions naming it
        count(distinct rx.person_id) as n_people            -- people prescribed it
    from prescriptions as rx
    left join known as k on k.drug = rx.drug
    where k.drug is null
    group by rx.drug
)

select * from final
order by drug
