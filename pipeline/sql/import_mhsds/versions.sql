-- name:  imp.ver_{table}
-- grain: one row per input row of MHSDS table {table} (every file); key (_load_id, _row_number)
--
-- The fate of each submitted row. A record ({record}) is submitted again every month
-- while it is open, and may come twice in one month (a refresh submission, or a copy per
-- commissioner). Its latest version wins: highest UniqMonthID, then highest
-- UniqSubmissionID (a later submission for that month), then the first file (by name)
-- and row, a stable tie-break for exact copies.
--
--   invalid     the validity flag says N (a submission that is not valid or not the
--               latest), or UniqMonthID, Person_ID or a record column is empty; never
--               a version
--   kept        the one row of the latest version (set tables: every distinct row of the
--               latest version of the set; rows are told apart by {row_id_text})
--   duplicate   another row of the same UniqMonthID and UniqSubmissionID as the kept one
--   superseded  a row of an earlier month or an earlier submission
--
-- Filled from pipeline/reference/mhsds/tables.yaml by pipeline/importers/mhsds.py:
-- {{table}}, {{record}} (the record columns), {{record_missing}} (a SQL test that one is
-- empty), {{copy_by}} (set tables: ", <row identity>"). No parameter values.

create or replace table imp.ver_{table} as
with staged as (
    select
        *,
        case
            when upper(validity_flag) = 'N' then 'flagged invalid'
            when uniq_month_id is null then 'no UniqMonthID'
            when person_id is null then 'no Person_ID'
            when {record_missing} then 'no record key'
        end as _why_invalid
    from imp.stg_{table}
),

valid as (
    select
        *,
        first_value(uniq_month_id) over latest as win_month,
        first_value(submission_id) over latest as win_submission
    from staged
    where _why_invalid is null
    window latest as (
        partition by {record}
        order by uniq_month_id desc, submission_id desc nulls last, _file, _row_number
    )
),

same_version as (          -- rows of the winning version; the first copy of each is kept
    select
        _load_id,
        _row_number,
        row_number() over (partition by {record}{copy_by} order by _file, _row_number) as copy_rank
    from valid
    where uniq_month_id = win_month
      and submission_id is not distinct from win_submission
),

classified as (
    select
        v.* exclude (win_month, win_submission),
        case
            when s.copy_rank = 1 then 'kept'
            when s.copy_rank > 1 then 'duplicate'
            else 'superseded'
        end as _fate
    from valid as v
    left join same_version as s using (_load_id, _row_number)
)

select * from classified
union all by name
select *, 'invalid' as _fate from staged where _why_invalid is not null
