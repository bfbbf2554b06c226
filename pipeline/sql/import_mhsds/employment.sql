-- name:  imp.out_employment
-- grain: one row per person and recorded date (latest MHS004EmpStatus version) of an
--        allocated person
-- key:   (person_id, recorded_on)
--
-- status: EMPLOYMENT STATUS through the employment_status list ('unknown' for a code
-- missing from it). MHSDS does not tell the self-employed from the employed (01), nor
-- education from training (03).

select
    e.person_id,
    e.recorded_date as recorded_on,
    coalesce(nullif(c.contract_value, ''), 'unknown') as status
from imp.kept_mhs004empstatus as e
left join imp.codes as c on c.list = 'employment_status' and c.code_key = code_key(e.status)
order by person_id, recorded_on
