"""Every algorithm through the API and the worker: parity with the reference libraries on a dataset
shipped with scikit-learn, well-typed metrics the SDK parses, automatic parameters, sampling,
reduction and attribute grouping."""

from __future__ import annotations

import io
from typing import Any

import hdbscan
import numpy as np
import pyarrow.parquet as pq
import pytest
import sklearn.cluster as skc
from mixpeek.models.cluster_execution_result import ClusterExecutionResult
from sklearn.datasets import load_iris
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture

from tests.conftest import Api

pytestmark = pytest.mark.e2e

IRIS = load_iris().data.astype(np.float32)

# name -> (params sent, the same call made directly on the reference library)
CASES: dict[str, tuple[dict[str, Any], Any]] = {
    "kmeans": (
        {"n_clusters": 3, "random_state": 0},
        lambda X: skc.KMeans(3, n_init=1, random_state=0).fit_predict(X),
    ),
    "dbscan": ({"eps": 0.5, "min_samples": 5}, lambda X: skc.DBSCAN(eps=0.5, min_samples=5).fit_predict(X)),
    "hdbscan": ({"min_cluster_size": 10}, lambda X: hdbscan.HDBSCAN(min_cluster_size=10).fit_predict(X)),
    "optics": ({"min_samples": 10}, lambda X: skc.OPTICS(min_samples=10).fit_predict(X)),
    "agglomerative": (
        {"n_clusters": 3, "linkage": "ward"},
        lambda X: skc.AgglomerativeClustering(n_clusters=3, linkage="ward").fit_predict(X),
    ),
    "spectral": (
        {"n_clusters": 3, "random_state": 0},
        lambda X: skc.SpectralClustering(3, random_state=0).fit_predict(X),
    ),
    "gaussian_mixture": (
        {"n_components": 3, "random_state": 0},
        lambda X: GaussianMixture(3, random_state=0).fit(X).predict(X),
    ),
    "mean_shift": ({"bandwidth": 0.9}, lambda X: skc.MeanShift(bandwidth=0.9).fit_predict(X)),
}


async def _run(api: Api, algorithm: str, params: dict[str, Any], X: np.ndarray, **vc: Any) -> dict:
    name = f"c-{algorithm}"
    existing = await api.client.get(f"/v1/collections/{name}", headers=api.h())
    col = (
        existing.json()["collection_id"]
        if existing.status_code == 200
        else (await api.make_collection(name=name, X=X))[0]
    )
    cid = await api.make_cluster(
        col, method=algorithm, params=params, vector_config={"normalize_features": False, **vc}
    )
    return await api.execute(cid)


def _labels(api: Api, run: dict) -> np.ndarray:
    table = pq.read_table(io.BytesIO(api.app.state.services.artifacts.get_bytes(run["members_key"])))
    rows = sorted(
        zip(table.column("document_id").to_pylist(), table.column("cluster_id").to_pylist(), strict=True)
    )
    return np.asarray([-1 if c is None else int(c.split("_")[1]) for _, c in rows])


@pytest.mark.parametrize("algorithm", sorted(CASES))
async def test_parity_with_reference_library(api: Api, algorithm: str) -> None:
    params, reference = CASES[algorithm]
    run = await _run(api, algorithm, params, IRIS)
    assert run["status"] == "completed", run
    ours, theirs = _labels(api, run), np.asarray(reference(IRIS))
    assert adjusted_rand_score(theirs, ours) == 1.0
    np.testing.assert_array_equal(ours == -1, theirs == -1)
    assert run["num_clusters"] == len(set(theirs) - {-1}) == len(run["centroids"])
    assert run["noise_points"] == int((theirs == -1).sum())
    assert run["vectors_clustered"] + run["pipeline_drop"] == run["num_points"] == len(IRIS)
    parsed = ClusterExecutionResult.from_dict(run)  # the SDK's strict model
    assert parsed.metrics is not None and parsed.status == "completed"
    m = run["metrics"]
    assert m["degenerate"] is False or isinstance(m["degenerate"], str)
    assert m["should_recluster"] in (0, 1) and 0 <= m["noise_ratio"] <= 1


async def test_automatic_k_and_eps_are_reported(api: Api) -> None:
    run = await _run(api, "kmeans", {"n_clusters": None}, IRIS)
    assert run["status"] == "completed" and run["params_used"]["n_clusters"] == run["num_clusters"] >= 2
    run = await _run(api, "dbscan", {"eps": None, "min_samples": 5}, IRIS)
    assert run["status"] == "completed" and run["params_used"]["eps"] > 0


async def test_auto_is_hdbscan_and_unbuilt_algorithms_are_422(api: Api) -> None:
    col, _ = await api.make_collection(X=IRIS)
    for method, status in (("auto", 200), ("leiden", 422), ("evoc", 422), ("nope", 422)):
        r = await api.client.post(
            "/v1/clusters",
            headers=api.h(),
            json={
                "collection_ids": [col],
                "vector_config": {"clustering_method": method, "feature_uris": ["emb"]},
            },
        )
        assert r.status_code == status, (method, r.text)
        if method == "auto":
            assert r.json()["algorithm"] == "hdbscan"
        elif method in ("leiden", "evoc"):
            assert r.json()["error"]["code"] == "algorithm_not_supported"
            assert "vector_config.clustering_method" in r.json()["error"]["message"]


