"""Idempotency-Key on the routes that launch a run: execute by id and ad-hoc execute."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import ADMIN_KEY, REDIS_URL, Api, free_port, redis_available, serve_asgi
from tests.e2e.run_helpers import assert_error
from tests.e2e.test_sdk import sdk_kmeans_cluster

pytestmark = pytest.mark.e2e

KEY = "Idempotency-Key"


def keyed(api: Api, key: str, ns: str = "team-a") -> dict[str, str]:
    return api.h(ns) | {KEY: key}


async def runs_of(api: Api, cid: str, ns: str = "team-a") -> list[str]:
    r = await api.client.post(f"/v1/clusters/{cid}/executions/list", headers=api.h(ns), json={"limit": 100})
    assert r.status_code == 200, r.text
    return [x["run_id"] for x in r.json()["results"]]


async def cluster(api: Api, ns: str = "team-a") -> str:
    col, _ = await api.make_collection(ns=ns)
    return await api.make_cluster(col, ns=ns)


def run_id(r: Any) -> str:
    assert r.status_code == 200, r.text
    return str(r.json()["additional_data"]["run_id"])


async def test_replay_returns_the_same_run_and_starts_no_second(api: Api) -> None:
    cid = await cluster(api)
    url = f"/v1/clusters/{cid}/execute"
    first = await api.client.post(url, headers=keyed(api, "retry-1"))
    rid = run_id(first)
    assert "idempotent-replayed" not in first.headers
    await api.wait_run(cid, rid)
    # an omitted body, `{}` and the SDK's defaults are the same request
    for body in (None, {}, {"mode": "full", "assignment_threshold": 0.5}):
        again = await api.client.post(url, headers=keyed(api, "retry-1"), json=body)
        assert run_id(again) == rid
        assert again.headers["idempotent-replayed"] == "true"
        assert set(again.json()) == set(first.json())
        assert again.json()["task_id"] == first.json()["task_id"]
        assert again.json()["additional_data"]["cluster_id"] == cid
    assert await runs_of(api, cid) == [rid]
    # without a key every call is a new run
    assert run_id(await api.client.post(url, headers=api.h())) != rid
    assert len(await runs_of(api, cid)) == 2


async def test_same_key_with_another_request_is_409(api: Api) -> None:
    cid = await cluster(api)
    other = await api.make_cluster((await api.make_collection(name="other", prefix="o"))[0])
    rid = run_id(await api.client.post(f"/v1/clusters/{cid}/execute", headers=keyed(api, "k-409")))
    changed_body = await api.client.post(
        f"/v1/clusters/{cid}/execute", headers=keyed(api, "k-409"), json={"sample_size": 50}
    )
    err = assert_error(changed_body, 409, "conflict", "idempotency_key_reused")
    assert KEY in err["message"]
    changed_cluster = await api.client.post(f"/v1/clusters/{other}/execute", headers=keyed(api, "k-409"))
    assert_error(changed_cluster, 409, "conflict", "idempotency_key_reused")
    assert await runs_of(api, cid) == [rid]
    assert await runs_of(api, other) == []


async def test_keys_are_scoped_per_namespace(api: Api) -> None:
    a, b = await cluster(api, "team-a"), await cluster(api, "team-b")
    ra = run_id(await api.client.post(f"/v1/clusters/{a}/execute", headers=keyed(api, "shared", "team-a")))
    rb = run_id(await api.client.post(f"/v1/clusters/{b}/execute", headers=keyed(api, "shared", "team-b")))
    assert ra != rb
    assert await runs_of(api, a, "team-a") == [ra] and await runs_of(api, b, "team-b") == [rb]


@pytest.mark.parametrize(
    "value",
    ["", "x" * 256, "tab\there", b"caf\xc3\xa9"],
    ids=["empty", "too-long", "control-char", "non-ascii"],
)
async def test_malformed_key_is_400_naming_the_header(api: Api, value: str | bytes) -> None:
    cid = await cluster(api)
    headers: dict[str, Any] = dict(api.h())
    headers[KEY] = value
    r = await api.client.post(f"/v1/clusters/{cid}/execute", headers=headers)
    err = assert_error(r, 400, "bad_request", "invalid_idempotency_key")
    assert KEY in err["message"]
    assert await runs_of(api, cid) == []
    ok = await api.client.post(f"/v1/clusters/{cid}/execute", headers=keyed(api, "x" * 255))
    run_id(ok)


async def test_concurrent_identical_requests_start_one_run(api: Api) -> None:
    cid = await cluster(api)
    rs = await asyncio.gather(
        *(api.client.post(f"/v1/clusters/{cid}/execute", headers=keyed(api, "race")) for _ in range(5))
    )
    ids = {run_id(r) for r in rs}
    assert len(ids) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in rs) == 4
    assert await runs_of(api, cid) == list(ids)


@pytest.mark.redis
@pytest.mark.integration
async def test_concurrent_requests_enqueue_one_message(make_settings: Any) -> None:
    """On the real broker (no worker consuming): five racing requests leave one queued message."""
    if not redis_available():
        pytest.skip("needs Redis on 127.0.0.1:6379")
    queue = f"clusterd-idem-{uuid.uuid4().hex[:8]}"
    settings = make_settings(broker_url=REDIS_URL, queue_name=queue, embedded_worker=False)
    r = redis.Redis.from_url(REDIS_URL)
    try:
        async with serve_asgi(settings) as a:
            cid = await cluster(a)
            rs = await asyncio.gather(
                *(a.client.post(f"/v1/clusters/{cid}/execute", headers=keyed(a, "q")) for _ in range(5))
            )
            assert len({run_id(x) for x in rs}) == 1
            assert r.llen(queue) == 1
    finally:
        r.delete(queue)
        r.close()


@contextlib.contextmanager
def private_redis(port: int, workdir: Path) -> Iterator[None]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    proc = subprocess.Popen(  # noqa: S603
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    break
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)


@pytest.mark.integration
async def test_broker_down_releases_the_key_for_a_retry(make_settings: Any, tmp_path: Path) -> None:
    port = free_port()
    queue = "clusterd-idem"
    settings = make_settings(
        broker_url=f"redis://127.0.0.1:{port}/0", queue_name=queue, embedded_worker=False
    )
    async with serve_asgi(settings) as a:
        cid = await cluster(a)
        url = f"/v1/clusters/{cid}/execute"
        down = await a.client.post(url, headers=keyed(a, "after-outage"))
        assert_error(down, 503, "service_unavailable")
        failed_run = down.json()["error"]["details"]["run_id"]
        with private_redis(port, tmp_path):
            retry = await a.client.post(url, headers=keyed(a, "after-outage"))
            rid = run_id(retry)
            assert rid != failed_run and "idempotent-replayed" not in retry.headers
            replay = await a.client.post(url, headers=keyed(a, "after-outage"))
            assert run_id(replay) == rid and replay.headers["idempotent-replayed"] == "true"
            q = redis.Redis(host="127.0.0.1", port=port)
            assert q.llen(queue) == 1
            q.close()
        assert sorted(await runs_of(a, cid)) == sorted([failed_run, rid])


async def test_expired_key_may_start_a_new_run(make_settings: Any) -> None:
    async with serve_asgi(make_settings(idempotency_ttl_s=1)) as a:
        cid = await cluster(a)
        first = run_id(await a.client.post(f"/v1/clusters/{cid}/execute", headers=keyed(a, "short")))
        await asyncio.sleep(1.1)
        second = run_id(await a.client.post(f"/v1/clusters/{cid}/execute", headers=keyed(a, "short")))
        assert first != second


async def test_adhoc_execute_replays_the_same_run(api: Api) -> None:
    col, _ = await api.make_collection()
    config = {"algorithm": "kmeans", "algorithm_params": {"n_clusters": 3}}
    body = {"collection_ids": [col], "config": config | {"feature_vector": {"vector_name": "emb"}}}
    first = await api.client.post("/v1/clusters/execute", headers=keyed(api, "adhoc-1"), json=body)
    assert first.status_code == 200, first.text
    again = await api.client.post("/v1/clusters/execute", headers=keyed(api, "adhoc-1"), json=body)
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    for k in ("run_id", "cluster_id", "num_clusters", "num_documents"):
        assert again.json()[k] == first.json()[k]
    other = await api.client.post(
        "/v1/clusters/execute", headers=keyed(api, "adhoc-1"), json=body | {"sample_size": 10}
    )
    assert_error(other, 409, "conflict", "idempotency_key_reused")
    # the execute-by-id route is another request, even on the same hidden cluster
    by_id = await api.client.post(
        f"/v1/clusters/{first.json()['cluster_id']}/execute", headers=keyed(api, "adhoc-1")
    )
    assert_error(by_id, 409, "conflict", "idempotency_key_reused")


def test_sdk_passes_the_key_per_call(live_server: str) -> None:
    """The mixpeek SDK has no Idempotency-Key parameter; `_headers` carries it on one call."""
    import mixpeek
    from mixpeek.models.create_collection_request import CreateCollectionRequest

    cfg = mixpeek.Configuration(
        host=live_server, access_token=ADMIN_KEY, api_key={"NamespaceHeader": "sdk-idem"}
    )
    client = mixpeek.ApiClient(cfg)
    col = mixpeek.CollectionsApi(client).create_collection(
        CreateCollectionRequest.from_dict(
            {"collection_name": "idem-points", "source": {"type": "direct_upsert"}}
        )
    )
    clusters = mixpeek.ClustersApi(client)
    meta = sdk_kmeans_cluster(clusters, col.collection_id)
    first = clusters.execute_clustering_clusters(meta.cluster_id, _headers={KEY: "sdk-retry"})
    again = clusters.execute_clustering_clusters(meta.cluster_id, _headers={KEY: "sdk-retry"})
    other = clusters.execute_clustering_clusters(meta.cluster_id)
    assert first is not None and again is not None and other is not None
    assert again.additional_data["run_id"] == first.additional_data["run_id"]
    assert other.additional_data["run_id"] != first.additional_data["run_id"]
