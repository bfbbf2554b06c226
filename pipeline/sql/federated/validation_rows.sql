-- name:  fed_validation_rows (temporary table of the federated export)
-- grain: one row per raw row of every contract table (raw.<table>)
-- key:   (table_name, _load_id, _row_number)
-- parameters: none
--
-- Each raw row with the site it belongs to and, when validation quarantined it, the rules
-- it broke (quarantine.<table>._rules; null for a clean row: every raw row is in exactly
-- one of clean and quarantine, meta.validation_counts). The site is placed as the
-- validate stage's data-quality results place it: people and staff by their own site_id,
-- rows with a person_id by that person's site in raw.people (the smallest site_id if the
-- pseudonym occurs in several), contact_staff through its contact's person. A row whose
-- person or contact is not in raw (an orphan) has site_id null.
-- The tables listed here must be the contract's (checked by pipeline/federated.py).

with persons as (
    select person_id, min(site_id) as site_id
    from raw.people
    group by person_id
),

contact_person as (
    select contact_id, min(person_id) as person_id
    from raw.contacts
    group by contact_id
),

placed as (
    select 'people' as table_name, r._load_id, r._row_number, r.site_id, q._rules as rules
    from raw.people as r
    left join quarantine.people as q
      on q._load_id = r._load_id and q._row_number = r._row_number

    union all
    select 'staff', r._load_id, r._row_number, r.site_id, q._rules
    from raw.staff as r
    left join quarantine.staff as q
      on q._load_id = r._load_id and q._row_number = r._row_number

    union all
    select 'referrals', r._load_id, r._row_number, p.site_id, q._rules
    from raw.referrals as r
    left join persons as p on p.person_id = r.person_id
    left join quarantine.referrals as q
      on q._load_id = r._load_id and q._row_number = r._row_number

    union all
    select 'contacts', r._load_id, r._row_number, p.site_id, q._rules
    from raw.contacts as r
    left join persons as p on p.person_id = r.person_id
    left join quarantine.contacts as q
      on q._load_id = r._load_id and q._row_number = r._row_number

    union all
    select 'contact_staff', r._load_id, r._row_number, p.site_id, q._rules
    from raw.contact_staff as r
    left join contact_person as c on c.contact_id = r.contact_id
    left join persons as p on p.person_id = c.person_id
    left join quarantine.contact_staff as q
      on q._load_id = r._load_id and q._row_number = r._row_number

    union all
    select 'admissions', r._load_id, r._row_number, p.site_id, q._rules
    from raw.admissions as r
    left join persons as p on p.person_id = r.person_id
    left join quarantine.admissions as q
      on q._load_id = r._load_id and q._row_number = r._row_number

    union all
    select 'detentions', r._load_id, r._row_number, p.site_id, q._rules
    from raw.detentions as r
    left join persons as p on p.person_id = r.person_id
    left join quarantine.detentions as q
      on q._load_id = r._load_id and q._row_number = r._row_number

    union all
    select 'crisis_episodes', r._load_id, r._row_number, p.site_id, q._rules
    from raw.crisis_episodes as r
    left join persons as p on p.person_id = r.person_id
    left join quarantine.crisis_episodes as q
      on q._load_id = r._load_id and q._row_number = r._row_number

    union all
    select 'prescriptions', r._load_id, r._row_number, p.site_id, q._rules
    from raw.prescriptions as r
    left join persons as p on p.person_id = r.person_id
    left join quarantine.prescriptions as q
      on q._load_id = r._load_id and q._row_number = r._row_number

    union all
    select 'employment', r._load_id, r._row_number, p.site_id, q._rules
    from raw.employment as r
    left join persons as p on p.person_id = r.person_id
    left join quarantine.employment as q
      on q._load_id = r._load_id and q._row_number = r._row_number
)

select * from placed
