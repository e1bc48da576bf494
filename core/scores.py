"""Silhouette, Davies–Bouldin and Calinski–Harabasz in float32, equal to scikit-learn's.

Pure array code (numpy, a scipy.sparse one-hot), no I/O. scikit-learn upcasts float32 to
float64 for these scores (silhouette in chunks, Calinski–Harabasz as a full copy of X); here the
bulk work stays float32 and the sums that decide the value are float64:

- silhouette: the distance matrix, tile by tile (`TILE` x `TILE`, so memory stays at a few tiles
  whatever the size), each tile one float32 GEMM on the centred points, used for both its rows
  and its columns (the matrix is symmetric, so only the tiles above the diagonal are computed).
  Points are sorted by cluster, so a tile's per-cluster sums are segment sums. The squared norms
  are the diagonal tiles' own Gram diagonal, so identical points come out exactly 0 apart.
- Davies–Bouldin and Calinski–Harabasz: per-cluster sums of the rows in float64, then each
  point's squared distance to its centroid by direct subtraction, in float64 (core.row_kernels:
  two compiled passes over X, shared out over the threads below).

The silhouette's tiles are shared out over as many threads as BLAS may use in this process (in a
worker pool process, `threads_per_run`; with one it runs serially), each with a one-thread BLAS.
On 2 cores (with other load on the machine) that took ~1.7x less time than BLAS's own threads,
which sync on every tile and leave the elementwise work to one core.

Each function returns None where scikit-learn raises (fewer than 2 or more than n - 1 labels);
the degenerate cases follow scikit-learn: silhouette 0 for singletons and zero distances,
Davies–Bouldin 0 when all intra-cluster or all centroid distances are ~0, Calinski–Harabasz 1
when there is no within-cluster dispersion.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
from scipy import sparse

from core.threads import one_blas_thread, run_threads

TILE = 1024  # rows and columns of one silhouette distance tile (4 MB in float32)

Item = TypeVar("Item")
Acc = TypeVar("Acc")


def encode(labels: np.ndarray) -> tuple[np.ndarray, int] | None:
    """Labels as codes 0..k-1 and k, or None unless 2 <= k <= n - 1 (scikit-learn's rule)."""
    classes, codes = np.unique(np.asarray(labels), return_inverse=True)
    k = int(classes.shape[0])
    if not 2 <= k <= codes.shape[0] - 1:
        return None
    return codes.reshape(-1).astype(np.intp), k


def sample_indices(n: int, size: int, seed: int) -> np.ndarray:
    """The points `silhouette_score(sample_size=size, random_state=seed)` draws, in index order:
    the first `size` of a seeded permutation, so a smaller sample is a subset of a larger one."""
    return np.sort(np.random.RandomState(seed).permutation(n)[:size])


def workers() -> int:
    """Threads to use: the BLAS thread count of this process (a pool process: `threads_per_run`)."""
    return run_threads()


def in_parallel(work: Callable[[Sequence[Item], Acc], None], items: Sequence[Item], accs: list[Acc]) -> None:
    """work(part, acc) for interleaved parts of `items`, one part and accumulator per thread."""
    if len(accs) == 1:
        work(items, accs[0])
        return
    parts = [items[i :: len(accs)] for i in range(len(accs))]
    with one_blas_thread(), ThreadPoolExecutor(len(accs)) as pool:
        list(pool.map(work, parts, accs))  # list(): re-raise a worker's exception here


def _total(accs: list[np.ndarray]) -> np.ndarray:
    for extra in accs[1:]:
        accs[0] += extra
    return accs[0]


def silhouette(X: np.ndarray, labels: np.ndarray) -> float | None:
    """Mean silhouette coefficient over all rows of X (euclidean), as `silhouette_score(X, labels)`."""
    enc = encode(labels)
    if enc is None:
        return None
    order = np.argsort(enc[0], kind="stable")
    codes, k = enc[0][order], enc[1]
    X = np.asarray(X, dtype=np.float32)[order]
    Xc = X - X.mean(axis=0, dtype=np.float64).astype(np.float32)
    n = Xc.shape[0]
    blocks = [_Block(a, min(n, a + TILE), codes) for a in range(0, n, TILE)]
    sq = np.empty(n, dtype=np.float32)

    def diagonal(part: Sequence[_Block], sums: np.ndarray) -> None:
        for r in part:  # a GEMM, not SYRK: the same rounding as the off-diagonal tiles
            gram = Xc[r.rows] @ np.ascontiguousarray(Xc[r.rows].T)
            sq[r.rows] = np.diagonal(gram)
            dist = _distances(gram, sq[r.rows], sq[r.rows])
            np.fill_diagonal(dist, 0.0)
            sums[r.rows, r.present] += r.column_sums(dist).T

    def off_diagonal(part: Sequence[tuple[_Block, _Block]], sums: np.ndarray) -> None:
        for r, c in part:
            dist = _distances(Xc[r.rows] @ Xc[c.rows].T, sq[r.rows], sq[c.rows])
            sums[r.rows, c.present] += np.add.reduceat(dist, c.starts, axis=1)
            sums[c.rows, r.present] += r.column_sums(dist).T

    # sums[i, c]: distances from point i to the points of cluster c, one array per thread
    accs = [np.zeros((n, k), dtype=np.float64) for _ in range(min(workers(), len(blocks)))]
    in_parallel(diagonal, blocks, accs)  # first: they give the squared norms
    in_parallel(off_diagonal, [(r, c) for i, r in enumerate(blocks) for c in blocks[i + 1 :]], accs)
    return _silhouette_mean(_total(accs), codes, k)


def sample_distances(X: np.ndarray) -> np.ndarray:
    """The full float32 (m, m) Euclidean distance matrix of the rows of `X`, as `silhouette`
    computes its tiles (centred points, exact zeros on the diagonal), on the calling thread:
    label-free, so it can be computed while the algorithm fits (core.pipeline)."""
    X = np.asarray(X, dtype=np.float32)
    Xc = X - X.mean(axis=0, dtype=np.float64).astype(np.float32)
    m = Xc.shape[0]
    D = np.empty((m, m), dtype=np.float32)
    sq = np.empty(m, dtype=np.float32)
    spans = [slice(a, min(m, a + TILE)) for a in range(0, m, TILE)]
    for r in spans:
        gram = Xc[r] @ np.ascontiguousarray(Xc[r].T)
        sq[r] = np.diagonal(gram)
        D[r, r] = _distances(gram, sq[r], sq[r])
        np.fill_diagonal(D[r, r], 0.0)
    for i, r in enumerate(spans):
        for c in spans[i + 1 :]:
            D[r, c] = _distances(Xc[r] @ Xc[c].T, sq[r], sq[c])
            D[c, r] = D[r, c].T
    return D


def silhouette_from_distances(D: np.ndarray, labels: np.ndarray) -> float | None:
    """`silhouette(X, labels)` from `sample_distances(X)`: each row's per-cluster sums as float32
    products with a one-hot matrix over `TILE` columns at a time, added up in float64."""
    enc = encode(labels)
    if enc is None:
        return None
    codes, k = enc
    m = codes.shape[0]
    onehot = np.zeros((m, k), dtype=np.float32)
    onehot[np.arange(m), codes] = 1.0
    sums = np.zeros((m, k), dtype=np.float64)
    for a in range(0, m, TILE):
        sums += D[:, a : a + TILE] @ onehot[a : a + TILE]
    return _silhouette_mean(sums, codes, k)


class _Block:
    """Rows a..b of the cluster-sorted points: where each cluster's run starts, its code, and a
    sparse one-hot (clusters here x rows) that sums a tile's rows per cluster."""

    def __init__(self, a: int, b: int, sorted_codes: np.ndarray):
        self.rows = slice(a, b)
        block = sorted_codes[a:b]
        self.starts = np.flatnonzero(np.r_[True, block[1:] != block[:-1]])
        self.present = block[self.starts]
        ones, indptr = np.ones(b - a, dtype=np.float32), np.r_[self.starts, b - a]
        self.onehot = sparse.csr_matrix((ones, np.arange(b - a), indptr), shape=(len(self.starts), b - a))

    def column_sums(self, tile: np.ndarray) -> np.ndarray:
        return np.asarray(self.onehot @ tile)


# |x|^2 + |y|^2 - 2 x.y of two identical rows came out up to ~6 float32 eps of |x|^2 + |y|^2 away
# from 0 with OpenBLAS's Haswell kernels (AMD Zen 3; the AVX-512 kernels gave exact zeros), which
# made a silhouette of identical points 0.99998. Squared distances within this much of the norms
# are rounding noise, whatever the points: they count as 0.
NOISE = 32 * float(np.finfo(np.float32).eps)


def _distances(gram: np.ndarray, sq_rows: np.ndarray, sq_cols: np.ndarray) -> np.ndarray:
    """sqrt(|x|^2 + |y|^2 - 2 x.y), 0 within rounding noise (`NOISE`), in place of the Gram tile."""
    gram *= -2.0
    gram += sq_rows[:, None]
    gram += sq_cols[None, :]
    noise = np.add.outer(sq_rows * NOISE, sq_cols * NOISE)
    gram[gram <= noise] = 0.0
    return np.sqrt(gram, out=gram)


def _silhouette_mean(sums: np.ndarray, codes: np.ndarray, k: int) -> float:
    counts = np.bincount(codes, minlength=k).astype(np.float64)
    rows = np.arange(codes.shape[0])
    intra = sums[rows, codes]
    sums[rows, codes] = np.inf
    inter = (sums / counts).min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        intra = intra / (counts - 1.0)[codes]
        values = (inter - intra) / np.maximum(intra, inter)
    return float(np.mean(np.nan_to_num(values)))  # NaN: singletons and zero distances, which score 0


def davies_bouldin_calinski_harabasz(X: np.ndarray, labels: np.ndarray) -> tuple[float, float] | None:
    """(`davies_bouldin_score(X, labels)`, `calinski_harabasz_score(X, labels)`): two passes over X."""
    enc = encode(labels)
    if enc is None:
        return None
    from core import row_kernels

    codes, k = enc
    threads = workers()
    counts = np.bincount(codes, minlength=k).astype(np.float64)
    centroids = row_kernels.cluster_sums(X, codes, k, threads) / counts[:, None]
    sq = row_kernels.point_geometry(X, codes, centroids.astype(np.float32), threads)[0]
    return davies_bouldin_calinski_harabasz_from(centroids, codes, sq)


def davies_bouldin_calinski_harabasz_from(
    centroids: np.ndarray, codes: np.ndarray, sq: np.ndarray
) -> tuple[float, float]:
    """The two scores from float64 mean centroids (k, D), each point's code 0..k-1 and its squared
    distance to its (float32) centroid: what `core.centroids.mean_geometry` already computed."""
    k = centroids.shape[0]
    counts = np.bincount(codes, minlength=k).astype(np.float64)
    intra_mean = np.bincount(codes, weights=np.sqrt(sq), minlength=k) / counts
    return _davies_bouldin(intra_mean, centroids), _calinski_harabasz(centroids, counts, float(sq.sum()))


def _davies_bouldin(intra_mean: np.ndarray, centroids: np.ndarray) -> float:
    sq = np.einsum("ij,ij->i", centroids, centroids)
    between = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * (centroids @ centroids.T), 0.0))
    np.fill_diagonal(between, 0.0)
    if np.allclose(intra_mean, 0.0) or np.allclose(between, 0.0):
        return 0.0
    between[between == 0] = np.inf
    return float(np.mean(np.max((intra_mean[:, None] + intra_mean[None, :]) / between, axis=1)))


def _calinski_harabasz(centroids: np.ndarray, counts: np.ndarray, within: float) -> float:
    n, k = float(counts.sum()), centroids.shape[0]
    mean = counts @ centroids / n
    between = float(counts @ ((centroids - mean) ** 2).sum(axis=1))
    return 1.0 if within == 0.0 else between * (n - k) / (within * (k - 1.0))
