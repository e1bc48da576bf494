"""Thread counts of the numeric runtimes a run uses: BLAS/OpenMP (threadpoolctl), oneDAL's TBB
(invisible to threadpoolctl, set through daal4py) and numba (fast-hdbscan)."""

from __future__ import annotations

import contextlib


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
