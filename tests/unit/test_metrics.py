import math

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import silhouette_score

from core.centroids import compute_centroids, cosine_stats, cosine_to_centroids, distances_to_centroids
from core.metrics import quality_metrics

SCORES = ("silhouette_score", "davies_bouldin_index", "calinski_harabasz_score")


def blobs(n=300, centers=3, seed=0):
    X, y = make_blobs(n_samples=n, centers=centers, n_features=5, cluster_std=0.6, random_state=seed)
    return X.astype(np.float32), y.astype(np.int64)


def assert_plain(metrics):
    for key, value in metrics.items():
        assert value is None or type(value) in (float, int, str, bool), (key, type(value))
        if isinstance(value, float):
            assert math.isfinite(value), key


def test_well_separated_blobs():
    X, y = blobs()
    m = quality_metrics(X, y)
    assert_plain(m)
    assert 0.5 < m["silhouette_score"] <= 1.0
    assert m["davies_bouldin_index"] >= 0
    assert m["calinski_harabasz_score"] > 0
    assert m["avg_cluster_size"] == 100.0
    assert m["noise_ratio"] == 0.0
    assert m["cluster_size_entropy"] == pytest.approx(1.0)
    assert m["degenerate"] is False
    assert "degenerate_detail" not in m
    assert m["should_recluster"] == 0
    assert type(m["should_recluster"]) is int


def test_single_cluster():
    X, _ = blobs()
    m = quality_metrics(X, np.zeros(len(X), dtype=np.int64))
    assert_plain(m)
    assert all(m[s] is None for s in SCORES)
    assert m["degenerate"] == "single_cluster"
    assert m["degenerate_detail"]
    assert m["should_recluster"] == 1
    assert m["cluster_size_entropy"] == 0.0


def test_dominant_cluster():
    X, _ = blobs(n=200)
    labels = np.zeros(200, dtype=np.int64)
    labels[:10] = 1  # 95% in cluster 0
    m = quality_metrics(X, labels)
    assert_plain(m)
    assert m["degenerate"] == "dominant_cluster"
    assert m["should_recluster"] == 1
    assert m["silhouette_score"] is not None


def test_all_noise():
    X, _ = blobs(n=50)
    m = quality_metrics(X, np.full(50, -1, dtype=np.int64))
    assert_plain(m)
    assert all(m[s] is None for s in SCORES)
    assert m["degenerate"] == "all_noise"
    assert m["noise_ratio"] == 1.0
    assert m["avg_cluster_size"] == 0.0
    assert m["should_recluster"] == 1


def test_all_singletons():
    X, _ = blobs(n=6)
    m = quality_metrics(X, np.arange(6, dtype=np.int64))
    assert_plain(m)
    assert m["degenerate"] == "all_singletons"
    assert m["silhouette_score"] is None  # k = points, outside 2 <= k <= points - 1


def test_noise_is_excluded():
    X, y = blobs()
    labels = y.copy()
    labels[::10] = -1
    m = quality_metrics(X, labels)
    assert_plain(m)
    assert m["noise_ratio"] == pytest.approx(0.1)
    expected = silhouette_score(X[labels != -1], labels[labels != -1])
    assert m["silhouette_score"] == pytest.approx(expected, rel=1e-5)


def test_sampled_silhouette_is_deterministic():
    X, y = blobs(n=600)
    a = quality_metrics(X, y, sample_size=100, seed=1)
    b = quality_metrics(X, y, sample_size=100, seed=1)
    full = quality_metrics(X, y)
    assert_plain(a)
    assert a["silhouette_score"] == b["silhouette_score"]
    assert a["silhouette_score"] != full["silhouette_score"]
    assert a["silhouette_score"] == pytest.approx(full["silhouette_score"], abs=0.1)


def test_identical_points_give_no_nan():
    X = np.ones((20, 4), dtype=np.float32)
    labels = np.repeat([0, 1], 10).astype(np.int64)
    m = quality_metrics(X, labels)
    assert_plain(m)


# --- centroids ---


@pytest.mark.parametrize("method", ["mean", "median", "medoid"])
def test_centroids(method):
    X, y = blobs(n=90)
    y[:5] = -1
    cluster_labels, C = compute_centroids(X, y, method)
    np.testing.assert_array_equal(cluster_labels, [0, 1, 2])
    assert C.dtype == np.float32 and C.shape == (3, X.shape[1])
    if method == "mean":
        np.testing.assert_allclose(C[1], X[y == 1].mean(axis=0), rtol=1e-5)
    if method == "medoid":
        assert any(np.array_equal(C[0], row) for row in X[y == 0])


def test_centroids_unknown_method():
    X, y = blobs(n=30)
    with pytest.raises(ValueError, match="centroid method"):
        compute_centroids(X, y, "mode")


