"""Federated export and pooling (pipeline/federated/: export, checks, pooling, pooled_report) on a
small individually randomised study with injected data-quality faults: 400 people in 3
sites, each site's bundle exported from the one warehouse, pooled, and compared with the
same estimators run on the pooled rows (the warehouse's own tables)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline import federated
from pipeline.config import PROJ_ROOT
from pipeline.errors import OdevalError
from pipeline.params import load_params, section

ARMS = ("open_dialogue", "usual_care")


def _build_warehouse(root: Path, *, people: int, sites: int, seed: int, faults: float) -> Path:
    from pipeline.derive import derive
    from pipeline.ingest import ingest
    from pipeline.synth import generate_study
    from pipeline.validate import validate
    from pipeline.warehouse import connect

    generate_study(root / "raw", people=people, sites=sites, seed=seed, design="individual",
                   faults=faults)
    wh = root / "warehouse.duckdb"
    con = connect(wh, threads=2)
    try:
        ingest(con, [root / "raw"], replace=True)
        validate(con, {"great_expectations": False})
        derive(con, section(load_params(), "derive"))
    finally:
        con.close()
    return wh


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    from pipeline import metrics

    root = tmp_path_factory.mktemp("federated")
    wh = _build_warehouse(root, people=400, sites=3, seed=5, faults=0.02)
    params = load_params()
    con = duckdb.connect(str(wh), read_only=True)
    sites = [r[0] for r in con.execute(
        "select distinct site_id from derived.time_to_event order by 1").fetchall()]
    bundles = [federated.export_bundle(con, s, root / "bundles" / s, params) for s in sites]
    pooled, report = federated.pool(bundles, root / "pooled", params, exact_dir=root / "exact")
    tte = con.execute("select * from derived.time_to_event order by person_id, outcome").df()
    persons = metrics.person_frame(con, params.get("metrics"))
    ids = {r[0] for r in con.execute(
        "select person_id from raw.people union select staff_id from raw.staff "
        "union select staff_id from raw.contact_staff union select person_id from clean.people "
        "union select referral_id from raw.referrals union select contact_id from raw.contacts"
    ).fetchall() if r[0] is not None}
    yield dict(root=root, warehouse=wh, con=con, params=params, sites=sites, bundles=bundles,
               pooled=pooled, report=report, tte=tte, persons=persons, ids=ids)
    con.close()


def _table(bundle: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(bundle / name)


# --------------------------------------------------------------------------- layout

def test_bundle_layout_and_manifest(fed):
    for site, b in zip(fed["sites"], fed["bundles"]):
        m = json.loads((b / "manifest.json").read_text())
        assert m["site"] == site
        assert m["bundle_schema_version"] == federated.SCHEMA_VERSION
        assert m["params_hash"] == federated.derive_params_hash(fed["params"])
        assert set(m["files"]) == set(federated.BUNDLE_SCHEMA)
        assert sorted(p.name for p in b.iterdir()) == sorted([*federated.BUNDLE_SCHEMA,
                                                              "manifest.json"])
        assert {i["table"] for i in m["inputs"]} >= {"people", "admissions"}
        assert m["disclosure_settings"] == {"round_risk_sets": False, "round_counts": False,
                                            "round_to": 5, "curve_step": 10}
        assert m["analysis_settings"]["table_one"] == section(fed["params"], "analyse")["table_one"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", m["created_at"])
        assert {"python", "odeval", "duckdb", "pandas", "pyarrow"} <= set(m["versions"])
        assert "exact" in m["exactness"][federated.RISK_SETS]
        assert "3 sites" in m["validation_scope"]
        assert "data-sharing agreement" in m["disclosure_note"]
    out = fed["report"].parent
    assert fed["report"].is_file()
    assert sorted(p.name for p in (out / "tables").iterdir()) == sorted(
        f"{n}.csv" for n in ("bundles", "people", "curve_counts", "site_effects", "site_meta",
                             "table_one", "fidelity", "validation", "validation_rules"))
    # no forest of site risk differences: with their Wald intervals they give back the
    # per-arm counts, which the pooled report does not show (output policy, issue 18)
    assert {p.stem for p in (out / "figures").glob("*.svg")} == {
        "relapse_km", "relapse_cif", "forest_log_hazard_ratio", "forest_log_rate_ratio"}
    assert sorted(p.stem for p in (fed["root"] / "exact").iterdir()) == sorted(
        fed["pooled"].exact_tables())


def test_two_exports_of_a_site_are_identical_but_for_the_creation_time(fed, tmp_path):
    a = federated.export_bundle(fed["con"], fed["sites"][1], tmp_path / "a", fed["params"])
    b = federated.export_bundle(fed["con"], fed["sites"][1], tmp_path / "b", fed["params"])
    for name in federated.BUNDLE_SCHEMA:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
        assert (a / name).read_bytes() == (fed["bundles"][1] / name).read_bytes(), name
    ma, mb = (json.loads((x / "manifest.json").read_text()) for x in (a, b))
    ma.pop("created_at"), mb.pop("created_at")
    assert ma == mb


def test_pooling_twice_gives_byte_identical_report_tables_and_figures(fed, tmp_path):
    federated.pool(fed["bundles"], tmp_path / "again", fed["params"])
    first = fed["report"].parent
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*")
                  if p.is_file()) == files
    assert [str(f) for f in files if (first / f).read_bytes()
            != (tmp_path / "again" / f).read_bytes()] == []


# --------------------------------------------------------------------------- exactness

def test_pooled_kaplan_meier_equals_pooled_rows_exactly(fed):
    """Survival and n_risk at every observed time, per outcome and arm, are identical
    (difference exactly 0) to pipeline.stats.kaplan_meier on derived.time_to_event, and so
    are the Greenwood se and the limits; the Aalen-Johansen cumulative incidence, its
    n_risk, n_event and delta-method se likewise. The Aalen-Johansen infinitesimal-jackknife
    se is a sum over people of squared influences: the same terms, added in another order
    (the pooled rows come in person_id order, which a bundle does not carry), so it agrees
    to floating-point rounding (rtol 1e-12; observed at most 9e-15 relative)."""
    from pipeline.stats import aalen_johansen, kaplan_meier

    km_pool, cif_pool = fed["pooled"].km, fed["pooled"].cif
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
    site-stratified Cox log HR on the pooled rows (observed: 0.07 se on this study).

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
    ma = fed["pooled"].meta["log hazard ratio"]
    assert ma.k == len(fed["sites"]) and ma.method == "REML"
    assert abs(ma.estimate - strat.coef) <= 0.2 * strat.se, (ma.estimate, strat.coef, strat.se)
    assert ma.pi[0] <= ma.ci[0] and ma.pi[1] >= ma.ci[1]
    effects = fed["pooled"].site_effects
    for _, e in effects[effects["measure"] == "log hazard ratio"].iterrows():
        sd = d[d["site_id"] == e["site"]]
        s = cox(sd, "time_days", "ev", ["od"]).summary.loc["od"]
        assert e["estimate"] == pytest.approx(s.coef, abs=1e-12)
        assert e["variance"] == pytest.approx(s.se ** 2, rel=1e-12)


def _nb_rate_ratio(d: pd.DataFrame) -> tuple[float, float]:
    """Log rate ratio (open dialogue vs usual care) of involuntary admissions and its se from
    statsmodels: NB2 GLMs with offset log person-years, the dispersion profiled by maximum
    likelihood with scipy, se at that dispersion (as MASS::glm.nb reports it). Written apart
    from pipeline.stats.rate_ratio, which the bundle used."""
    import statsmodels.api as sm
    from scipy import optimize

    d = d[d["involuntary_person_years"] > 0]
    X = sm.add_constant((d["arm"] == "open_dialogue").astype(float).to_numpy())
    y = d["involuntary_count"].to_numpy(float)
    off = np.log(d["involuntary_person_years"].to_numpy(float))

    def fit(log_alpha):
        return sm.GLM(y, X, family=sm.families.NegativeBinomial(alpha=np.exp(log_alpha)),
                      offset=off).fit(tol=1e-12, maxiter=200)

    best = optimize.minimize_scalar(lambda la: -fit(la).llf, bounds=(-25, 5), method="bounded",
                                    options={"xatol": 1e-10})
    f = fit(best.x)
    return float(f.params[1]), float(f.bse[1])


def test_site_rate_ratios_and_risk_differences_and_their_meta_analyses(fed):
    """Each bundle's log rate ratio and risk difference equal estimates computed apart from
    the rows of that site (statsmodels for the negative binomial rate ratio; the difference
    of proportions and its Wald variance by hand), and the pooled random-effects estimates,
    intervals and prediction intervals equal pipeline.stats.meta_analysis run on those
    independent site estimates. Tolerances: 1e-6 on the negative binomial estimates (the
    two fits stop at different points of the likelihood's flat top: observed differences
    below 3e-9), 1e-12 on the risk differences (closed form)."""
    from pipeline.stats import meta_analysis

    p = fed["persons"]
    effects = fed["pooled"].site_effects.set_index(["site", "measure"])
    rr, rd = [], []
    for site in fed["sites"]:
        d = p[p["site_id"] == site]
        coef, se = _nb_rate_ratio(d)
        e = effects.loc[(site, "log rate ratio")]
        assert e.estimate == pytest.approx(coef, abs=1e-6), site
        assert e.se == pytest.approx(se, rel=1e-6), site
        rr.append((coef, se ** 2))
        w = d[d["rtw_2y"].notna()]
        y = w["rtw_2y"].astype(float)
        p1, p0 = y[w["arm"] == "open_dialogue"].mean(), y[w["arm"] == "usual_care"].mean()
        n1, n0 = (w["arm"] == "open_dialogue").sum(), (w["arm"] == "usual_care").sum()
        var = p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0
        e = effects.loc[(site, "risk difference")]
        assert e.estimate == pytest.approx(p1 - p0, abs=1e-12), site
        assert e.variance == pytest.approx(var, rel=1e-12), site
        rd.append((p1 - p0, var))
    sm = fed["pooled"].site_meta.set_index("measure")
    settings = fed["pooled"].settings
    for measure, est, log in (("rate ratio", rr, True), ("risk difference", rd, False)):
        ma = meta_analysis([e for e, _ in est], [v for _, v in est],
                           method=settings["meta_method"], test=settings["meta_test"])
        f = np.exp if log else (lambda x: x)
        row = sm.loc[measure]
        for got, want in ((row.estimate, ma.estimate), (row.lower, ma.ci[0]),
                          (row.upper, ma.ci[1]), (row.pi_lower, ma.pi[0]),
                          (row.pi_upper, ma.pi[1])):
            assert got == pytest.approx(f(want), abs=1e-6), measure
        assert row.k == len(fed["sites"]) and row.tau2 == pytest.approx(ma.tau2, abs=1e-6)


def test_pooled_table_one_equals_table_one_of_the_pooled_rows(fed):
    """Counts, missing counts, means, SDs, medians, quartiles and SMDs of the pooled Table 1
    equal pipeline.stats.table_one run on the pooled person rows as the analyse stage runs
    it (counts exactly; means, SDs and SMDs to 1e-9 relative: sums of squares against
    two-pass variances; medians and quartiles exactly, from the people per value)."""
    from pipeline.stats import table_one

    p = fed["params"]["analyse"]
    d = fed["persons"].assign(arm=fed["persons"]["arm"].astype(str))
    variables = list(p["table_one"])
    num = [v for v in variables if pd.api.types.is_numeric_dtype(d[v])]
    ref = table_one(d, "arm", variables, categorical=[v for v in variables if v not in num],
                    nonnormal=list(p["nonnormal"]))
    got = fed["pooled"].table_one
    assert got.nonnormal == list(p["nonnormal"]) and got.notes == []
    key = ["variable", "level", "group"]
    a = ref.table.set_index(key).sort_index()
    b = got.table.set_index(key).sort_index()
    assert list(a.index) == list(b.index)
    for col in ("n", "missing", "count"):
        np.testing.assert_array_equal(b[col].to_numpy(float), a[col].to_numpy(float), err_msg=col)
    for col in ("pct", "mean", "sd"):
        np.testing.assert_allclose(b[col].to_numpy(float), a[col].to_numpy(float), rtol=1e-9,
                                   atol=0, err_msg=col)
    assert (b["kind"] == a["kind"]).all()
    nonnormal = a["kind"] == "nonnormal"  # the pooled table has no median of the others
    assert nonnormal.sum() == 2
    for col in ("median", "q1", "q3"):
        np.testing.assert_array_equal(b.loc[nonnormal, col].to_numpy(float),
                                      a.loc[nonnormal, col].to_numpy(float), err_msg=col)
    np.testing.assert_allclose(got.smd[ref.smd.index].to_numpy(), ref.smd.to_numpy(), rtol=1e-9)
    assert got.n_arm == d.groupby("arm").size().to_dict()


def test_pooled_fidelity_equals_the_metrics_stage_on_the_pooled_rows(fed):
    """Every binary and share indicator per site and arm, per site, per arm and overall:
    referrals, events, estimate and interval equal pipeline.metrics on the whole warehouse
    (1e-9 relative: sums added in another order). The hours to the first meeting: the metrics
    stage shows the median, which bundles cannot pool; the pooled mean equals the mean of the
    referrals' hours."""
    from pipeline import metrics

    m = metrics.compute(fed["con"], fed["params"].get("metrics"))
    ref = m.fidelity.set_index(["site_id", "arm", "indicator"]).sort_index()
    got = fed["pooled"].fidelity.set_index(["site_id", "arm", "indicator"]).sort_index()
    assert list(got.index) == list(ref.index)
    sel = ref["kind"].isin(["binary", "share"])
    assert sel.sum() == 9 * 3 * (len(fed["sites"]) + 1)  # 4 binary, 5 shares
    for col in ("n", "events", "estimate", "lower", "upper"):
        np.testing.assert_allclose(got.loc[sel, col].to_numpy(float),
                                   ref.loc[sel, col].to_numpy(float), rtol=1e-9, atol=1e-12,
                                   err_msg=col)
    hours = fed["con"].execute(
        "select site_id, arm, avg(p1_hours_to_first_meeting), count(p1_hours_to_first_meeting) "
        "from derived.fidelity_referral group by all").fetchall()
    assert hours
    for site, arm, mean, n in hours:
        r = got.loc[(site, arm, "p1_hours_to_first_meeting")]
        assert r.estimate == pytest.approx(mean, rel=1e-9) and r.n == n


