"""worker.presample: a first k-means run of its scope starts its restarts on the sample while the
pull still copies the rest, and clusters exactly as a run that computes them itself."""

from __future__ import annotations

import io
import threading
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from core.algorithms import kmeans_engine
from core.store import pull_cache
from tests.conftest import Api, blobs

# 22,002 points × 64: above the exact path's 1M cells and the engine's 20k-point sample
X_BIG = blobs(n_per=7334, dims=64, centers=3, seed=4)


def _members(api: Api, run: dict[str, Any]) -> dict[str, Any]:
    table = pq.read_table(io.BytesIO(api.app.state.services.artifacts.get_bytes(run["members_key"])))
    rows = table.to_pydict()
    return dict(
        zip(
            rows["document_id"],
            zip(rows["cluster_id"], rows["distance_to_centroid"], strict=True),
            strict=True,
        )
    )


@pytest.fixture
def restarts_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The thread each call of kmeans_engine.restarts ran on."""
    seen: list[str] = []
    real = kmeans_engine.restarts

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(kmeans_engine, "restarts", spy)
    return seen


async def test_the_first_run_presamples_and_clusters_as_a_repeated_run(
    api: Api, restarts_threads: list[str]
) -> None:
    col, _ = await api.make_collection(X=X_BIG)
    cluster = await api.make_cluster(col, k=8, params={"n_clusters": 8, "n_init": 2})
    first = await api.execute(cluster)
    assert first["status"] == "completed", first
    assert first["params_used"]["engine"]["sample_size"] == 20_000
    # the restarts ran once, beside the pull; the pipeline's fit took their result
    assert len(restarts_threads) == 1 and restarts_threads[0].startswith("clusterd-presample")

    cache = pull_cache.of(api.app.state.services.db.documents)
    assert cache is not None and len(cache) == 1
    second = await api.execute(cluster)  # the kept matrix: the pipeline runs the restarts itself
    assert second["status"] == "completed" and cache.hits == 1
    assert len(restarts_threads) == 2 and not restarts_threads[1].startswith("clusterd-presample")
    assert second["metrics"] == first["metrics"]
    assert _members(api, second) == _members(api, first)
    assert [c["num_members"] for c in second["centroids"]] == [c["num_members"] for c in first["centroids"]]


async def test_runs_the_presample_cannot_serve_go_the_usual_way(
    api: Api, restarts_threads: list[str]
) -> None:
    col, _ = await api.make_collection(X=X_BIG)
    cluster = await api.make_cluster(col, k=4)
    r = await api.client.post(
        f"/v1/clusters/{cluster}/execute", headers=api.h(), json={"sample_size": 21_000}
    )
    assert r.status_code == 200, r.text
    sampled = await api.wait_run(cluster, r.json()["additional_data"]["run_id"])
    assert sampled["status"] == "completed" and sampled["sampling"]["to"] == 21_000
    small = await api.make_collection("small", X=blobs(n_per=100, dims=64, centers=3))
    assert (await api.execute(await api.make_cluster(small[0], k=4)))["status"] == "completed"  # exact path
    assert restarts_threads and not any(t.startswith("clusterd-presample") for t in restarts_threads)


def test_a_presampled_fit_for_another_sample_is_not_used(caplog: pytest.LogCaptureFixture) -> None:
    from concurrent.futures import Future

    X = np.ascontiguousarray(X_BIG / np.linalg.norm(X_BIG, axis=1, keepdims=True), dtype=np.float32)
    plain = kmeans_engine.fit(X, 8, seed=3)
    rows, rng = kmeans_engine.sample_rows(X.shape[0], 8, 3)
    assert rows is not None
    opts = kmeans_engine.Restarts(8, 1, "k-means++", 300, 1e-4, kmeans_engine.default_backend())
    wrong: Future[Any] = Future()
    wrong.set_result(kmeans_engine.restarts(X[rows][::-1].copy(), rng, opts))  # not the fit's sample
    token = kmeans_engine.PRESAMPLED.set(kmeans_engine.SampleFit(opts, rows, X[rows][::-1].copy(), wrong))
    try:
        again = kmeans_engine.fit(X, 8, seed=3)
    finally:
        kmeans_engine.PRESAMPLED.reset(token)
    assert "differs" in caplog.text
    assert np.array_equal(again.labels, plain.labels) and np.array_equal(again.centers, plain.centers)
