"""The mixpeek SDK's run management and cluster analytics calls against a live clusterd."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from typing import Any

import httpx
import mixpeek
import pyarrow.parquet as pq
import pytest
from mixpeek.models.patch_execution_labels_request import PatchExecutionLabelsRequest
from mixpeek.models.patch_execution_run_name_request import PatchExecutionRunNameRequest

from api.main import embedded_worker
from tests.conftest import ADMIN_KEY, blobs, free_port, serve_uvicorn
from tests.e2e.test_sdk import sdk, sdk_collection, sdk_kmeans_cluster

pytestmark = pytest.mark.e2e


@pytest.fixture
def idle_server(make_settings: Any) -> Iterator[tuple[str, Any]]:
    """uvicorn on loopback without a worker (runs stay pending until the test starts one)."""
    with serve_uvicorn(make_settings(port=free_port(), embedded_worker=False)) as served:
        yield served


def wait(runs: mixpeek.ClusterExecutionsApi, cluster_id: str, run_id: str) -> Any:
    deadline = time.monotonic() + 60
    while True:
        run = runs.get_cluster_execution_by_run(cluster_id, run_id)
        if run.status in ("completed", "failed", "canceled"):
            return run
        assert time.monotonic() < deadline, run.status
        time.sleep(0.05)


def test_sdk_cancel_labels_name_export_and_analytics(idle_server: tuple[str, Any]) -> None:
    url, app = idle_server
    client = sdk(url)
    X = blobs(n_per=20)
    collection_id = sdk_collection(client, "sdk-points", X)
    clusters = mixpeek.ClustersApi(client)
    meta = sdk_kmeans_cluster(clusters, collection_id, name="sdk-runs", k=3)
    runs = mixpeek.ClusterExecutionsApi(client)

    # cancel a pending run (no worker yet)
    pending = clusters.execute_clustering_clusters(meta.cluster_id).additional_data["run_id"]
    out = runs.cancel_execution_clusters_id_run(meta.cluster_id, pending)
    assert out == {"success": True, "run_id": pending, "status": "canceled"}
    assert runs.get_cluster_execution_by_run(meta.cluster_id, pending).status == "canceled"
    with pytest.raises(mixpeek.exceptions.BadRequestException) as exc:
        runs.cancel_execution_clusters_id_run(meta.cluster_id, pending)
    assert exc.value.status == 400 and exc.value.data is not None  # ErrorResponse parsed

    with embedded_worker(app.state.services.celery):
        run_id = clusters.execute_clustering_clusters(meta.cluster_id).additional_data["run_id"]
        done = wait(runs, meta.cluster_id, run_id)
        # a run that fails validation: more clusters than points
        other = sdk_kmeans_cluster(clusters, collection_id, name="sdk-fails", k=500)
        bad = clusters.execute_clustering_clusters(other.cluster_id).additional_data["run_id"]
        assert wait(runs, other.cluster_id, bad).status == "failed"
    assert done.status == "completed"

    labels = runs.patch_execution_labels_clusters_id_run(
        meta.cluster_id, run_id, PatchExecutionLabelsRequest(labels={"cl_0": " Alpha ", "cl_1": "Beta"})
    )
    assert labels.cluster_id == meta.cluster_id and labels.run_id == run_id
    assert labels.label_overrides == {"cl_0": "Alpha", "cl_1": "Beta"}
    labels = runs.patch_execution_labels_clusters_id_run(
        meta.cluster_id, run_id, PatchExecutionLabelsRequest(labels={"cl_1": ""})
    )
    assert labels.label_overrides == {"cl_0": "Alpha"}
    named = runs.patch_execution_run_name_clusters(
        meta.cluster_id, run_id, PatchExecutionRunNameRequest(run_name="  SDK run ")
    )
    assert named.run_id == run_id and named.run_name == "SDK run"
    got = runs.get_cluster_execution_by_run(meta.cluster_id, run_id)  # strict model still parses
    assert got.run_name == "SDK run" and got.label_overrides == {"cl_0": "Alpha"}
    assert {c.cluster_id: c.label for c in got.centroids or []}["cl_0"] == "Alpha"
    cleared = runs.patch_execution_run_name_clusters(
        meta.cluster_id, run_id, PatchExecutionRunNameRequest(run_name="")
    )
    assert cleared.run_name is None
    assert runs.get_cluster_execution_by_run(meta.cluster_id, run_id).run_name is None
    with pytest.raises(mixpeek.exceptions.UnprocessableEntityException) as exc422:
        runs.patch_execution_run_name_clusters(
            meta.cluster_id, run_id, PatchExecutionRunNameRequest(run_name="x" * 121)
        )
    assert exc422.value.data is not None

    exported = runs.export_cluster_execution_id_run(meta.cluster_id, run_id)
    assert exported["format"] == "parquet" and exported["run_id"] == run_id
    f = httpx.get(
        exported["download_url"], headers={"Authorization": f"Bearer {ADMIN_KEY}", "X-Namespace": "sdk-ns"}
    )
    assert f.status_code == 200
    table = pq.read_table(io.BytesIO(f.content))
    assert table.num_rows == len(X) and "Alpha" in table.column("cluster_label").to_pylist()
    text = runs.export_cluster_execution_id_run(meta.cluster_id, run_id, format="csv", cluster_label="Alpha")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows and {r["cluster_id"] for r in rows} == {"cl_0"}

    analytics = mixpeek.AnalyticsClustersApi(client)
    history = analytics.get_execution_history_analytics_clusters(meta.cluster_id, hours=24, limit=10)
    assert history.cluster_id == meta.cluster_id
    assert [m.execution_id for m in history.results] == [run_id, pending]
    assert history.results[0].status == "completed" and history.results[0].num_documents == len(X)
    assert history.results[1].status == "canceled" and history.results[1].duration_seconds == 0
    assert history.summary is not None and history.summary["total_executions"] == 2
    assert history.time_range.start < history.time_range.end
    failures = analytics.get_failure_analysis_analytics_clusters(meta.cluster_id, hours=24)
    assert failures.cluster_id == meta.cluster_id and failures.total_failures == 0 and failures.failures == []
    failures = analytics.get_failure_analysis_analytics_clusters("sdk-fails")
    assert failures.cluster_id == other.cluster_id and failures.total_failures == 1
    assert failures.failures[0].execution_id == bad and failures.failures[0].error_type == "validation"
    assert failures.failures[0].error_message and failures.failures[0].timestamp.tzinfo is not None
    assert analytics.get_execution_history_analytics_clusters("sdk-fails").results[0].status == "failed"
