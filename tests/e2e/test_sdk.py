"""The official mixpeek SDK (strict pydantic models) as the client against a live clusterd."""

from __future__ import annotations

import time
from typing import Any

import mixpeek
import pytest
from mixpeek.models.byo_upsert_request import BYOUpsertRequest
from mixpeek.models.create_cluster_request import CreateClusterRequest
from mixpeek.models.create_collection_request import CreateCollectionRequest
from mixpeek.models.patch_cluster_request import PatchClusterRequest

from tests.conftest import ADMIN_KEY, blobs

pytestmark = pytest.mark.e2e


def sdk(url: str, namespace: str = "sdk-ns") -> mixpeek.ApiClient:
    cfg = mixpeek.Configuration(host=url, access_token=ADMIN_KEY, api_key={"NamespaceHeader": namespace})
    return mixpeek.ApiClient(cfg)


def sdk_collection(client: mixpeek.ApiClient, name: str, X: Any, prefix: str = "p") -> str:
    """Create collection `name` through the SDK and upsert one document per row of `X` (ids
    `<prefix>000`…, vector `emb`) into namespace sdk-ns; returns the collection id."""
    col = mixpeek.CollectionsApi(client).create_collection(
        CreateCollectionRequest.from_dict({"collection_name": name, "source": {"type": "direct_upsert"}})
    )
    docs = [{"document_id": f"{prefix}{i:03d}", "vectors": {"emb": x.tolist()}} for i, x in enumerate(X)]
    mixpeek.BYODocumentsApi(client).upsert_documents_byo_namespaces(
        "sdk-ns", BYOUpsertRequest.from_dict({"collection_id": col.collection_id, "documents": docs})
    )
    return str(col.collection_id)


def sdk_kmeans_cluster(
    clusters: mixpeek.ClustersApi,
    collection_id: str,
    *,
    name: str | None = None,
    k: int | None = None,
    **extra: Any,
) -> Any:
    """Create a k-means cluster over `emb` through the SDK (k None: the SDK's own default params)."""
    vector_config: dict[str, Any] = {"clustering_method": "kmeans", "feature_uris": ["emb"]}
    if k is not None:
        vector_config["algorithm_params"] = {"n_clusters": k}
    body = {"collection_ids": [collection_id], "vector_config": vector_config, **extra}
    if name is not None:
        body["cluster_name"] = name
    return clusters.create_cluster(CreateClusterRequest.from_dict(body))


def test_sdk_create_execute_poll_get(live_server: str) -> None:
    client = sdk(live_server)
    col = mixpeek.CollectionsApi(client).create_collection(
        CreateCollectionRequest.from_dict(
            {"collection_name": "sdk-points", "source": {"type": "direct_upsert"}}
        )
    )
    assert col.collection_id and col.feature_extractor.feature_extractor_id == "direct_v1"
    X = blobs(n_per=30)
    docs = [
        {"document_id": f"p{i:03d}", "vectors": {"emb": x.tolist()}, "metadata": {"i": i}}
        for i, x in enumerate(X)
    ]
    up = mixpeek.BYODocumentsApi(client).upsert_documents_byo_namespaces(
        "sdk-ns", BYOUpsertRequest.from_dict({"collection_id": col.collection_id, "documents": docs})
    )
    assert up.inserted == len(X)
    count = mixpeek.CollectionDocumentsApi(client).count_documents(col.collection_id)
    assert count is not None

    clusters = mixpeek.ClustersApi(client)
    meta = sdk_kmeans_cluster(clusters, col.collection_id, name="sdk-cluster", k=3)
    assert meta.cluster_id and meta.status == "PENDING" and meta.cluster_type == "vector"
    assert meta.input_collections == [col.collection_id]
    assert clusters.get_cluster(meta.cluster_id).cluster_name == "sdk-cluster"
    assert clusters.get_cluster("sdk-cluster").cluster_id == meta.cluster_id  # name resolves too

    runs = mixpeek.ClusterExecutionsApi(client)
    assert runs.get_cluster_execution(meta.cluster_id) is None  # never run: JSON null
    task = clusters.execute_clustering_clusters(meta.cluster_id)
    assert task is not None and task.status == "PENDING"
    run_id = task.additional_data["run_id"]
    deadline = time.monotonic() + 60
    while True:
        latest = runs.get_cluster_execution(meta.cluster_id)
        assert latest is not None and latest.run_id == run_id
        if latest.status in ("completed", "failed"):
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert latest.status == "completed" and latest.num_clusters == 3 and latest.num_points == len(X)
    assert latest.metrics is not None and -1 <= latest.metrics.silhouette_score <= 1
    assert latest.centroids is not None and len(latest.centroids) == 3
    full = runs.get_cluster_execution_by_run(meta.cluster_id, run_id, include_vectors=True)
    assert full.centroids is not None and len(full.centroids[0].centroid_vector or []) == X.shape[1]
    listed = runs.list_cluster_executions(meta.cluster_id)
    assert listed.total_count == 1 and listed.results[0].run_id == run_id

    t = mixpeek.TasksApi(client).get_task(task.task_id)
    assert t.status == "COMPLETED"

    patched = clusters.patch_cluster(
        meta.cluster_id, PatchClusterRequest.from_dict({"description": "renamed"})
    )
    assert patched.description == "renamed" and patched.vector_config is not None

    page = clusters.list_clusters_get()
    assert page.total_count == 1 and page.results[0].status == "COMPLETED"
    assert page.results[0].num_clusters == 3
    page2 = clusters.list_clusters()
    assert page2.results[0].cluster_id == meta.cluster_id

    deleted = clusters.delete_cluster(meta.cluster_id)
    assert deleted is not None
    with pytest.raises(mixpeek.exceptions.NotFoundException) as exc:
        clusters.get_cluster(meta.cluster_id)
    assert exc.value.status == 404


def test_sdk_errors_parse_as_error_response(live_server: str) -> None:
    clusters = mixpeek.ClustersApi(sdk(live_server))
    with pytest.raises(mixpeek.exceptions.ApiException) as exc:
        sdk_kmeans_cluster(clusters, "nope")
    assert exc.value.status == 404
    assert exc.value.data is not None  # ErrorResponse parsed by the SDK's own model
