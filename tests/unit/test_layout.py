"""core.layout (PCA layouts and their stability across re-runs) and core.scatter (the point sample)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import special_ortho_group

from core.layout import (
    Previous,
    centroid_coordinates,
    compute_layout,
    fit_projection,
    procrustes,
    top_eigenpairs,
)
from core.scatter import points_payload, quotas, stratified_sample


def data(n: int = 300, d: int = 16, seed: int = 0) -> np.ndarray:
    """Anisotropic Gaussian: the first axes carry most of the variance."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, d)) * np.geomspace(8, 0.1, d)).astype(np.float32)


@pytest.mark.parametrize("k", [2, 3])
def test_fresh_layout_is_pca_scaled_to_unit_range(k: int) -> None:
    X = data()
    layout = compute_layout(X, k)
    assert layout.applied == "none" and layout.reason is None
    assert layout.coordinates.shape == (300, k) and layout.coordinates.dtype == np.float32
    assert np.isclose(np.abs(layout.coordinates).max(), 1.0, atol=1e-6)
    # the same subspace as scikit-learn's PCA, up to sign and one common scale
    from sklearn.decomposition import PCA

    ref = PCA(n_components=k).fit_transform(X.astype(np.float64))
    for j in range(k):
        corr = np.corrcoef(ref[:, j], layout.coordinates[:, j])[0, 1]
        assert abs(corr) > 0.9999
    ratio = np.abs(layout.coordinates).max(axis=0) / np.abs(ref).max(axis=0).max()
    assert ratio.max() <= 1.0 + 1e-6
    # deterministic, including the signs
    again = compute_layout(X.copy(), k)
    np.testing.assert_array_equal(again.coordinates, layout.coordinates)


def test_large_inputs_fit_on_a_sample_and_project_everything() -> None:
    X = data(n=5000)
    full = fit_projection(X, 2, fit_sample=10_000)
    sampled = fit_projection(X, 2, fit_sample=1000)
    a, b = full.apply(X), sampled.apply(X)
    for j in range(2):  # the sample finds the same axes
        assert abs(np.corrcoef(a[:, j], b[:, j])[0, 1]) > 0.99


def test_degenerate_inputs_give_finite_coordinates() -> None:
    one_dim = np.arange(10, dtype=np.float32).reshape(-1, 1)
    layout = compute_layout(one_dim, 3)
    assert layout.coordinates.shape == (10, 3)
    assert np.isfinite(layout.coordinates).all() and (layout.coordinates[:, 1:] == 0).all()
    same = np.ones((4, 5), dtype=np.float32)
    assert (compute_layout(same, 2).coordinates == 0).all()


def test_transform_reuses_the_previous_frame() -> None:
    X = data()
    first = compute_layout(X, 2)
    grown = np.concatenate([X, data(n=50, seed=9)])
    prev = Previous(run_id="run_a", projection=first.projection)
    second = compute_layout(grown, 2, mode="transform", previous=prev)
    assert second.applied == "transform" and second.previous_run_id == "run_a"
    np.testing.assert_allclose(second.coordinates[:300], first.coordinates, atol=1e-6)
    fresh = compute_layout(grown, 2)
    assert not np.allclose(fresh.coordinates[:300], first.coordinates, atol=1e-3)


def test_transform_falls_back_when_the_frame_does_not_fit() -> None:
    X = data()
    first = compute_layout(X, 2)
    none = compute_layout(X, 2, mode="transform", previous=None)
    assert none.applied == "none" and "no previous completed run" in (none.reason or "")
    wider = compute_layout(data(d=20), 2, mode="transform", previous=Previous("run_a", first.projection))
    assert wider.applied == "none" and "16-dimensional" in (wider.reason or "")
    in_3d = compute_layout(X, 3, mode="transform", previous=Previous("run_a", first.projection))
    assert in_3d.applied == "none" and "2-D layout" in (in_3d.reason or "")


@pytest.mark.parametrize("k", [2, 3])
def test_align_recovers_a_rotated_reflected_scaled_layout(k: int) -> None:
    X = data()
    ids = np.asarray([f"d{i:04d}" for i in range(len(X))])
    fresh = compute_layout(X, k).coordinates
    rot = special_ortho_group.rvs(k, random_state=3)
    rot[:, 0] *= -1  # a reflection too
    target = 2.5 * fresh @ rot + np.arange(1, k + 1)
    # the previous run saw the documents in another order, and only 200 of them
    pick = np.random.default_rng(1).permutation(len(X))[:200]
    prev = Previous(run_id="run_a", document_ids=ids[pick], coordinates=target[pick].astype(np.float32))
    aligned = compute_layout(X, k, mode="align", previous=prev, document_ids=ids)
    assert aligned.applied == "aligned" and aligned.reason is None
    np.testing.assert_allclose(aligned.coordinates, target, atol=1e-4)
    # the stored projection reproduces the aligned coordinates (a later `transform` uses it)
    np.testing.assert_allclose(aligned.projection.apply(X), aligned.coordinates, atol=1e-5)


