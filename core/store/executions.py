"""Cluster executions (runs): the state machine pending -> processing -> completed|failed|canceled.

Every worker write after the claim is fenced on (status=processing, attempt) so a stale copy of
a redelivered task can never overwrite the result of the copy that owns the run.
"""

from __future__ import annotations

from typing import Any

from core.errors import BadRequest, Conflict, NotFound, ValidationFailed
from core.listing import SortKey, missing_flag
from core.models import RunStatus
from core.store.db import Database, aggregate, list_matches
from core.timeutil import utcnow

_PROJ = {"_id": 0}
_ACTIVE = [RunStatus.PENDING.value, RunStatus.PROCESSING.value]


async def create_pending(db: Database, *, doc: dict[str, Any]) -> dict[str, Any]:
    now = utcnow()
    doc = {
        **doc,
        "status": RunStatus.PENDING.value,
        "num_clusters": 0,
        "num_points": 0,
        "attempts": 0,
        "progress": {"stage": "queued", "fraction": 0.0},
        "created_at": now,
        "published_at": now,  # last time a message for it went to the broker (the reconciler's clock)
    }
    await db.cluster_executions.insert_one(dict(doc))
    return doc


async def get(db: Database, *, run_id: str) -> dict[str, Any] | None:
    return await db.cluster_executions.find_one({"run_id": run_id}, _PROJ)  # type: ignore[no-any-return]


def _one_run(ns: str, cluster_id: str, run_id: str) -> dict[str, Any]:
    # run_id first: MongoDB uses its unique index whatever the order, and the embedded store
    # (mongomock, no indexes) tests the keys in order on every run it scans, so the other runs of
    # the same cluster fail on the first key instead of the third
    return {"run_id": run_id, "namespace_id": ns, "cluster_id": cluster_id}


async def get_or_raise(db: Database, *, ns: str, cluster_id: str, run_id: str) -> dict[str, Any]:
    doc = await db.cluster_executions.find_one(_one_run(ns, cluster_id, run_id), _PROJ)
    if doc is None:
        raise NotFound(f"run '{run_id}' of cluster '{cluster_id}' not found")
    return doc  # type: ignore[no-any-return]


async def by_task_id(db: Database, *, task_id: str) -> dict[str, Any] | None:
    return await db.cluster_executions.find_one({"task_id": task_id}, _PROJ)  # type: ignore[no-any-return]


async def latest(db: Database, *, ns: str, cluster_id: str) -> dict[str, Any] | None:
    cursor = (
        db.cluster_executions.find({"namespace_id": ns, "cluster_id": cluster_id}, _PROJ)
        .sort([("created_at", -1), ("run_id", -1)])
        .limit(1)
    )
    docs = [d async for d in cursor]
    return docs[0] if docs else None


# lists never read vectors or tracebacks
LIST_PROJECTION = {"error_traceback": 0, "centroids.centroid_vector": 0}
ALWAYS_PRESENT = frozenset({"run_id", "created_at", "status", "num_clusters", "num_points", "mode"})


