"""dbscan, hdbscan, optics, mean_shift: parity with the reference libraries on datasets shipped with
scikit-learn, automatic eps / bandwidth, params validation (ranges, foreign SDK keys), the registry
metadata and the PCA reduction of wide vectors."""

from __future__ import annotations

import hdbscan
import numpy as np
import pytest
import sklearn.cluster as skc
from sklearn.datasets import load_iris, load_wine, make_blobs, make_moons
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from core.algorithms import get_algorithm, validate_params
from core.algorithms.density import (
    KNEE_SAMPLE,
    DBSCANParams,
    HDBSCANParams,
    MeanShiftParams,
    OPTICSParams,
    chord_knee,
    knee_eps,
)
from core.errors import RunDataError, ValidationFailed
from core.pipeline import PipelineConfig, run_pipeline
from tests.conftest import SDK_KMEANS_DEFAULTS

DENSITY = ["dbscan", "hdbscan", "optics", "mean_shift"]
SEED = 7

IRIS = load_iris().data.astype(np.float32)
WINE = StandardScaler().fit_transform(load_wine().data).astype(np.float32)
MOONS = make_moons(300, noise=0.05, random_state=0)[0].astype(np.float32)
DATA = {"iris": IRIS, "wine": WINE, "moons": MOONS}


def fit(name, X, raw, seed=SEED):
    return get_algorithm(name).fit(X, validate_params(name, raw), seed)


def auto_bandwidth_mean_shift(X, quantile, seed):
    bandwidth = skc.estimate_bandwidth(X, quantile=quantile, n_samples=min(len(X), 2000), random_state=seed)
    return skc.MeanShift(bandwidth=bandwidth).fit_predict(X)


# --- parity: (algorithm, dataset, params sent, the same call made directly on the library) ---

PARITY = [
    ("dbscan", "iris", {"eps": 0.5, "min_samples": 5}, lambda X: skc.DBSCAN(eps=0.5, min_samples=5)),
    ("dbscan", "wine", {"eps": 2.3, "min_samples": 4}, lambda X: skc.DBSCAN(eps=2.3, min_samples=4)),
    (
        "dbscan",
        "moons",
        {"eps": 0.15, "metric": "manhattan", "algorithm": "kd_tree", "leaf_size": 10},
        lambda X: skc.DBSCAN(eps=0.15, metric="manhattan", algorithm="kd_tree", leaf_size=10),
    ),
    (
        "dbscan",
        "iris",
        {"eps": 0.01, "min_samples": 4, "metric": "cosine"},
        lambda X: skc.DBSCAN(eps=0.01, min_samples=4, metric="cosine"),
    ),
    (
        "dbscan",
        "moons",
        {"eps": 0.2, "metric": "minkowski", "p": 3},
        lambda X: skc.DBSCAN(0.2, metric="minkowski", p=3),
    ),
    (
        "dbscan",
        "moons",
        {"eps": 0.2, "metric": "minkowski", "metric_params": {"w": [1, 2]}},
        lambda X: skc.DBSCAN(eps=0.2, metric="minkowski", metric_params={"w": [1.0, 2.0]}, p=2),
    ),
    ("hdbscan", "iris", {"min_cluster_size": 10}, lambda X: hdbscan.HDBSCAN(min_cluster_size=10)),
    (
        "hdbscan",
        "wine",
        {"min_cluster_size": 5, "min_samples": 3, "cluster_selection_method": "leaf"},
        lambda X: hdbscan.HDBSCAN(min_cluster_size=5, min_samples=3, cluster_selection_method="leaf"),
    ),
    (
        "hdbscan",
        "moons",
        {"min_cluster_size": 15, "cluster_selection_epsilon": 0.1, "alpha": 1.3},
        lambda X: hdbscan.HDBSCAN(min_cluster_size=15, cluster_selection_epsilon=0.1, alpha=1.3),
    ),
    (
        "hdbscan",
        "moons",
        {"min_cluster_size": 10, "max_cluster_size": 100, "metric": "manhattan"},
        lambda X: hdbscan.HDBSCAN(min_cluster_size=10, max_cluster_size=100, metric="manhattan"),
    ),
    (
        "hdbscan",
        "iris",
        {
            "min_cluster_size": 10,
            "match_reference_implementation": True,
            "prediction_data": True,
            "allow_single_cluster": True,
        },
        lambda X: hdbscan.HDBSCAN(
            min_cluster_size=10,
            match_reference_implementation=True,
            prediction_data=True,
            allow_single_cluster=True,
        ),
    ),
    ("optics", "iris", {"min_samples": 10}, lambda X: skc.OPTICS(min_samples=10)),
    (
        "optics",
        "wine",
        {"min_samples": 5, "xi": 0.02, "metric": "euclidean"},
        lambda X: skc.OPTICS(min_samples=5, xi=0.02, metric="euclidean"),
    ),
    (
        "optics",
        "moons",
        {"min_samples": 5, "cluster_method": "dbscan", "eps": 0.15, "max_eps": 0.5},
        lambda X: skc.OPTICS(min_samples=5, cluster_method="dbscan", eps=0.15, max_eps=0.5),
    ),
    (
        "optics",
        "moons",
        {
            "min_samples": 8,
            "min_cluster_size": 0.1,
            "predecessor_correction": False,
            "algorithm": "ball_tree",
        },
        lambda X: skc.OPTICS(
            min_samples=8, min_cluster_size=0.1, predecessor_correction=False, algorithm="ball_tree"
        ),
    ),
    ("mean_shift", "iris", {"bandwidth": 0.9}, lambda X: skc.MeanShift(bandwidth=0.9)),
    (
        "mean_shift",
        "moons",
        {"bandwidth": 0.3, "bin_seeding": True, "cluster_all": False},
        lambda X: skc.MeanShift(bandwidth=0.3, bin_seeding=True, cluster_all=False),
    ),
]


