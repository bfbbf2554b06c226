"""The derive stage's outcomes written the obvious way in pandas: the alternative to beat.

Not part of the product. This is what a researcher would write without the warehouse:
read the extract's Parquet files into data frames, then merge / sort / groupby, all in
memory. It is vectorised (no Python loop over people), so the comparison is with good
pandas, not a straw man. It reads the *raw* extract, so it agrees with ``derived.*`` on an
extract without faults (validation then quarantines nothing).

Relations (the outcome relations of pipeline/sql/derive/, same definitions):
``people``, ``time_to_event``, ``recurrent``, ``acute_episodes``, ``mha_episodes``,
``antipsychotic``, ``activity``.

Usage::

    python -m benchmarks.pandas_derive derive STUDY_DIR OUT_DIR   # writes OUT_DIR/<relation>.parquet
    python -m benchmarks.pandas_derive check OUT_DIR WAREHOUSE     # prints {"equal": ..., ...}

``derive`` also writes ``OUT_DIR/timing.json``: ``read_and_compute_s``,
``read_and_compute_cpu_s`` and ``write_s``. The check is
:func:`benchmarks.agreement.compare`, shared with the polars peer.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks import agreement
from benchmarks.agreement import OUTCOMES, RELATIONS, compare, main_check  # noqa: F401 (re-exported)


def _params() -> dict:
    from pipeline.derive import resolve_params
    from pipeline.params import load_params, section

    return resolve_params(section(load_params(), "derive"))


def _read(study: Path, table: str, columns: list[str]) -> pd.DataFrame:
    df = pd.read_parquet(study / f"{table}.parquet", columns=columns)
    for c in columns:
        if c.endswith("_on") or c.endswith("_date"):
            df[c] = pd.to_datetime(df[c])
    return df


def _days(later: pd.Series, index: pd.Series) -> pd.Series:
    return (later - index).dt.days


def people(study: Path, p: dict) -> pd.DataFrame:
    import pyarrow.parquet as pq

    cols = ["person_id", "site_id", "arm", "cluster_id", "sex", "birth_year", "ethnicity",
            "diagnosis_group", "prior_admissions_2y", "baseline_activity", "index_date",
            "data_end_date", "death_date"]
    # data_end_reason is optional in the contract: null for everyone when the extract has none
    have_reason = "data_end_reason" in pq.read_schema(study / "people.parquet").names
    df = _read(study, "people", cols + (["data_end_reason"] if have_reason else []))
    if not have_reason:
        df["data_end_reason"] = None
    fu = p["follow_up_days"]
    death_day = _days(df["death_date"], df["index_date"])
    data_end_day = _days(df["data_end_date"], df["index_date"])
    end = np.minimum(np.minimum(death_day.fillna(fu), data_end_day), fu).astype("int64")
    df["age_at_index"] = df["index_date"].dt.year - df["birth_year"]
    df["fu_end_day"] = end
    df["fu_end_date"] = df["index_date"] + pd.to_timedelta(end, unit="D")
    df["end_reason"] = np.where(death_day.notna() & (death_day == end), "death",
                                np.where((data_end_day == end) & (data_end_day < fu), "data_end",
                                         "end_of_follow_up"))
    df["person_days"] = end
    df["last_data_day"] = np.minimum(death_day.fillna(data_end_day), data_end_day).astype("int64")
    return df.drop(columns=["birth_year"]).sort_values("person_id", ignore_index=True)


def _open_end_day(table: str, start_day: pd.Series, detail: pd.Series | None,
                  last_day: pd.Series, p: dict) -> pd.Series:
    """The day an open record ends (derive.open_end): the last day of data (never before the
    start), or start + N days if sooner (prescriptions: N days covered, so one less)."""
    from pipeline.derive import open_end_rows

    last = np.maximum(start_day, last_day)
    rows = [r for r in open_end_rows(p) if r["table_name"] == table]
    cap = pd.Series(np.nan, index=start_day.index)
    for r in rows:
        if r["end_rule"] != "cap":
            continue
        where = pd.Series(True, index=start_day.index) if r["detail"] is None else detail == r["detail"]
        cap = cap.mask(where & cap.isna(), float(r["max_days"]))
    shift = 1 if table == "prescriptions" else 0
    return np.minimum(last, (start_day + cap - shift).fillna(last)).astype("int64")


def _spell_starts(study: Path, p: dict) -> pd.DataFrame:
    a = _read(study, "admissions", ["admission_id", "person_id", "admitted_on", "discharged_on",
                                    "admission_method"])
    a["transfer"] = (a["admission_method"] == "transfer").astype("int8")
    a = a.sort_values(["person_id", "admitted_on", "transfer", "discharged_on", "admission_id"],
                      na_position="last", ignore_index=True)
    same = a["person_id"].eq(a["person_id"].shift())
    prev_dis = a["discharged_on"].shift()
    # a transfer after an admission with no discharge date starts a spell (contract, literally)
    continues = (same & (a["transfer"] == 1) & prev_dis.notna()
                 & (_days(a["admitted_on"], prev_dis) <= p["transfer_gap_days"]))
    return a.loc[~continues, ["person_id", "admitted_on"]].rename(columns={"admitted_on": "event_on"})


def care_records(study: Path, p: dict, ppl: pd.DataFrame, adm: pd.DataFrame,
                 det: pd.DataFrame) -> pd.DataFrame:
    """Admissions, crisis episodes and detentions as half-open day intervals (open records
    ended by derive.open_end), as derived.int_care_records."""
    crisis = _read(study, "crisis_episodes", ["person_id", "start_on", "end_on"])
    pp = ppl[["person_id", "index_date", "last_data_day"]]
    parts = []
    for kind, table, df, start, end, detail in (
            ("admission", "admissions", adm, "admitted_on", "discharged_on", None),
            ("crisis_episode", "crisis_episodes", crisis, "start_on", "end_on", None),
            ("detention", "detentions", det, "start_on", "end_on", "legal_section")):
        d = df.merge(pp, on="person_id")
        s_ = _days(d[start], d["index_date"])
        dd = d[detail] if detail else None
        opened = _open_end_day(table, s_, dd, d["last_data_day"], p)
        parts.append(pd.DataFrame({"kind": kind, "person_id": d["person_id"],
                                   "detail": dd if detail else None, "start": s_,
                                   "end": _days(d[end], d["index_date"]).fillna(opened).astype("int64")}))
    return pd.concat(parts, ignore_index=True)


def _episode_table(rec: pd.DataFrame, gap: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Records with their episode (``ep``), and one row per episode: person_id,
    episode_seq, start_day, end_day."""
    from pipeline.synth.oracle import episodes

    rec = rec.copy()
    rec["ep"] = episodes(rec, gap)
    g = rec.groupby("ep")
    eps = pd.DataFrame({"person_id": g["person_id"].first(), "start_day": g["start"].min(),
                        "end_day": g["end"].max(), "n": g.size()})
    eps["episode_seq"] = eps.groupby("person_id")["start_day"].rank(method="first").astype("int64")
    return rec, eps


