"""One run from claim to a terminal state: claim, heartbeat, the run's stages, finish or fail."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import traceback
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from core import artifacts
from core.errors import ClusterdError, RunDataError, ServiceUnavailable
from core.models import FailureCategory, RunStatus
from core.pipeline import RunCanceled
from core.store import executions, run_state
from core.timeutil import utcnow
from worker.runtime import Runtime
from worker.stages import Progress
from worker.vector_run import run_vector

log = logging.getLogger("clusterd.worker")


async def execute_run(rt: Runtime, run_id: str) -> str:
    worker = f"{socket.gethostname()}:{os.getpid()}"
    run = await executions.claim(rt.db, run_id=run_id, worker=worker)
    if run is None:
        log.info("run %s is not pending (duplicate delivery or canceled); skipping", run_id)
        return "skipped"
    attempt = int(run["attempts"])
    await _mirror(rt, run, RunStatus.PROCESSING, {})
    started = time.perf_counter()
    progress = Progress(rt, run_id, attempt)
    heartbeat = asyncio.ensure_future(_heartbeat(progress))
    try:
        if run["config"]["algorithm"] == "attribute_based":
            from worker.attribute_run import run_attribute as stages
        elif len(run["config"].get("feature_names") or []) > 1:
            from worker.multi_run import run_multi_vector as stages
        else:
            stages = run_vector
        fields = await stages(rt, run, progress, started)
    except RunCanceled:
        await _settle_canceled(rt, run_id)
        return "canceled"
    except Exception as exc:  # every failure ends the run `failed`, never stuck
        await fail_run(
            rt,
            run_id,
            message=_message(exc, rt.settings.worker_memory_limit_mb),
            category=_category(exc),
            attempt=attempt,
            tb=traceback.format_exc(),
        )
        if progress.finalizing:  # e.g. members.parquet failed after clusters.parquet was written
            await _discard_artifacts(rt, run)
        return "failed"
    finally:
        heartbeat.cancel()
    if not await executions.complete(rt.db, run_id=run_id, attempt=attempt, fields=fields):
        log.warning("run %s lost its fence before completing (canceled or taken over)", run_id)
        await _discard_artifacts(rt, run)
        return "lost"
    await _mirror(
        rt,
        run,
        RunStatus.COMPLETED,
        {
            "num_clusters": fields["num_clusters"],
            "num_documents_clustered": fields["num_points"],
            "quality_metrics": fields["metrics"],
            "execution_time_seconds": fields["execution_time_ms"] / 1000.0,
            "completed_at": utcnow(),
            "error": None,
            "failure_category": None,
            "hierarchy_detected": bool(fields.get("hierarchy_relationships")),
            "hierarchy_relationships": fields.get("hierarchy_relationships") or [],
            # a weighted multi-feature run's learned weights (worker/multi_run.py); else cleared
            "learned_weights": fields.get("learned_weights"),
            "learning_quality_score": fields.get("learning_quality_score"),
            "llm_labeling_errors": fields.get("llm_labeling_errors") or None,  # the latest run's
        },
    )
    return "completed"


async def fail_run(
    rt: Runtime,
    run_id: str,
    *,
    message: str,
    category: str,
    attempt: int | None = None,
    tb: str | None = None,
) -> None:
    await run_state.fail(rt.db, run_id=run_id, message=message, category=category, attempt=attempt, tb=tb)


async def _discard_artifacts(rt: Runtime, run: dict[str, Any]) -> None:
    """This attempt wrote artifacts but did not complete the run (it failed while saving, lost
    its fence, or its cluster was deleted meanwhile): remove them. Each attempt writes under its
    own prefix, so no other attempt's files are touched. Best effort: a store that is down keeps
    them (they are never referenced by a run)."""
    run_id = run["run_id"]
    prefix = artifacts.attempt_prefix(run["namespace_id"], run["cluster_id"], run_id, run["attempts"])
    try:
        removed = await asyncio.to_thread(rt.artifacts.delete_prefix, prefix)
        if removed:
            log.info("run %s: removed %d artifact(s) of an attempt that did not complete", run_id, removed)
    except Exception as exc:
        log.warning("run %s: could not remove its partial artifacts: %s: %s", run_id, type(exc).__name__, exc)


async def _heartbeat(progress: Progress) -> None:
    while True:
        await asyncio.sleep(progress.rt.settings.heartbeat_interval_s)
        doc = await executions.get(progress.rt.db, run_id=progress.run_id)
        if doc and doc.get("progress"):
            await progress.report(doc["progress"]["stage"], float(doc["progress"]["fraction"]))


async def _settle_canceled(rt: Runtime, run_id: str) -> None:
    """Mirror the cancel again: this worker's PROCESSING mirror may have landed after the cancel's."""
    doc = await executions.get(rt.db, run_id=run_id)
    if doc is not None and doc["status"] == RunStatus.CANCELED.value:
        await _mirror(rt, doc, RunStatus.CANCELED, {})
    else:
        log.info("run %s lost its fence (taken over); stopping", run_id)


async def _mirror(rt: Runtime, run: dict[str, Any], status: RunStatus, extra: dict[str, Any]) -> None:
    await run_state.mirror(rt.db, run, status, extra)


def _category(exc: BaseException) -> str:
    if isinstance(exc, SoftTimeLimitExceeded):
        return FailureCategory.TIMEOUT.value
    if isinstance(exc, RunDataError) or (isinstance(exc, ClusterdError) and exc.type == "validation_error"):
        return FailureCategory.VALIDATION.value
    if isinstance(exc, ServiceUnavailable | ConnectionError | OSError) or _is_infra(exc):
        return FailureCategory.INFRASTRUCTURE.value
    return FailureCategory.PIPELINE.value


def _is_infra(exc: BaseException) -> bool:
    mod = type(exc).__module__
    return mod.startswith(("pymongo", "botocore", "boto3", "motor"))


def _message(exc: BaseException, memory_limit_mb: int | None) -> str:
    if isinstance(exc, SoftTimeLimitExceeded):
        return "run exceeded its time limit"
    if isinstance(exc, MemoryError):
        cap = f" ({memory_limit_mb} MB, CLUSTERD_WORKER_MEMORY_LIMIT_MB)" if memory_limit_mb else ""
        return f"run needed more memory than the worker may use{cap}: reduce sample_size or dimensions"
    if isinstance(exc, ClusterdError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"
