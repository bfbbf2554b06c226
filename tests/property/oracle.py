"""A plain pandas/Python oracle for the derive stage's person-level outcomes.

Written from the definitions (CONTRACT.md, the headers of pipeline/sql/derive/*.sql),
deliberately the naive way: one person at a time, days as Python sets instead of merged
intervals, so that agreement with the SQL means something. Small inputs only.

Every function takes ``clean``: ``{table: DataFrame}`` with the contract's columns
(dates as ``datetime.date``, timestamps as ``datetime.datetime``, missing as None/NaN),
``p``: the resolved derive parameters, and ``ref``: the drug reference rows.
"""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd

OUTCOMES = ("relapse", "involuntary_admission", "first_admission", "first_crisis",
            "return_to_work", "death")


def missing(v) -> bool:
    return v is None or v is pd.NaT or (isinstance(v, float) and math.isnan(v))


def day(index_date: dt.date, d) -> int | None:
    if missing(d):
        return None
    if isinstance(d, dt.datetime):
        d = d.date()
    return (d - index_date).days


def rows(clean: dict, table: str) -> list[dict]:
    df = clean.get(table)
    return [] if df is None else df.to_dict("records")


# --- follow-up -------------------------------------------------------------------------

def people(clean, p) -> dict[str, dict]:
    out = {}
    for r in rows(clean, "people"):
        idx = r["index_date"]
        death = day(idx, r["death_date"])
        data_end = day(idx, r["data_end_date"])
        fu = p["follow_up_days"]
        end = min([x for x in (death, data_end, fu) if x is not None])
        if death is not None and death == end:
            reason = "death"
        elif data_end == end and data_end < fu:
            reason = "data_end"
        else:
            reason = "end_of_follow_up"
        last = min(x for x in (death, data_end) if x is not None)
        out[r["person_id"]] = dict(r, fu_end_day=end, end_reason=reason, person_days=end,
                                   index_date=idx, last_data_day=last)
    return out


# --- open records --------------------------------------------------------------------------

END_COLUMN = {"admissions": "discharged_on", "crisis_episodes": "end_on", "detentions": "end_on",
              "prescriptions": "end_on"}


def open_end_day(per: dict, table: str, detail, start: int, p) -> int:
    """The day an open record (no end date) of ``table`` ends, by derive.open_end: the
    person's last day of data (never before its start), or ``start + N`` if sooner, N the
    number of days given or, for ``max``, schemas/ open_max_days (per section for detentions;
    a section without one: the last day of data). For prescriptions (ends inclusive) one
    less: N days covered."""
    from pipeline.schemas import load_contract

    last = max(start, per["last_data_day"])
    rule = p["open_end"][table]
    if rule == "data_end":
        return last
    if rule == "max":
        om = load_contract()[table].column(END_COLUMN[table]).open_max_days
        n = dict(om.rows()).get(detail if om.by else None)
        if n is None:
            return last
    else:
        n = rule
    return min(start + n - (1 if table == "prescriptions" else 0), last)


def counted(person: dict, d: int | None) -> bool:
    return d is not None and 1 <= d <= person["fu_end_day"]


# --- admission spells ------------------------------------------------------------------

def spell_starts(clean, p) -> dict[str, list[dt.date]]:
    """Start date of each spell per person."""
    by_person: dict[str, list[dict]] = {}
    for a in rows(clean, "admissions"):
        by_person.setdefault(a["person_id"], []).append(a)
    out = {}
    far = dt.date(9999, 12, 31)
    for pid, adms in by_person.items():
        adms.sort(key=lambda a: (a["admitted_on"], a["admission_method"] == "transfer",
                                 far if missing(a["discharged_on"]) else a["discharged_on"],
                                 a["admission_id"]))
        starts = []
        prev = None
        for a in adms:
            continues = (
                prev is not None and a["admission_method"] == "transfer"
                and not missing(prev["discharged_on"])
                and (a["admitted_on"] - prev["discharged_on"]).days <= p["transfer_gap_days"])
            if not continues:
                starts.append(a["admitted_on"])
            prev = a
        out[pid] = starts
    return out


# --- acute-care and Mental Health Act episodes --------------------------------------------

def record_end(per: dict, table: str, detail, start: int, end, p) -> int:
    """Exclusive end day of a dated record: its end date, or the open-end rule's."""
    return open_end_day(per, table, detail, start, p) if missing(end) else day(per["index_date"], end)


