import math

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from core.algorithms import validate_params
from core.errors import RunDataError, ValidationFailed
from core.pipeline import PipelineConfig, RunCanceled, l2_normalize, run_pipeline


def blobs(n=240, centers=3, seed=0):
    X, y = make_blobs(n_samples=n, centers=centers, n_features=6, cluster_std=0.4, random_state=seed)
    return X.astype(np.float32), y


def make_config(**overrides):
    cfg = {"algorithm": "kmeans", "params": validate_params("kmeans", {"n_clusters": 3})}
    cfg.update(overrides)
    return PipelineConfig(**cfg)


def test_result_shape():
    X, y = blobs()
    res = run_pipeline(X, make_config())
    assert res.labels.dtype == np.int64 and res.labels.shape == (240,)
    assert adjusted_rand_score(y, res.labels) > 0.95
    assert res.num_points == 240 and res.num_clusters == 3
    assert [c.label_value for c in res.clusters] == [0, 1, 2]
    assert [c.cluster_id for c in res.clusters] == ["cl_0", "cl_1", "cl_2"]
    assert sum(c.num_members for c in res.clusters) == 240
    for c in res.clusters:
        assert c.centroid.dtype == np.float32 and c.centroid.shape == (6,)
        assert -1 <= c.min_cosine_similarity <= c.mean_cosine_similarity <= 1
    assert res.distances.dtype == np.float32 and np.isfinite(res.distances).all()
    assert res.metrics["degenerate"] is False
    assert res.metrics["silhouette_score"] > 0.5
    assert 0 < res.metrics["min_cosine_to_centroid"] <= res.metrics["mean_cosine_to_centroid"] <= 1
    for value in res.metrics.values():
        assert not (isinstance(value, float) and not math.isfinite(value))


def test_normalize_makes_unit_centroid_space():
    X, _ = blobs()
    res = run_pipeline(X, make_config(normalize=True))
    assert all(np.linalg.norm(c.centroid) <= 1.0 + 1e-5 for c in res.clusters)


def test_l2_normalize_keeps_zero_rows():
    X = np.array([[3, 4], [0, 0]], dtype=np.float32)
    np.testing.assert_allclose(l2_normalize(X), [[0.6, 0.8], [0, 0]])


def test_same_seed_same_result():
    X, _ = blobs()
    a = run_pipeline(X, make_config(seed=5))
    b = run_pipeline(X, make_config(seed=5))
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.metrics == b.metrics


def test_no_metrics():
    X, _ = blobs()
    assert run_pipeline(X, make_config(compute_metrics=False)).metrics == {}


def test_progress_increasing_and_ends_at_one():
    X, _ = blobs()
    calls = []
    run_pipeline(X, make_config(), progress=lambda stage, f: calls.append((stage, f)))
    fractions = [f for _, f in calls]
    assert fractions == sorted(fractions) and len(set(fractions)) == len(fractions)
    assert fractions[0] > 0 and fractions[-1] == 1.0
    assert [s for s, _ in calls][:3] == ["validate", "normalize", "fit"]


@pytest.mark.parametrize("after", [0, 2, 5])
def test_cancellation(after):
    X, _ = blobs()
    calls = []
    checks = iter(range(100))
    with pytest.raises(RunCanceled):
        run_pipeline(
            X,
            make_config(),
            progress=lambda stage, f: calls.append(stage),
            should_cancel=lambda: next(checks) >= after,
        )
    assert len(calls) == after


