"""scripts/bench_api.py's pollers for real, small: a few of them against a live server, on runs
and on the floor route (no timing asserted, only that every figure is there and consistent)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import ADMIN_KEY

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import bench_api  # noqa: E402

pytestmark = pytest.mark.e2e


async def test_pollers_poll_every_run_and_the_floor_without_errors(live_server: str) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}", "X-Namespace": "bench"}
    async with httpx.AsyncClient(base_url=live_server, headers=headers, timeout=60) as c:
        runs = await bench_api.seed(c, "bench", 3)
        for cid, run_id in runs:
            assert (await c.get(f"/v1/clusters/{cid}/executions/{run_id}")).json()["status"] == "completed"
    polls = [f"/v1/clusters/{cid}/executions/{rid}" for cid, rid in runs]
    for paths in (polls, [bench_api.FLOOR_PATH]):
        out = await bench_api.poll_for(live_server, headers, paths, pollers=4, interval=0.05, seconds=1.0)
        # the same pollers spread over two forked client processes (the server runs in a thread here)
        forked = bench_api.poll(live_server, headers, paths, pollers=4, interval=0.05, seconds=1.0, procs=2)
        assert forked["errors"] == 0 and forked["requests"] == len(forked["latencies_ms"]) > 4
        assert forked["offered_per_s"] == pytest.approx(80.0) and forked["req_per_s"] > 0
        assert out["errors"] == 0, out["error_kinds"]
        assert out["requests"] == len(out["latencies_ms"]) > 4
        assert 0 < out["p50_ms"] <= out["p95_ms"] <= out["p99_ms"] <= out["max_ms"]
        assert out["req_per_s"] > 0 and out["offered_per_s"] == pytest.approx(80.0)

    out["server_cores"] = 0.5  # what a timed row adds from /proc
    pooled = bench_api._pooled([out, out])
    assert pooled["requests"] == 2 * out["requests"] and pooled["errors"] == 0
    assert pooled["max_ms"] == out["max_ms"] and pooled["server_cores"] == 0.5


def test_pollers_split_evenly_over_the_client_processes() -> None:
    assert bench_api._split(100, 4) == [(0, 25), (25, 25), (50, 25), (75, 25)]
    assert bench_api._split(10, 4) == [(0, 3), (3, 3), (6, 2), (8, 2)]
    assert bench_api._split(2, 4) == [(0, 1), (1, 1)]


def test_percentiles_of_no_requests_are_nan() -> None:
    out = bench_api.percentiles(np.asarray([], dtype=float))
    assert out["requests"] == 0 and all(math.isnan(out[k]) for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms"))
