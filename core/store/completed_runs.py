"""Completed runs read by the views (groups, visualization) and by a re-run's layout stability."""

from __future__ import annotations

from typing import Any

from core.errors import NotFound
from core.models import RunStatus
from core.store.db import Database

# what the views read: never the centroid vectors or a traceback
VIEW_PROJECTION = {"_id": 0, "centroids.centroid_vector": 0, "error_traceback": 0}
_NEWEST = [("created_at", -1), ("run_id", -1)]


async def newest(db: Database, *, ns: str, cluster_id: str) -> dict[str, Any]:
    """The cluster's newest completed run, or NotFound."""
    cursor = (
        db.cluster_executions.find(
            {"namespace_id": ns, "cluster_id": cluster_id, "status": RunStatus.COMPLETED.value},
            VIEW_PROJECTION,
        )
        .sort(_NEWEST)
        .limit(1)
    )
    docs = [d async for d in cursor]
    if not docs:
        raise NotFound(f"cluster '{cluster_id}' has no completed run yet: execute it first")
    return docs[0]  # type: ignore[no-any-return]


async def one(db: Database, *, ns: str, cluster_id: str, run_id: str) -> dict[str, Any]:
    """Run `run_id` of the cluster, which must be completed (else NotFound saying its status)."""
    doc = await db.cluster_executions.find_one(
        {"run_id": run_id, "namespace_id": ns, "cluster_id": cluster_id}, VIEW_PROJECTION
    )
    if doc is None:
        raise NotFound(f"run '{run_id}' of cluster '{cluster_id}' not found")
    if doc["status"] != RunStatus.COMPLETED.value:
        raise NotFound(f"run '{run_id}' is {doc['status']}: only a completed run has groups and coordinates")
    return doc  # type: ignore[no-any-return]


async def previous_layout(db: Database, *, ns: str, cluster_id: str, run_id: str) -> dict[str, Any] | None:
    """The newest other completed run of the cluster that has a layout: {run_id, layout_key,
    members_key, layout} (None: there is none)."""
    cursor = (
        db.cluster_executions.find(
            {
                "namespace_id": ns,
                "cluster_id": cluster_id,
                "status": RunStatus.COMPLETED.value,
                "layout_key": {"$exists": True},
                "run_id": {"$ne": run_id},
            },
            {"_id": 0, "run_id": 1, "layout_key": 1, "members_key": 1, "layout": 1},
        )
        .sort(_NEWEST)
        .limit(1)
    )
    docs = [d async for d in cursor]
    return docs[0] if docs else None
