"""core.store.pull_refresh: after a write, the kept matrix brought up to date with the documents
written equals what a fresh pull and pipeline make of the store, and the run on it gives the
same results as a run that read the whole store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from core.store import embedded, pull_cache, pull_refresh
from tests.conftest import Api, blobs
from tests.integration.test_pull_cache import _cache, _members

RUN_FIELDS = ("metrics", "num_clusters", "num_points", "source_documents", "vectors_retrieved", "index_gap")


def _entry(api: Api) -> pull_cache.Prepared:
    cache = _cache(api)
    (entry,) = cache._entries.values()
    return entry


def _doc_like(entry: pull_cache.Prepared, ns: str, col: str, key: str) -> dict[str, Any]:
    """A stored document of the scope under `_id` `key` with the first row's vector."""
    blob = np.asarray(entry.matrix[0], dtype=np.float32).tobytes()
    return {
        "_id": key,
        "namespace_id": ns,
        "collection_id": col,
        "document_id": key,
        "vectors": {"emb": blob},
    }


def _vec(direction: int, scale: float = 10.0) -> list[float]:
    v = np.zeros(8, np.float32)
    v[direction] = scale
    return v.tolist()


async def _refreshed_equals_fresh(
    api: Api, cluster: str, write: Callable[[], Awaitable[Any]]
) -> pull_cache.Prepared:
    """Run, write, run again (on the refreshed matrix), then run once more with nothing kept:
    the two matrices and the two runs must be equal."""
    cache = _cache(api)
    assert (await api.execute(cluster))["status"] == "completed" and len(cache) == 1
    refreshes = cache.refreshes
    await write()
    refreshed_run = await api.execute(cluster)
    assert refreshed_run["status"] == "completed", refreshed_run
    assert cache.refreshes == refreshes + 1
    refreshed = _entry(api)
    cache.clear()
    fresh_run = await api.execute(cluster)
    assert fresh_run["status"] == "completed" and cache.refreshes == refreshes + 1
    fresh = _entry(api)
    assert np.array_equal(refreshed.matrix, fresh.matrix)
    assert refreshed.matrix.dtype == fresh.matrix.dtype and not refreshed.matrix.flags.writeable
    for name in ("document_ids", "collection_ids", "keys"):
        assert getattr(refreshed, name).tolist() == getattr(fresh, name).tolist(), name
    assert refreshed.source_documents == fresh.source_documents
    assert sorted(refreshed.gap or ()) == sorted(fresh.gap or ())
    for name in RUN_FIELDS:
        assert refreshed_run.get(name) == fresh_run.get(name), name
    assert _members(api, refreshed_run) == _members(api, fresh_run)
    return refreshed


@pytest.mark.parametrize("normalize", [True, False])
async def test_an_edited_document_is_rewritten_in_place(api: Api, normalize: bool) -> None:
    col, _ = await api.make_collection(X=blobs(n_per=40, dims=8, centers=3))
    cluster = await api.make_cluster(col, vector_config={"normalize_features": normalize})
    before: list[np.ndarray] = []

    async def move() -> None:
        before.append(_entry(api).matrix)
        await api.upsert(col, [{"document_id": "d00000", "vectors": {"emb": _vec(1)}, "metadata": {"i": 0}}])

    entry = await _refreshed_equals_fresh(api, cluster, move)
    assert entry.matrix is before[0]  # rewritten in place: no run was using it
    assert entry.source_documents == 120


async def test_the_refresh_writes_in_place_only_when_no_run_uses_the_matrix(api: Api) -> None:
    col, _ = await api.make_collection(X=blobs(n_per=40, dims=8, centers=3))
    cluster = await api.make_cluster(col)
    assert (await api.execute(cluster))["status"] == "completed"
    cache, entry = _cache(api), _entry(api)
    await api.upsert(col, [{"document_id": "d00001", "vectors": {"emb": _vec(2)}}])
    run = await api.execute(cluster)
    assert run["status"] == "completed" and cache.refreshes == 1
    assert _entry(api).matrix is entry.matrix  # nobody held it: rewritten in place
    assert not entry.matrix.flags.writeable

    # lent to a run: a new matrix, the lent one untouched
    held = cache.get(next(iter(cache._entries)), _entry(api).version, lend=True)
    assert held is not None
    snapshot = held.matrix.copy()
    await api.upsert(col, [{"document_id": "d00002", "vectors": {"emb": _vec(0)}}])
    assert (await api.execute(cluster))["status"] == "completed" and cache.refreshes == 2
    assert _entry(api).matrix is not held.matrix and np.array_equal(held.matrix, snapshot)
    cache.release(held)


async def test_new_and_deleted_documents_are_merged_in_order(api: Api) -> None:
    col, _ = await api.make_collection(X=blobs(n_per=40, dims=8, centers=3))
    cluster = await api.make_cluster(col)

    async def change() -> None:
        await api.upsert(
            col,
            [
                {"document_id": "a-first", "vectors": {"emb": _vec(0)}},  # sorts before every d
                {"document_id": "d00040x", "vectors": {"emb": _vec(1)}},  # between d00040 and d00041
                {"document_id": "z-last", "vectors": {"emb": _vec(2)}},
                {"document_id": "no-vector", "metadata": {"i": -1}},  # counted, no row: index gap
            ],
        )
        for doc in ("d00003", "d00077"):
            r = await api.client.delete(f"/v1/collections/{col}/documents/{doc}", headers=api.h())
            assert r.status_code == 200, r.text

    entry = await _refreshed_equals_fresh(api, cluster, change)
    ids = entry.document_ids.tolist()
    assert ids[0] == "a-first" and ids[-1] == "z-last" and "d00003" not in ids
    assert ids.index("d00040x") == ids.index("d00040") + 1
    assert entry.source_documents == 120 + 4 - 2 and len(ids) == 120 + 3 - 2


