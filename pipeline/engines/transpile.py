"""DuckDB SQL to Spark SQL: sqlglot, plus the few rewrites sqlglot does not make.

The pipeline's SQL is written once, in DuckDB's dialect (``pipeline/sql/``, and the
typing expressions of :mod:`pipeline.ingest`). :func:`to_spark` parses it with sqlglot
(``read="duckdb"``), applies the rewrites below to the syntax tree, and prints Spark SQL.
``$name`` parameters become Spark's ``:name`` markers, bound by ``spark.sql(query,
args=...)``; values never enter the SQL text.

Rewrites, each because DuckDB and Spark mean different things by the same text (each has
a unit test in ``tests/spark/test_transpile.py``):

``schema.table``
    Spark has no ``raw``/``clean``/``derived`` schemas here: a qualified table becomes the
    temporary view ``<schema>__<table>`` (:func:`view_name`) over that table's Parquet.
``hash(a, b, ...)``
    used to tell rows apart (``key.sql``). Spark's ``hash`` skips NULL arguments, so
    ``hash(1, NULL) = hash(NULL, 1)`` and two different rows would look like copies; the
    rewrite compares the values themselves: ``struct(a, b, ...)`` (equal iff every field
    is equal, NULLs equal to NULLs, as DuckDB's hash treats them).
decimal literals (``1.0``, ``365.25``)
    DuckDB divides a DECIMAL in DOUBLE (``n * 1.0 / d`` is a DOUBLE); Spark keeps DECIMAL
    and rounds the quotient to 6 decimals. A literal with a point or an exponent becomes
    ``CAST(<literal> AS DOUBLE)``, so both engines compute the same IEEE doubles.
``regexp_full_match(s, re)``
    Spark has no full match; ``s RLIKE '^(?:re)\\z'`` (``\\z``, not ``$``: Java's ``$``
    also matches before a final newline).
``try_strptime(s, fmt | [fmt, ...])``
    ``try_to_timestamp(s, <Java pattern>)``, the first that parses (``coalesce``) for a
    list; only the directives the pipeline uses are translated (:data:`STRFTIME_TO_JAVA`),
    any other raises.
``isfinite(x)``
    ``abs(x) < CAST('Infinity' AS DOUBLE)`` (false for NaN and infinities, NULL for NULL).
``struct_pack(...) IN (SELECT k ...)``
    Spark reads a struct on the left of ``IN (subquery)`` as a row of values, one per
    field, and then finds one column on the right; ``COALESCE(struct)`` (the same value)
    keeps it one value.
``WITH x AS [NOT] MATERIALIZED (...)``
    DuckDB's hint whether to store a CTE's rows (its memory and speed, never its rows);
    Spark has no such syntax: the hint is dropped.
``date_diff``, ``extract``, ``year``, ``len``, ``row_number``, ``rank``, ...
    BIGINT in DuckDB, INT in Spark: cast to BIGINT, so both engines write the same column
    types.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import sqlglot
from sqlglot import exp

#: Schemas of the warehouse whose tables become Spark temporary views.
SCHEMAS = ("raw", "clean", "quarantine", "derived", "meta", "results")

#: strftime directives (DuckDB) -> Java DateTimeFormatter letters (Spark).
STRFTIME_TO_JAVA = {"%Y": "yyyy", "%m": "MM", "%d": "dd", "%H": "HH", "%M": "mm", "%S": "ss"}


class TranspileError(ValueError):
    """DuckDB SQL that the rewrites here cannot carry to Spark."""


def view_name(schema: str, table: str) -> str:
    """The Spark temporary view standing for ``schema.table``."""
    return f"{schema}__{table}"


def java_pattern(fmt: str) -> str:
    """A strftime format as a Java DateTimeFormatter pattern (letters outside directives quoted)."""
    out, i = [], 0
    while i < len(fmt):
        if fmt[i] == "%":
            directive = fmt[i:i + 2]
            if directive not in STRFTIME_TO_JAVA:
                raise TranspileError(f"strptime directive {directive!r} has no Spark translation")
            out.append(STRFTIME_TO_JAVA[directive])
            i += 2
        else:
            ch = fmt[i]
            out.append(f"'{ch}'" if ch.isalpha() else ("''" if ch == "'" else ch))
            i += 1
    return "".join(out)


def _fn_name(node: exp.Expression) -> str | None:
    if isinstance(node, exp.Anonymous):
        return str(node.this).lower()
    return None


def _qualified_tables(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Table) and node.args.get("db") is not None and not node.args.get("catalog"):
        schema = node.db.lower()
        if schema in SCHEMAS:
            new = exp.Table(this=exp.to_identifier(view_name(schema, node.name)))
            if node.args.get("alias"):
                new.set("alias", node.args["alias"].copy())
            return new
    return node


def _hash_to_struct(node: exp.Expression) -> exp.Expression:
    if _fn_name(node) == "hash":
        return exp.Struct(expressions=[e.copy() for e in node.expressions])
    return node


_DECIMAL = re.compile(r"^[0-9]*\.[0-9]*([eE][+-]?[0-9]+)?$|^[0-9]+[eE][+-]?[0-9]+$")


def _decimal_literals(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Literal) and not node.is_string and _DECIMAL.match(node.this):
        # leave a literal that is already being cast alone (its type is explicit)
        if not isinstance(node.parent, exp.Cast):
            return exp.Cast(this=node.copy(), to=exp.DataType.build("double"))
    return node


def _full_match(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.RegexpFullMatch):
        pattern = node.expression
        if not (isinstance(pattern, exp.Literal) and pattern.is_string):
            raise TranspileError("regexp_full_match needs a literal pattern to be anchored")
        anchored = exp.Literal.string("^(?:" + pattern.this + ")\\z")
        return exp.RegexpLike(this=node.this.copy(), expression=anchored)
    return node


def _try_to_timestamp(value: exp.Expression, fmt: exp.Expression) -> exp.Expression:
    if not (isinstance(fmt, exp.Literal) and fmt.is_string):
        raise TranspileError("try_strptime needs literal formats")
    return exp.Anonymous(this="TRY_TO_TIMESTAMP",
                         expressions=[value.copy(), exp.Literal.string(java_pattern(fmt.this))])


def _strptime(node: exp.Expression) -> exp.Expression:
    if _fn_name(node) == "try_strptime":
        value, fmt = node.expressions
        if isinstance(fmt, exp.Array):
            return exp.Coalesce(this=_try_to_timestamp(value, fmt.expressions[0]),
                                expressions=[_try_to_timestamp(value, f) for f in fmt.expressions[1:]])
        return _try_to_timestamp(value, fmt)
    return node


def _isfinite(node: exp.Expression) -> exp.Expression:
    if _fn_name(node) == "isfinite":
        (value,) = node.expressions
        return exp.LT(this=exp.Abs(this=value.copy()),
                      expression=exp.Cast(this=exp.Literal.string("Infinity"),
                                          to=exp.DataType.build("double")))
    return node


def _struct_in_subquery(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.In) and node.args.get("query") is not None and isinstance(node.this, exp.Struct):
        node = node.copy()
        node.set("this", exp.Coalesce(this=node.this))
    return node


def _materialized_hint(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.CTE) and node.args.get("materialized") is not None:
        node = node.copy()
        node.set("materialized", None)
    return node


#: Functions whose result is BIGINT in DuckDB but INT in Spark.
_BIGINT_FUNCTIONS = (exp.DateDiff, exp.Extract, exp.Year, exp.Month, exp.Day, exp.Length,
                     exp.ArraySize)
_BIGINT_WINDOWS = (exp.RowNumber, exp.Rank, exp.DenseRank)


def _bigint_results(node: exp.Expression) -> exp.Expression:
    if isinstance(node.parent, exp.Cast):
        return node
    if isinstance(node, _BIGINT_FUNCTIONS) or (
            isinstance(node, exp.Window) and isinstance(node.this, _BIGINT_WINDOWS)):
        return exp.Cast(this=node.copy(), to=exp.DataType.build("bigint"))
    return node


#: Applied in this order to every node of the parsed DuckDB statement.
REWRITES: tuple[Callable[[exp.Expression], exp.Expression], ...] = (
    _qualified_tables, _hash_to_struct, _struct_in_subquery, _decimal_literals, _full_match,
    _strptime, _isfinite, _bigint_results, _materialized_hint,
)


def rewrite(tree: exp.Expression) -> exp.Expression:
    """The DuckDB syntax tree with the Spark rewrites applied."""
    for fn in REWRITES:
        tree = tree.transform(fn)
    return tree


def to_spark(sql: str, *, pretty: bool = False) -> str:
    """One DuckDB SQL statement (or expression) as Spark SQL; comments are dropped."""
    trees = [t for t in sqlglot.parse(sql, read="duckdb") if t is not None]
    if len(trees) != 1:
        raise TranspileError(f"expected one SQL statement, got {len(trees)}")
    return rewrite(trees[0]).sql(dialect="spark", pretty=pretty, comments=False,
                                 unsupported_level=sqlglot.ErrorLevel.RAISE)


def spark_type(duckdb_type: str) -> str:
    """A DuckDB column type (``VARCHAR``, ``BIGINT``, ...) in Spark's spelling."""
    return exp.DataType.build(duckdb_type, dialect="duckdb").sql(dialect="spark")
