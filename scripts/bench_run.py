"""Whole runs: queue → pull → algorithm → metrics → artifacts → completed, through the real API and
its embedded worker (the default deployment), against the algorithm stage alone on the same
normalised matrix, alternating; plus the peak memory a run adds, next to the matrix size. Both
start on memory just touched (bench_harness.warm_memory: this VM's host reclaims freed memory
within seconds, and the first touch afterwards costs ~3 ms per MB).

The documents go in through the store directly (untimed: ingest has its own case); one small
batch goes through the API first so the collection's vector index is registered as usual.

Three whole runs per repeat: the first run of the scope (nothing kept: it reads the whole store,
as the first run of a collection does), one right after a write to one document's fields (the
kept matrix brought up to date with that document: core.store.pull_refresh), then the same
cluster again (the matrix kept as is: core.store.pull_cache).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from bench_harness import (
    CaseResult,
    Options,
    Stats,
    Target,
    peak_rss_since,
    reset_peak_rss,
    timed,
)
from bench_hdbscan import wide_blobs

KEY = "bench-admin-key-0123456789"
H = {"Authorization": f"Bearer {KEY}", "X-Namespace": "bench"}


async def _fill(client: httpx.AsyncClient, app: Any, X: np.ndarray) -> None:
    from core.store import documents

    r = await client.post("/v1/collections", json={"collection_name": "points"}, headers=H)
    r.raise_for_status()
    cid = r.json()["collection_id"]
    first = [{"document_id": f"d{i:07d}", "vectors": {"emb": X[i].tolist()}} for i in range(10)]
    r = await client.post(
        "/v1/namespaces/bench/documents/upsert", json={"collection_id": cid, "documents": first}, headers=H
    )
    r.raise_for_status()
    db, ns = app.state.services.db, r.request.headers["X-Namespace"]
    ns_id = (await db.namespaces.find_one({"$or": [{"namespace_id": ns}, {"namespace_name": ns}]}))[
        "namespace_id"
    ]
    for start in range(10, X.shape[0], 5000):
        rows = range(start, min(start + 5000, X.shape[0]))
        records = [
            documents.to_record(
                ns=ns_id, collection_id=cid, document_id=f"d{i:07d}", fields={}, vectors={"emb": X[i]}
            )
            for i in rows
        ]
        await db.documents.insert_many(records)


async def _cluster(client: httpx.AsyncClient, method: str, params: dict[str, Any]) -> str:
    body = {
        "collection_ids": ["points"],
        "vector_config": {"clustering_method": method, "feature_uris": ["emb"], "algorithm_params": params},
    }
    r = await client.post("/v1/clusters", json=body, headers=H)
    r.raise_for_status()
    return str(r.json()["cluster_id"])


async def _execute(
    client: httpx.AsyncClient, cluster_id: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Execute the stored cluster (`body`: the execute request's options) and poll every 20 ms
    until the run completes; a run that ends otherwise raises."""
    r = await client.post(f"/v1/clusters/{cluster_id}/execute", headers=H, json=body)
    r.raise_for_status()
    run_id = r.json()["additional_data"]["run_id"]
    while True:
        r = await client.get(f"/v1/clusters/{cluster_id}/executions/{run_id}", headers=H)
        body = r.json()
        if body["status"] in ("completed", "failed", "canceled"):
            if body["status"] != "completed":
                raise RuntimeError(f"run {run_id} ended {body['status']}: {body}")
            return dict(body)
        await asyncio.sleep(0.02)


def _stage(X: np.ndarray, method: str, params: dict[str, Any]) -> Any:
    """The algorithm stage alone, as the pipeline runs it (normalised rows, any reduction)."""
    from core.algorithms import get_algorithm, validate_params
    from core.pipeline import PipelineConfig, l2_normalize, reduce_for_fit

    spec = get_algorithm(method)
    p = validate_params(method, params)
    Xn = l2_normalize(X)
    Z, _ = reduce_for_fit(Xn, spec.reduces_high_dim, PipelineConfig(method, p, seed=42))
    return lambda: spec.fit(Z, p, 42)


