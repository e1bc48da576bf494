"""Ingest -> cluster -> execute -> poll -> results, over HTTP through a real worker."""

from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import adjusted_rand_score

from tests.conftest import Api

pytestmark = pytest.mark.e2e


async def test_embedded_end_to_end(api: Api) -> None:
    col, X = await api.make_collection()
    cid = await api.make_cluster(col)
    r = await api.client.post(f"/v1/clusters/{cid}/execute", headers=api.h())
    assert r.status_code == 200
    task = r.json()
    assert task["status"] == "PENDING" and task["task_type"] == "engine_cluster_build"
    run_id = task["additional_data"]["run_id"]
    run = await api.wait_run(cid, run_id)
    assert run["status"] == "completed", run
    assert run["num_clusters"] == 3 and run["num_points"] == len(X)
    assert sum(c["num_members"] for c in run["centroids"]) == len(X)
    assert -1 <= run["metrics"]["silhouette_score"] <= 1
    assert run["progress"] == {"stage": "completed", "fraction": 1.0}
    # cluster summary mirrors the run
    c = (await api.client.get(f"/v1/clusters/{cid}", headers=api.h())).json()
    assert c["status"] == "COMPLETED" and c["num_clusters"] == 3 and c["num_documents_clustered"] == len(X)
    # task endpoint mirrors the run
    t = await api.client.get(
        f"/v1/tasks/{task['task_id']}", headers={"Authorization": api.h()["Authorization"]}
    )
    assert t.json()["status"] == "COMPLETED"
    # members.parquet in the local artifact store agrees with the run
    store = api.app.state.services.artifacts
    table = pq.read_table(io.BytesIO(store.get_bytes(run["members_key"])))
    assert table.num_rows == len(X)
    members = table.to_pydict()
    truth = np.repeat(np.arange(3), len(X) // 3)
    order = np.argsort(members["document_id"])
    labels = np.asarray(members["cluster_id"], dtype=object)[order]
    assert adjusted_rand_score(truth, labels) == 1.0
    counts = {cc["cluster_id"]: cc["num_members"] for cc in run["centroids"]}
    assert {k: members["cluster_id"].count(k) for k in counts} == counts
    # vectors only on request
    assert "centroid_vector" not in run["centroids"][0]
    rv = await api.client.get(f"/v1/clusters/{cid}/executions/{run_id}?include_vectors=true", headers=api.h())
    assert len(rv.json()["centroids"][0]["centroid_vector"]) == X.shape[1]


async def test_latest_execution_is_null_before_any_run(api: Api) -> None:
    col, _ = await api.make_collection()
    cid = await api.make_cluster(col)
    r = await api.client.get(f"/v1/clusters/{cid}/executions", headers=api.h())
    assert r.status_code == 200 and r.json() is None


async def test_runs_of_a_cluster_are_listed_newest_first(api: Api) -> None:
    col, _ = await api.make_collection()
    cid = await api.make_cluster(col)
    ids = []
    for _ in range(2):
        r = await api.client.post(f"/v1/clusters/{cid}/execute", headers=api.h())
        ids.append(r.json()["additional_data"]["run_id"])
        await api.wait_run(cid, ids[-1])
    r = await api.client.post(f"/v1/clusters/{cid}/executions/list", headers=api.h())
    body = r.json()
    assert [x["run_id"] for x in body["results"]] == ids[::-1]
    assert body["total_count"] == 2 and body["stats"]["executions_by_status"] == {"completed": 2}
    latest = (await api.client.get(f"/v1/clusters/{cid}/executions", headers=api.h())).json()
    assert latest["run_id"] == ids[-1]


async def test_adhoc_execute_waits_and_returns_the_result(api: Api) -> None:
    col, X = await api.make_collection()
    body = {
        "collection_ids": [col],
        "include_members": True,
        "save_artifacts": True,
        "config": {
            "algorithm": "kmeans",
            "algorithm_params": {"n_clusters": 3},
            "feature_vector": {"vector_name": "emb"},
        },
    }
    r = await api.client.post("/v1/clusters/execute", json=body, headers=api.h())
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["success"] and out["num_clusters"] == 3 and out["num_documents"] == len(X)
    assert {"silhouette_score", "davies_bouldin_score", "calinski_harabasz_score"} <= set(out["metrics"])
    assert len(out["members"]) == len(X) and out["parquet_path"] and out["members_key"]
    assert all(len(c["centroid_vector"]) == X.shape[1] for c in out["centroids"])
    # it is a real run: pollable, and hidden from the cluster list
    run = (await api.client.get(f"/v1/clusters/{out['cluster_id']}/executions", headers=api.h())).json()
    assert run["run_id"] == out["run_id"] and run["status"] == "completed"
    listed = (await api.client.get("/v1/clusters", headers=api.h())).json()
    assert out["cluster_id"] not in [c["cluster_id"] for c in listed["results"]]


async def test_adhoc_respond_async_gives_202_with_location(api: Api) -> None:
    col, _ = await api.make_collection()
    body = {
        "collection_ids": [col],
        "config": {
            "algorithm": "kmeans",
            "algorithm_params": {"n_clusters": 3},
            "feature_vector": {"vector_name": "emb"},
        },
    }
    r = await api.client.post(
        "/v1/clusters/execute", json=body, headers={**api.h(), "Prefer": "respond-async"}
    )
    assert r.status_code == 202
    handle = r.json()
    assert r.headers["location"] == f"/v1/clusters/{handle['cluster_id']}/executions/{handle['run_id']}"
    run = await api.wait_run(handle["cluster_id"], handle["run_id"])
    assert run["status"] == "completed"


async def test_run_on_unusable_data_fails_with_validation_category(api: Api) -> None:
    col, _ = await api.make_collection(X=np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32))
    cid = await api.make_cluster(col, k=10)  # more clusters than points
    run = await api.execute(cid)
    assert run["status"] == "failed" and run["failure_category"] == "validation"
    assert "n_clusters" in run["error_message"] and run["error_traceback"]
    c = (await api.client.get(f"/v1/clusters/{cid}", headers=api.h())).json()
    assert c["status"] == "FAILED" and c["failure_category"] == "validation"
    adhoc = await api.client.post(
        "/v1/clusters/execute",
        headers=api.h(),
        json={
            "collection_ids": [col],
            "config": {
                "algorithm": "kmeans",
                "algorithm_params": {"n_clusters": 10},
                "feature_vector": {"vector_name": "emb"},
            },
        },
    )
    assert adhoc.status_code == 422 and adhoc.json()["error"]["details"]["run_id"].startswith("run_")


async def test_delete_cluster_cascades_to_runs_and_artifacts(api: Api) -> None:
    col, _ = await api.make_collection()
    cid = await api.make_cluster(col)
    run = await api.execute(cid)
    store = api.app.state.services.artifacts
    assert store.exists(run["members_key"])
    d = await api.client.delete(f"/v1/clusters/{cid}", headers=api.h())
    assert d.status_code == 200 and d.json()["deleted_executions"] == 1
    assert not store.exists(run["members_key"])
    assert (await api.client.get(f"/v1/clusters/{cid}", headers=api.h())).status_code == 404
    assert (
        await api.client.get(f"/v1/clusters/{cid}/executions/{run['run_id']}", headers=api.h())
    ).status_code == 404