def test_validation_summary_per_site(fed):
    """Each bundle's rows received, clean and quarantined per table equal the validate
    stage's own per-site counts (results.dq_tables); the bundles plus the rows validate could
    not place in a site ('(unknown)') add up to meta.validation_counts; every rule's rows over
    the bundles are at most the warehouse's (results.dq_rules), and some rows are
    quarantined, so the test sees rules at all."""
    con = fed["con"]
    dq = con.execute("select * from results.dq_tables").df()
    totals = {}
    for site, b in zip(fed["sites"], fed["bundles"]):
        vt = _table(b, federated.VALIDATION_TABLES).set_index("table_name").sort_index()
        ref = dq[dq["site_id"] == site].set_index("table_name").sort_index()
        for col in ("n_raw", "n_clean", "n_quarantined"):
            assert vt[col].to_dict() == ref[col].astype(int).to_dict(), (site, col)
        for t, r in vt.iterrows():
            totals[t] = totals.get(t, 0) + r.n_raw
    unknown = dq[dq["site_id"] == "(unknown)"].set_index("table_name")["n_raw"].to_dict()
    vc = con.execute("select table_name, sum(n_raw) from meta.validation_counts group by 1").fetchall()
    assert {t: totals[t] + unknown.get(t, 0) for t in totals} == {t: int(n) for t, n in vc}
    rules = fed["pooled"].validation_rules.set_index("rule_id")["n_rows"]
    ref = con.execute("select rule_id, n_rows from results.dq_rules where n_rows > 0").df()
    ref = ref.set_index("rule_id")["n_rows"]
    assert len(rules) > 10 and set(rules.index) <= set(ref.index)
    assert (rules <= ref[rules.index]).all()
    site_rules = _table(fed["bundles"][0], federated.VALIDATION_RULES)
    assert site_rules["n_rows"].sum() >= _table(fed["bundles"][0], federated.VALIDATION_TABLES)[
        "n_quarantined"].sum() > 0


