"""Multi-feature clusters (concatenate, weighted, independent) and preprocessing steps through the
API and the embedded worker: real runs, the computed results, the stored reducer, validation."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from mixpeek.models.cluster_execution_result import ClusterExecutionResult
from mixpeek.models.cluster_metadata import ClusterMetadata
from mixpeek.models.cluster_model import ClusterModel
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score as ari
from sklearn.preprocessing import StandardScaler

from core import preprocess
from core.pipeline import l2_normalize
from tests.conftest import Api, serve_asgi
from tests.e2e.run_helpers import assert_error

pytestmark = pytest.mark.e2e


def _groups(n: int, dims: int, labels: np.ndarray, seed: int) -> np.ndarray:
    """Points around one axis direction per label (separated after L2 normalisation)."""
    rng = np.random.default_rng(seed)
    return (np.eye(dims)[labels] * 10.0 + rng.normal(0, 0.3, (n, dims))).astype(np.float32)


async def _collection(api: Api, name: str, features: dict[str, np.ndarray], only_a: int = 0) -> str:
    """Documents d00000… with every feature; `only_a` more (x…) that lack all but feature `a`."""
    r = await api.client.post("/v1/collections", json={"collection_name": name}, headers=api.h())
    assert r.status_code == 200, r.text
    cid = str(r.json()["collection_id"])
    n = len(next(iter(features.values())))
    docs = [
        {"document_id": f"d{i:05d}", "vectors": {k: v[i].tolist() for k, v in features.items()}}
        for i in range(n)
    ]
    docs += [{"document_id": f"x{i:03d}", "vectors": {"a": features["a"][i].tolist()}} for i in range(only_a)]
    await api.upsert(cid, docs)
    return cid


async def _create(api: Api, col: str, **vc: Any) -> dict[str, Any]:
    body = {"collection_ids": [col], "vector_config": {"clustering_method": "kmeans", **vc}}
    r = await api.client.post("/v1/clusters", json=body, headers=api.h())
    assert r.status_code == 200, r.text
    return dict(r.json())


def _members(api: Api, run: dict[str, Any]) -> list[tuple[str, str | None]]:
    table = pq.read_table(io.BytesIO(api.app.state.services.artifacts.get_bytes(run["members_key"])))
    docs, ids = table.column("document_id").to_pylist(), table.column("cluster_id").to_pylist()
    return list(zip(docs, ids, strict=True))


def _labels(pairs: list[tuple[str, str | None]]) -> np.ndarray:
    return np.asarray([c for _, c in sorted(pairs)], dtype=object)


async def test_concatenate_follows_feature_weights(api: Api) -> None:
    n = 90
    truth_a = np.repeat(np.arange(3), 30)
    truth_b = np.random.default_rng(1).permutation(truth_a)  # another grouping of the same documents
    col = await _collection(
        api, "two-features", {"a": _groups(n, 8, truth_a, 2), "b": _groups(n, 5, truth_b, 3)}, only_a=5
    )
    runs = {}
    for name, weights in (("a", {"a": 1.0, "b": 0.05}), ("b", {"a": 0, "b": 2})):
        cluster = await _create(
            api,
            col,
            feature_uris=["a", "b"],
            algorithm_params={"n_clusters": 3},
            feature_weights=weights,
        )
        assert cluster["feature_uris"] == ["a", "b"] and cluster["multi_feature_strategy"] == "concatenate"
        run = await api.execute(cluster["cluster_id"])
        assert run["status"] == "completed", run.get("error_message")
        runs[name] = run
    for name, truth, other in (("a", truth_a, truth_b), ("b", truth_b, truth_a)):
        run = runs[name]
        # documents lacking feature b are the index gap; 8 + 5 dimensions per document
        assert run["source_documents"] == 95 and run["vectors_retrieved"] == 90 and run["index_gap"] == 5
        assert run["num_points"] == 90 and run["dimensions"] == 13
        assert run["feature_dimensions"] == {"a": 8, "b": 5}
        assert run["multi_feature_strategy"] == "concatenate" and "learned_weights" not in run
        labels = _labels(_members(api, run))
        assert ari(truth, labels) == 1.0 and ari(other, labels) < 0.2
        ClusterExecutionResult.from_dict(run)
    assert runs["b"]["feature_weights_used"] == {"a": 0.0, "b": 1.0}
    # the centroids live in the combined space: unit blocks scaled by sqrt(weight)
    r = await api.client.get(
        f"/v1/clusters/{runs['a']['cluster_id']}/executions/{runs['a']['run_id']}?include_vectors=true",
        headers=api.h(),
    )
    vec = np.asarray(r.json()["centroids"][0]["centroid_vector"])
    assert vec.shape == (13,)
    assert np.linalg.norm(vec[:8]) ** 2 == pytest.approx(1 / 1.05, abs=0.02)

    # the scatter is of the combined space: one point per document, every cluster's centre
    cid, rid = runs["a"]["cluster_id"], runs["a"]["run_id"]
    r = await api.client.get(f"/v1/clusters/{cid}/visualization", params={"run_id": rid}, headers=api.h())
    assert r.status_code == 200, r.text
    view = r.json()
    assert len(view["points"]) == 90 and len({p["document_id"] for p in view["points"]}) == 90
    assert {c["cluster_id"] for c in view["centroids"]} == {c["cluster_id"] for c in runs["a"]["centroids"]}


async def test_weighted_learns_the_informative_feature(api: Api) -> None:
    n = 90
    truth = np.repeat(np.arange(3), 30)
    noise = np.random.default_rng(4).normal(size=(n, 6)).astype(np.float32)
    col = await _collection(api, "signal-noise", {"a": noise, "b": _groups(n, 6, truth, 5)})
    cluster = await _create(
        api,
        col,
        feature_uris=["a", "b"],
        algorithm_params={"n_clusters": 3},
        multi_feature_strategy="weighted",
        weight_learning_config={"method": "grid_search", "metric": "silhouette", "max_iterations": 11},
    )
    assert cluster["multi_feature_strategy"] == "weighted"
    run = await api.execute(cluster["cluster_id"])
    assert run["status"] == "completed", run.get("error_message")
    w = run["learned_weights"]
    assert set(w) == {"a", "b"} and w["b"] >= 0.8 and sum(w.values()) == pytest.approx(1.0)
    assert 0.5 < run["learning_quality_score"] <= 1.0
    assert run["weight_learning"]["candidates"] == 11 and run["weight_learning"]["sample_size_used"] == n
    assert ari(truth, _labels(_members(api, run))) == 1.0
    ClusterExecutionResult.from_dict(run)
    got = await api.client.get(f"/v1/clusters/{cluster['cluster_id']}", headers=api.h())
    meta = got.json()
    assert meta["learned_weights"] == w and meta["learning_quality_score"] == run["learning_quality_score"]
    parsed = ClusterMetadata.from_dict(meta)
    assert parsed.learned_weights == w and parsed.multi_feature_strategy == "weighted"
    listed = (await api.client.get("/v1/clusters", headers=api.h())).json()["results"]
    assert [c["learned_weights"] for c in listed if c["cluster_id"] == cluster["cluster_id"]] == [w]
    # the PATCH answer (ClusterModel) echoes the vector_config with the learning config
    r = await api.client.patch(
        f"/v1/clusters/{cluster['cluster_id']}", json={"description": "x"}, headers=api.h()
    )
    assert r.status_code == 200, r.text
    model = ClusterModel.from_dict(r.json())
    assert model.vector_config is not None and model.vector_config.weight_learning_config is not None
    assert model.vector_config.weight_learning_config.max_iterations == 11


async def test_independent_detects_nested_clusterings(api: Api) -> None:
    n = 80
    fine = np.repeat(np.arange(4), 20)  # feature b: four groups
    coarse = fine // 2  # feature a: two groups, each the union of two of b's
    col = await _collection(api, "nested", {"a": _groups(n, 4, coarse, 6), "b": _groups(n, 6, fine, 7)})
    body = {
        "collection_ids": [col],
        "vector_config": {
            "clustering_method": "hdbscan",
            "feature_uris": ["a", "b"],
            "algorithm_params": {"min_cluster_size": 5},
            "multi_feature_strategy": "independent",
            "output_strategy": "per_feature",
        },
    }
    r = await api.client.post("/v1/clusters", json=body, headers=api.h())
    assert r.status_code == 200, r.text
    cluster_id = r.json()["cluster_id"]
    run = await api.execute(cluster_id)
    assert run["status"] == "completed", run.get("error_message")
    ids = sorted(c["cluster_id"] for c in run["centroids"])
    assert ids == ["f0_cl_0", "f0_cl_1", "f1_cl_0", "f1_cl_1", "f1_cl_2", "f1_cl_3"]
    assert run["num_clusters"] == 6 and run["num_points"] == n
    assert set(run["per_feature"]) == {"a", "b"} and run["per_feature"]["b"]["num_clusters"] == 4
    rels = run["hierarchy_relationships"]
    assert len(rels) == 4 and {r["parent_cluster_id"] for r in rels} == {"f0_cl_0", "f0_cl_1"}
    pairs = _members(api, run)
    assert len(pairs) == 2 * n  # one row per document and feature
    members: dict[str, set[str]] = {}
    for doc, cid in pairs:
        members.setdefault(str(cid), set()).add(doc)
    for rel in rels:
        assert members[rel["child_cluster_id"]] <= members[rel["parent_cluster_id"]]
        assert rel["parent_feature"] == "a" and rel["child_feature"] == "b" and rel["overlap"] == 1.0
    ClusterExecutionResult.from_dict(run)
    meta = (await api.client.get(f"/v1/clusters/{cluster_id}", headers=api.h())).json()
    assert meta["hierarchy_detected"] is True and meta["hierarchy_relationships"] == rels
    ClusterMetadata.from_dict(meta)


async def test_preprocessing_steps_and_the_stored_reducer(api: Api) -> None:
    rng = np.random.default_rng(8)
    labels = np.repeat(np.arange(3), 40)
    X = (np.eye(20)[labels] * 10 + rng.normal(0, 0.2, (120, 20))).astype(np.float32)
    col, _ = await api.make_collection(name="pre", X=X)
    steps = [{"method": "standardize"}, {"method": "pca", "n_components": 3}]
    cluster = await _create(
        api, col, feature_uris=["emb"], algorithm_params={"n_clusters": 3}, preprocessing_steps=steps
    )
    assert cluster["preprocessing_steps"] == [
        {"method": "standardize"},
        {"method": "pca", "n_components": 3, "random_state": 42},
    ]
    ClusterMetadata.from_dict(cluster)
    run = await api.execute(cluster["cluster_id"])
    assert run["status"] == "completed", run.get("error_message")
    assert run["reduction"]["method"] == "preprocessing_steps" and run["reduction"]["to"] == 3
    assert ari(labels, _labels(_members(api, run))) == 1.0
    key = run["preprocessor_key"]
    assert key.endswith("preprocessor.pkl") and key.startswith(run["parquet_path"].rsplit("/", 1)[0])
    fitted = preprocess.loads(api.app.state.services.artifacts.get_bytes(key))
    assert isinstance(fitted, preprocess.FittedSteps)
    Z = fitted.transform(l2_normalize(X))  # the run normalised, then standardised and projected
    standard = StandardScaler().fit_transform(l2_normalize(X))
    expected = PCA(n_components=3, random_state=42).fit_transform(standard)
    assert Z.shape == (120, 3) and np.allclose(np.abs(Z), np.abs(expected), atol=1e-3)
    # PATCH (ClusterModel): pca is not one of the SDK's step models, so vector_config leaves them out
    patch = {"json": {"description": "d"}, "headers": api.h()}
    r = await api.client.patch(f"/v1/clusters/{cluster['cluster_id']}", **patch)
    assert r.status_code == 200 and "preprocessing_steps" not in r.json()["vector_config"]
    assert r.json()["preprocessing_steps"][1]["method"] == "pca"
    ClusterModel.from_dict(r.json())
    # umap (umap-learn) before hdbscan (a `none` beside it does nothing); the SDK's step models parse
    # the echo. (Whitening first would scale the 17 noise directions up to the 2 that hold the groups.)
    umap_steps = [{"method": "none"}, {"method": "umap", "n_components": 2, "n_neighbors": 10}]
    body = {
        "collection_ids": [col],
        "vector_config": {
            "clustering_method": "hdbscan",
            "feature_uris": ["emb"],
            "algorithm_params": {"min_cluster_size": 10},
            "preprocessing_steps": umap_steps,
        },
    }
    r = await api.client.post("/v1/clusters", json=body, headers=api.h())
    assert r.status_code == 200, r.text
    run = await api.execute(r.json()["cluster_id"])
    assert run["status"] == "completed", run.get("error_message")
    assert run["num_clusters"] == 3 and run["reduction"]["to"] == 2
    fitted = preprocess.loads(api.app.state.services.artifacts.get_bytes(run["preprocessor_key"]))
    assert isinstance(fitted, preprocess.FittedSteps)
    assert fitted.transform(l2_normalize(X[:4])).shape == (4, 2)
    r = await api.client.patch(f"/v1/clusters/{run['cluster_id']}", **patch)
    model = ClusterModel.from_dict(r.json())
    assert model.vector_config is not None and len(model.vector_config.preprocessing_steps or []) == 2


async def test_multi_feature_with_steps_and_adhoc_steps(api: Api) -> None:
    n = 60
    truth = np.repeat(np.arange(2), 30)
    col = await _collection(api, "mf-steps", {"a": _groups(n, 6, truth, 9), "b": _groups(n, 6, truth, 10)})
    cluster = await _create(
        api,
        col,
        feature_uris=["a", "b"],
        algorithm_params={"n_clusters": 2},
        multi_feature_strategy="independent",
        preprocessing_steps=[{"method": "pca", "n_components": 2}],
    )
    run = await api.execute(cluster["cluster_id"])
    assert run["status"] == "completed", run.get("error_message")
    fitted = preprocess.loads(api.app.state.services.artifacts.get_bytes(run["preprocessor_key"]))
    assert isinstance(fitted, list) and len(fitted) == 2 and all(f is not None for f in fitted)
    # the ad-hoc route validates its steps under its own field name
    r = await api.client.post(
        "/v1/clusters/execute",
        headers=api.h(),
        json={
            "collection_ids": [col],
            "config": {
                "algorithm": "kmeans",
                "feature_vector": {"vector_name": "a"},
                "preprocessing_steps": [{"method": "pca", "n_components": "3"}],
            },
        },
    )
    err = assert_error(r, 422, "validation_error")
    assert err["message"].startswith("config.preprocessing_steps[0].n_components:")
    r = await api.client.post(
        "/v1/clusters/execute",
        headers=api.h(),
        json={
            "collection_ids": [col],
            "config": {
                "algorithm": "kmeans",
                "algorithm_params": {"n_clusters": 2},
                "feature_vector": {"vector_name": "a"},
                "preprocessing_steps": [{"method": "standardize"}],
            },
        },
    )
    assert r.status_code == 200 and r.json()["num_clusters"] == 2, r.text


async def test_a_missing_feature_fails_the_run(api: Api) -> None:
    col = await _collection(api, "only-a", {"a": _groups(20, 4, np.repeat([0, 1], 10), 11)})
    cluster = await _create(api, col, feature_uris=["a", "zzz"], algorithm_params={"n_clusters": 2})
    run = await api.execute(cluster["cluster_id"])
    assert run["status"] == "failed" and run["failure_category"] == "validation"
    assert "'a', 'zzz'" in run["error_message"]


BAD_CONFIGS: list[tuple[dict[str, Any], str]] = [
    ({"feature_uris": ["a", "a"]}, "vector_config.feature_uris"),
    ({"feature_uris": [f"f{i}" for i in range(9)]}, "vector_config.feature_uris"),
    ({"feature_uris": ["a", "b"], "multi_feature_strategy": "stack"}, "vector_config.multi_feature_strategy"),
    ({"feature_uris": ["a", "b"], "output_strategy": "many"}, "vector_config.output_strategy"),
    ({"feature_uris": ["a", "b"], "feature_weights": {"c": 1}}, "vector_config.feature_weights.c"),
    ({"feature_uris": ["a", "b"], "feature_weights": {"a": -1}}, "vector_config.feature_weights.a"),
    ({"feature_uris": ["a", "b"], "feature_weights": {"a": "1"}}, "vector_config.feature_weights.a"),
    ({"feature_uris": ["a", "b"], "feature_weights": {"a": 0, "b": 0}}, "vector_config.feature_weights"),
    ({"feature_uris": ["a", "b"], "feature_weights": [1, 2]}, "vector_config.feature_weights"),
    (
        {"feature_uris": ["a", "b"], "weight_learning_config": {"metric": "ari"}},
        "vector_config.weight_learning_config.metric",
    ),
    (
        {"feature_uris": ["a", "b"], "weight_learning_config": {"max_iterations": 2}},
        "vector_config.weight_learning_config.max_iterations",
    ),
    (
        {"feature_uris": ["a", "b"], "weight_learning_config": {"method": "random"}},
        "vector_config.weight_learning_config.method",
    ),
    (
        {"feature_uris": ["a", "b"], "weight_learning_config": {"sample_size": 10}},
        "vector_config.weight_learning_config.sample_size",
    ),
    ({"preprocessing_steps": [{"method": "lda"}]}, "vector_config.preprocessing_steps[0].method"),
    (
        {"preprocessing_steps": [{"method": "none"}, {"method": "umap", "n_components": 1}]},
        "vector_config.preprocessing_steps[1].n_components",
    ),
    ({"preprocessing_steps": {"method": "pca"}}, "vector_config.preprocessing_steps"),
]


async def test_bad_multi_feature_and_step_configs_are_422(api: Api) -> None:
    col = await _collection(api, "bad", {"a": _groups(4, 2, np.array([0, 1, 0, 1]), 0)})
    for vc, field in BAD_CONFIGS:
        vector_config = {"clustering_method": "kmeans", "feature_uris": ["a"], **vc}
        body = {"collection_ids": [col], "vector_config": vector_config}
        r = await api.client.post("/v1/clusters", json=body, headers=api.h())
        err = assert_error(r, 422, "validation_error")
        assert err["message"].startswith(field + ":"), (vc, err["message"])


async def test_admission_counts_every_feature_dimension(make_settings: Any) -> None:
    """1 MB of budget above the reserve: 32 points of 1,000 dimensions fit, 16 of 2,000 (N×D×4×8)."""
    async with serve_asgi(make_settings(worker_memory_limit_mb=1025)) as api:
        rng = np.random.default_rng(12)
        feats = {"a": rng.normal(size=(24, 1000)), "b": rng.normal(size=(24, 1000))}
        col = await _collection(api, "wide", {k: v.astype(np.float32) for k, v in feats.items()})
        single = await _create(api, col, feature_uris=["a"], algorithm_params={"n_clusters": 2})
        r = await api.client.post(f"/v1/clusters/{single['cluster_id']}/execute", headers=api.h())
        assert r.status_code == 200, r.text
        run = await api.wait_run(single["cluster_id"], r.json()["additional_data"]["run_id"])
        assert run["status"] == "completed" and run["dimensions"] == 1000
        both = await _create(api, col, feature_uris=["a", "b"], algorithm_params={"n_clusters": 2})
        r = await api.client.post(f"/v1/clusters/{both['cluster_id']}/execute", headers=api.h())
        err = assert_error(r, 422, "validation_error", "too_many_points")
        assert err["details"]["dimensions"] == 2000 and err["details"]["max_points"] == 16
        assert err["details"]["points"] == 24


async def test_two_collections_and_sampling_keep_rows_aligned(api: Api) -> None:
    """Rows of several collections are interleaved and sampled feature by feature alike."""
    truth = np.repeat(np.arange(2), 20)
    cols = []
    for j in range(2):
        feats = {"a": _groups(40, 4, truth, 20 + j), "b": _groups(40, 3, truth, 30 + j)}
        cols.append(await _collection(api, f"part-{j}", feats))
    body = {
        "collection_ids": cols,
        "vector_config": {
            "clustering_method": "kmeans",
            "feature_uris": ["a", "b"],
            "algorithm_params": {"n_clusters": 2},
            "sample_size": 50,
        },
    }
    r = await api.client.post("/v1/clusters", json=body, headers=api.h())
    assert r.status_code == 200, r.text
    run = await api.execute(r.json()["cluster_id"])
    assert run["status"] == "completed", run.get("error_message")
    assert run["num_points"] == 50 and run["sampling"]["from"] == 80 and run["vectors_retrieved"] == 80
    table = pq.read_table(io.BytesIO(api.app.state.services.artifacts.get_bytes(run["members_key"])))
    rows = table.to_pylist()
    keys = [(m["document_id"], m["collection_id"]) for m in rows]
    assert keys == sorted(keys) and len(set(keys)) == 50
    # both features agree on every document's group, so a misaligned row would split a cluster
    got = np.asarray([m["cluster_id"] for m in rows], dtype=object)
    want = np.asarray([truth[int(m["document_id"][1:])] for m in rows])
    assert ari(want, got) == 1.0
