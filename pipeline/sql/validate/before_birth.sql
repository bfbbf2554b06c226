-- rule: <table>.<column>.before_birth  (plausibility)
-- grain: one row per raw event row dated before 1 January of its person's birth_year
select t._load_id, t._row_number, $rule as rule
from raw.{table} as t
join clean.people as p on p.person_id = t.person_id
where year(cast(t.{column} as date)) < p.birth_year
