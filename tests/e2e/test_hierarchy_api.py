"""Hierarchical vector clustering over HTTP: the API, the embedded worker, artifacts, export, SDK."""

from __future__ import annotations

import csv
import io
import time
from collections import Counter
from typing import Any

import mixpeek
import numpy as np
import pytest
from mixpeek.models.cluster_execution_result import ClusterExecutionResult
from mixpeek.models.cluster_metadata import ClusterMetadata
from mixpeek.models.create_cluster_request import CreateClusterRequest

from core import artifacts
from tests.conftest import Api
from tests.e2e.run_helpers import assert_error
from tests.e2e.test_sdk import sdk, sdk_collection
from tests.unit.test_hierarchy_split import nested

pytestmark = pytest.mark.e2e


async def hierarchical_cluster(
    api: Api, collection: str, method: str, params: dict[str, Any], **vector_config: Any
) -> dict[str, Any]:
    return await api.create_cluster(
        collection, method=method, params=params, vector_config={"hierarchical": True, **vector_config}
    )


def check_run_shape(run: dict[str, Any], top: int, leaves: int) -> dict[str, dict[str, Any]]:
    """num_clusters = centroids = parents + leaves; Σ leaves + noise = num_points; the relationships
    are the centroids' parent links. Returns the centroids by id."""
    assert run["status"] == "completed", run
    cents = {c["cluster_id"]: c for c in run["centroids"]}
    assert run["num_clusters"] == len(run["centroids"]) == len(cents) == top + leaves
    rels = run["hierarchy_relationships"]
    assert rels == [
        {"parent_cluster_id": c["parent_cluster_id"], "child_cluster_id": c["cluster_id"]}
        for c in run["centroids"]
        if "parent_cluster_id" in c
    ]
    parents = {r["parent_cluster_id"] for r in rels}
    leaf_ids = [cid for cid in cents if cid not in parents]
    assert len(leaf_ids) == leaves
    assert sum(cents[c]["num_members"] for c in leaf_ids) + run["noise_points"] == run["num_points"]
    for p in parents:
        kids = [r["child_cluster_id"] for r in rels if r["parent_cluster_id"] == p]
        assert cents[p]["num_members"] == sum(cents[k]["num_members"] for k in kids)
        assert all(k.startswith(p + "_sub_") for k in kids)
    for c in run["centroids"]:
        assert 1 <= len(c["representative_ids"]) <= 5 and c["label"].startswith("Cluster ")
        assert -1 <= c["min_cosine_similarity"] <= c["mean_cosine_similarity"] <= 1
    assert run["metrics"]["avg_cluster_size"] == pytest.approx(
        (run["num_points"] - run["noise_points"]) / leaves
    )
    ClusterExecutionResult.from_dict(run)
    return cents


async def test_hierarchical_kmeans_run_and_export(api: Api) -> None:
    X, truth = nested()
    col, _ = await api.make_collection(X=X)
    meta = await hierarchical_cluster(api, col, "kmeans", {"n_clusters": 3}, max_hierarchy_depth=2)
    assert meta["hierarchical_vector"] is True and meta["max_hierarchy_depth"] == 2
    assert meta["hierarchy_detected"] is False
    ClusterMetadata.from_dict(meta)
    cid = meta["cluster_id"]
    run = await api.execute(cid)
    cents = check_run_shape(run, top=3, leaves=9)
    children = {f"cl_{k}_sub_{i}" for k in range(3) for i in range(3)}
    assert set(cents) == {f"cl_{k}" for k in range(3)} | children
    assert [c["cluster_id"] for c in run["centroids"][:3]] == ["cl_0", "cl_1", "cl_2"]  # parents first
    assert cents["cl_0_sub_1"]["label"] == "Cluster 0.1"
    assert run["hierarchy"]["depth_reached"] == 1 and run["hierarchy"]["max_depth"] == 2
    assert run["noise_points"] == 0 and run["num_points"] == len(X)

    # members.parquet: each document's cluster is its leaf, and each leaf is one of the 9 sub-blobs
    members = artifacts.read_table(api.app.state.services.artifacts, run["members_key"]).to_pylist()
    leaf_of = {m["document_id"]: m["cluster_id"] for m in members}
    assert set(leaf_of.values()) == {k for k in cents if "_sub_" in k}
    blobs = {leaf: {int(truth[int(d[1:])]) for d, lf in leaf_of.items() if lf == leaf} for leaf in cents}
    assert all(len(blobs[leaf]) == 1 for leaf in set(leaf_of.values()))
    assert len({next(iter(blobs[leaf])) for leaf in set(leaf_of.values())}) == 9

    # the cluster mirrors the hierarchy
    cluster = (await api.client.get(f"/v1/clusters/{cid}", headers=api.h())).json()
    assert cluster["hierarchy_detected"] is True and cluster["hierarchical_vector"] is True
    assert cluster["hierarchy_relationships"] == run["hierarchy_relationships"]
    assert cluster["num_clusters"] == 12
    ClusterMetadata.from_dict(cluster)

    # export: a parent brings its children's rows; a child by label only its own
    url = f"/v1/clusters/{cid}/executions/{run['run_id']}/export"
    r = await api.client.get(url, params={"format": "csv", "cluster_label": "cl_1"}, headers=api.h())
    assert r.status_code == 200, r.text
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == cents["cl_1"]["num_members"] == 120
    assert Counter(row["cluster_id"] for row in rows) == {f"cl_1_sub_{i}": 40 for i in range(3)}
    r = await api.client.get(url, params={"format": "csv", "cluster_label": "Cluster 1.2"}, headers=api.h())
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert {row["cluster_id"] for row in rows} == {"cl_1_sub_2"} and len(rows) == 40
    assert all(row["cluster_label"] == "Cluster 1.2" for row in rows)
    assert all(float(row["distance_to_centroid"]) >= 0 for row in rows)


