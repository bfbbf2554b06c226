-- rule: <table>.<column>.same_as  (conformance)
-- grain: one row per raw row whose {column} differs from {ref_column} of the clean
-- {ref_table} row its {via} names (e.g. a person whose arm is not the arm their cluster was
-- randomised to). Compared with the clean row, validated first, so a quarantined
-- {ref_table} row quarantines nothing else; nulls on either side pass (other rules see them).
-- {this_value} is lower-cased for a vocabulary column (clean holds it lower-cased).
select t._load_id, t._row_number, $rule as rule
from raw.{table} as t
inner join clean.{ref_table} as r on r.{ref_key} = t.{via}
where {this_value} <> r.{ref_column}
