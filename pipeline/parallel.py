"""Work shared between this process and one forked worker (Linux): units of work that
do not depend on each other, each computed once, with the results of a single process.
Used by the analyse stage (families of analyses) and the metrics stage (the curves of
each partition of the people)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any


def resident_bytes() -> int | None:
    """This process's resident memory (psutil), None where it cannot be read."""
    import psutil

    try:
        return psutil.Process().memory_info().rss
    except psutil.Error:
        return None


def worker_fits(budget_gb: float | None, need_bytes: float) -> bool:
    """Whether forking a worker is expected to keep this process and the worker within
    ``budget_gb`` GB (10^9 bytes) together: the memory this process holds now (which the
    worker shares, pages counted once) plus ``need_bytes``, what the two will allocate of
    their own at their peak; always True without a budget or where the memory cannot be
    read."""
    held = resident_bytes()
    return budget_gb is None or held is None or held + need_bytes <= float(budget_gb) * 1e9


def two_ends(units: list[tuple[Any, Callable[[], Any]]], fork: bool
             ) -> Iterator[tuple[Any, Any]]:
    """Compute ``units`` (``(label, fn)``; ``fn()`` returns the unit's result, which must
    pickle), yielding ``(label, result)``: this process takes them from the front of the
    list and, with ``fork`` on Linux, a forked worker takes them from the back, each
    claiming the next under a lock until the two meet, so the split follows what each unit
    costs on these data (it differs between a trial of 50 clusters and a national extract).
    The worker reads the objects this process holds (it opens no warehouse); its results
    come back when it has finished. If it fails in any way (an exception, a kill), the
    units it claimed are computed here, so that an error is raised as it would be without
    it. Units computed here come first, as they are done; the caller orders the results
    itself."""
    import sys

    if not fork or len(units) < 2 or not sys.platform.startswith("linux"):
        for label, fn in units:
            yield label, fn()
        return
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    ends = ctx.RawArray("i", [0, len(units) - 1])   # the next unit from the front, the back
    lock = ctx.Lock()
    recv, send = ctx.Pipe(duplex=False)

    def take(front: bool) -> int | None:
        if ends[0] > ends[1]:
            return None
        k = ends[0] if front else ends[1]
        ends[0 if front else 1] += 1 if front else -1
        return k

    def claim(front: bool) -> int | None:
        while not lock.acquire(timeout=0.5):
            if front and not proc.is_alive():   # the worker died holding it: no one else will
                return take(front)
        try:
            return take(front)
        finally:
            lock.release()

    def work() -> None:
        plain_streams()
        got = {}
        try:
            while (k := claim(front=False)) is not None:
                got[k] = units[k][1]()
            send.send(("ok", got))
        except BaseException:   # noqa: BLE001  (the parent computes its units and raises)
            send.send(("failed", None))
        finally:
            send.close()

    proc = ctx.Process(target=work, daemon=True)
    proc.start()
    send.close()
    try:
        while (k := claim(front=True)) is not None:
            yield units[k][0], units[k][1]()
        try:
            kind, got = recv.recv()
        except (EOFError, OSError):
            kind, got = "failed", None
        for k in range(ends[1] + 1, len(units)):   # the worker's: past the back's last claim
            yield units[k][0], got[k] if kind == "ok" else units[k][1]()
    finally:
        recv.close()
        if proc.is_alive():
            proc.terminate()
        proc.join()


def plain_streams() -> None:
    """In a forked process: write to the process's own stdout and stderr, not through the
    parent's progress display (rich's proxies), whose lock its refresh thread may have held
    at the fork, so that a warning printed there cannot hang the process."""
    import sys

    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
