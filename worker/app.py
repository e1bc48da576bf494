"""The Celery app. Built by a function, not at import, so each configuration gets its own app
(kombu caches broker connections per app)."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery, signals

from core.settings import Settings

log = logging.getLogger("clusterd.worker")

TASK_NAME = "clusterd.run_execution"
NOOP_TASK = "clusterd.noop"  # does nothing: wakes a polling worker (api/main.py embedded_worker)


def make_celery(settings: Settings) -> Celery:
    from worker.tasks import run_execution

    app = Celery("clusterd", broker=settings.effective_broker_url, set_as_current=False)
    # Redis redelivers unacked messages after the visibility timeout even while a task still
    # runs: keep it well above the hard time limit (and set it in both places, celery#9339).
    visibility = settings.run_time_limit_s * 2 + 600
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.run_time_limit_s,
        task_soft_time_limit=settings.soft_time_limit_s,
        task_ignore_result=True,
        task_track_started=False,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=settings.queue_name,
        broker_transport_options={
            "visibility_timeout": visibility,
            "unacked_restore_interval": 10,
            "unacked_restore_throttle": 1,
            # the in-process memory transport polls: every 10 ms picks a run up within ~5 ms on average
            # (50 ms cost a whole k-means run ~25 ms) for ~1% of a core while idle
            **({"polling_interval": 0.01} if settings.broker_url is None else {}),
        },
        visibility_timeout=visibility,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
        worker_max_tasks_per_child=50,
        worker_soft_shutdown_timeout=30,
    )
    app.task(name=TASK_NAME, bind=False, acks_late=True)(run_execution)
    app.task(name=NOOP_TASK, ignore_result=True)(_noop)
    return app


def _noop() -> None:
    return None


def enqueue(app: Celery, run_id: str, queue: str) -> None:
    """Publish a run; the Celery task id is the run id, so a re-publish is recognisable."""
    app.send_task(TASK_NAME, args=[run_id], task_id=run_id, queue=queue)


_LOADED_IN_PID = os.getpid()


@signals.worker_process_init.connect
def _child_init(**_: Any) -> None:
    # the solo pool (embedded mode) sends this signal too, in the API's own process: leave it alone
    if os.getpid() == _LOADED_IN_PID:
        return
    # clustering is CPU-bound: pool processes × threads per run = cores avoids oversubscription
    from core.settings import get_settings
    from core.threads import limit_threads

    threads = get_settings().threads_per_run
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    limit_threads(threads)
    _limit_memory()
    from worker import warm

    warm.start()  # oneDAL and the rest in this child (the parent compiled the row kernels before the fork)


def _limit_memory() -> None:
    """CLUSTERD_WORKER_MEMORY_LIMIT_MB caps each pool process's address space: an oversized run
    then fails with MemoryError (recorded `failed`) instead of being OOM-killed, which Celery
    would redeliver and the reconciler retry until `orphaned`."""
    import resource

    from core.settings import get_settings

    limit_mb = get_settings().worker_memory_limit_mb
    if limit_mb:
        limit = limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@signals.task_failure.connect
def _on_task_failure(
    sender: Any = None,
    task_id: str | None = None,
    exception: BaseException | None = None,
    args: Any = None,
    **_: Any,
) -> None:
    """A hard time limit ends here (in the worker main process), never in the task body: without
    this handler the run would stay `processing` until the reaper notices. A killed pool child
    does not: with reject_on_worker_lost Celery requeues the message instead, the redelivery
    finds the run `processing`, and the reaper requeues or fails it once its heartbeat stops."""
    if getattr(sender, "name", None) != TASK_NAME or not args:
        return
    from celery.exceptions import TimeLimitExceeded

    from worker.execution import fail_run

    category = "timeout" if isinstance(exception, TimeLimitExceeded) else "unknown"
    try:
        from worker.runtime import get_runtime

        rt = get_runtime()
        rt.run(
            fail_run(rt, str(args[0]), message=f"{type(exception).__name__}: {exception}", category=category)
        )
    except Exception:  # pragma: no cover - best effort; the sweeper is the backstop
        log.exception("could not mark run %s failed", args[0])
