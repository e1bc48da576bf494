"""The vector pull: the embedded store's bulk read (core.store.embedded) returns exactly what
mongomock's find returns — same documents, order, batches, skipped counts — on awkward data and a
few hundred filters; and the worker's `_pull` + `Pulled.arrange` keep run order, index_gap and
skipped counts right across collections, growth after the count, filters and sampling."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from core.filters import DOCUMENT_SCHEMA, compile_filter
from core.store import collections, documents, embedded
from core.store.db import connect, ensure_indexes
from core.vectors import encode
from tests import nx_mongo
from tests.integration.test_filters_mongo import RECORDS, SCHEMA, some_node
from worker.runtime import Runtime
from worker.stages import sample_indices
from worker.vector_run import _pull

pytestmark = pytest.mark.integration

D = 4
WIDTH = D * 4
NS = ("ns_a", "ns_b")
COLS = ("col_1", "col_2", "col_3")
PREFIXES = ["", "a", "A", "b", "é", "Z", "😀", "a b", "10", "9", "a\u0301", "ａ"]


def vec(i: int) -> np.ndarray:
    return np.arange(i * D, (i + 1) * D, dtype=np.float32)


def awkward_vectors(i: int) -> Any:
    """Every way a document can lack a usable `emb`, and the usable ones."""
    kind = i % 10
    if kind == 0:
        return "absent"
    return {
        1: {},
        2: {"other": encode(vec(i))},
        3: {"emb": encode(np.zeros(D + 1, np.float32))},  # another length: skipped
        4: {"emb": None},
        5: [{"emb": encode(vec(i))}],  # not an object
        6: {"emb": vec(i).tolist()},  # not bytes
    }.get(kind, {"emb": encode(vec(i)), "other": encode(vec(-i))})


def awkward_docs() -> list[dict[str, Any]]:
    out = []
    for i, r in enumerate(RECORDS):
        doc = dict(r)
        doc["namespace_id"] = NS[i % 7 == 0]
        doc["collection_id"] = COLS[i % 3]
        doc["document_id"] = f"{PREFIXES[i % len(PREFIXES)]}{i}"
        vectors = awkward_vectors(i)
        if vectors != "absent":
            doc["vectors"] = vectors
        out.append(doc)
    # scope values that are not strings go through mongomock's own matching
    out.append({"namespace_id": "ns_a", "collection_id": ["col_1", "col_x"], "document_id": "arr", "rid": -1})
    out[-1]["vectors"] = {"emb": encode(vec(-1))}
    out.append({"collection_id": "col_1", "document_id": "no-ns", "vectors": {"emb": encode(vec(-2))}})
    out.append({"namespace_id": 7, "collection_id": "col_1", "document_id": "int-ns", "rid": -3})
    return out


@pytest.fixture
async def db(make_settings: Any) -> Any:
    _, database = connect(make_settings())
    await ensure_indexes(database, embedded=True)
    return database


@pytest.fixture
async def awkward(db: Any) -> Any:
    await db.documents.insert_many(awkward_docs())
    return db


async def pull_all(db: Any, ns: str, cid: str, match: dict[str, Any] | None, batch: int = 7) -> list:
    return [
        b
        async for b in documents.iter_vector_batches(
            db, ns=ns, collection_id=cid, vector_name="emb", dimensions=D, batch_size=batch, match=match
        )
    ]


class Both:
    """Runs a read twice: through the embedded bulk read, and through mongomock's find."""

    def __init__(self, db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.db, self.mp = db, monkeypatch

    async def run(self, fn: Any) -> tuple[Any, Any]:
        assert embedded.store_of(self.db.documents) is not None  # the fast path is on
        fast = await fn()
        with self.mp.context() as m:
            m.setattr(embedded, "store_of", lambda _collection: None)
            slow = await fn()
        return fast, slow

    async def same(self, match: dict[str, Any] | None) -> int:
        """Both paths agree for every namespace, collection and a multi-collection count."""
        matched = 0
        for ns in NS:
            for cid in COLS:
                fast, slow = await self.run(lambda ns=ns, cid=cid: pull_all(self.db, ns, cid, match))
                assert fast == slow, f"ns={ns} cid={cid} match={match!r}"
                matched += sum(len(ids) for ids, _, _ in fast)
            for cids in (["col_1", "col_3"], ["col_2", "col_2"], [], list(COLS)):
                fast, slow = await self.run(
                    lambda ns=ns, cids=cids: documents.count_matching(
                        self.db, ns=ns, collection_ids=cids, match=match
                    )
                )
                assert fast == slow, f"count ns={ns} cids={cids} match={match!r}"
                one_read = documents.embedded_scope(self.db, ns=ns, collection_ids=cids, match=match)
                assert one_read is not None and one_read[0] == slow, f"embedded_scope ns={ns} cids={cids}"
                for cid, docs in one_read[1].items():  # each collection's part, as the pull reads it
                    batches = await pull_all(self.db, ns, cid, match)
                    assert [d["document_id"] for d in docs] == [
                        d["document_id"]
                        for d in embedded.sort_ascending(
                            embedded.matching(
                                self.db.documents,
                                scope={"namespace_id": ns, "collection_id": cid},
                                match=match,
                            )
                            or [],
                            "document_id",
                        )
                    ]
                    assert sum(len(ids) + sk for ids, _, sk in batches) == len(docs)
            fast, slow = await self.run(lambda ns=ns: fields_all(self.db, ns, list(COLS), match))
            assert fast == slow, f"iter_fields ns={ns} match={match!r}"
        return matched


async def fields_all(db: Any, ns: str, cids: list[str], match: dict[str, Any] | None) -> list[Any]:
    """What an attribute run reads (documents.iter_fields), in order."""
    fields = documents.iter_fields(db, ns=ns, collection_ids=cids, batch_size=7, match=match)
    return [doc async for doc in fields]


async def test_embedded_detection(db: Any) -> None:
    assert embedded.store_of(db.documents) is not None
    assert embedded.store_of(object()) is None
    assert await embedded_matching_none(object()) is None


async def test_the_snapshot_keeps_the_store_order_through_deletes_and_replaces(db: Any) -> None:
    """embedded._snapshot reads the OrderedDict's underlying dict: the same order as its own walk."""
    docs = db.documents
    await docs.insert_many([{"_id": f"k{i}", "document_id": f"d{i}"} for i in range(20)])
    await docs.delete_one({"_id": "k3"})
    await docs.insert_one({"_id": "k3", "document_id": "back"})  # re-inserted: now last
    await docs.replace_one({"_id": "k5"}, {"document_id": "replaced"})  # keeps its place
    await docs.update_one({"_id": "k7"}, {"$set": {"document_id": "updated"}})
    await docs.delete_many({"_id": {"$in": ["k0", "k11"]}})
    store = embedded.store_of(docs)
    snapshot = [d["_id"] for d in embedded._snapshot(store)]
    assert snapshot == [d["_id"] for d in store._documents.values()]
    assert snapshot == [d["_id"] async for d in docs.find({})]


async def embedded_matching_none(collection: Any) -> Any:
    return embedded.matching(collection, scope={"namespace_id": "x"}, match=None)


async def test_unfiltered_pull_is_identical(awkward: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    both = Both(awkward, monkeypatch)
    assert await both.same(None) > 50
    batches = await pull_all(awkward, "ns_a", "col_1", None)
    ids = [i for b, _, _ in batches for i in b]
    assert ids == sorted(ids) and "arr" in ids and "no-ns" not in ids
    assert all(len(blob) == WIDTH for _, blobs, _ in batches for blob in blobs)
    skipped = sum(s for _, _, s in batches)
    docs = [d for d in awkward_docs() if d.get("namespace_id") == "ns_a" and "col_1" in d["collection_id"]]
    assert skipped == sum(not usable(d) for d in docs) > 0
    assert len(ids) == sum(usable(d) for d in docs) > 0


def usable(doc: dict[str, Any]) -> bool:
    v = doc.get("vectors")
    return isinstance(v, dict) and isinstance(v.get("emb"), bytes) and len(v["emb"]) == WIDTH


async def test_fixed_filters_are_identical(awkward: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    both = Both(awkward, monkeypatch)
    fixed = [
        {"field": "document_id", "operator": "starts_with", "value": "a"},
        {"field": "document_id", "operator": "gt", "value": "Z"},
        {"collection_id": "col_2"},  # ANDed with the collection's own scope
        {"field": "created_at", "operator": "lt", "value": "2025-01-15T10:00:00Z"},
        {"field": "metadata.team", "operator": "exists", "value": False},
        {"OR": [{"field": "metadata.score", "operator": "gte", "value": 4}, {"status": "failed"}]},
    ]
    for flt in fixed:
        await both.same(compile_filter(flt, schema=DOCUMENT_SCHEMA))


async def test_random_filter_trees_are_identical(awkward: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    both = Both(awkward, monkeypatch)
    rng = random.Random(6)
    some = 0
    for _ in range(80):
        some += bool(await both.same(compile_filter(some_node(rng), schema=SCHEMA)))
    assert some > 25  # most trees select something


async def test_sort_order_of_ids_that_are_not_strings(db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ids: list[Any] = [5, "b", None, 2.5, ["z", "a"], "a", [], True, "B", -1]
    await db.documents.insert_many(
        [
            {"namespace_id": "n", "collection_id": "c", "document_id": d, "vectors": {"emb": encode(vec(i))}}
            for i, d in enumerate(ids)
        ]
    )
    fast, slow = await Both(db, monkeypatch).run(lambda: pull_all(db, "n", "c", None, batch=3))
    assert fast == slow and sum(len(b) for b, _, _ in fast) == len(ids)


async def test_a_bad_filter_fails_alike(db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    async def attempt(bad: dict[str, Any]) -> type:
        try:
            await pull_all(db, "n", "c", bad)
        except Exception as exc:  # noqa: BLE001 - which one is the point
            return type(exc)
        return type(None)

    outcomes = []
    for fill in (
        [],
        [{"namespace_id": "n", "collection_id": "x"}],
        [{"namespace_id": "n", "collection_id": "c"}],
    ):
        if fill:
            await db.documents.insert_many(fill)
        for bad in ({"a": {"$nope": 1}}, {"$where": "1"}, {"a": {"$regex": 5}}):
            fast, slow = await Both(db, monkeypatch).run(lambda bad=bad: attempt(bad))
            assert fast is slow, (fill, bad)
            outcomes.append(fast)
    assert type(None) in outcomes and len(set(outcomes)) > 1  # some fail, some don't


# ---- the worker's pull -------------------------------------------------------------------------


class NoProgress:
    def __init__(self) -> None:
        self.fractions: list[float] = []

    async def checkpoint(self, stage: str, fraction: float) -> None:
        self.fractions.append(fraction)


@pytest.fixture
async def rt(make_settings: Any, db: Any) -> AsyncIterator[Runtime]:
    yield Runtime(make_settings(pull_batch_size=3), db, None, asyncio.get_running_loop())  # type: ignore[arg-type]


async def make_collection(db: Any, name: str, *, indexed: bool = True) -> str:
    ix = [{"name": "emb", "dimensions": D, "feature_uri": "mixpeek://direct@v1/emb"}] if indexed else []
    col = await collections.create(
        db, ns="ns", name=name, description=None, source={}, metadata={}, enabled=True, vector_indexes=ix
    )
    return str(col["collection_id"])


def value_of(cid: str, did: str) -> np.ndarray:
    rng = np.random.default_rng(abs(hash((cid, did))) % 2**32)
    return rng.standard_normal(D).astype(np.float32)


async def put(
    db: Any, cid: str, dids: list[str], *, bad: frozenset[str] | set[str] = frozenset(), tag: int = 0
) -> None:
    recs = []
    for did in dids:
        v = {} if did in bad else {"emb": value_of(cid, did)}
        recs.append(
            documents.to_record(
                ns="ns", collection_id=cid, document_id=did, fields={"metadata": {"t": tag}}, vectors=v
            )
        )
    await db.documents.insert_many(recs)


def run_of(cids: list[str], filters: Any = None) -> dict[str, Any]:
    return {
        "namespace_id": "ns",
        "config": {"collection_ids": cids, "feature_name": "emb", "filters": filters},
    }


def check_rows(X: np.ndarray, doc_ids: np.ndarray, col_ids: np.ndarray) -> None:
    keys = list(zip(doc_ids.tolist(), col_ids.tolist(), strict=True))
    assert keys == sorted(keys)  # ascending document_id, then collection
    assert X.shape == (len(keys), D) and X.flags.owndata
    for row, (did, cid) in zip(X, keys, strict=True):
        assert np.array_equal(row, value_of(cid, did)), (cid, did)


async def test_pull_orders_collections_and_counts_the_gap(rt: Runtime) -> None:
    db = rt.db
    c1, c2, c3 = [await make_collection(db, n, indexed=n != "c3") for n in ("c1", "c2", "c3")]
    await put(db, c1, [f"d{i:03d}" for i in range(0, 40, 2)], bad={"d004", "d010"})
    await put(db, c2, [f"d{i:03d}" for i in range(0, 40, 3)] + ["a-first", "zz-last"], bad={"d003"})
    # a vector of the wrong length: counted as skipped, not a broken matrix
    await db.documents.update_one(
        {"collection_id": c2, "document_id": "d009"}, {"$set": {"vectors.emb": b"\0" * (WIDTH - 4)}}
    )
    await put(db, c3, ["d001", "d002"])  # no `emb` index in this collection: all index gap
    progress = NoProgress()
    pulled = await _pull(rt, run_of([c2, c3, c1]), progress)  # type: ignore[arg-type]
    assert pulled.source_documents == 20 + 16 + 2
    assert pulled.skipped == 2 + 2
    retrieved = len(pulled.document_ids)
    assert retrieved == 20 + 16 - 4 and pulled.source_documents - retrieved == 6  # index_gap
    assert progress.fractions == sorted(progress.fractions) and progress.fractions[-1] <= 0.3
    X, doc_ids, col_ids, sampling = pulled.arrange(sample_size=None, cap=10**6, seed=42)
    assert sampling is None and pulled.rows is None and pulled.document_ids == []
    check_rows(X, doc_ids, col_ids)
    assert doc_ids[0] == "a-first" and doc_ids[-1] == "zz-last"
    assert list(doc_ids[1:3]) == ["d000", "d000"] and list(col_ids[1:3]) == sorted([c1, c2])


async def test_a_collection_deleted_before_the_pull_fails_the_run(rt: Runtime) -> None:
    from core.errors import RunDataError

    c1 = await make_collection(rt.db, "c1")
    await put(rt.db, c1, ["d001", "d002"])
    with pytest.raises(RunDataError, match="collection 'col_gone' no longer exists"):
        await _pull(rt, run_of([c1, "col_gone"]), NoProgress())  # type: ignore[arg-type]


async def test_pull_with_a_filter(rt: Runtime) -> None:
    c1 = await make_collection(rt.db, "c1")
    await put(rt.db, c1, [f"x{i}" for i in range(10)], tag=1)
    await put(rt.db, c1, [f"y{i}" for i in range(7)], tag=2, bad={"y0"})
    pulled = await _pull(rt, run_of([c1], {"metadata.t": 2}), NoProgress())  # type: ignore[arg-type]
    assert pulled.source_documents == 7 and pulled.skipped == 1
    X, doc_ids, col_ids, _ = pulled.arrange(sample_size=None, cap=10**6, seed=1)
    assert list(doc_ids) == [f"y{i}" for i in range(1, 7)]
    check_rows(X, doc_ids, col_ids)


async def test_documents_arriving_after_the_count_grow_the_matrix(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    c1, c2 = await make_collection(rt.db, "c1"), await make_collection(rt.db, "c2")
    await put(rt.db, c1, [f"d{i:02d}" for i in range(5)])
    await put(rt.db, c2, [f"d{i:02d}" for i in range(3)])
    real = documents.count_matching

    async def count_then_insert(db: Any, **kw: Any) -> int:
        n = await real(db, **kw)
        await put(db, c1, [f"late{i:02d}" for i in range(30)])  # written between count and pull
        return n

    monkeypatch.setattr(documents, "count_matching", count_then_insert)
    monkeypatch.setattr(documents, "embedded_scope", lambda *_a, **_k: None)  # MongoDB's shape
    pulled = await _pull(rt, run_of([c1, c2]), NoProgress())  # type: ignore[arg-type]
    assert pulled.source_documents == 8 and len(pulled.document_ids) == 38
    assert pulled.rows is not None and pulled.rows.capacity >= 38 > 8 + 3  # grew past count + headroom
    X, doc_ids, col_ids, _ = pulled.arrange(sample_size=None, cap=10**6, seed=1)
    assert X.shape == (38, D)
    check_rows(X, doc_ids, col_ids)


async def test_the_embedded_pull_reads_one_snapshot_for_count_and_rows(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Embedded, the count and the rows come from one read: documents written after it are in
    neither (the next run has them), and the count is exactly what was pulled."""
    c1, c2 = await make_collection(rt.db, "c1"), await make_collection(rt.db, "c2")
    await put(rt.db, c1, [f"d{i:02d}" for i in range(5)], bad={"d03"})
    await put(rt.db, c2, [f"d{i:02d}" for i in range(3)])
    real = documents.embedded_scope

    def read_then_insert(db: Any, **kw: Any) -> Any:
        out = real(db, **kw)
        late = [
            documents.to_record(ns="ns", collection_id=c1, document_id=f"late{i}", fields={}, vectors={})
            for i in range(4)
        ]
        embedded.upsert(embedded.writable_store(db.documents), late)
        return out

    monkeypatch.setattr(documents, "embedded_scope", read_then_insert)
    pulled = await _pull(rt, run_of([c1, c2]), NoProgress())  # type: ignore[arg-type]
    assert pulled.source_documents == 8 and len(pulled.document_ids) == 7 and pulled.skipped == 1
    assert await documents.count_matching(rt.db, ns="ns", collection_ids=[c1, c2]) == 12
    X, doc_ids, col_ids, _ = pulled.arrange(sample_size=None, cap=10**6, seed=1)
    check_rows(X, doc_ids, col_ids)


async def test_sampling_in_place_picks_the_same_rows_as_before(rt: Runtime) -> None:
    c1, c2 = await make_collection(rt.db, "c1"), await make_collection(rt.db, "c2")
    await put(rt.db, c1, [f"d{i:03d}" for i in range(0, 60)])
    await put(rt.db, c2, [f"d{i:03d}" for i in range(30, 90)])
    pulled = await _pull(rt, run_of([c2, c1]), NoProgress())  # type: ignore[arg-type]
    ids = list(zip(pulled.document_ids, pulled.collection_ids, strict=True))
    X, doc_ids, col_ids, sampling = pulled.arrange(sample_size=25, cap=10**6, seed=7)
    keep, expected = sample_indices(120, 25, 10**6, 7)
    assert sampling == expected and keep is not None
    assert list(zip(doc_ids.tolist(), col_ids.tolist(), strict=True)) == [sorted(ids)[k] for k in keep]
    check_rows(X, doc_ids, col_ids)
    capped = await _pull(rt, run_of([c1]), NoProgress())  # type: ignore[arg-type]
    X2, ids2, _, sampling2 = capped.arrange(sample_size=None, cap=10, seed=7)
    assert X2.shape == (10, D) and sampling2 is not None and sampling2["reason"] == "algorithm_cap"
    assert list(ids2) == sorted(ids2)


# ---- the plain find against a MongoDB wire server ------------------------------------------------


@pytest.mark.skipif(not nx_mongo.available(), reason="nx-27017 is not installed")
async def test_motor_find_path_agrees_with_the_embedded_read(
    db: Any, make_settings: Any, tmp_path: Any
) -> None:
    """The real-MongoDB path (a plain find with projection, sorted) over nx-27017 pulls what the
    embedded bulk read pulls from the same documents."""
    server = nx_mongo.NxServer(tmp_path / "nx").start()
    try:
        client, mongo = connect(make_settings(mongodb_url=server.url, secret_key="s" * 32))
        await ensure_indexes(mongo)
        assert embedded.store_of(mongo.documents) is None
        docs = [d for d in awkward_docs() if type(d.get("namespace_id")) is str]
        docs = [d for d in docs if type(d["collection_id"]) is str]
        await db.documents.insert_many([dict(d) for d in docs])
        await mongo.documents.insert_many([dict(d) for d in docs])
        for match in (None, {"metadata.team": {"$exists": True}}):
            for ns in NS:
                for cid in COLS:
                    assert await pull_all(mongo, ns, cid, match) == await pull_all(db, ns, cid, match)
                n = await documents.count_matching(mongo, ns=ns, collection_ids=list(COLS), match=match)
                assert n == await documents.count_matching(db, ns=ns, collection_ids=list(COLS), match=match)
        client.close()
    finally:
        server.stop()


async def test_member_fields_by_key_equal_the_plain_query(db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Labeling reads members by `_id` in the embedded store (record_id keys); a document stored
    under another id (written through the driver) or one deleted since the pull falls back to a
    pass over the collection, and the answer is what `$in` queries give."""
    from bson import ObjectId

    from core.store import labeling as label_store

    store = embedded.writable_store(db.documents)
    assert store is not None
    recs = documents.to_records(
        ns="ns_a",
        collection_id="col_1",
        document_ids=[f"m{i}" for i in range(40)],
        fields=[{"metadata": {"i": i}} for i in range(40)],
        vectors=[("emb", np.stack([vec(i) for i in range(40)]), None)],
    )
    embedded.upsert(store, recs)
    other = documents.to_record(ns="ns_a", collection_id="col_2", document_id="m3", fields={}, vectors={})
    embedded.upsert(store, [other])
    await db.documents.insert_one(
        {"_id": ObjectId(), "namespace_id": "ns_a", "collection_id": "col_1", "document_id": "legacy"}
    )

    def read(ids: list[str]) -> Any:
        return label_store.member_fields(
            db, ns="ns_a", collection_id="col_1", document_ids=ids, projection=None
        )

    def plain(found: dict[str, Any]) -> dict[str, Any]:  # the driver's projection: no _id / vectors
        return {k: {f: v for f, v in d.items() if f not in ("_id", "vectors")} for k, d in found.items()}

    both = Both(db, monkeypatch)
    for ids in (["m1", "m7", "m3"], ["m2", "legacy"], ["m5", "gone", "m6"], []):
        fast, slow = await both.run(lambda ids=ids: read(ids))
        assert plain(fast) == slow and set(fast) == set(ids) - {"gone"}
        assert all(d["collection_id"] == "col_1" for d in fast.values())