async def test_hierarchical_hdbscan_run_with_noise(api: Api) -> None:
    X, _ = nested()
    noise = np.random.default_rng(9).uniform(-30, 40, (20, X.shape[1])).astype(np.float32)
    col, _ = await api.make_collection(X=np.concatenate([X, noise]))
    params = {"min_cluster_size": 10, "cluster_selection_epsilon": 6.0}
    meta = await hierarchical_cluster(api, col, "hdbscan", params, normalize_features=False)
    run = await api.execute(meta["cluster_id"])
    check_run_shape(run, top=3, leaves=9)
    assert run["noise_points"] == 20 and run["hierarchy"]["method"] == "hdbscan"
    members = artifacts.read_table(api.app.state.services.artifacts, run["members_key"]).to_pylist()
    noise_ids = {f"d{i:05d}" for i in range(len(X), len(X) + 20)}
    assert {m["document_id"] for m in members if m["cluster_id"] is None} == noise_ids


async def test_flat_runs_are_unchanged_and_depth_is_limited(api: Api) -> None:
    X, _ = nested()
    col, _ = await api.make_collection(X=X)
    flat = await api.make_cluster(col, k=3)
    run = await api.execute(flat)
    assert run["num_clusters"] == 3 and "hierarchy_relationships" not in run and "hierarchy" not in run
    assert all("parent_cluster_id" not in c for c in run["centroids"])
    cluster = (await api.client.get(f"/v1/clusters/{flat}", headers=api.h())).json()
    assert cluster["hierarchical_vector"] is False and cluster["hierarchy_detected"] is False
    # structure two levels deep, depth 1: children only
    rng = np.random.default_rng(0)
    deep = []
    for g in range(2):
        for s in range(2):
            for b in range(2):
                centre = np.zeros(6)
                centre[0], centre[1 + s], centre[3 + b] = 100.0 * g, 10.0, 1.0
                deep.append(centre + rng.normal(0, 0.08, (40, 6)))
    col2, _ = await api.make_collection(name="deep", X=np.concatenate(deep).astype(np.float32), prefix="e")
    for depth, ids in ((1, 2 + 4), (3, 2 + 4 + 8)):
        meta = await hierarchical_cluster(
            api, col2, "kmeans", {"n_clusters": 2}, max_hierarchy_depth=depth, normalize_features=False
        )
        run = await api.execute(meta["cluster_id"])
        assert run["num_clusters"] == ids, run
        assert max(c["cluster_id"].count("_sub_") for c in run["centroids"]) == min(depth, 2)


async def test_hierarchy_settings_are_validated(api: Api) -> None:
    col, _ = await api.make_collection()
    base = {"clustering_method": "kmeans", "feature_uris": ["emb"], "hierarchical": True}
    for bad in (0, 6, "3", True, 2.0):
        r = await api.client.post(
            "/v1/clusters",
            json={"collection_ids": [col], "vector_config": base | {"max_hierarchy_depth": bad}},
            headers=api.h(),
        )
        err = assert_error(r, 422, "validation_error")
        reason = "vector_config.max_hierarchy_depth: must be an integer between 1 and 5"
        assert err["message"].startswith(reason)
        assert err["details"]["validation_errors"][0]["loc"] == ["vector_config", "max_hierarchy_depth"]
    r = await api.client.post(
        "/v1/clusters",
        json={"collection_ids": [col], "vector_config": base | {"hierarchical": "yes"}},
        headers=api.h(),
    )
    err = assert_error(r, 422, "validation_error")
    assert err["message"].startswith("vector_config.hierarchical: must be a boolean")
    # nulls are the defaults (the SDK sends null for unset optionals)
    r = await api.client.post(
        "/v1/clusters",
        json={
            "collection_ids": [col],
            "vector_config": base | {"hierarchical": None, "max_hierarchy_depth": None},
        },
        headers=api.h(),
    )
    assert r.status_code == 200, r.text
    assert r.json()["hierarchical_vector"] is False and r.json()["max_hierarchy_depth"] == 3


