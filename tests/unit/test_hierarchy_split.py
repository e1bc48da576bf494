"""Hierarchical vector clustering (core.hierarchy_split, core.hierarchy_centroids) on data with known
nested structure."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel
from sklearn.metrics import silhouette_score

from core.algorithms import get_algorithm, validate_params
from core.exports import select_clusters
from core.hierarchy_centroids import node_summaries
from core.hierarchy_split import (
    SPLIT_MIN_FRACTION,
    Hierarchy,
    build_hierarchy,
    is_large,
    min_child,
    silhouette_from_distances,
)
from core.metrics import quality_metrics
from core.pipeline import PipelineConfig, RunCanceled, run_pipeline


def nested(
    groups: int = 3, subs: int = 3, n: int = 40, dims: int = 16, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """`groups` far-apart groups, each of `subs` tight sub-blobs of `n` points: (X, sub-blob id)."""
    rng = np.random.default_rng(seed)
    X, truth = [], []
    for g in range(groups):
        centre = np.zeros(dims)
        centre[g] = 10.0
        for s in range(subs):
            sub = centre + rng.normal(size=dims) * 4 / np.sqrt(dims)
            X.append(sub + rng.normal(0, 0.3, (n, dims)))
            truth += [g * subs + s] * n
    return np.concatenate(X).astype(np.float32), np.asarray(truth)


def three_levels(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """2 groups > 2 sub-groups > 2 blobs of 40 points (scales 100 / 10 / 1): (X, blob id)."""
    rng = np.random.default_rng(seed)
    X, truth = [], []
    dims = 6
    for g in range(2):
        for s in range(2):
            for b in range(2):
                centre = np.zeros(dims)
                centre[0], centre[1 + s], centre[3 + b] = 100.0 * g, 10.0, 1.0
                centre[1 + (1 - s)] = 0.0
                X.append(centre + rng.normal(0, 0.08, (40, dims)))
                truth += [g * 4 + s * 2 + b] * 40
    return np.concatenate(X).astype(np.float32), np.asarray(truth)


def fit(algorithm: str, raw: dict[str, Any], X: np.ndarray) -> tuple[np.ndarray, BaseModel]:
    params = validate_params(algorithm, raw)
    return get_algorithm(algorithm).fit(X, params, 42).labels, params


def check_tree(h: Hierarchy, n: int) -> None:
    """Parents hold exactly their children's members; every clustered point has one leaf."""
    for i, node in enumerate(h.nodes):
        if node.children:
            union = np.sort(np.concatenate([h.nodes[c].members for c in node.children]))
            assert np.array_equal(union, node.members), node.cluster_id
            assert all(h.nodes[c].parent == i for c in node.children)
            assert all(h.nodes[c].cluster_id.startswith(node.cluster_id + "_sub_") for c in node.children)
        else:
            assert (h.leaf_labels[node.members] == i).all()
    leaves = [nd for nd in h.nodes if nd.is_leaf]
    assert sum(nd.members.shape[0] for nd in leaves) == int((h.leaf_labels >= 0).sum())
    assert h.leaf_labels.shape == (n,)


def pure(h: Hierarchy, truth: np.ndarray) -> bool:
    return all(np.unique(truth[nd.members]).size == 1 for nd in h.nodes if nd.is_leaf)


