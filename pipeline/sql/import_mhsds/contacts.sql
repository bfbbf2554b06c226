-- name:  imp.out_contacts
-- grain: one row per care contact (latest MHS201CareContact version) of an allocated person
-- key:   contact_id
--
-- contact_type: network_meeting when a care activity of the contact (MHS202) carries a
-- procedure of the local network_meeting_procedure list (no national code exists);
-- otherwise CONSULTATION MECHANISM (MENTAL HEALTH) (v6) or CONSULTATION MEDIUM USED
-- (v4.1, v5), whichever the row has; 'other' for a code missing from the list or no code.
-- location: ACTIVITY LOCATION TYPE CODE; a contact without one is 'remote' when it was by
-- telephone or video, else 'other'. attended: ATTENDED OR DID NOT ATTEND CODE (empty
-- for 0 or a code missing from the list: validation quarantines the row).
-- network_members_present: the other people attending (MHS203, latest version of the
-- contact's set) when MHS203OtherAttend was given, else empty. referral_id is left empty
-- for a crisis-team referral (not in the referrals table). person_present: no MHSDS item.
--
-- parameters: $has_other_attend (whether any MHS203OtherAttend file was given)

with contact as (
    select * from imp.kept_mhs201carecontact
),

network_meetings as (
    select distinct a.contact_id
    from imp.kept_mhs202careactivity as a
    join imp.codes as c
      on c.list = 'network_meeting_procedure' and c.code_key = code_key(a.procedure)
    where c.contract_value = 'network_meeting'
),

others as (
    select contact_id, count(*) as n_others
    from imp.kept_mhs203otherattend
    group by contact_id
),

coded as (
    select
        k.*,
        case
            when nm.contact_id is not null then 'network_meeting'
            when k.mechanism is not null then coalesce(nullif(cm.contract_value, ''), 'other')
            when k.medium is not null then coalesce(nullif(cu.contract_value, ''), 'other')
            else 'other'
        end as contact_type,
        case when k.location is not null then coalesce(nullif(lo.contract_value, ''), 'other') end
            as coded_location,
        cast(nullif(ad.contract_value, '') as boolean) as attended
    from contact as k
    left join network_meetings as nm using (contact_id)
    left join imp.codes as cm on cm.list = 'consultation_mechanism' and cm.code_key = code_key(k.mechanism)
    left join imp.codes as cu on cu.list = 'consultation_medium_used' and cu.code_key = code_key(k.medium)
    left join imp.codes as lo on lo.list = 'activity_location_type' and lo.code_key = code_key(k.location)
    left join imp.codes as ad on ad.list = 'attended_or_dna' and ad.code_key = code_key(k.attendance)
),

final as (
    select
        c.contact_id,
        c.person_id,
        case when cr.referral_id is null then c.referral_id end as referral_id,
        c.contact_date + coalesce(c.contact_time, time '00:00:00') as start_at,
        c.duration_min,
        c.contact_type,
        coalesce(c.coded_location,
                 case when c.contact_type in ('phone', 'video') then 'remote' else 'other' end) as location,
        c.attended,
        cast(null as boolean) as person_present,
        case when $has_other_attend then coalesce(o.n_others, 0) end as network_members_present
    from coded as c
    left join others as o using (contact_id)
    left join imp.crisis_referrals as cr on cr.referral_id = c.referral_id
)

select * from final
order by contact_id
