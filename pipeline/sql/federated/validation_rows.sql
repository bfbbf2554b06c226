-- name:  fed_validation_rows (temporary table of the federated export), filled one
--        contract table at a time: {table} is the table, {site_join} / {site} the join and
--        expression dq_report.site_join gives it (the validate stage's own placement)
-- grain: one row per raw row of raw.{table}
-- key:   (table_name, _load_id, _row_number)
-- parameters: $table_name
--
-- Each raw row with the site it belongs to and, when validation quarantined it, the rules
-- it broke (quarantine.<table>._rules; null for a clean row: every raw row is in exactly
-- one of clean and quarantine, meta.validation_counts). The site is placed as the
-- validate stage's data-quality results place it: people and staff by their own site_id,
-- rows with a person_id by that person's site in raw.people (the smallest site_id if the
-- pseudonym occurs in several), contact_staff through its contact's person. A row whose
-- person or contact is not in raw (an orphan) has site_id null.

select $table_name as table_name, r._load_id, r._row_number, {site} as site_id, q._rules as rules
from raw.{table} as r
{site_join}
left join quarantine.{table} as q
  on q._load_id = r._load_id and q._row_number = r._row_number