@pytest.mark.parametrize(("name", "dataset", "raw", "reference"), PARITY)
def test_parity_with_reference_library(name, dataset, raw, reference):
    X = DATA[dataset]
    ours = fit(name, X, raw).labels
    theirs = np.asarray(reference(X).fit_predict(X))
    assert len(set(theirs) - {-1}) >= 2  # a case that actually clusters
    assert adjusted_rand_score(theirs, ours) == 1.0
    np.testing.assert_array_equal(ours == -1, theirs == -1)


@pytest.mark.parametrize(("dataset", "quantile"), [("wine", 0.2), ("moons", 0.1)])
def test_mean_shift_automatic_bandwidth_parity(dataset, quantile):
    X = DATA[dataset]
    fitted = fit("mean_shift", X, {"bandwidth": None, "bandwidth_quantile": quantile})
    theirs = auto_bandwidth_mean_shift(X, quantile, SEED)
    assert len(set(theirs)) >= 2
    assert adjusted_rand_score(theirs, fitted.labels) == 1.0
    expected = skc.estimate_bandwidth(X, quantile=quantile, n_samples=len(X), random_state=SEED)
    assert fitted.used == {"bandwidth": pytest.approx(float(expected))}


def test_explicit_values_report_nothing():
    assert fit("dbscan", IRIS, {"eps": 0.5}).used == {}
    assert fit("mean_shift", IRIS, {"bandwidth": 0.9}).used == {}


# --- automatic eps (dbscan) ---


def blobs_with_noise(seed=0):
    X, y = make_blobs(600, centers=4, cluster_std=0.5, random_state=1)
    rng = np.random.default_rng(seed)
    noise = rng.uniform(X.min(0) - 2, X.max(0) + 2, size=(40, 2))
    return np.vstack([X, noise]).astype(np.float32), np.r_[y, -np.ones(40, dtype=int)]


