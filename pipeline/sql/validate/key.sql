-- rules: <table>.key.duplicate and <table>.key.conflict  (conformance)
-- grain: one row per raw row that shares its (complete) key with another raw row:
--   all copies identical (after normalisation): every copy but the first is a duplicate;
--   the copies differ: every row of that key is a conflict.
-- Only keys held by more than one row are hashed and ranked (found first by grouping the
-- key alone): on a national extract almost every key is unique, and hashing every row's
-- values and grouping the hashes made this the slowest rule.
with shared_keys as (
    select {key_columns} as k
    from raw.{table}
    where {key_not_null}
    group by all
    having count(*) > 1
),
keyed as (
    select _load_id, _row_number, {key_columns} as k, hash({value_columns}) as h
    from raw.{table}
    where {key_not_null}
      and {key_columns} in (select k from shared_keys)
),
shared as (
    select k, count(distinct h) as n_versions
    from keyed
    group by k
),
ranked as (
    select keyed._load_id, keyed._row_number, shared.n_versions,
           row_number() over (partition by keyed.k order by keyed._load_id, keyed._row_number) as copy
    from keyed
    join shared on keyed.k = shared.k
)
select _load_id, _row_number,
       case when n_versions > 1 then $table || '.key.conflict' else $table || '.key.duplicate' end as rule
from ranked
where n_versions > 1 or copy > 1