async def test_a_document_leaving_the_filter_leaves_the_matrix(api: Api) -> None:
    col, _ = await api.make_collection(X=blobs(n_per=40, dims=8, centers=3))
    cluster = await api.make_cluster(col, filters={"field": "metadata.i", "operator": "lt", "value": 100})

    async def change() -> None:
        await api.upsert(
            col,
            [
                {"document_id": "d00005", "vectors": {"emb": _vec(0)}, "metadata": {"i": 500}},  # leaves
                {"document_id": "d00110", "vectors": {"emb": _vec(1)}, "metadata": {"i": 7}},  # enters
            ],
        )

    entry = await _refreshed_equals_fresh(api, cluster, change)
    assert "d00005" not in entry.document_ids.tolist() and "d00110" in entry.document_ids.tolist()
    assert entry.source_documents == 100


async def test_several_collections(api: Api) -> None:
    a, _ = await api.make_collection("col-a", X=blobs(n_per=20, dims=8, centers=3, seed=1))
    b, _ = await api.make_collection("col-b", X=blobs(n_per=20, dims=8, centers=3, seed=2))
    body = {
        "collection_ids": [a, b],
        "vector_config": {
            "clustering_method": "kmeans",
            "feature_uris": ["emb"],
            "algorithm_params": {"n_clusters": 3},
        },
    }
    r = await api.client.post("/v1/clusters", json=body, headers=api.h())
    assert r.status_code == 200, r.text
    cluster = r.json()["cluster_id"]

    async def change() -> None:
        await api.upsert(b, [{"document_id": "d00010x", "vectors": {"emb": _vec(2)}}])
        await api.upsert(a, [{"document_id": "d00010", "vectors": {"emb": _vec(1)}}])

    entry = await _refreshed_equals_fresh(api, cluster, change)
    pairs = list(zip(entry.document_ids.tolist(), entry.collection_ids.tolist(), strict=True))
    assert pairs == sorted(pairs) and len(pairs) == 121


async def test_a_non_finite_vector_fails_the_run_as_a_pull_would(api: Api) -> None:
    col, _ = await api.make_collection(X=blobs(n_per=40, dims=8, centers=3))
    cluster = await api.make_cluster(col)
    assert (await api.execute(cluster))["status"] == "completed"
    bad = np.full(8, np.nan, np.float32).tobytes()  # the API refuses NaN: written to the store directly
    docs = api.app.state.services.db.documents
    await docs.update_one({"document_id": "d00004"}, {"$set": {"vectors.emb": bad}})
    run = await api.execute(cluster)
    assert run["status"] == "failed" and run["failure_category"] == "validation", run
    assert "NaN or infinite values (1 of 120 points)" in run["error_message"]
    assert _cache(api).refreshes == 0


async def test_refresh_gives_up_on_what_the_pull_must_judge(api: Api) -> None:
    col, _ = await api.make_collection(X=blobs(n_per=40, dims=8, centers=3))
    cluster = await api.make_cluster(col)
    assert (await api.execute(cluster))["status"] == "completed"
    cache, entry = _cache(api), _entry(api)
    docs = api.app.state.services.db.documents
    parts = [pull_refresh.Part(col, "emb", 8)]
    ns = entry.keys[0].split("/")[0]  # type: ignore[index]
    version = embedded.version(docs)
    assert version is not None

    def attempt() -> pull_cache.Prepared | None:
        now = embedded.version(docs)
        assert now is not None
        return pull_refresh.refresh(
            docs, entry, ns=ns, parts=parts, match={}, normalize=True, version=now, in_place=False
        )

    assert attempt() is not None  # nothing changed: the same rows
    twins = [{**_doc_like(entry, ns, col, f"twin-{i}"), "document_id": "d-twin"} for i in range(2)]
    await docs.insert_many(twins)
    assert attempt() is None  # two stored documents would make one (document_id, collection) row
    await docs.delete_many({"document_id": "d-twin"})
    await docs.update_one({"document_id": "d00006"}, {"$set": {"collection_id": [col, "other"]}})
    assert attempt() is None  # an array where the scope looks: mongomock's slow path
    await docs.update_one({"document_id": "d00006"}, {"$set": {"collection_id": col}})
    await docs.update_many({}, {"$set": {"touched": 1}})
    assert attempt() is None  # every document changed: a pull is as cheap
    assert cache.refreshes == 0


def test_row_index_lists_every_row_of_a_key() -> None:
    """A key owns one row, several (a document in several collections of the scope), or none."""
    index = pull_refresh.RowIndex(["a", "b", "a", "c", "a"])
    assert index.rows("a") == [0, 2, 4] and index.rows("b") == [1] and index.rows("c") == [3]
    assert index.rows("z") == [] and "a" in index and "z" not in index
    assert pull_refresh.RowIndex([]).rows("a") == []
