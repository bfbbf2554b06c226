-- name:  derived.clusters
-- grain: one row per cluster (unit of randomisation)
-- key:   cluster_id
--
-- Every row of clean.clusters (the optional randomisation list), and every other
-- cluster_id that people carry.
-- The clusters of a cluster-randomised trial, for the CONSORT-cluster flow and the
-- cluster-level covariates of the analysis plan:
--   listed         the clusters table lists it (false: only people name it, e.g. an extract
--                  without a clusters table)
--   n_people       people of derived.people in it (0: allocated, no one recruited)
--   site_id, arm   the listed values, else those of its people (validation quarantines a
--                  person whose arm or site differs from the listed cluster's)
--   randomised_on, list_size, imd_decile   as listed (null when not listed)
--   extra_columns  the clusters file's other columns (name -> text), cluster covariates
-- No rows in an individually randomised or observational extract (no cluster_id).

with listed as (
    select cluster_id, site_id, arm, randomised_on, list_size, imd_decile, _extra
    from clean.clusters
),

seen as (
    select cluster_id, min(site_id) as site_id, min(arm) as arm, count(*) as n_people
    from derived.people
    where cluster_id is not null
    group by cluster_id
),

final as (
    select
        coalesce(l.cluster_id, s.cluster_id)   as cluster_id,
        coalesce(l.site_id, s.site_id)         as site_id,
        coalesce(l.arm, s.arm)                 as arm,
        l.cluster_id is not null               as listed,
        coalesce(s.n_people, 0)                as n_people,
        l.randomised_on,
        l.list_size,
        l.imd_decile,
        l._extra                               as extra_columns
    from listed as l
    full outer join seen as s on s.cluster_id = l.cluster_id
)

select * from final
order by cluster_id
