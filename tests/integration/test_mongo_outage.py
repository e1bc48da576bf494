"""MongoDB going away under a running API (nx-27017 stopped for real, then started again on the
same port and database file): every request answers 503 service_unavailable with Retry-After and
no MongoDB internals, the health check reports the database, and service resumes by itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import nx_mongo
from tests.conftest import ADMIN_KEY, Api, blobs, serve_asgi
from tests.nx_mongo import NxServer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not nx_mongo.available(), reason="nx-27017 is not installed"),
]

# what must never reach a client: where the database lives, what it said, how the code failed
INTERNALS = (
    "127.0.0.1", "localhost", "27017", "Traceback", "topology", "errmsg", "ServerSelection", "pymongo",
)  # fmt: skip


@pytest.fixture
def nx(tmp_path: Path) -> Iterator[NxServer]:
    server = NxServer(tmp_path / "nx", durable=True).start()
    try:
        yield server
    finally:
        server.stop()


def requests_of(a: Api, cid: str, col: str) -> list[tuple[str, str, dict[str, Any] | None, dict[str, str]]]:
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    doc = {"document_id": "late", "vectors": {"emb": [1.0] * 8}}
    return [
        ("GET", f"/v1/clusters/{cid}", None, a.h()),
        ("POST", "/v1/clusters/list", {}, a.h()),
        ("GET", "/v1/clusters", None, a.h()),
        ("POST", f"/v1/clusters/{cid}/execute", None, a.h() | {"Idempotency-Key": "outage"}),
        ("POST", "/v1/namespaces/team-a/documents/upsert", {"collection_id": col, "documents": [doc]}, admin),
        ("GET", f"/v1/collections/{col}/documents/count", None, a.h()),
    ]


def assert_unavailable(r: httpx.Response, port: int) -> None:
    assert r.status_code == 503, (r.request.url, r.text)
    body = r.json()
    assert body == {
        "success": False,
        "status": 503,
        "error": {"message": "database unavailable, retry later", "type": "service_unavailable"},
    }
    assert int(r.headers["retry-after"]) > 0
    for word in (*INTERNALS, str(port)):
        assert word not in r.text


async def test_requests_are_503_while_mongodb_is_down_and_recover(make_settings: Any, nx: NxServer) -> None:
    settings = make_settings(mongodb_url=nx.url, secret_key="x" * 20)
    async with serve_asgi(settings) as a:
        col, _ = await a.make_collection(X=blobs(n_per=10))
        cid = await a.make_cluster(col)
        assert (await a.client.get(f"/v1/clusters/{cid}", headers=a.h())).status_code == 200

        nx.stop()
        calls = requests_of(a, cid, col)
        rs = await asyncio.gather(*(a.client.request(m, p, json=j, headers=h) for m, p, j, h in calls))
        for r in rs:
            assert_unavailable(r, nx.port)
        seed = await a.client.post(
            "/patterns/cluster", json={"data": [1, 2, 3, 10, 11, 12], "n_clusters": 2}, headers=a.h()
        )
        assert seed.status_code == 503 and seed.json() == {
            "error": "service_unavailable",
            "message": "database unavailable, retry later",
        }
        health = (await a.client.get("/v1/health")).json()
        assert health["status"] == "degraded" and health["checks"]["mongodb"]["status"] == "error"
        assert not any(word in str(health["checks"]["mongodb"]) for word in (*INTERNALS, str(nx.port)))

        nx.start()
        deadline = time.monotonic() + 20
        while (r := await a.client.get(f"/v1/clusters/{cid}", headers=a.h())).status_code != 200:
            assert r.status_code == 503 and time.monotonic() < deadline, r.text
            await asyncio.sleep(0.2)
        for m, p, j, h in calls:
            r = await a.client.request(m, p, json=j, headers=h)
            assert r.status_code == 200, (p, r.text)
        run_id = (
            await a.client.post(f"/v1/clusters/{cid}/execute", headers=a.h() | {"Idempotency-Key": "outage"})
        ).json()["additional_data"]["run_id"]
        run = await a.wait_run(cid, run_id)
        assert run["status"] == "completed", run
        assert (await a.client.get("/v1/health")).json()["checks"]["mongodb"] == {"status": "ok"}
