"""Compiled passes over the rows of a float32 matrix, shared out over threads.

The work after a fit (cluster sums, each point's distance and cosine to its centroid, row norms)
is memory-bound: numpy spends it in float64 temporaries, one-hot products and single-threaded
einsums (0.18 s for the mean geometry at 100k×768). These numba kernels read each row once, sum
in float64 and release the GIL, so `in_row_ranges` runs them on contiguous row ranges in
`threads` threads (~0.03 s for the same work on 2 cores).

Compiled code is cached on disk (`cache=True`); `warm_up()` compiles or loads it when a worker
starts, so no run pays for it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

# a row reduction may reassociate its float64 sums (vector lanes); NaN and inf still propagate
_REDUCE = {"reassoc", "contract"}
MIN_ROWS_PER_THREAD = 4096  # below this a second thread costs more than it saves
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


@njit(nogil=True, cache=True)
def _cluster_sums(X, idx, start, stop, totals):  # type: ignore[no-untyped-def]
    d = X.shape[1]
    for i in range(start, stop):
        c = idx[i]
        if c >= 0:
            for j in range(d):
                totals[c, j] += X[i, j]


@njit(nogil=True, cache=True, fastmath=_REDUCE)
def _point_pass(X, idx, C, c_norm, start, stop, sq, dist, cos):  # type: ignore[no-untyped-def]
    d = X.shape[1]
    for i in range(start, stop):
        c = idx[i]
        if c < 0:
            continue
        dot = 0.0
        xx = 0.0
        dd = 0.0
        for j in range(d):
            x = np.float64(X[i, j])
            y = np.float64(C[c, j])
            dot += x * y
            xx += x * x
            diff = x - y
            dd += diff * diff
        sq[i] = dd
        dist[i] = np.sqrt(dd)
        denom = np.sqrt(xx) * c_norm[c]
        cos[i] = 0.0 if not denom > 0 else min(1.0, max(-1.0, dot / denom))


@njit(nogil=True, cache=True, fastmath=_REDUCE, inline="always")
def _row_sq(X, i):  # type: ignore[no-untyped-def]
    """Row i's float64 sum of squares: one body for `_sq_norms` and `_normalize_rows`, so both
    give the same bits."""
    s = 0.0
    for j in range(X.shape[1]):
        x = np.float64(X[i, j])
        s += x * x
    return s


@njit(nogil=True, cache=True, fastmath=_REDUCE)
def _sq_norms(X, start, stop, out):  # type: ignore[no-untyped-def]
    for i in range(start, stop):
        out[i] = _row_sq(X, i)


@njit(nogil=True, cache=True, fastmath=_REDUCE)
def _normalize_rows(X, start, stop, out):  # type: ignore[no-untyped-def]
    d = X.shape[1]
    for i in range(start, stop):
        s = _row_sq(X, i)
        out[i] = s
        if s > 0.0 and s < np.inf:  # zero rows stay zero; NaN / inf rows are left as they are
            f = np.float32(1.0 / np.sqrt(s))
            for j in range(d):
                X[i, j] *= f


@njit(nogil=True, cache=True)
def _scale_rows(X, scale, start, stop):  # type: ignore[no-untyped-def]
    d = X.shape[1]
    for i in range(start, stop):
        f = scale[i]
        for j in range(d):
            X[i, j] *= f


def _forget_pool() -> None:  # a forked child has none of its parent's threads
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_forget_pool)


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(8, thread_name_prefix="clusterd-rows")
        return _pool


def row_parts(n: int, threads: int) -> int:
    """How many contiguous ranges `in_row_ranges` splits n rows into (at most `threads`)."""
    return max(1, min(threads, n // MIN_ROWS_PER_THREAD))


def in_row_ranges(n: int, threads: int, work: Callable[[int, int, int], None]) -> None:
    """work(part, start, stop) over `row_parts(n, threads)` contiguous ranges of rows 0..n, in
    parallel."""
    parts = row_parts(n, threads)
    bounds = np.linspace(0, n, parts + 1).astype(np.int64)
    if parts == 1:
        work(0, 0, n)
        return
    futures = [_executor().submit(work, p, int(bounds[p]), int(bounds[p + 1])) for p in range(parts)]
    for f in futures:
        f.result()  # re-raise a part's exception here


def cluster_sums(X: np.ndarray, idx: np.ndarray, k: int, threads: int) -> np.ndarray:
    """float64 (k, D) sums of the rows of float32 `X` per centroid row `idx` (-1: in none)."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    parts = row_parts(X.shape[0], threads)  # one float64 accumulator per range
    totals = np.zeros((parts, k, X.shape[1]), dtype=np.float64)
    in_row_ranges(X.shape[0], parts, lambda p, a, b: _cluster_sums(X, idx, a, b, totals[p]))
    return totals.sum(axis=0)