async def test_out_of_range_params_name_the_field(api: Api) -> None:
    col, _ = await api.make_collection(X=IRIS)
    r = await api.client.post(
        "/v1/clusters",
        headers=api.h(),
        json={
            "collection_ids": [col],
            "vector_config": {
                "clustering_method": "hdbscan",
                "feature_uris": ["emb"],
                "algorithm_params": {"min_cluster_size": 1},
            },
        },
    )
    assert r.status_code == 422 and "algorithm_params.min_cluster_size" in r.json()["error"]["message"]


async def test_sampling_and_wide_vectors_are_reported(api: Api) -> None:
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(c, 0.2, (60, 120)) for c in (0, 3)]).astype(np.float32)
    run = await _run(api, "hdbscan", {"min_cluster_size": 10}, X, sample_size=100)
    assert run["status"] == "completed", run
    assert run["num_points"] == 100 and run["sampling"]["from"] == 120 and run["sampling"]["to"] == 100
    assert run["reduction"] == {"method": "pca", "from": 120, "to": 32}
    assert run["vectors_retrieved"] == 120 and run["source_documents"] == 120
    raw = await _run(api, "hdbscan", {"min_cluster_size": 10}, X, preprocessing_steps=[{"method": "none"}])
    assert raw["status"] == "completed" and "reduction" not in raw and raw["num_points"] == 120


async def test_median_centroids_and_no_metrics(api: Api) -> None:
    run = await _run(
        api, "kmeans", {"n_clusters": 3, "random_state": 0}, IRIS, effective_feature_method="median"
    )
    r = await api.client.get(
        f"/v1/clusters/{run['cluster_id']}/executions/{run['run_id']}?include_vectors=true", headers=api.h()
    )
    labels = _labels(api, run)
    cen = {c["cluster_id"]: c["centroid_vector"] for c in r.json()["centroids"]}
    np.testing.assert_allclose(cen["cl_0"], np.median(IRIS[labels == 0], axis=0), rtol=1e-5)
    col = (await api.client.get("/v1/collections/c-kmeans", headers=api.h())).json()["collection_id"]
    out = await api.client.post(
        "/v1/clusters/execute",
        headers=api.h(),
        json={
            "collection_ids": [col],
            "compute_metrics": False,
            "config": {
                "algorithm": "kmeans",
                "algorithm_params": {"n_clusters": 3},
                "feature_vector": {"vector_name": "emb"},
            },
        },
    )
    assert out.status_code == 200 and out.json()["metrics"] == {}


async def test_attribute_hierarchy_through_the_api(api: Api) -> None:
    r = await api.client.post("/v1/collections", json={"collection_name": "products"}, headers=api.h())
    col = r.json()["collection_id"]
    docs = [
        {"document_id": f"p{c}{b}{i}", "metadata": {"category": f"Cat {c}", "brand": f"Brand-{b}"}}
        for c in range(4)
        for b in range(3)
        for i in range(2)
    ]
    docs.append({"document_id": "zz", "metadata": {"category": "Cat 0"}})  # brand missing
    await api.upsert(col, docs)
    meta = await api.make_attribute_cluster(col, ["category", "brand"], hierarchical=True)
    assert meta["cluster_type"] == "attribute" and meta["algorithm"] == "attribute_based"
    run = await api.execute(meta["cluster_id"])
    assert run["status"] == "completed", run
    assert run["num_clusters"] == 4 + 12 + 1  # parents + leaves (+ the missing-brand leaf)
    ids = {c["cluster_id"] for c in run["centroids"]}
    assert {"cl_cat_0", "cl_cat_0_brand_0", "cl_cat_0_none"} <= ids
    m = run["metrics"]
    assert m["silhouette_score"] is None and m["davies_bouldin_index"] is None
    cluster = (await api.client.get(f"/v1/clusters/{meta['cluster_id']}", headers=api.h())).json()
    assert cluster["hierarchy_detected"] is True and len(cluster["hierarchy_relationships"]) == 13
    ClusterExecutionResult.from_dict(run)
    adhoc = await api.client.post(
        "/v1/clusters/execute",
        headers=api.h(),
        json={
            "collection_ids": [col],
            "config": {"algorithm": "attribute_based", "attribute_config": {"attributes": ["category"]}},
        },
    )
    assert adhoc.status_code == 200, adhoc.text
    body = adhoc.json()
    assert body["num_clusters"] == 4 and body["centroids"][0]["centroid_vector"] == []
    assert body["centroids"][0]["feature_dimensions"] == 0 and body["centroids"][0]["vector_name"] == ""
