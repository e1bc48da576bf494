"""One run from claim to a terminal state: pull vectors -> pipeline -> artifacts -> results."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded

from core import artifacts
from core.algorithms import validate_params
from core.errors import ClusterdError, RunDataError, ServiceUnavailable
from core.models import FailureCategory, RunStatus
from core.pipeline import PipelineConfig, PipelineResult, RunCanceled, run_pipeline
from core.store import collections, documents, executions, run_state
from core.vectors import encode, resolve_vector_name
from worker.runtime import Runtime

log = logging.getLogger("clusterd.worker")
REPRESENTATIVES = 5


@dataclass
class Pulled:
    document_ids: list[str] = field(default_factory=list)
    collection_ids: list[str] = field(default_factory=list)
    blocks: list[np.ndarray] = field(default_factory=list)
    source_documents: int = 0
    skipped: int = 0
    dimensions: int | None = None

    def matrix(self) -> np.ndarray:
        return np.concatenate(self.blocks) if self.blocks else np.empty((0, self.dimensions or 0), np.float32)


class Progress:
    """Writes progress (and the heartbeat) fenced on the run's attempt; remembers a lost fence."""

    def __init__(self, rt: Runtime, run_id: str, attempt: int):
        self.rt, self.run_id, self.attempt = rt, run_id, attempt
        self.lost = False

    async def report(self, stage: str, fraction: float) -> None:
        ok = await executions.report_progress(
            self.rt.db, run_id=self.run_id, attempt=self.attempt, stage=stage, fraction=fraction
        )
        self.lost = self.lost or not ok

    def from_thread(self, stage: str, fraction: float) -> None:
        """Called by the pipeline in its worker thread; the database lives on the loop."""
        asyncio.run_coroutine_threadsafe(self.report(stage, fraction), self.rt.loop).result(60)


async def execute_run(rt: Runtime, run_id: str) -> str:
    worker = f"{socket.gethostname()}:{os.getpid()}"
    run = await executions.claim(rt.db, run_id=run_id, worker=worker)
    if run is None:
        log.info("run %s is not pending (duplicate delivery or canceled); skipping", run_id)
        return "skipped"
    attempt = int(run["attempts"])
    await _mirror(rt, run, RunStatus.PROCESSING, {})
    started = time.perf_counter()
    progress = Progress(rt, run_id, attempt)
    heartbeat = asyncio.ensure_future(_heartbeat(progress))
    try:
        fields = await _run_stages(rt, run, progress, started)
    except RunCanceled:
        return "canceled"
    except Exception as exc:  # every failure ends the run `failed`, never stuck
        await fail_run(
            rt,
            run_id,
            message=_message(exc),
            category=_category(exc),
            attempt=attempt,
            tb=traceback.format_exc(),
        )
        return "failed"
    finally:
        heartbeat.cancel()
    if not await executions.complete(rt.db, run_id=run_id, attempt=attempt, fields=fields):
        log.warning("run %s lost its fence before completing (canceled or taken over)", run_id)
        return "lost"
    await _mirror(
        rt,
        run,
        RunStatus.COMPLETED,
        {
            "num_clusters": fields["num_clusters"],
            "num_documents_clustered": fields["num_points"],
            "quality_metrics": fields["metrics"],
            "execution_time_seconds": fields["execution_time_ms"] / 1000.0,
            "completed_at": fields.get("completed_at") or _now(),
            "error": None,
            "failure_category": None,
        },
    )
    return "completed"


async def fail_run(
    rt: Runtime,
    run_id: str,
    *,
    message: str,
    category: str,
    attempt: int | None = None,
    tb: str | None = None,
) -> None:
    await run_state.fail(rt.db, run_id=run_id, message=message, category=category, attempt=attempt, tb=tb)


async def _heartbeat(progress: Progress) -> None:
    while True:
        await asyncio.sleep(progress.rt.settings.heartbeat_interval_s)
        doc = await executions.get(progress.rt.db, run_id=progress.run_id)
        if doc and doc.get("progress"):
            await progress.report(doc["progress"]["stage"], float(doc["progress"]["fraction"]))


