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

    global _blas_outside
    threadpool_limits(n)
    with _blas_lock:
        _blas_outside = n
    with contextlib.suppress(ImportError):  # scikit-learn-intelex is optional
        import daal4py

        daal4py.daalinit(n)
    with contextlib.suppress(ImportError, ValueError):  # numba refuses more threads than it started
        import numba

        numba.set_num_threads(min(n, getattr(numba.config, "NUMBA_NUM_THREADS", n)))


_blas_lock = threading.Lock()
_blas_users = 0
_blas_limit: Any = None
# BLAS threads outside any one_blas_thread, read when the first user ever came in (or set by
# limit_threads) and kept: after a restore, threadpool_info() read in the run's thread reported
# 1 thread for good (both scipy-openblas libraries; one was loaded while the limit was on), which
# ran the post-fit row passes on one thread
_blas_outside: int | None = None


def _blas_threads() -> int:
    from threadpoolctl import threadpool_info

    blas = [int(lib["num_threads"]) for lib in threadpool_info() if lib.get("user_api") == "blas"]
    return max(1, min(blas, default=1))


def run_threads() -> int:
    """Threads a run may use: the BLAS thread count of this process (a pool process:
    `threads_per_run`), as it is outside any `one_blas_thread`."""
    with _blas_lock:
        if _blas_outside is not None:
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
            if _blas_outside is None:
                _blas_outside = _blas_threads()
            _blas_limit = threadpool_limits(1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                # every BLAS loaded now, also one loaded while the limit was on (the limit's own
                # restore knows only those loaded before it)
                threadpool_limits(_blas_outside, user_api="blas")
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
    _beside, _blas_users, _blas_limit = None, 0, None  # (_blas_outside carries over, as the limits do)


os.register_at_fork(after_in_child=_forget_beside)