def care_records(clean, p, ppl) -> dict[str, list[dict]]:
    """Per person: every admission, crisis episode and detention as
    ``{kind, detail, start, end}`` (days since index, end exclusive)."""
    out = {pid: [] for pid in ppl}
    for table, kind, start_col, end_col, detail_col in (
            ("admissions", "admission", "admitted_on", "discharged_on", None),
            ("crisis_episodes", "crisis_episode", "start_on", "end_on", None),
            ("detentions", "detention", "start_on", "end_on", "legal_section")):
        for r in rows(clean, table):
            per = ppl.get(r["person_id"])
            if per is None:
                continue
            detail = r[detail_col] if detail_col else None
            s = day(per["index_date"], r[start_col])
            out[r["person_id"]].append(dict(
                kind=kind, detail=detail, start=s,
                end=record_end(per, table, detail, s, r.get(end_col), p)))
    return out


def merge(records: list[dict], gap: int) -> list[list[dict]]:
    """Records grouped into episodes: by start, a record joins the current episode when it
    starts no later than ``gap`` days after the latest end so far."""
    episodes: list[list[dict]] = []
    reach = None
    for r in sorted(records, key=lambda r: (r["start"], r["end"])):
        if episodes and r["start"] <= reach + gap:
            episodes[-1].append(r)
            reach = max(reach, r["end"])
        else:
            episodes.append([r])
            reach = r["end"]
    return episodes


def acute_episodes(recs: list[dict], p) -> list[tuple[int, int]]:
    comp = p["relapse_components"]
    use = [r for r in recs
           if (r["kind"] == "admission" and "admissions" in comp)
           or (r["kind"] == "crisis_episode" and "crisis_episodes" in comp)
           or (r["kind"] == "detention" and "detentions" in comp
               and r["detail"] in p["involuntary_sections"])]
    return [(min(r["start"] for r in e), max(r["end"] for r in e))
            for e in merge(use, p["episode_gap_days"])]


def mha_episodes(recs: list[dict], p) -> list[dict]:
    def group(section):
        if section in p["involuntary_sections"]:
            return "inv"
        if section in p["place_of_safety_sections"]:
            return "pos"
        if section in p["holding_power_sections"]:
            return "hold"
        return None

    dets = [dict(r, group=group(r["detail"])) for r in recs if r["kind"] == "detention"]
    admissions = [r for r in recs if r["kind"] == "admission"]
    out = []
    for e in merge([d for d in dets if d["group"]], p["detention_gap_days"]):
        start = min(r["start"] for r in e)
        first = {g: min((r["start"] for r in e if r["group"] == g), default=None)
                 for g in ("inv", "pos", "hold")}
        out.append(dict(start=start, end=max(r["end"] for r in e), **first,
                        in_hospital=any(a["start"] < start <= a["end"] for a in admissions)))
    return out


def nights_in(per, intervals) -> set[int]:
    return {d for s, e in intervals for d in range(max(s, 0), min(e, per["fu_end_day"]))}


# --- events ------------------------------------------------------------------------------

def event_days(clean, p, ppl) -> dict[str, dict[str, list[int]]]:
    """Counted event days per person and event type."""
    ev = {pid: {k: [] for k in ("relapse", "spell", "crisis", "invol", "in_hosp", "pos", "hold",
                                "rtw")}
          for pid in ppl}

    def add(pid, kind, d):
        if pid in ppl and counted(ppl[pid], day(ppl[pid]["index_date"], d)):
            ev[pid][kind].append(day(ppl[pid]["index_date"], d))

    for pid, starts in spell_starts(clean, p).items():
        for s in starts:
            add(pid, "spell", s)
    for c in rows(clean, "crisis_episodes"):
        add(c["person_id"], "crisis", c["start_on"])
    for pid, recs in care_records(clean, p, ppl).items():
        per = ppl[pid]
        for s, _ in acute_episodes(recs, p):
            if max(1, p["relapse_grace_days"] + 1) <= s <= per["fu_end_day"]:
                ev[pid]["relapse"].append(s)
        for m in mha_episodes(recs, p):
            if m["inv"] is not None:
                if counted(per, m["inv"]) and (p["involuntary_in_hospital"] or not m["in_hospital"]):
                    ev[pid]["invol"].append(m["inv"])
                if counted(per, m["inv"]) and m["in_hospital"]:
                    ev[pid]["in_hosp"].append(m["inv"])
                continue
            for g in ("pos", "hold"):
                if m[g] is not None and counted(per, m[g]):
                    ev[pid][g].append(m[g])
    for e in rows(clean, "employment"):
        if e["status"] in p["rtw_statuses"]:
            add(e["person_id"], "rtw", e["recorded_on"])
    return ev