def test_single_site_warehouse_bundle_covers_every_row(tmp_path):
    """A warehouse that holds one site (the federated case: each site runs odeval on its own
    extract) puts every row in the bundle, orphans included: the counts equal
    meta.validation_counts and the rules equal results.dq_rules exactly."""
    wh = _build_warehouse(tmp_path, people=150, sites=1, seed=11, faults=0.03)
    con = duckdb.connect(str(wh), read_only=True)
    try:
        site = con.execute("select min(site_id) from derived.people").fetchone()[0]
        b = federated.export_bundle(con, site, tmp_path / "bundle", load_params())
        vc = con.execute("select table_name, sum(n_raw), sum(n_clean), sum(n_quarantined) "
                         "from meta.validation_counts group by 1 order by 1").fetchall()
        dq_rules = dict(con.execute("select rule_id, n_rows from results.dq_rules "
                                    "where n_rows > 0").fetchall())
        orphans = con.execute("select count(*) from results.dq_tables "
                              "where site_id = '(unknown)'").fetchone()[0]
    finally:
        con.close()
    vt = _table(b, federated.VALIDATION_TABLES)
    assert [tuple(r) for r in vt.itertuples(index=False)] == [
        (t, int(r), int(c), int(q)) for t, r, c, q in vc]
    vr = _table(b, federated.VALIDATION_RULES)
    assert dict(zip(vr["rule_id"], vr["n_rows"])) == dq_rules
    assert orphans > 0  # rows the multi-site placement would leave out are counted here
    assert "whole warehouse" in json.loads((b / "manifest.json").read_text())["validation_scope"]
    federated.read_bundle(b)


