"""POST /patterns/cluster (contract §1.1): parity with scikit-learn, the 11-key response, and the
`{error, message}` bodies for 400 / 401 / 413 / 500."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from sklearn.cluster import DBSCAN, KMeans
from sklearn.metrics import silhouette_score

from api.routers import patterns
from tests.conftest import ADMIN_KEY, Api, serve_asgi

pytestmark = pytest.mark.e2e

URL = "/patterns/cluster"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
KEYS = {
    "method",
    "sample_size",
    "feature_count",
    "labels",
    "n_clusters",
    "silhouette_score",
    "centroids",
    "inertia",
    "eps",
    "min_samples",
    "noise_points",
}


def with_patterns(a: Api) -> Api:
    """The lead wires the router into api.main; include it here only while it is absent."""
    if not any(getattr(r, "path", None) == URL for r in a.app.routes):
        a.app.include_router(patterns.router)
    return a


@pytest.fixture
async def papi(make_settings: Any) -> AsyncIterator[Api]:
    async with serve_asgi(make_settings(embedded_worker=False)) as a:
        yield with_patterns(a)


def points(seed: int = 0, n_per: int = 20, dims: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0] * dims, [8.0] * dims, [0.0] * (dims - 1) + [16.0]])
    return np.concatenate([c + rng.normal(0, 0.4, (n_per, dims)) for c in centers])


async def post(a: Api, body: Any, headers: dict[str, str] | None = None) -> Any:
    return await a.client.post(URL, json=body, headers=AUTH if headers is None else headers)


async def post_raw(a: Api, content: bytes | str) -> Any:
    return await a.client.post(URL, content=content, headers=AUTH | {"Content-Type": "application/json"})


def assert_plain(body: dict[str, Any]) -> None:
    assert set(body) == KEYS
    assert all(type(v) is int for v in body["labels"])
    assert type(body["sample_size"]) is int and type(body["feature_count"]) is int
    assert type(body["n_clusters"]) is int


# ---------------------------------------------------------------- happy paths


async def test_kmeans_matches_sklearn(papi: Api) -> None:
    X = points()
    r = await post(papi, {"data": X.tolist(), "method": "kmeans", "n_clusters": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert_plain(body)
    ref = KMeans(n_clusters=3, n_init=10, random_state=42).fit(X)
    assert body["method"] == "kmeans"
    assert (body["sample_size"], body["feature_count"], body["n_clusters"]) == (60, 2, 3)
    assert body["labels"] == ref.labels_.tolist()
    assert body["inertia"] == pytest.approx(float(ref.inertia_), rel=1e-9)
    assert np.allclose(body["centroids"], ref.cluster_centers_, rtol=1e-9, atol=1e-12)
    assert body["silhouette_score"] == pytest.approx(float(silhouette_score(X, ref.labels_)), rel=1e-9)
    assert body["eps"] is None and body["min_samples"] is None and body["noise_points"] is None


async def test_kmeans_defaults_and_random_state(papi: Api) -> None:
    X = np.random.default_rng(3).normal(size=(40, 3))
    r = await post(papi, {"data": X.tolist()})  # method kmeans, k 3, seed 42
    assert r.status_code == 200, r.text
    ref = KMeans(n_clusters=3, n_init=10, random_state=42).fit(X)
    assert r.json()["method"] == "kmeans"
    assert r.json()["labels"] == ref.labels_.tolist()
    nulls = {"n_clusters": None, "random_state": None, "eps": None, "min_samples": None}
    r2 = await post(papi, {"data": X.tolist(), **nulls})
    assert r2.status_code == 200 and r2.json() == r.json()
    r3 = await post(papi, {"data": X.tolist(), "n_clusters": 4, "random_state": 7})
    ref7 = KMeans(n_clusters=4, n_init=10, random_state=7).fit(X)
    assert r3.json()["labels"] == ref7.labels_.tolist()
    assert r3.json()["inertia"] == pytest.approx(float(ref7.inertia_), rel=1e-9)


async def test_dbscan_matches_sklearn_with_noise(papi: Api) -> None:
    X = np.concatenate([points(n_per=15), [[100.0, 100.0], [-50.0, 70.0]]])
    r = await post(papi, {"data": X.tolist(), "method": "dbscan", "eps": 1.5, "min_samples": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert_plain(body)
    ref = DBSCAN(eps=1.5, min_samples=4).fit_predict(X)
    assert body["labels"] == ref.tolist()
    assert body["n_clusters"] == 3
    assert body["noise_points"] == int((ref == -1).sum()) >= 2
    assert body["eps"] == 1.5 and body["min_samples"] == 4
    assert body["centroids"] is None and body["inertia"] is None
    mask = ref >= 0
    assert body["silhouette_score"] == pytest.approx(float(silhouette_score(X[mask], ref[mask])), rel=1e-9)


async def test_dbscan_defaults_echoed(papi: Api) -> None:
    X = points(n_per=10, dims=2) / 10
    r = await post(papi, {"data": X.tolist(), "method": "dbscan", "eps": None, "min_samples": None})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["eps"], body["min_samples"]) == (0.5, 5)
    assert body["labels"] == DBSCAN(eps=0.5, min_samples=5).fit_predict(X).tolist()


async def test_one_dimensional_input(papi: Api) -> None:
    data = [1.0, 1.1, 0.9, 1.2, 10.0, 10.2, 9.9, 10.1, 20, 21]
    r = await post(papi, {"data": data, "n_clusters": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["sample_size"], body["feature_count"]) == (10, 1)
    ref = KMeans(n_clusters=3, n_init=10, random_state=42).fit(np.array(data, dtype=float).reshape(-1, 1))
    assert body["labels"] == ref.labels_.tolist()
    assert all(len(c) == 1 for c in body["centroids"])
    r = await post(papi, {"data": data, "method": "dbscan", "eps": 0.5, "min_samples": 2})
    assert r.status_code == 200 and r.json()["feature_count"] == 1


async def test_silhouette_null_cases(papi: Api) -> None:
    data = [[0.0, 0.0], [1.0, 1.0], [5.0, 5.0], [9.0, 9.0]]
    r = await post(papi, {"data": data, "n_clusters": 4})  # k = N
    assert r.status_code == 200, r.text
    assert r.json()["silhouette_score"] is None and r.json()["n_clusters"] == 4
    r = await post(papi, {"data": data, "n_clusters": 1})  # k = 1
    assert r.status_code == 200 and r.json()["silhouette_score"] is None
    r = await post(papi, {"data": data, "n_clusters": 3})  # k = N - 1: defined
    assert isinstance(r.json()["silhouette_score"], float)
    one = [[0.0], [0.1], [0.2], [0.3], [0.4], [50.0]]
    r = await post(papi, {"data": one, "method": "dbscan", "eps": 0.5, "min_samples": 2})  # one cluster
    body = r.json()
    assert (body["n_clusters"], body["noise_points"], body["silhouette_score"]) == (1, 1, None)
    r = await post(papi, {"data": one, "method": "dbscan", "eps": 0.01, "min_samples": 2})  # all noise
    body = r.json()
    assert (body["n_clusters"], body["noise_points"], body["silhouette_score"]) == (0, 6, None)
    assert body["labels"] == [-1] * 6


async def test_duplicate_points_fewer_than_k(papi: Api) -> None:
    """Fewer distinct points than k: sklearn warns; the route still answers, NaN-free."""
    r = await post(papi, {"data": [[1.0, 1.0]] * 5, "n_clusters": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["silhouette_score"] is None and body["inertia"] == 0.0


async def test_integers_accepted_and_extra_keys_ignored(papi: Api) -> None:
    r = await post(papi, {"data": [[1, 2], [2, 1], [9, 9], [10, 8]], "n_clusters": 2, "note": "x", "eps": 3})
    assert r.status_code == 200, r.text
    assert sorted(r.json()["labels"]) == [0, 0, 1, 1]


# ---------------------------------------------------------------- 400s

GOOD = [[0.0, 0.0], [1.0, 1.0], [5.0, 5.0], [9.0, 9.0]]

INVALID: list[tuple[str, Any, str]] = [
    ("not an object", [1, 2, 3], "body"),
    ("data missing", {"method": "kmeans"}, "data"),
    ("data null", {"data": None}, "data"),
    ("data string", {"data": "1,2,3"}, "data"),
    ("data object", {"data": {"a": 1}}, "data"),
    ("data empty", {"data": []}, "data"),
    ("one sample", {"data": [[1.0, 2.0]], "n_clusters": 1}, "data"),
    ("one scalar", {"data": [1.0], "n_clusters": 1}, "data"),
    ("ragged", {"data": [[1.0, 2.0], [1.0]]}, "data[1]"),
    ("empty row", {"data": [[], []]}, "data[0]"),
    ("row then scalar", {"data": [[1.0], 2.0]}, "data[1]"),
    ("scalar then row", {"data": [1.0, [2.0]]}, "data[1]"),
    ("string value", {"data": [[1.0, "2"], [3.0, 4.0]]}, "data[0][1]"),
    ("null value", {"data": [1.0, None, 3.0]}, "data[1]"),
    ("bool value", {"data": [[1.0, True], [3.0, 4.0]]}, "data[0][1]"),
    ("bool 1-D", {"data": [True, False, True]}, "data[0]"),
    ("nested 3-D", {"data": [[[1.0]], [[2.0]]]}, "data[0][0]"),
    ("overflowing float", {"data": [[1e400, 1.0], [2.0, 3.0]]}, "data[0][0]"),
    ("huge int", {"data": [10**400, 1, 2]}, "data"),
    ("method unknown", {"data": GOOD, "method": "hdbscan"}, "method"),
    ("method wrong case", {"data": GOOD, "method": "KMeans"}, "method"),
    ("method number", {"data": GOOD, "method": 1}, "method"),
    ("method null", {"data": GOOD, "method": None}, "method"),
    ("k zero", {"data": GOOD, "n_clusters": 0}, "n_clusters"),
    ("k negative", {"data": GOOD, "n_clusters": -2}, "n_clusters"),
    ("k above N", {"data": GOOD, "n_clusters": 5}, "n_clusters"),
    ("k float", {"data": GOOD, "n_clusters": 2.5}, "n_clusters"),
    ("k integral float", {"data": GOOD, "n_clusters": 2.0}, "n_clusters"),
    ("k string", {"data": GOOD, "n_clusters": "2"}, "n_clusters"),
    ("k bool", {"data": GOOD, "n_clusters": True}, "n_clusters"),
    ("eps zero", {"data": GOOD, "method": "dbscan", "eps": 0}, "eps"),
    ("eps negative", {"data": GOOD, "method": "dbscan", "eps": -0.5}, "eps"),
    ("eps string", {"data": GOOD, "method": "dbscan", "eps": "0.5"}, "eps"),
    ("eps bool", {"data": GOOD, "method": "dbscan", "eps": True}, "eps"),
    ("eps infinite", {"data": GOOD, "method": "dbscan", "eps": 1e400}, "eps"),
    ("min_samples zero", {"data": GOOD, "method": "dbscan", "min_samples": 0}, "min_samples"),
    ("min_samples float", {"data": GOOD, "method": "dbscan", "min_samples": 2.5}, "min_samples"),
    ("min_samples string", {"data": GOOD, "method": "dbscan", "min_samples": "3"}, "min_samples"),
    ("random_state float", {"data": GOOD, "random_state": 1.5}, "random_state"),
    ("random_state string", {"data": GOOD, "random_state": "42"}, "random_state"),
    ("random_state negative", {"data": GOOD, "random_state": -1}, "random_state"),
    ("random_state too big", {"data": GOOD, "random_state": 2**32}, "random_state"),
]


@pytest.mark.parametrize(("body", "field"), [(b, f) for _, b, f in INVALID], ids=[c for c, _, _ in INVALID])
async def test_invalid_input_is_400(papi: Api, body: Any, field: str) -> None:
    # 1e400 and 10**400 are written as literals: json.dumps would print inf / a huge int
    raw = json.dumps(body).replace("Infinity", "1e400")
    r = await post_raw(papi, raw)
    assert r.status_code == 400, r.text
    out = r.json()
    assert set(out) == {"error", "message"} and out["error"] == "invalid_request"
    assert out["message"].startswith(field + ":") or out["message"].startswith(field + "["), out
    assert "Traceback" not in out["message"]


@pytest.mark.parametrize(
    "raw",
    [
        '{"data": [[1.0, 2.0], [3.0, 4.0',  # truncated
        "{'data': [1, 2]}",  # not JSON
        "",  # empty body
        '{"data": [1.0, NaN, 2.0]}',  # Python's json accepts these literals: the contract does not
        '{"data": [1.0, Infinity, 2.0]}',
        '{"data": [1.0, -Infinity, 2.0]}',
        '{"data": [1, 2, 3], "method": "dbscan", "eps": NaN}',
        "[" * 100_000 + "]" * 100_000,  # deeper than the parser's recursion limit
        b'{"data": [1, 2, 3], "method": "\xff"}',  # not UTF-8
    ],
    ids=["truncated", "single-quotes", "empty", "nan", "inf", "neg-inf", "nan-eps", "deep", "bad-utf8"],
)
async def test_malformed_json_is_400(papi: Api, raw: str | bytes) -> None:
    r = await post_raw(papi, raw)
    assert r.status_code == 400, r.text
    out = r.json()
    assert set(out) == {"error", "message"} and out["error"] == "invalid_request"
    assert out["message"].startswith("body:"), out


async def test_method_specific_ranges_only_apply_to_that_method(papi: Api) -> None:
    # kmeans ignores eps / min_samples ranges, dbscan ignores n_clusters / random_state ranges
    r = await post(papi, {"data": GOOD, "n_clusters": 2, "eps": -1, "min_samples": 0})
    assert r.status_code == 200, r.text
    r = await post(papi, {"data": GOOD, "method": "dbscan", "n_clusters": 99, "random_state": -1})
    assert r.status_code == 200, r.text
    # but a wrong type is rejected whatever the method
    r = await post(papi, {"data": GOOD, "method": "dbscan", "n_clusters": "many"})
    assert r.status_code == 400 and r.json()["message"].startswith("n_clusters:")


async def test_huge_min_samples_is_all_noise(papi: Api) -> None:
    r = await post(papi, {"data": GOOD, "method": "dbscan", "min_samples": 10**30})
    assert r.status_code == 200, r.text
    assert r.json()["noise_points"] == 4 and r.json()["min_samples"] == 10**30


async def test_overflowing_magnitudes_are_400_not_nan(papi: Api) -> None:
    r = await post(
        papi, {"data": [[1e200, 1e200], [1.5e200, 0.0], [-1e200, 3.0], [1e200, 4.0]], "n_clusters": 2}
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_request" and r.json()["message"].startswith("data:")


# ---------------------------------------------------------------- 401, 413, 500


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": f"Basic {ADMIN_KEY}"},
        {"Authorization": "Bearer "},
        {"Authorization": ADMIN_KEY},
    ],
    ids=["missing", "unknown", "basic", "empty", "no-scheme"],
)
async def test_unauthorized(papi: Api, headers: dict[str, str]) -> None:
    r = await post(papi, {"data": GOOD}, headers=headers)
    assert r.status_code == 401, r.text
    assert set(r.json()) == {"error", "message"} and r.json()["error"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"


async def test_auth_checked_before_the_body(papi: Api) -> None:
    r = await papi.client.post(URL, content="not json", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401


async def test_no_namespace_header_needed(papi: Api) -> None:
    r = await post(papi, {"data": GOOD, "n_clusters": 2}, headers=AUTH | {"X-Namespace": "whatever"})
    assert r.status_code == 200


async def test_scoped_key_may_use_it(papi: Api) -> None:
    r = await papi.client.post("/v1/namespaces", json={"namespace_name": "team-x"}, headers=AUTH)
    assert r.status_code == 200, r.text
    r = await papi.client.post(
        "/v1/api-keys", json={"name": "scoped", "namespaces": ["team-x"]}, headers=AUTH
    )
    assert r.status_code == 200, r.text
    r = await post(
        papi, {"data": GOOD, "n_clusters": 2}, headers={"Authorization": f"Bearer {r.json()['key']}"}
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "body",
    [
        {"data": [0.0] * (patterns.MAX_SAMPLES + 1)},
        {"data": [[0.0] * 1001] * 1000},
        {"data": [[0.0] * 10] * 100_001},
    ],
    ids=["too-many-samples", "too-many-values", "both"],
)
async def test_oversized_matrix_is_413(papi: Api, body: dict[str, Any]) -> None:
    r = await post(papi, body)
    assert r.status_code == 413, r.text[:300]
    out = r.json()
    assert set(out) == {"error", "message"} and out["error"] == "payload_too_large"
    assert out["message"].startswith("data:")


async def test_limit_itself_is_accepted(papi: Api) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(1000, 1000)).round(3)  # exactly 1,000,000 values
    r = await post(papi, {"data": X.tolist(), "n_clusters": 1})
    assert r.status_code == 200, r.text[:300]
    assert (r.json()["sample_size"], r.json()["feature_count"]) == (1000, 1000)


async def test_dense_dbscan_over_the_pair_budget_is_413(papi: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(patterns, "MAX_DBSCAN_PAIRS", 10_000)
    r = await post(papi, {"data": [0.0] * 200, "method": "dbscan"})  # 40,000 pairs
    assert r.status_code == 413, r.text
    assert r.json()["error"] == "payload_too_large" and r.json()["message"].startswith("eps:")
    sparse = np.arange(200, dtype=float).tolist()  # each point is its own neighbourhood
    r = await post(papi, {"data": sparse, "method": "dbscan", "min_samples": 1})
    assert r.status_code == 200, r.text
    assert r.json()["n_clusters"] == 200


async def test_body_over_the_global_cap_keeps_the_route_shape(make_settings: Any) -> None:
    async with serve_asgi(make_settings(embedded_worker=False, max_body_mb=1)) as a:
        with_patterns(a)
        big = json.dumps({"data": [0.123456789] * 200_000}).encode()  # ~2.6 MB
        r = await a.client.post(URL, content=big, headers=AUTH | {"Content-Type": "application/json"})
        assert r.status_code == 413, r.text
        assert set(r.json()) == {"error", "message"} and r.json()["error"] == "payload_too_large"

        async def stream() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
            for start in range(0, len(big), 64 * 1024):
                yield big[start : start + 64 * 1024]

        r = await a.client.post(URL, content=stream(), headers=AUTH | {"Content-Type": "application/json"})
        assert r.status_code == 413, r.text
        assert set(r.json()) == {"error", "message"} and r.json()["error"] == "payload_too_large"
        # /v1 keeps the ErrorResponse body
        r = await a.client.post("/v1/collections", content=big, headers=AUTH | {"X-Namespace": "team-a"})
        assert r.status_code == 413 and r.json()["error"]["type"] == "payload_too_large"


async def test_unexpected_error_is_500_without_traceback(papi: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    class Boom(KMeans):
        def fit_predict(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("secret internals /srv/app/x.py line 12")

    monkeypatch.setattr(patterns, "KMeans", Boom)
    r = await post(papi, {"data": GOOD, "n_clusters": 2})
    assert r.status_code == 500
    out = r.json()
    assert set(out) == {"error", "message"} and out["error"] == "internal_error"
    assert "Traceback" not in out["message"] and "secret" not in out["message"]


async def test_clustering_runs_off_the_event_loop(papi: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    started, release = threading.Event(), threading.Event()
    real = patterns.cluster

    def slow(raw: bytes, *rest: Any) -> dict[str, Any]:
        started.set()
        assert release.wait(30)
        return real(raw, *rest)

    monkeypatch.setattr(patterns, "cluster", slow)
    pending = asyncio.create_task(post(papi, {"data": GOOD, "n_clusters": 2}))
    assert await asyncio.to_thread(started.wait, 30)
    # the loop still answers other requests while the clustering thread is busy
    r = await papi.client.get("/v1/health")
    assert r.status_code == 200
    release.set()
    r = await pending
    assert r.status_code == 200 and r.json()["n_clusters"] == 2
