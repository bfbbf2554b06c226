-- name:  imp.out_people
-- grain: one row per allocated person (every row of the allocation list)
-- key:   person_id
--
-- The trial's allocation list gives site, arm, cluster, index date and the baseline the
-- trial records itself; the latest MHS001MPI version gives sex, ethnicity and date of
-- death. Sex: GENDER IDENTITY CODE (v6) when given, else PERSON STATED GENDER CODE;
-- a code missing from its list, or no code, is 'unknown'. Ethnicity: the ONS 5 groups
-- of ETHNIC CATEGORY ('unknown' for a code missing from the list; empty when none).
-- data_end_date: the allocation's, else the end of the extract ($extract_end).
-- A person without an MHS001MPI record keeps sex 'unknown' and no ethnicity or death.
--
-- parameters: $extract_end

with alloc as (
    select * from imp.alloc
),

mpi as (
    select * from imp.kept_mhs001mpi
),

coded as (
    select
        a.*,
        m.person_id is not null as has_mpi,
        case
            when m.gender_identity is not null then coalesce(nullif(gi.contract_value, ''), 'unknown')
            when m.gender is not null then coalesce(nullif(g.contract_value, ''), 'unknown')
            else 'unknown'
        end as sex,
        case
            when m.ethnic_category is not null then coalesce(nullif(e.contract_value, ''), 'unknown')
        end as ethnicity,
        m.death_date
    from alloc as a
    left join mpi as m using (person_id)
    left join imp.codes as gi on gi.list = 'gender_identity' and gi.code_key = code_key(m.gender_identity)
    left join imp.codes as g on g.list = 'person_stated_gender' and g.code_key = code_key(m.gender)
    left join imp.codes as e on e.list = 'ethnic_category' and e.code_key = code_key(m.ethnic_category)
),

final as (
    select
        person_id,
        site_id,
        arm,
        cluster_id,
        index_date,
        coalesce(data_end_date, cast($extract_end as date)) as data_end_date,
        data_end_reason,
        sex,
        birth_year,
        ethnicity,
        coalesce(diagnosis_group, 'unknown') as diagnosis_group,
        prior_admissions_2y,
        baseline_activity,
        death_date
    from coded
)

select * from final
order by site_id, person_id
