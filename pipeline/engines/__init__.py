"""Engines that run the pipeline's SQL: DuckDB (embedded, the default) and Apache Spark.

The SQL is written once, in DuckDB's dialect; :mod:`pipeline.engines.transpile` carries it
to Spark and :mod:`pipeline.engines.spark` runs the typing, validate and derive stages
there, writing Parquet. :func:`read_table` loads a table from either engine's output (a
DuckDB warehouse file, or the Parquet folder of a Spark run), so what comes after derive
(metrics, statistics, notebooks) does not care which engine built it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.errors import OdevalError

ENGINES = ("duckdb", "spark")


def engine_settings(params: dict[str, Any] | None, engine: str | None = None) -> dict[str, Any]:
    """The ``engine:`` section of params.yaml over the defaults; ``engine`` (the CLI's
    ``--engine``) overrides its ``name``. ``engine: spark`` alone is accepted too."""
    from pipeline.engines.spark import DEFAULTS

    raw = (params or {}).get("engine")
    if raw is None:
        raw = {}
    elif isinstance(raw, str):
        raw = {"name": raw}
    elif not isinstance(raw, dict):
        raise OdevalError("params.yaml engine: must be duckdb, spark or a mapping with name:",
                          rule="params.engine", file="params.yaml")
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise OdevalError(f"unknown engine setting(s) {unknown}; known: {sorted(DEFAULTS)}",
                          rule="params.engine", file="params.yaml")
    merged = {**DEFAULTS, **raw}
    if engine is not None:
        merged["name"] = engine
    merged["name"] = str(merged["name"]).strip().lower()
    if merged["name"] not in ENGINES:
        raise OdevalError(f"engine must be one of {', '.join(ENGINES)}, got {merged['name']!r}",
                          rule="params.engine", file="params.yaml")
    return merged


def read_table(source: str | Path, name: str, schema: str = "derived", *, as_arrow: bool = False):
    """One table of a run, from either engine, as a pandas DataFrame (or an Arrow table).

    ``source`` is a DuckDB warehouse file (``data/warehouse.duckdb``) or the output
    folder of ``odeval run --engine spark`` (``<folder>/<schema>/<name>/*.parquet``).
    Both go through Arrow, so the same table gives the same dtypes from either engine.
    """
    import pyarrow.parquet as pq

    source = Path(source)
    if source.is_dir():
        path = source / schema / name
        if not path.is_dir():
            raise OdevalError(f"no table {schema}.{name} in the Spark output", rule="engine.read",
                              file=path)
        table = pq.read_table(path)
    else:
        import duckdb

        if not source.exists():
            raise OdevalError("no warehouse or Spark output here", rule="engine.read", file=source)
        con = duckdb.connect(str(source), read_only=True)
        try:
            exists = con.execute("select count(*) from information_schema.tables "
                                 "where table_schema = ? and table_name = ?", [schema, name]).fetchall()[0][0]
            if not exists:
                raise OdevalError(f"no table {schema}.{name} in the warehouse", rule="engine.read",
                                  file=source)
            table = con.sql(f'select * from "{schema}"."{name}"').to_arrow_table()
        finally:
            con.close()
    return table if as_arrow else table.to_pandas()
