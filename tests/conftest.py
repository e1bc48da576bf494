"""Shared fixtures: the real app over httpx (ASGI) or a live uvicorn, with an embedded worker
(memory transport) or a real Celery worker on the Redis at 127.0.0.1:6379."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest

# fast-hdbscan's ~30 s compile would run in every app and worker process the suite starts;
# tests/unit/test_hdbscan_engine.py compiles it once, on purpose
os.environ.setdefault("CLUSTERD_WARM_UP", "false")

from api.main import create_app  # noqa: E402
from core.settings import Settings

ADMIN_KEY = "test-admin-key-0123456789"
REDIS_URL = "redis://127.0.0.1:6379/15"
# what the mixpeek SDK sends as algorithm_params for any dict it cannot type (KMeansParams defaults)
SDK_KMEANS_DEFAULTS = {
    "n_clusters": 8,
    "max_iter": 300,
    "random_state": 42,
    "n_init": 10,
    "tol": 1e-4,
    "init": "k-means++",
    "verbose": 0,
    "copy_x": True,
    "algorithm": "lloyd",
}


def blobs(n_per: int = 40, dims: int = 8, centers: int = 3, seed: int = 0) -> np.ndarray:
    """Well separated clusters that stay separated after L2 normalisation (distinct directions)."""
    rng = np.random.default_rng(seed)
    dirs = np.eye(dims)[:centers] * 10.0
    return np.concatenate([d + rng.normal(0, 0.3, (n_per, dims)) for d in dirs]).astype(np.float32)


@dataclass
class Api:
    client: httpx.AsyncClient
    app: Any

    def h(self, ns: str = "team-a", key: str = ADMIN_KEY) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}", "X-Namespace": ns}

    async def make_collection(
        self,
        name: str = "points",
        ns: str = "team-a",
        X: np.ndarray | None = None,
        vector: str = "emb",
        prefix: str = "d",
    ) -> tuple[str, np.ndarray]:
        X = blobs() if X is None else X
        r = await self.client.post("/v1/collections", json={"collection_name": name}, headers=self.h(ns))
        assert r.status_code == 200, r.text
        cid = r.json()["collection_id"]
        docs = [
            {"document_id": f"{prefix}{i:05d}", "vectors": {vector: x.tolist()}, "metadata": {"i": i}}
            for i, x in enumerate(X)
        ]
        for start in range(0, len(docs), 1000):
            await self.upsert(cid, docs[start : start + 1000], ns)
        return cid, X

    async def upsert(self, collection: str, docs: list[dict[str, Any]], ns: str = "team-a") -> None:
        r = await self.client.post(
            f"/v1/namespaces/{ns}/documents/upsert",
            json={"collection_id": collection, "documents": docs},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
        assert r.status_code == 200, r.text

    async def make_attribute_cluster(
        self, collection: str, attributes: list[str], ns: str = "team-a", *, hierarchical: bool = False
    ) -> dict[str, Any]:
        """An attribute cluster over `attributes`; returns the created cluster."""
        config: dict[str, Any] = {"attributes": attributes}
        if hierarchical:
            config["hierarchical_grouping"] = True
        r = await self.client.post(
            "/v1/clusters",
            headers=self.h(ns),
            json={"collection_ids": [collection], "cluster_type": "attribute", "attribute_config": config},
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def make_cluster(self, collection: str, *args: Any, **kwargs: Any) -> str:
        """`create_cluster`'s cluster id."""
        return str((await self.create_cluster(collection, *args, **kwargs))["cluster_id"])

    async def create_cluster(
        self,
        collection: str,
        ns: str = "team-a",
        k: int = 3,
        *,
        method: str = "kmeans",
        params: dict[str, Any] | None = None,
        vector_config: dict[str, Any] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """A vector cluster over `emb` (the created cluster); `params` default to k-means'
        {"n_clusters": k}, `vector_config` adds to its vector_config, `extra` to the body."""
        body = {
            "collection_ids": [collection],
            "vector_config": {
                "clustering_method": method,
                "feature_uris": ["emb"],
                "algorithm_params": {"n_clusters": k} if params is None else params,
                **(vector_config or {}),
            },
            **extra,
        }
        r = await self.client.post("/v1/clusters", json=body, headers=self.h(ns))
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def execute(self, cluster_id: str, ns: str = "team-a") -> dict:
        """Execute a cluster and wait for the run to end; returns the finished run."""
        r = await self.client.post(f"/v1/clusters/{cluster_id}/execute", headers=self.h(ns))
        assert r.status_code == 200, r.text
        return await self.wait_run(cluster_id, r.json()["additional_data"]["run_id"], ns)

    async def wait_run(self, cluster_id: str, run_id: str, ns: str = "team-a", wait_s: float = 60) -> dict:
        deadline = time.monotonic() + wait_s
        while True:
            r = await self.client.get(f"/v1/clusters/{cluster_id}/executions/{run_id}", headers=self.h(ns))
            assert r.status_code == 200, r.text
            body = r.json()
            if body["status"] in ("completed", "failed", "canceled"):
                return body
            assert time.monotonic() < deadline, f"run still {body['status']}: {body}"
            await asyncio.sleep(0.05)


@pytest.fixture
def make_settings(tmp_path: Any) -> Any:
    def make(**kw: Any) -> Settings:
        base: dict[str, Any] = {
            "api_keys": [ADMIN_KEY],
            "data_dir": tmp_path / "data",
            "adhoc_wait_s": 30,
            "heartbeat_interval_s": 1.0,
        }
        return Settings(**(base | kw))

    return make


@contextlib.asynccontextmanager
async def serve_asgi(settings: Settings) -> AsyncIterator[Api]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://clusterd.test", timeout=60) as c:
            yield Api(c, app)


@pytest.fixture
async def api(make_settings: Any) -> AsyncIterator[Api]:
    """Embedded default: in-process store, memory broker and worker thread, local artifacts."""
    async with serve_asgi(make_settings()) as a:
        yield a


def redis_available() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping())
    except Exception:
        return False