async def _run_stages(rt: Runtime, run: dict[str, Any], progress: Progress, started: float) -> dict[str, Any]:
    cfg = run["config"]
    await progress.report("pulling", 0.02)
    pulled = await _pull(rt, run, progress)
    X = pulled.matrix()
    doc_ids = np.asarray(pulled.document_ids, dtype=object)
    col_ids = np.asarray(pulled.collection_ids, dtype=object)
    retrieved = X.shape[0]
    if retrieved == 0:
        raise RunDataError(
            f"no usable vectors: none of the {pulled.source_documents} documents has vector "
            f"'{cfg['feature_name']}'"
        )
    order = np.lexsort((col_ids.astype(str), doc_ids.astype(str)))  # ascending document_id
    X, doc_ids, col_ids = X[order], doc_ids[order], col_ids[order]
    sample_size = cfg.get("sample_size")
    if sample_size and sample_size < retrieved:
        rng = np.random.default_rng(cfg["seed"])
        keep = np.sort(rng.choice(retrieved, size=int(sample_size), replace=False))
        X, doc_ids, col_ids = X[keep], doc_ids[keep], col_ids[keep]
    params = validate_params(cfg["algorithm"], cfg.get("algorithm_params"))
    pconf = PipelineConfig(
        algorithm=cfg["algorithm"],
        params=params,
        normalize=bool(cfg.get("normalize_features", True)),
        seed=int(cfg["seed"]),
        compute_metrics=bool(cfg.get("compute_metrics", True)),
        metrics_sample_size=rt.settings.metrics_sample_size,
        centroid_method=cfg.get("centroid_method") or "mean",
    )

    def scaled(stage: str, fraction: float) -> None:  # pipeline owns 30%..90% of the bar
        progress.from_thread(stage, 0.3 + 0.6 * fraction)

    result: PipelineResult = await asyncio.to_thread(run_pipeline, X, pconf, scaled, lambda: progress.lost)
    if progress.lost:
        raise RunCanceled(run["run_id"])
    await progress.report("artifacts", 0.92)
    centroids = _centroid_records(result, doc_ids, col_ids)
    fields: dict[str, Any] = {
        "num_clusters": int(result.num_clusters),
        "num_points": int(result.num_points),
        "metrics": result.metrics,
        "centroids": centroids,
        "source_documents": pulled.source_documents,
        "vectors_retrieved": int(retrieved),
        "vectors_clustered": int((result.labels >= 0).sum()),
        "index_gap": int(pulled.source_documents - retrieved),
        "pipeline_drop": int(result.num_points - (result.labels >= 0).sum()),
        "dimensions": int(X.shape[1]),
    }
    if cfg.get("save_artifacts", True):
        fields.update(await asyncio.to_thread(_write_artifacts, rt, run, result, doc_ids, col_ids))
    fields["execution_time_ms"] = int((time.perf_counter() - started) * 1000)
    return fields


async def _pull(rt: Runtime, run: dict[str, Any], progress: Progress) -> Pulled:
    cfg = run["config"]
    ns = run["namespace_id"]
    out = Pulled()
    out.source_documents = await documents.count_matching(rt.db, ns=ns, collection_ids=cfg["collection_ids"])
    seen = 0
    for cid in cfg["collection_ids"]:
        col = await collections.find(rt.db, ns=ns, ident=cid)
        if col is None:
            raise RunDataError(f"collection '{cid}' no longer exists")
        dims_by_name = collections.dimensions_of(col)
        name = resolve_vector_name(cfg["feature_name"], set(dims_by_name))
        if name is None:
            continue  # nothing in this collection has that vector: all of it is index gap
        dims = dims_by_name[name]
        if out.dimensions is not None and dims != out.dimensions:
            raise RunDataError(
                f"mixed dimensions: vector '{name}' has {dims} dimensions in collection '{cid}' "
                f"but {out.dimensions} elsewhere"
            )
        out.dimensions = dims
        async for ids, block, skipped in documents.iter_vector_batches(
            rt.db,
            ns=ns,
            collection_id=cid,
            vector_name=name,
            dimensions=dims,
            batch_size=rt.settings.pull_batch_size,
        ):
            out.document_ids.extend(ids)
            out.collection_ids.extend([cid] * len(ids))
            out.blocks.append(block)
            out.skipped += skipped
            seen += len(ids) + skipped
            await progress.report("pulling", 0.02 + 0.28 * min(1.0, seen / max(1, out.source_documents)))
            if progress.lost:
                raise RunCanceled(run["run_id"])
    return out