def test_automatic_eps_recovers_structure_and_is_reported():
    X, y = blobs_with_noise()
    fitted = fit("dbscan", X, {"eps": None, "min_samples": 10})
    eps = fitted.used["eps"]
    assert fitted.used["eps_selection"] == {"method": "k_distance_knee", "k": 10, "sample_size": len(X)}
    # sensible: above the typical core distance inside a blob, far below the distance between blobs
    assert 0.2 < eps < 1.5
    clustered = fitted.labels != -1
    assert len(set(fitted.labels) - {-1}) == 4
    assert clustered.mean() > 0.9
    assert adjusted_rand_score(y[clustered], fitted.labels[clustered]) > 0.98
    # the reported eps is the one used: scikit-learn with it gives the same labels
    direct = skc.DBSCAN(eps=eps, min_samples=10).fit_predict(X)
    np.testing.assert_array_equal(direct, fitted.labels)


def test_automatic_eps_recovers_moons():
    X, y = make_moons(500, noise=0.05, random_state=0)
    fitted = fit("dbscan", X.astype(np.float32), {"eps": None, "min_samples": 10})
    clustered = fitted.labels != -1
    assert len(set(fitted.labels) - {-1}) == 2 and clustered.mean() > 0.95
    assert adjusted_rand_score(y[clustered], fitted.labels[clustered]) == 1.0


def test_automatic_eps_is_the_core_distance_knee():
    # k counts the point itself (scikit-learn's core distance): the reported eps is one of the
    # distances to the min_samples-th nearest point, so exactly the points left of the knee are core.
    X, _ = blobs_with_noise()
    fitted = fit("dbscan", X, {"eps": None, "min_samples": 6})
    core = np.sort(NearestNeighbors(n_neighbors=6).fit(X).kneighbors(X)[0][:, -1])
    assert fitted.used["eps"] == pytest.approx(float(core[chord_knee(core)]))


def test_automatic_eps_is_deterministic():
    X, _ = blobs_with_noise()
    a = fit("dbscan", X, {"eps": None}, seed=1)
    b = fit("dbscan", X, {"eps": None}, seed=1)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.used == b.used
    # below KNEE_SAMPLE points every point is on the curve: the seed does not matter
    assert fit("dbscan", X, {"eps": None}, seed=2).used == a.used


def test_automatic_eps_samples_large_inputs_deterministically():
    X, _ = make_blobs(KNEE_SAMPLE + 3000, centers=5, n_features=3, cluster_std=0.5, random_state=4)
    X = X.astype(np.float32)
    params = DBSCANParams(eps=None, min_samples=10)
    eps, selection = knee_eps(X, params, 3)
    assert selection == {"method": "k_distance_knee", "k": 10, "sample_size": KNEE_SAMPLE}
    assert knee_eps(X, params, 3) == (eps, selection)
    # the sample queries all points, so its knee is close to the knee of the full curve
    full = np.sort(NearestNeighbors(n_neighbors=10).fit(X).kneighbors(X)[0][:, -1])
    assert eps == pytest.approx(float(full[chord_knee(full)]), rel=0.15)
    a = get_algorithm("dbscan").fit(X, params, 3)
    np.testing.assert_array_equal(a.labels, get_algorithm("dbscan").fit(X, params, 3).labels)


def test_automatic_eps_uses_the_request_metric():
    X, _ = blobs_with_noise()
    euclid = fit("dbscan", X, {"eps": None}).used["eps"]
    manhattan = fit("dbscan", X, {"eps": None, "metric": "manhattan"}).used["eps"]
    assert manhattan > euclid  # l1 distances are longer than l2 ones


def test_automatic_eps_on_duplicates_is_positive():
    groups = np.repeat(np.eye(3, dtype=np.float32), 10, axis=0)  # three stacks of identical points
    fitted = fit("dbscan", groups, {"eps": None, "min_samples": 3})
    assert fitted.used["eps"] > 0
    assert adjusted_rand_score(np.repeat([0, 1, 2], 10), fitted.labels) == 1.0
    same = fit("dbscan", np.ones((20, 4), dtype=np.float32), {"eps": None})
    assert same.used["eps"] > 0 and set(same.labels) == {0}


def test_chord_knee():
    flat_then_steep = np.r_[np.linspace(0.0, 1.0, 80), np.linspace(1.0, 10.0, 21)[1:]]
    assert chord_knee(flat_then_steep) == 79  # the last point of the flat part
    concave = np.sqrt(np.linspace(0.0, 1.0, 50))  # no point below the chord: no elbow
    assert chord_knee(concave) == 49
    assert chord_knee(np.full(10, 0.3)) == 9
    assert chord_knee(np.array([0.5])) == 0


