"""The derive SQL agrees with a plain pandas oracle on generated person histories.

Hypothesis builds small studies whose days cluster around the boundaries the definitions
care about (index date, day 1, the RTW window 640..730, follow-up end); each example is
loaded as clean tables into an in-memory DuckDB, derived, and every column the oracle
computes must be identical (floats: equal to 1e-12 relative, since sums may be added in a
different order).
"""

from __future__ import annotations

import datetime as dt
import math

import duckdb
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.derive import derive, drug_list_path, read_drug_list, resolve_params
from tests.property import oracle
from tests.spec.conftest import create_clean

D0 = dt.date(2021, 3, 1)
STAFF = [("st_n1", "nurse"), ("st_n2", "nurse"), ("st_psy", "psychiatrist"),
         ("st_peer", "peer_worker"), ("st_sup", "support_worker"), ("st_oth", "other")]
DRUGS = ["olanzapine", "risperidone", "paliperidone palmitate", "haloperidol decanoate",
         "lithium", "sertraline", "zyprexa", " Quetiapine"]
SECTIONS = ["2", "3", "4", "5(2)", "5(4)", "135", "136", "37", "other"]
STATUSES = ["employed", "self_employed", "education", "training", "volunteering",
            "unemployed", "long_term_sick", "carer_homemaker", "retired", "other", "unknown"]

BOUNDARY_DAYS = [0, 1, 2, 89, 90, 274, 275, 334, 335, 364, 365, 366, 639, 640, 641, 699, 700,
                 729, 730, 731]  # around day 0/1, FU end (365/730) and its last 30/90 days
boundary_day = st.sampled_from(BOUNDARY_DAYS)
chain_gap = st.one_of(st.sampled_from([-1, 0, 1, 2, 3]), st.integers(4, 60))
any_day = st.one_of(boundary_day, st.integers(-60, 800))


def _date(index, offset):
    return index + dt.timedelta(days=offset)


def _interval(draw, base, data_end):
    """(start day, end day or None): near `base` so that intervals overlap and nest, with
    ends on boundary days (also 30/90 days before data end) often enough to tell > from >=."""
    start = draw(st.one_of(st.integers(base - 30, base + 60), any_day))
    ends = [d for d in BOUNDARY_DAYS + [data_end - k for k in (91, 90, 89, 31, 30, 29)]
            if d >= start]
    options = [st.none(), st.integers(start, start + 3), st.integers(start, start + 120)]
    if ends:
        options.append(st.sampled_from(ends))
    return start, draw(st.one_of(*options))