@pytest.fixture
def s3_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    from moto import mock_aws

    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        import boto3

        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="clusterd-test")
        yield {
            "s3_bucket": "clusterd-test",
            "s3_region": "us-east-1",
            "s3_access_key_id": "testing",
            "s3_secret_access_key": "testing",
        }


def redis_settings(make_settings: Any, s3_settings: dict[str, Any], **kw: Any) -> Settings:
    """The production topology's settings on the shared Redis (a private queue) and moto S3."""
    assert redis_available(), "these tests need Redis on 127.0.0.1:6379 (scripts/test.sh starts it)"
    return make_settings(  # type: ignore[no-any-return]
        broker_url=REDIS_URL,
        queue_name=f"clusterd-test-{uuid.uuid4().hex[:8]}",
        embedded_worker=False,
        **s3_settings,
        **kw,
    )


@pytest.fixture
async def redis_api(make_settings: Any, s3_settings: dict[str, Any]) -> AsyncIterator[Api]:
    """Production topology in one process: Redis broker, a real Celery worker (start_worker), S3 on moto."""
    from celery.contrib.testing.worker import start_worker

    async with serve_asgi(redis_settings(make_settings, s3_settings)) as a:
        celery_app = a.app.state.services.celery
        cm = start_worker(
            celery_app, pool="solo", concurrency=1, perform_ping_check=False, shutdown_timeout=30
        )
        await asyncio.to_thread(cm.__enter__)
        try:
            yield a
        finally:
            await asyncio.to_thread(cm.__exit__, None, None, None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_uvicorn(settings: Settings) -> Iterator[tuple[str, Any]]:
    """A real uvicorn on loopback (port from settings) in a thread: (base URL, app)."""
    import uvicorn

    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{settings.port}", app
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture
def live_server(make_settings: Any) -> Iterator[str]:
    """A real uvicorn on loopback with the embedded worker, for clients that speak plain HTTP (the SDK)."""
    with serve_uvicorn(make_settings(port=free_port())) as (url, _):
        yield url
