"""App factory. The lifespan opens the stores, registers keys, and (embedded default) starts a
Celery worker thread inside the process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sys
import threading
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from api import errors, reaper
from api.body_limit import BodyLimitMiddleware
from api.deps import Services
from api.routers import adhoc, admin, analytics, clusters, collections, patterns, run_actions, views
from api.routers import dashboard as dashboard_routes
from core.algorithms import hdbscan_engine
from core.artifacts import make_artifact_store
from core.settings import Settings, get_settings
from core.store import api_keys
from core.store.db import connect, ensure_indexes
from worker import runtime, warm
from worker.app import NOOP_TASK, make_celery

log = logging.getLogger("clusterd.api")


def _pepper(settings: Settings) -> bytes:
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode()
    # embedded store lives in memory, so a per-process pepper loses nothing
    return secrets.token_bytes(32)


@contextlib.contextmanager
def embedded_worker(celery_app: Any) -> Any:
    from celery.contrib.testing.worker import start_worker

    queue = celery_app.conf.task_default_queue  # = settings.queue_name (worker/app.py)
    stopped = threading.Event()

    def nudge() -> None:
        # Celery's solo loop only notices a stop between broker polls of 2 s each; a no-op
        # message ends each poll at once (shutdown took ~4 s, now ~0.2 s)
        while not stopped.wait(0.1):
            with contextlib.suppress(Exception):
                celery_app.send_task(NOOP_TASK, queue=queue)

    try:
        with start_worker(
            celery_app,
            pool="solo",
            concurrency=1,
            perform_ping_check=False,
            loglevel="WARNING",
            shutdown_timeout=30,
        ) as w:
            yield w
            threading.Thread(target=nudge, name="embedded-worker-nudge", daemon=True).start()
    finally:
        stopped.set()


def create_app(settings: Settings | None = None, *, banner: bool = False) -> FastAPI:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client, db = connect(settings)
        await ensure_indexes(db, embedded=settings.embedded_store)
        pepper = _pepper(settings)
        generated = await api_keys.ensure_bootstrap(db, pepper=pepper, keys=settings.api_keys)
        store = make_artifact_store(settings)
        celery_app = make_celery(settings)
        app.state.services = Services(settings, db, store, celery_app, pepper)
        app.state.generated_key = generated
        runtime.install(runtime.Runtime(settings, db, store, asyncio.get_running_loop(), client))
        if banner:
            _print_banner(settings, generated, store.describe())
        with contextlib.ExitStack() as stack:
            if settings.run_worker_in_process:
                if settings.warm_up:  # in the background: the API answers at once
                    hdbscan_engine.start_warm_up()
                warm.start()  # row kernels, oneDAL, parquet: the first run costs what later ones do
                await asyncio.to_thread(lambda: stack.enter_context(embedded_worker(celery_app)))
            try:
                async with reaper.running(app.state.services):
                    yield
            finally:
                runtime.install(None)
                await asyncio.to_thread(_close_quietly, stack)
                client.close()

    app = FastAPI(
        title="clusterd",
        version="0.1.0",
        lifespan=lifespan,
        description="Self-hosted asynchronous clustering (Mixpeek v1 clustering API compatible)",
    )
    errors.install(app)
    for r in (
        admin.health_router,
        admin.router,
        collections.router,
        adhoc.router,
        clusters.router,
        run_actions.router,
        views.router,
        analytics.router,
        patterns.router,
        dashboard_routes.router,
    ):
        app.include_router(r)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_mb * 1024 * 1024,
        upload_bytes=settings.max_upload_mb * 1024 * 1024,
    )
    return app


def _close_quietly(stack: contextlib.ExitStack) -> None:
    try:
        stack.close()
    except RuntimeError as exc:  # a run still in progress at shutdown
        log.warning("embedded worker did not stop cleanly: %s", exc)


def _print_banner(settings: Settings, key: str | None, artifacts_at: str) -> None:
    lines = [
        f"clusterd listening on http://{settings.host}:{settings.port}  (docs: /docs, dashboard: /dashboard)",
        f"mode: {'embedded (in-process store and worker)' if settings.embedded_store else 'production'}",
        f"artifacts: {artifacts_at}",
    ]
    if key:
        lines.append(f"API key (shown once): {key}")
    else:
        lines.append("API keys: from CLUSTERD_API_KEYS / the key store")
    print("\n".join(lines), file=sys.stderr, flush=True)