@st.composite
def studies(draw):
    tables = {k: [] for k in ("people", "staff", "referrals", "contacts", "contact_staff",
                              "admissions", "detentions", "crisis_episodes", "prescriptions",
                              "employment")}
    tables["staff"] = [dict(staff_id=s, site_id="s1", role=r) for s, r in STAFF]
    n = draw(st.integers(1, 4))
    ids = {"adm": 0, "det": 0, "cri": 0, "rx": 0, "ref": 0, "con": 0}

    def next_id(kind):
        ids[kind] += 1
        return f"{kind}{ids[kind]}"

    for i in range(n):
        pid = f"p{i}"
        index = D0 + dt.timedelta(days=draw(st.integers(0, 40)))
        data_end = draw(st.one_of(boundary_day, st.integers(0, 900)))
        death = draw(st.one_of(st.none(), boundary_day, st.integers(0, 900)))
        tables["people"].append(dict(
            person_id=pid, site_id=draw(st.sampled_from(["s1", "s2"])),
            arm=draw(st.sampled_from(["open_dialogue", "usual_care"])), cluster_id=None,
            index_date=index, data_end_date=_date(index, data_end),
            death_date=None if death is None else _date(index, death),
            sex="female", birth_year=draw(st.one_of(st.none(), st.integers(1940, 2005))),
            diagnosis_group="psychosis"))
        # admissions as chains: each starts `gap` days after the previous discharge
        start = draw(any_day)
        adm_starts = []
        for _ in range(draw(st.integers(0, 4))):
            length = draw(st.integers(0, 40))
            open_ = draw(st.booleans()) and draw(st.booleans())
            adm_starts.append(start)
            tables["admissions"].append(dict(
                admission_id=next_id("adm"), person_id=pid, admitted_on=_date(index, start),
                discharged_on=None if open_ else _date(index, start + length),
                admission_method=draw(st.sampled_from(
                    ["emergency", "planned", "transfer", "transfer"]))))
            start = start + length + draw(chain_gap)
        # crisis episodes: back to back, or ending just before (or after) an admission starts
        start = draw(st.one_of(any_day, *(st.just(a - 3) for a in adm_starts[:1])))
        for _ in range(draw(st.integers(0, 3))):
            length = draw(st.integers(0, 45))
            open_ = draw(st.booleans()) and draw(st.booleans())
            tables["crisis_episodes"].append(dict(
                episode_id=next_id("cri"), person_id=pid, start_on=_date(index, start),
                end_on=None if open_ else _date(index, start + length)))
            start = draw(st.one_of(st.just(start + length + draw(chain_gap)), any_day))
        # detentions: chains (a section converted, renewed, or led into) and loose ones
        start = draw(any_day)
        for _ in range(draw(st.integers(0, 3))):
            length = draw(st.integers(0, 60))
            open_ = draw(st.booleans()) and draw(st.booleans())
            tables["detentions"].append(dict(
                detention_id=next_id("det"), person_id=pid,
                legal_section=draw(st.sampled_from(SECTIONS)), start_on=_date(index, start),
                end_on=None if open_ else _date(index, start + length)))
            start = start + length + draw(chain_gap)
        base = draw(any_day)
        for _ in range(draw(st.integers(0, 2))):
            s, e = _interval(draw, base, data_end)
            tables["detentions"].append(dict(
                detention_id=next_id("det"), person_id=pid,
                legal_section=draw(st.sampled_from(SECTIONS)), start_on=_date(index, s),
                end_on=None if e is None else _date(index, e)))
        base = draw(any_day)
        for _ in range(draw(st.integers(0, 5))):
            s, e = _interval(draw, base, data_end)
            tables["prescriptions"].append(dict(
                prescription_id=next_id("rx"), person_id=pid, drug=draw(st.sampled_from(DRUGS)),
                route=draw(st.sampled_from(["oral", "depot", "other"])),
                daily_dose_mg=draw(st.sampled_from([0.5, 2.7, 10.0, 20.0, 333.3])),
                start_on=_date(index, s), end_on=None if e is None else _date(index, e)))
        for d in draw(st.lists(any_day, max_size=4, unique=True)):
            tables["employment"].append(dict(
                person_id=pid, recorded_on=_date(index, d),
                status=draw(st.sampled_from(STATUSES))))
        for _ in range(draw(st.integers(0, 2))):
            rid = next_id("ref")
            received = dt.datetime.combine(index, dt.time(9)) + dt.timedelta(
                minutes=draw(st.integers(0, 600)))
            tables["referrals"].append(dict(
                referral_id=rid, person_id=pid, received_at=received,
                first_contact_staff_id=draw(st.one_of(st.none(),
                                                      st.sampled_from([s for s, _ in STAFF]))),
                discharge_decided_by=draw(st.one_of(
                    st.none(), st.sampled_from(["network", "clinician", "person"])))))
            for _ in range(draw(st.integers(0, 4))):
                cid = next_id("con")
                tables["contacts"].append(dict(
                    contact_id=cid, person_id=pid,
                    referral_id=draw(st.sampled_from([rid, rid, rid, None])),
                    start_at=received + dt.timedelta(
                        minutes=draw(st.sampled_from([-60, 0, 1440, 1441, 3000]))
                        + draw(st.integers(0, 5))),
                    contact_type=draw(st.sampled_from(
                        ["network_meeting", "network_meeting", "individual"])),
                    location=draw(st.sampled_from(["home", "place_of_choice", "clinic",
                                                   "remote"])),
                    attended=draw(st.booleans()) or draw(st.booleans()),
                    person_present=draw(st.one_of(st.none(), st.booleans())),
                    network_members_present=draw(st.one_of(st.none(), st.integers(0, 3)))))
                for staff in draw(st.lists(st.sampled_from([s for s, _ in STAFF]),
                                           max_size=3, unique=True)):
                    tables["contact_staff"].append(dict(contact_id=cid, staff_id=staff))
    return tables


