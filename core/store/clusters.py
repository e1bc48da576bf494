"""Cluster definitions and the summary of their newest run."""

from __future__ import annotations

from typing import Any

from pymongo.errors import DuplicateKeyError

from core.errors import Conflict, NotFound
from core.models import ClusterStatus
from core.store.db import Database
from core.timeutil import utcnow

_PROJ = {"_id": 0}


async def create(db: Database, *, doc: dict[str, Any]) -> dict[str, Any]:
    try:
        await db.clusters.insert_one(dict(doc))
    except DuplicateKeyError:
        raise Conflict(
            f"cluster_name: '{doc['cluster_name']}' already exists", code="cluster_exists"
        ) from None
    return doc


async def find(db: Database, *, ns: str, ident: str) -> dict[str, Any] | None:
    doc = await db.clusters.find_one({"namespace_id": ns, "cluster_id": ident}, _PROJ)
    if doc is None:
        doc = await db.clusters.find_one({"namespace_id": ns, "cluster_name": ident}, _PROJ)
    return doc  # type: ignore[no-any-return]


async def get_or_raise(db: Database, *, ns: str, ident: str) -> dict[str, Any]:
    doc = await find(db, ns=ns, ident=ident)
    if doc is None:
        raise NotFound(f"cluster '{ident}' not found")
    return doc


async def list_page(
    db: Database, *, ns: str, search: str | None, offset: int, limit: int
) -> tuple[list[dict[str, Any]], int, list[dict[str, Any]]]:
    """Returns (page, total matches, light rows of all matches for stats)."""
    import re

    q: dict[str, Any] = {"namespace_id": ns, "hidden": {"$ne": True}}
    if search:
        rx = {"$regex": re.escape(search), "$options": "i"}
        q["$or"] = [{"cluster_id": rx}, {"cluster_name": rx}, {"description": rx}, {"algorithm": rx}]
    total = await db.clusters.count_documents(q)
    cursor = (
        db.clusters.find(q, _PROJ).sort([("created_at", -1), ("cluster_id", 1)]).skip(offset).limit(limit)
    )
    page = [d async for d in cursor]
    light = [d async for d in db.clusters.find(q, {"_id": 0, "status": 1, "num_documents_clustered": 1})]
    return page, int(total), light


async def update(db: Database, *, ns: str, cluster_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    fields = {**fields, "updated_at": utcnow()}
    try:
        res = await db.clusters.update_one({"namespace_id": ns, "cluster_id": cluster_id}, {"$set": fields})
    except DuplicateKeyError:
        raise Conflict(
            f"cluster_name: '{fields.get('cluster_name')}' already exists", code="cluster_exists"
        ) from None
    if not res.matched_count:
        raise NotFound(f"cluster '{cluster_id}' not found")
    return await get_or_raise(db, ns=ns, ident=cluster_id)


async def mark_queued(db: Database, *, ns: str, cluster_id: str, run_id: str, task_id: str) -> None:
    now = utcnow()
    await db.clusters.update_one(
        {"namespace_id": ns, "cluster_id": cluster_id},
        {
            "$set": {
                "status": ClusterStatus.QUEUED.value,
                "last_run_id": run_id,
                "last_execution_task_id": task_id,
                "last_executed_at": now,
                "updated_at": now,
            }
        },
    )


async def mirror_run(db: Database, *, ns: str, cluster_id: str, run_id: str, fields: dict[str, Any]) -> None:
    """Copy a run's state onto its cluster, only while that run is still the cluster's newest."""
    await db.clusters.update_one(
        {"namespace_id": ns, "cluster_id": cluster_id, "last_run_id": run_id},
        {"$set": {**fields, "updated_at": utcnow()}},
    )


async def delete(db: Database, *, ns: str, cluster_id: str) -> None:
    await db.clusters.delete_one({"namespace_id": ns, "cluster_id": cluster_id})


async def ids_in_namespace(db: Database, *, ns: str) -> list[str]:
    return [
        d["cluster_id"] async for d in db.clusters.find({"namespace_id": ns}, {"_id": 0, "cluster_id": 1})
    ]
