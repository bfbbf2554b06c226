-- rule: <table>.<column>.range  (plausibility)
-- grain: one row per raw row outside [min, max] or not above min_exclusive (unset bounds are null)
select _load_id, _row_number, $rule as rule
from raw.{table}
where {column} < $min
   or {column} > $max
   or {column} <= $min_exclusive
