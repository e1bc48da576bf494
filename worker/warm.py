"""What a worker does once when it starts, so that its first run costs what later ones do: the row
kernels and k-means++ seeding compiled (or loaded from numba's cache), oneDAL's k-means loaded and
run once, the parquet writer and the labelling modules imported. Without it the first whole
k-means run after `clusterd serve` took ~2.5 s longer (measured by scripts/bench_run.py, 100k×768)."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

log = logging.getLogger("clusterd.worker")

_started = False
_lock = threading.Lock()


def compile_kernels() -> None:
    """The numba kernels of a run compiled or loaded from numba's cache (`clusterd worker` calls it
    before its pool forks, so the children inherit them)."""
    from core import row_kernels
    from core.algorithms import kmeans_seeding

    row_kernels.warm_up()
    kmeans_seeding.warm_up()


def warm_run_path() -> float:
    """Blocking; returns the seconds it took."""
    from core import artifacts
    from core.algorithms import kmeans_engine
    from core.metrics import silhouette_sample

    started = time.perf_counter()
    compile_kernels()
    X = np.random.default_rng(0).normal(size=(256, 8)).astype(np.float32)
    kmeans_engine.lloyd(X, X[:4].copy(), max_iter=2, tol=1e-4)
    silhouette_sample(X, 64, 0)
    table = artifacts.members_table(["d"], ["c"], ["cl_0"], np.zeros(1, np.float32))
    artifacts.table_to_parquet_bytes(table)
    import worker.labeling  # noqa: F401 - c-TF-IDF and the LLM client

    return time.perf_counter() - started


def start() -> None:
    """`warm_run_path` in a daemon thread, once per process; a failure only leaves the first run
    to pay for what it did not load."""
    global _started
    with _lock:
        if _started:
            return
        _started = True
    threading.Thread(target=_quietly, name="clusterd-warm-up", daemon=True).start()


def _quietly() -> None:
    try:
        log.info("run path warmed in %.2f s", warm_run_path())
    except Exception:  # noqa: BLE001
        log.exception("warming the run path failed; the first run loads what it needs")
