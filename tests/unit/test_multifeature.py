"""core.multifeature: the block rule, weight learning and membership-overlap hierarchy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.cluster import KMeans

from core import multifeature as mf


def _blobs(n_per: int, dims: int, centers: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    dirs = np.eye(dims)[:centers] * 10.0
    X = np.concatenate([d + rng.normal(0, 0.3, (n_per, dims)) for d in dirs]).astype(np.float32)
    return X, np.repeat(np.arange(centers), n_per)


def _kmeans(k: int) -> mf.Fit:
    return lambda X: KMeans(n_clusters=k, n_init=4, random_state=0).fit_predict(X).astype(np.int64)


def test_combine_blocks_follow_the_weights() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(5, 4)).astype(np.float32) * 7
    X = mf.combine([a, b], [3.0, 1.0], normalize=True)
    assert X.shape == (5, 7) and X.dtype == np.float32
    # each block has unit length scaled by sqrt(w / Σw): 0.75 and 0.25 of every row's squared length
    assert np.allclose((X[:, :3] ** 2).sum(1), 0.75, atol=1e-5)
    assert np.allclose((X[:, 3:] ** 2).sum(1), 0.25, atol=1e-5)
    # squared distances are the weighted sum of the per-block distances of the normalised blocks
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    d = ((X[0] - X[1]) ** 2).sum()
    expected = 0.75 * ((an[0] - an[1]) ** 2).sum() + 0.25 * ((bn[0] - bn[1]) ** 2).sum()
    assert math.isclose(d, expected, rel_tol=1e-5)
    # without normalisation the blocks keep their scale
    raw = mf.combine([a, b], [1.0, 1.0], normalize=False)
    assert np.allclose(raw[:, 3:], b * math.sqrt(0.5), atol=1e-5)


def test_weights_decide_which_feature_clusters() -> None:
    """Two features with different groupings: the heavier block's grouping wins."""
    a, truth_a = _blobs(30, 6, 3, seed=2)
    perm = np.random.default_rng(3).permutation(len(a))
    b, truth_b = _blobs(30, 6, 3, seed=4)
    b, truth_b = b[perm], truth_b[perm]  # another grouping of the same documents
    from sklearn.metrics import adjusted_rand_score as ari

    fit = _kmeans(3)
    towards_a = fit(mf.combine([a, b], [0.95, 0.05], normalize=True))
    towards_b = fit(mf.combine([a, b], [0.05, 0.95], normalize=True))
    assert ari(truth_a, towards_a) == 1.0 and ari(truth_b, towards_a) < 0.2
    assert ari(truth_b, towards_b) == 1.0 and ari(truth_a, towards_b) < 0.2


def test_lattice_sizes_and_sums() -> None:
    two = mf.lattice(2, 20)
    assert len(two) == 20 and (0.0, 1.0) in two and (1.0, 0.0) in two
    three = mf.lattice(3, 20)
    assert len(three) == 15  # m = 4: C(6, 2)
    for c in three:
        assert math.isclose(sum(c), 1.0) and min(c) >= 0
    assert len(mf.lattice(8, 5)) == 8  # m = 1 at least: every single feature


@pytest.mark.parametrize("metric", ["silhouette", "davies_bouldin", "calinski_harabasz"])
def test_learn_weights_finds_the_informative_feature(metric: str) -> None:
    informative, _ = _blobs(40, 8, 3, seed=5)
    noise = np.random.default_rng(6).normal(size=(len(informative), 8)).astype(np.float32)
    for blocks, strong in (([informative, noise], 0), ([noise, informative], 1)):
        learned = mf.learn_weights(blocks, _kmeans(3), normalize=True, metric=metric, max_iterations=11)
        assert learned.candidates == 11 and learned.sample_size == len(informative)
        assert learned.weights[strong] >= 0.8, learned
        assert learned.score is not None
        even = mf.combine(blocks, [0.5, 0.5], normalize=True)
        equal = mf.score(even, _kmeans(3)(even), metric)
        assert equal is not None
        assert (learned.score >= equal) if mf.HIGHER_IS_BETTER[metric] else (learned.score <= equal)


def test_learn_weights_samples_with_a_seed() -> None:
    a, _ = _blobs(100, 4, 2, seed=7)
    b = np.random.default_rng(8).normal(size=a.shape).astype(np.float32)
    first = mf.learn_weights([a, b], _kmeans(2), normalize=True, sample_size=50, seed=3, max_iterations=5)
    again = mf.learn_weights([a, b], _kmeans(2), normalize=True, sample_size=50, seed=3, max_iterations=5)
    assert first == again and first.sample_size == 50


def test_score_is_none_without_two_clusters() -> None:
    X = np.random.default_rng(0).normal(size=(10, 2))
    assert mf.score(X, np.zeros(10, dtype=np.int64), "silhouette") is None
    assert mf.score(X, np.full(10, -1, dtype=np.int64), "davies_bouldin") is None


def test_hierarchy_from_nested_clusterings() -> None:
    coarse = np.array([0] * 6 + [1] * 6)  # feature 0: two groups
    fine = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, -1])  # feature 1: each group split in two
    rels = mf.hierarchy([coarse, fine], ["f0_", "f1_"])
    pairs = {(r["parent_cluster_id"], r["child_cluster_id"]) for r in rels}
    assert pairs == {
        ("f0_cl_0", "f1_cl_0"),
        ("f0_cl_0", "f1_cl_1"),
        ("f0_cl_1", "f1_cl_2"),
        ("f0_cl_1", "f1_cl_3"),
    }
    assert all(r["overlap"] == 1.0 and r["parent_feature_index"] == 0 for r in rels)
    # a cluster straddling two parents below the share is nobody's child
    straddle = fine.copy()
    straddle[[2, 6]] = 4  # cl_4: one member of each coarse group
    rels = mf.hierarchy([coarse, straddle], ["f0_", "f1_"])
    assert "f1_cl_4" not in {r["child_cluster_id"] for r in rels}
    # identical clusterings: equal sizes, no parent
    assert mf.hierarchy([coarse, coarse.copy()], ["f0_", "f1_"]) == []
    # the share is a parameter
    loose = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1])
    assert mf.hierarchy([coarse, loose], ["a_", "b_"], share=0.6) == [
        {
            "parent_cluster_id": "b_cl_1",
            "child_cluster_id": "a_cl_1",
            "parent_feature_index": 1,
            "child_feature_index": 0,
            "overlap": 1.0,
            "child_members": 6,
        },
        {
            "parent_cluster_id": "a_cl_0",
            "child_cluster_id": "b_cl_0",
            "parent_feature_index": 0,
            "child_feature_index": 1,
            "overlap": 1.0,
            "child_members": 4,
        },
    ]


def test_normalised_weights_refuse_all_zero() -> None:
    assert np.allclose(mf.normalised_weights([2, 2]), [0.5, 0.5])
    with pytest.raises(ValueError):
        mf.normalised_weights([0, 0])
