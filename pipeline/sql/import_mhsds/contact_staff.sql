-- name:  imp.out_contact_staff
-- grain: one row per contact written and member of staff recorded at one of its care
--        activities (MHS202CareActivity.CareProfLocalId, latest version of each activity)
-- key:   (contact_id, staff_id)
--
-- staff_id is the trust's local care professional id: the staff register given with
-- --local must use the same ids.

select distinct a.contact_id, a.staff_id
from imp.kept_mhs202careactivity as a
semi join imp.out_contacts as c using (contact_id)
where a.staff_id is not null
order by contact_id, staff_id
