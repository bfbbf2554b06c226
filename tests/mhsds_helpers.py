"""Small MHSDS folders for the import tests, written from readable ASCII tables.

``write_mhsds(folder, MHS101Referral='''...''')`` writes one CSV per table given (header
names as in the MHSDS specifications) over a minimal valid extract: one allocated person
P1 with one record in every required table, so a test states only the rows its rule is
about. Tables given as ``None`` are left out (for the missing-table tests).
"""

from __future__ import annotations

import csv
from pathlib import Path

from tests.spec.conftest import parse_table

#: A minimal valid extract: person P1 (allocated) with one record per required table.
MINIMAL = {
    "MHS001MPI": """
        Person_ID | UniqMonthID | UniqSubmissionID | Gender | EthnicCategory | ReportingPeriodEndDate
        P1        | 1500        | 1                | 2      | A              | 2024-01-31
    """,
    "MHS101Referral": """
        UniqServReqID | Person_ID | UniqMonthID | ReferralRequestReceivedDate | ReferralRequestReceivedTime
        R1            | P1        | 1500        | 2024-01-05                  | 09:00
    """,
    "MHS102ServiceTypeReferredTo": """
        UniqServReqID | UniqCareProfTeamID | Person_ID | ServTeamTypeRefToMH | UniqMonthID
        R1            | T1                 | P1        | A06                 | 1500
    """,
    "MHS201CareContact": """
        UniqCareContID | Person_ID | UniqServReqID | CareContDate | CareContTime | ConsMechanismMH | ActLocTypeCode | AttendOrDNACode | UniqMonthID
        C1             | P1        | R1            | 2024-01-06   | 10:00        | 01              | A01            | 5               | 1500
    """,
    "MHS401MHActPeriod": """
        UniqMHActEpisodeID | Person_ID | StartDateMHActLegalStatusClass | LegalStatusCode | UniqMonthID
        D1                 | P1        | 2024-01-10                     | 03              | 1500
    """,
    "MHS501HospProvSpell": """
        UniqHospProvSpellID | Person_ID | StartDateHospProvSpell | AdmMethCodeHospProvSpell | UniqMonthID
        S1                  | P1        | 2024-01-10             | 21                       | 1500
    """,
    "MHS004EmpStatus": """
        Person_ID | EmployStatusRecDate | EmployStatus | UniqMonthID
        P1        | 2024-01-06          | 02           | 1500
    """,
}

ALLOCATION = """
    Person_ID | site_id | arm           | cluster_id | index_date
    P1        | S01     | open_dialogue | G1         | 2024-01-04
"""


def write_csv(path: Path, table: str, delimiter: str = ",") -> Path:
    rows = parse_table(table)
    header = list(rows[0]) if rows else [h.strip() for h in table.strip().split("|")]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=delimiter, lineterminator="\n")
        w.writerow(header)
        for r in rows:
            w.writerow(["" if r[h] is None else r[h] for h in header])
    return path


def write_mhsds(folder: Path, allocation: str | None = ALLOCATION, **tables: str | None) -> Path:
    """The MHSDS folder ``folder/mhsds`` and ``folder/allocation.csv``; returns ``folder``."""
    src = folder / "mhsds"
    src.mkdir(parents=True, exist_ok=True)
    for name, text in {**MINIMAL, **tables}.items():
        if text is not None:
            write_csv(src / f"{name}.csv", text)
    if allocation is not None:
        write_csv(folder / "allocation.csv", allocation)
    return folder


def run_import(folder: Path, **kw):
    """``import_mhsds`` on a folder made by :func:`write_mhsds`, CSV out, report beside it."""
    from pipeline.importers.mhsds import import_mhsds

    kw.setdefault("fmt", "csv")
    kw.setdefault("report_dir", folder / "report")
    return import_mhsds(folder / "mhsds", folder / "allocation.csv", folder / "extract", **kw)


def read_out(folder: Path, table: str) -> list[dict[str, str]]:
    with (folder / "extract" / f"{table}.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))
