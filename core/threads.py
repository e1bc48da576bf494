"""Thread counts of the numeric runtimes a run uses: BLAS/OpenMP (threadpoolctl), oneDAL's TBB
(invisible to threadpoolctl, set through daal4py) and numba (fast-hdbscan)."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def limit_threads(n: int) -> None:
    """Cap every runtime at `n` threads for the rest of the process (a pool process calls it once)."""
    from threadpoolctl import threadpool_limits

    global _blas_outside
    threadpool_limits(n)
    _set_blas_threads(n)  # threadpool_limits may leave OpenBLAS as it was (_set_blas_threads)
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


def _set_blas_threads(n: int) -> None:
    """Every loaded BLAS library at `n` threads, for the whole process, from any thread.

    OpenBLAS through `openblas_set_num_threads_local` where it has it (0.3.27+), not the
    `openblas_set_num_threads` threadpoolctl calls: with scipy-openblas 0.3.31, once a limit had
    been set and restored from the main thread (as one_blas_thread did), a limit set from a
    worker thread changed nothing (its GEMMs still ran on every BLAS thread; test_scores), and
    every run computes in worker threads. The `_local` call limited GEMMs on every thread,
    whichever thread made it (measured)."""
    for setter in _blas_setters():
        setter(n)


_setters: tuple[int, list[Callable[[int], object]]] | None = None


def _blas_setters() -> list[Callable[[int], object]]:
    """A thread-count setter per loaded BLAS library. threadpoolctl finds them by scanning every
    loaded library: ~4 ms of dozens of ctypes calls, each of which lets go of the GIL, and beside
    a thread running Python each waited up to the 5 ms switch interval to get it back (the scan
    took ~0.5 s beside a busy thread: every `one_blas_thread` of a run did that while the event
    loop copied a pull). So the scan runs again only when a module was imported since (how a
    BLAS library gets loaded), and OpenBLAS's setter is called through `ctypes.PyDLL`, which keeps
    the GIL: the call returns at once, and waits for no other thread."""
    import ctypes

    global _setters
    modules = len(sys.modules)
    cached = _setters
    if cached is not None and cached[0] == modules:
        return cached[1]
    from threadpoolctl import ThreadpoolController

    found: list[Callable[[int], object]] = []
    for lib in ThreadpoolController().select(user_api="blas").lib_controllers:
        local = None
        if lib.internal_api == "openblas":
            with contextlib.suppress(OSError, AttributeError):
                local = ctypes.PyDLL(lib.filepath).openblas_set_num_threads_local
        if local is not None:
            local.argtypes, local.restype = [ctypes.c_int], ctypes.c_int
            found.append(local)
        else:
            found.append(lib.set_num_threads)
    _setters = (modules, found)
    return found


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS at one thread while any caller is inside. BLAS thread counts are process-wide, so
    two threads each setting one and restoring what they found would restore each other's
    setting (leaving BLAS at one thread for good, or at two in the middle of k-means++); this
    counts its users and restores the count outside when the last one leaves."""
    global _blas_users, _blas_outside

    with _blas_lock:
        if _blas_users == 0:
            if _blas_outside is None:
                _blas_outside = _blas_threads()
            _set_blas_threads(1)
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                # every BLAS loaded now, also one loaded while the limit was on
                _set_blas_threads(_blas_outside or 1)


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
    global _beside, _blas_users
    _beside, _blas_users = None, 0  # (_blas_outside carries over, as the limits do)


os.register_at_fork(after_in_child=_forget_beside)