def _dates(eps: pd.DataFrame, ppl: pd.DataFrame) -> pd.DataFrame:
    idx = eps["person_id"].map(ppl.set_index("person_id")["index_date"])
    eps["start_on"] = idx + pd.to_timedelta(eps["start_day"], unit="D")
    eps["end_on"] = idx + pd.to_timedelta(eps["end_day"], unit="D")
    return eps


def acute_episodes(rec: pd.DataFrame, ppl: pd.DataFrame, p: dict) -> pd.DataFrame:
    comp = p["relapse_components"]
    use = rec.loc[((rec["kind"] == "admission") & ("admissions" in comp))
                  | ((rec["kind"] == "crisis_episode") & ("crisis_episodes" in comp))
                  | ((rec["kind"] == "detention") & ("detentions" in comp)
                     & rec["detail"].isin(p["involuntary_sections"]))]
    use, eps = _episode_table(use, p["episode_gap_days"])
    counts = pd.crosstab(use["ep"], use["kind"])
    for col, kind in (("n_admissions", "admission"), ("n_crisis_episodes", "crisis_episode"),
                      ("n_detentions", "detention")):
        eps[col] = (counts[kind] if kind in counts else pd.Series(dtype="int64")).reindex(
            eps.index).fillna(0).astype("int64")
    eps = _dates(eps.rename(columns={"n": "n_records"}), ppl)
    fu = eps["person_id"].map(ppl.set_index("person_id")["fu_end_day"])
    eps["relapse"] = (eps["start_day"] >= max(1, p["relapse_grace_days"] + 1)) & (eps["start_day"] <= fu)
    return eps[["person_id", "episode_seq", "start_day", "end_day", "start_on", "end_on", "n_records",
                "n_admissions", "n_crisis_episodes", "n_detentions", "relapse"]].sort_values(
        ["person_id", "episode_seq"], ignore_index=True)