# --------------------------------------------------------------------------- no identifiers

#: Column names of person-level identifiers: the contract's id columns and anything naming a
#: person, member of staff, patient, NHS number or cluster (a rule_id or n_referrals is not).
IDENTIFIER_NAME = re.compile(r"person|staff|patient|nhs|cluster|(referral|contact|prescription|"
                             r"admission|detention|episode)_?ids?$", re.IGNORECASE)


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


def test_no_identifier_and_no_row_level_table_in_any_bundle(fed):
    """No bundle file holds a person, staff, referral or contact id of the warehouse (as a
    cell, a JSON string, or bytes anywhere in the file), nor a column named like an
    identifier (the regex above, schemas/identifiers.yaml's forbidden names). No table has
    a row per person: the largest site's tables (but risk_sets) have fewer rows than a
    fifth of its people, and Table 1's rows are bounded by the vocabularies, not the
    people. risk_sets has one row per distinct time of an outcome and arm: at most the
    arm's people, aggregates of those leaving at that time (every row at least one); with
    exact risk sets a time with one event is one person's time, the disclosure caveat the
    manifest states (federated.round_risk_sets removes it, tested below)."""
    forbidden = set(yaml.safe_load((PROJ_ROOT / "schemas" / "identifiers.yaml").read_text())
                    ["forbidden_columns"])
    ids = fed["ids"]
    assert len(ids) > 20_000
    id_bytes = [i.encode() for i in ids]
    p = fed["persons"]
    vocab = sum(p[v].nunique() + 2 for v in fed["params"]["analyse"]["table_one"])
    for site, b in zip(fed["sites"], fed["bundles"]):
        n_people = int((p["site_id"] == site).sum())
        arm_people = p[p["site_id"] == site].groupby("arm").size().to_dict()
        for f in sorted(b.iterdir()):
            raw = f.read_bytes()
            assert not [i for i in id_bytes if i in raw], f
            if f.suffix != ".parquet":
                strings = set(_json_strings(json.loads(raw)))
                assert not strings & ids, f
                continue
            t = pd.read_parquet(f)
            assert not [c for c in t.columns if IDENTIFIER_NAME.search(c) or c in forbidden], f
            cells = {str(v) for col in t.columns for v in t[col].unique()}
            assert not cells & ids, f
            if f.name == federated.RISK_SETS:
                leaving = t["n_event"] + t["n_competing"] + t["n_censor"]
                assert (leaving >= 1).all()
                rows = t.groupby(["outcome", "arm"]).size()
                assert all(rows[(o, a)] <= arm_people[a] for o, a in rows.index), f
            elif f.name == federated.TABLE_ONE:
                assert len(t) <= 2 + 2 * vocab, f
            elif site == fed["sites"][-1]:
                assert len(t) < n_people / 5, (f, len(t), n_people)


