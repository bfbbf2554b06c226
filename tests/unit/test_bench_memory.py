"""`odeval bench`'s memory figures: one process's peak, and its processes together."""

import sys

import pytest

from pipeline.bench import measure

# A parent touches 200 MB, forks, then parent and child each touch 150 MB more of their own
# and hold it: together about 500 MB, the largest one process about 350 MB.
SCRIPT = """
import os, time
def touch(mb):
    b = bytearray(mb * 2**20)
    for i in range(0, len(b), 4096):
        b[i] = 1
    return b
shared = touch(200)
pid = os.fork()
own = touch(150)
time.sleep(1.5)
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PSS is read from /proc")
def test_the_processes_together_count_a_forked_workers_own_memory_once_each():
    m = measure([sys.executable, "-c", SCRIPT])
    assert m["exit_code"] == 0
    # one process: shared 200 + its own 150 (ru_maxrss has no upper bound here: Linux carries
    # the forking process's own peak over the exec, and a pytest worker can hold 1.7 GB)
    assert m["peak_rss_mb"] >= 330
    assert 480 <= m["peak_all_mb"] <= 600          # both: 200 once + 150 + 150
