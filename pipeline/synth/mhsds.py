"""``odeval synth --format mhsds``: the synthetic study as an NHS trust's MHSDS tables.

The study is generated as usual (same seed, same people, same planted truth:
``truth.json``, ``truth_people.parquet``), then written the way MHSDS delivers it, so that
``odeval import mhsds`` followed by ``odeval run`` must recover the planted truth exactly:

* **monthly resubmission**: a referral, spell, Mental Health Act period or person is
  submitted every month from its start to its end (or the extract), each version showing
  what was known that month (no discharge date before the discharge month);
* **mixed versions**: months up to 2022-09 in v4.1 column names as pipe-delimited text,
  2022-10 to 2024-03 in v5 names as CSV, from 2024-04 in v6 names as Parquet (legal status
  codes as integers there). These eras mix versions; they are not MHSDS's release dates;
* **refresh submissions**: some latest versions also come in an earlier submission of the
  same month with a wrong value (superseded by UniqSubmissionID);
* **commissioner copies**: some kept rows come twice more with another OrgIDComm (duplicates);
* **invalid rows**: in the v4.1 and v6 files, some records have a later copy with a wrong
  value flagged N (IC_USE_Submission_Flag, Der_IsLatest): it would win if not dropped;
* **codes, not words**, through the code lists of ``pipeline/reference/mhsds/``, with some
  codes that are in no list (each planted where the contract's unknown/other value is the
  study's value, so the truth survives) and MHS401 "informal" periods that are no detention;
* **people outside the trial** in every table (not in the allocation list), and a few
  allocated people without any MHS001MPI record.

Everything planted is counted in ``mhsds_truth.json``, which the import report must match.
UniqMonthID is the synthetic study's own month number (12 x year + month), only ordered.
Written beside the tables: ``allocation.csv``, ``local/`` (staff register and prescribing
in contract format) and ``local_mapping.csv`` (the synthetic trust's local code for an Open
Dialogue network meeting, a made-up local code, not SNOMED CT).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import duckdb

#: v4.1 before this month, v5 before V6_FROM, v6 after (synthetic eras; see module docstring)
V5_FROM = "2022-10-01"
V6_FROM = "2024-04-01"
#: the synthetic trust's local procedure code for a network meeting (see local_mapping.csv)
NETWORK_MEETING_CODE = "OD-NETWORK-MEETING"
RATES = {"refresh": 0.05, "duplicate": 0.04, "invalid": 0.03, "no_mpi": 0.02, "informal": 0.05}
#: people outside the trial per site (in MHSDS, not in the allocation list)
OUTSIDERS_PER_SITE = 3

ERAS = ("v4.1", "v5", "v6")
ERA_FILE = {"v4.1": ("_v4.txt", "csv", "|"), "v5": ("_v5.csv", "csv", ","), "v6": ("_v6.parquet", "parquet", "")}
FLAG = {"v4.1": "IC_USE_Submission_Flag", "v6": "Der_IsLatest"}

#: per MHSDS table: the query of its submitted rows from the native study (views n_<table>),
#: as (record key expression, columns, a "wrong" value for refresh and invalid copies).
#: Every query returns: id, person_id, month (first day), plus the MHSDS columns named in
#: COLUMNS. {extract} is the extract date literal.
_MONTHS = ("unnest(generate_series(date_trunc('month', {start}), date_trunc('month', "
           "coalesce({end}, date '{extract}')), interval 1 month))")


def _versions(source: str, start: str, end: str | None, cols: str) -> str:
    months = _MONTHS.format(start=start, end=end or "null", extract="{extract}")
    return f"select *, cast({months} as date) as month from (select {cols} from {source})"


QUERIES = {
    "MHS001MPI": """
        select person_id as id, person_id, month,
               case when death_date <= last_day(month) then death_date end as PersDeathDate,
               case sex when 'female' then '2' when 'male' then '1' when 'other' then '9' else 'X' end as Gender,
               case sex when 'female' then '2' when 'male' then '1' when 'other' then '3'
                        else case when rnd(person_id, 'sex') < 0.3 then '7' else 'X' end end as GenderIDCode,
               case ethnicity when 'white' then 'A' when 'asian' then 'H' when 'black' then 'M'
                    when 'mixed' then 'D' when 'other' then 'S'
                    when 'unknown' then case when rnd(person_id, 'eth') < 0.3 then 'U9' else '99' end
               end as EthnicCategory
        from ({versions_mpi})
        where not (death_date is null and rnd(person_id, 'no_mpi') < {no_mpi})
    """,
    "MHS101Referral": """
        select id, id as UniqServReqID, person_id, month,
               cast(received_at as date) as ReferralRequestReceivedDate,
               cast(received_at as time) as ReferralRequestReceivedTime,
               case when discharged_at < last_day(month) + interval 1 day then cast(discharged_at as date) end as ServDischDate,
               case when discharged_at < last_day(month) + interval 1 day then cast(discharged_at as time) end as ServDischTime
        from ({versions_ref})
        union all
        select id, id, person_id, month, start_on, null,
               case when end_on <= last_day(month) then end_on end, null
        from ({versions_crisis})
    """,
    "MHS102ServiceTypeReferredTo": """
        select id || '/T' as id, id as UniqServReqID, 'T-' || id as UniqCareProfTeamID, person_id, month,
               case when rnd(id, 'team') < 0.1 then 'ZZ9' else 'A06' end as ServTeamTypeRefToMH
        from ({versions_ref})
        union all
        select id || '/T', id, 'T-' || id, person_id, month, 'A02'
        from ({versions_crisis})
    """,
    "MHS201CareContact": """
        select contact_id as id, contact_id as UniqCareContID, person_id, referral_id as UniqServReqID,
               date_trunc('month', start_at)::date as month,
               cast(start_at as date) as CareContDate, cast(start_at as time) as CareContTime,
               duration_min as ClinContDurOfCareCont,
               case contact_type when 'network_meeting' then '01' when 'individual' then '01'
                    when 'phone' then '02' when 'video' then '11' else '98' end as ConsMechanismMH,
               case contact_type when 'network_meeting' then '01' when 'individual' then '01'
                    when 'phone' then '02' when 'video' then '03' else '98' end as ConsMediumUsed,
               case location when 'home' then 'A01' when 'place_of_choice' then 'A04' when 'clinic' then 'E01'
                    when 'inpatient_ward' then 'E02' when 'remote' then null
                    else case when rnd(contact_id, 'loc') < 0.3 then 'Z01' else 'X01' end end as ActLocTypeCode,
               case when attended then '5' else '3' end as AttendOrDNACode
        from n_contacts
    """,
    "MHS202CareActivity": """
        select s.contact_id || '/' || s.staff_id as id, s.contact_id || '/' || s.staff_id as UniqCareActID,
               s.contact_id as UniqCareContID, c.person_id, date_trunc('month', c.start_at)::date as month,
               s.staff_id as CareProfLocalId,
               case when c.contact_type = 'network_meeting' then '{nm}' end as "Procedure"
        from n_contact_staff as s join n_contacts as c using (contact_id)
    """,
    "MHS203OtherAttend": """
        select contact_id as id, contact_id || '/' || k as MHS203UniqID, contact_id as UniqCareContID,
               person_id, date_trunc('month', start_at)::date as month
        from (select *, unnest(range(1, network_members_present + 1)) as k from n_contacts
              where network_members_present > 0)
    """,
    "MHS401MHActPeriod": """
        select id, id as UniqMHActEpisodeID, person_id, month, start_on as StartDateMHActLegalStatusClass,
               case when end_on <= last_day(month) then end_on end as EndDateMHActLegalStatusClass,
               case legal_section when '2' then '02' when '3' then '03' when '4' then '04' when '5(2)' then '05'
                    when '5(4)' then '06' when '135' then '19' when '136' then '20'
                    when '37' then case when rnd(id, 's41') < 0.1 then '09' else '10' end
                    when 'informal' then '01'
                    else case when rnd(id, 'sec') < 0.5 then '11' else '12' end end as LegalStatusCode
        from ({versions_det})
    """,
    "MHS501HospProvSpell": """
        select id, id as spell_id, person_id, month, admitted_on as StartDateHospProvSpell,
               case when discharged_on <= last_day(month) then discharged_on end as DischDateHospProvSpell,
               case admission_method when 'emergency' then '21' when 'planned' then '11'
                    else case when rnd(id, 'transfer') < 0.5 then '81' else '2B' end end as AdmMethCodeHospProvSpell
        from ({versions_adm})
    """,
    "MHS004EmpStatus": """
        select person_id || '/' || cast(recorded_on as varchar) as id, person_id, recorded_on as EmployStatusRecDate,
               date_trunc('month', recorded_on)::date + case when k = 1 then interval 1 month else interval 0 day end as month,
               case status when 'employed' then '01' when 'self_employed' then '01' when 'education' then '03'
                    when 'training' then '03' when 'volunteering' then '07' when 'unemployed' then '02'
                    when 'long_term_sick' then '04' when 'carer_homemaker' then '05' when 'retired' then '08'
                    when 'other' then '06'
                    else case when rnd(person_id || cast(recorded_on as varchar), 'emp') < 0.3 then '99' else 'ZZ' end
               end as EmployStatus
        from (select *, unnest(case when rnd(person_id || cast(recorded_on as varchar), 'emp_again') < 0.3
                                    then [0, 1] else [0] end) as k
              from n_employment)
        where date_trunc('month', recorded_on) + case when k = 1 then interval 1 month else interval 0 day end
              <= date '{extract}'
    """,
}

#: the column a refresh or invalid copy gets wrong (so that keeping it would change the extract)
WRONG = {
    "MHS001MPI": ("PersDeathDate", "date '1990-01-01'"),
    "MHS101Referral": ("ReferralRequestReceivedDate", "ReferralRequestReceivedDate - 3"),
    "MHS102ServiceTypeReferredTo": ("ServTeamTypeRefToMH", "case when ServTeamTypeRefToMH = 'A02' then 'A06' else 'A02' end"),
    "MHS201CareContact": ("AttendOrDNACode", "case when AttendOrDNACode = '5' then '3' else '5' end"),
    "MHS202CareActivity": ("CareProfLocalId", "CareProfLocalId || 'X'"),
    "MHS203OtherAttend": ("MHS203UniqID", "MHS203UniqID || 'X'"),
    "MHS401MHActPeriod": ("LegalStatusCode", "case when LegalStatusCode = '03' then '02' else '03' end"),
    "MHS501HospProvSpell": ("StartDateHospProvSpell", "StartDateHospProvSpell - 1"),
    "MHS004EmpStatus": ("EmployStatus", "case when EmployStatus = '01' then '02' else '01' end"),
}

#: per table, the era-specific MHSDS names of generator columns (others keep their name)
ERA_NAMES = {
    "MHS001MPI": {"Gender": ("v4.1", "v5"), "GenderIDCode": ("v6",)},
    "MHS201CareContact": {"ConsMediumUsed": ("v4.1", "v5"), "ConsMechanismMH": ("v6",)},
    "MHS501HospProvSpell": {"spell_id": {"v4.1": "UniqHospProvSpellNum", "v5": "UniqHospProvSpellNum",
                                          "v6": "UniqHospProvSpellID"}},
}


def _native_views(con: duckdb.DuckDBPyConnection, native: Path) -> None:
    for p in sorted(native.glob("*.parquet")):
        if p.stem in ("truth_people",):
            continue
        con.execute(f"create view n_{p.stem} as select * from read_parquet('{p}')")


def _era(month: str) -> str:
    return (f"case when {month} < date '{V5_FROM}' then 'v4.1' "
            f"when {month} < date '{V6_FROM}' then 'v5' else 'v6' end")


def write_mhsds(out: Path, *, people: int, sites: int, seed: int, design: str = "cluster",
                progress: Callable[[int, int], None] | None = None, **effects) -> dict:
    """Write the synthetic study to ``out`` as MHSDS tables (see module docstring).

    Files: ``mhsds/`` (the tables), ``allocation.csv``, ``local/staff.csv`` and
    ``local/prescriptions.csv``, ``local_mapping.csv``, ``truth.json``,
    ``truth_people.parquet``, ``mhsds_truth.json`` (what was planted, counted as the
    import report counts it). The same seed gives the same bytes.
    """
    from pipeline.synth.generate import generate_study
    from pipeline.synth.study import EXTRACT_DATE

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("mhsds", "local"):
        if (out / name).exists():
            shutil.rmtree(out / name)
    native = Path(tempfile.mkdtemp(prefix=".native-", dir=out))
    try:
        summary = generate_study(native, people=people, sites=sites, seed=seed, fmt="parquet",
                                 design=design, progress=progress, **effects)
        extract = EXTRACT_DATE.isoformat()
        con = duckdb.connect()
        con.execute("set threads = 2")
        con.execute("set preserve_insertion_order = true")
        con.execute(f"create macro rnd(k, salt) as (md5_number(cast(k as varchar) || '|' || salt || "
                    f"'|{int(seed)}') % 1000000) / 1e6")
        _native_views(con, native)
        planted = _build(con, extract, int(seed))
        _write_tables(con, out / "mhsds")
        _write_side_files(con, native, out, extract)
        con.close()
        for name in ("truth.json", "truth_people.parquet"):
            shutil.copy2(native / name, out / name)
    finally:
        shutil.rmtree(native, ignore_errors=True)
    (out / "mhsds_truth.json").write_text(json.dumps(planted, indent=2, sort_keys=True) + "\n",
                                          encoding="utf-8")
    return {"out": str(out), "people": people, "sites": sites, "seed": seed, "format": "mhsds",
            "design": design, "rows": planted["rows_written"], "native_rows": summary["rows"]}


def _build(con: duckdb.DuckDBPyConnection, extract: str, seed: int) -> dict:
    """``s_<table>``: every submitted row with its planted fate; returns the planted counts."""
    ver = {
        "versions_mpi": _versions("n_people", "index_date",
                                  "least(data_end_date, coalesce(death_date, data_end_date))",
                                  "person_id, death_date, sex, ethnicity, index_date, data_end_date"),
        "versions_ref": _versions("n_referrals", "received_at", "discharged_at",
                                  "referral_id as id, person_id, received_at, discharged_at"),
        "versions_crisis": _versions("n_crisis_episodes", "start_on", "end_on",
                                     "episode_id as id, person_id, start_on, end_on"),
        "versions_det": _versions(
            "(select detention_id as id, person_id, start_on, end_on, legal_section from n_detentions "
            "union all select 'INF-' || person_id, person_id, index_date + 20, index_date + 40, 'informal' "
            f"from n_people where rnd(person_id, 'informal') < {RATES['informal']})",
            "start_on", "end_on", "id, person_id, start_on, end_on, legal_section"),
        "versions_adm": _versions("n_admissions", "admitted_on", "discharged_on",
                                  "admission_id as id, person_id, admitted_on, discharged_on, admission_method"),
    }
    ver = {k: v.format(extract=extract) for k, v in ver.items()}
    # people outside the trial: a few per site, in every table the trial's people are in
    con.execute(f"""
        create table outsiders as
        select 'X' || s.site_id || '-' || lpad(cast(k as varchar), 4, '0') as person_id,
               date '{extract}' - cast(200 + 3 * k as integer) as day
        from (select distinct site_id from n_people) as s, range(1, {OUTSIDERS_PER_SITE + 1}) as r(k)
    """)
    planted: dict = {"tables": {}, "codes": [], "rows_written": {}}
    for table, query in QUERIES.items():
        q = query.format(extract=extract, nm=NETWORK_MEETING_CODE, no_mpi=RATES["no_mpi"], **ver)
        con.execute(f"create temp table b_{table} as select * from ({q}) order by id, month")
        _add_outsiders(con, table)
        _plant(con, table, extract)
    return _count(con)


def _add_outsiders(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """One record per outsider in the tables a person always appears in."""
    rows = {
        "MHS001MPI": "select person_id as id, person_id, date_trunc('month', day)::date as month, "
                     "null::date as PersDeathDate, '2' as Gender, '2' as GenderIDCode, 'A' as EthnicCategory "
                     "from outsiders",
        "MHS101Referral": "select 'XR' || person_id, 'XR' || person_id, person_id, date_trunc('month', day)::date, "
                          "day, time '10:00', null::date, null::time from outsiders",
        "MHS201CareContact": "select 'XC' || person_id, 'XC' || person_id, person_id, 'XR' || person_id, "
                             "date_trunc('month', day)::date, day, time '11:00', 30, '01', '01', 'E01', '5' "
                             "from outsiders",
        "MHS004EmpStatus": "select person_id || '/' || cast(day as varchar), person_id, day, "
                           "date_trunc('month', day)::date, '02' "
                           "from outsiders",
    }
    if table in rows:
        con.execute(f"insert into b_{table} by position {rows[table]}")


def _plant(con: duckdb.DuckDBPyConnection, table: str, extract: str) -> None:
    """``s_<table>``: the base rows (latest month kept, earlier months superseded) plus the
    refresh, commissioner and invalid copies, each with its planted fate and submission."""
    col, wrong = WRONG[table]
    cols = [r[0] for r in con.execute(f"describe b_{table}").fetchall()]
    plain = ", ".join(f'"{c}"' for c in cols)
    wrong_cols = ", ".join(f'{wrong} as "{c}"' if c == col else f'"{c}"' for c in cols)
    later = ", ".join(f'{wrong} as "{c}"' if c == col else
                      'cast(month + interval 1 month as date) as "month"' if c == "month" else f'"{c}"'
                      for c in cols)
    nxt = "cast(month + interval 1 month as date)"
    con.execute(f"""
        create temp table s_{table} as
        with base as (
            select {plain}, month = max(month) over (partition by id) as is_last from b_{table}
        ),
        marked as (
            select *, is_last and rnd(id, 'refresh') < {RATES['refresh']} as refresh,
                   is_last and rnd(id, 'dup') < {RATES['duplicate']} as dup,
                   is_last and rnd(id, 'inv') < {RATES['invalid']}
                     and {nxt} <= date_trunc('month', date '{extract}')
                     and {_era(nxt)} in ('v4.1', 'v6') as inv
            from base
        )
        select {plain}, case when is_last then 'kept' else 'superseded' end as fate,
               case when refresh then 2 else 1 end as sub, '00X' as OrgIDComm, null as flag from marked
        union all   -- the primary submission a refresh replaced, with a wrong value
        select {wrong_cols}, 'superseded', 1, '00X', null from marked where refresh
        union all   -- the same row again for two other commissioners
        select {plain}, 'duplicate', case when refresh then 2 else 1 end, '00Y', null from marked where dup
        union all
        select {plain}, 'duplicate', case when refresh then 2 else 1 end, '00Z', null from marked where dup
        union all   -- a copy in the next month flagged invalid, with a wrong value
        select {later}, 'invalid', 1, '00X', 'N' from marked where inv
    """)


def _count(con: duckdb.DuckDBPyConnection) -> dict:
    """The planted counts, in the shape of the import's facts (rows, kinds, months, codes)."""
    alloc = "(select person_id from n_people)"
    tables, months = {}, []
    for table in QUERIES:
        r = con.execute(f"""
            select count(*), count(*) filter (where fate = 'kept'), count(*) filter (where fate = 'superseded'),
                   count(*) filter (where fate = 'duplicate'), count(*) filter (where fate = 'invalid'),
                   count(*) filter (where fate = 'kept' and person_id not in {alloc})
            from s_{table}""").fetchone()
        tables[table] = dict(zip(("rows_read", "kept", "superseded", "duplicate", "invalid",
                                  "kept_not_allocated"), r))
        tables[table]["invalid_reasons"] = {"flagged invalid": r[4]} if r[4] else {}
        for m in con.execute(f"""
                select year(month) * 12 + month(month), count(*), count(*) filter (where fate = 'kept'),
                       count(*) filter (where fate = 'superseded'), count(*) filter (where fate = 'duplicate'),
                       count(*) filter (where fate = 'invalid')
                from s_{table} group by 1 order by 1""").fetchall():
            months.append({"table": table, "uniq_month_id": m[0], **dict(zip(
                ("rows_read", "kept", "superseded", "duplicate", "invalid"), m[1:]))})
    codes = []
    planted_codes = [("MHS001MPI", "EthnicCategory", "U9", "unmapped", "unknown", None),
                     ("MHS001MPI", "GenderIDCode", "7", "unmapped", "unknown", "v6"),
                     ("MHS401MHActPeriod", "LegalStatusCode", "11", "unmapped", "other", None),
                     ("MHS401MHActPeriod", "LegalStatusCode", "01", "not_carried", "-", None),
                     ("MHS201CareContact", "ActLocTypeCode", "Z01", "unmapped", "other", None),
                     ("MHS102ServiceTypeReferredTo", "ServTeamTypeRefToMH", "ZZ9", "unmapped", "referral", None),
                     ("MHS004EmpStatus", "EmployStatus", "99", "unmapped", "unknown", None)]
    for table, column, code, kind, value, era in planted_codes:
        where = f"and {_era('month')} = '{era}'" if era else ""
        n = con.execute(f"""select count(*) from s_{table} where fate = 'kept' and "{column}" = '{code}'
                            and person_id in {alloc} {where}""").fetchone()[0]
        if n:
            codes.append({"table": table, "column": column, "code": code, "kind": kind,
                          "contract_value": value, "rows": n})
    n_people = con.execute("select count(*) from n_people").fetchone()[0]
    with_mpi = con.execute(f"select count(distinct person_id) from s_MHS001MPI where person_id in {alloc}"
                           ).fetchone()[0]
    outsiders = con.execute("select count(*) from outsiders").fetchone()[0]
    rows_written = {t: con.execute(f"select count(*) from s_{t}").fetchone()[0] for t in QUERIES}
    return {"tables": tables, "months": months, "codes": codes, "rows_written": rows_written,
            "allocation": {"allocated_people": n_people, "with_mhs001mpi": with_mpi,
                           "without_mhs001mpi": n_people - with_mpi,
                           "people_without_allocation": outsiders},
            "rates": RATES, "eras": {"v5_from": V5_FROM, "v6_from": V6_FROM}}


