-- name:  validation_rules (federated export: quarantined rows per rule)
-- grain: one row per input table and validation rule that quarantined at least one row
-- key:   (table_name, rule_id)
-- parameters: $site, $whole_warehouse
--
-- The same rows as validation_tables.sql; a quarantined row lists every rule it broke
-- (distinct), so n_rows counts rows, each rule's n_rows is at most the table's
-- n_quarantined and the rules of a table add up to at least its n_quarantined.

with rows as (
    select * from fed_validation_rows
    where ($whole_warehouse or site_id = $site)
      and rules is not null
),

broken as (
    select table_name, unnest(rules) as rule_id
    from rows
),

rules as (
    select table_name, rule_id, count(*) as n_rows
    from broken
    group by table_name, rule_id
)

select * from rules
order by table_name, rule_id
