"""core.preprocess: step validation, each step's output, determinism, and the pickled steps."""

from __future__ import annotations

import numpy as np
import pytest

from core import preprocess as pp
from core.algorithms import validate_params
from core.errors import RunDataError, ValidationFailed
from core.pipeline import PipelineConfig, run_pipeline


def _data(n: int = 120, d: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scales = np.linspace(0.1, 5.0, d)
    return (rng.normal(size=(n, d)) * scales + 3.0).astype(np.float32)


def test_parse_fills_defaults_and_names_the_bad_field() -> None:
    steps = pp.parse_steps(
        [{"method": "standardize"}, {"method": "pca", "n_components": 4}, {"method": "umap", "extra": 1}],
        "vector_config.preprocessing_steps",
    )
    assert steps == [
        {"method": "standardize"},
        {"method": "pca", "n_components": 4, "random_state": 42},
        {
            "method": "umap",
            "n_components": 50,
            "n_neighbors": 30,
            "min_dist": 0.0,
            "metric": "cosine",
            "random_state": 42,
        },
    ]
    bad = [
        ({"method": "lda"}, "preprocessing_steps[0].method"),
        ({"n_components": 3}, "preprocessing_steps[0].method"),
        ({"method": "pca", "n_components": 0}, "preprocessing_steps[0].n_components"),
        ({"method": "pca", "n_components": 2.0}, "preprocessing_steps[0].n_components"),
        ({"method": "umap", "n_neighbors": 1}, "preprocessing_steps[0].n_neighbors"),
        ({"method": "umap", "min_dist": 1.5}, "preprocessing_steps[0].min_dist"),
        ({"method": "umap", "metric": "hamming?"}, "preprocessing_steps[0].metric"),
        ({"method": "whitening", "regularization": -1}, "preprocessing_steps[0].regularization"),
        ({"method": "tsne", "n_components": 5}, "preprocessing_steps[0].n_components"),
        ("pca", "preprocessing_steps[0]"),
    ]
    for step, field in bad:
        with pytest.raises(ValidationFailed) as err:
            pp.parse_steps([step], "preprocessing_steps")
        assert err.value.message.startswith(field + ":"), err.value.message
    with pytest.raises(ValidationFailed, match="must be a list"):
        pp.parse_steps({"method": "pca"}, "x")


def test_sdk_compatibility_of_steps() -> None:
    from mixpeek.models.vector_based_config_input_preprocessing_steps_inner import (
        VectorBasedConfigInputPreprocessingStepsInner as Step,
    )

    for raw in ([{"method": "umap"}], [{"method": "whitening"}], [{"method": "tsne"}], [{"method": "none"}]):
        steps = pp.parse_steps(raw, "x")
        assert pp.sdk_compatible(steps)
        Step.from_dict(steps[0])  # the filled-in echo parses as exactly one SDK step model
    assert not pp.sdk_compatible(pp.parse_steps([{"method": "pca"}], "x"))


def test_standardize() -> None:
    X = _data()
    Z, fitted = pp.fit_steps(X, pp.parse_steps([{"method": "standardize"}], "x"))
    assert Z.shape == X.shape and Z.dtype == np.float32
    assert np.allclose(Z.mean(0), 0, atol=1e-5) and np.allclose(Z.std(0), 1, atol=1e-4)
    assert np.allclose(fitted.transform(X), Z)


def test_whitening_decorrelates() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(size=(300, 3))
    X = np.hstack([base, base @ rng.normal(size=(3, 3)) + 0.1 * rng.normal(size=(300, 3))]).astype(np.float32)
    Z, fitted = pp.fit_steps(X, pp.parse_steps([{"method": "whitening"}], "x"))
    assert Z.shape == (300, 6)
    cov = np.cov(Z.astype(np.float64), rowvar=False)
    assert np.allclose(cov, np.eye(6), atol=1e-3)
    again, _ = pp.fit_steps(X, pp.parse_steps([{"method": "whitening"}], "x"))
    assert np.array_equal(Z, again)
    # the floor: a constant column is not blown up
    flat = X.copy()
    flat[:, 5] = 1.0
    Zf, _ = pp.fit_steps(flat, pp.parse_steps([{"method": "whitening", "regularization": 0.01}], "x"))
    assert np.isfinite(Zf).all() and np.abs(Zf).max() < 100


def test_pca_lowers_too_many_components() -> None:
    X = _data(n=10, d=12)
    Z, fitted = pp.fit_steps(X, pp.parse_steps([{"method": "pca", "n_components": 50}], "x"))
    assert Z.shape == (10, 10) and fitted.steps[0]["n_components"] == 10
    Z4, f4 = pp.fit_steps(_data(), pp.parse_steps([{"method": "pca", "n_components": 4}], "x"))
    assert Z4.shape == (120, 4)
    assert np.allclose(f4.transform(_data()), Z4, atol=1e-4)


def test_steps_run_in_order_and_pickle() -> None:
    X = _data()
    steps = pp.parse_steps([{"method": "standardize"}, {"method": "pca", "n_components": 3}], "x")
    Z, fitted = pp.fit_steps(X, steps)
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    expected = PCA(n_components=3, random_state=42).fit_transform(StandardScaler().fit_transform(X))
    assert np.allclose(np.abs(Z), np.abs(expected), atol=1e-3)
    loaded = pp.loads(pp.dumps(fitted))
    assert isinstance(loaded, pp.FittedSteps)
    assert np.allclose(loaded.transform(X[:7]), Z[:7], atol=1e-4)
    with pytest.raises(ValueError, match="expected"):
        loaded.transform(X[:, :5])


def test_umap_shape_and_determinism() -> None:
    """umap-learn (numba compiles on first use: small data, one test)."""
    rng = np.random.default_rng(2)
    X = np.concatenate([rng.normal(c, 0.2, (25, 6)) for c in (0.0, 4.0)]).astype(np.float32)
    umap = {"method": "umap", "n_components": 3, "n_neighbors": 10, "metric": "euclidean"}
    steps = pp.parse_steps([umap], "x")
    Z, fitted = pp.fit_steps(X, steps)
    again, _ = pp.fit_steps(X, steps)
    assert Z.shape == (50, 3) and np.array_equal(Z, again)
    # the two groups stay apart in the embedding
    a, b = Z[:25].mean(0), Z[25:].mean(0)
    assert np.linalg.norm(a - b) > 3 * max(Z[:25].std(0).max(), Z[25:].std(0).max())
    assert pp.loads(pp.dumps(fitted)).transform(X[:5]).shape == (5, 3)
    with pytest.raises(RunDataError, match="at least 4 points"):
        pp.fit_steps(X[:3], steps)


def test_tsne_has_no_transform() -> None:
    X = _data(n=40, d=5)
    Z, fitted = pp.fit_steps(X, pp.parse_steps([{"method": "tsne"}], "x"))
    assert Z.shape == (40, 2)
    with pytest.raises(ValueError, match="out-of-sample"):
        fitted.transform(X)


def test_pipeline_fits_the_preprocessed_space() -> None:
    """The fit sees the steps' output; centroids stay in the normalised feature space."""
    rng = np.random.default_rng(3)
    X = np.concatenate([np.eye(8)[i] * 10 + rng.normal(0, 0.3, (30, 8)) for i in range(3)]).astype(np.float32)
    steps = pp.parse_steps([{"method": "standardize"}, {"method": "pca", "n_components": 2}], "x")
    config = PipelineConfig("kmeans", validate_params("kmeans", {"n_clusters": 3}), preprocessing=steps)
    result = run_pipeline(X.copy(), config)
    assert result.num_clusters == 3 and sorted(c.num_members for c in result.clusters) == [30, 30, 30]
    assert result.clusters[0].centroid.shape == (8,)  # the feature space, not the 2-d projection
    assert result.reduction == {"method": "preprocessing_steps", "steps": steps, "from": 8, "to": 2}
    assert isinstance(result.preprocessor, pp.FittedSteps)
    plain = run_pipeline(X.copy(), PipelineConfig("kmeans", validate_params("kmeans", {"n_clusters": 3})))
    assert plain.preprocessor is None and plain.reduction is None
