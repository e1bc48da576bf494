"""The reconciler: no run is left `pending` or `processing` by a lost message or a dead worker.

Each pass, under a Redis lock so exactly one API process acts at a time:
- a `processing` run whose heartbeat stopped goes back to `pending` and is re-enqueued (same
  run id) until max_attempts deliveries; then it fails as `orphaned`;
- a `pending` run published more than republish_after_s ago whose message the broker no longer
  holds (a Redis restart without persistence drops queued messages) is published again.
Every step is also a compare-and-set, so a pass that overlaps another (lock expired) is harmless.
The embedded memory transport cannot lose a message without the whole process (and its
in-memory store) going too, so there the pending step and the lock are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

from core.models import FailureCategory, RunStatus
from core.store import executions, run_state
from core.timeutil import utcnow
from worker import broker_queue
from worker.app import enqueue

log = logging.getLogger("clusterd.reaper")


def _counts(**kw: int) -> dict[str, int]:
    return {"requeued": 0, "orphaned": 0, "republished": 0, "skipped": 0} | kw


async def reap_once(svc: Any) -> dict[str, int]:
    settings = svc.settings
    if not settings.broker_url:
        return await _reap(svc, None)
    r = broker_queue.client(settings.broker_url)
    try:
        lock = broker_queue.reconciler_lock(r, settings.queue_name, max(60.0, 3 * settings.reaper_interval_s))
        if not await asyncio.to_thread(lock.acquire):
            return _counts(skipped=1)
        try:
            return await _reap(svc, r)
        finally:
            try:
                await asyncio.to_thread(lock.release)
            except Exception as exc:  # expired meanwhile: another pass may hold it now
                log.warning("reconciler lock was lost during the pass: %s", exc)
    finally:
        await asyncio.to_thread(r.close)


async def _reap(svc: Any, r: Any) -> dict[str, int]:
    counts = await _reap_processing(svc)
    if r is not None:
        counts["republished"] = await _republish_pending(svc, r)
    return counts


async def _reap_processing(svc: Any) -> dict[str, int]:
    settings = svc.settings
    silent_since = utcnow() - timedelta(seconds=settings.stale_after_s)
    counts = _counts()
    for run in await executions.stale_processing(svc.db, silent_since=silent_since):
        attempt = int(run.get("attempts") or 0)
        if attempt < settings.max_attempts:
            if await executions.requeue_stale(
                svc.db, run_id=run["run_id"], attempt=attempt, silent_since=silent_since
            ):
                if not await _publish(svc, run["run_id"], "requeueing"):
                    continue
                await run_state.mirror(svc.db, run, RunStatus.PENDING)
                counts["requeued"] += 1
                log.warning("run %s lost its worker (attempt %d); requeued", run["run_id"], attempt)
            continue
        message = f"worker lost: no heartbeat for {int(settings.stale_after_s)} s after {attempt} attempt(s)"
        if await run_state.fail(
            svc.db,
            run_id=run["run_id"],
            message=message,
            category=FailureCategory.ORPHANED.value,
            attempt=attempt,
        ):
            counts["orphaned"] += 1
    return counts


async def _republish_pending(svc: Any, r: Any) -> int:
    settings = svc.settings
    published_before = utcnow() - timedelta(seconds=settings.republish_after_s)
    stale = await executions.stale_pending(svc.db, published_before=published_before)
    if not stale:
        return 0
    held = await asyncio.to_thread(broker_queue.held_run_ids, r, settings.queue_name)
    done = 0
    for run in stale:
        if run["run_id"] in held:  # still queued behind a backlog: nothing was lost
            continue
        if await executions.mark_republished(svc.db, run_id=run["run_id"], published_before=published_before):
            if await _publish(svc, run["run_id"], "re-publishing"):
                done += 1
                log.warning("run %s was pending with no message in the broker; re-published", run["run_id"])
    return done


async def _publish(svc: Any, run_id: str, doing: str) -> bool:
    """Enqueue; if the broker refuses, fail the run (never leave it pending with no message)."""
    try:
        await asyncio.to_thread(enqueue, svc.celery, run_id, svc.settings.queue_name)
    except Exception as exc:
        await run_state.fail(
            svc.db,
            run_id=run_id,
            message=f"broker unavailable while {doing}: {type(exc).__name__}: {exc}",
            category=FailureCategory.INFRASTRUCTURE.value,
        )
        return False
    return True


async def reaper_loop(svc: Any) -> None:
    while True:
        await asyncio.sleep(svc.settings.reaper_interval_s)
        try:
            await reap_once(svc)
        except Exception:  # keep reaping: a store or broker hiccup must not end the loop
            log.exception("reaper pass failed")


@contextlib.asynccontextmanager
async def running(svc: Any) -> Any:
    task = asyncio.ensure_future(reaper_loop(svc))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