async def list_page(
    db: Database, *, match: dict[str, Any], keys: list[SortKey], offset: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """One sorted page of the runs matching `match` (scoped by the caller) and the match count."""
    return await list_matches(
        db.cluster_executions, match=match, keys=keys, tiebreak="run_id", always_present=ALWAYS_PRESENT,
        offset=offset, limit=limit, projection=LIST_PROJECTION,
    )  # fmt: skip


_STATS_READS = ("status", "num_points", "num_clusters", "execution_time_ms")


async def list_stats(db: Database, *, match: dict[str, Any]) -> dict[str, Any]:
    """ClusterExecutionListStats over every match, aggregated by the database per status."""
    pipeline = [
        {"$match": match},
        {
            "$group": {
                "_id": "$status",
                "n": {"$sum": 1},
                "points": {"$sum": "$num_points"},
                "clusters": {"$sum": "$num_clusters"},
                "ms": {"$sum": "$execution_time_ms"},
                "untimed": {"$sum": missing_flag("execution_time_ms")},
            }
        },
    ]
    by_status: dict[str, int] = {}
    total = points = nclusters = timed_runs = 0
    ms = 0.0
    for row in await aggregate(db.cluster_executions, pipeline, reads=_STATS_READS):
        n = int(row["n"])
        by_status[str(row["_id"])] = n
        total += n
        points += int(row["points"] or 0)
        nclusters += int(row["clusters"] or 0)
        ms += float(row["ms"] or 0)
        timed_runs += n - int(row["untimed"] or 0)
    return {
        "total_executions": total,
        "executions_by_status": by_status,
        "avg_execution_time_ms": (ms / timed_runs) if timed_runs else 0.0,
        "total_documents_clustered": points,
        "avg_num_clusters": (nclusters / total) if total else 0.0,
    }


async def claim(db: Database, *, run_id: str, worker: str) -> dict[str, Any] | None:
    """Compare-and-set pending -> processing. None: the run is not pending (duplicate delivery)."""
    now = utcnow()
    doc = await db.cluster_executions.find_one_and_update(
        {"run_id": run_id, "status": RunStatus.PENDING.value},
        {
            "$set": {
                "status": RunStatus.PROCESSING.value,
                "worker": worker,
                "started_at": now,
                "heartbeat_at": now,
                "progress": {"stage": "claimed", "fraction": 0.0},
            },
            "$inc": {"attempts": 1},
        },
        return_document=True,
    )
    return _strip(doc)


def _strip(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    # no projection in find_one_and_update: mongomock returns None for {"_id": 0} with
    # return_document=AFTER, which would turn every claim into a "duplicate delivery"
    if doc is not None:
        doc.pop("_id", None)
    return doc


def _fence(run_id: str, attempt: int) -> dict[str, Any]:
    return {"run_id": run_id, "status": RunStatus.PROCESSING.value, "attempts": attempt}


async def report_progress(db: Database, *, run_id: str, attempt: int, stage: str, fraction: float) -> bool:
    res = await db.cluster_executions.update_one(
        _fence(run_id, attempt),
        {"$set": {"progress": {"stage": stage, "fraction": round(fraction, 4)}, "heartbeat_at": utcnow()}},
    )
    return bool(res.matched_count)


async def complete(db: Database, *, run_id: str, attempt: int, fields: dict[str, Any]) -> bool:
    res = await db.cluster_executions.update_one(
        _fence(run_id, attempt),
        {
            "$set": {
                **fields,
                "status": RunStatus.COMPLETED.value,
                "completed_at": utcnow(),
                "progress": {"stage": "completed", "fraction": 1.0},
            }
        },
    )
    return bool(res.matched_count)


async def fail(
    db: Database, *, run_id: str, fields: dict[str, Any], attempt: int | None = None
) -> dict[str, Any] | None:
    """Mark failed. With `attempt`, fenced to that attempt's processing copy; without, any
    active (pending/processing) run is failed: used by the enqueue error path and signal handlers."""
    q: dict[str, Any] = (
        _fence(run_id, attempt) if attempt is not None else {"run_id": run_id, "status": {"$in": _ACTIVE}}
    )
    doc = await db.cluster_executions.find_one_and_update(
        q,
        {"$set": {**fields, "status": RunStatus.FAILED.value, "completed_at": utcnow()}},
        return_document=True,
    )
    return _strip(doc)


async def is_canceled(db: Database, *, run_id: str) -> bool:
    doc = await db.cluster_executions.find_one({"run_id": run_id}, {"_id": 0, "status": 1})
    return doc is not None and doc["status"] == RunStatus.CANCELED.value


async def cancel_active(db: Database, *, ns: str, cluster_id: str) -> list[str]:
    q = {"namespace_id": ns, "cluster_id": cluster_id, "status": {"$in": _ACTIVE}}
    ids = [d["run_id"] async for d in db.cluster_executions.find(q, {"_id": 0, "run_id": 1})]
    if ids:
        await db.cluster_executions.update_many(
            {"run_id": {"$in": ids}, "status": {"$in": _ACTIVE}},
            {"$set": {"status": RunStatus.CANCELED.value, "completed_at": utcnow()}},
        )
    return ids


async def delete_for_cluster(db: Database, *, ns: str, cluster_id: str) -> int:
    res = await db.cluster_executions.delete_many({"namespace_id": ns, "cluster_id": cluster_id})
    return int(res.deleted_count)


async def stale_processing(db: Database, *, silent_since: Any) -> list[dict[str, Any]]:
    q = {"status": RunStatus.PROCESSING.value, "heartbeat_at": {"$lt": silent_since}}
    proj = {"_id": 0, "run_id": 1, "attempts": 1, "namespace_id": 1, "cluster_id": 1, "heartbeat_at": 1}
    return [d async for d in db.cluster_executions.find(q, proj)]


async def requeue_stale(db: Database, *, run_id: str, attempt: int, silent_since: Any) -> bool:
    """CAS a silent processing run back to pending (one reaper wins; a live worker's heartbeat
    or a finished run makes it a no-op). Its old copy loses the attempt fence."""
    res = await db.cluster_executions.update_one(
        {**_fence(run_id, attempt), "heartbeat_at": {"$lt": silent_since}},
        {
            "$set": {
                "status": RunStatus.PENDING.value,
                "progress": {"stage": "requeued", "fraction": 0.0},
                "published_at": utcnow(),
            },
            "$unset": {"finalizing": ""},
        },
    )
    return bool(res.modified_count)


async def stale_pending(db: Database, *, published_before: Any, limit: int = 1000) -> list[dict[str, Any]]:
    """Pending runs whose last message went to the broker before `published_before`, oldest first."""
    q = {"status": RunStatus.PENDING.value, "published_at": {"$lt": published_before}}
    proj = {"_id": 0, "run_id": 1, "namespace_id": 1, "cluster_id": 1, "published_at": 1}
    cursor = db.cluster_executions.find(q, proj).sort([("published_at", 1), ("run_id", 1)]).limit(limit)
    return [d async for d in cursor]


async def mark_republished(db: Database, *, run_id: str, published_before: Any) -> bool:
    """CAS: this reconciler re-publishes the run (a claim or another reconciler makes it a no-op)."""
    res = await db.cluster_executions.update_one(
        {"run_id": run_id, "status": RunStatus.PENDING.value, "published_at": {"$lt": published_before}},
        {"$set": {"published_at": utcnow()}, "$inc": {"republished": 1}},
    )
    return bool(res.modified_count)


# ---------------------------------------------------------------------------------------------
# run management: cancel, finalizing (the commit point), labels, name


async def get_light_or_raise(db: Database, *, ns: str, cluster_id: str, run_id: str) -> dict[str, Any]:
    """The run without centroid vectors and traceback (what management routes need)."""
    doc = await db.cluster_executions.find_one(
        _one_run(ns, cluster_id, run_id), {"_id": 0, "centroids.centroid_vector": 0, "error_traceback": 0}
    )
    if doc is None:
        raise NotFound(f"run '{run_id}' of cluster '{cluster_id}' not found")
    return doc  # type: ignore[no-any-return]


async def begin_finalizing(db: Database, *, run_id: str, attempt: int) -> bool:
    """The worker's commit point, fenced like every worker write: once set, a cancel is refused,
    so no artifact or result is ever written for a run that was canceled. False: fence lost."""
    res = await db.cluster_executions.update_one(_fence(run_id, attempt), {"$set": {"finalizing": True}})
    return bool(res.matched_count)


async def cancel(db: Database, *, ns: str, cluster_id: str, run_id: str) -> dict[str, Any] | None:
    """CAS pending|processing (not yet finalizing) -> canceled. None: the run is in another state."""
    doc = await db.cluster_executions.find_one_and_update(
        {
            "namespace_id": ns,
            "cluster_id": cluster_id,
            "run_id": run_id,
            "status": {"$in": _ACTIVE},
            "finalizing": {"$ne": True},
        },
        {
            "$set": {
                "status": RunStatus.CANCELED.value,
                "completed_at": utcnow(),
                "progress": {"stage": "canceled", "fraction": 1.0},
            }
        },
        return_document=True,
    )
    return _strip(doc)


def relabel(centroids: list[dict[str, Any]], overrides: dict[str, str]) -> list[dict[str, Any]]:
    """Centroids with `label` = override or the machine label, kept as `original_label` (a string)."""
    out = []
    for c in centroids:
        c = dict(c)
        original = c["original_label"] if "original_label" in c else c.get("label")
        c["original_label"] = original if isinstance(original, str) else ""
        label = overrides.get(c["cluster_id"]) or c["original_label"]
        if label:
            c["label"] = label
        else:
            c.pop("label", None)
        out.append(c)
    return out


LABEL_RETRIES = 20


async def set_labels(
    db: Database, *, ns: str, cluster_id: str, run_id: str, labels: dict[str, str]
) -> dict[str, str]:
    """Merge `labels` into a completed run's `label_overrides` ("" deletes one) and rewrite
    `centroids[].label`. The whole array is `$set` under a `labels_version` compare-and-set,
    so concurrent PATCHes retry rather than lose an update. Returns the merged overrides."""
    key = {"namespace_id": ns, "cluster_id": cluster_id, "run_id": run_id}
    for _ in range(LABEL_RETRIES):
        run = await db.cluster_executions.find_one(
            key, {"_id": 0, "status": 1, "centroids": 1, "label_overrides": 1, "labels_version": 1}
        )
        if run is None:
            raise NotFound(f"run '{run_id}' of cluster '{cluster_id}' not found")
        if run["status"] != RunStatus.COMPLETED.value:
            raise BadRequest(
                f"run '{run_id}' is {run['status']}: only a completed run's labels can be changed",
                code="invalid_state",
            )
        centroids = run.get("centroids") or []
        known = {c["cluster_id"] for c in centroids}
        unknown = [cid for cid in labels if cid not in known]
        if unknown:
            errors = [
                {"loc": ["body", "labels", cid], "msg": f"run has no cluster '{cid}'", "type": "value_error"}
                for cid in unknown
            ]
            raise ValidationFailed(
                f"labels.{unknown[0]}: run '{run_id}' has no cluster '{unknown[0]}'",
                details={"validation_errors": errors},
            )
        overrides = {**(run.get("label_overrides") or {})}
        for cid, label in labels.items():
            if label:
                overrides[cid] = label
            else:
                overrides.pop(cid, None)
        version = run.get("labels_version")
        guard = {"labels_version": version} if version is not None else {"labels_version": {"$exists": False}}
        res = await db.cluster_executions.update_one(
            {**key, "status": RunStatus.COMPLETED.value, **guard},
            {
                "$set": {
                    "label_overrides": overrides,
                    "centroids": relabel(centroids, overrides),
                    "labels_version": int(version or 0) + 1,
                }
            },
        )
        if res.matched_count:
            return overrides
    raise Conflict(f"run '{run_id}': labels changed concurrently too often; retry", code="labels_conflict")


async def set_run_name(db: Database, *, ns: str, cluster_id: str, run_id: str, run_name: str | None) -> None:
    """Set the run's name, or `$unset` it when `run_name` is None."""
    update = {"$set": {"run_name": run_name}} if run_name else {"$unset": {"run_name": ""}}
    res = await db.cluster_executions.update_one(
        {"namespace_id": ns, "cluster_id": cluster_id, "run_id": run_id}, update
    )
    if not res.matched_count:
        raise NotFound(f"run '{run_id}' of cluster '{cluster_id}' not found")
