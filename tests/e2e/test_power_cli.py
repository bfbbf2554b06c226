"""End to end: ``odeval power`` as a user runs it (a subprocess; replicates cached in a
temporary folder through ``ODEVAL_POWER_CACHE``, outputs in another). Few trials: this
checks the command, its files and its errors, not the statistics
(``tests/unit/test_power.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def _power(args, tmp_path, check=True):
    env = {**os.environ, "ODEVAL_POWER_CACHE": str(tmp_path / "cache"), "COLUMNS": "200",
           "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")])}
    proc = subprocess.run([str(BIN / "odeval"), "power", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_power_search_and_curve_write_their_files(tmp_path):
    out = tmp_path / "out"
    args = ["--reps", "25", "--processes", "1", "--hr", "0.5", "--search", "clusters_per_arm",
            "--curve", "0.6,1", "--out", str(out)]
    proc = _power(args, tmp_path)
    assert "cluster-level" in proc.stdout and "Search" in proc.stdout
    doc = json.loads((out / "power.json").read_text())
    row = doc["power"]["table"][0]
    assert row["outcome"] == "relapse" and row["method"] == "cluster-level" and row["replicates"] == 25
    assert {"power", "power_se", "type1", "type1_se", "events_uc", "events_od", "power_formula",
            "power_formula_t", "design_effect"} <= set(row)
    assert doc["search"]["answer"] == 1  # HR 0.5 with the demo's 1,400 people: one cluster per arm is enough
    assert [p["effect"] for p in doc["curve"]] == [0.6, 1.0]
    for f in ("power.md", "power_curve.png", "power_curve.svg"):
        assert (out / f).stat().st_size > 0
    # the same question again reads every trial from the cache
    again = json.loads((_power(args, tmp_path), (out / "power.json").read_text())[1])
    assert again["power"]["run"]["blocks_computed"] == 0
    assert again["power"]["table"] == doc["power"]["table"]


def test_power_refuses_a_bad_design_in_one_line(tmp_path):
    # one refusal per kind of check (the unit tests have the rest)
    for args, rule in ((["--clusters-per-arm", "0"], "power.design"),
                       (["--individual", "--method", "cluster-level"], "power.method"),
                       (["--search", "practices"], "power.search"),
                       (["--alpha", "5"], "power.alpha")):
        proc = _power([*args, "--reps", "25", "--out", str(tmp_path / "o")], tmp_path, check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        err = proc.stderr.strip()
        assert "Traceback" not in err and f"[rule {rule}]" in err and len(err.splitlines()) <= 2, err
    # refused before a single trial was simulated
    assert not (tmp_path / "cache").exists()
