"""The fast HDBSCAN path: fast-hdbscan on wide (> 30-d) data once its JIT code is compiled.

Measured at 50k×768 after PCA to 32 dims (docs/benchmarks.md): the `hdbscan` package's boruvka
kd-tree takes 4–6 s, fast-hdbscan 2.1 s with the same labels (ARI 1.0). Above 30 dimensions
fast-hdbscan builds its kNN graph with pynndescent (approximate nearest neighbours); at or below 30
it uses an exact kd-tree that is slower than the `hdbscan` package from ~16 dims on, so narrow data
stays on `hdbscan`. pynndescent's numba code cannot be cached on disk and costs ~30 s to compile in
every new process, so a worker compiles it once at start in a background thread (`start_warm_up`);
until that has finished runs use `hdbscan` — a run never waits for a compile.

Only params both packages mean the same way take the fast path (euclidean, alpha 1, no reference
implementation mode) and only from FAST_MIN_POINTS points on, so small runs keep exact parity with
the `hdbscan` package.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

FAST_MIN_POINTS = 5_000
FAST_MIN_DIMS = 31  # fast-hdbscan's pynndescent path; its kd-tree path is slower than hdbscan's
WARM_UP_POINTS = 2_000
WARM_UP_DIMS = 32  # > 30: the pynndescent path, the one that needs compiling

_warm = threading.Event()
_started = threading.Lock()
_thread: threading.Thread | None = None
warm_up_seconds: float | None = None


def is_warm() -> bool:
    return _warm.is_set()


def eligible(p: Any, n: int, d: int) -> bool:
    """Whether a fit with params `p` on n×d data may take the fast path (once warm)."""
    return (
        n >= FAST_MIN_POINTS
        and d >= FAST_MIN_DIMS
        and p.metric in ("euclidean", "l2")
        and float(p.alpha) == 1.0
        and not p.match_reference_implementation
    )


def fit(X: np.ndarray, p: Any) -> np.ndarray:
    """fast-hdbscan with the request's params; the hdbscan package's meaning of each."""
    import fast_hdbscan

    model = fast_hdbscan.HDBSCAN(
        min_cluster_size=p.min_cluster_size,
        min_samples=p.min_samples,
        cluster_selection_method=p.cluster_selection_method,
        allow_single_cluster=p.allow_single_cluster,
        cluster_selection_epsilon=float(p.cluster_selection_epsilon),
        max_cluster_size=p.max_cluster_size or np.inf,
    )
    X = np.ascontiguousarray(X, dtype=np.float32)
    if not X.flags.writeable:  # a cached matrix (core.store.pull_cache): numba would compile its
        X = X.copy()  # kernels again for read-only arrays, inside the run
    return np.asarray(model.fit_predict(X), dtype=np.int64)


def warm_up() -> float:
    """Compile fast-hdbscan's code paths now (blocking); returns the seconds it took."""
    global warm_up_seconds
    import fast_hdbscan

    started = time.perf_counter()
    X = np.random.default_rng(0).normal(size=(WARM_UP_POINTS, WARM_UP_DIMS)).astype(np.float32)
    fast_hdbscan.HDBSCAN(min_cluster_size=20).fit_predict(X)
    warm_up_seconds = time.perf_counter() - started
    _warm.set()
    log.info("fast-hdbscan compiled in %.1f s; wide HDBSCAN runs now take the fast path", warm_up_seconds)
    return warm_up_seconds


def start_warm_up() -> None:
    """Compile in a daemon thread, once per process; a failure only keeps runs on `hdbscan`."""
    global _thread
    with _started:
        if _thread is not None or _warm.is_set():
            return

        def target() -> None:
            try:
                warm_up()
            except Exception:  # an accelerator that fails must not take the worker down
                log.exception("fast-hdbscan warm-up failed; HDBSCAN runs use the hdbscan package")

        _thread = threading.Thread(target=target, name="fast-hdbscan-warm-up", daemon=True)
        _thread.start()


def wait_warm(timeout: float | None = None) -> bool:
    """Block until the warm-up has finished (benchmarks and tests)."""
    return _warm.wait(timeout)