@pytest.mark.parametrize(
    ("X", "match"),
    [
        (np.zeros(5, dtype=np.float32), "2-D"),
        (np.zeros((1, 3), dtype=np.float32), "at least 2 points"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN or infinite"),
        (np.array([[1.0, np.inf], [0.0, 1.0]]), "NaN or infinite"),
        (np.zeros((3, 0), dtype=np.float32), "no dimensions"),
        (np.array([["a", "b"], ["c", "d"]]), "real numbers"),
    ],
)
@pytest.mark.parametrize("owns_input", [False, True])
def test_bad_input(X, match, owns_input):
    config = make_config(params=validate_params("kmeans", {"n_clusters": 2}), owns_input=owns_input)
    with pytest.raises(RunDataError, match=match):
        run_pipeline(X.copy(), config)


def test_n_clusters_exceeds_points_is_run_data_error():
    X, _ = blobs(n=4)
    with pytest.raises(RunDataError, match="exceeds the number of points"):
        run_pipeline(X, make_config(params=validate_params("kmeans", None)))


def test_unknown_algorithm():
    X, _ = blobs()
    with pytest.raises(ValidationFailed):
        run_pipeline(X, make_config(algorithm="nope"))


def test_degenerate_data_still_completes():
    X = np.ones((10, 3), dtype=np.float32)
    res = run_pipeline(X, make_config(params=validate_params("kmeans", {"n_clusters": 2})))
    assert res.num_points == 10
    assert res.metrics["degenerate"] in ("single_cluster", "all_singletons", "dominant_cluster")
    assert res.metrics["should_recluster"] == 1


def test_huge_finite_vectors_are_valid_and_normalised():
    """float32 squares overflow above ~1e19: the norms are float64, so such rows are finite data."""
    from core.pipeline import checked_input

    X = np.array([[3e20, 4e20], [1.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    Y, sq = checked_input(X)
    assert sq[0] == pytest.approx(25e40, rel=1e-6) and sq[2] == 4.0
    np.testing.assert_allclose(l2_normalize(Y, sq_norms=sq), [[0.6, 0.8], [1, 0], [0, 1]], rtol=1e-6)
    bad = X.copy()
    bad[1, 1] = np.nan
    with pytest.raises(RunDataError, match=r"NaN or infinite values \(1 of 3 points\)"):
        checked_input(bad)


def test_silhouette_sample_is_computed_beside_the_fit(monkeypatch):
    """Algorithms that label every point get the silhouette from the sample distances computed
    while they fit; noise algorithms draw it after the fit, over the clustered points."""
    import core.metrics as metrics

    X, _ = blobs(n=600)
    expected = run_pipeline(X, make_config()).metrics["silhouette_score"]
    seen: list[str] = []
    after_fit = metrics.silhouette
    monkeypatch.setattr(metrics, "silhouette", lambda *a: seen.append("after") or after_fit(*a))
    res = run_pipeline(X, make_config())
    assert seen == [] and res.metrics["silhouette_score"] == pytest.approx(expected, abs=1e-6)
    dbscan = make_config(algorithm="dbscan", params=validate_params("dbscan", {"eps": 0.3, "min_samples": 5}))
    assert run_pipeline(X, dbscan).metrics["silhouette_score"] is not None and seen == ["after"]


def test_owned_input_is_checked_and_normalised_in_one_pass_with_the_same_result():
    """A caller that hands its matrix over (owns_input: every worker run) gets the checks and the
    normalisation as one in-place pass (core.row_kernels.normalize_rows): the same bits as the
    two passes, so the same run either way."""
    X, _ = blobs(n=3000)
    X[7] = 0.0  # a zero row stays zero
    owned = X.copy()
    seen: list[np.ndarray] = []
    a = run_pipeline(X, make_config())
    b = run_pipeline(owned, make_config(owns_input=True), on_normalized=seen.append)
    assert seen[0] is owned  # scaled in place, not copied
    np.testing.assert_array_equal(owned, l2_normalize(X))
    assert not owned[7].any()
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.distances, b.distances)
    assert a.metrics == b.metrics


def test_normalize_rows_equals_norms_then_scaling():
    from core import row_kernels

    rng = np.random.default_rng(4)
    for shape in [(9000, 17), (5, 768)]:
        X = rng.standard_normal(shape).astype(np.float32)
        X[1] = 0.0
        X[2, 0] = np.nan
        two = X.copy()
        sq = row_kernels.sq_norms(two, 2)
        norms = np.sqrt(sq)
        scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0).astype(np.float32)
        scale[2] = 1.0  # a NaN row is left as it is
        row_kernels.scale_rows(two, scale, 2)
        one = X.copy()
        np.testing.assert_array_equal(row_kernels.normalize_rows(one, 2), sq)
        np.testing.assert_array_equal(one, two)
    with pytest.raises(ValueError, match="writable float32"):
        row_kernels.normalize_rows(np.ones((3, 2)), 1)
