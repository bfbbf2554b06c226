-- rule: <table>.<column>.not_before  (plausibility)
-- grain: one row per raw row where {column} is earlier than {other} (either missing: passes)
select _load_id, _row_number, $rule as rule
from raw.{table}
where {column} < {other}