def case(method: str, params: dict[str, Any], n: int, d: int, k: int) -> Any:
    def run(opts: Options) -> CaseResult:
        from api.main import create_app
        from core.algorithms import hdbscan_engine
        from core.settings import Settings

        nn, dd = (5_000, 64) if opts.quick else (n, d)
        X, _ = wide_blobs(nn, dd, k=k)
        if method == "hdbscan":
            hdbscan_engine.warm_up()
        stage = _stage(X, method, params)
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(api_keys=[KEY], data_dir=Path(tmp), warm_up=False)
            return asyncio.run(_measure(create_app(settings), X, method, params, stage, opts))

    return run


async def _measure(
    app: Any, X: np.ndarray, method: str, params: dict[str, Any], stage: Any, opts: Options
) -> CaseResult:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=600) as client:
            await _fill(client, app, X)
            cluster_id = await _cluster(client, method, params)
            first = Stats("whole run, first of its scope (reads the store)", [], [], [])
            whole = Stats("whole run after a write (kept matrix refreshed)", [], [], [])
            again = Stats("whole run repeated (the kept matrix)", [], [], [])
            alone = Stats(f"{method} algorithm stage alone", [], [], [])
            peaks_first: list[float] = []
            peaks: list[float] = []
            peaks_again: list[float] = []
            # both candidates start on memory just touched (warm_memory): as much as a run allocates
            # over its life (the matrix, oneDAL's copies, samples), not only its peak
            warm = max(2048.0, 6 * X.nbytes / 2**20)
            docs = app.state.services.db.documents
            from core.store import pull_cache

            for i in range(opts.repeats):
                for stats, sink in ((first, peaks_first), (whole, peaks), (again, peaks_again)):
                    if stats is first:
                        cache = pull_cache.of(docs)
                        assert cache is not None
                        cache.clear()  # nothing kept: as the first run of a collection
                    elif stats is whole:
                        await docs.update_one({"document_id": "d0000000"}, {"$set": {"fields.touched": i}})
                    # the worker runs in another thread of this process: this process's peak is the run's
                    base = await asyncio.to_thread(reset_peak_rss, warm)
                    started = time.perf_counter()
                    body = await _execute(client, cluster_id)
                    stats.runs.append(time.perf_counter() - started)
                    sink.append(peak_rss_since(base))
                    stats.info = {"server execution_time_ms": body.get("execution_time_ms")}
                await asyncio.to_thread(reset_peak_rss, warm)  # the same start as the whole run's
                wall, foreign, own, _ = await asyncio.to_thread(timed, stage)
                alone.runs.append(wall)
                alone.foreign_cores.append(foreign)
                alone.cores_used.append(own)
    matrix_mb = X.nbytes / 2**20
    res = CaseResult(
        f"run/{method}",
        f"whole {method} run, {X.shape[0]}×{X.shape[1]}, embedded default",
        [alone, first, whole, again],
        baseline=alone.name,
    )
    peak = float(np.median(peaks))
    for name, p in (("first of its scope", peaks_first), ("after a write", peaks), ("repeated", peaks_again)):
        res.table.append(
            {
                "run": name,
                "matrix MB": round(matrix_mb),
                "peak ΔRSS MB (median)": round(float(np.median(p))),
                "× matrix": round(float(np.median(p)) / matrix_mb, 2),
            }
        )
    if method == "kmeans":
        runs = (
            (first, "first of its scope (read from the store)"),
            (whole, "after a write (kept matrix refreshed)"),
            (again, "repeated (kept matrix)"),
        )
        for stats, when in runs:
            overhead = stats.median / alone.median - 1
            res.targets.append(
                Target(
                    f"a whole run {when} costs ≤ 25% more than its algorithm stage",
                    overhead <= 0.25,
                    f"+{overhead:.0%}",
                )
            )
    peak = max(peak, float(np.median(peaks_again)), float(np.median(peaks_first)))
    res.targets.append(
        Target(
            "peak memory per run ≤ 3× the vector matrix",
            peak <= 3 * matrix_mb,
            f"{peak:.0f} MB = {peak / matrix_mb:.2f}× {matrix_mb:.0f} MB",
        )
    )
    return res


CASES = {
    "run/kmeans": case("kmeans", {"n_clusters": 50}, 100_000, 768, 50),
    "run/hdbscan": case("hdbscan", {"min_cluster_size": 50, "min_samples": 10}, 100_000, 768, 20),
}
