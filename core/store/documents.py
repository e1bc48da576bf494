"""Documents: metadata, free fields and named vectors stored as float32 bytes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from pymongo.errors import BulkWriteError, DuplicateKeyError

from core.errors import Conflict, NotFound
from core.filters import combine
from core.listing import SortKey
from core.store import embedded
from core.store.db import Database, list_matches
from core.timeutil import utcnow
from core.vectors import decode, encode

RESERVED = {"_id", "namespace_id", "collection_id", "document_id", "vectors", "created_at", "updated_at"}


def to_record(
    *, ns: str, collection_id: str, document_id: str, fields: dict[str, Any], vectors: dict[str, np.ndarray]
) -> dict[str, Any]:
    now = utcnow()
    return {
        **fields,
        "namespace_id": ns,
        "collection_id": collection_id,
        "document_id": document_id,
        "vectors": {name: encode(v) for name, v in vectors.items()},
        "created_at": now,
        "updated_at": now,
    }


def to_public(doc: dict[str, Any], *, with_vectors: bool) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k not in ("_id", "namespace_id", "vectors")}
    if with_vectors:
        out["vectors"] = {n: decode(b).tolist() for n, b in (doc.get("vectors") or {}).items()}
    return out


async def insert_one(db: Database, record: dict[str, Any]) -> None:
    """Callers check the id is absent first (`ensure_absent`); the unique index is the backstop."""
    try:
        await db.documents.insert_one(dict(record))
    except DuplicateKeyError:
        raise Conflict(
            f"document_id: '{record['document_id']}' already exists in this collection",
            code="document_exists",
        ) from None


async def ensure_absent(db: Database, *, ns: str, collection_id: str, document_id: str) -> None:
    q = {"namespace_id": ns, "collection_id": collection_id, "document_id": document_id}
    if await db.documents.find_one(q, {"_id": 1}) is not None:
        raise Conflict(
            f"document_id: '{document_id}' already exists in this collection", code="document_exists"
        )


async def upsert_many(db: Database, *, ns: str, collection_id: str, records: list[dict[str, Any]]) -> None:
    """Replace documents whose id exists, insert the rest (records are already validated)."""
    base = {"namespace_id": ns, "collection_id": collection_id}
    ids = [r["document_id"] for r in records]
    existing = {
        d["document_id"]: d.get("created_at")
        async for d in db.documents.find(
            {**base, "document_id": {"$in": ids}}, {"document_id": 1, "created_at": 1}
        )
    }
    fresh = [dict(r) for r in records if r["document_id"] not in existing]
    retry: list[dict[str, Any]] = []
    if fresh:
        try:
            await db.documents.insert_many(fresh, ordered=False)
        except BulkWriteError as exc:  # inserted concurrently by another writer: replace instead
            dup_idx = {e["index"] for e in exc.details.get("writeErrors", []) if e.get("code") == 11000}
            retry = [fresh[i] for i in sorted(dup_idx)]
            if len(dup_idx) != len(exc.details.get("writeErrors", [])):
                raise
    for r in [r for r in records if r["document_id"] in existing] + retry:
        r = {k: v for k, v in r.items() if k != "_id"}
        r["created_at"] = existing.get(r["document_id"]) or r["created_at"]
        await db.documents.replace_one({**base, "document_id": r["document_id"]}, r, upsert=True)


async def get_or_raise(db: Database, *, ns: str, collection_id: str, document_id: str) -> dict[str, Any]:
    doc = await db.documents.find_one(
        {"namespace_id": ns, "collection_id": collection_id, "document_id": document_id}, {"_id": 0}
    )
    if doc is None:
        raise NotFound(f"document '{document_id}' not found")
    return doc  # type: ignore[no-any-return]


async def count(db: Database, *, ns: str, collection_id: str) -> int:
    return int(await db.documents.count_documents({"namespace_id": ns, "collection_id": collection_id}))


DOC_ALWAYS_PRESENT = frozenset({"document_id", "collection_id", "created_at", "updated_at"})


async def list_page(
    db: Database,
    *,
    match: dict[str, Any],
    keys: list[SortKey],
    offset: int,
    limit: int,
    projection: dict[str, int],
) -> tuple[list[dict[str, Any]], int]:
    """One sorted page of the documents matching `match` (scoped by the caller) and the count."""
    return await list_matches(
        db.documents, match=match, keys=keys, tiebreak="document_id", always_present=DOC_ALWAYS_PRESENT,
        offset=offset, limit=limit, projection=projection,
    )  # fmt: skip


async def delete_one(db: Database, *, ns: str, collection_id: str, document_id: str) -> bool:
    res = await db.documents.delete_one(
        {"namespace_id": ns, "collection_id": collection_id, "document_id": document_id}
    )
    return bool(res.deleted_count)


async def delete_collection(db: Database, *, ns: str, collection_id: str) -> int:
    res = await db.documents.delete_many({"namespace_id": ns, "collection_id": collection_id})
    return int(res.deleted_count)


async def count_matching(
    db: Database, *, ns: str, collection_ids: list[str], match: dict[str, Any] | None = None
) -> int:
    """Documents of the collections that pass the pre-filter `match` (a compiled core.filters query)."""
    scope: embedded.Scope = {"namespace_id": ns, "collection_id": frozenset(collection_ids)}
    docs = embedded.matching(db.documents, scope=scope, match=match)  # mongomock counts at ~150k/s
    if docs is not None:
        return len(docs)
    q = combine({"namespace_id": ns, "collection_id": {"$in": collection_ids}}, match or {})
    return int(await db.documents.count_documents(q))


async def count_with_vector(
    db: Database, *, ns: str, collection_id: str, vector_name: str, match: dict[str, Any] | None = None
) -> int:
    """Documents of one collection that pass `match` and have vector `vector_name`."""
    has_vector = {f"vectors.{vector_name}": {"$exists": True}}
    q = combine({"namespace_id": ns, "collection_id": collection_id, **has_vector}, match or {})
    return int(await db.documents.count_documents(q))


async def iter_vector_batches(
    db: Database,
    *,
    ns: str,
    collection_id: str,
    vector_name: str,
    dimensions: int,
    batch_size: int,
    match: dict[str, Any] | None = None,
) -> AsyncIterator[tuple[list[str], list[bytes], int]]:
    """Yield (document_ids, blobs, skipped) per `batch_size` documents read, in ascending
    document_id order. Each blob is the stored vector, exactly `dimensions` float32 (decode with
    core.vectors: `VectorRows` fills one preallocated matrix, `decode_many` makes a block).

    Documents lacking the vector are skipped (the run's index_gap); a stored vector of another
    length is counted as skipped too rather than breaking the rows. MongoDB serves a plain find
    with projection, sorted on the (namespace, collection, document_id) index; the embedded store
    is read in bulk (core.store.embedded: its cursor is quadratic).
    """
    scope = {"namespace_id": ns, "collection_id": collection_id}
    docs = embedded.matching(db.documents, scope=scope, match=match)
    if docs is not None:
        batches: AsyncIterator[list[dict[str, Any]]] = _chunks(
            embedded.sort_ascending(docs, "document_id"), batch_size
        )
    else:
        projection = {"_id": 0, "document_id": 1, f"vectors.{vector_name}": 1}
        cursor = db.documents.find(combine(scope, match or {}), projection).sort("document_id", 1)
        batches = _cursor_batches(cursor.batch_size(batch_size), batch_size)
    width = dimensions * 4
    async for batch in batches:
        ids: list[str] = []
        blobs: list[bytes] = []
        for doc in batch:
            vectors = doc.get("vectors")
            blob = vectors.get(vector_name) if isinstance(vectors, dict) else None
            if isinstance(blob, bytes) and len(blob) == width:
                ids.append(doc["document_id"])
                blobs.append(blob)
        yield ids, blobs, len(batch) - len(ids)


async def _chunks(docs: list[dict[str, Any]], size: int) -> AsyncIterator[list[dict[str, Any]]]:
    for start in range(0, len(docs), size):
        yield docs[start : start + size]


async def _cursor_batches(cursor: Any, size: int) -> AsyncIterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    async for doc in cursor:
        batch.append(doc)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


async def iter_fields(
    db: Database,
    *,
    ns: str,
    collection_ids: list[str],
    batch_size: int,
    match: dict[str, Any] | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Documents without their vectors, ascending document_id within each collection."""
    for cid in collection_ids:
        q = combine({"namespace_id": ns, "collection_id": cid}, match or {})
        cursor = db.documents.find(q, {"_id": 0, "vectors": 0}).sort("document_id", 1).batch_size(batch_size)
        async for doc in cursor:
            yield doc
