"""Where a whole k-means run's time goes beyond its algorithm stage: a timeline per run.

    python scripts/profile_run.py                       # 100k×768, k=50, 3 repeats
    python scripts/profile_run.py --n 30000 --runs repeat,write --repeats 5
    python scripts/profile_run.py --defer-layout        # the run without its 2-D layout

The same data and app as bench_run's `run/kmeans` case (embedded default, in-process ASGI client
polling every 20 ms). Each run prints when each timed piece started (ms after execute), how long
it took and on which thread, then the CPU every thread of the process used during the run; the
stage alone runs after each repeat, timed the same way. A diagnostic, not a benchmark: the
wrappers add a few µs per call, and `scripts/bench.py --only run/kmeans` gives the ratios.
Run it with GLIBC_TUNABLES=glibc.malloc.hugetlb=1, as scripts/run.sh starts the server.
"""

from __future__ import annotations

import asyncio
import functools
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import bench_run  # noqa: E402
from bench_harness import reset_peak_rss  # noqa: E402
from bench_hdbscan import wide_blobs  # noqa: E402

Event = tuple[str, float, float, str]  # (piece, started s after execute, seconds, thread)
_events: list[Event] = []
_t0 = [0.0]


def _timed(module: Any, name: str, label: str | None = None) -> None:
    f = getattr(module, name)

    @functools.wraps(f)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return f(*args, **kwargs)
        finally:
            thread = threading.current_thread().name[:16]
            _events.append((label or name, start - _t0[0], time.perf_counter() - start, thread))

    setattr(module, name, timed)


def _timed_async(module: Any, name: str) -> None:
    f = getattr(module, name)

    @functools.wraps(f)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return await f(*args, **kwargs)
        finally:
            _events.append((name, start - _t0[0], time.perf_counter() - start, "event loop"))

    setattr(module, name, timed)


def _instrument() -> None:
    """Wrap the pieces under the names their callers look them up by."""
    import core.pipeline as pipeline
    import worker.execution as execution
    import worker.labeling as labeling
    import worker.layout_stage as layout_stage
    import worker.stages as stages
    import worker.vector_run as vector_run
    from core.algorithms import kmeans_engine
    from core.store import executions

    _timed(kmeans_engine, "_subsample", "subsample")
    _timed(kmeans_engine, "kmeans_plusplus", "k-means++ seeding")
    _timed(kmeans_engine, "lloyd", "lloyd (sample, then all)")
    for name in (
        "checked_input",
        "checked_normalized",
        "l2_normalize",
        "silhouette_sample",
        "mean_geometry",
        "quality_metrics",
    ):
        _timed(pipeline, name)
    _timed(layout_stage, "compute_layout", "layout (beside the fit)")
    _timed(layout_stage, "run_fields", "layout run_fields")
    _timed(pipeline, "cosine_stats")
    _timed(labeling.members, "ranked_members")
    _timed(labeling.ctfidf, "class_keywords")
    _timed_async(labeling, "_member_inputs")
    _timed(vector_run, "_prepare_outputs")
    _timed(vector_run, "_write_artifacts")
    _timed_async(vector_run, "_pull")
    _timed_async(vector_run, "label_clusters")
    for name in ("claim", "complete"):
        _timed_async(executions, name)
    _timed_async(execution, "_mirror")
    _timed_async(stages.Progress, "finalize")  # (not `checkpoint`: the pull makes one per batch, ~0.1 ms)


def _thread_cpu() -> dict[str, tuple[str, int]]:
    """Native thread id -> (name, CPU ticks so far), from /proc (Linux)."""
    names = {str(t.native_id): t.name[:16] for t in threading.enumerate()}
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        out[tid] = (names.get(tid, f"native-{tid}"), int(fields[11]) + int(fields[12]))
    return out


def _report(title: str, seconds: float, before: dict[str, tuple[str, int]]) -> None:
    print(f"--- {title}: {seconds * 1000:.0f} ms")
    for piece, at, took, thread in sorted(_events, key=lambda e: e[1]):
        print(f"    {piece:28s} at {at * 1000:7.1f}  took {took * 1000:7.1f}  [{thread}]")
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    after = _thread_cpu()
    used = sorted(
        ((ticks - before.get(tid, ("", 0))[1]) * tick_ms, name) for tid, (name, ticks) in after.items()
    )
    print("    CPU ms by thread: " + ", ".join(f"{name} {ms:.0f}" for ms, name in reversed(used) if ms > 0))


async def _profile(n: int, runs: list[str], repeats: int, defer_layout: bool) -> None:
    from api.main import create_app
    from core.settings import Settings
    from core.store import pull_cache

    X, _ = wide_blobs(n, 768, k=50)
    stage = bench_run._stage(X, "kmeans", {"n_clusters": 50})
    _instrument()
    times: dict[str, list[float]] = {r: [] for r in [*runs, "alone"]}
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(api_keys=[bench_run.KEY], data_dir=Path(tmp), warm_up=False))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://profile", timeout=600
            ) as client:
                await bench_run._fill(client, app, X)
                cluster_id = await bench_run._cluster(client, "kmeans", {"n_clusters": 50})
                docs = app.state.services.db.documents
                body = {"defer_visualization": True} if defer_layout else None
                for i in range(repeats):
                    for kind in runs:
                        if kind == "first":
                            cache = pull_cache.of(docs)
                            assert cache is not None
                            cache.clear()
                        elif kind == "write":
                            await docs.update_one(
                                {"document_id": "d0000000"}, {"$set": {"fields.touched": i}}
                            )
                        await asyncio.to_thread(reset_peak_rss, 2048.0)
                        seconds = await _timed_run(client, cluster_id, body)
                        times[kind].append(seconds)
                    await asyncio.to_thread(reset_peak_rss, 2048.0)
                    _events.clear()
                    before, _t0[0] = _thread_cpu(), time.perf_counter()
                    stage()
                    times["alone"].append(time.perf_counter() - _t0[0])
                    _report("stage alone", times["alone"][-1], before)
    alone = statistics.median(times["alone"])
    print(
        f"medians: stage alone {alone * 1000:.0f} ms; "
        + "; ".join(
            f"{kind} {statistics.median(v) * 1000:.0f} ms (+{statistics.median(v) / alone - 1:.0%})"
            for kind, v in times.items()
            if kind != "alone"
        )
    )


async def _timed_run(client: httpx.AsyncClient, cluster_id: str, body: dict[str, Any] | None) -> float:
    _events.clear()
    before, _t0[0] = _thread_cpu(), time.perf_counter()
    await bench_run._execute(client, cluster_id, body)  # polls every 20 ms, as the bench does
    seconds = time.perf_counter() - _t0[0]
    _report("whole run", seconds, before)
    return seconds


def main(
    n: Annotated[int, typer.Option(help="documents (768-d, 50 blobs)")] = 100_000,
    runs: Annotated[
        str, typer.Option(help="per repeat, in order: first, write, repeat")
    ] = "first,write,repeat",
    repeats: int = 3,
    defer_layout: Annotated[bool, typer.Option(help="execute with defer_visualization")] = False,
) -> None:
    kinds = [r.strip() for r in runs.split(",") if r.strip()]
    if any(kind not in ("first", "write", "repeat") for kind in kinds):
        raise typer.BadParameter("runs: each of first, write, repeat", param_hint="--runs")
    asyncio.run(_profile(n, kinds, repeats, defer_layout))


if __name__ == "__main__":
    typer.run(main)