@pytest.mark.parametrize("algorithm", ["kmeans", "agglomerative"])
def test_centroid_algorithms_find_the_sub_blobs(algorithm: str) -> None:
    X, truth = nested()
    labels, params = fit(algorithm, {"n_clusters": 3}, X)
    h = build_hierarchy(X, labels, algorithm=algorithm, params=params, max_depth=3, seed=42)
    check_tree(h, X.shape[0])
    top = [nd for nd in h.nodes if nd.parent is None]
    assert [nd.cluster_id for nd in top] == ["cl_0", "cl_1", "cl_2"]
    assert all(len(nd.children) == 3 for nd in top)
    assert {nd.cluster_id for nd in h.nodes if nd.depth == 1} == {
        f"cl_{k}_sub_{i}" for k in range(3) for i in range(3)
    }
    assert pure(h, truth)  # each leaf is one sub-blob ...
    assert len({int(truth[nd.members[0]]) for nd in h.nodes if nd.is_leaf}) == 9  # ... and all 9 are found
    assert h.report | {"split_attempts": 0} == {
        "method": "kmeans_silhouette",
        "max_depth": 3,
        "depth_reached": 1,  # the 40-point blobs have no inner structure: not split again
        "top_level_clusters": 3,
        "splits": 3,
        "split_attempts": 0,
        "leaves": 9,
    }
    assert h.relationships[:3] == [
        {"parent_cluster_id": "cl_0", "child_cluster_id": f"cl_0_sub_{i}"} for i in range(3)
    ]
    assert len(h.relationships) == 9


def test_children_are_numbered_by_size() -> None:
    X, _ = nested(groups=1, subs=1, n=10)
    rng = np.random.default_rng(1)
    big = X[:1] + rng.normal(0, 0.3, (60, X.shape[1])).astype(np.float32)
    small = X[:1] + 8 + rng.normal(0, 0.3, (25, X.shape[1])).astype(np.float32)
    Y = np.concatenate([small, big])
    h = build_hierarchy(
        Y, np.zeros(len(Y), dtype=np.int64), algorithm="kmeans", params=validate_params("kmeans", {}),
        max_depth=1, seed=42,
    )
    sizes = [nd.members.shape[0] for nd in h.nodes[1:]]
    assert [nd.cluster_id for nd in h.nodes[1:]] == ["cl_0_sub_0", "cl_0_sub_1"] and sizes == [60, 25]


def test_depth_limit() -> None:
    X, truth = three_levels()
    labels, params = fit("kmeans", {"n_clusters": 2}, X)
    deep = build_hierarchy(X, labels, algorithm="kmeans", params=params, max_depth=3, seed=42)
    check_tree(deep, X.shape[0])
    assert deep.report["depth_reached"] == 2 and deep.report["leaves"] == 8 and pure(deep, truth)
    assert "cl_0_sub_1_sub_0" in {nd.cluster_id for nd in deep.nodes}
    assert len(deep.nodes) == 2 + 4 + 8
    one = build_hierarchy(X, labels, algorithm="kmeans", params=params, max_depth=1, seed=42)
    check_tree(one, X.shape[0])
    assert max(nd.cluster_id.count("_sub_") for nd in one.nodes) == 1
    assert one.report["depth_reached"] == 1 and one.report["leaves"] == 4
    with pytest.raises(ValueError):
        build_hierarchy(X, labels, algorithm="kmeans", params=params, max_depth=6, seed=42)


def test_no_inner_structure_is_not_split() -> None:
    rng = np.random.default_rng(3)
    for dims in (2, 32, 128):
        X = np.concatenate([rng.normal(size=(400, dims)), 30 + rng.normal(size=(400, dims))])
        X = X.astype(np.float32)
        for algorithm, raw in (("kmeans", {"n_clusters": 2}), ("hdbscan", {"min_cluster_size": 5})):
            labels, params = fit(algorithm, raw, X)
            h = build_hierarchy(X, labels, algorithm=algorithm, params=params, max_depth=3, seed=7)
            assert h.report["splits"] == 0 and h.report["split_attempts"] == 2, (dims, algorithm)
            assert h.relationships == [] and np.array_equal(h.leaf_labels, labels)


