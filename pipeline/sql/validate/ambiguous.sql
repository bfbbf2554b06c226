-- rule: <table>.<column>.ambiguous  (conformance)
-- grain: one row per raw row whose {column}, which other tables refer to on its own, belongs
-- to more than one key (e.g. the same person_id at two sites): every such row is
-- quarantined, since no event could say which one it means
select t._load_id, t._row_number, $rule as rule
from raw.{table} as t
where t.{column} in (
    select {column}
    from raw.{table}
    where {column} is not null
    group by {column}
    having count(distinct {key_columns}) > 1
)
