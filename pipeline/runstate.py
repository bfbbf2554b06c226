"""Run state: what each stage was built from, so that no command uses mixed data.

Each stage that writes the warehouse records, in the same transaction as its tables, one
row of ``meta.builds``: its build id, the build ids of the stages it read
(``upstream``), the sha256 of its parameters and the odeval version. A build id is the
sha256 of the stage's name, its parameters' hash and its upstream build ids (for ingest:
the loads in ``meta.loads``, whose ids carry each file's sha256), so the same inputs and
parameters give the same id and any change upstream gives another.

A stage that fails rolls its transaction back, so its tables and its row stay as they
were, built from the old upstream; a command that reads it then finds that the upstream
stage has another build now and stops with one line naming the stage to rerun
(rule ``run.stale``): a failed or killed ``odeval run`` leaves a warehouse that every
later command refuses until the run is repeated. The failure itself is noted in
``meta.builds.failed`` (its own small transaction) so that the message can say why.
Validate commits before its great-expectations cross-check (which reads the committed
clean tables); a cross-check that fails takes its build back (:func:`revoke`).

The stage graph (what reads what)::

    ingest -> validate -> derive -> metrics ----> report
                                 \\-> analyse --/   export reads derive (and validate)

Connections without a ``meta`` schema (an in-memory database a test fills by hand) are
not warehouses: nothing is recorded or checked there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Any

import duckdb

from pipeline.errors import OdevalError

#: What each stage reads, in the order the stages run.
UPSTREAM: dict[str, tuple[str, ...]] = {
    "ingest": (),
    "validate": ("ingest",),
    "derive": ("validate",),
    "metrics": ("derive",),
    "analyse": ("derive",),
}
STAGES = tuple(UPSTREAM)

DDL = """
create table if not exists meta.builds (
    stage          varchar primary key,  -- ingest | validate | derive | metrics | analyse
    build_id       varchar not null,     -- sha256 of stage, params_sha256 and upstream
    upstream       varchar not null,     -- JSON {stage: build_id} of what it read
    params_sha256  varchar not null,     -- sha256 of the parameters it ran with
    odeval_version varchar not null,
    failed         varchar               -- the last attempt's error, when it failed since
);
"""

#: What to run to rebuild a stage (and everything after it).
COMMAND = {"ingest": "odeval ingest --replace <extract folders>", "validate": "odeval validate",
           "derive": "odeval derive", "metrics": "odeval metrics", "analyse": "odeval analyse"}


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _managed(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(con.execute("select count(*) from information_schema.schemata "
                            "where schema_name = 'meta'").fetchone()[0])


def _has_table(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(con.execute("select count(*) from information_schema.tables where "
                            "table_schema = 'meta' and table_name = 'builds'").fetchone()[0])


def builds(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    """Every stage's row of ``meta.builds`` by stage (``upstream`` decoded)."""
    if not _managed(con) or not _has_table(con):
        return {}
    rows = con.execute("select stage, build_id, upstream, params_sha256, odeval_version, failed "
                       "from meta.builds").fetchall()
    return {r[0]: dict(build_id=r[1], upstream=json.loads(r[2]), params_sha256=r[3],
                       odeval_version=r[4], failed=r[5]) for r in rows}


def record(con: duckdb.DuckDBPyConnection, stage: str, params: Any = None) -> str | None:
    """Record that ``stage`` was built now, from the current builds of its upstream stages,
    with ``params``; call inside the stage's transaction. Returns the build id (None on a
    connection that is not a warehouse)."""
    from pipeline import __version__

    if not _managed(con):
        return None
    con.execute(DDL)
    have = builds(con)
    upstream = {u: have[u]["build_id"] if u in have else None for u in UPSTREAM[stage]}
    p_sha = _sha(params or {})
    ident: dict[str, Any] = {"stage": stage, "params": p_sha, "upstream": upstream}
    if stage == "ingest":
        ident["loads"] = [r[0] for r in con.execute(
            "select load_id from meta.loads order by load_id").fetchall()]
    build_id = _sha(ident)
    con.execute("delete from meta.builds where stage = ?", [stage])
    con.execute("insert into meta.builds values (?, ?, ?, ?, ?, null)",
                [stage, build_id, json.dumps(upstream, sort_keys=True), p_sha, __version__])
    return build_id