def _write_tables(con: duckdb.DuckDBPyConnection, folder: Path) -> None:
    """One file per table and era, named, typed and delimited as that era delivers it."""
    folder.mkdir(parents=True)
    for table in QUERIES:
        cols = [r[0] for r in con.execute(f"describe s_{table}").fetchall()
                if r[0] not in ("id", "month", "fate", "sub", "flag")]
        for era in ERAS:
            suffix, fmt, delim = ERA_FILE[era]
            names = []
            for c in cols:
                rule = ERA_NAMES.get(table, {}).get(c)
                if isinstance(rule, tuple) and era not in rule:
                    continue
                shown = rule[era] if isinstance(rule, dict) else c
                value = f'"{c}"'
                if table == "MHS401MHActPeriod" and c == "LegalStatusCode" and era == "v6":
                    value = 'cast("LegalStatusCode" as bigint)'   # Parquet: the code as an integer
                names.append(f'{value} as "{shown}"')
            names += [f"year(month) * 12 + month(month) as UniqMonthID",
                      "(year(month) * 12 + month(month)) * 10 + sub as UniqSubmissionID",
                      "last_day(month) as ReportingPeriodEndDate"]
            if era in FLAG:
                names.append(f'flag as "{FLAG[era]}"')
            tie = ', "MHS203UniqID"' if table == "MHS203OtherAttend" else ""   # rows of one set
            query = (f"select {', '.join(names)} from s_{table} where {_era('month')} = '{era}' "
                     f"order by month, id, sub, OrgIDComm, flag nulls first{tie}")
            if not con.execute(f"select count(*) from ({query})").fetchone()[0]:
                continue
            path = folder / f"{table}{suffix}"
            opts = (f"(format csv, header true, delimiter '{delim}')" if fmt == "csv"
                    else "(format parquet, compression zstd)")
            con.execute(f"copy ({query}) to '{path}' {opts}")


def _write_side_files(con: duckdb.DuckDBPyConnection, native: Path, out: Path, extract: str) -> None:
    """The allocation list, the local contract tables and the local code mapping."""
    con.execute(f"""
        copy (select person_id as Person_ID, site_id, arm, cluster_id, index_date,
                     case when data_end_date <> date '{extract}' then data_end_date end as data_end_date,
                     birth_year, diagnosis_group, prior_admissions_2y, baseline_activity
              from n_people order by person_id)
        to '{out / "allocation.csv"}' (format csv, header true)""")
    (out / "local").mkdir()
    for t in ("staff", "prescriptions"):
        shutil.copy2(native / f"{t}.parquet", out / "local" / f"{t}.parquet")
    (out / "local_mapping.csv").write_text(
        "list,code,contract_value,meaning,source\n"
        f"network_meeting_procedure,{NETWORK_MEETING_CODE},network_meeting,"
        "Open Dialogue network meeting,the synthetic trust's own local code (not SNOMED CT)\n",
        encoding="utf-8")
