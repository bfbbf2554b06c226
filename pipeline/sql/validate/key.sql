-- rules: <table>.key.duplicate and <table>.key.conflict  (conformance)
-- grain: one row per raw row that shares its (complete) key with another raw row:
--   all copies identical (after normalisation): every copy but the first is a duplicate;
--   the copies differ: every row of that key is a conflict.
-- Only keys held by more than one row are hashed and ranked (found first by grouping the
-- key alone): on a national extract almost every key is unique, and hashing every row's
-- values and grouping the hashes made this the slowest rule.
-- The first pass groups a 64-bit hash of the key, not the key itself (measured: 47 M
-- contact ids 6.0 -> 4.0 s; 77 M contact_staff keys 13.5 s as a struct_pack, 8.0 s as
-- columns, 6.6 s hashed). From then on keys are compared exactly, so two keys that
-- merely share a hash are dropped by `shared` (having count(*) > 1 on the key itself).
with shared_hashes as (
    select hash({key_list}) as kh
    from raw.{table}
    where {key_not_null}
    group by kh
    having count(*) > 1
),
keyed as (
    select _load_id, _row_number, {key_list}, hash({value_columns}) as h
    from raw.{table} as t
    semi join shared_hashes on shared_hashes.kh = hash({key_list})
    where {key_not_null}
),
shared as (
    select {key_list}, count(distinct h) as n_versions
    from keyed
    group by {key_list}
    having count(*) > 1
),
ranked as (
    select keyed._load_id, keyed._row_number, shared.n_versions,
           row_number() over (partition by {key_list} order by keyed._load_id, keyed._row_number) as copy
    from keyed
    join shared using ({key_list})
)
select _load_id, _row_number,
       case when n_versions > 1 then $table || '.key.conflict' else $table || '.key.duplicate' end as rule
from ranked
where n_versions > 1 or copy > 1