def mha_episodes(rec: pd.DataFrame, ppl: pd.DataFrame, p: dict) -> pd.DataFrame:
    d = rec.loc[rec["kind"] == "detention"].copy()
    d["group"] = np.select([d["detail"].isin(p["involuntary_sections"]),
                            d["detail"].isin(p["place_of_safety_sections"]),
                            d["detail"].isin(p["holding_power_sections"])],
                           ["involuntary", "place_of_safety", "holding_power"], "")
    d, eps = _episode_table(d.loc[d["group"] != ""], p["detention_gap_days"])
    for grp in ("involuntary", "place_of_safety", "holding_power"):
        eps[f"{grp}_start_day"] = d.loc[d["group"] == grp].groupby("ep")["start"].min().reindex(
            eps.index).astype("Int64")
    adm = rec.loc[rec["kind"] == "admission", ["person_id", "start", "end"]]
    both = eps.reset_index().merge(adm, on="person_id")
    inside = both.loc[(both["start"] < both["start_day"]) & (both["end"] >= both["start_day"]), "ep"]
    eps["in_hospital"] = eps.index.isin(inside.unique())
    eps = _dates(eps.rename(columns={"n": "n_detentions"}), ppl)
    fu = eps["person_id"].map(ppl.set_index("person_id")["fu_end_day"])
    eps["involuntary"] = eps["involuntary_start_day"].notna()

    def in_window(col):
        v = eps[col].astype("float")
        return ((v >= 1) & (v <= fu)).fillna(False).astype(bool)

    eps["involuntary_admission"] = in_window("involuntary_start_day") & (
        p["involuntary_in_hospital"] | ~eps["in_hospital"])
    eps["place_of_safety"] = ~eps["involuntary"] & in_window("place_of_safety_start_day")
    eps["holding_power"] = ~eps["involuntary"] & in_window("holding_power_start_day")
    return eps[["person_id", "episode_seq", "start_day", "end_day", "start_on", "end_on", "n_detentions",
                "involuntary", "involuntary_start_day", "place_of_safety_start_day",
                "holding_power_start_day", "in_hospital", "involuntary_admission", "place_of_safety",
                "holding_power"]].sort_values(["person_id", "episode_seq"], ignore_index=True)


