"""The mixpeek SDK's get_cluster_groups (strict ClusterGroupsResponse) and get_cluster_visualization
against a live clusterd."""

from __future__ import annotations

import time

import mixpeek
import pytest
from mixpeek.models.execute_cluster_by_id_request import ExecuteClusterByIdRequest
from mixpeek.models.patch_execution_labels_request import PatchExecutionLabelsRequest

from tests.conftest import blobs
from tests.e2e.test_sdk import sdk, sdk_collection, sdk_kmeans_cluster

pytestmark = pytest.mark.e2e


def wait(runs: mixpeek.ClusterExecutionsApi, cluster_id: str, run_id: str) -> mixpeek.ClusterExecutionResult:
    deadline = time.monotonic() + 60
    while True:
        run = runs.get_cluster_execution_by_run(cluster_id, run_id)
        if run.status in ("completed", "failed", "canceled"):
            return run
        assert time.monotonic() < deadline, run.status
        time.sleep(0.05)


def test_sdk_groups_and_visualization(live_server: str) -> None:
    client = sdk(live_server)
    X = blobs(n_per=25)
    collection_id = sdk_collection(client, "sdk-views", X, prefix="v")
    clusters = mixpeek.ClustersApi(client)
    runs = mixpeek.ClusterExecutionsApi(client)
    meta = sdk_kmeans_cluster(clusters, collection_id, name="sdk-views", k=3)
    with pytest.raises(mixpeek.exceptions.NotFoundException) as exc:
        clusters.get_cluster_groups(meta.cluster_id)
    assert exc.value.status == 404 and exc.value.data is not None  # ErrorResponse parsed

    task = clusters.execute_clustering_clusters(
        meta.cluster_id, ExecuteClusterByIdRequest(vis_n_components=3, layout_stability="align")
    )
    first = wait(runs, meta.cluster_id, task.additional_data["run_id"])
    assert first.status == "completed" and first.layout_stability_applied == "none"
    assert first.layout_stability_reason and "no previous" in first.layout_stability_reason
    task = clusters.execute_clustering_clusters(
        meta.cluster_id, ExecuteClusterByIdRequest(vis_n_components=3, layout_stability="align")
    )
    run = wait(runs, meta.cluster_id, task.additional_data["run_id"])
    assert run.layout_stability_applied == "aligned" and run.layout_stability_reason is None
    runs.patch_execution_labels_clusters_id_run(
        meta.cluster_id, run.run_id, PatchExecutionLabelsRequest(labels={"cl_2": "Gamma"})
    )

    groups = clusters.get_cluster_groups(meta.cluster_id)
    assert isinstance(groups, mixpeek.ClusterGroupsResponse)
    assert groups.cluster_id == meta.cluster_id and groups.run_id == run.run_id
    assert groups.total_groups == 3 and groups.total_documents == len(X)
    assert [g.cluster_id for g in groups.groups] == ["cl_0", "cl_1", "cl_2"]
    assert [g.member_count for g in groups.groups] == [25, 25, 25]
    assert groups.groups[2].label == "Gamma" and groups.member_counts_stale is False

    viz = clusters.get_cluster_visualization(meta.cluster_id, max_points=30)
    assert viz["run_id"] == run.run_id and viz["n_components"] == 3
    assert len(viz["points"]) == 30 and {p["cluster_id"] for p in viz["points"]} == {"cl_0", "cl_1", "cl_2"}
    assert all({"x", "y", "z"} <= set(p) for p in viz["points"])
    assert [c["cluster_label"] for c in viz["centroids"]][2] == "Gamma"
    compact = clusters.get_cluster_visualization(meta.cluster_id, compact=True, run_id=first.run_id)
    assert compact["run_id"] == first.run_id and len(compact["points"]["document_ids"]) == len(X)
    only = clusters.get_cluster_visualization(meta.cluster_id, centroids_only=True)
    assert only["points"] == [] and len(only["centroids"]) == 3
    with pytest.raises(mixpeek.exceptions.NotFoundException):
        clusters.get_cluster_visualization(meta.cluster_id, run_id="run_0000000000000000")
