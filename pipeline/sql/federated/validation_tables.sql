-- name:  validation_tables (federated export: the site's validation summary)
-- grain: one row per contract table
-- key:   table_name
-- parameters: $site, $whole_warehouse
--
-- Rows received (raw), clean and quarantined per input table, counted over
-- fed_validation_rows (validation_rows.sql). With $whole_warehouse true (the warehouse
-- holds this site alone: every row came from the site's own extracts) every row counts,
-- including rows that cannot be placed in a site (orphans); otherwise only the rows placed
-- in $site, and orphans are in no site's bundle. n_raw = n_clean + n_quarantined.

with rows as (
    select * from fed_validation_rows
    where $whole_warehouse or site_id = $site
),

tables as (
    select
        table_name,
        count(*)                                  as n_raw,
        count(*) filter (where rules is null)     as n_clean,
        count(rules)                              as n_quarantined
    from rows
    group by table_name
)

select * from tables
order by table_name
