-- name:  fidelity_site (federated export: the site's fidelity aggregates)
-- grain: one row per arm and fidelity indicator of one site
-- key:   (indicator, arm)
-- parameters: $site (the site_id whose bundle is written)
--
-- The site's cells of the metrics stage's fidelity_cells (pipeline/sql/metrics/
-- fidelity_cells.sql, built as a temporary table from derived.fidelity_referral just
-- before), so a pooled cell is the sum of the sites' cells:
--   n_referrals  denominator: referrals of the arm where the indicator is not null
--   value_sum    numerator: referrals with the indicator true (kind 'binary'), or the sum
--                of the referrals' shares ('share') or hours ('hours'); 0 when no referral
--   value_sum2   sum of squares of the same values (equal to value_sum for 'binary')
-- Margins (the site's two arms together) are sums of these rows and are not stored; the
-- median hours of the metrics stage cannot be summed and is not stored either. Principle 6
-- has no row (not measurable from records).

with cells as (
    select * from fidelity_cells
),

site as (
    select
        indicator,
        kind,
        arm,
        n_referrals,
        coalesce(value_sum, 0.0)  as value_sum,
        coalesce(value_sum2, 0.0) as value_sum2
    from cells
    where site_id = $site
      and arm <> 'all'
)

select * from site
order by indicator, arm