def test_small_clusters_are_not_split() -> None:
    assert min_child(40, 0) == 5 and min_child(1000, 0) == 50 and min_child(40, 30) == 30
    assert is_large(10, 100, 5) and not is_large(9, 100, 5)
    assert not is_large(40, 10_000, 5)  # 0.4% of the run: below SPLIT_MIN_FRACTION
    assert is_large(int(SPLIT_MIN_FRACTION * 10_000), 10_000, 5)
    # a nested cluster of 9 points (two sub-blobs) next to a large nested one: only the large splits
    X, _ = nested(groups=1, subs=3)
    rng = np.random.default_rng(5)
    d = X.shape[1]
    tiny = np.concatenate([50 + rng.normal(0, 0.1, (5, d)), -50 + rng.normal(0, 0.1, (4, d))])
    Y = np.concatenate([X, tiny.astype(np.float32)])
    labels = np.r_[np.zeros(len(X)), np.ones(len(tiny))].astype(np.int64)
    params = validate_params("kmeans", {})
    h = build_hierarchy(Y, labels, algorithm="kmeans", params=params, max_depth=3, seed=1)
    assert [len(nd.children) for nd in h.nodes if nd.parent is None] == [3, 0]
    # a child below the algorithm's own minimum cluster size is never made: hdbscan min_cluster_size 50
    X, _ = nested()
    labels, params = fit("hdbscan", {"min_cluster_size": 50}, X)
    assert np.unique(labels[labels >= 0]).size == 3
    h = build_hierarchy(X, labels, algorithm="hdbscan", params=params, max_depth=3, seed=1)
    assert h.report["splits"] == 0  # 120-point groups of 40-point blobs: children would be < 50


def test_hdbscan_children_and_noise() -> None:
    X, truth = nested()
    rng = np.random.default_rng(9)
    noise = rng.uniform(-30, 40, (20, X.shape[1])).astype(np.float32)
    Y = np.concatenate([X, noise])
    # cluster_selection_epsilon keeps the top level coarse (3 groups); sub-levels drop it
    labels, params = fit("hdbscan", {"min_cluster_size": 10, "cluster_selection_epsilon": 6.0}, Y)
    assert np.unique(labels[labels >= 0]).size == 3 and (labels[len(X) :] == -1).all()
    h = build_hierarchy(Y, labels, algorithm="hdbscan", params=params, max_depth=2, seed=42)
    check_tree(h, len(Y))
    assert h.report["method"] == "hdbscan" and h.report["leaves"] == 9 and h.report["depth_reached"] == 1
    assert np.array_equal(h.leaf_labels == -1, labels == -1)  # noise stays noise, nothing else becomes it
    assert pure(h, np.r_[truth, np.full(len(noise), -1)])


def test_dbscan_runs_split_with_hdbscan() -> None:
    X, truth = nested()
    labels, params = fit("dbscan", {"eps": 6.0, "min_samples": 5}, X)
    assert np.unique(labels[labels >= 0]).size == 3
    h = build_hierarchy(X, labels, algorithm="dbscan", params=params, max_depth=3, seed=42)
    assert h.report["method"] == "hdbscan" and h.report["leaves"] == 9 and pure(h, truth)


def test_same_seed_same_tree() -> None:
    X, _ = three_levels(seed=4)
    labels, params = fit("kmeans", {"n_clusters": 2}, X)
    a = build_hierarchy(X, labels, algorithm="kmeans", params=params, max_depth=3, seed=11)
    b = build_hierarchy(X, labels, algorithm="kmeans", params=params, max_depth=3, seed=11)
    assert [nd.cluster_id for nd in a.nodes] == [nd.cluster_id for nd in b.nodes]
    assert all(np.array_equal(x.members, y.members) for x, y in zip(a.nodes, b.nodes, strict=True))
    assert np.array_equal(a.leaf_labels, b.leaf_labels) and a.report == b.report


def test_silhouette_from_distances_is_scikit_learns() -> None:
    rng = np.random.default_rng(2)
    Z = rng.normal(size=(120, 5))
    labels = np.r_[np.zeros(60), np.ones(59), [2]].astype(np.int64)  # a singleton scores 0
    dist = np.sqrt(((Z[:, None] - Z[None]) ** 2).sum(-1))
    got = silhouette_from_distances(dist, labels, 3)
    assert got == pytest.approx(silhouette_score(Z, labels), abs=1e-12)


