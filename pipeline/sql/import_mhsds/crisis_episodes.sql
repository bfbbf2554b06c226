-- name:  imp.out_crisis_episodes
-- grain: one row per crisis-team referral (imp.crisis_referrals) of an allocated person
-- key:   episode_id (the referral's UniqServReqID)
--
-- The episode runs from the referral's received date to its service discharge date
-- (open while there is none).

select
    r.referral_id as episode_id,
    r.person_id,
    r.received_date as start_on,
    r.discharge_date as end_on
from imp.kept_mhs101referral as r
semi join imp.crisis_referrals as c using (referral_id)
order by episode_id
