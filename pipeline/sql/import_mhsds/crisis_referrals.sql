-- name:  imp.crisis_referrals
-- grain: one row per referral with at least one team of a type the service_team_type
--        list maps to crisis_episode (e.g. A02 Crisis Resolution Team/Home Treatment)
-- key:   referral_id
--
-- Codes missing from the list count as ordinary referrals (the list's unmapped value).

select distinct t.referral_id
from imp.kept_mhs102servicetypereferredto as t
join imp.codes as c
  on c.list = 'service_team_type' and c.code_key = code_key(t.team_type)
where c.contract_value = 'crisis_episode'
order by 1