def outcome_events(study: Path, p: dict, ppl: pd.DataFrame, acute: pd.DataFrame,
                   mha: pd.DataFrame) -> pd.DataFrame:
    crisis = _read(study, "crisis_episodes", ["person_id", "start_on"])
    emp = _read(study, "employment", ["person_id", "recorded_on", "status"])
    parts = [acute.loc[acute["relapse"], ["person_id", "start_on"]].rename(columns={"start_on": "event_on"})
             .assign(event_type="relapse_episode"),
             _spell_starts(study, p).assign(event_type="admission_spell"),
             crisis.rename(columns={"start_on": "event_on"}).assign(event_type="crisis_episode")]
    idx = mha["person_id"].map(ppl.set_index("person_id")["index_date"])
    for kind, where, col in (
            ("involuntary_admission", mha["involuntary_admission"], "involuntary_start_day"),
            ("detained_in_hospital", mha["involuntary"] & mha["in_hospital"], "involuntary_start_day"),
            ("place_of_safety", mha["place_of_safety"], "place_of_safety_start_day"),
            ("holding_power", mha["holding_power"], "holding_power_start_day")):
        on = idx[where] + pd.to_timedelta(mha.loc[where, col].astype("int64"), unit="D")
        parts.append(pd.DataFrame({"person_id": mha.loc[where, "person_id"], "event_on": on,
                                   "event_type": kind}))
    w = emp.loc[emp["status"].isin(p["rtw_statuses"]), ["person_id", "recorded_on"]]
    parts.append(w.rename(columns={"recorded_on": "event_on"}).assign(event_type="rtw_status"))
    ev = pd.concat(parts, ignore_index=True).merge(
        ppl[["person_id", "index_date", "fu_end_day"]], on="person_id", how="inner")
    ev["event_day"] = _days(ev["event_on"], ev["index_date"])
    return ev.loc[(ev["event_day"] >= 1) & (ev["event_day"] <= ev["fu_end_day"]),
                  ["person_id", "event_type", "event_day"]]


def time_to_event(ppl: pd.DataFrame, ev: pd.DataFrame, p: dict) -> pd.DataFrame:
    of_type = {"involuntary_admission": ["involuntary_admission"],
               "first_admission": ["admission_spell"], "first_crisis": ["crisis_episode"],
               "return_to_work": ["rtw_status"], "relapse": ["relapse_episode"]}
    firsts = []
    for outcome, types in of_type.items():
        f = ev.loc[ev["event_type"].isin(types)].groupby("person_id", as_index=False)["event_day"].min()
        firsts.append(f.assign(outcome=outcome))
    dead = ppl.loc[(ppl["end_reason"] == "death") & (ppl["fu_end_day"] >= 1), ["person_id", "fu_end_day"]]
    firsts.append(dead.rename(columns={"fu_end_day": "event_day"}).assign(outcome="death"))
    first = pd.concat(firsts, ignore_index=True)
    base = ppl[["person_id", "site_id", "arm", "cluster_id", "index_date", "fu_end_day",
                "end_reason"]]
    grid = base.merge(pd.DataFrame({"outcome": OUTCOMES}), how="cross")
    t = grid.merge(first, on=["person_id", "outcome"], how="left")
    has = t["event_day"].notna()
    died = (t["end_reason"] == "death") & (t["outcome"] != "death")
    t["event"] = np.where(has, 1, np.where(died, 2, 0)).astype("int64")
    t["time_days"] = np.where(has, t["event_day"], t["fu_end_day"]).astype("int64")
    t["cnsr"] = np.where(has, 0, 1).astype("int64")
    t["censor_reason"] = t["end_reason"].where(~has)
    t["event_date"] = (t["index_date"] + pd.to_timedelta(t["time_days"], unit="D")).where(t["event"] > 0)
    return t[["person_id", "site_id", "arm", "cluster_id", "outcome", "time_days", "event", "cnsr",
              "censor_reason", "event_date"]].sort_values(["person_id", "outcome"], ignore_index=True)


def _merged(iv: pd.DataFrame) -> pd.DataFrame:
    """Union of half-open intervals per (person_id, kind): one row per maximal interval."""
    iv = iv.sort_values(["person_id", "kind", "from_day", "to_day"], ignore_index=True)
    grp = iv["person_id"] + "\x1f" + iv["kind"]
    reach = iv.groupby(grp.to_numpy(), sort=False)["to_day"].cummax()
    prev = reach.shift()
    new = grp.ne(grp.shift()) | (iv["from_day"] > prev)
    iv["island"] = new.cumsum()
    return iv.groupby("island", sort=False).agg(person_id=("person_id", "first"), kind=("kind", "first"),
                                               from_day=("from_day", "min"), to_day=("to_day", "max"))


