-- name:  imp.out_referrals
-- grain: one row per referral (latest MHS101Referral version) of an allocated person
--        that is not a crisis-team referral (those are crisis_episodes)
-- key:   referral_id
--
-- received_at / discharged_at: the date with its time of day (midnight when no time is
-- given). MHSDS holds no equivalent of accepted_at, first_contact_staff_id or
-- discharge_decided_by: they stay empty (all optional in the contract).

with referral as (
    select * from imp.kept_mhs101referral
),

crisis as (
    select referral_id from imp.crisis_referrals
),

final as (
    select
        r.referral_id,
        r.person_id,
        r.received_date + coalesce(r.received_time, time '00:00:00') as received_at,
        cast(null as timestamp) as accepted_at,
        cast(null as varchar) as first_contact_staff_id,
        r.discharge_date + coalesce(r.discharge_time, time '00:00:00') as discharged_at,
        cast(null as varchar) as discharge_decided_by
    from referral as r
    anti join crisis as c using (referral_id)
)

select * from final
order by referral_id
