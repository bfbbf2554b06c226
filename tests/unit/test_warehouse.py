"""pipeline.warehouse helpers beyond opening a warehouse (tested elsewhere)."""

import duckdb


def test_release_cache_drops_duckdbs_cached_blocks_and_keeps_the_limit(tmp_path):
    """odeval run lets DuckDB drop its cached blocks before the pandas stages: the cache
    empties, the configured limit (or DuckDB's default) is set again, temp tables survive."""
    from pipeline.warehouse import connect, release_cache

    con = connect(tmp_path / "w.duckdb", memory_limit="2GB")
    con.execute("create table t as select range as i, range * 2.5 as x from range(3000000)")
    con.execute("checkpoint")
    con.execute("create temp table tt as select * from t where i % 7 = 0")
    con.execute("select sum(x) from t").fetchone()

    def cached():
        return con.execute("select coalesce(sum(memory_usage_bytes), 0) from duckdb_memory() "
                           "where tag in ('BASE_TABLE', 'IN_MEMORY_TABLE')").fetchone()[0]

    def limit():
        return con.execute("select current_setting('memory_limit')").fetchone()[0]

    configured = limit()
    assert cached() > 10_000_000
    release_cache(con, "2GB")
    assert cached() < 2_000_000
    assert limit() == configured
    assert con.execute("select count(*) from tt").fetchone()[0] == 428572
    release_cache(con, None)
    assert limit() == duckdb.connect().execute(
        "select current_setting('memory_limit')").fetchone()[0]


def test_release_cache_tries_a_higher_limit_when_duckdb_cannot_free_enough():
    """A limit DuckDB refuses (memory it cannot free) is not an error: the next, higher one
    is tried, and the configured limit is set again."""
    from pipeline.warehouse import release_cache

    class Con:
        def __init__(self):
            self.calls = []

        def execute(self, sql):
            self.calls.append(sql)
            if "'1MB'" in sql or "'256MB'" in sql:
                raise duckdb.OutOfMemoryException("could not free up enough memory")

    con = Con()
    release_cache(con, "3GB")
    assert con.calls == ["set memory_limit = '1MB'", "set memory_limit = '256MB'",
                         "set memory_limit = '1GB'", "set memory_limit = '3GB'"]
