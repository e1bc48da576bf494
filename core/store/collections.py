"""Collections and their vector indexes ([{name, dimensions, feature_uri}])."""

from __future__ import annotations

from typing import Any

from pymongo.errors import DuplicateKeyError

from core.errors import Conflict, NotFound, ValidationFailed
from core.ids import new_collection_id
from core.store.db import Database
from core.timeutil import utcnow
from core.vectors import default_feature_uri

_PROJ = {"_id": 0}


async def create(
    db: Database,
    *,
    ns: str,
    name: str,
    description: str | None,
    source: dict[str, Any],
    metadata: dict[str, Any],
    enabled: bool,
    vector_indexes: list[dict[str, Any]],
) -> dict[str, Any]:
    now = utcnow()
    doc = {
        "namespace_id": ns,
        "collection_id": new_collection_id(),
        "collection_name": name,
        "description": description,
        "source": source,
        "metadata": metadata,
        "enabled": enabled,
        "vector_indexes": vector_indexes,
        # declared indexes are a schema: vectors under other names are rejected
        "indexes_declared": bool(vector_indexes),
        "created_at": now,
        "updated_at": now,
    }
    try:
        await db.collections.insert_one(dict(doc))
    except DuplicateKeyError:
        raise Conflict(f"collection_name: '{name}' already exists", code="collection_exists") from None
    return doc


async def find(db: Database, *, ns: str, ident: str) -> dict[str, Any] | None:
    doc = await db.collections.find_one({"namespace_id": ns, "collection_id": ident}, _PROJ)
    if doc is None:
        doc = await db.collections.find_one({"namespace_id": ns, "collection_name": ident}, _PROJ)
    return doc  # type: ignore[no-any-return]


async def get_or_raise(db: Database, *, ns: str, ident: str, field: str = "collection") -> dict[str, Any]:
    doc = await find(db, ns=ns, ident=ident)
    if doc is None:
        raise NotFound(f"{field}: collection '{ident}' not found")
    return doc


async def resolve_many(db: Database, *, ns: str, idents: list[str], field: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, ident in enumerate(idents):
        doc = await get_or_raise(db, ns=ns, ident=ident, field=f"{field}[{i}]")
        if doc["collection_id"] not in seen:
            seen.add(doc["collection_id"])
            out.append(doc)
    return out


async def list_page(db: Database, *, ns: str, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    q = {"namespace_id": ns}
    total = await db.collections.count_documents(q)
    cursor = db.collections.find(q, _PROJ).sort("created_at", -1).skip(offset).limit(limit)
    return [d async for d in cursor], total


_INDEX_CAS_TRIES = 20


def dimensions_of(collection: dict[str, Any]) -> dict[str, int]:
    return {ix["name"]: int(ix["dimensions"]) for ix in collection.get("vector_indexes", [])}


async def add_vector_indexes(db: Database, *, collection: dict[str, Any], new: dict[str, int]) -> None:
    """Index vector names first seen in a write; a concurrent writer that fixed another
    dimension for the same name wins, and this write is rejected."""
    ns, cid = collection["namespace_id"], collection["collection_id"]
    # a revision compare-and-set over the whole array rather than `$push` guarded by
    # `vector_indexes.name: {$ne}`: nx-27017 (the cross-process test server) never matches that guard
    for _ in range(_INDEX_CAS_TRIES):
        fresh = await get_or_raise(db, ns=ns, ident=cid)
        missing = {n: d for n, d in new.items() if n not in dimensions_of(fresh)}
        if not missing:
            break
        rev = int(fresh.get("vector_indexes_rev") or 0)
        added = [
            {"name": n, "dimensions": d, "feature_uri": default_feature_uri(n)} for n, d in missing.items()
        ]
        done = await db.collections.update_one(
            {"namespace_id": ns, "collection_id": cid, "vector_indexes_rev": rev or {"$exists": False}},
            {
                "$set": {
                    "vector_indexes": [*fresh.get("vector_indexes", []), *added],
                    "vector_indexes_rev": rev + 1,
                    "updated_at": utcnow(),
                }
            },
        )
        if done.modified_count:
            break
    fresh = await get_or_raise(db, ns=ns, ident=cid)
    known = dimensions_of(fresh)
    for name, dims in new.items():
        if known.get(name) != dims:
            raise ValidationFailed(
                f"vectors.{name}: expected {known.get(name)} dimensions, got {dims} "
                "(index created concurrently)"
            )


async def delete(db: Database, *, ns: str, collection_id: str) -> None:
    await db.collections.delete_one({"namespace_id": ns, "collection_id": collection_id})
