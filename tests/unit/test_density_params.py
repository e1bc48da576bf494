"""Density algorithms: automatic eps/bandwidth, foreign SDK keys, ranges, wide-vector reduction."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from core.algorithms import get_algorithm, validate_params
from core.errors import ValidationFailed
from core.pipeline import PipelineConfig, run_pipeline
from tests.conftest import SDK_KMEANS_DEFAULTS


def test_automatic_eps_recovers_blobs_and_is_reported():
    X, y = make_blobs(400, centers=3, cluster_std=0.4, random_state=0)
    fitted = get_algorithm("dbscan").fit(X.astype(np.float32), validate_params("dbscan", {"eps": None}), 0)
    assert fitted.used["eps"] > 0
    clustered = fitted.labels != -1
    assert clustered.mean() > 0.9 and adjusted_rand_score(y[clustered], fitted.labels[clustered]) > 0.95
    again = get_algorithm("dbscan").fit(X.astype(np.float32), validate_params("dbscan", {"eps": None}), 0)
    np.testing.assert_array_equal(fitted.labels, again.labels)


def test_automatic_bandwidth_is_reported():
    X, _ = make_blobs(300, centers=3, cluster_std=0.5, random_state=1)
    params = validate_params("mean_shift", {"bandwidth_quantile": 0.3})
    fitted = get_algorithm("mean_shift").fit(X.astype(np.float32), params, 3)
    assert fitted.used["bandwidth"] > 0 and len(set(fitted.labels)) == 3


@pytest.mark.parametrize("name", ["dbscan", "hdbscan", "optics", "mean_shift"])
def test_sdk_kmeans_default_dict_is_ignored(name):
    assert validate_params(name, SDK_KMEANS_DEFAULTS) == validate_params(name, {})


@pytest.mark.parametrize(
    "name, raw, field",
    [
        ("hdbscan", {"min_cluster_size": 1}, "algorithm_params.min_cluster_size"),
        ("dbscan", {"eps": 0}, "algorithm_params.eps"),
        ("optics", {"xi": 2}, "algorithm_params.xi"),
        ("mean_shift", {"bandwidth_quantile": 0}, "algorithm_params.bandwidth_quantile"),
    ],
)
def test_ranges_name_the_field(name, raw, field):
    with pytest.raises(ValidationFailed, match=field):
        validate_params(name, raw)


def test_wide_vectors_are_reduced_for_density_only():
    rng = np.random.default_rng(0)
    wide = np.concatenate([rng.normal(c, 0.1, (60, 120)) for c in (0, 2)]).astype(np.float32)
    params = validate_params("hdbscan", {"min_cluster_size": 10})
    out = run_pipeline(wide, PipelineConfig(algorithm="hdbscan", params=params, normalize=False))
    assert out.reduction == {"method": "pca", "from": 120, "to": 32} and out.num_clusters == 2
    narrow = run_pipeline(wide[:, :64], PipelineConfig(algorithm="hdbscan", params=params, normalize=False))
    assert narrow.reduction is None
    km = run_pipeline(
        wide, PipelineConfig(algorithm="kmeans", params=validate_params("kmeans", {"n_clusters": 2}))
    )
    assert km.reduction is None