# --- other fit behaviour ---


def test_hdbscan_tiny_input_is_all_noise_like_the_package():
    X = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_array_equal(fit("hdbscan", X, {}).labels, hdbscan.HDBSCAN().fit_predict(X))
    assert set(fit("hdbscan", X, {}).labels) == {-1}


def test_optics_more_samples_than_points():
    X = IRIS[:4]
    with pytest.raises(RunDataError, match=r"optics min_samples \(5\) exceeds the number of points \(4\)"):
        fit("optics", X, {})
    with pytest.raises(RunDataError, match=r"optics min_cluster_size \(10\)"):
        fit("optics", X, {"min_samples": 2, "min_cluster_size": 10})


def test_mean_shift_zero_bandwidth_is_a_data_error():
    with pytest.raises(RunDataError, match="estimated bandwidth is 0"):
        fit("mean_shift", np.ones((20, 3), dtype=np.float32), {})


def test_mean_shift_orphans_are_noise():
    labels = fit("mean_shift", MOONS, {"bandwidth": 0.3, "bin_seeding": True, "cluster_all": False}).labels
    assert (labels == -1).any()


def test_minkowski_weights_must_match_dimensions():
    with pytest.raises(RunDataError, match="metric_params.w has 3 weights but the clustered vectors have 2"):
        fit("dbscan", MOONS, {"metric": "minkowski", "metric_params": {"w": [1, 1, 1]}})


@pytest.mark.parametrize("name", DENSITY)
def test_fit_is_deterministic(name):
    a = fit(name, WINE, {}, seed=3)
    b = fit(name, WINE, {}, seed=3)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.used == b.used


# --- registry metadata ---


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("dbscan", DBSCANParams),
        ("hdbscan", HDBSCANParams),
        ("optics", OPTICSParams),
        ("mean_shift", MeanShiftParams),
    ],
)
def test_registered(name, model):  # point limits: core.admission (tests/unit/test_admission.py)
    spec = get_algorithm(name)
    assert spec.params_model is model
    assert spec.produces_noise is True
    assert spec.reduces_high_dim is True


# --- params validation ---


def test_defaults_follow_the_contract():
    assert validate_params("dbscan", None).model_dump() == {
        "eps": 0.5,
        "min_samples": 5,
        "metric": "euclidean",
        "metric_params": None,
        "algorithm": "auto",
        "leaf_size": 30,
        "p": 2,
        "n_jobs": 1,
    }
    assert validate_params("hdbscan", None).model_dump() == {
        "min_cluster_size": 5,
        "min_samples": None,
        "cluster_selection_epsilon": 0.0,
        "max_cluster_size": None,
        "metric": "euclidean",
        "alpha": 1.0,
        "cluster_selection_method": "eom",
        "allow_single_cluster": False,
        "prediction_data": False,
        "match_reference_implementation": False,
    }
    optics = validate_params("optics", None)
    assert (optics.min_samples, optics.xi, optics.max_eps, optics.eps, optics.min_cluster_size) == (
        5,
        0.05,
        None,
        None,
        None,
    )
    assert (optics.metric, optics.p, optics.cluster_method) == ("minkowski", 2, "xi")  # scikit-learn's
    ms = validate_params("mean_shift", None)
    assert (ms.bandwidth, ms.bandwidth_quantile, ms.bin_seeding, ms.cluster_all, ms.max_iter) == (
        None,
        0.1,
        False,
        True,
        300,
    )


@pytest.mark.parametrize("name", DENSITY)
def test_sdk_kmeans_default_dict_is_ignored(name):
    assert validate_params(name, SDK_KMEANS_DEFAULTS) == validate_params(name, {})


