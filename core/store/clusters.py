"""Cluster definitions and the summary of their newest run."""

from __future__ import annotations

from typing import Any

from pymongo.errors import DuplicateKeyError

from core.errors import Conflict, NotFound
from core.ids import CLUSTER_ID_RE
from core.listing import SortKey
from core.models import ClusterStatus
from core.store.db import Database, aggregate, list_matches
from core.timeutil import utcnow

_PROJ = {"_id": 0}
# written at create for every cluster: sorting on them needs no missing-last handling
ALWAYS_PRESENT = frozenset(
    {"cluster_id", "cluster_name", "created_at", "updated_at", "status", "cluster_type"}
)
LIST_FIELDS = (
    "cluster_id", "cluster_name", "namespace_id", "description", "cluster_type", "status",
    "input_collections", "algorithm", "algorithm_params", "feature_uris", "sample_size", "filters",
    "metadata", "llm_labeling", "multi_feature_strategy", "effective_feature_method", "vis_n_components",
    "layout_stability", "hierarchical_vector", "hierarchical_grouping", "enrich_source",
    "hierarchy_detected", "max_hierarchy_depth", "output_collection_ids", "output_collection_names",
    "source_cluster_ids", "num_clusters", "num_documents_clustered", "quality_metrics",
    "execution_time_seconds", "error", "failure_category", "last_run_id", "last_execution_task_id",
    "clustered_attributes", "aggregation_method", "hierarchy_relationships", "preprocessing_steps",
    "llm_labeling_errors", "created_at", "updated_at", "last_executed_at", "completed_at",
    "learned_weights", "learning_quality_score",
)  # fmt: skip
LIST_PROJECTION = dict.fromkeys(LIST_FIELDS, 1)


async def create(db: Database, *, doc: dict[str, Any]) -> dict[str, Any]:
    try:
        await db.clusters.insert_one(dict(doc))
    except DuplicateKeyError:
        raise Conflict(
            f"cluster_name: '{doc['cluster_name']}' already exists", code="cluster_exists"
        ) from None
    return doc


async def find(
    db: Database, *, ns: str, ident: str, projection: dict[str, int] | None = None
) -> dict[str, Any] | None:
    """By id, else by name. An ident not of the id format can only be a name: one query."""
    proj = projection or _PROJ
    doc = None
    if CLUSTER_ID_RE.match(ident):
        doc = await db.clusters.find_one({"namespace_id": ns, "cluster_id": ident}, proj)
    if doc is None:
        doc = await db.clusters.find_one({"namespace_id": ns, "cluster_name": ident}, proj)
    return doc  # type: ignore[no-any-return]


async def get_or_raise(db: Database, *, ns: str, ident: str) -> dict[str, Any]:
    doc = await find(db, ns=ns, ident=ident)
    if doc is None:
        raise NotFound(f"cluster '{ident}' not found")
    return doc


async def resolve_id(db: Database, *, ns: str, ident: str) -> str:
    """The id of the cluster `ident` (id or name) names, reading nothing else of it: routes that
    only scope a run by its cluster (polling one, above all) skip copying the whole definition."""
    doc = await find(db, ns=ns, ident=ident, projection={"_id": 0, "cluster_id": 1})
    if doc is None:
        raise NotFound(f"cluster '{ident}' not found")
    return str(doc["cluster_id"])


async def list_page(
    db: Database, *, match: dict[str, Any], keys: list[SortKey], offset: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """One sorted page of the clusters matching `match` (already scoped to a namespace), and the
    number of matches. Only the fields ClusterMetadata returns are read."""
    return await list_matches(
        db.clusters, match=match, keys=keys, tiebreak="cluster_id", always_present=ALWAYS_PRESENT,
        offset=offset, limit=limit, projection=LIST_PROJECTION,
    )  # fmt: skip


async def list_stats(db: Database, *, match: dict[str, Any]) -> dict[str, Any]:
    """ClusterListStats over every match, computed by the database (one row per status)."""
    pipeline = [
        {"$match": match},
        {"$group": {"_id": "$status", "n": {"$sum": 1}, "docs": {"$sum": "$num_documents_clustered"}}},
    ]
    by_status: dict[str, int] = {}
    total = docs = 0
    for row in await aggregate(db.clusters, pipeline, reads=("status", "num_documents_clustered")):
        n = int(row["n"])
        by_status[str(row["_id"] or ClusterStatus.PENDING.value)] = n
        total += n
        docs += int(row["docs"] or 0)
    return {
        "total_clusters": total,
        "total_documents": docs,
        "avg_documents_per_cluster": (docs / total) if total else 0.0,
        "clusters_by_status": by_status,
    }


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
