"""Greedy k-means++ seeding compiled with numba, so that it runs without the GIL.

In a whole run the seeding thread shares its process with the event loop (API requests such as a
client's polls, progress writes) and the beside-the-fit jobs. Seeding in numpy makes ~600 small
calls, each of which must take the GIL back, and a thread running Python hands it over only at
its next release or after the 5 ms switch interval: measured at 10k×768, k=50, one BLAS thread,
204 ms alone became 231–245 ms beside 2 ms of Python every 20 ms (a poller) and 2.25 s beside a
busy Python thread. Compiled, with its products in BLAS (numba's `np.dot`: scipy's OpenBLAS,
which `core.threads.one_blas_thread` limits too), it holds no GIL: 191–196 ms alone, 204 ms
beside the same poller.

The rule and the random draws are `kmeans_engine`'s numpy version's: the first row, then `trials`
uniforms per further centre (drawn up front here, the same stream), the same float32 distance
arithmetic with each candidate's squared norm taken from the rows' own. The potentials' float64
sums are sequential here (numpy's are pairwise), so a tie between candidates within the last
bits could break the other way; on the benchmark data every centre is the same row.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def greedy_rows(X, sq, first, uniforms):  # type: ignore[no-untyped-def]
    """(Row numbers of the len(uniforms) + 1 centres, True); or (the rows so far, False) at the first
    step whose potential is 0 (fewer distinct points than centres), where the numpy version draws
    integers instead of uniforms: the caller then seeds that way from the same generator state.

    X: float32 (n, d) C-contiguous; sq: its rows' float32 squared norms (`einsum("ij,ij->i")`);
    first: the first centre's row; uniforms: float64 (k - 1, trials) in [0, 1)."""
    n, d = X.shape
    k = uniforms.shape[0] + 1
    trials = uniforms.shape[1]
    chosen = np.empty(k, np.int64)
    chosen[0] = first
    minus_two = np.float32(-2.0)
    zero = np.float32(0.0)
    g = np.dot(X, np.ascontiguousarray(X[first : first + 1]).T)
    closest = np.empty(n, np.float32)
    potential = 0.0
    for i in range(n):
        v = max(g[i, 0] * minus_two + sq[i] + sq[first], zero)
        closest[i] = v
        potential += v
    candidates = np.empty(trials, np.int64)
    C = np.empty((trials, d), np.float32)
    best_column = np.empty(n, np.float32)
    column = np.empty(n, np.float32)
    for c in range(1, k):
        if potential <= 0:
            return chosen[:c], False
        cumulative = np.cumsum(closest.astype(np.float64))
        for t in range(trials):
            candidates[t] = min(np.searchsorted(cumulative, uniforms[c - 1, t] * cumulative[-1]), n - 1)
            C[t] = X[candidates[t]]
        g = np.dot(X, C.T)  # (n, trials)
        best, best_potential = 0, np.inf
        for t in range(trials):
            cc = sq[candidates[t]]
            pot = 0.0
            for i in range(n):
                v = min(max(g[i, t] * minus_two + sq[i] + cc, zero), closest[i])
                column[i] = v
                pot += v
            if pot < best_potential:
                best, best_potential = t, pot
                best_column, column = column, best_column
        chosen[c] = candidates[best]
        closest, best_column = best_column, closest
        potential = best_potential
    return chosen, True


def warm_up() -> None:
    """Compile (or load from numba's disk cache) the kernel for the matrices a run passes it:
    a fresh sample (writable) and a kept, read-only matrix (core.store.pull_cache)."""
    X = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
    for writable in (True, False):
        X.flags.writeable = writable
        greedy_rows(X, np.einsum("ij,ij->i", X, X), 0, np.random.default_rng(0).random((2, 3)))
