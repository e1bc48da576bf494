"""Start a run: admit it (core.admission), write it `pending` (before any reply), mark the cluster
QUEUED, enqueue the run id."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from api.deps import Services
from core import admission
from core.algorithms import validate_params
from core.errors import ServiceUnavailable
from core.filters import DOCUMENT_SCHEMA, compile_filter
from core.ids import new_run_id, new_task_id
from core.models import FailureCategory
from core.preprocess import explicit
from core.store import clusters, collections, documents, executions, run_state
from core.vectors import resolve_vector_name
from worker.app import enqueue

log = logging.getLogger("clusterd.api")


def run_config(
    cluster: dict[str, Any], *, sample_size: int | None = None, **overrides: Any
) -> dict[str, Any]:
    """The frozen snapshot a worker runs from: later edits of the cluster do not change it."""
    if cluster.get("cluster_type") == "attribute":
        return {
            "algorithm": "attribute_based",
            "attribute_config": cluster["attribute_config"],
            "collection_ids": cluster["input_collections"],
            "sample_size": sample_size or cluster.get("sample_size"),
            "filters": cluster.get("filters") or {},
            "seed": 42,
            "compute_metrics": True,
            "save_artifacts": True,
            **overrides,
        }
    vc = cluster["vector_config"]
    params = vc["algorithm_params"]
    seed = params.get("random_state")
    return {
        "algorithm": vc["algorithm"],
        "algorithm_params": params,
        "collection_ids": cluster["input_collections"],
        "feature_name": vc["feature_uris"][0],
        "sample_size": sample_size or vc.get("sample_size"),
        "filters": cluster.get("filters") or {},
        "normalize_features": vc.get("normalize_features", True),
        "centroid_method": vc.get("effective_feature_method", "mean"),
        # `[{"method": "none"}]` asks for the vectors exactly as stored: no automatic reduction
        "reduce": not any(s.get("method") == "none" for s in vc.get("preprocessing_steps") or []),
        # explicit steps (core.preprocess) replace the automatic reduction
        "preprocessing": explicit(vc.get("preprocessing_steps") or []),
        **multi_feature_config(vc),
        "seed": int(seed) if isinstance(seed, int) else 42,
        "compute_metrics": True,
        "save_artifacts": True,
        "vis_n_components": vc.get("vis_n_components") or 2,  # worker/layout_stage.py
        "layout_stability": vc.get("layout_stability"),
        "llm_labeling": cluster.get("llm_labeling"),  # worker.labeling; execute may override
        "hierarchical": bool(vc.get("hierarchical")),
        "max_hierarchy_depth": int(vc.get("max_hierarchy_depth") or 3),
        **overrides,
    }


def multi_feature_config(vc: dict[str, Any]) -> dict[str, Any]:
    """The run's multi-feature settings (worker/multi_run.py); {} for a single-feature cluster."""
    uris = vc["feature_uris"]
    if len(uris) < 2:
        return {}
    given = vc.get("feature_weights") or {}
    return {
        "feature_names": list(uris),
        "multi_feature_strategy": vc.get("multi_feature_strategy") or "concatenate",
        "feature_weights": [float(given.get(u, 1.0)) for u in uris],
        # weighted with explicit feature_weights uses them (as the SDK documents): no learning
        "weight_learning": vc.get("weight_learning_config") if not vc.get("feature_weights") else None,
    }


def resolve_features(config: dict[str, Any], dims_by_name: dict[str, int]) -> tuple[str, int] | None:
    """(the first feature's vector name, the dimensions a run holds per document) in a collection,
    or None when it lacks one of the features. A multi-feature run holds every feature's vectors,
    so admission counts their total; its point count uses the first feature (an upper bound)."""
    names = config.get("feature_names") or [config["feature_name"]]
    total, first = 0, None
    for uri in names:
        name = resolve_vector_name(uri, set(dims_by_name))
        if name is None:
            return None
        first = first or name
        total += dims_by_name[name]
    return (first, total) if first is not None else None


async def admit(svc: Services, *, ns: str, config: dict[str, Any], field: str = "sample_size") -> None:
    """Refuse with 422 `too_many_points` a vector run that would cluster more points than one worker
    takes (core.admission): N = min(documents matching the filters that have the vector,
    sample_size). Counts only when `sample_size` alone does not settle it."""
    if config["algorithm"] == "attribute_based":
        return  # grouping is linear: the worker's cap only bounds memory
    params = validate_params(config["algorithm"], config.get("algorithm_params"))
    names: dict[str, str] = {}  # collection id -> the vector's name there
    dims = 0
    for cid in config["collection_ids"]:
        col = await collections.find(svc.db, ns=ns, ident=cid)
        dims_by_name = collections.dimensions_of(col) if col is not None else {}
        resolved = resolve_features(config, dims_by_name)
        if resolved is not None:
            names[cid], dims = resolved[0], max(dims, resolved[1])
    if not names:
        return  # no collection has the vector: the run fails with its own message
    s = svc.settings
    cap = admission.cap(
        config["algorithm"], params, dims, scale=s.admission_scale, memory_limit_mb=s.worker_memory_limit_mb
    )
    requested = config.get("sample_size")
    if cap is None or (requested and requested <= cap.points):
        return
    if await documents.stored_at_most(svc.db) <= cap.points:
        return  # no scope can match more documents than are stored: no count needed
    match = compile_filter(config.get("filters"), schema=DOCUMENT_SCHEMA, where="filters")
    points = await documents.count_matching(svc.db, ns=ns, collection_ids=list(names), match=match)
    if points > cap.points:  # the cheap count may include documents without the vector
        points = 0
        for cid, name in names.items():
            points += await documents.count_with_vector(
                svc.db, ns=ns, collection_id=cid, vector_name=name, match=match
            )
    admission.check(
        config["algorithm"],
        params,
        min(points, requested) if requested else points,
        dims,
        scale=s.admission_scale,
        memory_limit_mb=s.worker_memory_limit_mb,
        field=field,
    )


async def launch_run(
    svc: Services, *, ns: str, cluster: dict[str, Any], config: dict[str, Any], mode: str = "full"
) -> dict[str, Any]:
    run = await executions.create_pending(
        svc.db,
        doc={
            "run_id": new_run_id(),
            "task_id": new_task_id(),
            "namespace_id": ns,
            "cluster_id": cluster["cluster_id"],
            "mode": mode,
            "config": config,
        },
    )
    await clusters.mark_queued(
        svc.db, ns=ns, cluster_id=cluster["cluster_id"], run_id=run["run_id"], task_id=run["task_id"]
    )
    try:
        await asyncio.wait_for(
            asyncio.to_thread(enqueue, svc.celery, run["run_id"], svc.settings.queue_name), timeout=15
        )
    except Exception as exc:
        log.exception("enqueue of %s failed", run["run_id"])
        message = f"broker unavailable, run not queued: {type(exc).__name__}: {exc}"
        await run_state.fail(
            svc.db, run_id=run["run_id"], message=message, category=FailureCategory.INFRASTRUCTURE.value
        )
        raise ServiceUnavailable(message, details={"run_id": run["run_id"]}) from None
    return run
