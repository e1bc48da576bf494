import numpy as np
import pytest
from pydantic import BaseModel
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from core.algorithms import get_algorithm, supported_algorithms, validate_params
from core.algorithms.kmeans import KMeansParams
from core.errors import RunDataError, ValidationFailed
from tests.conftest import SDK_KMEANS_DEFAULTS


def blobs(n=300, centers=4, seed=0):
    X, y = make_blobs(n_samples=n, centers=centers, n_features=8, cluster_std=0.5, random_state=seed)
    return X.astype(np.float32), y


# --- registry contract, over every registered algorithm ---


@pytest.mark.parametrize("name", supported_algorithms())
def test_registry_contract(name):
    spec = get_algorithm(name)
    X, _ = blobs()
    params = validate_params(name, None)
    labels = spec.fit(X, params, 7).labels
    assert labels.shape == (X.shape[0],)
    assert labels.dtype == np.int64
    assert labels.min() >= (-1 if spec.produces_noise else 0)
    np.testing.assert_array_equal(labels, spec.fit(X, params, 7).labels)


def test_kmeans_is_registered():
    assert "kmeans" in supported_algorithms()
    spec = get_algorithm("kmeans")
    assert spec.params_model is KMeansParams
    assert spec.produces_noise is False


def test_unknown_algorithm():
    with pytest.raises(ValidationFailed) as exc:
        get_algorithm("nope")
    assert exc.value.code == "algorithm_not_supported"
    assert exc.value.message == "config.algorithm: 'nope' is not supported"


def test_fit_rejects_wrong_params_type():
    X, _ = blobs()

    class Other(BaseModel):
        pass

    with pytest.raises(TypeError):
        get_algorithm("kmeans").fit(X, Other(), 0).labels


# --- params validation ---


def test_defaults():
    p = validate_params("kmeans", None)
    assert p == KMeansParams()
    # the SDK serialises these defaults; clusterd's own n_init default is 1 (issue 6)
    assert p.model_dump() == {**SDK_KMEANS_DEFAULTS, "n_init": 1}


def test_foreign_keys_ignored_and_none_kept_only_where_nullable():
    p = validate_params(
        "kmeans", {"n_clusters": 3, "eps": 0.3, "min_cluster_size": 1, "random_state": None, "max_iter": None}
    )
    assert p.n_clusters == 3
    assert p.random_state is None  # nullable: the run seed is used
    assert p.max_iter == 300  # not nullable: None means the default
    assert not hasattr(p, "eps")


def test_n_init_accepts_auto():
    assert validate_params("kmeans", {"n_init": "auto"}).n_init == "auto"
    assert validate_params("kmeans", {"n_init": 3}).n_init == 3


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"n_clusters": 1}, "algorithm_params.n_clusters: must be between 2 and 1000 (got 1)"),
        ({"n_clusters": 1001}, "algorithm_params.n_clusters: must be between 2 and 1000 (got 1001)"),
        ({"max_iter": 0}, "algorithm_params.max_iter: must be between 1 and 10000 (got 0)"),
        ({"n_init": 0}, "algorithm_params.n_init: must be an integer >= 1 or 'auto' (got 0)"),
        ({"n_init": "many"}, "algorithm_params.n_init: must be an integer >= 1 or 'auto' (got 'many')"),
        ({"tol": -1.0}, "algorithm_params.tol: must be greater than or equal to 0 (got -1.0)"),
        ({"init": "foo"}, "algorithm_params.init: must be 'k-means++' or 'random' (got 'foo')"),
        ({"algorithm": "full"}, "algorithm_params.algorithm: must be 'lloyd' or 'elkan' (got 'full')"),
        ({"n_clusters": "x"}, "algorithm_params.n_clusters: must be a valid integer"),
    ],
)
def test_out_of_range_names_the_field(raw, message):
    with pytest.raises(ValidationFailed) as exc:
        validate_params("kmeans", raw)
    assert exc.value.message.startswith(message)
    (err,) = exc.value.details["validation_errors"]
    assert err["loc"] == ["algorithm_params", next(iter(raw))]
    assert err["msg"] and err["type"]


def test_error_uses_given_field_and_lists_every_error():
    with pytest.raises(ValidationFailed) as exc:
        validate_params("kmeans", {"n_clusters": 1, "max_iter": 0}, field="vector_config.algorithm_params")
    assert exc.value.message.startswith("vector_config.algorithm_params.n_clusters: must be between")
    assert "; vector_config.algorithm_params.max_iter:" in exc.value.message
    locs = [e["loc"] for e in exc.value.details["validation_errors"]]
    assert locs == [
        ["vector_config.algorithm_params", "n_clusters"],
        ["vector_config.algorithm_params", "max_iter"],
    ]


def test_params_must_be_an_object():
    with pytest.raises(ValidationFailed, match="algorithm_params: must be an object"):
        validate_params("kmeans", [1, 2])  # type: ignore[arg-type]


def test_validate_params_unknown_algorithm():
    with pytest.raises(ValidationFailed) as exc:
        validate_params("nope", {})
    assert exc.value.code == "algorithm_not_supported"


# --- kmeans ---


def test_kmeans_recovers_blobs():
    X, y = blobs(n=400, centers=4, seed=3)
    labels = get_algorithm("kmeans").fit(X, validate_params("kmeans", {"n_clusters": 4}), 0).labels
    assert adjusted_rand_score(y, labels) > 0.95


def test_kmeans_seed_used_when_random_state_none():
    X, _ = blobs(n=200, centers=6, seed=1)
    fit = get_algorithm("kmeans").fit
    p = KMeansParams(n_clusters=5, random_state=None, n_init=1, init="random")
    np.testing.assert_array_equal(fit(X, p, 11).labels, fit(X, p, 11).labels)


def test_kmeans_n_clusters_exceeds_points():
    X, _ = blobs(n=5)
    with pytest.raises(RunDataError, match=r"kmeans n_clusters \(8\) exceeds the number of points \(5\)"):
        get_algorithm("kmeans").fit(X, KMeansParams(), 0).labels


def test_kmeans_duplicate_points_do_not_warn():
    X = np.zeros((10, 3), dtype=np.float32)
    labels = get_algorithm("kmeans").fit(X, KMeansParams(n_clusters=3), 0).labels
    assert labels.shape == (10,)
