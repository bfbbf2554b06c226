-- name:  flow (temporary table of the metrics stage)
-- grain: one row per site (or '(unknown)' for rows that cannot be placed) and table
-- key:   (site_id, table_name)
--
-- The records of the flow diagram and the data-quality figures: rows in, clean and
-- quarantined per site and input table, from results.dq_tables (written by validate).

select site_id, table_name, n_raw, n_clean, n_quarantined
from results.dq_tables
order by site_id, table_name
