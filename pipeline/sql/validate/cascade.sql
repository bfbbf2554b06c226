-- rule: <table>.<column>.person_quarantined / contact_quarantined  (conformance)
-- grain: one row per raw row that refers to a row that exists in raw.{ref_table} but has
-- no clean row (it was quarantined): events of a quarantined person go with it
-- Every raw row is clean or quarantined, so "in raw and not clean" is "in quarantine and
-- not clean": the keys are found from the (small) quarantine table first, then the rows
-- that refer to them, instead of joining every row to the raw and clean tables (20 s -> 2 s
-- for 77 M contact_staff rows).
select t._load_id, t._row_number, $rule as rule
from raw.{table} as t
where t.{column} is not null
  and t.{column} in (select q.{ref_column} from quarantine.{ref_table} as q
                     where not exists (select 1 from clean.{ref_table} as c
                                       where c.{ref_column} = q.{ref_column}))
