-- rule: <table>.<column>.person_quarantined / contact_quarantined  (conformance)
-- grain: one row per raw row that refers to a row that exists in raw.{ref_table} but has
-- no clean row (it was quarantined): events of a quarantined person go with it
select t._load_id, t._row_number, $rule as rule
from raw.{table} as t
where t.{column} is not null
  and exists (select 1 from raw.{ref_table} as r where r.{ref_column} = t.{column})
  and not exists (select 1 from clean.{ref_table} as c where c.{ref_column} = t.{column})
