"""What every kind of run shares: fenced progress reporting and seeded sampling."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import Any

import numpy as np
from pydantic import BaseModel

from core.errors import ClusterdError, RunDataError
from core.pipeline import REDUCE_ABOVE, PipelineConfig, RunCanceled
from core.store import executions
from worker.runtime import Runtime

# Within one stage, checkpoints write progress at most this often: a 100k pull has 50 batches, and
# a write per batch cost ~0.1 s of a run that takes ~1.5 s (the embedded store's update scans).
PROGRESS_EVERY_S = 0.25


class Progress:
    """Writes progress (and the heartbeat) fenced on the run's attempt; remembers a lost fence."""

    def __init__(self, rt: Runtime, run_id: str, attempt: int):
        self.rt, self.run_id, self.attempt = rt, run_id, attempt
        self.lost = False
        self.finalizing = False  # past the commit point: artifacts may have been written
        self._stage: str | None = None
        self._written = 0.0
        self._failed: BaseException | None = None  # a progress write from the pipeline's thread

    async def report(self, stage: str, fraction: float) -> None:
        self._stage, self._written = stage, time.monotonic()
        ok = await executions.report_progress(
            self.rt.db, run_id=self.run_id, attempt=self.attempt, stage=stage, fraction=fraction
        )
        self.lost = self.lost or not ok

    def check(self, stage: str) -> None:
        """A stage boundary: stop if the run was canceled (or taken over) since the last write."""
        if self._failed is not None:
            raise self._failed
        if self.lost:
            raise RunCanceled(stage)

    async def checkpoint(self, stage: str, fraction: float) -> None:
        """Report (a new stage at once, the same one at most every PROGRESS_EVERY_S), then check."""
        if stage != self._stage or time.monotonic() - self._written >= PROGRESS_EVERY_S:
            await self.report(stage, fraction)
        self.check(stage)

    async def finalize(self) -> None:
        """The commit point before artifacts and results: from here a cancel is refused, and a
        run canceled before it stops without writing anything."""
        self.check("finalize")
        if not await executions.begin_finalizing(self.rt.db, run_id=self.run_id, attempt=self.attempt):
            self.lost = True
            raise RunCanceled("finalize")
        self.finalizing = True

    def from_thread(self, stage: str, fraction: float) -> None:
        """Called by the pipeline in its worker thread; the database lives on the loop. Not waited
        for (a write waited on the loop's other work: ~10 ms per stage); a lost fence is seen at
        the next check, a failed write is raised there."""
        fut = asyncio.run_coroutine_threadsafe(self.report(stage, fraction), self.rt.loop)
        fut.add_done_callback(self._reported)

    def stopped(self) -> bool:
        """The pipeline's `should_cancel`: the fence was lost (a failed progress write raises)."""
        if self._failed is not None:
            raise self._failed
        return self.lost

    def _reported(self, fut: concurrent.futures.Future[None]) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            self._failed = fut.exception()


def sample_indices(
    n: int, requested: int | None, cap: int, seed: int
) -> tuple[np.ndarray | None, dict[str, Any] | None]:
    """Seeded uniform sample without replacement down to min(requested sample_size, the
    algorithm's cap). Returns (sorted indices or None when all n points are used, a report)."""
    limit = min(requested or n, cap)
    if n <= limit:
        return None, None
    keep = np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))
    reason = "sample_size" if requested and requested <= cap else "algorithm_cap"
    return keep, {"from": int(n), "to": int(limit), "reason": reason, "cap": int(cap), "seed": int(seed)}


def document_filter(cfg: dict[str, Any]) -> dict[str, Any]:
    """The run's document pre-filter as a MongoDB query ({} for none). The API validated it when
    it was stored; a filter that no longer compiles fails the run as a validation error."""
    from core.filters import DOCUMENT_SCHEMA, compile_filter

    try:
        return compile_filter(cfg.get("filters"), schema=DOCUMENT_SCHEMA, where="filters")
    except ClusterdError as exc:
        raise RunDataError(exc.message) from None


Scope = list[tuple[str, dict[str, int]]]  # (collection id, its vector dimensions by name)


async def pull_scope(
    rt: Runtime, run: dict[str, Any], scope: Scope | None = None, match: dict[str, Any] | None = None
) -> tuple[dict[str, Any], int, Scope, dict[str, list[dict[str, Any]]] | None]:
    """What a vector pull reads: (the run's compiled pre-filter, how many documents of its
    collections match it, [(collection id, its vector dimensions by name)] in run order, and in
    embedded mode each collection's documents, read once for the count and the pull
    (documents.embedded_scope; None on MongoDB)). A collection deleted since the run was queued
    fails the run. `scope` / `match`: the run's `collection_scope` / `document_filter`, when the
    caller has them already."""
    from core.store import documents

    cfg, ns = run["config"], run["namespace_id"]
    if match is None:
        match = document_filter(cfg)
    embedded = documents.embedded_scope(rt.db, ns=ns, collection_ids=cfg["collection_ids"], match=match)
    if embedded is not None:
        source, prefetched = embedded
    else:
        source, prefetched = (
            await documents.count_matching(rt.db, ns=ns, collection_ids=cfg["collection_ids"], match=match),
            None,
        )
    return match, source, scope if scope is not None else await collection_scope(rt, run), prefetched


async def collection_scope(rt: Runtime, run: dict[str, Any]) -> Scope:
    """[(collection id, its vector dimensions by name)] of a run, in run order; a collection
    deleted since the run was queued fails the run."""
    from core.store import collections

    scope = []
    for cid in run["config"]["collection_ids"]:
        col = await collections.find(rt.db, ns=run["namespace_id"], ident=cid)
        if col is None:
            raise RunDataError(f"collection '{cid}' no longer exists")
        scope.append((cid, collections.dimensions_of(col)))
    return scope


def initial_rows(source_documents: int, seen: int, batch_size: int) -> int:
    """Rows to allocate for a pull's matrix: the documents still to come, plus headroom for those
    written since the count (rows never written cost no memory)."""
    expected = max(0, source_documents - seen)
    return expected + max(batch_size, expected // 64)


def sample_cap(rt: Runtime, cfg: dict[str, Any], params: BaseModel, dimensions: int, retrieved: int) -> int:
    """Points the run may cluster: the API admitted it (core.admission), but documents written
    since may exceed the algorithm's cap, and the run then samples down to it."""
    from core import admission

    limit = admission.cap(
        cfg["algorithm"],
        params,
        dimensions,
        scale=rt.settings.admission_scale,
        memory_limit_mb=rt.settings.worker_memory_limit_mb,
    )
    return limit.points if limit is not None else retrieved


def pipeline_config(rt: Runtime, cfg: dict[str, Any], params: BaseModel) -> PipelineConfig:
    """The pipeline's settings from a run's frozen config; the pulled matrix is the run's own, so
    the pipeline may normalise it in place."""
    return PipelineConfig(
        algorithm=cfg["algorithm"],
        params=params,
        normalize=bool(cfg.get("normalize_features", True)),
        seed=int(cfg["seed"]),
        compute_metrics=bool(cfg.get("compute_metrics", True)),
        metrics_sample_size=rt.settings.metrics_sample_size,
        centroid_method=cfg.get("centroid_method") or "mean",
        reduce_above=REDUCE_ABOVE if cfg.get("reduce", True) else None,
        owns_input=True,
        preprocessing=cfg.get("preprocessing") or None,
        hierarchical=bool(cfg.get("hierarchical")),
        max_hierarchy_depth=int(cfg.get("max_hierarchy_depth") or 3),
    )
