"""Writes the hand-made bad-input corpus (run once; the files are committed beside it).

Each file stands in for one table file of an otherwise valid extract: ``<case>.<table>.csv``
or ``<case>.<table>.parquet``. What must happen to each is in ``expected.yaml``; the
50 MB line is generated at test time (tests/reliability/test_bad_input.py), not kept here.

    uv run python tests/reliability/corpus/make_corpus.py
"""

from __future__ import annotations

import codecs
import datetime as dt
import io
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).parent
H = "person_id,site_id,arm,index_date,data_end_date,sex,diagnosis_group"
R1 = "P1,S1,open_dialogue,2023-01-05,2024-01-01,female,psychosis"
R2 = "P2,S1,usual_care,2023-02-10,2024-01-01,male,depression"
R3 = "P3,S2,open_dialogue,2023-03-15,2024-01-01,unknown,other"


def lines(*rows: str, nl: str = "\n") -> str:
    return nl.join(rows) + nl


def csv_cases() -> dict[str, bytes]:
    rng = random.Random(20261125)
    junk = bytes(rng.randrange(256) for _ in range(4096))
    return {
        # encodings
        "utf8_bom": codecs.BOM_UTF8 + lines(H + ",ethnicity", R1 + ",Café", R2 + ",Zoë").encode(),
        "latin1": lines(H + ",ethnicity", R1 + ",Café", R2 + ",white").encode("latin-1"),
        "windows1252_quotes": lines(H + ",ethnicity", R1 + ",“white”").encode("cp1252"),
        "latin1_in_header": lines(H + ",ethnicité", R1 + ",x").encode("latin-1"),
        "utf16_bom": lines(H, R1).encode("utf-16"),
        "utf16le_no_bom": lines(H, R1).encode("utf-16-le"),
        "utf32_bom": lines(H, R1).encode("utf-32"),
        # line endings
        "crlf": lines(H, R1, R2, R3, nl="\r\n").encode(),
        "cr_only": lines(H, R1, R2, nl="\r").encode(),
        "mixed_line_endings": (H + "\r\n" + R1 + "\n" + R2 + "\r\n").encode(),
        "no_final_newline": (H + "\n" + R1 + "\n" + R2).encode(),
        # quoting
        "quoted_newlines_and_quotes": lines(
            H + ",ethnicity",
            R1 + ',"white\nbritish"',
            R2 + ',"mixed, ""other"""',
            R3 + ',"line one\r\nline two"').encode(),
        "quoted_everything": lines(
            ",".join(f'"{c}"' for c in H.split(",")),
            ",".join(f'"{v}"' for v in R1.split(","))).encode(),
        "unterminated_quote": lines(H, R1, '"P2,S1,usual_care,2023-02-10,2024-01-01,male,depression').encode(),
        "stray_quote_in_value": lines(H, R1, 'P2,S"1,usual_care,2023-02-10,2024-01-01,male,depression').encode(),
        "header_unclosed_quote": lines('"person_id,site_id,arm,index_date,data_end_date,sex,diagnosis_group', R1).encode(),
        # delimiters
        "semicolon": lines(H.replace(",", ";"), R1.replace(",", ";")).encode(),
        "tab": lines(H.replace(",", "\t"), R1.replace(",", "\t")).encode(),
        "pipe": lines(H.replace(",", "|"), R1.replace(",", "|")).encode(),
        # shape
        "header_only": lines(H).encode(),
        "header_only_no_newline": H.encode(),
        "empty": b"",
        "only_blank_lines": b"\n\n\n",
        "blank_line_before_header": lines("", H, R1).encode(),
        "blank_lines_between_rows": lines(H, "", R1, "", "", R2, "").encode(),
        "duplicate_header": lines(H + ",sex", R1 + ",male").encode(),
        "duplicate_header_by_meaning": lines(H + ",Site ID", R1 + ",S9").encode(),
        "missing_header": lines(R1, R2).encode(),
        "missing_required_column": lines(H.replace(",arm", ""), R1.replace(",open_dialogue", "")).encode(),
        "nameless_column": lines(H + ",", R1 + ",x").encode(),
        "too_many_fields": lines(H, R1, R2 + ",extra").encode(),
        "too_few_fields": lines(H, R1, "P2,S1,usual_care").encode(),
        "whitespace_values": lines(H, " P1 , S1 ,open_dialogue, 2023-01-05 ,2024-01-01,female,psychosis",
                                   "P2,   ,usual_care,2023-02-10,2024-01-01,male,depression").encode(),
        "comment_like_row": lines(H, "#P1,S1,open_dialogue,2023-01-05,2024-01-01,female,psychosis", R2).encode(),
        # Excel habits: day-first dates, thousands separators, exponent, a timestamp in a date
        "excel_dates_and_numbers": lines(
            H + ",birth_year,prior_admissions_2y",
            "P1,S1,open_dialogue,01/02/2023,2024-01-01,female,psychosis,\"1,984\",1",
            "P2,S1,usual_care,2023-02-10,31/12/2024,male,depression,1.98E3,\"1,0\"",
            "P3,S2,open_dialogue,2023-03-15 00:00,2024-01-01,unknown,other,1984,2",
            R1.replace("P1", "P4") + ",1984,0").encode(),
        # junk
        "binary_junk": junk,
        "binary_after_header": H.encode() + b"\n" + junk,
        "nul_in_row": lines(H, R1, R2.replace("male", "ma\x00le")).encode(),
        "identifier_column": lines(H + ",NHS Number", R1 + ",9434765919").encode(),
        "postcodes_in_extra_column": lines(H + ",area", R1 + ",LS1 4AP", R2 + ",SW1A 1AA",
                                           R3 + ",M1 1AE").encode(),
    }


