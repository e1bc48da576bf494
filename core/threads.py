"""Thread counts of the numeric runtimes a run uses: BLAS/OpenMP (threadpoolctl), oneDAL's TBB
(invisible to threadpoolctl, set through daal4py) and numba (fast-hdbscan)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def limit_threads(n: int) -> None:
    """Cap every runtime at `n` threads for the rest of the process (a pool process calls it once)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(n)
    with contextlib.suppress(ImportError):  # scikit-learn-intelex is optional
        import daal4py

        daal4py.daalinit(n)
    with contextlib.suppress(ImportError, ValueError):  # numba refuses more threads than it started
        import numba

        numba.set_num_threads(min(n, getattr(numba.config, "NUMBA_NUM_THREADS", n)))


_blas_lock = threading.Lock()
_blas_users = 0
_blas_limit: Any = None
_blas_outside = 1  # BLAS threads before the first current user of one_blas_thread came in


def _blas_threads() -> int:
    from threadpoolctl import threadpool_info

    blas = [int(lib["num_threads"]) for lib in threadpool_info() if lib.get("user_api") == "blas"]
    return max(1, min(blas, default=1))


def run_threads() -> int:
    """Threads a run may use: the BLAS thread count of this process (a pool process:
    `threads_per_run`), as it is outside any `one_blas_thread`."""
    with _blas_lock:
        if _blas_users:
            return _blas_outside
    return _blas_threads()


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS at one thread while any caller is inside. threadpoolctl's limits are process-wide, so
    two threads each entering and leaving `threadpool_limits(1)` would restore each other's
    setting (leaving BLAS at one thread for good, or at two in the middle of k-means++); this
    counts its users and restores the original limit when the last one leaves."""
    global _blas_users, _blas_limit, _blas_outside
    from threadpoolctl import threadpool_limits

    with _blas_lock:
        if _blas_users == 0:
            _blas_outside = _blas_threads()
            _blas_limit = threadpool_limits(1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                _blas_limit.restore_original_limits()
                _blas_limit = None


_beside: ThreadPoolExecutor | None = None


def beside_fit(job: Callable[[], T]) -> Future[T]:
    """Run `job` on the one thread this process keeps for work beside a fit (with one BLAS thread):
    label-free work (a layout, the silhouette's sample distances) that fills the core k-means++
    seeding leaves idle. Jobs run one after another, so they never take more than that core."""
    global _beside
    with _blas_lock:
        if _beside is None:
            _beside = ThreadPoolExecutor(1, thread_name_prefix="clusterd-beside-fit")
        pool = _beside

    def run() -> T:
        with one_blas_thread():
            return job()

    return pool.submit(run)


def _forget_beside() -> None:  # a forked child has none of its parent's threads
    global _beside, _blas_users, _blas_limit
    _beside, _blas_users, _blas_limit = None, 0, None


os.register_at_fork(after_in_child=_forget_beside)
