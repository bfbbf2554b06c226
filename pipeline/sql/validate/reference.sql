-- rule: <table>.<column>.reference  (conformance)
-- grain: one row per raw row whose value matches no row of {ref_table} at all (an orphan)
select t._load_id, t._row_number, $rule as rule
from raw.{table} as t
where t.{column} is not null
  and not exists (select 1 from raw.{ref_table} as r where r.{ref_column} = t.{column})
