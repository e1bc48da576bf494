"""What cluster labeling reads and keeps: member fields by id, and the LLM label cache.

The cache holds one record per key (core.labeling.llm.cache_key: namespace, model, prompt),
with its own `expires_at`; MongoDB's TTL monitor drops it after that (index in core.store.db),
and reads ignore a record already past it (the monitor runs once a minute; the embedded store
has none).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from core.store import embedded
from core.store.db import Database
from core.store.documents import record_id
from core.timeutil import utcnow

ID_BATCH = 1000


async def member_fields(
    db: Database,
    *,
    ns: str,
    collection_id: str,
    document_ids: Iterable[str],
    projection: dict[str, int] | None,
) -> dict[str, dict[str, Any]]:
    """document_id -> the stored document (only `projection`'s fields; None: all but vectors).
    Batched `$in` reads on the (namespace, collection, document_id) index; the embedded store
    is read by `_id` lookups (mongomock scans the whole collection per query).
    The embedded answer holds the stored dicts themselves: callers must not modify them."""
    wanted = sorted(set(document_ids))
    if not wanted:
        return {}
    scope = {"namespace_id": ns, "collection_id": collection_id}
    keys = [record_id(ns=ns, collection_id=collection_id, document_id=d) for d in wanted]
    found = embedded.lookup(db.documents, keys)
    if found is not None:  # the embedded store keys documents by record_id: no scan
        hits = {
            d: doc
            for d, doc in zip(wanted, found, strict=True)
            if doc is not None and (doc.get("namespace_id"), doc.get("collection_id"), doc.get("document_id"))
            == (ns, collection_id, d)
        }
        if len(hits) == len(wanted):
            return hits
    docs = embedded.matching(db.documents, scope=scope, match=None)
    if docs is not None:  # some id was not found by its key (deleted since the pull): one pass
        keep = set(wanted)
        return {d["document_id"]: d for d in docs if d.get("document_id") in keep}
    fields = {"_id": 0, "vectors": 0} if projection is None else {"_id": 0, **projection, "document_id": 1}
    out: dict[str, dict[str, Any]] = {}
    for start in range(0, len(wanted), ID_BATCH):
        q = {**scope, "document_id": {"$in": wanted[start : start + ID_BATCH]}}
        async for d in db.documents.find(q, fields):
            out[d["document_id"]] = d
    return out


async def cached_label(db: Database, *, key: str) -> dict[str, Any] | None:
    """The cached {label, summary, keywords} for `key`, unless it has expired."""
    doc = await db.llm_label_cache.find_one({"key": key, "expires_at": {"$gt": utcnow()}}, {"_id": 0})
    return doc.get("value") if doc else None


async def cache_label(db: Database, *, ns: str, key: str, value: dict[str, Any], ttl_s: int) -> None:
    now = utcnow()
    await db.llm_label_cache.update_one(
        {"key": key},
        {
            "$set": {
                "namespace_id": ns,
                "value": value,
                "created_at": now,
                "expires_at": now + timedelta(seconds=ttl_s),
            }
        },
        upsert=True,
    )


async def delete_for_namespace(db: Database, *, ns: str) -> None:
    await db.llm_label_cache.delete_many({"namespace_id": ns})
