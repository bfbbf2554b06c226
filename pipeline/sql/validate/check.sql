-- rule: a `checks:` entry of the table's schema  (category as declared)
-- grain: one row per raw row for which the check's SQL is false (null passes)
select _load_id, _row_number, $rule as rule
from raw.{table}
where not coalesce(({check_sql}), true)