params_strategy = st.one_of(
    st.just({}),
    st.fixed_dictionaries({
        "follow_up_days": st.sampled_from([365, 730]),
        "transfer_gap_days": st.integers(0, 3),
        "episode_gap_days": st.integers(0, 3),
        "detention_gap_days": st.integers(0, 2),
        "relapse_grace_days": st.sampled_from([0, 1, 2, 30]),
        "involuntary_in_hospital": st.booleans(),
        "rate_person_time": st.sampled_from(["follow_up", "at_risk"]),
        "relapse_components": st.sampled_from(
            [["admissions"], ["crisis_episodes"], ["detentions"], ["admissions", "crisis_episodes"],
             ["admissions", "crisis_episodes", "detentions"]]),
        "rtw_window_days": st.sampled_from([30, 90]),
        "last_days_antipsychotic": st.sampled_from([30, 90]),
        "open_end": st.fixed_dictionaries({
            "admissions": st.sampled_from(["data_end", "max", 1, 30]),
            "crisis_episodes": st.sampled_from(["data_end", "max", 3]),
            "detentions": st.sampled_from(["data_end", "max", 2]),
            "prescriptions": st.sampled_from(["data_end", 1, 60]),
        }),
    }),
)


def _norm(v):
    if v is None or v is pd.NaT or v is pd.NA:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, pd.Timestamp):
        return v.date() if v == v.normalize() else v.to_pydatetime()
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        return v.item()
    return v


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    return a == b and type(a) is type(b) if isinstance(a, bool) or isinstance(b, bool) else a == b


def assert_agree(con, relation: str, expected: pd.DataFrame, key: list[str]):
    cols = list(expected.columns)
    got = con.sql(f"select {', '.join(cols)} from derived.{relation}").df()
    exp = expected.sort_values(key).reset_index(drop=True)
    got = got.sort_values(key).reset_index(drop=True)
    assert len(got) == len(exp), f"{relation}: {len(got)} rows, oracle {len(exp)}"
    for (_, g), (_, e) in zip(got.iterrows(), exp.iterrows(), strict=True):
        for c in cols:
            gv, ev = _norm(g[c]), _norm(e[c])
            assert _same(gv, ev), (
                f"{relation} {dict((k, e[k]) for k in key)} column {c}: sql {gv!r}, oracle {ev!r}")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables=studies(), params=params_strategy)
def test_derive_agrees_with_the_oracle(tables, params):
    con = duckdb.connect()
    create_clean(con, **tables)
    derive(con, params)
    p = resolve_params(params)
    ref = read_drug_list(drug_list_path(p))
    clean = {k: pd.DataFrame(v) for k, v in tables.items() if v}

    assert_agree(con, "time_to_event", oracle.time_to_event(clean, p), ["person_id", "outcome"])
    assert_agree(con, "recurrent", oracle.recurrent(clean, p), ["person_id"])
    assert_agree(con, "antipsychotic", oracle.antipsychotic(clean, p, ref), ["person_id"])
    assert_agree(con, "activity", oracle.activity(clean, p), ["person_id"])
    if tables["referrals"]:
        assert_agree(con, "fidelity_referral", oracle.fidelity_referral(clean, p),
                     ["referral_id"])
    else:
        assert con.execute("select count(*) from derived.fidelity_referral").fetchone() == (0,)


def test_the_oracle_is_not_vacuous():
    """The comparison would notice a difference (guards against an always-passing check)."""
    con = duckdb.connect()
    tables = {"people": [dict(person_id="p0", site_id="s1", arm="usual_care", index_date=D0,
                              data_end_date=_date(D0, 900), death_date=None, sex="female",
                              diagnosis_group="psychosis")],
              "crisis_episodes": [dict(episode_id="c1", person_id="p0", start_on=_date(D0, 5))]}
    create_clean(con, **tables)
    derive(con)
    p = resolve_params(None)
    expected = oracle.time_to_event({k: pd.DataFrame(v) for k, v in tables.items()}, p)
    expected.loc[expected.outcome == "relapse", "time_days"] = 6
    with pytest.raises(AssertionError, match="time_days"):
        assert_agree(con, "time_to_event", expected, ["person_id", "outcome"])
