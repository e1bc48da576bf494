"""What the Redis broker still holds for a queue: which run ids have a message waiting or
delivered-but-unacknowledged, and the lock that lets one reconciler act at a time.

A Redis restart without persistence drops queued messages while their runs stay `pending` in
MongoDB; the reconciler (api/reaper.py) re-publishes a stale pending run only when its id is in
neither place, so a long but healthy backlog is not duplicated.

Kombu's Redis layout: one list per queue and priority (`<queue>`, `<queue>\\x06\\x16<pri>` for the
non-zero priority steps) of JSON messages whose `headers.id` is the Celery task id (= the run id,
worker/app.py enqueue), and a hash `unacked` of `[message, exchange, routing_key]` JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import redis

PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)
UNACKED = "unacked"
LIST_PAGE = 1000


def client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def queue_keys(queue: str) -> list[str]:
    return [queue if p == 0 else f"{queue}{PRIORITY_SEP}{p}" for p in PRIORITY_STEPS]


def _task_id(raw: bytes | str, queue: str | None = None) -> str | None:
    """The task id of a queued message, or of an unacked entry routed to `queue` (the hash is
    shared by every queue of the Redis database)."""
    try:
        message = json.loads(raw)
    except (ValueError, TypeError):
        return None
    if isinstance(message, list):  # unacked entries: [message, exchange, routing_key]
        if len(message) < 3 or message[2] != queue:
            return None
        message = message[0]
    headers = message.get("headers") if isinstance(message, dict) else None
    task_id = headers.get("id") if isinstance(headers, dict) else None
    return str(task_id) if task_id else None


def _list_items(r: redis.Redis, key: str) -> Iterator[bytes]:
    start = 0
    while True:
        chunk: list[bytes] = r.lrange(key, start, start + LIST_PAGE - 1)  # type: ignore[assignment]
        yield from chunk
        if len(chunk) < LIST_PAGE:
            return
        start += LIST_PAGE


def held_run_ids(r: redis.Redis, queue: str) -> set[str]:
    """Run ids with a message in `queue` (any priority) or delivered and not yet acknowledged."""
    queued = {tid for key in queue_keys(queue) for item in _list_items(r, key) if (tid := _task_id(item))}
    unacked: list[bytes] = r.hvals(UNACKED)  # type: ignore[assignment]
    return queued | {tid for item in unacked if (tid := _task_id(item, queue))}


def reconciler_lock(r: redis.Redis, queue: str, ttl_s: float) -> Any:
    """A non-blocking lock per queue; it expires on its own if its holder dies mid-pass."""
    # thread_local=False: acquire and release run in different asyncio.to_thread threads
    return r.lock(f"clusterd:reconciler:{queue}", timeout=ttl_s, blocking=False, thread_local=False)
