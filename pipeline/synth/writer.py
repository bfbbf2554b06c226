"""Deterministic streaming writers: one Parquet or CSV file per table.

Parquet: one row group per chunk, column types from the contract (text string, int int64,
float double, bool bool, date date32, timestamp timestamp[us]); a column listed in
``string_columns`` (it carries typing faults) is written as string. No timestamps or
random ids go into the file metadata, so the same rows give the same bytes.
CSV: UTF-8, header, comma, empty = missing, dates YYYY-MM-DD, timestamps
YYYY-MM-DDTHH:MM:SS, booleans true/false.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipeline.schemas import Table

ARROW_TYPES = {
    "text": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
}


def arrow_schema(table: Table, string_columns: frozenset[str] = frozenset()) -> pa.Schema:
    return pa.schema([pa.field(c.name, pa.string() if c.name in string_columns else ARROW_TYPES[c.type])
                      for c in table.columns])


def to_text(arr: pa.ChunkedArray | pa.Array) -> pa.Array:
    """The CSV text of a column (null stays null)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if pa.types.is_timestamp(t):
        return pc.strftime(arr.cast(pa.timestamp("s")), format="%Y-%m-%dT%H:%M:%S")
    if pa.types.is_boolean(t):
        return pc.if_else(arr, "true", "false")
    return arr.cast(pa.string())


class TableWriter:
    """Appends chunks of one table to ``OUT/<table>.<fmt>``."""

    def __init__(self, out: Path, table: Table, fmt: str, string_columns: frozenset[str] = frozenset()):
        self.table = table
        self.fmt = fmt
        self.path = Path(out) / f"{table.name}.{fmt}"
        self.schema = arrow_schema(table, string_columns)
        self.string_columns = string_columns
        self.rows = 0
        if fmt == "parquet":
            self._w = pq.ParquetWriter(self.path, self.schema, compression="zstd", use_dictionary=True,
                                       write_statistics=True, store_schema=True)
        elif fmt == "csv":
            self.csv_schema = pa.schema([pa.field(c.name, pa.string()) if c.type == "timestamp"
                                         or c.type == "bool" or c.name in string_columns
                                         else self.schema.field(c.name) for c in table.columns])
            self._w = pacsv.CSVWriter(self.path, self.csv_schema,
                                      write_options=pacsv.WriteOptions(include_header=True, delimiter=",",
                                                                       quoting_style="needed"))
        else:
            raise ValueError(f"format must be parquet or csv, not {fmt!r}")

    def write(self, t: pa.Table) -> None:
        if t.column_names != list(self.table.column_names):
            raise ValueError(f"{self.table.name}: columns {t.column_names} are not in schema order")
        if self.fmt == "parquet":
            t = pa.Table.from_arrays(
                [to_text(t.column(f.name)) if pa.types.is_string(f.type) and not pa.types.is_string(t.column(f.name).type)
                 else t.column(f.name).cast(f.type) for f in self.schema], schema=self.schema)
            self._w.write_table(t, row_group_size=max(1, t.num_rows))
        else:
            cols = []
            for f in self.csv_schema:
                col = t.column(f.name)
                cols.append(to_text(col) if pa.types.is_string(f.type) and not pa.types.is_string(col.type)
                            else col.cast(f.type))
            self._w.write_table(pa.Table.from_arrays(cols, schema=self.csv_schema))
        self.rows += t.num_rows

    def close(self) -> None:
        self._w.close()
