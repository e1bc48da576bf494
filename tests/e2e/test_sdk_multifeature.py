"""The official SDK against a live server: a weighted multi-feature cluster, its run, its echoes."""

from __future__ import annotations

import time

import mixpeek
import numpy as np
import pytest
from mixpeek.models.byo_upsert_request import BYOUpsertRequest
from mixpeek.models.create_cluster_request import CreateClusterRequest
from mixpeek.models.create_collection_request import CreateCollectionRequest
from mixpeek.models.patch_cluster_request import PatchClusterRequest

from tests.e2e.test_sdk import sdk

pytestmark = pytest.mark.e2e


def test_sdk_weighted_multi_feature_cluster(live_server: str) -> None:
    client = sdk(live_server, "sdk-multi")
    col = mixpeek.CollectionsApi(client).create_collection(
        CreateCollectionRequest.from_dict({"collection_name": "sdk-two", "source": {"type": "direct_upsert"}})
    )
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(3), 20)
    signal = np.eye(6)[truth] * 10 + rng.normal(0, 0.3, (60, 6))
    noise = rng.normal(size=(60, 4))
    docs = [
        {"document_id": f"p{i:03d}", "vectors": {"text": noise[i].tolist(), "image": signal[i].tolist()}}
        for i in range(60)
    ]
    mixpeek.BYODocumentsApi(client).upsert_documents_byo_namespaces(
        "sdk-multi", BYOUpsertRequest.from_dict({"collection_id": col.collection_id, "documents": docs})
    )
    clusters = mixpeek.ClustersApi(client)
    body = {
        "collection_ids": [col.collection_id],
        "vector_config": {
            "clustering_method": "kmeans",
            "feature_uris": ["mixpeek://direct@v1/text", "mixpeek://direct@v1/image"],
            "algorithm_params": {"n_clusters": 3},
            "multi_feature_strategy": "weighted",
            "weight_learning_config": {"metric": "calinski_harabasz"},  # the SDK fills bayesian, 20, …
            "preprocessing_steps": [{"method": "none"}],
        },
    }
    meta = clusters.create_cluster(CreateClusterRequest.from_dict(body))
    assert meta.multi_feature_strategy == "weighted" and len(meta.feature_uris or []) == 2
    assert meta.preprocessing_steps == [{"method": "none"}]
    task = clusters.execute_clustering_clusters(meta.cluster_id)
    runs = mixpeek.ClusterExecutionsApi(client)
    deadline = time.monotonic() + 60
    while True:
        run = runs.get_cluster_execution(meta.cluster_id)
        assert run is not None and run.run_id == task.additional_data["run_id"]
        if run.status in ("completed", "failed"):
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert run.status == "completed" and run.num_clusters == 3 and run.num_points == 60
    got = clusters.get_cluster(meta.cluster_id)
    weights = got.learned_weights or {}
    assert set(weights) == {"mixpeek://direct@v1/text", "mixpeek://direct@v1/image"}
    assert weights["mixpeek://direct@v1/image"] >= 0.8
    assert got.learning_quality_score is not None and got.learning_quality_score > 0
    patched = clusters.patch_cluster(meta.cluster_id, PatchClusterRequest.from_dict({"description": "x"}))
    vc = patched.vector_config
    assert vc is not None and vc.multi_feature_strategy == "weighted"
    assert vc.weight_learning_config is not None and vc.weight_learning_config.metric == "calinski_harabasz"
    assert vc.weight_learning_config.method == "bayesian" and vc.weight_learning_config.max_iterations == 20