def time_to_event(clean, p) -> pd.DataFrame:
    ppl = people(clean, p)
    ev = event_days(clean, p, ppl)
    out = []
    for pid, per in ppl.items():
        e = ev[pid]
        candidates = {
            "relapse": e["relapse"], "involuntary_admission": e["invol"],
            "first_admission": e["spell"], "first_crisis": e["crisis"],
            "return_to_work": e["rtw"],
            "death": [per["fu_end_day"]] if per["end_reason"] == "death"
            and per["fu_end_day"] >= 1 else [],
        }
        for outcome in OUTCOMES:
            days = candidates[outcome]
            if days:
                event, t = 1, min(days)
            elif per["end_reason"] == "death" and outcome != "death":
                event, t = 2, per["fu_end_day"]
            else:
                event, t = 0, per["fu_end_day"]
            out.append(dict(
                person_id=pid, outcome=outcome, time_days=t, event=event,
                cnsr=0 if event == 1 else 1,
                censor_reason=None if event == 1 else per["end_reason"],
                event_date=per["index_date"] + dt.timedelta(days=t) if event else None))
    return pd.DataFrame(out, columns=["person_id", "outcome", "time_days", "event", "cnsr",
                                      "censor_reason", "event_date"])


# --- days in hospital, detained, on antipsychotics --------------------------------------

def recurrent(clean, p) -> pd.DataFrame:
    ppl = people(clean, p)
    ev = event_days(clean, p, ppl)
    recs = care_records(clean, p, ppl)
    g = p["relapse_grace_days"]
    out = []
    for pid, per in ppl.items():
        e = ev[pid]
        bed = nights_in(per, [(r["start"], r["end"]) for r in recs[pid]
                              if r["kind"] == "admission"])
        detained = nights_in(per, [(m["start"], m["end"]) for m in mha_episodes(recs[pid], p)
                                   if m["inv"] is not None])
        acute = nights_in(per, acute_episodes(recs[pid], p))
        relapse_at_risk = len(set(range(g, per["fu_end_day"])) - acute)
        blocked = detained if p["involuntary_in_hospital"] else detained | bed
        invol_at_risk = per["person_days"] - len(blocked)
        at_risk = p["rate_person_time"] == "at_risk"
        out.append(dict(
            person_id=pid, relapse_count=len(e["relapse"]), admission_spell_count=len(e["spell"]),
            crisis_episode_count=len(e["crisis"]), involuntary_count=len(e["invol"]),
            detained_in_hospital_count=len(e["in_hosp"]),
            place_of_safety_count=len(e["pos"]), holding_power_count=len(e["hold"]),
            bed_days=len(bed), days_detained=len(detained), acute_days=len(acute),
            person_days=per["person_days"], person_years=per["person_days"] / 365.25,
            relapse_at_risk_days=relapse_at_risk, involuntary_at_risk_days=invol_at_risk,
            relapse_person_years=(relapse_at_risk if at_risk
                                  else max(per["fu_end_day"] - g, 0)) / 365.25,
            involuntary_person_years=(invol_at_risk if at_risk else per["person_days"]) / 365.25))
    return pd.DataFrame(out)


def antipsychotic(clean, p, ref: list[dict]) -> pd.DataFrame:
    ppl = people(clean, p)
    ap_names = {r["drug"] for r in ref if r["antipsychotic"]}
    conv = {(r["drug"], r["route"]): r for r in ref}
    covered = {pid: set() for pid in ppl}
    ddd = {pid: [] for pid in ppl}   # (value or None, days)
    cpz = {pid: [] for pid in ppl}
    for rx in rows(clean, "prescriptions"):
        pid = rx["person_id"]
        drug = rx["drug"].strip().lower()
        if pid not in ppl or drug not in ap_names:
            continue
        per = ppl[pid]
        s = day(per["index_date"], rx["start_on"])
        e = 1 + (open_end_day(per, "prescriptions", None, s, p) if missing(rx["end_on"])
                 else day(per["index_date"], rx["end_on"]))
        days = {d for d in range(max(s, 0), min(e, per["fu_end_day"]))}
        if not days:
            continue
        covered[pid] |= days
        c = conv.get((drug, rx["route"]))
        ddd[pid].append((rx["daily_dose_mg"] / c["ddd_mg"] if c and c["ddd_mg"] else None,
                         len(days)))
        cpz[pid].append((rx["daily_dose_mg"] * 100.0 / c["cpz_equiv_mg"]
                         if c and c["cpz_equiv_mg"] else None, len(days)))
    out = []
    for pid, per in ppl.items():
        cov = covered[pid]
        last_from = max(per["fu_end_day"] - p["last_days_antipsychotic"], 0)

        def mean(parts):
            known = [v * n for v, n in parts if v is not None]
            return sum(known) / len(cov) if cov and known else None

        out.append(dict(
            person_id=pid, any_use=bool(cov),
            use_last_days=any(d >= last_from for d in cov),
            covered_days=len(cov), person_days=per["person_days"],
            proportion_covered=len(cov) / per["person_days"] if per["person_days"] else None,
            mean_daily_ddd=mean(ddd[pid]), mean_daily_cpz_mg=mean(cpz[pid]),
            dose_incomplete=any(v is None for v, _ in ddd[pid] + cpz[pid]),
            first_use_day=min(cov) if cov else None,
            window_observed=per["fu_end_day"] >= p["follow_up_days"],
            any_use_window=bool(cov) if per["fu_end_day"] >= p["follow_up_days"] else None,
            use_last_window=(any(d >= last_from for d in cov)
                             if per["fu_end_day"] >= p["follow_up_days"] else None)))
    return pd.DataFrame(out)


