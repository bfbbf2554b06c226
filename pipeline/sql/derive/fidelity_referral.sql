-- name:  derived.fidelity_referral
-- grain: one row per referral
-- key:   referral_id
--
-- Fidelity to the seven Open Dialogue principles, per referral, computed from its
-- attended network meetings and the staff present at them (clean.contact_staff, with
-- their role from clean.staff). Network meetings are contacts with contact_type =
-- 'network_meeting', attended = true and a referral_id (a meeting that did not take
-- place, or that cannot be attributed to a referral, says nothing about fidelity to that
-- referral); a referral's first meeting is its earliest by start_at, then contact_id.
-- Every share is
-- numerator / denominator over that referral's meetings, null when the denominator is 0;
-- missing values (null person_present, null network_members_present) are left out of
-- the denominator, never counted as "no".
--
--   n_network_meetings          attended network meetings of the referral
--   p1_hours_to_first_meeting   hours from received_at to start_at of the first meeting
--                               (null if none)
--   p1_within_24h               0 <= hours <= 24; false when there is no meeting; null
--                               when the first meeting precedes received_at (data error,
--                               not imputed)
--   p2_share_network_present    share of meetings with network_members_present >= 1
--   p3_share_home_or_choice     share of meetings at home or place_of_choice
--   p4_first_contact_at_first_meeting
--                               first_contact_staff_id is among the staff at the first
--                               meeting; null if no meeting or no first_contact_staff_id
--   p5_share_two_clinical       share of meetings with >= 2 clinical staff ($clinical_roles,
--                               default psychiatrist, nurse, psychologist, social_worker,
--                               occupational_therapist; so peer_worker, support_worker,
--                               other and staff missing from the register are not clinical)
--   p5_core_team_continuity     of the staff attendances at the 2nd and later meetings,
--                               the share by staff who were at the first meeting; null if
--                               no staff attended a later meeting
--   p5_peer_worker_present      a peer worker was at any meeting; null if no meeting
--   p6_tolerance_of_uncertainty ALWAYS NULL: tolerance of uncertainty is not measurable
--                               from service records (it is a quality of the dialogue,
--                               assessed by observation or fidelity scales); it is
--                               reported as not measurable, never imputed
--   p7_share_person_present     share of meetings with the person present
--   discharge_by_network        discharge_decided_by = 'network'; null when not
--                               recorded (including referrals not yet discharged)
--
-- How, for national size (1 M referrals, 15.3 M meetings, 37 M of the 77 M contact-staff
-- rows at them), within DuckDB's 2 GB:
--   * the meetings are read where they are used, not stored (not materialized);
--   * each referral's first meeting comes from the grouping of its meetings (arg_min),
--     not from a window over all of them;
--   * the staff at first meetings (1.7 M rows) are looked up by (referral, staff), so the
--     attendances are aggregated once, per meeting, as they leave their join, and are
--     never stored;
--   * the 15.3 M per-meeting rows are a materialized CTE, which lets their grouping spill
--     and be freed before the per-referral one (inlined, 2 GB was too little).
-- Alone, as a table, national: 28.6 -> 17.7 s, and 31.1 -> 21.0 s in a slower hour; trust
-- 0.76 -> 0.71 s; every row equal. It replaced a grouping-sets pass over the 37 M
-- attendances stored in a CTE (before that, a 37 M-row table read three times). The
-- materialization hints are DuckDB's; the Spark engine drops them
-- (pipeline.engines.transpile).
--
-- parameters: $clinical_roles

with network_meetings as not materialized (  -- one row per attended network meeting
    select
        contact_id,
        referral_id,
        start_at,
        location,
        person_present,
        network_members_present
    from clean.contacts
    where contact_type = 'network_meeting'
      and attended
      and referral_id is not null
),

per_referral as (          -- one row per referral with a meeting
    select
        referral_id,
        count(*) as n_network_meetings,
        sum(case when network_members_present >= 1 then 1 else 0 end) as n_network_present,
        sum(case when network_members_present is not null then 1 else 0 end)
            as n_network_recorded,
        sum(case when location in ('home', 'place_of_choice') then 1 else 0 end)
            as n_home_or_choice,
        sum(case when person_present then 1 else 0 end) as n_person_present,
        sum(case when person_present is not null then 1 else 0 end) as n_person_recorded,
        -- the first meeting: the earliest by start_at, then contact_id (the key)
        arg_min(contact_id, struct_pack(s := start_at, c := contact_id)) as first_meeting_id,
        min(start_at) as first_start_at
    from network_meetings
    group by referral_id
),

referrals as (
    select
        r.referral_id,
        r.person_id,
        p.site_id,
        p.arm,
        p.cluster_id,
        r.received_at,
        r.first_contact_staff_id,
        r.discharge_decided_by
    from clean.referrals as r
    left join derived.people as p on p.person_id = r.person_id
),

