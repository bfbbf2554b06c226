-- rule: <table>.<column>.after_data_end  (plausibility)
-- grain: one row per raw event row dated after its person's data_end_date plus the tolerance
select t._load_id, t._row_number, $rule as rule
from raw.{table} as t
join clean.people as p on p.person_id = t.person_id
where cast(t.{column} as date) > p.data_end_date + cast($tolerance_days as integer)