# --------------------------------------------------------------------------- disclosure

def _params(fed, **federated_settings):
    return {**fed["params"], "federated": {**federated.DEFAULTS, **federated_settings}}


def test_round_counts_rounds_every_count_table_and_is_recorded(fed, tmp_path):
    """With federated.round_counts every count of Table 1, fidelity, validation and the site
    effects is a multiple of disclosure.round_to (5), rounding moved some of them, the
    site's means and shares stay exact (sums rescaled to the rounded n), the risk sets stay
    exact, and the manifest records the setting; pooling a rounded with an exact bundle is
    refused."""
    site, exact = fed["sites"][0], fed["bundles"][0]
    b = federated.export_bundle(fed["con"], site, tmp_path / "r", _params(fed, round_counts=True))
    m = json.loads((b / "manifest.json").read_text())
    assert m["disclosure_settings"]["round_counts"] is True
    assert m["disclosure_settings"]["round_risk_sets"] is False
    assert "rounded to multiples of 5" in m["exactness"][federated.TABLE_ONE]
    moved = 0
    for name, cols in ((federated.TABLE_ONE, ["n"]), (federated.FIDELITY, ["n_referrals"]),
                       (federated.VALIDATION_TABLES, ["n_raw", "n_clean", "n_quarantined"]),
                       (federated.VALIDATION_RULES, ["n_rows"]),
                       (federated.SITE_EFFECTS, ["n", "n_events"])):
        got, ref = _table(b, name), _table(exact, name)
        for c in cols:
            assert (got[c] % 5 == 0).all(), (name, c)
            assert (got[c] - ref[c]).abs().max() <= 2, (name, c)
            moved += int((got[c] != ref[c]).sum())
    assert moved > 20
    f, fr = _table(b, federated.FIDELITY), _table(exact, federated.FIDELITY)
    binary = f["kind"] == "binary"
    assert (f.loc[binary, "value_sum"] % 5 == 0).all()
    ok = ~binary & (f["n_referrals"] > 0)
    np.testing.assert_allclose((f["value_sum"] / f["n_referrals"])[ok],
                               (fr["value_sum"] / fr["n_referrals"])[ok], rtol=1e-12)
    t1, t1r = _table(b, federated.TABLE_ONE), _table(exact, federated.TABLE_ONE)
    c = (t1["kind"] == "continuous") & (t1["n"] > 0)
    np.testing.assert_allclose((t1["value_sum"] / t1["n"])[c], (t1r["value_sum"] / t1r["n"])[c],
                               rtol=1e-12)
    assert (b / federated.RISK_SETS).read_bytes() == (exact / federated.RISK_SETS).read_bytes()
    federated.read_bundle(b)  # the totals checks allow for the rounding
    with pytest.raises(OdevalError) as exc:
        federated.pool_bundles([*fed["bundles"][1:], b])
    assert exc.value.rule == "federated.pool.disclosure" and str(b) in str(exc.value)