first_staff as (           -- one row per referral and member of staff at its first meeting
    select distinct pr.referral_id, cs.staff_id
    from clean.contact_staff as cs
    inner join per_referral as pr on pr.first_meeting_id = cs.contact_id
),

meeting_staff as materialized (         -- one row per attended network meeting with staff
    select
        m.contact_id,
        any_value(m.referral_id)                                      as referral_id,
        count(*)                                                      as n_staff,
        -- of them, staff who were at the referral's first meeting
        sum(case when fs.staff_id is not null then 1 else 0 end)      as n_core_staff,
        sum(case when coalesce(array_contains($clinical_roles, st.role), false)
                 then 1 else 0 end)                                   as n_clinical_staff,
        max(case when st.role = 'peer_worker' then 1 else 0 end)      as any_peer_worker
    from clean.contact_staff as cs
    inner join network_meetings as m on m.contact_id = cs.contact_id
    left join first_staff as fs on fs.referral_id = m.referral_id and fs.staff_id = cs.staff_id
    left join clean.staff as st on st.staff_id = cs.staff_id
    group by m.contact_id
),

staff_per_referral as (
    select
        g.referral_id,
        sum(case when g.n_clinical_staff >= 2 then 1 else 0 end) as n_two_clinical,
        max(g.any_peer_worker) as any_peer_worker,
        -- continuity: attendances at the 2nd and later meetings, and those of them by staff
        -- who were at the first meeting
        sum(case when g.contact_id = pr.first_meeting_id then 0 else g.n_staff end)
            as n_later_attendances,
        sum(case when g.contact_id = pr.first_meeting_id then 0 else g.n_core_staff end)
            as n_core_attendances
    from meeting_staff as g
    inner join per_referral as pr on pr.referral_id = g.referral_id
    group by g.referral_id
),

first_contact as (         -- referrals whose first-contact worker was at the first meeting
    select r.referral_id, 1 as first_contact_at_first_meeting
    from clean.referrals as r
    semi join first_staff as fs
        on fs.referral_id = r.referral_id and fs.staff_id = r.first_contact_staff_id
),

first_meeting as (
    select referral_id, first_meeting_id as contact_id, first_start_at as start_at
    from per_referral
),

timing as (
    select
        r.referral_id,
        date_diff('second', r.received_at, f.start_at) / 3600.0 as hours_to_first_meeting,
        f.contact_id as first_meeting_id
    from referrals as r
    left join first_meeting as f on f.referral_id = r.referral_id
),

final as (
    select
        r.referral_id,
        r.person_id,
        r.site_id,
        r.arm,
        r.cluster_id,
        r.received_at,
        coalesce(pr.n_network_meetings, 0) as n_network_meetings,
        t.hours_to_first_meeting as p1_hours_to_first_meeting,
        case
            when t.hours_to_first_meeting is null then false
            when t.hours_to_first_meeting < 0 then null
            else t.hours_to_first_meeting <= 24
        end as p1_within_24h,
        case when pr.n_network_recorded > 0
             then pr.n_network_present * 1.0 / pr.n_network_recorded
        end as p2_share_network_present,
        case when pr.n_network_meetings > 0
             then pr.n_home_or_choice * 1.0 / pr.n_network_meetings
        end as p3_share_home_or_choice,
        case
            when t.first_meeting_id is null or r.first_contact_staff_id is null then null
            else coalesce(fc.first_contact_at_first_meeting, 0) = 1
        end as p4_first_contact_at_first_meeting,
        case when pr.n_network_meetings > 0
             then coalesce(s.n_two_clinical, 0) * 1.0 / pr.n_network_meetings
        end as p5_share_two_clinical,
        case when s.n_later_attendances > 0
             then s.n_core_attendances * 1.0 / s.n_later_attendances
        end as p5_core_team_continuity,
        case when pr.n_network_meetings > 0 then coalesce(s.any_peer_worker, 0) = 1
        end as p5_peer_worker_present,
        cast(null as double) as p6_tolerance_of_uncertainty,  -- not measurable, see header
        case when pr.n_person_recorded > 0
             then pr.n_person_present * 1.0 / pr.n_person_recorded
        end as p7_share_person_present,
        case when r.discharge_decided_by is not null
             then r.discharge_decided_by = 'network'
        end as discharge_by_network
    from referrals as r
    left join per_referral as pr on pr.referral_id = r.referral_id
    left join staff_per_referral as s on s.referral_id = r.referral_id
    left join timing as t on t.referral_id = r.referral_id
    left join first_contact as fc on fc.referral_id = r.referral_id
)

select * from final
order by referral_id
