"""Reference (pandas) implementation of the default outcome definitions over written files.

Used by the synth tests to check that the records reproduce truth_people.parquet exactly;
independent of the simulation code. Not the derive stage (which is SQL in DuckDB)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

WORK = {"employed", "self_employed", "education", "training"}
INVOLUNTARY = {"2", "3", "4", "37"}
FU = 730


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
    cri = cri[window(cri, cri["day"])]
    det = read(out, "detentions")
    det = det[det["legal_section"].astype(str).str.strip().str.lower().isin(INVOLUNTARY)].copy()
    det["day"] = _day(det, "start_on", people)
    det = det[window(det, det["day"])]
    emp = read(out, "employment")
    emp["day"] = _day(emp, "recorded_on", people)
    emp["work"] = emp["status"].str.strip().str.lower().isin(WORK)
    w = emp[emp["work"]]
    w = w[window(w, w["day"])]

    firsts = {
        "first_admission": spells.groupby("person_id")["day"].min(),
        "first_crisis": cri.groupby("person_id")["day"].min(),
        "involuntary_admission": det.groupby("person_id")["day"].min(),
        "rtw": w.groupby("person_id")["day"].min(),
    }
    firsts["relapse"] = pd.concat([firsts["first_admission"], firsts["first_crisis"]], axis=1).min(axis=1)
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
    res["relapse_count"] = (spells.groupby("person_id").size().reindex(res.index, fill_value=0)
                            + cri.groupby("person_id").size().reindex(res.index, fill_value=0))
    res["involuntary_count"] = det.groupby("person_id").size().reindex(res.index, fill_value=0)
    return res.reset_index(names="person_id")