def test_sdk_hierarchical_cluster(live_server: str) -> None:
    client = sdk(live_server)
    X, _ = nested()
    collection_id = sdk_collection(client, "sdk-nested", X)
    clusters = mixpeek.ClustersApi(client)
    meta = clusters.create_cluster(
        CreateClusterRequest.from_dict(
            {
                "collection_ids": [collection_id],
                "cluster_name": "sdk-hier",
                "vector_config": {
                    "clustering_method": "kmeans",
                    "feature_uris": ["emb"],
                    "algorithm_params": {"n_clusters": 3},
                    "hierarchical": True,
                    "max_hierarchy_depth": 2,
                },
            }
        )
    )
    assert meta.hierarchical_vector is True and meta.max_hierarchy_depth == 2
    runs = mixpeek.ClusterExecutionsApi(client)
    run_id = clusters.execute_clustering_clusters(meta.cluster_id).additional_data["run_id"]
    deadline = time.monotonic() + 60
    while True:
        run = runs.get_cluster_execution_by_run(meta.cluster_id, run_id)
        if run.status in ("completed", "failed"):
            break
        assert time.monotonic() < deadline, run.status
        time.sleep(0.05)
    assert run.status == "completed" and run.num_clusters == 12 and len(run.centroids or []) == 12
    assert {c.cluster_id for c in run.centroids or []} >= {"cl_0", "cl_0_sub_0", "cl_2_sub_2"}
    got = clusters.get_cluster(meta.cluster_id)
    assert got.hierarchical_vector is True and got.hierarchy_detected is True and got.num_clusters == 12
    assert got.hierarchy_relationships is not None and len(got.hierarchy_relationships) == 9
    assert {"parent_cluster_id": "cl_0", "child_cluster_id": "cl_0_sub_0"} in got.hierarchy_relationships
    listed = clusters.list_clusters_get()
    assert listed.results[0].hierarchy_detected is True


async def test_hierarchical_parents_get_labels_groups_and_scatter_centres(api: Api) -> None:
    """A parent node has no members of its own in `labels` (points belong to leaves): its offline
    label comes from its descendants' texts, and the scatter and groups list it too."""
    X, truth = nested()
    r = await api.client.post("/v1/collections", json={"collection_name": "texts"}, headers=api.h())
    col = r.json()["collection_id"]
    group_words, sub_words = ("apple", "river", "planet"), ("red", "green", "blue")
    docs = [
        {
            "document_id": f"d{i:05d}",
            "vectors": {"emb": x.tolist()},
            "metadata": {"text": f"{group_words[truth[i] // 3]} {sub_words[truth[i] % 3]} thing"},
        }
        for i, x in enumerate(X)
    ]
    await api.upsert(col, docs)
    cid = (await hierarchical_cluster(api, col, "kmeans", {"n_clusters": 3}, max_hierarchy_depth=1))[
        "cluster_id"
    ]
    run = await api.execute(cid)
    assert run["status"] == "completed", run
    cents = {c["cluster_id"]: c for c in run["centroids"]}
    parents = [c for c in run["centroids"] if "_sub_" not in c["cluster_id"]]
    assert len(parents) == 3
    for p in parents:  # one group word per parent, from its children's members
        words = [w for w in group_words if w in p["label"]]
        assert len(words) == 1 and words[0] in p["keywords"][0], p
        kids = [c for c in run["centroids"] if c.get("parent_cluster_id") == p["cluster_id"]]
        assert len(kids) >= 2 and all(words[0] in k["label"] for k in kids)
    assert len({p["label"] for p in parents}) == 3

    r = await api.client.get(f"/v1/clusters/{cid}/visualization", params={"compact": "true"}, headers=api.h())
    assert r.status_code == 200, r.text
    centres = {c["cluster_id"]: c for c in r.json()["centroids"]}
    assert set(centres) == set(cents)  # parents too: the mean of their descendants' coordinates
    r = await api.client.get(f"/v1/clusters/{cid}/groups", headers=api.h())
    assert r.status_code == 200, r.text
    groups = {g["cluster_id"]: g for g in r.json()["groups"]}
    assert set(groups) == set(cents)
    assert all(groups[p["cluster_id"]]["member_count"] == 120 for p in parents)
