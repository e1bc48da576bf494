"""Admission limits over HTTP: a run over its algorithm's cap is refused at submit time (422
`too_many_points`) on every route that starts one; under it the run is accepted and samples."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import mixpeek
import numpy as np
import pytest
from mixpeek.models.execute_cluster_by_id_request import ExecuteClusterByIdRequest

from core import admission
from tests.conftest import ADMIN_KEY, Api, blobs, free_port, serve_asgi, serve_uvicorn
from tests.e2e.run_helpers import assert_error, get_run, wait_status, worker
from tests.e2e.test_patterns import with_patterns
from tests.e2e.test_sdk import sdk_collection, sdk_kmeans_cluster

pytestmark = pytest.mark.e2e

LIMIT = 50  # k-means' limit in these tests; every collection below holds 120 points (3 × 40)


@pytest.fixture
def small_kmeans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        admission.LIMITS, "kmeans", dataclasses.replace(admission.LIMITS["kmeans"], points=LIMIT)
    )


def refused(r: Any, *, points: int = 120, field: str = "sample_size") -> dict[str, Any]:
    err = assert_error(r, 422, "validation_error", "too_many_points")
    assert f"set {field} ≤ {LIMIT}" in err["message"] and f"at most {LIMIT:,}" in err["message"]
    assert f"would cluster {points:,} points" in err["message"] and "kmeans" in err["message"]
    details = err["details"]
    assert details["max_points"] == LIMIT and details["points"] == points and details["bound"] == "points"
    assert details["field"] == field and details["algorithm"] == "kmeans"
    return err


async def runs_of(api: Api, cluster_id: str) -> list[dict[str, Any]]:
    r = await api.client.post(f"/v1/clusters/{cluster_id}/executions/list", headers=api.h(), json={})
    assert r.status_code == 200, r.text
    return list(r.json()["results"])


async def test_execute_over_the_limit_is_422_and_queues_nothing(api: Api, small_kmeans: None) -> None:
    col, _ = await api.make_collection()
    cid = await api.make_cluster(col)  # a definition is not a run: never refused
    r = await api.client.post(f"/v1/clusters/{cid}/execute", headers=api.h())
    refused(r)
    assert await runs_of(api, cid) == []
    cluster = (await api.client.get(f"/v1/clusters/{cid}", headers=api.h())).json()
    assert cluster["status"] == "PENDING"
    # a sample within the limit is accepted, and the run samples
    r = await api.client.post(f"/v1/clusters/{cid}/execute", headers=api.h(), json={"sample_size": LIMIT})
    assert r.status_code == 200, r.text
    run = await api.wait_run(cid, r.json()["additional_data"]["run_id"])
    assert run["status"] == "completed", run
    assert run["num_points"] == LIMIT
    assert run["sampling"] == {"from": 120, "to": LIMIT, "reason": "sample_size", "cap": LIMIT, "seed": 42}
    # one over is refused again, naming the sample that fits
    r = await api.client.post(f"/v1/clusters/{cid}/execute", headers=api.h(), json={"sample_size": LIMIT + 1})
    refused(r, points=LIMIT + 1)


async def test_the_definition_sample_size_and_filters_decide_the_points(api: Api, small_kmeans: None) -> None:
    col, _ = await api.make_collection()
    body = {
        "collection_ids": [col],
        "vector_config": {
            "clustering_method": "kmeans",
            "feature_uris": ["emb"],
            "algorithm_params": {"n_clusters": 3},
            "sample_size": 40,
        },
    }
    r = await api.client.post("/v1/clusters", json=body, headers=api.h())
    assert r.status_code == 200, r.text
    run = await api.execute(r.json()["cluster_id"])
    assert run["status"] == "completed" and run["num_points"] == 40

    # the filters leave 45 documents: admitted, and nothing is sampled
    few = {"field": "metadata.i", "operator": "lt", "value": 45}
    cid = await api.make_cluster(col, filters=few)
    run = await api.execute(cid)
    assert run["status"] == "completed" and run["num_points"] == 45 and "sampling" not in run
    # a one-run override with more documents is counted too
    r = await api.client.post(f"/v1/clusters/{cid}/execute", headers=api.h(), json={"filters": {}})
    refused(r)


async def test_documents_without_the_vector_are_not_counted(api: Api, small_kmeans: None) -> None:
    col, _ = await api.make_collection(X=blobs(n_per=15))  # 45 with the vector
    await api.upsert(col, [{"document_id": f"m{i:03d}", "metadata": {"i": i}} for i in range(100)])
    cid = await api.make_cluster(col)
    run = await api.execute(cid)
    assert run["status"] == "completed" and run["num_points"] == 45 and run["source_documents"] == 145


async def test_no_count_while_the_store_holds_no_more_than_the_limit(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under the limit by the store's size alone, execute admits without counting documents;
    once the store holds more, it counts (and refuses a scope over the limit)."""
    from core.store import documents

    monkeypatch.setitem(
        admission.LIMITS, "kmeans", dataclasses.replace(admission.LIMITS["kmeans"], points=130)
    )
    col, X = await api.make_collection()  # 120 documents: the whole store
    cid = await api.make_cluster(col)
    counted: list[int] = []
    real = documents.count_matching

    async def counting(*a: Any, **k: Any) -> int:
        counted.append(n := await real(*a, **k))
        return n

    monkeypatch.setattr(documents, "count_matching", counting)
    r = await api.client.post(f"/v1/clusters/{cid}/execute", headers=api.h())
    assert r.status_code == 200, r.text
    await api.wait_run(cid, r.json()["additional_data"]["run_id"])
    assert counted == []  # (the embedded worker counts what it pulls: documents.embedded_scope)
    await api.make_collection("more", X=blobs(n_per=5))  # 15 more: 135 stored
    counted.clear()
    r = await api.client.post(f"/v1/clusters/{cid}/execute", headers=api.h())
    assert r.status_code == 200, r.text
    await api.wait_run(cid, r.json()["additional_data"]["run_id"])
    assert counted == [120]  # the API counted this time
    extra = [{"document_id": f"x{i:03d}", "vectors": {"emb": X[i].tolist()}} for i in range(11)]
    await api.upsert(col, extra)
    r = await api.client.post(f"/v1/clusters/{cid}/execute", headers=api.h())
    assert_error(r, 422, "validation_error", "too_many_points")


