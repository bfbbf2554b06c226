-- rule: <table>.<column>.vocabulary  (conformance)
-- grain: one row per raw row whose value, lower-cased, is not in the vocabulary
select _load_id, _row_number, $rule as rule
from raw.{table}
where {column} is not null
  and not list_contains($vocabulary, lower({column}))