def test_node_summaries_and_pipeline() -> None:
    X, truth = nested()
    noise = np.full((3, X.shape[1]), 100.0, dtype=np.float32) * np.arange(1, 4)[:, None]
    Y = np.concatenate([X, noise])
    params = validate_params("hdbscan", {"min_cluster_size": 10, "cluster_selection_epsilon": 6.0})
    cfg = PipelineConfig("hdbscan", params, normalize=False, hierarchical=True, max_hierarchy_depth=2)
    r = run_pipeline(Y, cfg)
    assert r.hierarchy is not None and r.num_clusters == 3 + 9 == len(r.clusters)
    ids = [c.cluster_id for c in r.clusters]
    assert ids[:3] == ["cl_0", "cl_1", "cl_2"] and ids[3] == "cl_0_sub_0"
    leaves = [c for c in r.clusters if not any(o.parent_cluster_id == c.cluster_id for o in r.clusters)]
    noise_points = int((r.labels == -1).sum())
    assert noise_points == 3 and sum(c.num_members for c in leaves) + noise_points == r.num_points == len(Y)
    for c in r.clusters:
        assert c.members is not None and c.member_distances is not None
        assert np.allclose(c.centroid, Y[c.members].mean(axis=0), atol=1e-4)
        expected = np.linalg.norm(Y[c.members] - c.centroid, axis=1)
        assert np.allclose(c.member_distances, expected, atol=1e-3)
        if c.parent_cluster_id is None:
            assert c.cluster_id.count("_sub_") == 0 and c.default_label == "Cluster " + c.cluster_id[3:]
        else:
            assert c.cluster_id.startswith(c.parent_cluster_id + "_sub_")
    assert r.clusters[3].default_label == "Cluster 0.0"
    parent = r.clusters[0]
    kids = [c for c in r.clusters if c.parent_cluster_id == "cl_0"]
    assert parent.num_members == sum(k.num_members for k in kids) == 120
    # per-point distances are to the leaf's centroid; metrics are computed on the leaves
    leaf_of = {c.label_value: c for c in leaves}
    i = 5
    own = leaf_of[int(r.labels[i])].centroid
    assert r.distances[i] == pytest.approx(np.linalg.norm(Y[i] - own), abs=1e-4)
    assert r.metrics["silhouette_score"] == pytest.approx(quality_metrics(Y, r.labels)["silhouette_score"])
    assert r.metrics["avg_cluster_size"] == pytest.approx(360 / 9)
    # the same summaries straight from the module
    again = node_summaries(Y, r.hierarchy)
    assert [s.cluster_id for s in again] == ids


def test_export_selection_takes_descendants_at_every_depth() -> None:
    records = [
        {"cluster_id": "cl_0"},
        {"cluster_id": "cl_1"},
        {"cluster_id": "cl_0_sub_0", "parent_cluster_id": "cl_0"},
        {"cluster_id": "cl_0_sub_1", "parent_cluster_id": "cl_0"},
        {"cluster_id": "cl_0_sub_1_sub_0", "parent_cluster_id": "cl_0_sub_1"},
        {"cluster_id": "cl_0_sub_1_sub_1", "parent_cluster_id": "cl_0_sub_1"},
    ]
    labels = {r["cluster_id"]: "Cluster " + r["cluster_id"][3:].replace("_sub_", ".") for r in records}
    assert select_clusters(records, labels, "cl_0") == {r["cluster_id"] for r in records} - {"cl_1"}
    assert select_clusters(records, labels, "Cluster 0.1") == {
        "cl_0_sub_1",
        "cl_0_sub_1_sub_0",
        "cl_0_sub_1_sub_1",
    }
    assert select_clusters(records, labels, "cl_1") == {"cl_1"}


def test_a_cancel_stops_the_splitting() -> None:
    X, _ = nested()
    calls: list[int] = []
    params = validate_params("kmeans", {"n_clusters": 3})
    cfg = PipelineConfig("kmeans", params, hierarchical=True)

    def should_cancel() -> bool:  # checked before validate, normalize, fit, then before each split
        calls.append(1)
        return len(calls) > 4

    with pytest.raises(RunCanceled) as exc:
        run_pipeline(X, cfg, should_cancel=should_cancel)
    assert exc.value.stage == "fit" and len(calls) == 5
