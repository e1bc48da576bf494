"""The k-means engine behind `kmeans`: seeding and restarts on a sample, Lloyd on all points.

Why not `sklearn.cluster.KMeans` as is (measured in docs/benchmarks.md): its Lloyd loop runs small
per-chunk GEMMs at ~30 GFLOP/s (0.2 s per iteration at 100k×768, k=50), its float32 k-means++ goes
through a float64-upcast path in small batches (17 s on a 20k×768 sample), and `n_init=10` at that
size takes minutes. Here:

1. Seeding: greedy k-means++ (scikit-learn's rule: 2 + ⌊ln k⌋ local trials, keep the candidate that
   lowers the potential most) in float32 GEMMs, on `seed_points(k, D)` points, on one BLAS
   thread: each step is a skinny (points × 6) product, and the other core runs the work beside
   the fit (core.threads.beside_fit). Measured at 100k×768 (Intel SPR): seeding alone took
   120–150 ms on 2 threads and 175 ms on one, but beside that work 330–510 ms on 2 and 175–250 on one
   (an earlier machine: one thread 2× faster even alone). The loop is compiled
   (core.algorithms.kmeans_seeding) so it holds no GIL: in numpy its ~600 small calls each waited
   for the GIL behind the event loop's Python in a whole run.
2. Up to `sample_points(k)` points (max(SAMPLE_SIZE, SAMPLE_PER_CLUSTER·k)) Lloyd runs on all of
   them until the centres move less than `tol`, as scikit-learn does; `n_init` restarts keep the
   lowest inertia.
3. Above that, every restart is seeded and converged on a seeded sample of that size, the lowest
   sample inertia wins, and Lloyd then polishes the winner on all points for at most POLISH_ITER
   iterations (stopping earlier at `tol`). Measured: from sample-converged centres, 5 full-data
   iterations already come within 0.01% of the fully converged inertia, while converging costs
   25–55 iterations of 0.075 s (100k×768) to 0.3 s (1M×128) each. So `n_init=10` costs ten sample
   fits, not ten full ones.
Lloyd runs in oneDAL (scikit-learn-intelex) when it is installed — ~3× faster per iteration than
scikit-learn at D=768, within 1.1× of a bare GEMM + argmin — and in scikit-learn's otherwise.

The same initial centres give the same fixed point in both backends (`lloyd`); the labels may
differ only at float32 ties.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

log = logging.getLogger(__name__)

SEED_CELLS = 8_000_000  # k-means++ sees about this many values (10k rows at D=768, ~30 MB: in L3) ...
SEED_PER_CLUSTER = 200  # ... but at least this many points per cluster (fewer lost 5% inertia at k=100)
SAMPLE_SIZE = 20_000  # above max(this, SAMPLE_PER_CLUSTER·k) points, restarts run on a sample
SAMPLE_PER_CLUSTER = 500
POLISH_ITER = 6  # full-data Lloyd iterations after the sample has converged (5 come within 0.01%)
Backend = Literal["onedal", "sklearn"]


@dataclass
class KMeansFit:
    labels: np.ndarray  # int64 (N,)
    centers: np.ndarray  # float32 (k, D)
    inertia: float
    n_iter: int  # Lloyd iterations on all points
    backend: Backend
    sample_size: int  # points the restarts converged on (N when no sample was taken)


def sample_points(k: int, sample_size: int = SAMPLE_SIZE) -> int:
    return max(sample_size, SAMPLE_PER_CLUSTER * k)


def seed_points(k: int, d: int) -> int:
    """How many points k-means++ looks at (measured: at 1M×128, k=100, seeding on 10k points
    ended 5% above scikit-learn's inertia, on 50k 2% below; at D=768 each point costs 6× more)."""
    return max(SEED_CELLS // max(d, 1), SEED_PER_CLUSTER * k)


def fit(
    X: np.ndarray,
    k: int,
    *,
    seed: int,
    n_init: int = 1,
    init: Literal["k-means++", "random"] = "k-means++",
    max_iter: int = 300,
    tol: float = 1e-4,
    sample_size: int = SAMPLE_SIZE,
    backend: Backend | None = None,
) -> KMeansFit:
    """k-means of float32 `X` into `k` clusters (module docstring for the steps)."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    n = X.shape[0]
    backend = backend or default_backend()
    rng = np.random.default_rng(seed)
    m = min(n, sample_points(k, sample_size))
    S = _subsample(X, m, rng)
    best: tuple[np.ndarray, np.ndarray, float, int] | None = None
    for _ in range(max(1, n_init)):
        seeds_from = _subsample(S, seed_points(k, X.shape[1]), rng)
        C0 = kmeans_plusplus(seeds_from, k, rng) if init == "k-means++" else _random_rows(seeds_from, k, rng)
        out = lloyd(S, C0, max_iter=max_iter, tol=tol, backend=backend)
        if best is None or out[2] < best[2]:
            best = out
    assert best is not None
    if S is X:
        labels, centers, inertia, n_iter = best
    else:
        labels, centers, inertia, n_iter = lloyd(
            X, best[1], max_iter=min(max_iter, POLISH_ITER), tol=tol, backend=backend
        )
    return KMeansFit(labels, centers, inertia, n_iter, backend, int(S.shape[0]))


def _subsample(X: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """`m` seeded rows of `X` in their original order, or `X` itself when it has no more."""
    n = X.shape[0]
    return X if m >= n else X[np.sort(rng.choice(n, size=m, replace=False))]


def local_trials(k: int) -> int:
    """Candidates k-means++ draws for each further centre (scikit-learn's 2 + ⌊ln k⌋)."""
    return 2 + int(math.log(k))


def kmeans_plusplus(X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ centres (rows of float32 `X`), scikit-learn's rule, in float32 GEMMs:
    compiled, without the GIL (core.algorithms.kmeans_seeding); the numpy version when the
    potential reaches 0 (fewer distinct points than centres), from the same generator state."""
    from core.algorithms import kmeans_seeding
    from core.threads import one_blas_thread

    X = np.ascontiguousarray(X, dtype=np.float32)
    n = X.shape[0]
    trials = local_trials(k)
    state = rng.bit_generator.state
    with one_blas_thread():
        first = int(rng.integers(n))
        uniforms = rng.random((k - 1, trials))
        rows, complete = kmeans_seeding.greedy_rows(X, np.einsum("ij,ij->i", X, X), first, uniforms)
        if complete:
            return X[rows]
        rng.bit_generator.state = state  # the numpy version draws integers at a zero potential
        return _kmeans_plusplus(X, k, rng)


def _kmeans_plusplus(X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    n = X.shape[0]
    trials = local_trials(k)
    sq = np.einsum("ij,ij->i", X, X)
    first = int(rng.integers(n))
    centers = np.empty((k, X.shape[1]), dtype=np.float32)
    centers[0] = X[first]
    closest = _sq_dist(X, sq, X[first : first + 1])[0]
    potential = float(closest.sum(dtype=np.float64))
    for c in range(1, k):
        if potential <= 0:  # fewer distinct points than clusters: any point will do
            candidates = rng.integers(n, size=trials)
        else:
            cumulative = np.cumsum(closest, dtype=np.float64)
            candidates = np.searchsorted(cumulative, rng.random(trials) * cumulative[-1])
            np.clip(candidates, 0, n - 1, out=candidates)
        dist = np.minimum(closest, _sq_dist(X, sq, X[candidates]))  # (trials, n)
        pots = dist.sum(axis=1, dtype=np.float64)
        best = int(np.argmin(pots))
        centers[c] = X[candidates[best]]
        closest, potential = dist[best], float(pots[best])
    return centers


def _sq_dist(X: np.ndarray, sq: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Squared euclidean distances (len(C), len(X)), clipped at 0."""
    d = (X @ C.T).T  # (X @ Cᵀ) is the faster orientation for OpenBLAS
    d *= -2
    d += sq
    d += np.einsum("ij,ij->i", C, C)[:, None]
    np.maximum(d, 0, out=d)
    return np.ascontiguousarray(d)


def _random_rows(X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    return np.asarray(X[np.sort(rng.choice(X.shape[0], size=k, replace=False))], dtype=np.float32)


def lloyd(
    X: np.ndarray, init: np.ndarray, *, max_iter: int, tol: float, backend: Backend | None = None
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Lloyd iterations from `init` until the centres move less than `tol` (scikit-learn's meaning:
    relative to the mean per-feature variance) or `max_iter`: (labels, centres, inertia, iterations)."""
    backend = backend or default_backend()
    model = _estimator(backend)(
        n_clusters=init.shape[0],
        init=init,
        n_init=1,
        max_iter=max_iter,
        tol=tol,
        algorithm="lloyd",
        # oneDAL reads X as is; scikit-learn would centre X in place and add the mean back,
        # which changes the matrix in its last bits, so it copies (as by default)
        copy_x=backend != "onedal",
    )
    with warnings.catch_warnings():
        # fewer distinct points than clusters: every point is still labelled; the metrics'
        # `degenerate` flag reports the outcome
        warnings.simplefilter("ignore")
        model.fit(X)
    return (
        np.asarray(model.labels_, dtype=np.int64),
        np.asarray(model.cluster_centers_, dtype=np.float32),
        float(model.inertia_),
        int(model.n_iter_),
    )


def _estimator(backend: Backend) -> Any:
    if backend == "onedal":
        from sklearnex.cluster import KMeans as OneDalKMeans

        return OneDalKMeans
    from sklearn.cluster import KMeans

    return KMeans


_DEFAULT: Backend | None = None


def default_backend() -> Backend:
    """oneDAL when scikit-learn-intelex imports, else scikit-learn (logged once)."""
    global _DEFAULT
    if _DEFAULT is None:
        try:
            import sklearnex.cluster  # noqa: F401

            _DEFAULT = "onedal"
        except Exception as exc:  # an accelerator that fails to load must not fail runs
            log.warning("scikit-learn-intelex unavailable (%s); k-means uses scikit-learn", exc)
            _DEFAULT = "sklearn"
    return _DEFAULT
