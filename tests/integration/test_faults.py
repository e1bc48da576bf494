"""Cross-process faults, injected for real: worker processes SIGKILLed mid-run, a run that kills
every worker that takes it, soft and hard time limits on the prefork pool, and a Redis restart
that loses queued messages. The API runs in-process; the workers are subprocesses
(tests/fault_worker.py); both share MongoDB through nx-27017 (tests/nx_mongo.py).

Timings come from tests/fault_harness.FAST_RELIABILITY (heartbeat 0.5 s, stale after 2.5 s,
reconciler every 0.5 s, time limit 10 s). No assertion is on speed; deadlines only bound a hang.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import nx_mongo
from tests.conftest import REDIS_URL, Api, redis_available, serve_asgi
from tests.fault_harness import RedisServer, Worker, as_env, shared_settings
from worker import broker_queue

pytestmark = [
    pytest.mark.integration,
    pytest.mark.fault,
    pytest.mark.skipif(not nx_mongo.available(), reason="nx-27017 is not installed"),
]

TERMINAL = ("completed", "failed", "canceled")


@dataclass
class Tier:
    api: Api
    env: dict[str, str]
    tmp: Path
    workers: list[Worker]

    def worker(self, fault: str = "") -> Worker:
        w = Worker(self.env, self.tmp / f"worker-{len(self.workers)}.log", fault).start()
        self.workers.append(w)
        return w

    def logs(self) -> str:
        return "\n".join(w.tail() for w in self.workers)


@pytest.fixture
async def tier(tmp_path: Path, make_settings: Any, request: pytest.FixtureRequest) -> AsyncIterator[Tier]:
    broker = getattr(request, "param", None)
    redis: RedisServer | None = None
    if broker == "private":
        redis = RedisServer(tmp_path / "redis").start()
        url = redis.url
    else:
        assert redis_available(), "these tests need Redis on 127.0.0.1:6379 (scripts/test.sh starts it)"
        url = REDIS_URL
    queue = f"clusterd-fault-{uuid.uuid4().hex[:8]}"
    with nx_mongo.nx_server(tmp_path / "nx") as nx:
        fields = shared_settings(tmp_path, nx, url, queue)
        async with serve_asgi(make_settings(embedded_worker=False, **fields)) as api:
            t = Tier(api, as_env(fields), tmp_path, [])
            t.redis = redis  # type: ignore[attr-defined]
            try:
                yield t
            finally:
                for w in t.workers:
                    w.stop()
                if redis is not None:
                    redis.kill()
                else:
                    _forget_queue(url, queue)


def _forget_queue(url: str, queue: str) -> None:
    """Drop the queue and its unacked entries (a killed worker leaves them in the shared Redis)."""
    import json

    r = broker_queue.client(url)
    try:
        r.delete(*broker_queue.queue_keys(queue))
        for tag, raw in r.hgetall(broker_queue.UNACKED).items():
            entry = json.loads(raw)
            if isinstance(entry, list) and len(entry) == 3 and entry[2] == queue:
                r.hdel(broker_queue.UNACKED, tag)
    finally:
        r.close()


async def _submit(api: Api, cid: str) -> str:
    r = await api.client.post(f"/v1/clusters/{cid}/execute", headers=api.h())
    assert r.status_code == 200, r.text
    return str(r.json()["additional_data"]["run_id"])


async def _run(api: Api, cid: str, run_id: str) -> dict[str, Any]:
    r = await api.client.get(f"/v1/clusters/{cid}/executions/{run_id}", headers=api.h())
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _until(
    t: Tier, cid: str, run_id: str, ok: Callable[[dict[str, Any]], bool], within: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        run = await _run(t.api, cid, run_id)
        if ok(run):
            return run
        assert time.monotonic() < deadline, f"run never got there: {run}\n--- worker logs ---\n{t.logs()}"
        await asyncio.sleep(0.1)


def _in_fault_stage(run: dict[str, Any]) -> bool:
    return run["status"] == "processing" and (run.get("progress") or {}).get("stage") == "fault-slow"


def _terminal(run: dict[str, Any]) -> bool:
    return run["status"] in TERMINAL


async def _cluster(t: Tier) -> str:
    col, _ = await t.api.make_collection()
    return await t.api.make_cluster(col)


def _artifacts_exist(t: Tier, run: dict[str, Any]) -> bool:
    root = t.tmp / "data" / "artifacts"
    return all((root / run[k]).is_file() for k in ("members_key", "parquet_path") if run.get(k))


async def test_pool_child_killed_mid_run_is_redelivered_and_completes(tier: Tier) -> None:
    worker = tier.worker("slow:3")
    cid = await _cluster(tier)
    run_id = await _submit(tier.api, cid)
    await _until(tier, cid, run_id, _in_fault_stage)
    worker.kill_child()
    killed = time.monotonic()
    run = await _until(tier, cid, run_id, _terminal)
    print(f"\n[fault] pool child SIGKILL -> completed in {time.monotonic() - killed:.1f} s")
    assert run["status"] == "completed", run
    assert run["attempts"] == 2  # the killed attempt, then the reconciler's requeue
    assert _artifacts_exist(tier, run) and "/attempt-2/" in run["members_key"]
    cluster = (await tier.api.client.get(f"/v1/clusters/{cid}", headers=tier.api.h())).json()
    assert cluster["status"] == "COMPLETED" and cluster["last_run_id"] == run_id


async def test_whole_worker_killed_mid_run_completes_on_another_worker(tier: Tier) -> None:
    first = tier.worker("slow:3")
    cid = await _cluster(tier)
    run_id = await _submit(tier.api, cid)
    await _until(tier, cid, run_id, _in_fault_stage)
    first.kill_all()  # main process and pool child: the message stays unacknowledged in Redis
    killed = time.monotonic()
    tier.worker()
    run = await _until(tier, cid, run_id, _terminal)
    print(f"\n[fault] worker group SIGKILL -> completed in {time.monotonic() - killed:.1f} s")
    assert run["status"] == "completed" and run["attempts"] == 2, run


async def test_poison_run_is_capped_by_attempts_and_fails_orphaned(tier: Tier) -> None:
    worker = tier.worker("poison")
    cid = await _cluster(tier)
    run_id = await _submit(tier.api, cid)
    began = time.monotonic()
    run = await _until(tier, cid, run_id, _terminal, within=90)
    print(f"\n[fault] poison run -> failed/orphaned in {time.monotonic() - began:.1f} s")
    assert run["status"] == "failed" and run["failure_category"] == "orphaned", run
    assert run["attempts"] == 3 and "no heartbeat" in run["error_message"]
    deadline = time.monotonic() + 30  # the pool replaces a killed child: wait for its successor
    while not worker.children():
        assert time.monotonic() < deadline, "the worker must survive its poisoned pool children"
        await asyncio.sleep(0.1)
    cluster = (await tier.api.client.get(f"/v1/clusters/{cid}", headers=tier.api.h())).json()
    assert cluster["status"] == "FAILED" and cluster["failure_category"] == "orphaned"


async def test_soft_time_limit_fails_the_run_as_timeout(tier: Tier) -> None:
    tier.worker("slow:30")
    cid = await _cluster(tier)
    run_id = await _submit(tier.api, cid)
    run = await _until(tier, cid, run_id, _terminal)
    assert run["status"] == "failed" and run["failure_category"] == "timeout", run
    assert run["attempts"] == 1 and "time limit" in run["error_message"]


async def test_hard_time_limit_fails_the_run_as_timeout(tier: Tier) -> None:
    worker = tier.worker("deaf:30")
    cid = await _cluster(tier)
    run_id = await _submit(tier.api, cid)
    run = await _until(tier, cid, run_id, _terminal)
    assert run["status"] == "failed" and run["failure_category"] == "timeout", run
    assert run["attempts"] == 1 and "TimeLimitExceeded" in run["error_message"], run
    assert "Hard time limit" in worker.tail(20000)


@pytest.mark.parametrize("tier", ["private"], indirect=True)
async def test_redis_restart_loses_queued_runs_and_the_reconciler_recovers_them(tier: Tier) -> None:
    """One run is mid-flight and two are queued when Redis restarts without persistence."""
    redis: RedisServer = tier.redis  # type: ignore[attr-defined]
    queue = tier.api.app.state.services.settings.queue_name
    tier.worker("slow:2")
    cid = await _cluster(tier)
    running = await _submit(tier.api, cid)
    await _until(tier, cid, running, _in_fault_stage)
    queued = [await _submit(tier.api, cid) for _ in range(2)]
    r = broker_queue.client(redis.url)
    assert set(queued) <= broker_queue.held_run_ids(r, queue)
    r.close()
    redis.kill()
    redis.start()  # same port, empty: the queued messages are gone, their runs still pending
    restarted = time.monotonic()
    for run_id in [running, *queued]:
        run = await _until(tier, cid, run_id, _terminal, within=90)
        assert run["status"] == "completed" and run["attempts"] <= 2, run
        print(
            f"\n[fault] after Redis restart: {run_id} completed (attempts {run['attempts']})"
            f" {time.monotonic() - restarted:.1f} s after the restart"
        )
    db = tier.api.app.state.services.db
    for run_id in queued:
        doc = await db.cluster_executions.find_one({"run_id": run_id})
        assert doc["republished"] >= 1 and doc["attempts"] == 1, doc


async def test_concurrent_duplicate_deliveries_run_once(tier: Tier) -> None:
    """Two workers receive the same run at once (a re-publish racing the original message)."""
    from worker.app import enqueue

    tier.worker("slow:1")
    tier.worker("slow:1")
    svc = tier.api.app.state.services
    cid = await _cluster(tier)
    run_id = await _submit(tier.api, cid)
    enqueue(svc.celery, run_id, svc.settings.queue_name)
    run = await _until(tier, cid, run_id, _terminal)
    assert run["status"] == "completed" and run["attempts"] == 1, run
    deadline = time.monotonic() + 30
    while "is not pending (duplicate delivery" not in tier.logs():
        assert time.monotonic() < deadline, tier.logs()
        await asyncio.sleep(0.2)
    again = await _run(tier.api, cid, run_id)
    assert again["completed_at"] == run["completed_at"] and again["attempts"] == 1


async def test_run_over_the_memory_limit_fails_once_instead_of_killing_workers(tier: Tier) -> None:
    env = {**tier.env, "CLUSTERD_WORKER_MEMORY_LIMIT_MB": "4096"}
    worker = Worker(env, tier.tmp / "worker-hog.log", "hog:8192").start()
    tier.workers.append(worker)
    cid = await _cluster(tier)
    run_id = await _submit(tier.api, cid)
    run = await _until(tier, cid, run_id, _terminal)
    assert run["status"] == "failed" and run["attempts"] == 1, run
    assert "more memory than the worker may use (4096 MB" in run["error_message"]
    assert worker.children(), "the pool process survives its MemoryError"
