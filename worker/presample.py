"""A k-means run's restarts started on its sample while the rest of its pull is still copied.

The first run of a scope reads every document of it on the event loop before the pipeline starts
(worker.vector_run._pull: ~70–90 ms at 100k×768, about a third of it copying the blobs into the
matrix). The k-means engine needs the whole matrix only for its polish: seeding and the restarts'
Lloyd run on a sample whose rows follow from the row count and the seed alone
(core.algorithms.kmeans_engine.sample_rows). So once the pull has found every document's vector
(before copying any), `start` copies and normalises just the sample's rows, runs the restarts on
them in a thread of their own, and the pull copies the rest meanwhile. The engine takes their
result only when its own sample is the same, bit for bit (kmeans_engine.PRESAMPLED); anything
else (another algorithm, params it would not use this way, a run sampled down, several
collections, explicit preprocessing) returns None and the run goes the usual way. The seeding is
compiled and holds no GIL (kmeans_seeding), so the copy's Python beside it does not stall it.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel

from core.algorithms import kmeans, kmeans_engine
from core.errors import RunDataError
from core.pipeline import checked_input, checked_normalized
from core.vectors import VectorRows

log = logging.getLogger(__name__)

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def may_start(cfg: dict[str, Any], params: BaseModel) -> bool:
    """Whether a run's config allows `start` at all (the pull then keeps its blobs uncopied)."""
    return (
        cfg.get("algorithm") == "kmeans"
        and isinstance(params, kmeans.KMeansParams)
        and params.n_clusters is not None  # an automatic k fits many k on small samples first
        and not cfg.get("preprocessing")
        and not cfg.get("hierarchical")
    )


def start(
    cfg: dict[str, Any],
    params: BaseModel,
    blobs: list[bytes],
    dimensions: int,
    *,
    one_collection: bool,
    sampled: bool,
) -> kmeans_engine.SampleFit | None:
    """The restarts on the sample of the matrix `blobs` will make (one row per blob, in run
    order), running; None when this run's fit would not use them."""
    n = len(blobs)
    if not (may_start(cfg, params) and one_collection and not sampled):
        return None
    assert isinstance(params, kmeans.KMeansParams) and params.n_clusters is not None
    if n * dimensions <= kmeans.EXACT_MAX_CELLS or params.n_clusters > n:
        return None  # scikit-learn's exact path, or a run that fails on its params
    seed, opts = kmeans.engine_options(params, params.n_clusters, int(cfg["seed"]))
    rows, rng = kmeans_engine.sample_rows(n, opts.k, seed)
    if rows is None:
        return None
    sample = VectorRows(dimensions, rows.size)
    sample.extend([blobs[i] for i in rows.tolist()])
    try:  # exactly what the pipeline does to the whole matrix, row by row
        S = sample.take()
        S = checked_normalized(S) if cfg.get("normalize_features", True) else checked_input(S)[0]
    except RunDataError:
        return None  # the pipeline reports it, for the whole matrix
    S.flags.writeable = False
    seeding = threading.Event()
    result = _executor().submit(kmeans_engine.restarts, S, rng, opts, seeding.set)
    result.add_done_callback(lambda _done: seeding.set())  # also when they fail before seeding
    # until its seeding is compiled code, the restarts' thread needs the GIL now and then, and
    # beside the copy that follows (Python on this thread) it would get it only every switch
    # interval (5 ms): a few ms of waiting here save tens there
    seeding.wait(timeout=1.0)
    return kmeans_engine.SampleFit(opts, rows, S, result)


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(1, thread_name_prefix="clusterd-presample")
        return _pool


def _forget_pool() -> None:  # a forked child has none of its parent's threads
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_forget_pool)
