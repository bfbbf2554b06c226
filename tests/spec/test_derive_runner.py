"""The derive runner: SQL files, parameters, reference list, determinism, atomicity."""

from __future__ import annotations

import re

import duckdb
import pytest

from pipeline import derive as derive_module
from pipeline.derive import (DERIVE_SQL_DIR, OUTPUTS, REFERENCES, derive, drug_list_path,
                             load_relations, read_drug_list, resolve_params, sql_parameters)
from pipeline.errors import OdevalError
from tests.spec.conftest import by_person, create_clean, run_derive

PEOPLE = """
  person_id | index_date | data_end_date | death_date
  p2        | +0         | +2000         |
  p1        | +0         | +300          | +100
"""


def test_every_sql_file_states_name_grain_and_key():
    for path in sorted(DERIVE_SQL_DIR.glob("*.sql")):
        head = path.read_text().splitlines()[:3]
        assert head[0] == f"-- name:  derived.{path.stem}", path.name
        assert head[1].startswith("-- grain: one row per"), path.name
        assert head[2].startswith("-- key:   "), path.name


def test_params_yaml_states_every_derive_parameter_with_its_default():
    # each outcome rule is a parameter a user can see and change in params.yaml derive:,
    # at the default the code uses
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2]
    given = yaml.safe_load((root / "params.yaml").read_text())["derive"]
    assert set(given) == set(derive_module.DEFAULTS)
    assert resolve_params(given) == resolve_params(None)


def test_sql_files_bind_parameters_and_never_format_them():
    for name, sql in load_relations().items():
        assert "{" not in re.sub(r"--[^\n]*", "", sql), f"{name}.sql looks like a format string"
        assert set(sql_parameters(sql)) <= set(resolve_params(None)), name


def test_relations_run_in_dependency_order():
    order = list(load_relations())
    assert order.index("people") < order.index("int_outcome_events") < order.index("time_to_event")
    assert order.index("int_antipsychotic_exposures") < order.index("int_follow_up_intervals")
    assert set(OUTPUTS) <= set(order)


def test_unknown_parameters_are_refused():
    with pytest.raises(OdevalError, match="follow_up_dayz"):
        resolve_params({"follow_up_dayz": 365})


def test_sections_written_as_numbers_in_yaml_are_text():
    assert resolve_params({"involuntary_sections": [2, 3]})["involuntary_sections"] == ["2", "3"]


def test_relapse_components_must_be_known():
    with pytest.raises(OdevalError, match="relapse_components"):
        resolve_params({"relapse_components": ["admissions", "outpatient"]})


def test_summary_counts_rows_and_names_unknown_drugs():
    con = duckdb.connect()
    create_clean(con, people=PEOPLE, prescriptions="""
      person_id | drug    | start_on | end_on
      p1        | zyprexa | +1       | +2
    """)
    summary = derive(con)
    assert summary["rows"]["people"] == 2
    assert summary["rows"]["time_to_event"] == 12
    assert summary["unknown_drugs"] == [{"drug": "zyprexa", "n_prescriptions": 1, "n_people": 1}]
    assert summary["params"]["follow_up_days"] == 730


def test_progress_is_reported_per_relation():
    con = duckdb.connect()
    create_clean(con, people=PEOPLE)
    calls = []
    derive(con, progress=lambda done, total, what: calls.append((done, total, what)))
    assert calls[-1][0] == calls[-1][1] == len(load_relations()) + len(REFERENCES)
    assert {c[2] for c in calls} >= set(OUTPUTS)


def test_final_relations_are_ordered_by_their_key():
    con = run_derive(people=PEOPLE)
    assert [r[0] for r in con.execute("select person_id from derived.people").fetchall()] \
        == ["p1", "p2"]
    rows = con.execute("select person_id, outcome from derived.time_to_event").fetchall()
    assert rows == sorted(rows)


def test_derive_is_deterministic_and_rerunnable():
    con = run_derive(people=PEOPLE, crisis_episodes="""
      person_id | start_on
      p2        | +10
    """)
    first = con.execute("select * from derived.time_to_event").fetchall()
    derive(con)
    assert con.execute("select * from derived.time_to_event").fetchall() == first


def test_a_failure_leaves_the_derived_schema_as_it_was(monkeypatch):
    con = run_derive(people=PEOPLE)
    before = by_person(con, "people", "fu_end_day")
    relations = dict(load_relations())
    relations["time_to_event"] = "select no_such_column from derived.people"
    monkeypatch.setattr(derive_module, "load_relations", lambda: relations)
    con.execute("update clean.people set data_end_date = index_date + 10, death_date = null")
    with pytest.raises(duckdb.Error):
        derive(con)
    assert before == {"p1": 100, "p2": 730}
    assert by_person(con, "people", "fu_end_day") == before  # not 10: people rolled back


def test_missing_clean_tables_are_named():
    con = duckdb.connect()
    con.execute("create schema clean")
    with pytest.raises(OdevalError, match="clean tables missing"):
        derive(con)


# --- the reference list ----------------------------------------------------------------

REF = read_drug_list(drug_list_path(resolve_params(None)))
UK_ANTIPSYCHOTICS = [
    ("olanzapine", "oral"), ("risperidone", "oral"), ("quetiapine", "oral"),
    ("aripiprazole", "oral"), ("haloperidol", "oral"), ("clozapine", "oral"),
    ("amisulpride", "oral"), ("lurasidone", "oral"), ("paliperidone", "oral"),
    ("zuclopenthixol", "oral"), ("flupentixol", "oral"), ("chlorpromazine", "oral"),
    ("sulpiride", "oral"), ("trifluoperazine", "oral"), ("cariprazine", "oral"),
    ("paliperidone palmitate", "depot"), ("aripiprazole", "depot"), ("risperidone", "depot"),
    ("zuclopenthixol decanoate", "depot"), ("flupentixol decanoate", "depot"),
    ("haloperidol decanoate", "depot"), ("olanzapine pamoate", "depot"),
]


@pytest.mark.parametrize(("drug", "route"), UK_ANTIPSYCHOTICS)
def test_reference_covers_common_uk_antipsychotics(drug, route):
    row = next(r for r in REF if (r["drug"], r["route"]) == (drug, route))
    assert row["antipsychotic"] and row["atc_code"].startswith("N05A")
    assert row["ddd_mg"] > 0 and row["cpz_equiv_mg"] > 0
    assert row["cpz_method"] in ("gardner2010", "leucht2016_ddd") and row["source"]


def test_reference_lithium_and_other_psychotropics_are_known_but_not_antipsychotic():
    kinds = {r["drug"]: r["antipsychotic"] for r in REF}
    for drug in ("lithium", "sertraline", "sodium valproate", "lorazepam", "mirtazapine"):
        assert kinds[drug] is False
    assert all(r["atc_code"].startswith("N05A") and r["atc_code"] != "N05AN01"
               for r in REF if r["antipsychotic"])


def test_reference_chlorpromazine_is_its_own_unit():
    row = next(r for r in REF if (r["drug"], r["route"]) == ("chlorpromazine", "oral"))
    assert row["cpz_equiv_mg"] == 100.0 and row["ddd_mg"] == 300.0
