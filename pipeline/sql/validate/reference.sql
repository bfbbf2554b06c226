-- rule: <table>.<column>.reference  (conformance)
-- grain: one row per raw row whose value matches no row of {ref_table} at all (an orphan)
-- An ANTI JOIN, not NOT EXISTS: DuckDB plans the correlated NOT EXISTS as a mark join,
-- 25 s instead of 6.6 s for 77 M contact_staff rows against 47 M contacts (measured).
select t._load_id, t._row_number, $rule as rule
from raw.{table} as t
anti join raw.{ref_table} as r on r.{ref_column} = t.{column}
where t.{column} is not null
