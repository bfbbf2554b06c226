-- rule: <table>.<column>.required  (completeness)
-- grain: one row per raw row whose required value is empty (an untypable value is a
-- type failure, not a missing one)
select _load_id, _row_number, $rule as rule
from raw.{table}
where {column} is null
  and not coalesce(list_contains(list_transform(_untyped, lambda u: u."column"), $column), false)
