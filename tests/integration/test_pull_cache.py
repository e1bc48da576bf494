"""core.store.pull_cache: a run's fitted matrix serves the next run of the same scope as kept
while nothing was written to the embedded store, and every mongomock write path counts and names
the documents it wrote (what core.store.pull_refresh brings the matrix up to date with)."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from pymongo import DeleteOne, InsertOne

from core.settings import Settings
from core.store import documents, embedded, pull_cache
from core.store.db import connect
from tests.conftest import ADMIN_KEY, Api, blobs, serve_asgi

# --------------------------------------------------------------------------- write counting


def _record(i: int, vec: np.ndarray | None = None) -> dict[str, Any]:
    v = np.full(4, float(i), np.float32) if vec is None else vec
    return documents.to_record(
        ns="ns", collection_id="c", document_id=f"d{i:03d}", fields={}, vectors={"emb": v}
    )


def _ids(*numbers: int) -> set[str]:
    return {f"ns/c/d{i:03d}" for i in numbers}


# each write, and the _ids embedded.changes_since must name for it (None: unknown, a drop)
WRITES: dict[str, tuple[Callable[[Any], Awaitable[Any]], set[str] | None]] = {
    "insert_one": (lambda c: c.insert_one(_record(100)), _ids(100)),
    "insert_many": (lambda c: c.insert_many([_record(101), _record(102)]), _ids(101, 102)),
    "update_one (in place)": (
        lambda c: c.update_one({"document_id": "d001"}, {"$set": {"vectors.emb": b"\0" * 16}}),
        _ids(1),
    ),
    "update_one (upsert)": (
        lambda c: c.update_one({"_id": "ns/c/d104"}, {"$set": {"fields.z": 1}}, upsert=True),
        {"ns/c/d104"},
    ),
    "update_many": (lambda c: c.update_many({}, {"$set": {"fields.x": 1}}), _ids(*range(20))),
    "replace_one": (
        lambda c: c.replace_one({"document_id": "d002"}, _record(2, np.zeros(4, np.float32))),
        _ids(2),
    ),
    "find_one_and_update": (
        lambda c: c.find_one_and_update({"document_id": "d003"}, {"$set": {"fields.y": 2}}),
        _ids(3),
    ),
    "find_one_and_replace": (lambda c: c.find_one_and_replace({"document_id": "d004"}, _record(4)), _ids(4)),
    "find_one_and_delete": (lambda c: c.find_one_and_delete({"document_id": "d005"}), _ids(5)),
    "delete_one": (lambda c: c.delete_one({"document_id": "d006"}), _ids(6)),
    "delete_many": (lambda c: c.delete_many({"document_id": {"$in": ["d007", "d008"]}}), _ids(7, 8)),
    # (bulk UpdateOne / ReplaceOne fail in this mongomock with this pymongo: they pass `sort`)
    "bulk_write insert": (lambda c: c.bulk_write([InsertOne(_record(103))]), _ids(103)),
    "bulk_write delete": (lambda c: c.bulk_write([DeleteOne({"document_id": "d011"})]), _ids(11)),
    "drop": (lambda c: c.drop(), None),
}


async def _filled(tmp_path: Path) -> Any:
    _, db = connect(Settings(api_keys=[ADMIN_KEY], data_dir=tmp_path))
    await db.documents.insert_many([_record(i) for i in range(20)])
    return db


@pytest.mark.parametrize("write", list(WRITES))
async def test_every_mongomock_write_path_counts(tmp_path: Path, write: str) -> None:
    db = await _filled(tmp_path)
    before = embedded.version(db.documents)
    assert before is not None
    do, written = WRITES[write]
    await do(db.documents)
    assert embedded.version(db.documents) > before  # type: ignore[operator]
    changed = embedded.changes_since(db.documents, before)
    # every id it wrote is named (a few paths also name a document they only looked at)
    assert changed is None if written is None else changed is not None and written <= changed
    if written is not None:
        assert changed is not None and len(changed) <= len(written) + 1
        assert embedded.changes_since(db.documents, embedded.version(db.documents) or 0) == set()


async def test_reads_do_not_count_and_direct_writes_do(tmp_path: Path) -> None:
    db = await _filled(tmp_path)
    before = embedded.version(db.documents)
    await db.documents.find_one({"document_id": "d001"})
    await db.documents.count_documents({})
    [d async for d in db.documents.find({})]
    await db.documents.aggregate([{"$match": {}}]).to_list(None)
    embedded.in_id_order(db.documents, scope={"namespace_id": "ns", "collection_id": "c"}, match=None)
    assert embedded.version(db.documents) == before

    store = embedded.writable_store(db.documents)
    embedded.upsert(store, [_record(1, np.zeros(4, np.float32))])  # the API's document write path
    after_upsert = embedded.version(db.documents)
    assert after_upsert > before  # type: ignore[operator]
    assert embedded.changes_since(db.documents, before) == _ids(1)  # type: ignore[arg-type]
    assert embedded.delete_matching(db.documents, scope={"namespace_id": "ns", "collection_id": "c"}) == 20
    assert embedded.version(db.documents) > after_upsert  # type: ignore[operator]
    assert embedded.changes_since(db.documents, after_upsert) == _ids(*range(20))  # type: ignore[arg-type]


async def test_the_change_log_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = await _filled(tmp_path)
    monkeypatch.setattr(embedded, "LOG_KEYS", 5)
    start = embedded.version(db.documents)
    assert start is not None
    for i in range(4):
        pair = [f"d{i:03d}", f"d{i + 10:03d}"]
        await db.documents.update_many({"document_id": {"$in": pair}}, {"$set": {"x": i}})
    assert embedded.changes_since(db.documents, start) is None  # 8 ids: the oldest went
    assert embedded.changes_since(db.documents, start + 2) == _ids(2, 12, 3, 13)
    assert embedded.changes_since(db.documents, start + 99) is None  # a count not reached yet


async def test_a_write_of_unknown_documents_drops_every_entry(tmp_path: Path) -> None:
    db = await _filled(tmp_path)
    cache = pull_cache.of(db.documents)
    assert cache is not None and pull_cache.of(db.documents) is cache
    v = embedded.version(db.documents)
    assert v is not None
    assert cache.put("k", _entry(v, 10), 1 << 20, v)
    assert cache.get("k", v) is not None
    await db.documents.update_one({"document_id": "d001"}, {"$set": {"fields.x": 1}})
    assert len(cache) == 1  # known ids: left to be brought up to date (core.store.pull_refresh)
    assert cache.get("k", v + 1) is None and len(cache) == 0  # a reader that cannot refresh drops it
    assert cache.put("k", _entry(v + 1, 10), 1 << 20, v + 1)
    await db.documents.drop()
    assert len(cache) == 0


# --------------------------------------------------------------------------- the cache itself


def _entry(version: int, n: int, d: int = 4) -> pull_cache.Prepared:
    ids = np.array([f"d{i}" for i in range(n)], dtype=object)
    return pull_cache.Prepared(version, n, ids, ids.copy(), np.ones((n, d), np.float32))


def test_lru_within_the_budget_and_versions() -> None:
    cache = pull_cache.PullCache()
    one = _entry(1, 100)  # 1,600 matrix bytes + 20,000 for the ids
    budget = int(one.nbytes * 2.5)
    assert cache.put("a", one, budget, 1) and cache.put("b", _entry(1, 100), budget, 1)
    assert cache.get("a", 1) is not None  # a is now the most recently used
    assert cache.put("c", _entry(1, 100), budget, 1)  # evicts b
    assert cache.get("b", 1) is None and cache.get("a", 1) is not None and cache.get("c", 1) is not None
    assert not one.matrix.flags.writeable  # kept entries are read-only
    assert not cache.put("big", _entry(1, 1000), budget, 1)  # never fits
    assert not cache.put("late", _entry(1, 10), budget, 2)  # the store was written since its read
    assert cache.get("late", 2) is None
    assert cache.get("a", 2) is None  # a newer write count: the entry is dropped
    assert cache.get("a", 1) is None
    assert (cache.hits, cache.misses) == (3, 4)


# --------------------------------------------------------------------------- runs


def _cache(api: Api) -> pull_cache.PullCache:
    cache = pull_cache.of(api.app.state.services.db.documents)
    assert cache is not None
    return cache


def _members(api: Api, run: dict[str, Any]) -> dict[str, Any]:
    table = pq.read_table(io.BytesIO(api.app.state.services.artifacts.get_bytes(run["members_key"])))
    rows = table.to_pydict()
    values = zip(rows["cluster_id"], rows["distance_to_centroid"], strict=True)
    return dict(zip(rows["document_id"], values, strict=True))


async def test_a_repeat_run_reuses_the_matrix_until_a_write(api: Api) -> None:
    X = blobs(n_per=40, dims=8, centers=3)
    col, _ = await api.make_collection(X=X)
    cluster = await api.make_cluster(col)
    first = await api.execute(cluster)
    cache = _cache(api)
    assert first["status"] == "completed" and len(cache) == 1
    hits = cache.hits
    second = await api.execute(cluster)
    assert second["status"] == "completed" and cache.hits == hits + 1
    for field in ("metrics", "num_clusters", "source_documents", "vectors_clustered", "index_gap"):
        assert second.get(field) == first.get(field), field
    assert _members(api, second) == _members(api, first)

    # another cluster of the same scope (another k, a sample) reuses it too
    sampled = await api.make_cluster(col, k=2)
    r = await api.client.post(f"/v1/clusters/{sampled}/execute", headers=api.h(), json={"sample_size": 60})
    assert r.status_code == 200, r.text
    run = await api.wait_run(sampled, r.json()["additional_data"]["run_id"])
    assert run["status"] == "completed" and cache.hits == hits + 2
    assert run["vectors_clustered"] == 60 and run["sampling"]["to"] == 60

    # move d00000 (cluster of direction 0) onto direction 1: the next run must see it there
    moved = np.zeros(8, np.float32)
    moved[1] = 10.0
    await api.upsert(col, [{"document_id": "d00000", "vectors": {"emb": moved.tolist()}}])
    third = await api.execute(cluster)
    # the kept matrix was brought up to date with that one document (core.store.pull_refresh)
    assert third["status"] == "completed" and cache.hits == hits + 3 and cache.refreshes == 1
    before, after = _members(api, first), _members(api, third)
    assert after["d00000"][0] == after["d00040"][0] != before["d00000"][0]
    assert sorted(c["num_members"] for c in third["centroids"]) == [39, 40, 41]


async def test_no_cache_when_turned_off(make_settings: Any) -> None:
    async with serve_asgi(make_settings(pull_cache_mb=0)) as api:
        col, _ = await api.make_collection()
        cluster = await api.make_cluster(col)
        for _ in range(2):
            assert (await api.execute(cluster))["status"] == "completed"
        assert len(_cache(api)) == 0 and _cache(api).hits == 0


ALGORITHMS: dict[str, dict[str, Any]] = {
    "kmeans": {"n_clusters": 3},
    "dbscan": {"eps": 0.5, "min_samples": 5},
    "hdbscan": {"min_cluster_size": 10},
    "optics": {"min_samples": 10},
    "agglomerative": {"n_clusters": 3},
    "spectral": {"n_clusters": 3, "random_state": 0},
    "gaussian_mixture": {"n_components": 3, "random_state": 0},
    "mean_shift": {"bandwidth": 0.9},
}


@pytest.mark.parametrize("normalize", [True, False])
async def test_every_algorithm_clusters_a_reused_matrix_alike(api: Api, normalize: bool) -> None:
    """A reused matrix is read-only: an algorithm that wrote to its input would fail here."""
    col, _ = await api.make_collection(X=blobs(n_per=30, dims=8, centers=3))
    cache = _cache(api)
    for method, params in ALGORITHMS.items():
        cluster = await api.make_cluster(
            col, method=method, params=params, vector_config={"normalize_features": normalize}
        )
        hits = cache.hits
        first, second = await api.execute(cluster), await api.execute(cluster)
        assert first["status"] == second["status"] == "completed", (method, first, second)
        assert cache.hits >= hits + 1, method
        assert second["metrics"] == first["metrics"], method
        assert _members(api, second) == _members(api, first), method
