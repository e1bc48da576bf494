"""Connections and indexes. The store package is the only code that imports motor."""

from __future__ import annotations

import copy
import logging
from typing import Any

from pymongo.errors import OperationFailure

from core.listing import page_query
from core.settings import Settings
from core.store.embedded import matching, store_of, track_writes

log = logging.getLogger("clusterd.store")

Database = Any  # AsyncIOMotorDatabase, or mongomock-motor's stand-in in embedded mode and tests

_NS = ("namespace_id", 1)
_RUNS = [_NS, ("cluster_id", 1)]

# Every list and filter path has an index led by its scope (namespace; + cluster for runs, +
# collection for documents): the default sorts, each known filter/sort field, and wildcard indexes
# for the free-form subtrees (metadata.*, metrics.*). tests/integration/test_indexes.py checks
# that every field of core.filters' schemas is covered.
INDEXES: dict[str, list[tuple[list[tuple[str, int]], dict[str, Any]]]] = {
    "api_keys": [([("key_hash", 1)], {"unique": True}), ([("key_id", 1)], {"unique": True})],
    "namespaces": [([("namespace_id", 1)], {"unique": True}), ([("namespace_name", 1)], {"unique": True})],
    "collections": [
        ([_NS, ("collection_id", 1)], {"unique": True}),
        ([_NS, ("collection_name", 1)], {"unique": True}),
    ],
    "documents": [
        ([_NS, ("collection_id", 1), ("document_id", 1)], {"unique": True}),  # EMBEDDED_SKIP[0]
        ([_NS, ("collection_id", 1), ("created_at", -1)], {}),
        ([_NS, ("collection_id", 1), ("updated_at", -1)], {}),
        ([("metadata.$**", 1)], {}),
    ],
    "clusters": [
        ([_NS, ("cluster_id", 1)], {"unique": True}),
        ([_NS, ("cluster_name", 1)], {"unique": True}),
        ([_NS, ("created_at", -1)], {}),
        *(
            ([_NS, (f, 1), ("created_at", -1)], {})
            for f in (
                "status",
                "algorithm",
                "cluster_type",
                "updated_at",
                "last_executed_at",
                "completed_at",
                "num_clusters",
                "num_documents_clustered",
                "sample_size",
                "execution_time_seconds",
                "input_collections",
                "feature_uris",
                "clustered_attributes",
                "last_run_id",
                "failure_category",
                "hierarchy_detected",
                "description",
                "error",
            )
        ),
        ([("metadata.$**", 1)], {}),
        ([("algorithm_params.$**", 1)], {}),
        ([("quality_metrics.$**", 1)], {}),
    ],
    "cluster_executions": [
        ([("run_id", 1)], {"unique": True}),
        ([_NS, ("cluster_id", 1), ("created_at", -1)], {}),
        ([("status", 1), ("heartbeat_at", 1)], {}),
        ([("status", 1), ("published_at", 1)], {}),
        ([("task_id", 1)], {}),
        *(
            ([*_RUNS, (f, 1), ("created_at", -1)], {})
            for f in (
                "run_id",
                "status",
                "completed_at",
                "started_at",
                "num_clusters",
                "num_points",
                "run_name",
                "mode",
                "failure_category",
                "execution_time_ms",
                "attempts",
                "noise_points",
                "source_documents",
                "vectors_retrieved",
                "vectors_clustered",
                "config.algorithm",
                "error_message",
                "task_id",
                "centroids.label",
                "centroids.summary",
                "centroids.cluster_id",
                "centroids.num_members",
            )
        ),
        ([("metrics.$**", 1)], {}),
    ],
    # core.store.idempotency: one key per namespace; MongoDB's TTL monitor drops a record once
    # its own `expires_at` has passed (expiry is per record, so the setting needs no index rebuild)
    "idempotency_keys": [
        ([_NS, ("key", 1)], {"unique": True}),
        ([_NS, ("cluster_id", 1)], {}),
        ([("expires_at", 1)], {"expireAfterSeconds": 0}),
    ],
    # core.store.labeling: LLM labels by prompt key, each record expiring at its own `expires_at`
    "llm_label_cache": [
        ([("key", 1)], {"unique": True}),
        ([_NS], {}),
        ([("expires_at", 1)], {"expireAfterSeconds": 0}),
    ],
}


def connect(settings: Settings, *, shared_mock: Any = None) -> tuple[Any, Database]:
    """Return (client, database). Must be called inside the event loop that will use the client.

    Embedded mode uses mongomock-motor; `shared_mock` (a mongomock.MongoClient) lets several
    loops see the same in-memory data.
    """
    if settings.mongodb_url:
        from motor.motor_asyncio import AsyncIOMotorClient

        client: Any = AsyncIOMotorClient(settings.mongodb_url, tz_aware=True, uuidRepresentation="standard")
    else:
        from mongomock_motor import AsyncMongoMockClient

        track_writes()  # core.store.pull_cache serves repeat pulls while nothing changed

        client = (
            AsyncMongoMockClient(mock_mongo_client=shared_mock) if shared_mock else AsyncMongoMockClient()
        )
    db = client[settings.mongodb_database]
    if not settings.mongodb_url:
        # mongomock-motor resolves `db.<collection>` through dir() of the whole database and builds
        # a new wrapper each time (~30 µs; an authenticated run poll does it four times). The
        # wrappers hold no state of their own: one per collection, kept on the instance where
        # attribute lookup finds it first.
        for name in INDEXES:
            setattr(db, name, db[name])
    return client, db


