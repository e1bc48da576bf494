"""core.store.labeling on the embedded store and on a MongoDB wire server (nx-27017): member
fields read by id (with the labellers' projection) and the LLM label cache with its expiry."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.labeling import texts
from core.labeling.texts import InputMapping
from core.settings import Settings
from core.store import documents
from core.store import labeling as label_store
from core.store.db import connect, ensure_indexes
from core.timeutil import utcnow
from tests import nx_mongo

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not nx_mongo.available(), reason="nx-27017 is not installed"),
]


def records() -> list[dict[str, Any]]:
    return [
        documents.to_record(
            ns="ns_a",
            collection_id="col_a",
            document_id=f"d{i:03d}",
            fields={"title": f"title {i}", "metadata": {"body": f"body {i}", "n": i}},
            vectors={"emb": np.ones(4, np.float32)},
        )
        for i in range(30)
    ]


async def check(db: Any) -> None:
    await ensure_indexes(db)
    await documents.upsert_many(db, ns="ns_a", collection_id="col_a", records=records())
    maps = [InputMapping("t", "payload", "title"), InputMapping("b", "payload", "body")]
    got = await label_store.member_fields(
        db,
        ns="ns_a",
        collection_id="col_a",
        document_ids=["d003", "d017", "nope"],
        projection=texts.projection(maps),
    )
    assert sorted(got) == ["d003", "d017"]
    assert texts.mapped_inputs(got["d017"], maps) == [("t", "title 17", False), ("b", "body 17", False)]
    whole = await label_store.member_fields(
        db, ns="ns_a", collection_id="col_a", document_ids=[f"d{i:03d}" for i in range(30)], projection=None
    )
    assert len(whole) == 30  # (the embedded answer is the stored dicts, vectors included)
    assert [k for k, _ in texts.default_strings(whole["d005"])] == ["title", "metadata.body"]
    other = await label_store.member_fields(
        db, ns="ns_b", collection_id="col_a", document_ids=["d003"], projection=None
    )
    assert other == {}

    value = {"label": "Sport", "summary": "s", "keywords": ["goal"]}
    assert await label_store.cached_label(db, key="k1") is None
    await label_store.cache_label(db, ns="ns_a", key="k1", value=value, ttl_s=60)
    assert await label_store.cached_label(db, key="k1") == value
    await label_store.cache_label(db, ns="ns_a", key="k1", value={**value, "label": "Sports"}, ttl_s=60)
    assert (await label_store.cached_label(db, key="k1"))["label"] == "Sports"  # replaced, one record
    assert await db.llm_label_cache.count_documents({"key": "k1"}) == 1
    await db.llm_label_cache.update_one(
        {"key": "k1"}, {"$set": {"expires_at": utcnow() - timedelta(seconds=1)}}
    )
    assert await label_store.cached_label(db, key="k1") is None  # expired, whatever the TTL monitor did
    await label_store.delete_for_namespace(db, ns="ns_a")
    assert await db.llm_label_cache.count_documents({}) == 0


async def test_label_store_embedded_and_mongodb(tmp_path: Path) -> None:
    _, mock = connect(Settings(data_dir=tmp_path))
    await check(mock)
    with nx_mongo.nx_server(tmp_path / "nx") as nx:
        _, real = connect(Settings(data_dir=tmp_path, mongodb_url=nx.url, secret_key="x" * 20))
        assert not hasattr(real.documents, "_AsyncMongoMockCollection__collection")
        await check(real)