@pytest.mark.parametrize("name", ["dbscan", "optics"])
@pytest.mark.parametrize("value", ["lloyd", "elkan"])
def test_kmeans_algorithm_values_are_foreign(name, value):
    # `algorithm` is also a dbscan / optics field (the neighbour search); k-means' values land there
    # from the SDK's KMeans dict and are ignored, while the request's own params still apply.
    p = validate_params(name, {**SDK_KMEANS_DEFAULTS, "algorithm": value, "min_samples": 7})
    assert p.algorithm == "auto" and p.min_samples == 7


def test_own_algorithm_values_are_kept_and_others_rejected():
    assert validate_params("dbscan", {"algorithm": "kd_tree"}).algorithm == "kd_tree"
    with pytest.raises(ValidationFailed) as exc:
        validate_params("dbscan", {"algorithm": "full"})
    assert exc.value.message == (
        "algorithm_params.algorithm: must be 'auto', 'ball_tree', 'kd_tree' or 'brute' (got 'full')"
    )


def test_null_means_automatic_only_where_nullable():
    assert validate_params("dbscan", {"eps": None, "min_samples": None}) == DBSCANParams(eps=None)
    assert validate_params("hdbscan", {"min_samples": None, "min_cluster_size": None}) == HDBSCANParams()
    assert validate_params("mean_shift", {"bandwidth": None, "max_iter": None}) == MeanShiftParams()


def test_optics_max_eps_infinity_is_stored_as_null():
    p = validate_params("optics", {"max_eps": float("inf")})
    assert p.max_eps is None and p.model_dump(mode="json")["max_eps"] is None


def test_optics_min_cluster_size_is_a_count_or_a_fraction():
    assert validate_params("optics", {"min_cluster_size": 10}).min_cluster_size == 10
    assert validate_params("optics", {"min_cluster_size": 10.0}).min_cluster_size == 10
    assert validate_params("optics", {"min_cluster_size": 0.25}).min_cluster_size == 0.25


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("hdbscan", {"min_cluster_size": 1}, "must be greater than or equal to 2 (got 1)"),
        ("hdbscan", {"min_samples": 0}, "must be greater than or equal to 1 (got 0)"),
        ("hdbscan", {"cluster_selection_epsilon": -0.1}, "must be greater than or equal to 0"),
        ("hdbscan", {"max_cluster_size": 0}, "must be greater than or equal to 1 (got 0)"),
        ("hdbscan", {"alpha": 0}, "must be greater than 0 (got 0)"),
        ("hdbscan", {"alpha": float("nan")}, "must be a finite number"),
        ("hdbscan", {"cluster_selection_method": "excess"}, "must be 'eom' or 'leaf' (got 'excess')"),
        ("hdbscan", {"metric": "cosine"}, "for cosine, use 'euclidean' on normalised vectors"),
        ("hdbscan", {"metric": "minkowski"}, "must be 'euclidean', 'l2', 'l1', 'manhattan', 'cityblock' or"),
        ("dbscan", {"eps": 0}, "must be greater than 0 (got 0)"),
        ("dbscan", {"eps": -0.5}, "must be greater than 0 (got -0.5)"),
        ("dbscan", {"eps": float("inf")}, "must be a finite number (got inf)"),
        ("dbscan", {"eps": float("nan")}, "must be a finite number (got nan)"),
        ("dbscan", {"min_samples": 0}, "must be greater than or equal to 1 (got 0)"),
        ("dbscan", {"leaf_size": 0}, "must be greater than or equal to 1 (got 0)"),
        ("dbscan", {"p": 0.5}, "must be greater than or equal to 1 (got 0.5)"),
        ("dbscan", {"n_jobs": 0}, "must be a non-zero integer"),
        ("dbscan", {"metric": "precomputed"}, "must be 'euclidean', 'l2', 'l1', 'manhattan', 'cityblock',"),
        (
            "dbscan",
            {"metric_params": {"V": [1]}},
            "must be null, {} or {'w': [weights]} with metric 'minkowski'",
        ),
        ("dbscan", {"metric": "minkowski", "metric_params": {"w": [0, 0]}}, "not all 0"),
        ("optics", {"xi": 2}, "must be between 0 and 1 (got 2)"),
        ("optics", {"xi": -0.1}, "must be between 0 and 1 (got -0.1)"),
        ("optics", {"min_samples": 1}, "must be greater than or equal to 2 (got 1)"),
        ("optics", {"max_eps": 0}, "must be greater than 0 (got 0)"),
        ("optics", {"max_eps": float("nan")}, "must be greater than 0"),
        ("optics", {"cluster_method": "hdbscan"}, "must be 'xi' or 'dbscan' (got 'hdbscan')"),
        ("optics", {"min_cluster_size": 1}, "must be an integer >= 2 or a fraction between 0 and 1 (got 1)"),
        ("optics", {"min_cluster_size": 2.5}, "must be an integer >= 2 or a fraction between 0 and 1"),
        ("mean_shift", {"bandwidth": 0}, "must be greater than 0 (got 0)"),
        ("mean_shift", {"bandwidth": float("inf")}, "must be a finite number"),
        ("mean_shift", {"bandwidth_quantile": 0}, "must be greater than 0 (got 0)"),
        ("mean_shift", {"bandwidth_quantile": 1.5}, "must be less than or equal to 1 (got 1.5)"),
        ("mean_shift", {"max_iter": 0}, "must be greater than or equal to 1 (got 0)"),
        ("mean_shift", {"min_bin_freq": 0}, "must be greater than or equal to 1 (got 0)"),
    ],
)
def test_out_of_range_names_the_field(name, raw, message):
    key = next(iter(raw)) if len(raw) == 1 else list(raw)[-1]
    with pytest.raises(ValidationFailed) as exc:
        validate_params(name, raw)
    assert exc.value.message.startswith(f"algorithm_params.{key}: must be ")
    assert message in exc.value.message
    (err,) = exc.value.details["validation_errors"]
    assert err["loc"] == ["algorithm_params", key]


