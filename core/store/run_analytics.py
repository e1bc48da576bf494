"""Run history for dashboards: the runs of a cluster in a time window, their summary, failures."""

from __future__ import annotations

from typing import Any

from core.models import RunStatus
from core.store.db import Database, aggregate

# ---------------------------------------------------------------------------------------------
# analytics over a cluster's runs in a time window (projections: no vectors, no tracebacks)
_METRIC_PROJ = {
    "_id": 0,
    "run_id": 1,
    "status": 1,
    "created_at": 1,
    "started_at": 1,
    "completed_at": 1,
    "execution_time_ms": 1,
    "num_points": 1,
    "num_clusters": 1,
    "config.algorithm": 1,
}


def _window(ns: str, cluster_id: str, since: Any, until: Any) -> dict[str, Any]:
    return {"namespace_id": ns, "cluster_id": cluster_id, "created_at": {"$gte": since, "$lte": until}}


async def history(
    db: Database, *, ns: str, cluster_id: str, since: Any, until: Any, limit: int
) -> list[dict[str, Any]]:
    """Runs created in [since, until], newest first, at most `limit`."""
    cursor = (
        db.cluster_executions.find(_window(ns, cluster_id, since, until), _METRIC_PROJ)
        .sort([("created_at", -1), ("run_id", -1)])
        .limit(limit)
    )
    return [d async for d in cursor]


async def history_summary(
    db: Database, *, ns: str, cluster_id: str, since: Any, until: Any
) -> list[dict[str, Any]]:
    """Per status over ALL runs in the window: count, Σ num_points, Σ and count of known durations
    (ms: execution_time_ms, else completed_at - started_at; unfinished runs have none)."""
    duration = {"$ifNull": ["$execution_time_ms", {"$subtract": ["$completed_at", "$started_at"]}]}
    pipeline = [
        {"$match": _window(ns, cluster_id, since, until)},
        {"$project": {"_id": 0, "status": 1, "num_points": 1, "duration_ms": duration}},
        {
            "$group": {
                "_id": "$status",
                "count": {"$sum": 1},
                "documents": {"$sum": "$num_points"},
                "duration_ms": {"$sum": "$duration_ms"},
                "timed": {"$sum": {"$cond": [{"$eq": [{"$ifNull": ["$duration_ms", None]}, None]}, 0, 1]}},
            }
        },
    ]
    reads = ("status", "num_points", "execution_time_ms", "completed_at", "started_at")
    return await aggregate(db.cluster_executions, pipeline, reads=reads)


async def failures(
    db: Database, *, ns: str, cluster_id: str, since: Any, until: Any, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """Failed runs created in [since, until]: (newest first, at most `limit`; their total)."""
    q = {**_window(ns, cluster_id, since, until), "status": RunStatus.FAILED.value}
    proj = {
        "_id": 0,
        "run_id": 1,
        "created_at": 1,
        "completed_at": 1,
        "error_message": 1,
        "failure_category": 1,
    }
    cursor = (
        db.cluster_executions.find(q, proj)
        .sort([("completed_at", -1), ("created_at", -1), ("run_id", -1)])
        .limit(limit)
    )
    page = [d async for d in cursor]
    return page, int(await db.cluster_executions.count_documents(q))
