-- rule: <table>.<column>.reference  (conformance), to an optional table
-- grain: one row per raw row whose value matches no row of {ref_table}, when the extract
-- gives {ref_table} at all (an optional table left out, or given with no rows, checks
-- nothing: e.g. people.cluster_id without a clusters table)
select t._load_id, t._row_number, $rule as rule
from raw.{table} as t
anti join raw.{ref_table} as r on r.{ref_column} = t.{column}
where t.{column} is not null
  and exists (select 1 from raw.{ref_table})