def test_round_risk_sets_makes_every_row_stand_for_ten_people(fed, tmp_path):
    """With federated.round_risk_sets (and round_counts) every risk-set count and number at
    risk is a multiple of the curve step (10), so no row stands for fewer than 10 people;
    the bundles still pass their checks, pool, and give a report that passes check-outputs.
    The pooled curves are then approximate: each site's arm total moves by at most half a
    step per status (3 x 5 people), so the pooled number at risk at time 0 by at most
    15 per site; the survival curves move more where sites are small (observed: up to 0.09
    on the relapse curve of the Open Dialogue arm, whose smallest site has 26 people)."""
    from pipeline.check_outputs import check

    params = _params(fed, round_counts=True, round_risk_sets=True)
    bs = [federated.export_bundle(fed["con"], s, tmp_path / s, params) for s in fed["sites"]]
    for b in bs:
        r = _table(b, federated.RISK_SETS)
        for c in ("n_risk", "n_event", "n_competing", "n_censor"):
            assert (r[c] % 10 == 0).all(), c
        assert ((r["n_event"] + r["n_competing"] + r["n_censor"]) >= 10).all()
        assert len(r) < len(_table(fed["bundles"][0], federated.RISK_SETS)) / 2
    pooled, report = federated.pool(bs, tmp_path / "pooled", params)
    assert check(report.parent, load_params().get("disclosure"), fed["con"]) == []
    diff = 0.0
    for arm in ARMS:  # the rounded step function at the exact curve's times
        a = pooled.km[(pooled.km.outcome == "relapse") & (pooled.km.arm == arm)]
        e = fed["pooled"].km[(fed["pooled"].km.outcome == "relapse") & (fed["pooled"].km.arm == arm)]
        i = np.searchsorted(a["time"].to_numpy(), e["time"].to_numpy(), side="right") - 1
        s = np.where(i >= 0, a["survival"].to_numpy()[np.clip(i, 0, None)], 1.0)
        diff = max(diff, float(np.abs(s - e["survival"].to_numpy()).max()))
    print(f"rounded risk sets: max |S_rounded - S_exact| at the exact times = {diff:.4f}")
    assert diff > 0
    first = lambda km: km.groupby(["outcome", "arm"])["n_risk"].first()  # noqa: E731
    moved = (first(pooled.km) - first(fed["pooled"].km)).abs()
    assert moved.max() <= 15 * len(fed["sites"]) and moved.max() > 0


# --------------------------------------------------------------------------- refusals

def _copy(fed, tmp_path) -> list[Path]:
    out = []
    for b in fed["bundles"]:
        shutil.copytree(b, tmp_path / b.name)
        out.append(tmp_path / b.name)
    return out


def _rewrite(bundle: Path, name: str, edit) -> None:
    """Edit one bundle file and put its new sha256 in the manifest, so that only the
    content checks can catch the edit."""
    df = edit(pd.read_parquet(bundle / name).copy())
    federated._write_parquet(df, bundle / name, name)
    mf = bundle / "manifest.json"
    m = json.loads(mf.read_text())
    m["files"][name] = federated._sha256(bundle / name)
    mf.write_text(json.dumps(m, indent=2, sort_keys=True))


def _first(df, mask, col, f):
    i = df.index[mask][0]
    df.loc[i, col] = f(df.loc[i, col])
    return df


def _more_than_all(d):
    """A binary indicator's numerator one more than its referrals (kept a whole count)."""
    i = d.index[d["indicator"] == "p1_within_24h"][0]
    d.loc[i, ["value_sum", "value_sum2"]] = float(d.at[i, "n_referrals"] + 1)
    return d


EDITS = {
    "bundle.risk_sets.n_risk": (federated.RISK_SETS, lambda d: _first(
        d, d["n_event"] > 0, "n_event", lambda v: v + 1)),
    "bundle.risk_sets.arm_n": (federated.RISK_SETS, lambda d: federated.with_n_risk(_first(
        d, d["outcome"] == "relapse", "n_censor", lambda v: v + 1).drop(columns="n_risk"))),
    "bundle.risk_sets.values": (federated.RISK_SETS, lambda d: _first(
        d, d["n_censor"] > 0, "n_censor", lambda v: -v)),
    "bundle.risk_sets.key": (federated.RISK_SETS, lambda d: pd.concat([d, d.iloc[[3]]])),
    "bundle.site_effects.variance": (federated.SITE_EFFECTS, lambda d: _first(
        d, d["measure"] == "log rate ratio", "variance", lambda v: np.sqrt(v))),
    "bundle.site_effects.measures": (federated.SITE_EFFECTS, lambda d: d.iloc[:2]),
    "bundle.site_effects.n": (federated.SITE_EFFECTS, lambda d: _first(
        d, d["measure"] == "log hazard ratio", "n_events", lambda v: v + 1)),
    "bundle.table_one.totals": (federated.TABLE_ONE, lambda d: _first(
        d, (d["kind"] == "level") & (d["variable"] == "diagnosis_group"), "n", lambda v: v + 1)),
    "bundle.table_one.moments": (federated.TABLE_ONE, lambda d: _first(
        d, (d["kind"] == "continuous") & (d["variable"] == "age_at_index"), "value_sum2",
        lambda v: v / 2)),
    "bundle.table_one.variables": (federated.TABLE_ONE, lambda d: d[d["variable"] != "sex"]),
    "bundle.fidelity.numerator": (federated.FIDELITY, lambda d: _more_than_all(d)),
    "bundle.fidelity.moments": (federated.FIDELITY, lambda d: _first(
        d, (d["kind"] == "share") & (d["value_sum"] > 1), "value_sum2", lambda v: v * 3 + 1)),
    "bundle.validation_tables.totals": (federated.VALIDATION_TABLES, lambda d: _first(
        d, d["table_name"] == "contacts", "n_raw", lambda v: v + 1)),
    "bundle.validation_rules.totals": (federated.VALIDATION_RULES, lambda d: _first(
        d, d["table_name"] == "contacts", "n_rows", lambda v: v + 10_000)),
}