def test_distances_and_cosines():
    X, y = blobs(n=60)
    y[0] = -1
    cluster_labels, C = compute_centroids(X, y)
    d = distances_to_centroids(X, y, cluster_labels, C)
    assert d.dtype == np.float32 and d.shape == (60,)
    assert np.isnan(d[0]) and np.isfinite(d[1:]).all()
    i = 5
    assert d[i] == pytest.approx(np.linalg.norm(X[i] - C[y[i]]), rel=1e-5)

    cos = cosine_to_centroids(X, y, cluster_labels, C)
    assert np.isnan(cos[0]) and (np.abs(cos[1:]) <= 1).all()
    means, mins = cosine_stats(cos, y, cluster_labels)
    assert means.shape == mins.shape == (3,)
    assert (mins <= means).all()


def test_cosine_of_zero_vector_is_zero():
    X = np.array([[0, 0], [0, 0], [1, 0], [1, 0.1]], dtype=np.float32)
    y = np.array([0, 0, 1, 1], dtype=np.int64)
    cluster_labels, C = compute_centroids(X, y)
    cos = cosine_to_centroids(X, y, cluster_labels, C)
    assert cos[0] == 0.0 and cos[2] > 0.99


def test_no_clusters_gives_empty_centroids():
    X, _ = blobs(n=10)
    cluster_labels, C = compute_centroids(X, np.full(10, -1, dtype=np.int64))
    assert cluster_labels.shape == (0,) and C.shape == (0, X.shape[1])
    assert np.isnan(distances_to_centroids(X, np.full(10, -1), cluster_labels, C)).all()


def test_sample_size_defaults_agree():
    """The setting, the pipeline and quality_metrics default to the one documented sample size."""
    from core.metrics import SILHOUETTE_SAMPLE
    from core.pipeline import PipelineConfig
    from core.settings import Settings

    assert Settings.model_fields["metrics_sample_size"].default == SILHOUETTE_SAMPLE
    assert PipelineConfig.__dataclass_fields__["metrics_sample_size"].default == SILHOUETTE_SAMPLE


def test_mean_geometry_equals_centroids_point_stats_and_scores():
    """The pipeline's two-pass geometry gives what the separate functions and scikit-learn give."""
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score

    from core.centroids import mean_geometry, point_stats

    X, y = blobs(n=3000, centers=5, seed=3)
    y[::7] = -1  # noise rows are skipped by both passes
    g = mean_geometry(X, y)
    cluster_labels, C = compute_centroids(X, y)
    np.testing.assert_array_equal(g.cluster_labels, cluster_labels)
    np.testing.assert_allclose(g.centroids, C, rtol=1e-6, atol=1e-6)
    d, cos = point_stats(X, y, cluster_labels, C)
    np.testing.assert_allclose(g.distances, d, rtol=1e-5, equal_nan=True)
    np.testing.assert_allclose(g.cosines, cos, rtol=1e-5, atol=1e-6, equal_nan=True)
    assert g.counts.tolist() == [int((y == c).sum()) for c in cluster_labels]
    m = quality_metrics(X, y, geometry=g)
    keep = y != -1
    X64 = X[keep].astype(np.float64)
    assert m["davies_bouldin_index"] == pytest.approx(davies_bouldin_score(X64, y[keep]), rel=1e-5)
    assert m["calinski_harabasz_score"] == pytest.approx(calinski_harabasz_score(X64, y[keep]), rel=1e-5)
    assert m == quality_metrics(X, y)


@pytest.mark.parametrize(
    "labels",
    [
        [0, 2, 2, -1, 5, 0, 5, 5],  # gaps between labels, noise
        [-1, -1, -1],  # all noise
        [3, 3, 3],  # one cluster, not label 0
        [10**9, 0, -1, 10**9],  # far beyond N: the sorting path
        [-3, 0, -3, 1],  # below -1 is a cluster like any other (the sorting path)
    ],
)
def test_mean_geometry_label_rows_match_the_sorting_path(labels):
    """The bincount lookup of cluster rows gives what np.unique + searchsorted give."""
    from core.centroids import _centroid_index, _label_rows

    y = np.asarray(labels, dtype=np.int64)
    cluster_labels, idx, counts = _label_rows(y)
    expected = np.unique(y[y != -1]).astype(np.int64)
    np.testing.assert_array_equal(cluster_labels, expected)
    np.testing.assert_array_equal(idx, _centroid_index(y, expected))
    assert counts.tolist() == [int((y == c).sum()) for c in expected]
    assert cluster_labels.dtype == idx.dtype == counts.dtype == np.int64


@pytest.mark.parametrize(
    ("labels", "values"),
    [
        ([0, 2, 2, -1, 5, 0, 5, 5], [5, 0, 2]),  # values in any order (hierarchical nodes), noise
        ([0, 2, 7, -1], [2, 0]),  # a label among none of the values: -1, as noise
        ([-1, -1], [3]),
        ([4, 4], []),  # no clusters
        ([10**9, 0, -1, 10**9], [0, 10**9]),  # far beyond N: the sorting path
        ([-3, 0, -3, 1], [1, -3, 0]),  # below -1: the sorting path
    ],
)
def test_positions_in_finds_each_label_among_the_values(labels, values):
    from core.centroids import positions_in

    y = np.asarray(labels, dtype=np.int64)
    v = np.asarray(values, dtype=np.int64)
    expected = [values.index(label) if label in values else -1 for label in labels]
    assert positions_in(y, v).tolist() == expected
    assert positions_in(y, v).dtype == np.int64
