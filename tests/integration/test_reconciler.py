"""Pending runs whose broker message was lost are re-published, once, by one reconciler at a time.

Real Redis (db 15, a private queue name), the real app, no worker until the end: the queue is
emptied by hand the way a Redis restart without persistence empties it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from api.reaper import reap_once
from core.store import executions
from tests.conftest import REDIS_URL, Api, redis_settings, serve_asgi
from worker import broker_queue

pytestmark = [pytest.mark.integration, pytest.mark.redis]


@pytest.fixture
async def queued_api(make_settings: Any, s3_settings: dict[str, Any]) -> AsyncIterator[Api]:
    # passes are driven by the test, not the API's loop
    settings = redis_settings(make_settings, s3_settings, republish_after_s=0.2, reaper_interval_s=3600)
    async with serve_asgi(settings) as a:
        try:
            yield a
        finally:
            _lose_messages(settings.queue_name)


def _lose_messages(queue: str) -> None:
    """What a Redis restart without persistence does to a queue."""
    r = broker_queue.client(REDIS_URL)
    try:
        r.delete(*broker_queue.queue_keys(queue))
    finally:
        r.close()


async def _submit(api: Api, n: int) -> tuple[str, list[str]]:
    col, _ = await api.make_collection()
    cid = await api.make_cluster(col)
    ids = []
    for _ in range(n):
        r = await api.client.post(f"/v1/clusters/{cid}/execute", headers=api.h())
        assert r.status_code == 200, r.text
        ids.append(r.json()["additional_data"]["run_id"])
    return cid, ids


async def _lost_runs(api: Api, n: int) -> tuple[Any, str, str, list[str]]:
    """n pending runs whose messages Redis lost, older than republish_after_s."""
    svc = api.app.state.services
    cid, ids = await _submit(api, n)
    _lose_messages(svc.settings.queue_name)
    await asyncio.sleep(0.3)
    return svc, svc.settings.queue_name, cid, ids


def _queued(queue: str) -> set[str]:
    r = broker_queue.client(REDIS_URL)
    try:
        return broker_queue.held_run_ids(r, queue)
    finally:
        r.close()


async def test_queued_runs_are_left_alone_and_lost_ones_republished_once(queued_api: Api) -> None:
    svc = queued_api.app.state.services
    queue = svc.settings.queue_name
    cid, ids = await _submit(queued_api, 3)
    assert _queued(queue) == set(ids)
    await asyncio.sleep(0.3)
    # a healthy backlog: every message is still in Redis, nothing is re-published
    assert (await reap_once(svc))["republished"] == 0
    assert len(broker_queue.client(REDIS_URL).lrange(queue, 0, -1)) == 3

    _lose_messages(queue)
    assert _queued(queue) == set()
    assert (await reap_once(svc))["republished"] == 3
    assert _queued(queue) == set(ids)
    for run_id in ids:
        run = await executions.get(svc.db, run_id=run_id)
        assert run is not None and run["status"] == "pending" and run["republished"] == 1
    # the fresh publish resets the clock and the messages are held again: no second copy
    await asyncio.sleep(0.3)
    assert (await reap_once(svc))["republished"] == 0
    assert len(broker_queue.client(REDIS_URL).lrange(queue, 0, -1)) == 3


async def test_only_one_reconciler_acts_at_a_time(queued_api: Api) -> None:
    svc, queue, _, _ = await _lost_runs(queued_api, 4)
    lock = broker_queue.reconciler_lock(broker_queue.client(REDIS_URL), queue, 30)
    assert lock.acquire()  # another API process is mid-pass
    try:
        assert await reap_once(svc) == {"requeued": 0, "orphaned": 0, "republished": 0, "skipped": 1}
    finally:
        lock.release()
    passes = await asyncio.gather(*(reap_once(svc) for _ in range(4)))
    assert sum(p["republished"] for p in passes) == 4
    assert len(broker_queue.client(REDIS_URL).lrange(queue, 0, -1)) == 4  # one message per run


async def test_republished_runs_complete(queued_api: Api) -> None:
    from celery.contrib.testing.worker import start_worker

    svc, _, cid, ids = await _lost_runs(queued_api, 2)
    assert (await reap_once(svc))["republished"] == 2
    cm = start_worker(svc.celery, pool="solo", concurrency=1, perform_ping_check=False, shutdown_timeout=30)
    await asyncio.to_thread(cm.__enter__)
    try:
        for run_id in ids:
            run = await queued_api.wait_run(cid, run_id)
            assert run["status"] == "completed" and run["attempts"] == 1, run
    finally:
        await asyncio.to_thread(cm.__exit__, None, None, None)


def test_unacked_messages_count_only_for_their_own_queue() -> None:
    """Redis keeps one `unacked` hash per database for every queue; a delivered message is held
    for the queue it was routed to and no other."""
    import json
    import uuid

    queue, other = f"clusterd-test-{uuid.uuid4().hex[:8]}", f"clusterd-test-{uuid.uuid4().hex[:8]}"
    r = broker_queue.client(REDIS_URL)
    tag = uuid.uuid4().hex
    try:
        message = {"body": "", "headers": {"id": "run_delivered"}, "properties": {"delivery_tag": tag}}
        r.hset(broker_queue.UNACKED, tag, json.dumps([message, "", queue]))
        r.rpush(queue, json.dumps({"body": "", "headers": {"id": "run_waiting"}}))
        assert broker_queue.held_run_ids(r, queue) == {"run_delivered", "run_waiting"}
        assert broker_queue.held_run_ids(r, other) == set()
    finally:
        r.hdel(broker_queue.UNACKED, tag)
        r.delete(queue)
        r.close()
