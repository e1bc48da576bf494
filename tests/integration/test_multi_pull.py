"""The multi-feature pull (core.store.multi_vectors): the embedded bulk read and the plain find
(mongomock's, and a MongoDB wire server's when installed) yield the same aligned rows, and a
document is kept only with every wanted vector at its length."""

from __future__ import annotations

from typing import Any

import pytest

from core.store import embedded
from core.store.db import connect, ensure_indexes
from core.store.multi_vectors import iter_multi_vector_batches
from tests import nx_mongo
from tests.integration.test_pull import COLS, NS, WIDTH, Both, D, awkward_docs

pytestmark = pytest.mark.integration

NAMES = ("emb", "other")


@pytest.fixture
async def store(make_settings: Any) -> Any:
    _, database = connect(make_settings())
    await ensure_indexes(database, embedded=True)
    await database.documents.insert_many(awkward_docs())
    return database


async def pull_all(db: Any, ns: str, cid: str, match: dict[str, Any] | None, batch: int = 7) -> list:
    return [
        b
        async for b in iter_multi_vector_batches(
            db, ns=ns, collection_id=cid, vector_names=NAMES, dimensions=(D, D), batch_size=batch, match=match
        )
    ]


def usable(doc: dict[str, Any]) -> bool:
    v = doc.get("vectors")
    return isinstance(v, dict) and all(isinstance(v.get(n), bytes) and len(v[n]) == WIDTH for n in NAMES)


async def test_both_paths_agree_and_rows_align(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    both = Both(store, monkeypatch)
    kept = 0
    for match in (None, {"document_id": {"$gt": "Z"}}):
        for ns in NS:
            for cid in COLS:
                fast, slow = await both.run(lambda ns=ns, cid=cid: pull_all(store, ns, cid, match))
                assert fast == slow
                kept += sum(len(ids) for ids, _, _ in fast)
    assert kept > 0
    docs = {(d.get("namespace_id"), d["collection_id"], d["document_id"]): d for d in awkward_docs()
            if type(d.get("collection_id")) is str}  # fmt: skip
    batches = await pull_all(store, "ns_a", "col_1", None)
    ids = [i for b, _, _ in batches for i in b]
    assert ids == sorted(ids)
    expected = [k[2] for k, d in docs.items() if k[:2] == ("ns_a", "col_1") and usable(d)]
    assert sorted(ids) == sorted(expected) and ids
    for b_ids, blobs, _ in batches:  # blobs[f][r] is feature f of document r
        for r, doc_id in enumerate(b_ids):
            stored = docs[("ns_a", "col_1", doc_id)]["vectors"]
            assert [blobs[f][r] for f in range(len(NAMES))] == [stored[n] for n in NAMES]


@pytest.mark.skipif(not nx_mongo.available(), reason="nx-27017 is not installed")
async def test_motor_find_path_agrees(make_settings: Any, tmp_path: Any) -> None:
    _, local = connect(make_settings())
    await ensure_indexes(local, embedded=True)
    server = nx_mongo.NxServer(tmp_path / "nx").start()
    try:
        client, mongo = connect(make_settings(mongodb_url=server.url, secret_key="s" * 32))
        await ensure_indexes(mongo)
        assert embedded.store_of(mongo.documents) is None
        docs = [d for d in awkward_docs() if type(d.get("namespace_id")) is str]
        docs = [d for d in docs if type(d["collection_id"]) is str]
        await mongo.documents.insert_many([dict(d) for d in docs])
        await local.documents.insert_many([dict(d) for d in docs])
        for ns in NS:
            for cid in COLS:
                assert await pull_all(mongo, ns, cid, None) == await pull_all(local, ns, cid, None)
        client.close()
    finally:
        server.stop()