def _clip(df: pd.DataFrame) -> pd.DataFrame:
    df["from_day"] = df["from_day"].clip(lower=0)
    df["to_day"] = np.minimum(df["to_day"], df["fu_end_day"])
    return df.loc[df["from_day"] < df["to_day"]]


def exposures(study: Path, p: dict, ppl: pd.DataFrame) -> pd.DataFrame:
    from pipeline.derive import drug_list_path

    ref = pd.read_csv(drug_list_path(p))
    ref["antipsychotic"] = ref["antipsychotic"].astype(str).str.lower() == "true"
    names = ref.groupby("drug")["antipsychotic"].max()
    names = set(names.index[names])
    rx = _read(study, "prescriptions", ["prescription_id", "person_id", "drug", "route",
                                        "daily_dose_mg", "start_on", "end_on"])
    rx["drug"] = rx["drug"].str.strip().str.lower()
    rx = rx.loc[rx["drug"].isin(names)].merge(
        ppl[["person_id", "index_date", "fu_end_day", "last_data_day"]], on="person_id", how="inner")
    rx["from_day"] = _days(rx["start_on"], rx["index_date"])
    open_to = _open_end_day("prescriptions", rx["from_day"], None, rx["last_data_day"], p)
    rx["to_day"] = (_days(rx["end_on"], rx["index_date"]).fillna(open_to) + 1).astype("int64")
    rx = _clip(rx)
    rx = rx.merge(ref[["drug", "route", "ddd_mg", "cpz_equiv_mg"]], on=["drug", "route"], how="left")
    rx["days"] = rx["to_day"] - rx["from_day"]
    rx["daily_ddd"] = rx["daily_dose_mg"] / rx["ddd_mg"]
    rx["daily_cpz_mg"] = rx["daily_dose_mg"] * 100.0 / rx["cpz_equiv_mg"]
    return rx


def intervals(p: dict, ppl: pd.DataFrame, rec: pd.DataFrame, acute: pd.DataFrame,
              mha: pd.DataFrame, rx: pd.DataFrame) -> pd.DataFrame:
    pp = ppl[["person_id", "fu_end_day"]]
    a = rec.loc[rec["kind"] == "admission"].merge(pp, on="person_id")
    bed = pd.DataFrame({"person_id": a["person_id"], "from_day": a["start"], "to_day": a["end"],
                        "fu_end_day": a["fu_end_day"]})
    m = mha.loc[mha["involuntary"]].merge(pp, on="person_id")
    detained = pd.DataFrame({"person_id": m["person_id"], "from_day": m["start_day"],
                             "to_day": m["end_day"], "fu_end_day": m["fu_end_day"]})
    e = acute.merge(pp, on="person_id")
    ac = pd.DataFrame({"person_id": e["person_id"], "from_day": e["start_day"], "to_day": e["end_day"],
                       "fu_end_day": e["fu_end_day"]})
    ap = rx[["person_id", "from_day", "to_day", "fu_end_day"]].assign(kind="antipsychotic")
    iv = pd.concat([_clip(bed.assign(kind="bed")), _clip(detained.assign(kind="detained")),
                    _clip(bed.assign(kind="bed_or_detained")),
                    _clip(detained.assign(kind="bed_or_detained")), _clip(ac.assign(kind="acute")), ap],
                   ignore_index=True)
    iv["to_day"] = iv["to_day"].astype("int64")
    iv["from_day"] = iv["from_day"].astype("int64")
    return _merged(iv)


