"""Federated export and pooling (pipeline/federated.py) on a small individually randomised
study: 400 people in 3 sites, each site's bundle exported from the one warehouse, pooled,
and compared with the same estimators run on the pooled rows."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import federated
from pipeline.errors import OdevalError
from pipeline.params import load_params, section


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    from pipeline.derive import derive
    from pipeline.ingest import ingest
    from pipeline.synth import generate_study
    from pipeline.validate import validate
    from pipeline.warehouse import connect

    root = tmp_path_factory.mktemp("federated")
    generate_study(root / "raw", people=400, sites=3, seed=5, design="individual")
    params = load_params()
    con = connect(root / "warehouse.duckdb", threads=2)
    ingest(con, [root / "raw"], replace=True)
    validate(con, {"great_expectations": False})
    derive(con, section(params, "derive"))
    sites = [r[0] for r in con.execute(
        "select distinct site_id from derived.time_to_event order by 1").fetchall()]
    bundles = [federated.export_bundle(con, s, root / "bundles" / s, params) for s in sites]
    pooled = federated.pool_bundles(bundles, root / "pooled")
    tte = con.execute("select * from derived.time_to_event order by person_id, outcome").df()
    ids = {r[0] for r in con.execute(
        "select person_id from raw.people union select staff_id from raw.staff "
        "union select staff_id from raw.contact_staff union select person_id from clean.people"
    ).fetchall() if r[0] is not None}
    yield dict(root=root, con=con, params=params, sites=sites, bundles=bundles, pooled=pooled,
               tte=tte, ids=ids)
    con.close()


def test_bundle_layout_and_manifest(fed):
    for site, b in zip(fed["sites"], fed["bundles"]):
        m = json.loads((b / "manifest.json").read_text())
        assert m["site"] == site
        assert m["bundle_schema_version"] == federated.SCHEMA_VERSION
        assert m["params_hash"] == federated.derive_params_hash(fed["params"])
        assert set(m["files"]) == {federated.RISK_SETS, federated.SITE_EFFECT}
        assert {i["table"] for i in m["inputs"]} >= {"people", "admissions"}
        assert "exact" in m["exactness"][federated.RISK_SETS]
        assert "data-sharing agreement" in m["disclosure"]
    assert set(fed["pooled"]["files"]) == {"bundles", "risk_sets", "km", "cif", "site_effects",
                                           "site_meta"}
    assert all(p.is_file() for p in fed["pooled"]["files"].values())


def test_pooled_kaplan_meier_equals_pooled_rows_exactly(fed):
    """Survival and n_risk at every observed time, per outcome and arm, are identical
    (difference exactly 0) to pipeline.stats.kaplan_meier on derived.time_to_event, and so
    are the Greenwood se and the limits; the Aalen-Johansen cumulative incidence, its
    n_risk, n_event and delta-method se likewise. The Aalen-Johansen infinitesimal-jackknife
    se is a sum over people of squared influences: the same terms, added in another order
    (the pooled rows come in person_id order, which a bundle does not carry), so it agrees
    to floating-point rounding (rtol 1e-12; observed at most 9e-15 relative)."""
    from pipeline.stats import aalen_johansen, kaplan_meier

    km_pool, cif_pool = fed["pooled"]["km"], fed["pooled"]["cif"]
    outcomes = sorted(fed["tte"]["outcome"].unique())
    assert sorted(km_pool["outcome"].unique()) == outcomes
    for outcome, d in fed["tte"].groupby("outcome", sort=True):
        d = d.assign(ev=(d["event"] == 1).astype(int))
        ref = kaplan_meier(d, "time_days", "ev", group="arm").table
        got = km_pool[km_pool["outcome"] == outcome].reset_index(drop=True)
        assert list(got["arm"]) == list(ref["group"]), outcome
        for col in ("time", "n_risk", "n_event", "n_censor", "survival", "se", "lower", "upper"):
            np.testing.assert_array_equal(got[col].to_numpy(float), ref[col].to_numpy(float),
                                          err_msg=f"{outcome} {col}")
        if (d["event"] > 0).any():
            ref_aj = aalen_johansen(d, "time_days", "event", group="arm").table
            got_aj = cif_pool[cif_pool["outcome"] == outcome].reset_index(drop=True)
            for col in ("time", "cause", "n_risk", "n_event", "cif", "se_delta"):
                np.testing.assert_array_equal(got_aj[col].to_numpy(float),
                                              ref_aj[col].to_numpy(float),
                                              err_msg=f"{outcome} {col}")
            np.testing.assert_allclose(got_aj["se"], ref_aj["se"], rtol=1e-12, atol=0,
                                       err_msg=f"{outcome} se")


def test_meta_analysed_hr_close_to_stratified_cox_on_pooled_rows(fed):
    """The random-effects (REML) pooled log HR of relapse is within 0.2 standard errors of the
    site-stratified Cox log HR on the pooled rows.

    Why 0.2 se: both estimate the same conditional-on-site hazard ratio. The stratified Cox
    model maximises the sum of the sites' partial likelihoods with one common coefficient;
    the inverse-variance (fixed-effect) combination of the site estimates is its one-step
    quadratic approximation, so they differ by O(1/n), small against the sampling error
    O(1/sqrt(n)); REML adds tau^2 to the site variances, which moves the weights a little
    when the sites agree. A difference of a fifth of a standard error or more would mean the
    bundles are not carrying the site estimates and variances faithfully (e.g. a variance
    passed as an se, or the arms swapped), not estimator noise. The prediction interval must
    contain the confidence interval."""
    from pipeline.stats import cox

    d = fed["tte"][fed["tte"]["outcome"] == "relapse"]
    d = d.assign(od=(d["arm"] == "open_dialogue").astype(int), ev=(d["event"] == 1).astype(int))
    strat = cox(d, "time_days", "ev", ["od"], strata="site_id").summary.loc["od"]
    ma = fed["pooled"]["meta"]
    assert ma is not None and ma.k == len(fed["sites"]) and ma.method == "REML"
    assert abs(ma.estimate - strat.coef) <= 0.2 * strat.se, (ma.estimate, strat.coef, strat.se)
    assert ma.pi[0] <= ma.ci[0] and ma.pi[1] >= ma.ci[1]
    # each site's estimate is the within-site Cox fit
    for _, e in fed["pooled"]["site_effects"].iterrows():
        sd = d[d["site_id"] == e["site"]]
        s = cox(sd, "time_days", "ev", ["od"]).summary.loc["od"]
        assert e["log_hr"] == pytest.approx(s.coef, abs=1e-12)
        assert e["variance"] == pytest.approx(s.se ** 2, rel=1e-12)


def _copy(fed, tmp_path) -> list[Path]:
    out = []
    for b in fed["bundles"]:
        shutil.copytree(b, tmp_path / b.name)
        out.append(tmp_path / b.name)
    return out


def test_refuses_mismatched_schema_version(fed, tmp_path):
    bs = _copy(fed, tmp_path)
    mf = bs[1] / "manifest.json"
    m = json.loads(mf.read_text())
    m["bundle_schema_version"] = federated.SCHEMA_VERSION + 1
    mf.write_text(json.dumps(m))
    with pytest.raises(OdevalError) as exc:
        federated.pool_bundles(bs, tmp_path / "out")
    assert exc.value.rule == "federated.pool.schema_version"
    assert str(bs[1]) in str(exc.value) and "schema version" in str(exc.value)


def test_refuses_mismatched_params_hash(fed, tmp_path):
    params = {**fed["params"], "derive": {**section(fed["params"], "derive"), "follow_up_days": 365}}
    other = federated.export_bundle(fed["con"], fed["sites"][2], tmp_path / "other", params)
    with pytest.raises(OdevalError) as exc:
        federated.pool_bundles([*fed["bundles"][:2], other], tmp_path / "out")
    assert exc.value.rule == "federated.pool.params_hash"
    assert str(other) in str(exc.value) and "parameters hash" in str(exc.value)


def test_refuses_tampered_file(fed, tmp_path):
    bs = _copy(fed, tmp_path)
    f = bs[0] / federated.RISK_SETS
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(OdevalError) as exc:
        federated.pool_bundles(bs, tmp_path / "out")
    assert exc.value.rule == "federated.bundle.sha256"
    assert str(bs[0]) in str(exc.value) and federated.RISK_SETS in str(exc.value)


def test_refuses_missing_manifest(fed, tmp_path):
    bs = _copy(fed, tmp_path)
    (bs[2] / "manifest.json").unlink()
    with pytest.raises(OdevalError) as exc:
        federated.pool_bundles(bs, tmp_path / "out")
    assert exc.value.rule == "federated.bundle.manifest" and str(bs[2]) in str(exc.value)


IDENTIFIER_NAME = re.compile(r"(^|_)ids?$|person|staff|nhs|referral|contact|patient|cluster",
                             re.IGNORECASE)


def _json_strings(x):
    if isinstance(x, dict):
        for k, v in x.items():
            yield str(k)
            yield from _json_strings(v)
    elif isinstance(x, list):
        for v in x:
            yield from _json_strings(v)
    else:
        yield str(x)


def test_no_identifier_in_any_bundle_file(fed):
    """No bundle file holds a person_id or staff_id value of the warehouse (as a cell, a JSON
    string, or bytes anywhere in the file) nor a column named like an identifier."""
    ids = fed["ids"]
    assert len(ids) > 400
    id_bytes = [i.encode() for i in ids]
    for b in fed["bundles"]:
        for f in sorted(b.iterdir()):
            raw = f.read_bytes()
            assert not [i for i in id_bytes if i in raw], f
            if f.suffix == ".parquet":
                t = pd.read_parquet(f)
                assert not [c for c in t.columns if IDENTIFIER_NAME.search(c)], (f, list(t.columns))
                cells = {str(v) for col in t.columns for v in t[col].unique()}
                assert not cells & ids, f
            else:
                strings = set(_json_strings(json.loads(raw)))
                assert not strings & ids, f


def test_cli_pool(fed, tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["pool", *map(str, fed["bundles"]), "--out", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    km = pd.read_csv(tmp_path / "p" / "km.csv")
    pd.testing.assert_frame_equal(km, pd.read_csv(fed["pooled"]["files"]["km"]))
    bs = _copy(fed, tmp_path / "copy")
    (bs[0] / federated.SITE_EFFECT).write_bytes(b"x")
    res = runner.invoke(app, ["pool", *map(str, bs), "--out", str(tmp_path / "q")])
    assert res.exit_code == 2 and "federated.bundle.sha256" in res.output
