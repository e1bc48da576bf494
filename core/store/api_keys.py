"""API keys: stored as HMAC-SHA256(pepper, key), never the key itself."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from pymongo.errors import DuplicateKeyError

from core.ids import new_key_id
from core.store.db import Database
from core.timeutil import utcnow

ALL_NAMESPACES = "*"
_PUBLIC = {"_id": 0, "key_hash": 0}


def hash_key(key: str, pepper: bytes) -> str:
    return hmac.new(pepper, key.encode(), hashlib.sha256).hexdigest()


def generate_key() -> str:
    return "cd_" + secrets.token_urlsafe(32)


async def create(
    db: Database, *, pepper: bytes, name: str, namespaces: list[str], admin: bool, key: str | None = None
) -> tuple[dict[str, Any], str]:
    """Store a key; returns (public record, the key in clear, shown once)."""
    key = key or generate_key()
    doc = {
        "key_id": new_key_id(),
        "key_hash": hash_key(key, pepper),
        "name": name,
        "namespaces": namespaces,
        "admin": admin,
        "revoked": False,
        "created_at": utcnow(),
    }
    await db.api_keys.insert_one(dict(doc))
    doc.pop("key_hash")
    return doc, key


async def authenticate(db: Database, *, pepper: bytes, key: str) -> dict[str, Any] | None:
    digest = hash_key(key, pepper)
    doc = await db.api_keys.find_one({"key_hash": digest, "revoked": False}, {"_id": 0})
    # the index lookup already matched; compare_digest keeps the final check constant-time
    if doc is None or not hmac.compare_digest(doc["key_hash"], digest):
        return None
    return doc  # type: ignore[no-any-return]


async def ensure_bootstrap(db: Database, *, pepper: bytes, keys: list[str]) -> str | None:
    """Register the CLUSTERD_API_KEYS admin keys; when no usable admin key exists at all,
    create one and return it (the caller prints it once)."""
    for i, key in enumerate(keys):
        digest = hash_key(key, pepper)
        if await db.api_keys.find_one({"key_hash": digest}) is None:
            try:
                await create(
                    db,
                    pepper=pepper,
                    name=f"bootstrap-{i + 1}",
                    namespaces=[ALL_NAMESPACES],
                    admin=True,
                    key=key,
                )
            except DuplicateKeyError:  # another replica registered it at the same moment
                pass
    if await db.api_keys.count_documents({"admin": True, "revoked": False}) == 0:
        _, key = await create(
            db, pepper=pepper, name="generated-admin", namespaces=[ALL_NAMESPACES], admin=True
        )
        return key
    return None


async def list_page(db: Database, *, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    total = await db.api_keys.count_documents({})
    cursor = db.api_keys.find({}, _PUBLIC).sort("created_at", -1).skip(offset).limit(limit)
    return [d async for d in cursor], total


async def get(db: Database, *, key_id: str) -> dict[str, Any] | None:
    return await db.api_keys.find_one({"key_id": key_id}, _PUBLIC)  # type: ignore[no-any-return]


async def revoke(db: Database, *, key_id: str) -> bool:
    res = await db.api_keys.update_one(
        {"key_id": key_id}, {"$set": {"revoked": True, "revoked_at": utcnow()}}
    )
    return bool(res.matched_count)


async def drop_namespace(db: Database, *, namespace_id: str) -> None:
    await db.api_keys.update_many({"namespaces": namespace_id}, {"$pull": {"namespaces": namespace_id}})
