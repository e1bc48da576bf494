"""Start a run: write it `pending` (before any reply), mark the cluster QUEUED, enqueue the run id."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from api.deps import Services
from core.errors import ServiceUnavailable
from core.ids import new_run_id, new_task_id
from core.models import FailureCategory
from core.store import clusters, executions, run_state
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
        "seed": int(seed) if isinstance(seed, int) else 42,
        "compute_metrics": True,
        "save_artifacts": True,
        **overrides,
    }


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
