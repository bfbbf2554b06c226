"""Reference (pandas) implementation of the default outcome definitions over written files.

Used by the synth tests to check that the records reproduce truth_people.parquet exactly;
independent of the simulation code. Not the derive stage (which is SQL in DuckDB). The
definitions are derive's defaults (:func:`pipeline.derive.resolve_params`): relapses are
acute-care episodes, involuntary admissions Mental Health Act episodes, records with no end
date end as ``derive.open_end`` says (:func:`episodes` merges records into episodes; the
pandas benchmark uses it too)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

WORK = {"employed", "self_employed", "education", "training"}
INVOLUNTARY = {"2", "3", "4", "37"}
FU = 730


def episodes(df: pd.DataFrame, gap: int) -> pd.Series:
    """Episode number (unique over all people) of each record of ``df`` (columns
    ``person_id``, ``start``, ``end``: half-open day intervals): by start, a record joins the
    current episode of its person when it starts no later than ``gap`` days after the latest
    end so far."""
    d = df[["person_id", "start", "end"]].sort_values(["person_id", "start", "end"], kind="stable")
    reach = d.groupby("person_id", sort=False)["end"].cummax()
    prev = reach.groupby(d["person_id"], sort=False).shift()
    new = prev.isna() | (d["start"] > prev + gap)
    return new.cumsum().reindex(df.index)


def open_end(table: str, start: pd.Series, detail: pd.Series | None, last: pd.Series) -> pd.Series:
    """End day of open records of ``table`` under the default derive.open_end."""
    from pipeline.derive import open_end_rows, resolve_params

    last = np.maximum(start, last)
    cap = pd.Series(np.nan, index=start.index)
    for r in open_end_rows(resolve_params(None)):
        if r["table_name"] == table and r["end_rule"] == "cap":
            where = True if r["detail"] is None else (detail == r["detail"])
            cap = cap.mask(where & cap.isna(), float(r["max_days"]))
    return np.minimum(last, (start + cap).fillna(last)).astype("int64")


def read(out: Path, table: str) -> pd.DataFrame:
    out = Path(out)
    p = out / f"{table}.parquet"
    if p.exists():
        return pd.read_parquet(p)
    return pd.read_csv(out / f"{table}.csv", dtype=str, keep_default_na=False, na_values=[""])


def _day(df, col, people):
    idx = df["person_id"].map(people["index_date"])
    return (pd.to_datetime(df[col]).dt.normalize() - idx).dt.days


def derive(out: Path) -> pd.DataFrame:
    ppl = read(out, "people")
    ppl["index_date"] = pd.to_datetime(ppl["index_date"])
    ppl["data_end_date"] = pd.to_datetime(ppl["data_end_date"])
    ppl["death_date"] = pd.to_datetime(ppl["death_date"])
    people = ppl.set_index("person_id")
    d_death = (people["death_date"] - people["index_date"]).dt.days
    d_end = (people["data_end_date"] - people["index_date"]).dt.days
    fu = pd.concat([d_death.fillna(10**9), d_end, pd.Series(FU, index=people.index)], axis=1).min(axis=1).astype(int)
    reason = np.where(d_death.notna() & (d_death == fu), "death",
                      np.where((d_end == fu) & (d_end < FU), "data_end", "end_of_follow_up"))
    res = pd.DataFrame({"site_id": people["site_id"], "arm": people["arm"], "fu_end_day": fu,
                        "end_reason": reason}, index=people.index)

    def window(df, day):
        f = res["fu_end_day"].reindex(df["person_id"]).to_numpy()
        return (day.to_numpy() >= 1) & (day.to_numpy() <= f)

    adm = read(out, "admissions")
    adm["a"] = pd.to_datetime(adm["admitted_on"])
    adm["d"] = pd.to_datetime(adm["discharged_on"])
    adm = adm.sort_values(["person_id", "a"], kind="stable")
    prev_d = adm.groupby("person_id")["d"].shift(1)
    chained = (adm["admission_method"].str.strip().str.lower() == "transfer") & prev_d.notna() & \
        (adm["a"] <= prev_d + pd.Timedelta(days=1))
    spells = adm[~chained].copy()
    spells["day"] = _day(spells, "admitted_on", people)
    spells = spells[window(spells, spells["day"])]
    cri = read(out, "crisis_episodes")
    cri["day"] = _day(cri, "start_on", people)
    first_crisis = cri[window(cri, cri["day"])]
    det = read(out, "detentions")
    det["section"] = det["legal_section"].astype(str).str.strip().str.lower()
    det["day"] = _day(det, "start_on", people)

    # every record of acute care with the end the definitions use
    from pipeline.derive import resolve_params

    p = resolve_params(None)
    last = (people[["death_date", "data_end_date"]].min(axis=1) - people["index_date"]).dt.days

    def record(df, table, start, end, detail=None):
        ls = last.reindex(df["person_id"]).to_numpy()
        s_ = _day(df, start, people)
        e_ = _day(df, end, people)
        opened = open_end(table, s_, detail, pd.Series(ls, index=df.index))
        return pd.DataFrame({"person_id": df["person_id"], "start": s_,
                             "end": e_.fillna(opened).astype("int64")})

    a_rec = record(adm, "admissions", "admitted_on", "discharged_on")
    c_rec = record(cri, "crisis_episodes", "start_on", "end_on")
    d_rec = record(det, "detentions", "start_on", "end_on", det["section"])
    d_rec["group"] = np.select([det["section"].isin(p["involuntary_sections"]),
                                det["section"].isin(p["place_of_safety_sections"]),
                                det["section"].isin(p["holding_power_sections"])],
                               ["inv", "pos", "hold"], "")

    # relapses: acute-care episodes starting in follow-up
    acute = pd.concat([a_rec, c_rec, d_rec.loc[d_rec["group"] == "inv", ["person_id", "start", "end"]]],
                      ignore_index=True)
    acute["ep"] = episodes(acute, p["episode_gap_days"])
    eps = acute.groupby("ep").agg(person_id=("person_id", "first"), day=("start", "min"))
    relapses = eps[window(eps, eps["day"])]

    # involuntary admissions: Mental Health Act episodes holding a 2/3/4/37
    mha = d_rec[d_rec["group"] != ""].copy()
    mha["ep"] = episodes(mha, p["detention_gap_days"])
    g = mha.groupby("ep")
    me = pd.DataFrame({"person_id": g["person_id"].first(), "start": g["start"].min(), "end": g["end"].max()})
    for grp in ("inv", "pos", "hold"):
        me[grp] = mha[mha["group"] == grp].groupby("ep")["start"].min().reindex(me.index)
    inv_ep = me[me["inv"].notna()]
    detained = inv_ep[window(inv_ep, inv_ep["inv"])].assign(day=lambda x: x["inv"].astype("int64"))
    alone = me[me["inv"].isna()]
    pos = alone[alone["pos"].notna()]
    pos = pos[window(pos, pos["pos"])]
    hold = alone[alone["hold"].notna()]
    hold = hold[window(hold, hold["hold"])]

    def nights(df):
        f = res["fu_end_day"].reindex(df["person_id"]).to_numpy()
        return pd.Series(np.maximum(np.minimum(df["end"].to_numpy(), f) - np.maximum(df["start"].to_numpy(), 0), 0),
                         index=df.index)

    beds = a_rec.assign(start=a_rec["start"].clip(lower=0),
                        end=np.minimum(a_rec["end"], res["fu_end_day"].reindex(a_rec["person_id"]).to_numpy()))
    beds = beds[beds["start"] < beds["end"]].copy()
    beds["ep"] = episodes(beds, 0)
    beds = beds.groupby("ep").agg(person_id=("person_id", "first"), start=("start", "min"), end=("end", "max"))

    emp = read(out, "employment")
    emp["day"] = _day(emp, "recorded_on", people)
    emp["work"] = emp["status"].str.strip().str.lower().isin(WORK)
    w = emp[emp["work"]]
    w = w[window(w, w["day"])]

    firsts = {
        "first_admission": spells.groupby("person_id")["day"].min(),
        "first_crisis": first_crisis.groupby("person_id")["day"].min(),
        "involuntary_admission": detained.groupby("person_id")["day"].min(),
        "rtw": w.groupby("person_id")["day"].min(),
        "relapse": relapses.groupby("person_id")["day"].min(),
    }
    is_death = res["end_reason"] == "death"
    for name in ("relapse", "involuntary_admission", "first_admission", "first_crisis", "rtw"):
        t = firsts[name].reindex(res.index)
        ev = t.notna()
        res[f"{name}_time"] = np.where(ev, t.fillna(0), res["fu_end_day"]).astype(int)
        res[f"{name}_event"] = np.where(ev, 1, np.where(is_death, 2, 0))
    res["death_time"] = res["fu_end_day"]
    res["death_event"] = is_death.astype(int)
    lim = np.minimum(FU, res["fu_end_day"]).reindex(emp["person_id"]).to_numpy()
    win = emp[(emp["day"].to_numpy() >= 640) & (emp["day"].to_numpy() <= lim)].sort_values(["person_id", "day"])
    last = win.groupby("person_id")["work"].last()
    res["rtw_2y"] = last.reindex(res.index).astype("boolean")
    def per_person(df, values=None):
        if values is None:
            return df.groupby("person_id").size().reindex(res.index, fill_value=0)
        return values.groupby(df["person_id"]).sum().reindex(res.index, fill_value=0).astype("int64")

    res["relapse_count"] = per_person(relapses)
    res["involuntary_count"] = per_person(detained)
    res["place_of_safety_count"] = per_person(pos)
    res["holding_power_count"] = per_person(hold)
    res["days_detained"] = per_person(inv_ep, nights(inv_ep))
    res["bed_days"] = per_person(beds, nights(beds))
    return res.reset_index(names="person_id")
