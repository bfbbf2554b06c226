-- name:  derived.int_network_meetings
-- grain: one row per attended network meeting that belongs to a referral
-- key:   contact_id
--
-- Network meetings are contacts with contact_type = 'network_meeting', attended = true
-- and a referral_id (a meeting that did not take place, or that cannot be attributed to
-- a referral, says nothing about fidelity to that referral). meeting_seq numbers a
-- referral's meetings by start_at, then contact_id (1 = the first meeting).

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

final as (
    select
        contact_id,
        referral_id,
        person_id,
        start_at,
        row_number() over (
            partition by referral_id order by start_at, contact_id
        ) as meeting_seq,                       -- 1 = first meeting of the referral
        location,
        person_present,
        network_members_present
    from meetings
)

select * from final  -- intermediate: row order is not part of the contract
