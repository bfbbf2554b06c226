"""The synthetic study generator: determinism, the input contract, chunking, exact truth."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.schemas import load_contract
from pipeline.synth import generate_study
from pipeline.synth import simulate as simmod
from pipeline.synth import study as studymod
from pipeline.synth.generate import sha256_files
from pipeline.synth.params import resolve
from pipeline.synth.writer import ARROW_TYPES

from pipeline.synth.oracle import derive, read

CONTRACT = load_contract()
EXTRACT = pd.Timestamp(studymod.EXTRACT_DATE)


@pytest.fixture(scope="module")
def study_pq(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_pq")
    summary = generate_study(out, people=1500, sites=5, seed=11)
    return out, summary


@pytest.fixture(scope="module")
def study_csv(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_csv")
    generate_study(out, people=800, sites=4, seed=12, fmt="csv", design="individual")
    return out


def test_files_written(study_pq):
    out, summary = study_pq
    names = {p.name for p in out.iterdir()}
    assert names == {f"{t}.parquet" for t in CONTRACT} | {"truth.json", "truth_people.parquet", "faults.csv"}
    assert summary["rows"]["people"] == 1500
    for t in CONTRACT:
        assert summary["rows"][t] == pq.ParquetFile(out / f"{t}.parquet").metadata.num_rows
    assert summary["rows"]["contacts"] / 1500 > 30  # a realistic care-contact volume


def test_same_seed_same_bytes_parquet(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, seed in ((a, 5), (b, 5), (c, 6)):
        generate_study(out, people=400, sites=3, seed=seed)
    ha, hb, hc = sha256_files(a), sha256_files(b), sha256_files(c)
    assert ha == hb
    assert len(ha) == 14  # 11 contract tables (clusters: the cluster design), truth x 2, faults
    differ = [k for k in ha if ha[k] != hc[k]]
    assert set(differ) >= {f"{t}.parquet" for t in CONTRACT if t != "staff"} | {"truth_people.parquet"}


def test_same_seed_same_bytes_csv(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, seed in ((a, 5), (b, 5), (c, 6)):
        generate_study(out, people=300, sites=3, seed=seed, fmt="csv", faults=0.05)
    ha, hb, hc = sha256_files(a), sha256_files(b), sha256_files(c)
    assert ha == hb
    assert ha["contacts.csv"] != hc["contacts.csv"]
    assert ha["faults.csv"] != hc["faults.csv"]


def _check_table_contract(name: str, df: pd.DataFrame, frames: dict[str, pd.DataFrame]):
    t = CONTRACT[name]
    assert list(df.columns) == list(t.column_names), name
    for c in t.columns:
        s = df[c.name]
        if c.required:
            assert s.notna().all(), f"{name}.{c.name} required"
        if c.vocabulary is not None:
            vals = set(s.dropna().astype(str))
            assert vals <= set(c.vocabulary), f"{name}.{c.name}: {vals - set(c.vocabulary)}"
        if c.min is not None:
            assert (s.dropna() >= c.min).all(), f"{name}.{c.name} min"
        if c.max is not None:
            assert (s.dropna() <= c.max).all(), f"{name}.{c.name} max"
        if c.min_exclusive is not None:
            assert (s.dropna() > c.min_exclusive).all(), f"{name}.{c.name} min_exclusive"
        if c.not_before:
            ok = s.isna() | df[c.not_before].isna() | (pd.to_datetime(s) >= pd.to_datetime(df[c.not_before]))
            assert ok.all(), f"{name}.{c.name} not_before"
        if c.references and (rt := c.references[0]) in frames:
            rc = c.references[1]
            missing = set(s.dropna()) - set(frames[rt][rc])
            assert not missing, f"{name}.{c.name} orphans {list(missing)[:3]}"
        if c.type in ("date", "timestamp"):
            assert (pd.to_datetime(s.dropna()) <= EXTRACT + pd.Timedelta(days=1)).all(), f"{name}.{c.name} after extract"
    assert not df.duplicated(list(t.key)).any(), f"{name} key"
    for chk in t.checks:
        con = duckdb.connect()
        con.register("df", df)
        bad = con.execute(f"SELECT count(*) FROM df WHERE NOT ({chk.sql})").fetchone()[0]
        con.close()
        assert bad == 0, chk.id


def _present(out: Path) -> dict:
    """The contract tables the study wrote: every one but the optional clusters table,
    which only the cluster design writes (its randomisation list)."""
    cluster = any(out.glob("clusters.*"))
    return {n: t for n, t in CONTRACT.items() if not t.optional or cluster}


def _check_study_contract(out: Path):
    frames = {t: read(out, t) for t in _present(out)}
    for name, df in frames.items():
        for c in CONTRACT[name].columns:
            if c.type in ("date", "timestamp"):
                df[c.name] = pd.to_datetime(df[c.name])
            elif c.type in ("int", "float"):
                df[c.name] = pd.to_numeric(df[c.name])
        _check_table_contract(name, df, frames)
    # events never after the person's data_end_date or death, nor before their birth year
    ppl = frames["people"].set_index("person_id")
    last = ppl[["data_end_date", "death_date"]].min(axis=1)
    for name, col in (("contacts", "start_at"), ("admissions", "admitted_on"), ("admissions", "discharged_on"),
                      ("detentions", "start_on"), ("detentions", "end_on"), ("crisis_episodes", "end_on"),
                      ("prescriptions", "start_on"), ("prescriptions", "end_on"), ("employment", "recorded_on")):
        df = frames[name]
        lim = df["person_id"].map(last)
        assert (df[col].isna() | (df[col].dt.normalize() <= lim)).all(), f"{name}.{col} after data end"
        born = pd.to_datetime(df["person_id"].map(ppl["birth_year"]).fillna(1900).astype(int).astype(str) + "-01-01")
        assert (df[col].isna() | (df[col] >= born)).all(), f"{name}.{col} before birth"
    assert (ppl["site_id"] == ppl.index.map(frames["people"].set_index("person_id")["site_id"])).all()
    if "clusters" in frames:  # a cluster's people carry its arm and site, as validation demands
        cl = frames["clusters"].set_index("cluster_id")
        assert (ppl["arm"] == ppl["cluster_id"].map(cl["arm"])).all()
        assert (ppl["site_id"] == ppl["cluster_id"].map(cl["site_id"])).all()
    return frames


def test_parquet_follows_contract(study_pq):
    out, _ = study_pq
    for name, t in CONTRACT.items():
        schema = pq.read_schema(out / f"{name}.parquet")
        assert schema.names == list(t.column_names)
        for c in t.columns:
            assert schema.field(c.name).type == ARROW_TYPES[c.type], (name, c.name)
        md = pq.ParquetFile(out / f"{name}.parquet").metadata
        assert md.num_rows > 0, name
    frames = _check_study_contract(out)
    assert frames["people"]["cluster_id"].notna().all()
    assert 6 <= frames["people"]["cluster_id"].nunique() <= 30


def test_csv_follows_contract(study_csv):
    out = study_csv
    assert not (out / "clusters.csv").exists()  # individually randomised: no randomisation list
    for name, t in _present(out).items():
        raw = pd.read_csv(out / f"{name}.csv", dtype=str, keep_default_na=False)
        assert list(raw.columns) == list(t.column_names)
        for c in t.columns:
            vals = raw[c.name][raw[c.name] != ""]
            pattern = {"date": r"\d{4}-\d{2}-\d{2}", "timestamp": r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}",
                       "bool": r"true|false", "int": r"-?\d+", "float": r"-?\d+(\.\d+)?(e-?\d+)?"}.get(c.type)
            if pattern:
                assert vals.str.fullmatch(pattern).all(), (name, c.name, vals[~vals.str.fullmatch(pattern)].head())
    frames = _check_study_contract(out)
    assert frames["people"]["cluster_id"].isna().all()  # individually randomised


def test_truth_people_reproduced_exactly_parquet(study_pq):
    out, _ = study_pq
    _compare_truth(out)


def test_truth_people_reproduced_exactly_csv(study_csv):
    _compare_truth(study_csv)


def _compare_truth(out):
    truth = pd.read_parquet(out / "truth_people.parquet")
    got = derive(out).set_index("person_id").loc[truth["person_id"]].reset_index()
    from pipeline.synth.simulate import LATENT_TRUTH

    for c in truth.columns:
        if c in LATENT_TRUTH:   # what the records do not show, by design
            continue
        a = truth[c].astype(object).where(truth[c].notna(), None).tolist()
        b = got[c].astype(object).where(got[c].notna(), None).tolist()
        assert a == b, c
    # the study exercises the edge cases the conventions describe
    assert (truth["end_reason"] == "data_end").any() and (truth["end_reason"] == "end_of_follow_up").any()
    assert (truth["relapse_event"] == 1).any() and (truth["rtw_2y"].isna()).any()


def test_planted_edge_cases(study_pq):
    out, _ = study_pq
    ppl = read(out, "people").set_index("person_id")
    idx = ppl["index_date"]
    adm = read(out, "admissions")
    adm_day = (pd.to_datetime(adm["admitted_on"]) - pd.to_datetime(adm["person_id"].map(idx))).dt.days
    assert (adm_day < 0).any() and (adm_day == 0).any()
    # transfers continuing a pre-index spell, on or after the index date
    tr = adm[(adm["admission_method"] == "transfer") & (adm_day >= 1)]
    assert len(tr) > 0
    cri = read(out, "crisis_episodes")
    cday = (pd.to_datetime(cri["start_on"]) - pd.to_datetime(cri["person_id"].map(idx))).dt.days
    assert (cday == 0).any() and (cday < 0).any()
    det = read(out, "detentions")
    assert set(det["legal_section"]) >= {"2", "3", "136", "5(2)"}
    assert (adm["discharged_on"].isna()).any()  # still in hospital at the extract date
    rx = read(out, "prescriptions")
    assert set(rx["route"]) >= {"oral", "depot"}
    assert {"lithium", "sertraline"} <= set(rx["drug"]) or "sertraline" in set(rx["drug"])


def test_planted_episode_situations(study_pq):
    # the situations the episode definitions merge or treat apart occur in the records
    # (derive.episode_gap_days 2, detention_gap_days 1), so the planted-truth tests exercise them
    out, _ = study_pq

    def dated(name, start, end):
        df = read(out, name)
        df["s"] = pd.to_datetime(df[start])
        df["e"] = pd.to_datetime(df[end])
        return df

    def follows(first, then, gap):
        # pairs of records of one person where `then` starts within `gap` days of `first`'s end
        m = first.merge(then, on="person_id", suffixes=("_1", "_2"))
        m = m[m["s_2"] > m["s_1"]]
        return m[m["e_1"].notna() & (m["s_2"] <= m["e_1"] + pd.Timedelta(days=gap))]

    det = dated("detentions", "start_on", "end_on")
    det["sec"] = det["legal_section"].astype(str)
    s2, s3 = det[det["sec"] == "2"], det[det["sec"].isin(["2", "3"])]
    assert len(follows(s2, det[det["sec"] == "3"], 1)) > 0                   # 2 converted to 3
    assert len(follows(det[det["sec"] == "136"], s3, 1)) > 0                 # 136 leading into 2/3
    assert len(follows(det[det["sec"] == "5(2)"], s3, 1)) > 0                # 5(2) leading into 2/3
    cri = dated("crisis_episodes", "start_on", "end_on")
    adm = dated("admissions", "admitted_on", "discharged_on")
    assert len(follows(cri, adm, 2)) > 0                                     # crisis, then admission
    assert len(follows(cri, cri, 2)) > 0                                     # back-to-back crises
    assert cri["e"].isna().any() and s2["e"].isna().any()                    # open records
    inside = adm.merge(s3, on="person_id", suffixes=("_a", "_d"))
    inside = inside[(inside["s_d"] > inside["s_a"])
                    & (inside["e_a"].isna() | (inside["s_d"] < inside["e_a"]))]
    assert len(inside) > 0                                                   # detained in hospital


def test_chunking_independence(monkeypatch, tmp_path):
    monkeypatch.setattr(studymod, "CHUNK_PEOPLE", 300)
    monkeypatch.setattr(simmod, "CHUNK_PEOPLE", 300)
    st = studymod.build_study(people=1000, sites=3, seed=3, design="cluster", effects=resolve())
    assert st.n_chunks == 4
    forward = {i: simmod.simulate_chunk(st, i) for i in range(4)}
    backward = {i: simmod.simulate_chunk(st, i) for i in (3, 1, 0, 2)}
    for i in range(4):
        for name in CONTRACT:
            if name in ("staff", "clusters"):  # study-level tables, not drawn per chunk
                continue
            assert forward[i].tables[name].equals(backward[i].tables[name]), (i, name)
        assert forward[i].truth.equals(backward[i].truth)
    # the written file is the chunks in order
    generate_study(tmp_path, people=1000, sites=3, seed=3)
    written = pq.read_table(tmp_path / "contacts.parquet")
    assert pq.ParquetFile(tmp_path / "contacts.parquet").metadata.num_row_groups == 4
    assert written.equals(pa.concat_tables([forward[i].tables["contacts"] for i in range(4)]))


def test_drug_names_from_reference_list(study_pq):
    out, _ = study_pq
    import json
    ref = pd.read_csv(studymod.DRUG_LIST)
    rx = read(out, "prescriptions")
    truth = json.loads((out / "truth.json").read_text())
    unknown = set(rx["drug"]) - set(ref["drug"])
    assert unknown == set(truth["unknown_drugs"]["count_by_drug"])
    assert (rx["drug"].isin(list(unknown))).sum() == truth["unknown_drugs"]["prescriptions"]
    ap = set(ref.loc[ref["antipsychotic"], "drug"])
    assert rx["drug"].isin(ap).mean() > 0.3
    assert rx["drug"].isin(set(ref.loc[~ref["antipsychotic"], "drug"])).any()


def test_bad_arguments(tmp_path):
    with pytest.raises(TypeError):
        generate_study(tmp_path, people=10, sites=1, seed=1, no_such_effect=1.0)
    with pytest.raises(ValueError):
        generate_study(tmp_path, people=10, sites=1, seed=1, design="stepped")
    with pytest.raises(ValueError):
        generate_study(tmp_path, people=10, sites=1, seed=1, fmt="xlsx")