def activity(clean, p) -> pd.DataFrame:
    ppl = people(clean, p)
    ev = event_days(clean, p, ppl)
    recs = {pid: [] for pid in ppl}
    for e in rows(clean, "employment"):
        if e["person_id"] in ppl:
            recs[e["person_id"]].append(e)
    out = []
    for pid, per in ppl.items():
        lo = p["follow_up_days"] - p["rtw_window_days"]
        hi = min(p["follow_up_days"], per["fu_end_day"])
        window = [(day(per["index_date"], e["recorded_on"]), e["status"]) for e in recs[pid]
                  if lo <= day(per["index_date"], e["recorded_on"]) <= hi]
        last = max(window) if window else (None, None)
        pre = [(day(per["index_date"], e["recorded_on"]), e["status"]) for e in recs[pid]
               if 0 <= day(per["index_date"], e["recorded_on"]) <= min(lo - 1, per["fu_end_day"])]
        before = max(pre) if pre else (None, None)
        death = day(per["index_date"], per["death_date"])
        data_end = day(per["index_date"], per["data_end_date"])
        out.append(dict(
            person_id=pid, status_2y=last[1], status_2y_day=last[0],
            rtw_2y=None if last[1] is None else last[1] in p["rtw_statuses"],
            first_rtw_day=min(ev[pid]["rtw"]) if ev[pid]["rtw"] else None,
            last_status_pre=before[1], last_status_pre_day=before[0],
            window_reached=data_end >= lo,
            died_before_window=death is not None and death < lo and death <= data_end))
    return pd.DataFrame(out)


# --- fidelity ----------------------------------------------------------------------------

def fidelity_referral(clean, p) -> pd.DataFrame:
    roles = {s["staff_id"]: s["role"] for s in rows(clean, "staff")}
    staff_at: dict[str, list[str]] = {}
    for cs in rows(clean, "contact_staff"):
        staff_at.setdefault(cs["contact_id"], []).append(cs["staff_id"])
    meetings: dict[str, list[dict]] = {}
    for c in rows(clean, "contacts"):
        if (c["contact_type"] == "network_meeting" and not missing(c["attended"])
                and bool(c["attended"]) and not missing(c["referral_id"])):
            meetings.setdefault(c["referral_id"], []).append(c)

    def share(num, den):
        return num / den if den else None

    out = []
    for r in rows(clean, "referrals"):
        ms = sorted(meetings.get(r["referral_id"], []),
                    key=lambda c: (c["start_at"], c["contact_id"]))
        n = len(ms)
        first = ms[0] if ms else None
        hours = ((first["start_at"] - r["received_at"]).total_seconds() / 3600
                 if first else None)
        if hours is None:
            within = False
        elif hours < 0:
            within = None
        else:
            within = hours <= 24
        first_staff = set(staff_at.get(first["contact_id"], [])) if first else set()
        later = [s for m in ms[1:] for s in staff_at.get(m["contact_id"], [])]
        nmp = [m["network_members_present"] for m in ms
               if not missing(m["network_members_present"])]
        pp = [m["person_present"] for m in ms if not missing(m["person_present"])]
        n_clin = [sum(roles.get(s) in p["clinical_roles"] for s in staff_at.get(m["contact_id"], []))
                  for m in ms]
        fcs = r["first_contact_staff_id"]
        out.append(dict(
            referral_id=r["referral_id"], n_network_meetings=n,
            p1_hours_to_first_meeting=hours, p1_within_24h=within,
            p2_share_network_present=share(sum(x >= 1 for x in nmp), len(nmp)),
            p3_share_home_or_choice=share(
                sum(m["location"] in ("home", "place_of_choice") for m in ms), n),
            p4_first_contact_at_first_meeting=(
                None if first is None or missing(fcs) else fcs in first_staff),
            p5_share_two_clinical=share(sum(k >= 2 for k in n_clin), n),
            p5_core_team_continuity=share(sum(s in first_staff for s in later), len(later)),
            p5_peer_worker_present=(None if not ms else any(
                roles.get(s) == "peer_worker"
                for m in ms for s in staff_at.get(m["contact_id"], []))),
            p6_tolerance_of_uncertainty=None,
            p7_share_person_present=share(sum(bool(x) for x in pp), len(pp)),
            discharge_by_network=(None if missing(r["discharge_decided_by"])
                                  else r["discharge_decided_by"] == "network")))
    return pd.DataFrame(out)
