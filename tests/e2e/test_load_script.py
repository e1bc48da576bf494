"""scripts/load.py for real: it starts its own embedded server, loads it briefly and reports JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--duration", "3", "--submitters", "2", "--pollers", "2", "--documents", "60", "--dims", "8"]


def test_load_script_every_run_terminal_and_no_5xx() -> None:
    proc = subprocess.run(  # noqa: S603
        [sys.executable, "scripts/load.py", *ARGS, "--drain-timeout", "60", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    rep = json.loads(proc.stdout)

    assert rep["ok"] is True and rep["problems"] == []
    runs = rep["runs"]
    assert runs["submitted"] > 0
    assert runs["terminal"] == runs["submitted"]
    assert runs["by_status"] == {"completed": runs["submitted"]}
    assert runs["lost"] == [] and runs["stuck"] == [] and runs["untracked"] == {}
    assert rep["server_errors"] == 0
    assert not [k for k in rep["errors"] if k.split(" ")[1].startswith("5")]

    for kind in ("execute", "poll", "list", "sample"):
        q = rep["requests"][kind]
        assert set(q) >= {"n", "p50", "p95", "p99", "max", "errors", "per_s"}, kind
    assert rep["requests"]["execute"]["n"] >= runs["submitted"]
    assert rep["requests"]["poll"]["n"] > 0
    e2e = rep["latency_ms"]["e2e_observed"]
    assert e2e["n"] == runs["submitted"] and 0 < e2e["p50"] <= e2e["p95"] <= e2e["p99"] <= e2e["max"]
    for name in ("e2e_server", "queue_wait", "run_time"):
        assert rep["latency_ms"][name]["n"] == runs["submitted"], name

    depth = rep["queue_depth"]
    assert len(depth) >= 3
    assert set(depth[0]) == {"t", "pending", "processing", "outstanding", "submitted", "terminal"}
    last = depth[-1]
    assert (last["pending"], last["processing"], last["outstanding"]) == (0, 0, 0)
    assert last["terminal"] == runs["submitted"]
    assert rep["config"]["submitters"] == 2 and rep["machine"]["cpus"] >= 1
