-- name:  derived.int_network_meetings
-- grain: one row per attended network meeting that belongs to a referral
-- key:   contact_id
--
-- Network meetings are contacts with contact_type = 'network_meeting', attended = true
-- and a referral_id (a meeting that did not take place, or that cannot be attributed to
-- a referral, says nothing about fidelity to that referral). meeting_seq numbers a
-- referral's meetings by start_at, then contact_id (1 = the first meeting). Staff come
-- from clean.contact_staff joined to clean.staff; clinical staff are those whose role is
-- in $clinical_roles (default: psychiatrist, nurse, psychologist, social_worker,
-- occupational_therapist; so peer_worker, support_worker and other are not clinical).
--
-- parameters: $clinical_roles

with meetings as (
    select
        contact_id,
        referral_id,
        person_id,
        start_at,
        location,
        person_present,
        network_members_present
    from clean.contacts
    where contact_type = 'network_meeting'
      and attended
      and referral_id is not null
),

staff_at_meeting as (
    select
        cs.contact_id,
        count(*) as n_staff,
        sum(case when array_contains($clinical_roles, s.role) then 1 else 0 end)
            as n_clinical_staff,
        max(case when s.role = 'peer_worker' then 1 else 0 end) as peer_worker_present
    from clean.contact_staff as cs
    inner join meetings as m on m.contact_id = cs.contact_id
    left join clean.staff as s on s.staff_id = cs.staff_id
    group by cs.contact_id
),

final as (
    select
        m.contact_id,
        m.referral_id,
        m.person_id,
        m.start_at,
        row_number() over (
            partition by m.referral_id order by m.start_at, m.contact_id
        ) as meeting_seq,                                   -- 1 = first meeting
        m.location,
        m.person_present,
        m.network_members_present,
        coalesce(s.n_staff, 0)               as n_staff,            -- staff present
        coalesce(s.n_clinical_staff, 0)      as n_clinical_staff,   -- of whom clinical
        coalesce(s.peer_worker_present, 0) = 1 as peer_worker_present
    from meetings as m
    left join staff_at_meeting as s on s.contact_id = m.contact_id
)

select * from final  -- intermediate: row order is not part of the contract