async def test_documents_written_after_submit_are_sampled_to_the_cap(
    make_settings: Any, small_kmeans: None
) -> None:
    async with serve_asgi(make_settings(embedded_worker=False)) as api:
        col, _ = await api.make_collection(X=blobs(n_per=15))  # 45: admitted
        cid = await api.make_cluster(col)
        r = await api.client.post(f"/v1/clusters/{cid}/execute", headers=api.h())
        assert r.status_code == 200, r.text
        rid = r.json()["additional_data"]["run_id"]
        extra = blobs(n_per=10, seed=1)
        await api.upsert(
            col, [{"document_id": f"z{i:03d}", "vectors": {"emb": x.tolist()}} for i, x in enumerate(extra)]
        )
        async with worker(api):
            run = await wait_status(api, cid, rid, {"completed", "failed"})
        assert run["status"] == "completed", run
        assert run["num_points"] == LIMIT and run["vectors_retrieved"] == 75
        assert run["sampling"] == {
            "from": 75,
            "to": LIMIT,
            "reason": "algorithm_cap",
            "cap": LIMIT,
            "seed": 42,
        }
        assert (await get_run(api, cid, rid))["num_points"] == LIMIT


def adhoc_body(col: str, **extra: Any) -> dict[str, Any]:
    config = {
        "algorithm": "kmeans",
        "algorithm_params": {"n_clusters": 3},
        "feature_vector": {"vector_name": "emb"},
    }
    return {"collection_ids": [col], "config": config, **extra}


