-- rule: <table>.<column>.after_extract  (plausibility)
-- grain: one row per raw row with a date after the extract date
select _load_id, _row_number, $rule as rule
from raw.{table}
where cast({column} as date) > $extract_date