@pytest.mark.parametrize("rule", sorted(EDITS))
def test_an_edited_bundle_is_refused_naming_bundle_file_and_rule(fed, tmp_path, rule):
    bs = _copy(fed, tmp_path)
    name, edit = EDITS[rule]
    _rewrite(bs[1], name, edit)
    with pytest.raises(OdevalError) as exc:
        federated.pool_bundles(bs, fed["params"])
    assert exc.value.rule == rule, str(exc.value)
    assert str(bs[1] / name) in str(exc.value)
    federated.read_bundle(bs[0])  # the untouched copies still pass


def test_a_file_with_other_columns_or_types_is_refused(fed, tmp_path):
    bs = _copy(fed, tmp_path)
    f = bs[0] / federated.FIDELITY
    pd.read_parquet(f).astype({"n_referrals": "float64"}).to_parquet(f, index=False)
    m = json.loads((bs[0] / "manifest.json").read_text())
    m["files"][federated.FIDELITY] = federated._sha256(f)
    (bs[0] / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(OdevalError) as exc:
        federated.read_bundle(bs[0])
    assert exc.value.rule == "bundle.fidelity.schema" and "n_referrals" in str(exc.value)


def test_refuses_mismatched_schema_version(fed, tmp_path):
    bs = _copy(fed, tmp_path)
    mf = bs[1] / "manifest.json"
    m = json.loads(mf.read_text())
    m["bundle_schema_version"] = federated.SCHEMA_VERSION + 1
    mf.write_text(json.dumps(m))
    with pytest.raises(OdevalError) as exc:
        federated.pool_bundles(bs)
    assert exc.value.rule == "federated.pool.schema_version"
    assert str(bs[1]) in str(exc.value) and "schema version" in str(exc.value)


def test_refuses_mismatched_params_hash(fed, tmp_path):
    params = {**fed["params"], "derive": {**section(fed["params"], "derive"), "follow_up_days": 365}}
    other = federated.export_bundle(fed["con"], fed["sites"][2], tmp_path / "other", params)
    with pytest.raises(OdevalError) as exc:
        federated.pool_bundles([*fed["bundles"][:2], other])
    assert exc.value.rule == "federated.pool.params_hash"
    assert str(other) in str(exc.value) and "parameters hash" in str(exc.value)


def test_refuses_duplicate_site(fed, tmp_path):
    bs = _copy(fed, tmp_path)
    again = tmp_path / "again"
    shutil.copytree(bs[0], again)
    with pytest.raises(OdevalError) as exc:
        federated.pool_bundles([*bs, again])
    assert exc.value.rule == "federated.pool.duplicate_site"


def test_refuses_tampered_file(fed, tmp_path):
    bs = _copy(fed, tmp_path)
    f = bs[0] / federated.RISK_SETS
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(OdevalError) as exc:
        federated.pool_bundles(bs)
    assert exc.value.rule == "bundle.risk_sets.sha256"
    assert str(bs[0] / federated.RISK_SETS) in str(exc.value)


def test_refuses_missing_manifest_and_bad_manifest(fed, tmp_path):
    bs = _copy(fed, tmp_path)
    (bs[2] / "manifest.json").unlink()
    with pytest.raises(OdevalError) as exc:
        federated.pool_bundles(bs)
    assert exc.value.rule == "bundle.manifest.missing" and str(bs[2]) in str(exc.value)
    m = json.loads((bs[1] / "manifest.json").read_text())
    m["site"] = 3
    (bs[1] / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(OdevalError) as exc:
        federated.read_bundle(bs[1])
    assert exc.value.rule == "bundle.manifest.invalid" and "site" in str(exc.value)
    (bs[0] / "extra.csv").write_text("x\n")
    with pytest.raises(OdevalError) as exc:
        federated.read_bundle(bs[0])
    assert exc.value.rule == "bundle.manifest.files" and "extra.csv" in str(exc.value)


# --------------------------------------------------------------------------- CLI

def test_cli_export_pool_and_check_outputs(fed, tmp_path):
    """`odeval export` for two sites and `odeval pool` through the CLI: exit 0, a report that
    `odeval check-outputs` passes (identifier values looked up in the warehouse); an edited
    bundle gives `error: ... [rule bundle....]` and exit 2."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    runner = CliRunner()
    wh = str(fed["warehouse"])
    bundles = []
    for site in fed["sites"][:2]:
        res = runner.invoke(app, ["export", "--site", site, "--out", str(tmp_path / site),
                                  "--warehouse", wh])
        assert res.exit_code == 0, res.output
        bundles.append(tmp_path / site)
    out = tmp_path / "pooled"
    res = runner.invoke(app, ["pool", *map(str, bundles), "--out", str(out),
                              "--exact", str(tmp_path / "exact")])
    assert res.exit_code == 0, res.output
    assert (out / "report.html").is_file() and (tmp_path / "exact" / "km.csv").is_file()
    assert "Pooled contrasts" in (out / "report.html").read_text()
    assert list(pd.read_csv(out / "tables" / "bundles.csv")["site"]) == fed["sites"][:2]
    res = runner.invoke(app, ["check-outputs", str(out), "--warehouse", wh])
    assert res.exit_code == 0 and "no breach" in res.output, res.output
    res = runner.invoke(app, ["check-outputs", str(tmp_path / "exact"), "--warehouse", wh])
    assert res.exit_code == 1  # the exact tables are not for publication, and it shows

    _rewrite(bundles[1], federated.TABLE_ONE, EDITS["bundle.table_one.totals"][1])
    res = runner.invoke(app, ["pool", *map(str, bundles), "--out", str(tmp_path / "q")])
    assert res.exit_code == 2, res.output
    assert re.search(r"error: .*table_one\.parquet.*\[rule bundle\.table_one\.totals\]",
                     " ".join(res.output.split())), res.output
    assert not (tmp_path / "q").exists()


def test_export_refuses_an_unknown_site_and_a_used_folder_and_writes_nothing(fed, tmp_path):
    with pytest.raises(OdevalError) as exc:
        federated.export_bundle(fed["con"], "S99", tmp_path / "x", fed["params"])
    assert exc.value.rule == "federated.export.site" and "S01" in str(exc.value)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine\n")
    with pytest.raises(OdevalError) as exc:
        federated.export_bundle(fed["con"], fed["sites"][0], tmp_path / "used", fed["params"])
    assert exc.value.rule == "federated.export.out"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["used"]
    assert [p.name for p in (tmp_path / "used").iterdir()] == ["notes.txt"]


def test_pool_never_deletes_what_it_did_not_write(fed, tmp_path):
    """Issue 17: `pool --out DIR` deleted the whole of DIR (an analyst's notes, a metrics
    folder) when DIR held a report.html. Now a folder of files odeval did not write is
    refused untouched, and a previous pooled report's files are replaced while the notes
    an analyst put beside them stay."""
    out = tmp_path / "shared"
    out.mkdir()
    (out / "report.html").write_text("someone's report")
    (out / "notes.txt").write_text("an analyst's notes")
    (out / "metrics").mkdir()
    (out / "metrics" / "mine.csv").write_text("a,b\n")
    with pytest.raises(OdevalError) as exc:
        federated.pool(fed["bundles"], out, fed["params"])
    assert exc.value.rule == "output.foreign"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "metrics", "metrics/mine.csv", "notes.txt", "report.html"]
    assert (out / "report.html").read_text() == "someone's report"

    pooled = tmp_path / "pooled"
    federated.pool(fed["bundles"], pooled, fed["params"])
    (pooled / "notes.txt").write_text("kept")
    first = (pooled / "report.html").read_bytes()
    federated.pool(fed["bundles"], pooled, fed["params"])
    assert (pooled / "notes.txt").read_text() == "kept"
    assert (pooled / "report.html").read_bytes() == first


def test_export_to_a_name_the_file_system_cannot_hold_is_a_one_line_error(fed, tmp_path):
    """Issue 17: `export --out` with a 300-character name ended in an OSError traceback."""
    from typer.testing import CliRunner

    from pipeline.cli import app
    from tests.studyshapes import one_line_error

    res = CliRunner().invoke(app, ["export", "--site", fed["sites"][0], "--out",
                                   str(tmp_path / ("b" * 300)), "-w", str(fed["warehouse"])])
    assert res.exit_code == 2 and one_line_error(" ".join(res.output.split())), res.output
    assert "[rule federated.export.out]" in res.output and "300 bytes" in res.output
    assert list(tmp_path.iterdir()) == []
