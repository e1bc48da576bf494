"""The fast HDBSCAN path: when it is taken, that it agrees with the hdbscan package, and the
one-off compile (this module pays fast-hdbscan's ~30 s warm-up once for the whole suite)."""

from __future__ import annotations

import hdbscan
import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from core.algorithms import hdbscan_engine, validate_params
from core.algorithms.density import hdbscan_


def wide_blobs(n=6000, d=40, k=5, seed=0):
    X, y = make_blobs(n_samples=n, n_features=d, centers=k, cluster_std=1.0, random_state=seed)
    return X.astype(np.float32), y


def params(**kw):
    return validate_params("hdbscan", {"min_cluster_size": 50, "min_samples": 10, **kw})


@pytest.mark.parametrize(
    ("n", "d", "kw", "ok"),
    [
        (6000, 40, {}, True),
        (4999, 40, {}, False),  # small runs keep exact parity with the package
        (6000, 30, {}, False),  # fast-hdbscan's exact kd-tree path is the slower one
        (6000, 40, {"metric": "manhattan"}, False),
        (6000, 40, {"alpha": 0.5}, False),
        (6000, 40, {"match_reference_implementation": True}, False),
    ],
)
def test_eligible(n, d, kw, ok):
    assert hdbscan_engine.eligible(params(**kw), n, d) is ok


def test_cold_worker_uses_the_hdbscan_package(monkeypatch):
    monkeypatch.setattr(hdbscan_engine, "is_warm", lambda: False)
    X, _ = wide_blobs(n=5000)
    out = hdbscan_(X, params(), 0)
    assert isinstance(out, np.ndarray)  # no Fitted.used engine report: the package ran


@pytest.fixture(scope="module")
def warm():
    hdbscan_engine.start_warm_up()
    hdbscan_engine.start_warm_up()  # idempotent: one thread per process
    assert hdbscan_engine.wait_warm(300), "fast-hdbscan did not compile within 300 s"
    assert hdbscan_engine.warm_up_seconds is not None


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"cluster_selection_method": "leaf"},
        {"cluster_selection_epsilon": 0.5},
        {"min_samples": None},
        {"max_cluster_size": 1000},
    ],
)
def test_warm_fast_path_agrees_with_the_package(warm, kw):
    X, y = wide_blobs()
    p = params(**kw)
    fitted = hdbscan_(X, p, 0)
    assert fitted.used == {"engine": "fast_hdbscan"}
    reference = hdbscan.HDBSCAN(
        min_cluster_size=p.min_cluster_size,
        min_samples=p.min_samples,
        cluster_selection_method=p.cluster_selection_method,
        cluster_selection_epsilon=p.cluster_selection_epsilon,
        max_cluster_size=p.max_cluster_size or 0,
    ).fit_predict(X)
    assert adjusted_rand_score(reference, fitted.labels) >= 0.99
    assert fitted.labels.dtype == np.int64 and fitted.labels.shape == (X.shape[0],)
