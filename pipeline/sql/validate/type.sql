-- rule: <table>.<column>.type  (conformance)
-- grain: one row per raw row and column whose value could not be typed at ingest
select _load_id, _row_number, $table || '.' || u."column" || '.type' as rule
from (
    select _load_id, _row_number, unnest(_untyped) as u
    from raw.{table}
    where _untyped is not null
) as untyped_values
