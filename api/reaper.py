"""Runs whose worker died: a processing run whose heartbeat stopped goes back to pending and is
re-enqueued (same run id), until max_attempts deliveries; then it fails as `orphaned`.

It runs in every API process; each step is a compare-and-set, so several reapers are harmless.
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
from worker.app import enqueue

log = logging.getLogger("clusterd.reaper")


async def reap_once(svc: Any) -> dict[str, int]:
    settings = svc.settings
    silent_since = utcnow() - timedelta(seconds=settings.stale_after_s)
    counts = {"requeued": 0, "orphaned": 0}
    for run in await executions.stale_processing(svc.db, silent_since=silent_since):
        attempt = int(run.get("attempts") or 0)
        if attempt < settings.max_attempts:
            if await executions.requeue_stale(
                svc.db, run_id=run["run_id"], attempt=attempt, silent_since=silent_since
            ):
                try:
                    await asyncio.to_thread(enqueue, svc.celery, run["run_id"], settings.queue_name)
                except Exception as exc:  # never leave it pending with no message behind it
                    await run_state.fail(
                        svc.db,
                        run_id=run["run_id"],
                        message=f"broker unavailable while requeueing: {type(exc).__name__}: {exc}",
                        category=FailureCategory.INFRASTRUCTURE.value,
                    )
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


async def reaper_loop(svc: Any) -> None:
    while True:
        await asyncio.sleep(svc.settings.reaper_interval_s)
        try:
            await reap_once(svc)
        except Exception:  # keep reaping: a store hiccup must not end the loop
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
