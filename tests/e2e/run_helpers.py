"""Helpers shared by the run management and analytics tests (not a test module)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from api.main import embedded_worker
from tests.conftest import Api


@contextlib.asynccontextmanager
async def worker(api: Api) -> AsyncIterator[None]:
    """Start the app's in-process Celery worker (for apps built with embedded_worker=False)."""
    cm = embedded_worker(api.app.state.services.celery)
    await asyncio.to_thread(cm.__enter__)
    try:
        yield
    finally:
        await asyncio.to_thread(cm.__exit__, None, None, None)


async def start(api: Api, cluster_id: str, ns: str = "team-a") -> str:
    """Execute a cluster without waiting; returns the run id."""
    r = await api.client.post(f"/v1/clusters/{cluster_id}/execute", headers=api.h(ns))
    assert r.status_code == 200, r.text
    return str(r.json()["additional_data"]["run_id"])


async def get_run(api: Api, cluster_id: str, run_id: str, ns: str = "team-a") -> dict[str, Any]:
    r = await api.client.get(f"/v1/clusters/{cluster_id}/executions/{run_id}", headers=api.h(ns))
    assert r.status_code == 200, r.text
    return dict(r.json())


async def get_cluster(api: Api, cluster_id: str, ns: str = "team-a") -> dict[str, Any]:
    r = await api.client.get(f"/v1/clusters/{cluster_id}", headers=api.h(ns))
    assert r.status_code == 200, r.text
    return dict(r.json())


async def wait_status(
    api: Api, cluster_id: str, run_id: str, statuses: set[str], wait_s: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + wait_s
    while True:
        run = await get_run(api, cluster_id, run_id)
        if run["status"] in statuses:
            return run
        assert time.monotonic() < deadline, f"run still {run['status']}"
        await asyncio.sleep(0.02)


def assert_error(r: Any, status: int, type_: str, code: str | None = None) -> dict[str, Any]:
    """The contract's ErrorResponse with this status, type and (optionally) code."""
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False and body["status"] == status
    assert body["error"]["type"] == type_ and isinstance(body["error"]["message"], str)
    if code is not None:
        assert body["error"].get("code") == code, body
    return dict(body["error"])
