"""The fixed pipeline against the attacker (``odeval check-outputs --attack``): what odeval
publishes now gives no hidden or rounded count back through any channel the attacker knows
(the channels themselves are shown rebuilding counts from the pre-policy outputs in
``tests/unit/test_attack.py``). ``odeval report`` and ``odeval pool`` refuse to publish on
any finding, so every report built by the tests passes it too; these tests say so
explicitly and cover the faulty 400-person 4-site study of issue 18."""

from __future__ import annotations

import pytest

from pipeline import disclosure
from pipeline.check_outputs import check
from pipeline.params import load_params


def test_the_study_report_with_its_data_quality_report_passes_the_attacker(study):
    cfg = disclosure.settings(study.params)
    found = [b for b in check(study.reports, cfg, attack=True) if b.rule.startswith("attack.")]
    assert found == []


@pytest.mark.slow
def test_a_faulty_400_person_4_site_study_and_its_pooled_report_pass_the_attacker(tmp_path):
    """``odeval synth --people 400 --sites 4 --faults 0.02``, every stage, the report, one
    bundle per site and the pooled report: report.build and pool would raise on a finding;
    the folders are attacked again here, together."""
    from pipeline import analyse, federated, metrics, report
    from pipeline.derive import derive
    from pipeline.ingest import ingest
    from pipeline.params import section
    from pipeline.synth import generate_study
    from pipeline.validate import validate
    from pipeline.warehouse import connect

    params = load_params()
    cfg = disclosure.settings(params)
    raw, reports = tmp_path / "raw", tmp_path / "reports"
    generate_study(raw, people=400, sites=4, seed=20261125, faults=0.02)
    con = connect(tmp_path / "w.duckdb", threads=2)
    try:
        ingest(con, [raw], replace=True)
        validate(con, section(params, "validate"), report_dir=reports,
                 disclosure=section(params, "disclosure"))
        derive(con, section(params, "derive"))
        metrics.run(con, params, reports / "metrics")
        analyse.run(con, params)
        report.build(con, params, reports)
        sites = [r[0] for r in con.execute(
            "select distinct site_id from derived.people order by 1").fetchall()]
        bundles = [federated.export_bundle(con, s, tmp_path / "b" / s, params) for s in sites]
    finally:
        con.close()
    federated.pool(bundles, tmp_path / "pooled", params)
    for folder in (reports, tmp_path / "pooled"):
        found = [b for b in check(folder, cfg, attack=True) if b.rule.startswith("attack.")]
        assert found == [], folder