def recurrent(ppl: pd.DataFrame, ev: pd.DataFrame, iv: pd.DataFrame, p: dict) -> pd.DataFrame:
    counts = pd.crosstab(ev["person_id"], ev["event_type"])
    out = ppl[["person_id", "site_id", "arm", "cluster_id", "person_days", "fu_end_day"]].set_index("person_id")
    for col, t in (("relapse_count", "relapse_episode"), ("admission_spell_count", "admission_spell"),
                   ("crisis_episode_count", "crisis_episode"), ("involuntary_count", "involuntary_admission"),
                   ("detained_in_hospital_count", "detained_in_hospital"),
                   ("place_of_safety_count", "place_of_safety"), ("holding_power_count", "holding_power")):
        out[col] = (counts[t] if t in counts else pd.Series(dtype="int64")).reindex(out.index).fillna(0).astype("int64")
    g = p["relapse_grace_days"]
    iv = iv.assign(length=iv["to_day"] - iv["from_day"],
                   after_grace=(iv["to_day"] - np.maximum(iv["from_day"], g)).clip(lower=0))
    length = iv.groupby(["person_id", "kind"])["length"].sum().unstack()
    for col, kind in (("bed_days", "bed"), ("days_detained", "detained"), ("acute_days", "acute"),
                      ("_blocked", "bed_or_detained")):
        out[col] = (length[kind] if kind in length else pd.Series(dtype="int64")).reindex(out.index).fillna(0).astype("int64")
    after = iv.loc[iv["kind"] == "acute"].groupby("person_id")["after_grace"].sum()
    lead = np.maximum(out["fu_end_day"] - g, 0)
    out["person_years"] = out["person_days"] / 365.25
    out["relapse_at_risk_days"] = (lead - after.reindex(out.index).fillna(0)).astype("int64")
    out["involuntary_at_risk_days"] = (out["person_days"] - (
        out["days_detained"] if p["involuntary_in_hospital"] else out["_blocked"])).astype("int64")
    at_risk = p["rate_person_time"] == "at_risk"
    out["relapse_person_years"] = (out["relapse_at_risk_days"] if at_risk else lead) / 365.25
    out["involuntary_person_years"] = (out["involuntary_at_risk_days"] if at_risk
                                       else out["person_days"]) / 365.25
    return out.drop(columns=["_blocked", "fu_end_day"]).reset_index().sort_values("person_id", ignore_index=True)


def antipsychotic(ppl: pd.DataFrame, rx: pd.DataFrame, iv: pd.DataFrame, p: dict) -> pd.DataFrame:
    out = ppl[["person_id", "site_id", "arm", "cluster_id", "person_days", "fu_end_day"]].set_index("person_id")
    ap = iv.loc[iv["kind"] == "antipsychotic"].merge(out[["fu_end_day"]], left_on="person_id", right_index=True)
    ap["len"] = ap["to_day"] - ap["from_day"]
    ap["late"] = ap["to_day"] > np.maximum(ap["fu_end_day"] - p["last_days_antipsychotic"], 0)
    cov = ap.groupby("person_id").agg(covered=("len", "sum"), late=("late", "max"))
    rx = rx.assign(ddd_days=rx["daily_ddd"] * rx["days"], cpz_days=rx["daily_cpz_mg"] * rx["days"],
                   incomplete=rx["daily_ddd"].isna() | rx["daily_cpz_mg"].isna())
    g = rx.groupby("person_id")
    dose = pd.DataFrame({"ddd_days": g["ddd_days"].sum(min_count=1), "cpz_days": g["cpz_days"].sum(min_count=1),
                         "incomplete": g["incomplete"].max()})
    covered = cov["covered"].reindex(out.index).fillna(0).astype("int64")
    out["any_use"] = covered > 0
    out["use_last_days"] = cov["late"].astype(bool).reindex(out.index, fill_value=False)
    out["covered_days"] = covered
    out["proportion_covered"] = (covered / out["person_days"]).where(out["person_days"] > 0)
    out["mean_daily_ddd"] = (dose["ddd_days"].reindex(out.index) / covered).where(covered > 0)
    out["mean_daily_cpz_mg"] = (dose["cpz_days"].reindex(out.index) / covered).where(covered > 0)
    out["dose_incomplete"] = dose["incomplete"].astype(bool).reindex(out.index, fill_value=False)
    first = ap.groupby("person_id")["from_day"].min()
    out["first_use_day"] = first.reindex(out.index).astype("Int64")
    whole = out["fu_end_day"] >= p["follow_up_days"]
    out["window_observed"] = whole
    out["any_use_window"] = out["any_use"].astype("boolean").where(whole)
    out["use_last_window"] = out["use_last_days"].astype("boolean").where(whole)
    return out.drop(columns="fu_end_day").reset_index().sort_values("person_id", ignore_index=True)


