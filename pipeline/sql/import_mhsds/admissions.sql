-- name:  imp.out_admissions
-- grain: one row per hospital provider spell (latest MHS501HospProvSpell version) of an
--        allocated person
-- key:   admission_id (UniqHospProvSpellID, v6; UniqHospProvSpellNum, v4.1 and v5)
--
-- admission_method: ADMISSION METHOD CODE (HOSPITAL PROVIDER SPELL); empty for a code
-- with no contract value (maternity, not known) or missing from the list: the contract
-- has no unknown method, so validation quarantines the row and says why.
-- detained_on_admission: not an MHSDS item (left empty; MHS401 holds the detentions).

select
    s.spell_id as admission_id,
    s.person_id,
    s.start_date as admitted_on,
    s.discharge_date as discharged_on,
    nullif(c.contract_value, '') as admission_method,
    cast(null as boolean) as detained_on_admission
from imp.kept_mhs501hospprovspell as s
left join imp.codes as c on c.list = 'admission_method' and c.code_key = code_key(s.admission_method)
order by admission_id
