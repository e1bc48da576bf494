"""Idempotency keys: one record per (namespace, key) holding the fingerprint of the request it
guarded and, once launched, the run it started.

A request claims a key by inserting its record (state `launching`, with a random `token`); the
unique (namespace_id, key) index makes exactly one concurrent request the owner. The owner then
records the run (`launched`) or, when launching failed, deletes the record so a retry may launch.
Every owner write is guarded by its token, so a request whose lease was taken over cannot touch
the new owner's record.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pymongo.errors import DuplicateKeyError

from core.store.db import Database
from core.timeutil import utcnow

LAUNCHING = "launching"
LAUNCHED = "launched"
_PROJ = {"_id": 0}


async def claim(
    db: Database, *, ns: str, key: str, fingerprint: str, token: str, ttl_s: int
) -> dict[str, Any] | None:
    """Insert the record as `launching`. None: this request now owns the key; otherwise the
    record that already holds it (which may have expired but not yet been purged)."""
    now = utcnow()
    doc = {
        "namespace_id": ns,
        "key": key,
        "fingerprint": fingerprint,
        "state": LAUNCHING,
        "token": token,
        "created_at": now,
        "claimed_at": now,
        "expires_at": now + timedelta(seconds=ttl_s),
    }
    try:
        await db.idempotency_keys.insert_one(doc)
    except DuplicateKeyError:
        return await find(db, ns=ns, key=key)
    return None


async def find(db: Database, *, ns: str, key: str) -> dict[str, Any] | None:
    return await db.idempotency_keys.find_one({"namespace_id": ns, "key": key}, _PROJ)  # type: ignore[no-any-return]


async def drop_expired(db: Database, *, ns: str, key: str) -> bool:
    """Delete the record if its time is up (the TTL monitor runs only once a minute)."""
    res = await db.idempotency_keys.delete_one(
        {"namespace_id": ns, "key": key, "expires_at": {"$lte": utcnow()}}
    )
    return bool(res.deleted_count)


async def take_over(db: Database, *, ns: str, key: str, token: str, claimed_before: datetime) -> bool:
    """CAS an abandoned `launching` record (its owner died mid-launch) to a new owner."""
    res = await db.idempotency_keys.update_one(
        {"namespace_id": ns, "key": key, "state": LAUNCHING, "claimed_at": {"$lte": claimed_before}},
        {"$set": {"token": token, "claimed_at": utcnow()}},
    )
    return bool(res.modified_count)


async def record_run(db: Database, *, ns: str, key: str, token: str, run_id: str, cluster_id: str) -> bool:
    """The owner's launch succeeded: later requests with this key replay `run_id`."""
    res = await db.idempotency_keys.update_one(
        {"namespace_id": ns, "key": key, "token": token, "state": LAUNCHING},
        {"$set": {"state": LAUNCHED, "run_id": run_id, "cluster_id": cluster_id}},
    )
    return bool(res.matched_count)


async def release(db: Database, *, ns: str, key: str, token: str) -> None:
    """The owner's launch failed: free the key so a retry can launch."""
    await db.idempotency_keys.delete_one({"namespace_id": ns, "key": key, "token": token, "state": LAUNCHING})


async def forget_run(db: Database, *, ns: str, key: str, run_id: str) -> None:
    """The recorded run no longer exists: the key is free again."""
    await db.idempotency_keys.delete_one({"namespace_id": ns, "key": key, "run_id": run_id})


async def delete_for_cluster(db: Database, *, ns: str, cluster_id: str) -> None:
    await db.idempotency_keys.delete_many({"namespace_id": ns, "cluster_id": cluster_id})


async def delete_for_namespace(db: Database, *, ns: str) -> None:
    await db.idempotency_keys.delete_many({"namespace_id": ns})
