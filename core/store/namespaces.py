"""Namespaces: every other record carries a `namespace_id`."""

from __future__ import annotations

from typing import Any

from pymongo.errors import DuplicateKeyError

from core.errors import Conflict, NotFound
from core.ids import NAMESPACE_ID_RE, new_namespace_id
from core.store.db import Database
from core.timeutil import utcnow

_PROJ = {"_id": 0}


async def create(db: Database, *, name: str) -> dict[str, Any]:
    doc = {"namespace_id": new_namespace_id(), "namespace_name": name, "created_at": utcnow()}
    try:
        await db.namespaces.insert_one(dict(doc))
    except DuplicateKeyError:
        raise Conflict(f"namespace_name: '{name}' is already taken", code="namespace_exists") from None
    return doc


async def find(db: Database, *, ident: str) -> dict[str, Any] | None:
    """Resolve an id, else a name. An ident not of the id format can only be a name: one query."""
    doc = None
    if NAMESPACE_ID_RE.match(ident):
        doc = await db.namespaces.find_one({"namespace_id": ident}, _PROJ)
    if doc is None:
        doc = await db.namespaces.find_one({"namespace_name": ident}, _PROJ)
    return doc  # type: ignore[no-any-return]


async def get_or_raise(db: Database, *, ident: str) -> dict[str, Any]:
    doc = await find(db, ident=ident)
    if doc is None:
        raise NotFound(f"namespace '{ident}' not found")
    return doc


async def get_or_create(db: Database, *, ident: str, create_missing: bool) -> dict[str, Any]:
    doc = await find(db, ident=ident)
    if doc is not None:
        return doc
    if not create_missing or NAMESPACE_ID_RE.match(ident):
        raise NotFound(f"X-Namespace: namespace '{ident}' not found")
    try:
        return await create(db, name=ident)
    except Conflict:  # created concurrently by another request
        return await get_or_raise(db, ident=ident)


async def list_page(db: Database, *, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    total = await db.namespaces.count_documents({})
    cursor = db.namespaces.find({}, _PROJ).sort("created_at", -1).skip(offset).limit(limit)
    return [d async for d in cursor], total


async def delete(db: Database, *, namespace_id: str) -> None:
    await db.namespaces.delete_one({"namespace_id": namespace_id})
