"""The k-means engine: seeding, sample restarts, the full-data polish and both Lloyd backends."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from core.algorithms import kmeans as kmeans_module
from core.algorithms import kmeans_engine as ke
from core.algorithms import validate_params
from core.algorithms.kmeans import kmeans

BACKENDS = ["sklearn", pytest.param("onedal", marks=pytest.mark.skipif(
    ke.default_backend() != "onedal", reason="scikit-learn-intelex is not installed"))]  # fmt: skip


def blobs(n=3000, d=16, k=6, seed=0, std=0.6):
    X, y = make_blobs(n_samples=n, n_features=d, centers=k, cluster_std=std, random_state=seed)
    return X.astype(np.float32), y


def test_kmeans_plusplus_picks_distinct_rows_reproducibly():
    X, _ = blobs()
    a = ke.kmeans_plusplus(X, 6, np.random.default_rng(3))
    b = ke.kmeans_plusplus(X, 6, np.random.default_rng(3))
    assert np.array_equal(a, b)
    rows = {tuple(r) for r in X}
    assert all(tuple(c) in rows for c in a)
    assert len({tuple(c) for c in a}) == 6


def test_kmeans_plusplus_spreads_over_well_separated_blobs():
    X, y = blobs(std=0.1)
    C = ke.kmeans_plusplus(X, 6, np.random.default_rng(0))
    nearest = np.argmin(((X[:, None, :] - C[None]) ** 2).sum(-1), axis=0)  # the row each centre is
    assert len(set(y[nearest])) == 6  # one seed per blob: the D² weighting works


def test_kmeans_plusplus_with_fewer_distinct_points_than_clusters():
    X = np.repeat(np.eye(3, dtype=np.float32), 10, axis=0)
    C = ke.kmeans_plusplus(X, 5, np.random.default_rng(0))
    assert C.shape == (5, 3)
    assert {tuple(r) for r in C} <= {tuple(r) for r in X}


def _numpy_seeding(X, k, rng):
    from core.threads import one_blas_thread

    with one_blas_thread():
        return ke._kmeans_plusplus(X, k, rng)


@pytest.mark.parametrize(
    ("n", "d", "k", "writable"), [(3000, 16, 6, True), (5000, 96, 40, False), (40, 3, 1, True)]
)
def test_compiled_seeding_equals_the_numpy_version(n, d, k, writable):
    """The compiled seeding (no GIL) picks the numpy version's rows and leaves the generator where
    it leaves it, also on a read-only (kept) matrix."""
    X, _ = blobs(n=n, d=d, k=max(k, 2), std=1.5)
    X.flags.writeable = writable
    compiled, reference = np.random.default_rng(5), np.random.default_rng(5)
    assert np.array_equal(ke.kmeans_plusplus(X, k, compiled), _numpy_seeding(X, k, reference))
    assert compiled.random() == reference.random()
    from core.algorithms import kmeans_seeding

    assert kmeans_seeding.greedy_rows.targetoptions["nogil"]


def test_a_zero_potential_seeds_the_numpy_way_from_the_same_state():
    X = np.repeat(np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32), 10, axis=0)
    from core.algorithms import kmeans_seeding

    rows, complete = kmeans_seeding.greedy_rows(
        X, np.einsum("ij,ij->i", X, X), 0, np.random.default_rng(1).random((4, 3))
    )
    assert not complete and len(rows) == 3  # three distinct points, then nothing is left to spread
    compiled, reference = np.random.default_rng(2), np.random.default_rng(2)
    assert np.array_equal(ke.kmeans_plusplus(X, 5, compiled), _numpy_seeding(X, 5, reference))
    assert compiled.random() == reference.random()


@pytest.mark.parametrize("backend", BACKENDS)
def test_lloyd_from_given_centres_matches_scikit_learn(backend):
    X, _ = blobs(n=4000, d=32, k=8, std=2.0)
    C0 = ke.kmeans_plusplus(X, 8, np.random.default_rng(1))
    labels, centers, inertia, n_iter = ke.lloyd(X, C0, max_iter=300, tol=1e-4, backend=backend)
    ref = KMeans(8, init=C0, n_init=1, max_iter=300, tol=1e-4).fit(X)
    assert np.mean(labels == ref.labels_) > 0.999
    assert inertia == pytest.approx(ref.inertia_, rel=1e-4)
    assert centers.dtype == np.float32 and centers.shape == (8, 32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fit_on_a_sample_then_polish_recovers_the_blobs(backend):
    X, y = blobs(n=6000, d=16, k=6, std=0.5)
    out = ke.fit(X, 6, seed=0, sample_size=1000, backend=backend)
    assert out.sample_size == max(1000, ke.SAMPLE_PER_CLUSTER * 6)
    assert out.sample_size < X.shape[0]
    assert 1 <= out.n_iter <= ke.POLISH_ITER
    assert out.labels.shape == (6000,) and out.labels.dtype == np.int64
    assert adjusted_rand_score(y, out.labels) == 1.0
    assert out.backend == backend


def test_more_restarts_never_end_worse_on_the_sample():
    X, _ = blobs(n=8000, d=8, k=12, std=3.0, seed=4)
    one = ke.fit(X, 12, seed=5, n_init=1, sample_size=2000, backend="sklearn")
    many = ke.fit(X, 12, seed=5, n_init=8, sample_size=2000, backend="sklearn")
    # the first restart of `many` is `one`'s; the winner has the lowest sample inertia, so its
    # polished full-data inertia is at worst a hair above (the polish differs only by start)
    assert many.inertia <= one.inertia * 1.01


def test_fit_is_reproducible_per_seed():
    X, _ = blobs(n=5000, std=2.5)
    a = ke.fit(X, 6, seed=9, sample_size=1000, backend="sklearn")
    b = ke.fit(X, 6, seed=9, sample_size=1000, backend="sklearn")
    assert np.array_equal(a.labels, b.labels)


def test_random_init_uses_rows_of_the_data():
    X, y = blobs(n=4000, std=0.3)
    out = ke.fit(X, 6, seed=0, init="random", n_init=4, sample_size=1000, backend="sklearn")
    assert adjusted_rand_score(y, out.labels) > 0.9


def test_registered_kmeans_switches_to_the_engine_above_the_exact_size(monkeypatch):
    X, y = blobs(n=3000, d=16, k=5, std=0.5)
    p = validate_params("kmeans", {"n_clusters": 5})
    exact = kmeans(X, p, 42)
    assert "engine" not in exact.used
    monkeypatch.setattr(kmeans_module, "EXACT_MAX_CELLS", 1000)
    fitted = kmeans(X, p, 42)
    assert fitted.used["engine"]["backend"] == ke.default_backend()
    assert adjusted_rand_score(y, fitted.labels) == 1.0