def _centroid_records(
    result: PipelineResult, doc_ids: np.ndarray, col_ids: np.ndarray
) -> list[dict[str, Any]]:
    records = []
    for c in result.clusters:
        members = np.flatnonzero(result.labels == c.label_value)
        nearest = members[np.argsort(result.distances[members], kind="stable")[:REPRESENTATIVES]]
        records.append(
            {
                "cluster_id": c.cluster_id,
                "num_members": int(c.num_members),
                "label": f"Cluster {c.label_value}",
                "mean_cosine_similarity": c.mean_cosine_similarity,
                "min_cosine_similarity": c.min_cosine_similarity,
                "centroid_vector": encode(c.centroid),
                "representative_ids": [
                    {"document_id": str(doc_ids[i]), "collection_id": str(col_ids[i])} for i in nearest
                ],
            }
        )
    return records


def _write_artifacts(
    rt: Runtime, run: dict[str, Any], result: PipelineResult, doc_ids: np.ndarray, col_ids: np.ndarray
) -> dict[str, Any]:
    prefix = artifacts.run_prefix(run["namespace_id"], run["cluster_id"], run["run_id"])
    label_to_id = {c.label_value: c.cluster_id for c in result.clusters}
    centroids = (
        np.stack([c.centroid for c in result.clusters]) if result.clusters else np.empty((0, 0), np.float32)
    )
    ctable = artifacts.clusters_table(
        [c.cluster_id for c in result.clusters],
        [f"Cluster {c.label_value}" for c in result.clusters],
        [int(c.num_members) for c in result.clusters],
        centroids,
    )
    mtable = artifacts.members_table(
        [str(d) for d in doc_ids],
        [str(c) for c in col_ids],
        [label_to_id.get(int(lab)) for lab in result.labels],
        result.distances,
    )
    clusters_key, members_key = prefix + "clusters.parquet", prefix + "members.parquet"
    artifacts.write_table(rt.artifacts, clusters_key, ctable)
    artifacts.write_table(rt.artifacts, members_key, mtable)
    return {"parquet_path": clusters_key, "members_key": members_key}


async def _mirror(rt: Runtime, run: dict[str, Any], status: RunStatus, extra: dict[str, Any]) -> None:
    await run_state.mirror(rt.db, run, status, extra)


def _category(exc: BaseException) -> str:
    if isinstance(exc, SoftTimeLimitExceeded):
        return FailureCategory.TIMEOUT.value
    if isinstance(exc, RunDataError) or (isinstance(exc, ClusterdError) and exc.type == "validation_error"):
        return FailureCategory.VALIDATION.value
    if isinstance(exc, ServiceUnavailable | ConnectionError | OSError) or _is_infra(exc):
        return FailureCategory.INFRASTRUCTURE.value
    return FailureCategory.PIPELINE.value


def _is_infra(exc: BaseException) -> bool:
    mod = type(exc).__module__
    return mod.startswith(("pymongo", "botocore", "boto3", "motor"))


def _message(exc: BaseException) -> str:
    if isinstance(exc, SoftTimeLimitExceeded):
        return "run exceeded its time limit"
    if isinstance(exc, ClusterdError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def _now() -> Any:
    from core.timeutil import utcnow

    return utcnow()