def point_geometry(
    X: np.ndarray, idx: np.ndarray, centroids: np.ndarray, threads: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's (squared distance float64, distance float32, cosine float32) to its own row of
    float32 `centroids` (`idx`; -1: NaN). A zero row or centroid has cosine 0."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    C = np.ascontiguousarray(centroids, dtype=np.float32)
    c_norm = np.sqrt(np.einsum("ij,ij->i", C.astype(np.float64), C.astype(np.float64)))
    n = X.shape[0]
    sq = np.full(n, np.nan, dtype=np.float64)
    dist = np.full(n, np.nan, dtype=np.float32)
    cos = np.full(n, np.nan, dtype=np.float32)
    in_row_ranges(n, threads, lambda _p, a, b: _point_pass(X, idx, C, c_norm, a, b, sq, dist, cos))
    return sq, dist, cos


def sq_norms(X: np.ndarray, threads: int) -> np.ndarray:
    """float64 squared norm of every row of float32 `X` (NaN / inf rows give NaN / inf: a float32
    value squared cannot overflow float64)."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    out = np.empty(X.shape[0], dtype=np.float64)
    in_row_ranges(X.shape[0], threads, lambda _p, a, b: _sq_norms(X, a, b, out))
    return out


def normalize_rows(X: np.ndarray, threads: int) -> np.ndarray:
    """Scale every row of `X` (C-contiguous, writable float32) to unit length in place, in one
    pass that also returns the rows' float64 squared norms as `sq_norms` gives them (NaN / inf
    rows are left as they are and give NaN / inf; zero rows stay zero). The same bits as
    `sq_norms` followed by `scale_rows` by float32(1 / sqrt(norm²)), one read of X fewer."""
    if X.dtype != np.float32 or not X.flags.c_contiguous or not X.flags.writeable:
        raise ValueError("normalize_rows needs a C-contiguous, writable float32 matrix")
    out = np.empty(X.shape[0], dtype=np.float64)
    in_row_ranges(X.shape[0], threads, lambda _p, a, b: _normalize_rows(X, a, b, out))
    return out


def scale_rows(X: np.ndarray, scale: np.ndarray, threads: int) -> None:
    """X[i] *= scale[i] in place (`X` C-contiguous float32, `scale` float32)."""
    scale = np.ascontiguousarray(scale, dtype=np.float32)
    in_row_ranges(X.shape[0], threads, lambda _p, a, b: _scale_rows(X, scale, a, b))


def warm_up() -> float:
    """Compile (or load from the on-disk cache) every kernel; returns the seconds it took."""
    started = time.perf_counter()
    X = np.ones((4, 3), dtype=np.float32)
    idx = np.array([0, 1, -1, 0], dtype=np.int64)
    C = cluster_sums(X, idx, 2, 1).astype(np.float32)
    point_geometry(X, idx, C, 1)
    # a read-only matrix (a cached one: core.store.pull_cache) is another type to numba
    fixed = X.copy()
    fixed.flags.writeable = False
    cluster_sums(fixed, idx, 2, 1)
    point_geometry(fixed, idx, C, 1)
    sq_norms(fixed, 1)
    scale_rows(X, np.sqrt(sq_norms(X, 1)).astype(np.float32), 1)
    normalize_rows(X, 1)
    return time.perf_counter() - started
