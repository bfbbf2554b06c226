"""The declared analysis plan (params.yaml ``design:``): parsed once, checked on its own and
against the data, with one-line errors naming the key at fault."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline import plan as plan_mod
from pipeline.errors import OdevalError


def _persons(clusters_per_arm: int = 1, sites: int = 3, with_clusters: bool = True):
    rows = []
    for s in range(sites):
        for arm in ("open_dialogue", "usual_care"):
            for k in range(clusters_per_arm):
                for i in range(4):
                    rows.append(dict(site_id=f"S{s}", arm=arm,
                                     cluster_id=f"S{s}-{arm[:2]}{k}" if with_clusters else None,
                                     sex="female" if i % 2 else "male", age_at_index=30 + i,
                                     ethnicity_group="white", diagnosis_group="psychosis"))
    return pd.DataFrame(rows)


def _clusters(d: pd.DataFrame, extra=None) -> pd.DataFrame:
    c = d.groupby("cluster_id", as_index=False).agg(site_id=("site_id", "first"),
                                                     arm=("arm", "first"))
    c["listed"] = True
    c["list_size"] = 8000
    c["extra_columns"] = [dict(extra or {}) for _ in range(len(c))]
    return c


def _parse(**design):
    return plan_mod.parse({"design": design})


def test_the_projects_params_parse_into_a_plan():
    from pipeline.params import load_params

    plan = plan_mod.parse(load_params())
    assert plan.design.type == "cluster_randomised" and plan.primary.name == "relapse"
    assert [o.name for o in plan.secondary][0] == "involuntary_admission"


@pytest.mark.parametrize(("design", "message"), [
    ({"type": "cluster"}, "design.type: 'cluster' is not one of"),
    ({"primary": {"outcome": "relapses"}}, "design.primary: unknown outcome 'relapses'"),
    ({"secondary": ["relapse"]}, "an outcome is named twice"),
    ({"secondary": "return_to_work"}, "design.secondary: must be a list"),
    ({"covariates": ["relapse_time"]}, "not baseline variables"),
    ({"covariates": ["sex", "sex"]}, "lists a name twice"),
    ({"multiplicity": "bonferroni"}, "design.multiplicity: 'bonferroni' is not one of"),
    ({"type": "individually_randomised"}, "unit must be person"),
    ({"primary": {"outcome": "relapse", "small_sample": "bootstrap"}},
     "small_sample 'bootstrap' is not auto or one of"),
    ({"primary": {"outcome": "relapse", "test": "gray"}}, "test 'gray' is not one of"),
    ({"pairing": True, "strata": None}, "needs unit cluster and strata"),
    ({"type": "observational", "unit": "person", "cluster_covariates": ["list_size"]},
     "cluster-level covariates need a cluster design"),
    ({"typo": 1}, "unknown design parameter(s) ['typo']"),
])
def test_a_bad_plan_is_refused_with_one_line_naming_the_key(design, message):
    with pytest.raises(OdevalError) as e:
        _parse(**design)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert str(e.value).startswith("file params.yaml: ")


@pytest.mark.parametrize(("plan", "d", "clusters", "message"), [
    ({}, _persons(with_clusters=False), None,
     "design.type: cluster_randomised, but no person has a cluster_id"),
    ({"covariates": ["baseline_activity"]}, _persons(), None,
     "design.covariates: 'baseline_activity' is not a column of the person frame"),
    ({"cluster_covariates": ["list_size"]}, _persons(), None,
     "needs the clusters table (clusters.csv)"),
    ({"cluster_covariates": ["practice_type"]}, _persons(), "listed",
     "'practice_type' is not a column of the clusters table"),
    ({"pairing": True}, _persons(clusters_per_arm=2), None,
     "design.pairing: true, but the data are not one cluster per arm"),
    ({"type": "individually_randomised", "unit": "person",
      "primary": {"outcome": "relapse", "small_sample": "model"}}, _persons(), None, None),
    ({"type": "observational", "unit": "person",
      "primary": {"outcome": "relapse", "small_sample": "jackknife-site"}}, _persons(), None,
     None),
])
def test_the_plan_is_checked_against_the_data(plan, d, clusters, message):
    cl = _clusters(d) if clusters else None
    p = _parse(**plan)
    if message is None:
        assert p.check_data(d, cl).shape == "individual"
        return
    with pytest.raises(OdevalError) as e:
        p.check_data(d, cl)
    assert message in str(e.value)


def test_the_shape_is_read_from_the_data_and_auto_resolves_per_shape():
    pair = _parse().check_data(_persons(1), None)
    assert pair.shape == "pair_matched"
    assert pair.method("relapse") == plan_mod.default_method("pair_matched", "time_to_event")[0]
    many = _parse().check_data(_persons(3), None)
    assert many.shape == "clustered"
    explicit = _parse(primary={"outcome": "relapse", "small_sample": "CR1"}).check_data(
        _persons(1), None)
    assert explicit.method("relapse") == "CR1"
    ind = _parse(type="individually_randomised", unit="person").check_data(
        _persons(with_clusters=False), None)
    assert ind.shape == "individual" and ind.method("return_to_work") == "model"


def test_auto_reads_the_simulation_studys_choice(monkeypatch):
    from pipeline.simulation import defaults as sim

    m, src = plan_mod.default_method("pair_matched", "time_to_event")
    assert m == sim.default_method("relapse", "cluster_randomised", 1)
    assert src.startswith("chosen by simulation (1000 replicates per cell")
    monkeypatch.setattr(sim, "load", lambda: {"defaults": {}})
    m, src = plan_mod.default_method("pair_matched", "binary")
    assert m == plan_mod.PROVISIONAL_METHODS["pair_matched"]["binary"]
    assert src.startswith("provisional")


def test_extra_columns_of_the_clusters_table_are_covariates_numbers_where_they_read_as_such():
    d = _persons()
    cl = _clusters(d, extra={"practice_type": "urban", "gp_fte": "4.5"})
    wide = plan_mod.cluster_covariate_frame(cl)
    assert wide["gp_fte"].dtype.kind == "f" and wide["practice_type"].iloc[0] == "urban"
    p = _parse(cluster_covariates=["list_size", "gp_fte"]).check_data(d, cl)
    assert p.cluster_covariates == ("list_size", "gp_fte")


def test_wording_follows_the_design():
    trial = _parse()
    obs = _parse(type="observational", unit="person")
    assert trial.causal and not obs.causal
    assert "Open Dialogue vs usual care" in trial.estimand(trial.primary)
    e = obs.estimand(obs.primary)
    assert "association" in e and " vs " not in e
    assert dict(obs.describe())["Design"].startswith("Observational comparison")
    assert dict(trial.describe())["Unit of randomisation"].startswith("cluster")
    assert "Unit of analysis" in dict(obs.describe())