@pytest.mark.parametrize(
    ("name", "raw", "field", "message"),
    [
        ("dbscan", {"metric": "cosine", "algorithm": "kd_tree"}, "algorithm", "must be 'auto' or 'brute'"),
        ("optics", {"metric": "cosine", "algorithm": "ball_tree"}, "algorithm", "must be 'auto' or 'brute'"),
        (
            "dbscan",
            {"metric": "minkowski", "metric_params": {"w": [1, 2]}, "algorithm": "kd_tree"},
            "algorithm",
            "must be 'auto', 'ball_tree' or 'brute' with minkowski weights",
        ),
        ("dbscan", {"metric_params": {"w": [1, 2]}}, "metric_params", "must be null, {} or {'w': [weights]}"),
        ("optics", {"max_eps": 1.0, "eps": 2.0}, "eps", "must be less than or equal to max_eps (1.0)"),
    ],
)
def test_combinations_the_library_would_reject(name, raw, field, message):
    with pytest.raises(ValidationFailed) as exc:
        validate_params(name, raw)
    assert exc.value.message.startswith(f"algorithm_params.{field}: {message}")


# --- through the pipeline: wide vectors are reduced ---


def wide_blobs(d, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(c, 0.1, (60, d)) for c in (0.0, 2.0)]).astype(np.float32)


PIPELINE_PARAMS = {
    "dbscan": {"eps": None},
    "hdbscan": {"min_cluster_size": 10},
    "optics": {"min_samples": 10},
    "mean_shift": {"bandwidth": None, "bandwidth_quantile": 0.3},
}


@pytest.mark.parametrize("name", DENSITY)
def test_pipeline_reduces_wide_vectors(name):
    params = validate_params(name, PIPELINE_PARAMS[name])
    wide = run_pipeline(wide_blobs(120), PipelineConfig(algorithm=name, params=params, normalize=False))
    assert wide.reduction == {"method": "pca", "from": 120, "to": 32}
    assert wide.num_clusters == 2
    narrow = run_pipeline(wide_blobs(64), PipelineConfig(algorithm=name, params=params, normalize=False))
    assert narrow.reduction is None
    assert narrow.num_clusters == 2
    if name == "dbscan":
        assert wide.params_used["eps"] > 0
    if name == "mean_shift":
        assert wide.params_used["bandwidth"] > 0
