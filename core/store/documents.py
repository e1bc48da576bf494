"""Documents: metadata, free fields and named vectors stored as float32 bytes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, cast

import numpy as np
from pymongo.errors import BulkWriteError, DuplicateKeyError

from core.errors import Conflict, NotFound
from core.filters import combine
from core.listing import SortKey
from core.store import embedded
from core.store.db import Database, list_matches
from core.timeutil import utcnow
from core.vectors import DTYPE, decode, encode

RESERVED = {"_id", "namespace_id", "collection_id", "document_id", "vectors", "created_at", "updated_at"}


def record_id(*, ns: str, collection_id: str, document_id: str) -> str:
    """A document's `_id`: its (namespace, collection, document_id) key as one string.

    The primary key itself then refuses a second copy of a document, also in the embedded store,
    which has no unique index on that key (core.store.db.EMBEDDED_SKIP), and an insert can find
    out which ids were taken without a query first. Namespace and collection ids never contain
    '/'. Documents written before this scheme carry ObjectIds; on MongoDB the unique index on
    (namespace_id, collection_id, document_id) still refuses a second copy of those.
    """
    return f"{ns}/{collection_id}/{document_id}"


def to_record(
    *,
    ns: str,
    collection_id: str,
    document_id: str,
    fields: dict[str, Any],
    vectors: dict[str, np.ndarray],
    now: datetime | None = None,
) -> dict[str, Any]:
    now = now or utcnow()
    return {
        "_id": record_id(ns=ns, collection_id=collection_id, document_id=document_id),
        **fields,
        "namespace_id": ns,
        "collection_id": collection_id,
        "document_id": document_id,
        "vectors": {name: encode(v) for name, v in vectors.items()},
        "created_at": now,
        "updated_at": now,
    }


def to_records(
    *,
    ns: str,
    collection_id: str,
    document_ids: list[str],
    fields: list[dict[str, Any]],
    vectors: list[tuple[str, np.ndarray, np.ndarray | None]],
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """`to_record` for many documents from column data: row i has `document_ids[i]` and the stored
    fields `fields[i]`; each vector is (name, float32 matrix of the rows that have it, a bool per
    row saying which rows those are, or None for every row)."""
    now = now or utcnow()
    per_row: list[dict[str, bytes]] = [{} for _ in document_ids]
    for name, matrix, present in vectors:
        blobs = map(bytes, np.ascontiguousarray(matrix, dtype=DTYPE))  # one copy: each row's bytes
        rows = range(len(document_ids)) if present is None else np.flatnonzero(present).tolist()
        for i, blob in zip(rows, blobs, strict=True):
            per_row[i][name] = blob
    return [
        {
            "_id": record_id(ns=ns, collection_id=collection_id, document_id=doc_id),
            **row_fields,
            "namespace_id": ns,
            "collection_id": collection_id,
            "document_id": doc_id,
            "vectors": row_vectors,
            "created_at": now,
            "updated_at": now,
        }
        for doc_id, row_fields, row_vectors in zip(document_ids, fields, per_row, strict=True)
    ]


def to_public(doc: dict[str, Any], *, with_vectors: bool) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k not in ("_id", "namespace_id", "vectors")}
    if with_vectors:
        out["vectors"] = {n: decode(b).tolist() for n, b in (doc.get("vectors") or {}).items()}
    return out


async def insert_one(db: Database, record: dict[str, Any]) -> None:
    """Callers check the id is absent first (`ensure_absent`); the `_id` (and on MongoDB the
    unique index) is the backstop."""
    try:
        await db.documents.insert_one(dict(record))
    except DuplicateKeyError:
        raise Conflict(
            f"document_id: '{record['document_id']}' already exists in this collection",
            code="document_exists",
        ) from None


async def ensure_absent(db: Database, *, ns: str, collection_id: str, document_id: str) -> None:
    key = record_id(ns=ns, collection_id=collection_id, document_id=document_id)
    exists = embedded.has_id(db.documents, key)  # the embedded store keys documents by record_id
    if exists is None:
        q = {"namespace_id": ns, "collection_id": collection_id, "document_id": document_id}
        exists = await db.documents.find_one(q, {"_id": 1}) is not None
    if exists:
        raise Conflict(
            f"document_id: '{document_id}' already exists in this collection", code="document_exists"
        )


async def _insert_new(db: Database, records: list[dict[str, Any]]) -> list[int]:
    """Insert the records whose document is new; the positions of those already stored."""
    try:
        await db.documents.insert_many(records, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        taken = sorted({e["index"] for e in errors if e.get("code") == 11000})
        if len(taken) != len(errors):
            raise
        return taken
    return []


async def upsert_many(db: Database, *, ns: str, collection_id: str, records: list[dict[str, Any]]) -> int:
    """Insert the records (from `to_record`, already validated) and replace the documents whose
    id was already stored, keeping their `created_at`. Records are handed over: callers must not
    change them afterwards.

    Inserting first costs no query when every id is new (the usual bulk load); the ids the store
    refused (`_id` or unique index: code 11000) are then replaced one by one. Returns how many
    documents were replaced.
    """
    if not records:
        return 0
    memory = embedded.writable_store(db.documents)
    if memory is not None:  # the embedded store: by `_id`, without mongomock's per-document cost
        return embedded.upsert(memory, records)
    taken = [records[i] for i in await _insert_new(db, records)]
    if not taken:
        return 0
    base = {"namespace_id": ns, "collection_id": collection_id}
    stored = {
        d["document_id"]: d
        async for d in db.documents.find(
            {**base, "document_id": {"$in": [r["document_id"] for r in taken]}},
            {"_id": 1, "document_id": 1, "created_at": 1},
        )
    }
    for r in taken:
        old = stored.get(r["document_id"])
        r = dict(r)
        if old is not None:
            r["created_at"] = old.get("created_at") or r["created_at"]
            if old["_id"] != r["_id"]:  # written before record_id: its ObjectId stays
                del r["_id"]
        await db.documents.replace_one({**base, "document_id": r["document_id"]}, r, upsert=True)
    return len(taken)


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
    scope = {"namespace_id": ns, "collection_id": collection_id}
    deleted = embedded.delete_matching(db.documents, scope=scope)
    if deleted is not None:
        return deleted
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


def embedded_scope(
    db: Database, *, ns: str, collection_ids: list[str], match: dict[str, Any] | None = None
) -> tuple[int, dict[str, list[dict[str, Any]]]] | None:
    """In embedded mode, one read for both the count and the pull of a vector run: (the documents
    of the collections that pass `match`, as `count_matching` counts them; each collection's, in
    ascending document_id order, for `iter_vector_batches(documents=...)`). None on MongoDB.
    The lists hold the stored dicts themselves (callers must not modify them): the pull reads the
    documents as they were here."""
    per: dict[str, list[dict[str, Any]]] = {}
    for cid in dict.fromkeys(collection_ids):
        scope = {"namespace_id": ns, "collection_id": cid}
        docs = embedded.in_id_order(db.documents, scope=scope, match=match)
        if docs is None:
            return None
        per[cid] = docs
    lists = list(per.values())
    if len(lists) == 1:
        return len(lists[0]), per
    # a document stored with an array collection_id may be in several collections: count it once
    return len({id(d) for docs in lists for d in docs}), per


async def stored_at_most(db: Database) -> int:
    """An upper bound on the documents of any scope, without a scan: the documents collection's
    size (the embedded store's length; MongoDB's metadata count, which may lag after an unclean
    shutdown — workers still sample a run down to its cap)."""
    size = embedded.size(db.documents)
    return size if size is not None else int(await db.documents.estimated_document_count())


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
    documents: list[dict[str, Any]] | None = None,
    keys: list[Any] | None = None,
    gap: list[Any] | None = None,
) -> AsyncIterator[tuple[list[str], list[bytes], int]]:
    """Yield (document_ids, blobs, skipped) per `batch_size` documents read, in ascending
    document_id order. Each blob is the stored vector, exactly `dimensions` float32 (decode with
    core.vectors: `VectorRows` fills one preallocated matrix, `decode_many` makes a block).

    Documents lacking the vector are skipped (the run's index_gap); a stored vector of another
    length is counted as skipped too rather than breaking the rows. MongoDB serves a plain find
    with projection, sorted on the (namespace, collection, document_id) index; the embedded store
    is read in bulk (core.store.embedded: its cursor is quadratic), or `documents` is this
    collection's part of `embedded_scope` (read already, for the count). `keys` / `gap`, when
    given, get the `_id` of each document yielded / skipped (core.store.pull_refresh uses them).
    """
    scope = {"namespace_id": ns, "collection_id": collection_id}
    docs = documents
    if docs is None:
        docs = embedded.in_id_order(db.documents, scope=scope, match=match)
    if docs is not None:
        batches: AsyncIterator[list[dict[str, Any]]] = _chunks(docs, batch_size)
    else:
        projection = {"_id": 0, "document_id": 1, f"vectors.{vector_name}": 1}
        cursor = db.documents.find(combine(scope, match or {}), projection).sort("document_id", 1)
        batches = _cursor_batches(cursor.batch_size(batch_size), batch_size)
    width = dimensions * 4
    async for batch in batches:
        # the usual batch (every document has the vector, as plain bytes) in comprehensions:
        # ~0.5 µs per document less than the loop below (measured at 100k: ~45 vs ~95 ms)
        found = [
            b
            if type(v := doc.get("vectors")) is dict
            and type(b := v.get(vector_name)) is bytes
            and len(b) == width
            else None
            for doc in batch
        ]
        if None not in found:
            if keys is not None:
                keys.extend([doc.get("_id") for doc in batch])
            yield [doc["document_id"] for doc in batch], cast("list[bytes]", found), 0
            continue
        ids: list[str] = []
        blobs: list[bytes] = []
        for doc in batch:
            vectors = doc.get("vectors")
            blob = vectors.get(vector_name) if isinstance(vectors, dict) else None
            if isinstance(blob, bytes) and len(blob) == width:
                ids.append(doc["document_id"])
                blobs.append(blob)
                if keys is not None:
                    keys.append(doc.get("_id"))
            elif gap is not None:
                gap.append(doc.get("_id"))
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
    """Documents without their vectors, ascending document_id within each collection.

    On the embedded store the documents are read in bulk (core.store.embedded: its cursor is
    quadratic) and yielded as shallow copies: their nested values are the stored ones, to be read,
    never changed."""
    for cid in collection_ids:
        scope = {"namespace_id": ns, "collection_id": cid}
        docs = embedded.in_id_order(db.documents, scope=scope, match=match)
        if docs is not None:
            for doc in docs:
                yield {k: v for k, v in doc.items() if k not in ("_id", "vectors")}
            continue
        q = combine(scope, match or {})
        cursor = db.documents.find(q, {"_id": 0, "vectors": 0}).sort("document_id", 1).batch_size(batch_size)
        async for doc in cursor:
            yield doc