def test_align_needs_shared_documents() -> None:
    X = data()
    ids = np.asarray([f"d{i}" for i in range(len(X))])
    shared = np.asarray(["x1", "x2", "d1"])
    prev = Previous("run_a", document_ids=shared, coordinates=np.zeros((3, 2), np.float32))
    out = compute_layout(X, 2, mode="align", previous=prev, document_ids=ids)
    assert out.applied == "none" and "shares 1 documents" in (out.reason or "")
    fresh = compute_layout(X, 2)
    np.testing.assert_array_equal(out.coordinates, fresh.coordinates)


def test_procrustes_of_a_point_cloud_without_spread_is_none() -> None:
    assert procrustes(np.ones((5, 2)), np.random.default_rng(0).normal(size=(5, 2))) is None


def test_centroid_coordinates_are_member_means() -> None:
    coords = np.asarray([[0, 0], [2, 2], [10, 0], [5, 5]], dtype=np.float32)
    labels = np.asarray([3, 3, 7, -1])
    out = centroid_coordinates(coords, labels, np.asarray([7, 3, 9]))
    np.testing.assert_allclose(out[:2], [[10, 0], [1, 1]])
    assert np.isnan(out[2]).all()


def test_quotas_keep_every_cluster_and_respect_the_budget() -> None:
    sizes = np.asarray([9000, 900, 90, 9, 1])
    q = quotas(sizes, 100)
    assert q.sum() == 100 and (q >= 1).all() and (q <= sizes).all()
    assert q[0] > q[1] > q[2]
    assert quotas(sizes, 3).tolist() == [1, 1, 1, 0, 0]  # fewer points than clusters: the biggest
    assert quotas(sizes, 20_000).tolist() == sizes.tolist()


def test_stratified_sample_is_seeded_and_keeps_small_clusters() -> None:
    groups = np.concatenate([np.zeros(10_000, int), np.ones(20, int), np.full(3, 2)])
    np.random.default_rng(0).shuffle(groups)
    keep = stratified_sample(groups, 500, seed=42)
    assert keep is not None and len(keep) == 500 and len(np.unique(keep)) == 500
    assert (np.diff(keep) > 0).all()
    assert set(groups[keep].tolist()) == {0, 1, 2}
    np.testing.assert_array_equal(keep, stratified_sample(groups, 500, seed=42))
    assert not np.array_equal(keep, stratified_sample(groups, 500, seed=7))
    assert stratified_sample(groups, 20_000) is None


def test_points_payload_shapes() -> None:
    coords = np.asarray([[0.1234567891, 1.0], [-0.5, 0.25]], dtype=np.float32)
    rows = points_payload(["a", "b"], ["cl_0", None], coords, compact=False)
    assert rows == [
        {"document_id": "a", "cluster_id": "cl_0", "x": 0.123457, "y": 1.0},
        {"document_id": "b", "cluster_id": None, "x": -0.5, "y": 0.25},
    ]
    cols = points_payload(["a", "b"], ["cl_0", None], coords, compact=True)
    assert cols == {
        "x": [0.123457, -0.5],
        "y": [1.0, 0.25],
        "cluster_ids": ["cl_0", None],
        "document_ids": ["a", "b"],
    }


@pytest.mark.parametrize("d,k", [(30, 2), (200, 2), (768, 3)])
def test_top_eigenpairs_match_a_full_eigensolver_when_the_top_stands_out(d: int, k: int) -> None:
    import scipy.linalg

    rng = np.random.default_rng(d)
    spread = np.concatenate([[9.0, 6.0, 4.0][:k], np.linspace(1.0, 0.1, d - k)])
    A = rng.standard_normal((2 * d, d)) * spread
    cov = A.T @ A
    values, vectors = top_eigenpairs(cov, k)
    ref_values, ref_vectors = scipy.linalg.eigh(cov, subset_by_index=[d - k, d - 1])
    np.testing.assert_allclose(values, ref_values[::-1], rtol=1e-7)
    np.testing.assert_allclose(np.abs((vectors * ref_vectors[:, ::-1]).sum(axis=0)), 1.0, atol=1e-7)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(k), atol=1e-9)


def test_top_eigenpairs_of_rank_deficient_and_zero_matrices() -> None:
    rng = np.random.default_rng(3)
    B = rng.standard_normal((1, 500))  # rank 1: the second value is 0
    values, vectors = top_eigenpairs(B.T @ B, 2)
    np.testing.assert_allclose(values, [float((B * B).sum()), 0.0], atol=1e-8)
    np.testing.assert_allclose(abs(float(vectors[:, 0] @ B[0])) / np.linalg.norm(B), 1.0, atol=1e-9)
    values, vectors = top_eigenpairs(np.zeros((500, 500)), 2)
    assert values.tolist() == [0.0, 0.0] and np.isfinite(vectors).all()
