"""A vector run's layout stage: 2-D / 3-D coordinates for members.parquet (core.layout), with the
previous run's layout read for `layout_stability`, and the projection saved for the next re-run.

Skipped (no coordinates) when the run keeps no artifacts or asks for `defer_visualization`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core.artifacts import COORDINATE_COLUMNS, ArtifactStore
from core.layout import Layout, Previous, Projection, centroid_coordinates, compute_layout
from core.pipeline import PipelineResult
from core.store import completed_runs
from core.threads import beside_fit
from worker.runtime import Runtime
from worker.stages import Progress

log = logging.getLogger("clusterd.worker")

LAYOUT_NAME = "layout.npz"
DEFERRED = "defer_visualization: no coordinates were computed for this run"


def wanted(cfg: dict[str, Any]) -> bool:
    return bool(cfg.get("save_artifacts", True)) and not cfg.get("defer_visualization")


class Overlapped:
    """A layout computed beside the algorithm's fit (core.threads.beside_fit): the layout needs
    no labels, and the fit leaves a core idle for part of its time (k-means++ seeding runs on one
    BLAS thread). `start` is the pipeline's `on_normalized` hook; `result` waits for it."""

    def __init__(self, job: Callable[[np.ndarray, np.ndarray], Layout] | None, doc_ids: np.ndarray):
        self.job, self.doc_ids = job, doc_ids
        self.future: concurrent.futures.Future[Layout] | None = None

    def start(self, X: np.ndarray) -> None:
        if self.job is not None:
            job, doc_ids = self.job, self.doc_ids
            self.future = beside_fit(lambda: job(X, doc_ids))

    async def result(self, progress: Progress) -> Layout | None:
        if self.future is None:
            return None
        await progress.checkpoint("layout", 0.9)
        return await asyncio.wrap_future(self.future)


async def prepare(rt: Runtime, run: dict[str, Any]) -> Callable[[np.ndarray, np.ndarray], Layout] | None:
    """What the run's layout needs besides the matrix (the previous run's layout for
    `layout_stability`), read now; the returned job(X, doc_ids) is pure CPU. None when the run
    skips the layout."""
    cfg = run["config"]
    if not wanted(cfg):
        return None
    mode = cfg.get("layout_stability")
    previous = None
    if mode in ("transform", "align"):
        prev = await completed_runs.previous_layout(
            rt.db, ns=run["namespace_id"], cluster_id=run["cluster_id"], run_id=run["run_id"]
        )
        if prev is not None:
            previous = await asyncio.to_thread(_read_previous, rt.artifacts, prev, mode)
    k = int(cfg.get("vis_n_components") or 2)

    def job(X: np.ndarray, doc_ids: np.ndarray) -> Layout:
        return compute_layout(
            X, k, seed=int(cfg.get("seed", 42)), mode=mode, previous=previous, document_ids=doc_ids
        )

    return job


def _read_previous(store: ArtifactStore, prev: dict[str, Any], mode: str) -> Previous:
    """What `mode` needs of the previous run; a part that cannot be read stays None (the layout
    then falls back to a fresh one and says why)."""
    out = Previous(run_id=str(prev["run_id"]))
    try:
        if mode == "transform":
            with np.load(io.BytesIO(store.get_bytes(prev["layout_key"])), allow_pickle=False) as npz:
                out.projection = Projection(
                    npz["weights"].astype(np.float32), npz["offset"].astype(np.float32)
                )
        elif prev.get("members_key"):
            k = int((prev.get("layout") or {}).get("n_components") or 2)
            names = ["document_id", *COORDINATE_COLUMNS[:k]]
            table = pq.read_table(pa.BufferReader(store.get_bytes(prev["members_key"])), columns=names)
            out.document_ids = np.asarray(table.column("document_id").to_pylist(), dtype=str)
            out.coordinates = np.column_stack(
                [table.column(c).to_numpy(zero_copy_only=False) for c in names[1:]]
            ).astype(np.float32)
    except Exception as exc:  # noqa: BLE001 - a missing or unreadable artifact only costs stability
        log.warning("run %s: previous layout unreadable: %s: %s", prev.get("run_id"), type(exc).__name__, exc)
    return out


def run_fields(cfg: dict[str, Any], layout: Layout | None, result: PipelineResult) -> dict[str, Any]:
    """The run record's layout fields: `layout_stability_applied` / `_reason` (contract §1.5.10)
    and `layout` {n_components, centroids: {cluster_id: [x, y(, z)]}, previous_run_id}."""
    if layout is None:
        if cfg.get("defer_visualization") and cfg.get("save_artifacts", True):
            return {"layout_stability_applied": "none", "layout_stability_reason": DEFERRED}
        return {}
    values = np.asarray([c.label_value for c in result.clusters], dtype=np.int64)
    centres = centroid_coordinates(layout.coordinates, result.labels, values)
    for i, c in enumerate(result.clusters):  # a hierarchical parent: the mean of its descendants
        if c.members is not None and c.members.size:
            centres[i] = layout.coordinates[c.members].mean(axis=0)
    centroids = {
        c.cluster_id: [round(float(v), 6) for v in centres[i]]
        for i, c in enumerate(result.clusters)
        if np.isfinite(centres[i]).all()
    }
    out: dict[str, Any] = {
        "layout_stability_applied": layout.applied,
        "layout": {
            "n_components": layout.n_components,
            "centroids": centroids,
            "previous_run_id": layout.previous_run_id,
        },
    }
    if layout.reason:
        out["layout_stability_reason"] = layout.reason
    return out


def write_projection(store: ArtifactStore, prefix: str, layout: Layout | None) -> dict[str, Any]:
    """Save the projection a later `transform` re-run reuses; {"layout_key": key} ({} without one)."""
    if layout is None:
        return {}
    buf = io.BytesIO()
    np.savez(buf, weights=layout.projection.weights, offset=layout.projection.offset)
    key = prefix + LAYOUT_NAME
    store.put_bytes(key, buf.getvalue())
    return {"layout_key": key}


def coordinates(layout: Layout | None) -> np.ndarray | None:
    return None if layout is None else layout.coordinates