def activity(study: Path, ppl: pd.DataFrame, ev: pd.DataFrame, p: dict) -> pd.DataFrame:
    emp = _read(study, "employment", ["person_id", "recorded_on", "status"])
    e = emp.merge(ppl[["person_id", "index_date", "fu_end_day"]], on="person_id")
    lo = p["follow_up_days"] - p["rtw_window_days"]
    e["record_day"] = _days(e["recorded_on"], e["index_date"])
    lo = p["follow_up_days"] - p["rtw_window_days"]
    hi = np.minimum(p["follow_up_days"], e["fu_end_day"])
    w = e.loc[(e["record_day"] >= lo) & (e["record_day"] <= hi)]
    last = (w.sort_values(["person_id", "recorded_on", "status"], ascending=[True, False, False])
            .drop_duplicates("person_id").set_index("person_id"))
    out = ppl[["person_id", "site_id", "arm", "cluster_id", "baseline_activity"]].set_index("person_id")
    out["status_2y"] = last["status"].reindex(out.index)
    out["status_2y_day"] = last["record_day"].reindex(out.index).astype("Int64")
    out["rtw_2y"] = out["status_2y"].isin(p["rtw_statuses"]).astype("boolean").where(out["status_2y"].notna())
    first = ev.loc[ev["event_type"] == "rtw_status"].groupby("person_id")["event_day"].min()
    out["first_rtw_day"] = first.reindex(out.index).astype("Int64")
    b = e.loc[(e["record_day"] >= 0) & (e["record_day"] <= np.minimum(lo - 1, e["fu_end_day"]))]
    pre = (b.sort_values(["person_id", "recorded_on", "status"], ascending=[True, False, False])
           .drop_duplicates("person_id").set_index("person_id"))
    out["last_status_pre"] = pre["status"].reindex(out.index)
    out["last_status_pre_day"] = pre["record_day"].reindex(out.index).astype("Int64")
    q = ppl.set_index("person_id")
    death_day = _days(q["death_date"], q["index_date"])
    data_end_day = _days(q["data_end_date"], q["index_date"])
    out["window_reached"] = (data_end_day >= lo).reindex(out.index)
    out["died_before_window"] = (death_day.notna() & (death_day < lo)
                                 & (death_day <= data_end_day)).reindex(out.index)
    return out.reset_index().sort_values("person_id", ignore_index=True)


def derive_all(study: Path, p: dict | None = None) -> dict[str, pd.DataFrame]:
    """Every outcome relation from the extract's Parquet files."""
    p = p or _params()
    study = Path(study)
    ppl = people(study, p)
    adm = _read(study, "admissions", ["person_id", "admitted_on", "discharged_on"])
    det = _read(study, "detentions", ["person_id", "legal_section", "start_on", "end_on"])
    rec = care_records(study, p, ppl, adm, det)
    acute = acute_episodes(rec, ppl, p)
    mha = mha_episodes(rec, ppl, p)
    ev = outcome_events(study, p, ppl, acute, mha)
    rx = exposures(study, p, ppl)
    iv = intervals(p, ppl, rec, acute, mha, rx)
    return {"people": ppl, "time_to_event": time_to_event(ppl, ev, p),
            "recurrent": recurrent(ppl, ev, iv, p), "acute_episodes": acute, "mha_episodes": mha,
            "antipsychotic": antipsychotic(ppl, rx, iv, p), "activity": activity(study, ppl, ev, p)}


def main(argv: list[str]) -> None:
    agreement.main(argv, derive_all, lambda df, path: df.to_parquet(path, index=False))


if __name__ == "__main__":
    main(sys.argv[1:])