BASE = {"person_id": ["P1", "P2"], "site_id": ["S1", "S1"], "arm": ["open_dialogue", "usual_care"],
        "index_date": pa.array([dt.date(2023, 1, 5), dt.date(2023, 2, 10)]),
        "data_end_date": pa.array([dt.date(2024, 1, 1)] * 2),
        "sex": ["female", "male"], "diagnosis_group": ["psychosis", "depression"]}


def parquet(**over) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table({**BASE, **over}), buf)
    return buf.getvalue()


def parquet_cases() -> dict[str, bytes]:
    good = parquet()
    return {
        "truncated": good[: len(good) // 2],
        "truncated_footer": good[:-8],
        "csv_named_parquet": lines(H, R1).encode(),
        "empty": b"",
        # types a Parquet writer got wrong: loaded, the values it cannot type kept as text
        "wrong_types": parquet(
            index_date=pa.array([19362, 19398], pa.int64()),      # days since 1970, not dates
            birth_year=pa.array(["1984", "nineteen"]),            # text where an int belongs
            prior_admissions_2y=pa.array([1.0, 2.5]),             # a fraction of an admission
            person_id=pa.array([101, 102], pa.int64())),          # ids written as numbers
        "timestamp_for_date": parquet(
            index_date=pa.array([dt.datetime(2023, 1, 5), dt.datetime(2023, 2, 10, 14, 30)],
                                pa.timestamp("us"))),
        # types no contract column can be read from: refused, the column named
        "nested_column": parquet(sex=pa.array([["female"], ["male"]])),
        "binary_column": parquet(person_id=pa.array([b"P1", b"\xff\xfe"], pa.binary())),
        "zoned_timestamp": parquet(
            index_date=pa.array([dt.datetime(2023, 1, 5), dt.datetime(2023, 2, 10)],
                                pa.timestamp("us", tz="Europe/London"))),
    }


def main() -> None:
    for name, data in csv_cases().items():
        (HERE / f"{name}.people.csv").write_bytes(data)
    for name, data in parquet_cases().items():
        (HERE / f"{name}.people.parquet").write_bytes(data)


if __name__ == "__main__":
    main()