# mongomock checks a unique index by scanning the whole collection on every insert, which made a
# 1000-document batch O(n^2) (12 s at 1k documents, 80 s at 4k). The embedded store leaves this
# one index out: a document's `_id` is "<namespace>/<collection>/<document_id>"
# (core.store.documents.record_id), so the `_id` key itself refuses a duplicate there.
EMBEDDED_SKIP = {("documents", 0)}


async def ensure_indexes(db: Database, *, embedded: bool = False) -> None:
    for name, specs in INDEXES.items():
        for i, (keys, options) in enumerate(specs):
            if embedded and (name, i) in EMBEDDED_SKIP:
                continue
            try:
                await db[name].create_index(keys, **options)
            except OperationFailure as exc:
                # MongoDB-compatible servers without wildcard indexes (nx-27017 in the fault tests,
                # some managed services) still serve: metadata/metrics filters then scan
                if not any("$**" in k for k, _ in keys):
                    raise
                log.warning("wildcard index %s on %s not created: %s", keys[0][0], name, exc)


async def ping(db: Database) -> None:
    await db.command("ping")


async def list_matches(
    collection: Any,
    *,
    match: dict[str, Any],
    keys: list[Any],
    tiebreak: str,
    always_present: frozenset[str],
    offset: int,
    limit: int,
    projection: dict[str, int],
) -> tuple[list[dict[str, Any]], int]:
    """One sorted page of `match` (core.listing.page_query: a plain find, or an aggregation for
    missing-last ascending keys) and the number of matches."""
    q = page_query(
        match, keys, tiebreak=tiebreak, always_present=always_present, skip=offset, limit=limit,
        projection=projection,
    )  # fmt: skip
    total = int(await collection.count_documents(match))
    if q.pipeline is not None:
        return await aggregate(collection, q.pipeline, allowDiskUse=True), total
    if embedded(collection):
        return await _embedded_page(collection, q), total
    cursor = collection.find(q.match, q.projection).sort(q.sort).skip(q.skip).limit(q.limit)
    return [d async for d in cursor], total


# ---------------------------------------------------------------------------------------------
# The embedded store (mongomock) has no indexes and copies documents eagerly: where a list or a
# stats call would copy far more than it returns, these paths read the same answer another way.
# MongoDB always takes the plain query.


def embedded(collection: Any) -> bool:
    """Whether `collection` lives in the embedded in-process store."""
    return store_of(collection) is not None


async def aggregate(
    collection: Any, pipeline: list[dict[str, Any]], *, reads: tuple[str, ...] | None = None, **kwargs: Any
) -> list[dict[str, Any]]:
    """`collection.aggregate(pipeline)` as a list. mongomock copies every document of the
    collection before the first stage runs (a run list's stats copied every run of every cluster
    of every namespace); on the embedded store a leading `$match` selects the stored documents
    first (core.store.embedded.matching: mongomock's own filter), and the later stages get copies
    of the matches only, of just `reads` (top-level fields, the ones those stages use) when given."""
    docs = matching(collection, scope={}, match=pipeline[0]["$match"]) if _match_first(pipeline) else None
    if docs is None:
        return [d async for d in collection.aggregate(pipeline, **kwargs)]
    from mongomock.aggregate import process_pipeline

    # the stored documents themselves must not reach the stages ($addFields writes into its input)
    rows = [{k: d[k] for k in reads if k in d} for d in docs] if reads else copy.deepcopy(docs)
    return list(process_pipeline(rows, collection.database.delegate, pipeline[1:], None))


def _match_first(pipeline: list[dict[str, Any]]) -> bool:
    return bool(pipeline) and list(pipeline[0]) == ["$match"]


async def _embedded_page(collection: Any, q: Any) -> list[dict[str, Any]]:
    """mongomock copies every match before it skips and limits (every run of a cluster for a page
    of 20): sort and page copying only `_id`, then copy just the page's documents. (Its cursor
    slices the whole result list again for each document it hands out, so only the page's ids are
    drained from it.)"""
    cursor = collection.find(q.match, {"_id": 1}).sort(q.sort).skip(q.skip).limit(q.limit)
    ids = [d["_id"] async for d in cursor]
    if not ids:
        return []
    fields = {k: v for k, v in q.projection.items() if k != "_id"}
    # {"_id": 1} alone would mean "nothing but _id": with no other fields, read whole documents
    projection = {**fields, "_id": 1} if fields else None
    by_id = {d["_id"]: d async for d in collection.find({"_id": {"$in": ids}}, projection)}
    keep_id = q.projection.get("_id", 1) != 0
    page = []
    for i in ids:
        doc = by_id.get(i)
        if doc is not None:  # None: deleted between the two reads
            if not keep_id:
                doc.pop("_id", None)
            page.append(doc)
    return page