async def test_adhoc_over_the_limit_is_422_and_stores_nothing(api: Api, small_kmeans: None) -> None:
    col, _ = await api.make_collection()
    db = api.app.state.services.db
    before = await db.clusters.count_documents({})
    headers = api.h() | {"Idempotency-Key": "adhoc-too-many"}
    r = await api.client.post("/v1/clusters/execute", headers=headers, json=adhoc_body(col))
    refused(r)
    assert await db.clusters.count_documents({}) == before  # no hidden definition left behind
    assert await db.cluster_executions.count_documents({}) == 0
    # the refusal released the key: the same request is refused again, not 409
    r = await api.client.post("/v1/clusters/execute", headers=headers, json=adhoc_body(col))
    refused(r)
    r = await api.client.post(
        "/v1/clusters/execute", headers=api.h(), json=adhoc_body(col, sample_size=LIMIT)
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "completed" and r.json()["num_documents"] == LIMIT


async def test_the_scale_setting_moves_every_limit(make_settings: Any) -> None:
    # 1,000,000 × 0.0001 = 100 k-means points; agglomerative 30,000 × 0.0001 = 3
    async with serve_asgi(make_settings(admission_scale=0.0001)) as api:
        col, _ = await api.make_collection()
        cid = await api.make_cluster(col)
        err = assert_error(
            await api.client.post(f"/v1/clusters/{cid}/execute", headers=api.h()),
            422,
            "validation_error",
            "too_many_points",
        )
        assert "at most 100 points" in err["message"] and err["details"]["admission_scale"] == 0.0001
        agg = await api.make_cluster(col, method="agglomerative", params={"n_clusters": 3})
        r = await api.client.post(f"/v1/clusters/{agg}/execute", headers=api.h(), json={"sample_size": 4})
        err = assert_error(r, 422, "validation_error", "too_many_points")
        assert (
            "agglomerative accepts at most 3 points" in err["message"]
            and "or use kmeans / hdbscan" in err["message"]
        )
        r = await api.client.post(f"/v1/clusters/{cid}/execute", headers=api.h(), json={"sample_size": 100})
        assert r.status_code == 200, r.text


async def test_the_memory_bound(make_settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # 1,100 MB less the 1,024 MB reserve leaves 76 MB: at 8 dims × 4 bytes × 2**20 per point, 2 points
    heavy = dataclasses.replace(admission.LIMITS["kmeans"], memory_factor=float(2**20))
    monkeypatch.setitem(admission.LIMITS, "kmeans", heavy)
    async with serve_asgi(make_settings(worker_memory_limit_mb=1100)) as api:
        col, _ = await api.make_collection()
        cid = await api.make_cluster(col)
        r = await api.client.post(f"/v1/clusters/{cid}/execute", headers=api.h())
        err = assert_error(r, 422, "validation_error", "too_many_points")
        assert (
            "1,100 MB (CLUSTERD_WORKER_MEMORY_LIMIT_MB)" in err["message"]
            and "set sample_size ≤ 2" in err["message"]
        )
        d = err["details"]
        assert d["bound"] == "memory" and d["max_points"] == 2 and d["memory_limit_mb"] == 1100
        assert d["dimensions"] == 8 and d["estimated_mb"] > 1100
    # without the memory limit only the points bound applies
    async with serve_asgi(make_settings()) as api:
        col, _ = await api.make_collection()
        run = await api.execute(await api.make_cluster(col))
        assert run["status"] == "completed" and run["num_points"] == 120


@pytest.fixture
async def papi(make_settings: Any) -> AsyncIterator[Api]:
    async with serve_asgi(make_settings(embedded_worker=False)) as a:
        yield with_patterns(a)


async def test_patterns_over_the_limit_is_422_in_its_own_shape(
    papi: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    for method in ("kmeans", "dbscan"):
        monkeypatch.setitem(
            admission.LIMITS, method, dataclasses.replace(admission.LIMITS[method], points=50)
        )
    data = np.random.default_rng(0).normal(size=(60, 2)).tolist()
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    for method in ("kmeans", "dbscan"):
        r = await papi.client.post("/patterns/cluster", headers=auth, json={"data": data, "method": method})
        assert r.status_code == 422, r.text
        body = r.json()
        assert set(body) == {"error", "message"} and body["error"] == "too_many_points"
        assert f"{method} accepts at most 50 points" in body["message"]
        assert "send at most 50 rows of data" in body["message"]
    r = await papi.client.post("/patterns/cluster", headers=auth, json={"data": data[:50], "n_clusters": 2})
    assert r.status_code == 200 and r.json()["sample_size"] == 50


def test_the_sdk_reads_the_refusal(make_settings: Any) -> None:
    settings = make_settings(port=free_port(), admission_scale=0.0001)  # k-means: 100 points
    with serve_uvicorn(settings) as (url, _):
        cfg = mixpeek.Configuration(host=url, access_token=ADMIN_KEY, api_key={"NamespaceHeader": "sdk-ns"})
        client = mixpeek.ApiClient(cfg)
        collection_id = sdk_collection(client, "sdk-admit", blobs())
        clusters = mixpeek.ClustersApi(client)
        meta = sdk_kmeans_cluster(clusters, collection_id, k=3)
        with pytest.raises(mixpeek.exceptions.UnprocessableEntityException) as exc:
            clusters.execute_clustering_clusters(meta.cluster_id)
        assert exc.value.status == 422
        data = exc.value.data  # the SDK's own ErrorResponse model
        assert data is not None and data.error.code == "too_many_points"
        assert "at most 100 points" in data.error.message and "sample_size ≤ 100" in data.error.message
        task = clusters.execute_clustering_clusters(
            meta.cluster_id, ExecuteClusterByIdRequest.from_dict({"sample_size": 100})
        )
        assert task is not None and task.status == "PENDING"
