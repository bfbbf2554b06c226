"""Row-for-row comparison of two Arrow tables (one per engine)."""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa


def canonical_type(t: pa.DataType) -> str:
    """The type with list item names and nullability left out (DuckDB calls a list's item
    ``l``, Parquet ``element``); everything else as Arrow spells it."""
    if pa.types.is_map(t):
        return f"map<{canonical_type(t.key_type)}, {canonical_type(t.item_type)}>"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"list<{canonical_type(t.value_type)}>"
    if pa.types.is_struct(t):
        return "struct<" + ", ".join(f"{t.field(i).name}: {canonical_type(t.field(i).type)}"
                                     for i in range(t.num_fields)) + ">"
    if pa.types.is_large_string(t):
        return "string"
    return str(t)


def _key(v: Any):
    """A total order over the values of one column (None first)."""
    if v is None:
        return (0,)
    if isinstance(v, float) and math.isnan(v):
        return (1,)
    if isinstance(v, list | tuple):
        return (2, tuple(_key(x) for x in v))
    if isinstance(v, dict):
        return (2, tuple((k, _key(x)) for k, x in sorted(v.items())))
    return (2, v)


def _same(a: Any, b: Any, rel: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        if rel is not None:
            return math.isclose(a, b, rel_tol=rel, abs_tol=0.0)
    return a == b and type(a) is type(b)


def assert_same_rows(duck: pa.Table, spark: pa.Table, tolerance: dict[str, float] | None = None,
                     label: str = "") -> None:
    """Same columns in the same order, same types, and the same rows in any order.

    Values are compared exactly, except the columns named in ``tolerance`` (relative
    tolerance); rows are sorted on every other column first, so a toleranced column
    cannot change which rows are paired.
    """
    tolerance = tolerance or {}
    assert duck.column_names == spark.column_names, f"{label}: columns differ"
    for name in duck.column_names:
        assert canonical_type(duck.schema.field(name).type) == canonical_type(spark.schema.field(name).type), \
            f"{label}.{name}: type {duck.schema.field(name).type} (DuckDB) vs {spark.schema.field(name).type} (Spark)"
    unknown = set(tolerance) - set(duck.column_names)
    assert not unknown, f"{label}: tolerance for unknown columns {unknown}"
    assert duck.num_rows == spark.num_rows, f"{label}: {duck.num_rows} rows (DuckDB) vs {spark.num_rows} (Spark)"
    names = duck.column_names
    order = [i for i, n in enumerate(names) if n not in tolerance] + \
            [i for i, n in enumerate(names) if n in tolerance]

    def rows(t: pa.Table) -> list[tuple]:
        cols = [t.column(n).to_pylist() for n in names]
        out = list(zip(*cols, strict=True)) if cols else []
        return sorted(out, key=lambda r: tuple(_key(r[i]) for i in order))

    for a, b in zip(rows(duck), rows(spark), strict=True):
        for n, x, y in zip(names, a, b, strict=True):
            assert _same(x, y, tolerance.get(n)), \
                f"{label}.{n}: {x!r} (DuckDB) vs {y!r} (Spark) in row {a!r}"
