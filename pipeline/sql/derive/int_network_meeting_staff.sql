-- name:  derived.int_network_meeting_staff
-- grain: one row per member of staff present at an attended network meeting
-- key:   (contact_id, staff_id)
--
-- clean.contact_staff restricted to the meetings of derived.int_network_meetings, with
-- the meeting's referral and sequence number and the staff role (clean.staff; null when
-- the staff member is not in the register). Clinical staff are those whose role is in
-- $clinical_roles (default: psychiatrist, nurse, psychologist, social_worker,
-- occupational_therapist; so peer_worker, support_worker and other are not clinical).
-- Built once so that the large contact_staff table is joined once.
--
-- parameters: $clinical_roles

with final as (
    select
        cs.contact_id,
        cs.staff_id,
        m.referral_id,
        m.meeting_seq,                                            -- 1 = first meeting
        s.role,                                                   -- staff.role (nullable)
        coalesce(array_contains($clinical_roles, s.role), false) as is_clinical
    from clean.contact_staff as cs
    inner join derived.int_network_meetings as m on m.contact_id = cs.contact_id
    left join clean.staff as s on s.staff_id = cs.staff_id
)

select * from final  -- intermediate: row order is not part of the contract
