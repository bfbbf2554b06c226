-- name:  imp.out_detentions
-- grain: one row per Mental Health Act legal status period (latest MHS401MHActPeriod
--        version) of an allocated person whose code is a detention
-- key:   detention_id (UniqMHActEpisodeID)
--
-- legal_section: MENTAL HEALTH ACT LEGAL STATUS CLASSIFICATION CODE through the
-- mha_legal_status list ('other' for a code missing from it). Periods whose code the
-- list maps to '-' (informal, guardianship, not applicable) are not detentions and are
-- not carried; the import report counts them.

select
    p.detention_id,
    p.person_id,
    coalesce(nullif(c.contract_value, ''), 'other') as legal_section,
    p.start_date as start_on,
    p.end_date as end_on
from imp.kept_mhs401mhactperiod as p
left join imp.codes as c on c.list = 'mha_legal_status' and c.code_key = code_key(p.legal_status)
where c.contract_value is distinct from '-'
order by detention_id
