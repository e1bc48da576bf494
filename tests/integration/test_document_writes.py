"""core.store.documents' write path on both stores.

- MongoDB (nx-27017 through motor, with the production indexes): insert-first `upsert_many` lets
  the `_id` / unique index refuse stored ids and replaces those, keeping `created_at`; a document
  written before `record_id` (an ObjectId `_id`) is replaced in place rather than duplicated;
  `insert_one` of a stored id is a Conflict.
- The embedded store: the direct write (core.store.embedded) stores exactly what mongomock's own
  `insert_one` stores, and replaces by `_id` the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bson import ObjectId

from core.errors import Conflict
from core.store import documents, embedded
from core.store.db import ensure_indexes
from tests import nx_mongo

pytestmark = pytest.mark.integration

NS, COL = "ns_writes0000", "col_writes0000"


def record(doc_id: str, x: float, *, now: datetime | None = None) -> dict[str, Any]:
    return documents.to_record(
        ns=NS,
        collection_id=COL,
        document_id=doc_id,
        fields={"metadata": {"x": x, "tags": ["a", "b"], "nested": {"k": 1}}, "source_type": "direct_upsert"},
        vectors={"emb": np.array([x, 1.0, -2.5], dtype=np.float32)},
        now=now,
    )


async def stored(db: Any) -> dict[str, dict[str, Any]]:
    return {d["document_id"]: d async for d in db.documents.find({"namespace_id": NS, "collection_id": COL})}


@pytest.fixture
async def mongo(tmp_path: Path) -> AsyncIterator[Any]:
    if not nx_mongo.available():
        pytest.skip("nx-27017 is not installed")
    from motor.motor_asyncio import AsyncIOMotorClient

    with nx_mongo.nx_server(tmp_path / "nx") as nx:
        client: Any = AsyncIOMotorClient(nx.url, tz_aware=True, uuidRepresentation="standard")
        db = client["writes"]
        await ensure_indexes(db)
        try:
            yield db
        finally:
            client.close()


async def test_upsert_many_on_mongodb_inserts_then_replaces(mongo: Any) -> None:
    db = mongo
    assert embedded.writable_store(db.documents) is None
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    # a document from before record_id: an ObjectId _id, found only by the unique index
    legacy = record("legacy", 0.5, now=t0)
    legacy["_id"] = ObjectId()
    await db.documents.insert_one(dict(legacy))
    assert await documents.upsert_many(db, ns=NS, collection_id=COL, records=[record("a", 1.0, now=t0)]) == 0

    t1 = t0 + timedelta(hours=1)
    batch = [record("a", 2.0, now=t1), record("legacy", 3.0, now=t1), record("b", 4.0, now=t1)]
    assert await documents.upsert_many(db, ns=NS, collection_id=COL, records=batch) == 2
    docs = await stored(db)
    assert sorted(docs) == ["a", "b", "legacy"]
    assert docs["a"]["_id"] == f"{NS}/{COL}/a" and docs["legacy"]["_id"] == legacy["_id"]
    for name, x in (("a", 2.0), ("legacy", 3.0), ("b", 4.0)):
        assert docs[name]["metadata"]["x"] == x
        assert np.array_equal(np.frombuffer(docs[name]["vectors"]["emb"], "<f4"), [x, 1.0, -2.5])
        assert docs[name]["updated_at"] == t1
    assert docs["a"]["created_at"] == t0 and docs["legacy"]["created_at"] == t0
    assert docs["b"]["created_at"] == t1

    with pytest.raises(Conflict):
        await documents.insert_one(db, record("b", 5.0))
    with pytest.raises(Conflict):
        await documents.insert_one(db, record("legacy", 5.0))
    assert len(await stored(db)) == 3


async def test_the_embedded_write_stores_what_mongomock_would() -> None:
    from mongomock_motor import AsyncMongoMockClient

    db: Any = AsyncMongoMockClient()["writes"]
    await ensure_indexes(db, embedded=True)
    memory = embedded.writable_store(db.documents)
    assert memory is not None
    now = datetime(2025, 1, 1, 12, 30, 15, 123456, tzinfo=UTC)
    await db.documents.insert_one(record("through-mongomock", 1.0, now=now))
    assert (
        await documents.upsert_many(db, ns=NS, collection_id=COL, records=[record("direct", 1.0, now=now)])
        == 0
    )
    docs = await stored(db)
    a, b = docs["through-mongomock"], docs["direct"]
    assert a.pop("_id") == f"{NS}/{COL}/through-mongomock" and b.pop("_id") == f"{NS}/{COL}/direct"
    assert a.pop("document_id") == "through-mongomock" and b.pop("document_id") == "direct"
    assert a == b
    assert a["created_at"] == datetime(2025, 1, 1, 12, 30, 15, 123000)  # naive UTC, milliseconds
    assert list(a) == list(b)
    # filters see it like any other document
    n = await db.documents.count_documents(
        {"metadata.x": 1.0, "metadata.tags": "b", "created_at": {"$lt": now}}
    )
    assert n == 0
    assert await db.documents.count_documents({"metadata.x": 1.0, "metadata.tags": "b"}) == 2

    later = now + timedelta(days=1)
    batch = [
        record("direct", 7.0, now=later),
        record("through-mongomock", 8.0, now=later),
        record("new", 9.0),
    ]
    assert await documents.upsert_many(db, ns=NS, collection_id=COL, records=batch) == 2
    docs = await stored(db)
    assert sorted(docs) == ["direct", "new", "through-mongomock"]
    assert docs["direct"]["metadata"]["x"] == 7.0 and docs["through-mongomock"]["metadata"]["x"] == 8.0
    assert docs["direct"]["created_at"] == a["created_at"]  # kept
    assert docs["direct"]["updated_at"] == datetime(2025, 1, 2, 12, 30, 15, 123000)
    with pytest.raises(Conflict):
        await documents.insert_one(db, record("new", 1.0))


async def test_a_unique_index_sends_the_embedded_store_through_mongomock() -> None:
    from mongomock_motor import AsyncMongoMockClient

    db: Any = AsyncMongoMockClient()["writes"]
    await ensure_indexes(db)  # the production indexes, unique (namespace, collection, document_id)
    assert embedded.writable_store(db.documents) is None
    assert await documents.upsert_many(db, ns=NS, collection_id=COL, records=[record("a", 1.0)]) == 0
    assert (
        await documents.upsert_many(
            db, ns=NS, collection_id=COL, records=[record("a", 2.0), record("b", 1.0)]
        )
        == 1
    )
    docs = await stored(db)
    assert sorted(docs) == ["a", "b"] and docs["a"]["metadata"]["x"] == 2.0


async def test_embedded_delete_and_absence_check_agree_with_mongomock() -> None:
    """delete_collection and ensure_absent take the embedded shortcuts (mongomock's delete_many
    re-scans per document); the store ends as mongomock's own delete_many leaves it."""
    from mongomock_motor import AsyncMongoMockClient

    async def filled() -> Any:
        db: Any = AsyncMongoMockClient()["writes"]
        await ensure_indexes(db, embedded=True)
        for ns in (NS, "ns_other"):
            for col in (COL, "col_other"):
                recs = [
                    documents.to_record(ns=ns, collection_id=col, document_id=f"d{i}", fields={}, vectors={})
                    for i in range(30)
                ]
                await documents.upsert_many(db, ns=ns, collection_id=col, records=recs)
        return db

    fast, slow = await filled(), await filled()
    assert embedded.writable_store(fast.documents) is not None
    assert await documents.delete_collection(fast, ns=NS, collection_id=COL) == 30
    assert (await slow.documents.delete_many({"namespace_id": NS, "collection_id": COL})).deleted_count == 30
    left = [sorted([d["_id"] async for d in db.documents.find({})]) for db in (fast, slow)]
    assert left[0] == left[1] and len(left[0]) == 90
    await documents.ensure_absent(fast, ns=NS, collection_id=COL, document_id="d1")  # deleted: absent
    with pytest.raises(Conflict, match="already exists"):
        await documents.ensure_absent(fast, ns=NS, collection_id="col_other", document_id="d1")
