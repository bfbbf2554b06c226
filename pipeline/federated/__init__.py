"""Federated analysis: each site exports an aggregate bundle, the coordinating centre pools them.

Pilot sites are separate NHS trusts; many cannot send row-level records anywhere. The unit
of distribution is the site: :func:`export_bundle` writes, from one site's warehouse, a
folder of Parquet tables of aggregates and a ``manifest.json``; :func:`read_bundle`
validates a bundle on its own, :func:`pool_bundles` checks bundles against each other and
pools them, and :mod:`pipeline.federated.pooled_report` writes the disclosure-controlled report.

A bundle holds (bundle schema version :data:`SCHEMA_VERSION`; columns and types in
:data:`BUNDLE_SCHEMA`):

``risk_sets.parquet``
    per outcome of ``derived.time_to_event`` and arm, one row per distinct observed time
    (a time with an event, a competing death or a censoring): ``time, n_risk, n_event``
    (cause 1, the outcome), ``n_competing`` (cause 2, competing death), ``n_censor``.
    The multiset of (time, status) pairs is a sufficient statistic for the Kaplan-Meier
    and Aalen-Johansen estimators, and these counts are that multiset, so the pooled
    curves are *exact*: summed over sites they are the counts of the pooled rows.
``site_effects.parquet``
    the site's estimate of each of the three primary contrasts of the single-site analysis
    (comparison arm against the reference arm), computed as :mod:`pipeline.analyse` does
    for the whole study, within the site: the log hazard ratio of relapse (Cox model,
    deaths censored, model-based se, as :func:`pipeline.analyse.site_effects`), the log
    rate ratio of involuntary admissions (``analyse.rate_family`` log-linear model, offset
    log person-years) and the risk difference of being in work or education at 2 years
    (Wald variance; the single-site report shows the Newcombe interval of the same
    estimate, which has no single variance). Each with its variance, or a null estimate
    and the reason when it is not estimable. Variances allow for clustering within the
    site (HC0 cluster-robust rate ratio, design-effect inflated risk difference) when the
    site has at least two clusters in each arm; otherwise they are model-based and
    ``method`` says so. (The whole-study analysis uses the delete-one-cluster jackknife
    for its rate ratio by default; within a site the sandwich is kept.)
``table_one.parquet``
    Table 1 sufficient statistics per arm for each ``analyse.table_one`` variable: the
    arm's people (``kind`` ``people``); categorical variables: people per level
    (``level``) and missing (``missing``); continuous ones: ``n``, ``value_sum``,
    ``value_sum2`` (``continuous``) and missing. For ``analyse.nonnormal`` variables whose
    values are whole numbers (counts such as prior admissions) also the people per value
    (``value``), from which the pooled median and quartiles are exact; other non-normal
    variables cannot have their median pooled, and the pooled table shows mean (SD).
``fidelity.parquet``
    per fidelity indicator and arm the numerator and denominator the metrics stage's
    fidelity cells are built from (``pipeline/sql/federated/fidelity_site.sql``):
    ``n_referrals``, ``value_sum``, ``value_sum2``. Binary indicators and shares pool
    exactly; the median hours to the first meeting cannot be pooled (its mean can).
``validation_tables.parquet``, ``validation_rules.parquet``
    the validation summary: rows received, clean and quarantined per input table, and
    quarantined rows per rule. When the warehouse holds this site alone, every row of it
    (the site's own loads, as in ``meta.validation_counts``); in a warehouse of several
    sites, the rows placed in this site as the validate stage places them (by the person's
    site), and rows that cannot be placed in a site (orphans) are in no bundle. The
    manifest's ``validation_scope`` says which.
``manifest.json``
    bundle schema version, site, creation time, odeval and package versions, the sha256 of
    the derive parameters, the analysis and disclosure settings, the sha256 of every input
    file (``meta.loads``) and of every bundle file, what each file holds and what is exact.

No row-level data, no person, staff, referral or contact identifier: only the site's own
label, outcome, arm, variable, level, indicator, table and rule names, times in days,
counts, sums and estimates.

Disclosure (``params.yaml`` ``federated:``, recorded in the manifest; pooling refuses
bundles whose settings differ):

* ``round_risk_sets: false`` (default): risk-set counts are exact, so small cells (one
  event at a day) occur; that is for the data-sharing agreement under which a bundle
  leaves a site. ``true``: each arm's cumulative counts of events, deaths and censorings
  are rounded to multiples of the curve step (:func:`pipeline.disclosure.curve_step`,
  10 by default), as the report's curves are; the pooled Kaplan-Meier and
  Aalen-Johansen are then approximate (steps moved by up to half a step of people).
* ``round_counts: false`` (default): Table 1, fidelity, validation and site-effect counts
  are exact. ``true``: every such count is rounded to ``disclosure.round_to``; a
  continuous variable's (or share's) sums are rescaled to its rounded n so that the
  site's mean and SD stay exact. Pooled counts, percentages, means, SDs and SMDs are
  then approximate (the sites are weighted by rounded counts); totals checked on read
  may differ by the rounding.
* Site effects (estimates and variances) are never rounded.

A bundle is validated on read (:func:`read_bundle`): the manifest, every file's sha256,
each file's columns and types, values (no nulls where not allowed, counts >= 0, known
vocabularies), unique keys and totals adding up; each violation is an
:class:`~pipeline.errors.OdevalError` naming the bundle file and a rule
``bundle.<file>.<check>``.

Modules, by role: :mod:`~pipeline.federated.bundle` (the format both sides share),
:mod:`~pipeline.federated.export` (what leaves a site), :mod:`~pipeline.federated.checks`
(a bundle checked on read), :mod:`~pipeline.federated.pooling` (pooling at the coordinating
centre) and :mod:`~pipeline.federated.pooled_report` (the pooled report for people). The
names below are re-exported so that ``pipeline.federated.X`` keeps working.
"""

from __future__ import annotations

from pipeline.federated.bundle import (  # noqa: F401
    with_n_risk,
    BUNDLE_SCHEMA,
    DEFAULTS,
    FEDERATED_SQL_DIR,
    FIDELITY,
    FIDELITY_KINDS,
    MANIFEST,
    MEASURES,
    RISK_SETS,
    RISK_SET_COLUMNS,
    SCHEMA_VERSION,
    SITE_EFFECTS,
    TABLE_ONE,
    TABLE_ONE_KINDS,
    VALIDATION_RULES,
    VALIDATION_TABLES,
    _analyse_settings,
    _sha256,
    _versions,
    derive_params_hash,
    disclosure_settings,
    rescale_moments,
    round_half_up)
from pipeline.federated.export import (  # noqa: F401
    _arms,
    _clusters,
    _effect,
    _is_whole,
    _manifest,
    _run_sql,
    _sql,
    _write_parquet,
    apply_count_rounding,
    export_bundle,
    hazard_ratio_effect,
    rate_ratio_effect,
    risk_difference_effect,
    rounded_risk_sets,
    site_effects,
    site_fidelity,
    site_risk_sets,
    site_validation,
    table_one_stats)
from pipeline.federated.checks import (  # noqa: F401
    _adds_up,
    _check_key,
    _check_values,
    _check_vocab,
    _moments_ok,
    _read_manifest,
    _read_table,
    _refuse,
    check_bundle,
    read_bundle)
from pipeline.federated.pooling import (  # noqa: F401
    Pooled,
    _check_same,
    expand,
    freq_quantiles,
    meta_effects,
    pool,
    pool_bundles,
    pool_fidelity,
    pool_risk_sets,
    pool_table_one,
    pool_validation,
    write_exact)