def record_failure(con: duckdb.DuckDBPyConnection, stage: str, error: BaseException) -> None:
    """Note that the last attempt at ``stage`` failed (its tables are the previous build's).
    Best effort, in a transaction of its own: a read-only or broken connection notes nothing."""
    if not _managed(con):
        return
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if len(text) > 200:  # the first of several reasons is enough to say why
        cut = text.rfind("; ", 0, 200)
        text = text[:cut if cut > 0 else 200] + "; ..."
    with _best_effort(con):
        con.execute("update meta.builds set failed = ? where stage = ?", [text, stage])
        if not con.execute("select count(*) from meta.builds where stage = ?",
                           [stage]).fetchone()[0]:
            con.execute("insert into meta.builds values (?, '', '{}', '', '', ?)", [stage, text])


def revoke(con: duckdb.DuckDBPyConnection, stage: str, error: BaseException) -> None:
    """Take back ``stage``'s build, committed before a check that came after it failed
    (validate's great-expectations cross-check reads the committed clean tables): the
    stage is then a failed one, without a build, and every command that reads it stops.
    Best effort, like :func:`record_failure`."""
    if not _managed(con):
        return
    with _best_effort(con):
        con.execute("delete from meta.builds where stage = ?", [stage])
    record_failure(con, stage, error)


@contextlib.contextmanager
def _best_effort(con: duckdb.DuckDBPyConnection):
    """One transaction on ``meta.builds`` (created if missing), rolled back and forgotten if
    DuckDB refuses it: recording a failure must not hide the error being recorded."""
    try:
        con.execute("begin transaction")
        con.execute(DDL)
        yield
        con.execute("commit")
    except duckdb.Error:
        try:
            con.execute("rollback")
        except duckdb.Error:
            pass


def _closure(stages: tuple[str, ...] | list[str]) -> list[str]:
    need: set[str] = set()
    todo = list(stages)
    while todo:
        s = todo.pop()
        if s not in need:
            need.add(s)
            todo.extend(UPSTREAM[s])
    return [s for s in STAGES if s in need]


def problem(con: duckdb.DuckDBPyConnection, needs: tuple[str, ...] | list[str]) -> tuple[str, str] | None:
    """The first stage (in run order) among ``needs`` and everything they read that is
    missing, failed without a build, or built from another upstream build than the one the
    warehouse holds now: ``(stage, why)``; None when all are consistent."""
    if not _managed(con):
        return None
    have = builds(con)
    for s in _closure(needs):
        rec = have.get(s)
        if rec is None or not rec["build_id"]:
            why = f"{s} has not run on this warehouse"
            if rec is not None and rec["failed"]:
                why = f"the last {s} failed ({rec['failed']})"
            elif any(later in have for later in STAGES[STAGES.index(s) + 1:]):
                why += " (or ran with an odeval older than its build records)"
            return s, why
        for u in UPSTREAM[s]:
            if rec["upstream"].get(u) != have.get(u, {}).get("build_id"):
                why = (f"{s} was built from other {'loads' if u == 'ingest' else u + ' results'}"
                       f" than the warehouse holds now")
                why += (f" (its last run failed: {rec['failed']})" if rec["failed"]
                        else f" ({u} ran since)")
                return s, why
    return None


def current(con: duckdb.DuckDBPyConnection, stage: str, params: Any = None) -> bool:
    """``stage``'s tables are what running it now would write: it has a build, by this
    odeval version, with ``params`` (as :func:`record` took them), from the builds the
    warehouse holds now of everything it reads. A command may then read them instead of
    computing them again."""
    from pipeline import __version__

    rec = builds(con).get(stage)
    return (rec is not None and bool(rec["build_id"]) and rec["failed"] is None
            and rec["odeval_version"] == __version__ and rec["params_sha256"] == _sha(params or {})
            and problem(con, [stage]) is None)


def require(con: duckdb.DuckDBPyConnection, needs: tuple[str, ...] | list[str], *,
            command: str) -> None:
    """Stop ``command`` with one line (rule ``run.stale``) unless the stages it reads,
    and everything they read, were built from what the warehouse holds now."""
    found = problem(con, needs)
    if found is None:
        return
    stage, why = found
    raise OdevalError(
        f"{command} stopped: {why}; rerun from {stage} (`{COMMAND[stage]}` and the stages "
        "after it, or `odeval run` on the extract)", rule="run.stale")


def build_ids(con: duckdb.DuckDBPyConnection, stages: tuple[str, ...] | list[str]) -> dict[str, str]:
    """The current build id of each of ``stages`` and what they read (for provenance)."""
    have = builds(con)
    return {s: have[s]["build_id"] for s in _closure(stages) if s in have}
