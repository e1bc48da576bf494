"""The embedded store's shortcuts answer exactly what the plain queries answer: collection handles
kept per name, `$match`-first aggregations run as a find, list pages read in two steps; and the
id-or-name lookups of namespaces and clusters."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.errors import NotFound
from core.listing import SortKey, page_query
from core.settings import Settings
from core.store import clusters, executions, namespaces
from core.store.db import INDEXES, aggregate, connect, embedded, list_matches

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Any:
    return connect(Settings(data_dir=tmp_path))[1]


async def seed_runs(db: Any, n: int = 70) -> None:
    """Runs over two clusters of two namespaces; some fields missing, some null, some NaN-free
    floats, ties on created_at so the run_id tiebreak matters."""
    rng = random.Random(7)
    for i in range(n):
        doc: dict[str, Any] = {
            "run_id": f"run_{i:04d}",
            "namespace_id": "ns_a" if i % 5 else "ns_b",
            "cluster_id": "clust_x" if i % 3 else "clust_y",
            "status": rng.choice(["completed", "failed", "pending", "processing"]),
            "num_points": rng.randint(0, 500),
            "num_clusters": rng.randint(0, 9),
            "created_at": T0 + timedelta(seconds=i // 2),
            "centroids": [{"cluster_id": f"cl_{j}", "centroid_vector": b"\0" * 8} for j in range(3)],
            "error_traceback": "Traceback ..." if i % 4 == 0 else None,
        }
        if i % 7:
            doc["execution_time_ms"] = rng.randint(1, 900)
        if i % 6 == 0:
            doc["run_name"] = f"name-{rng.randint(0, 5)}"
        await db.cluster_executions.insert_one(doc)


async def plain_page(collection: Any, q: Any) -> list[dict[str, Any]]:
    """The page as MongoDB reads it: one query (what every non-embedded store runs)."""
    if q.pipeline is not None:
        return [d async for d in collection.aggregate(q.pipeline)]
    cursor = collection.find(q.match, q.projection).sort(q.sort).skip(q.skip).limit(q.limit)
    return [d async for d in cursor]


async def test_collection_handles_are_kept_per_name_and_see_the_same_data(db: Any) -> None:
    assert embedded(db.clusters)
    for name in INDEXES:
        assert getattr(db, name) is getattr(db, name)
    await db.clusters.insert_one({"cluster_id": "clust_1"})
    assert await db["clusters"].find_one({}, {"_id": 0}) == {"cluster_id": "clust_1"}


MATCHES = [
    {"namespace_id": "ns_a", "cluster_id": "clust_x"},
    {"namespace_id": "ns_a", "cluster_id": "clust_x", "status": {"$in": ["completed", "failed"]}},
    {"namespace_id": "ns_b"},
    {"namespace_id": "ns_none"},
]
SORTS = [
    [SortKey("created_at", True)],
    [SortKey("num_points", False)],
    [SortKey("execution_time_ms", False)],  # may be missing: the aggregation path
    [SortKey("run_name", True), SortKey("created_at", False)],
]
PROJECTIONS = [executions.LIST_PROJECTION, {}, {"run_id": 1, "status": 1, "created_at": 1}]


@pytest.mark.parametrize("match", MATCHES)
@pytest.mark.parametrize(
    "keys", SORTS, ids=lambda k: ",".join(f"{s.path}{'-' if s.descending else '+'}" for s in k)
)
async def test_list_pages_equal_the_plain_query(db: Any, match: dict[str, Any], keys: list[SortKey]) -> None:
    await seed_runs(db)
    before = [d async for d in db.cluster_executions.find({})]
    total_expected = await db.cluster_executions.count_documents(match)
    for projection in PROJECTIONS:
        for offset, limit in [(0, 5), (5, 5), (0, 1000), (12, 7), (40, 20)]:
            page, total = await list_matches(
                db.cluster_executions, match=match, keys=keys, tiebreak="run_id",
                always_present=executions.ALWAYS_PRESENT, offset=offset, limit=limit, projection=projection,
            )  # fmt: skip
            q = page_query(
                match, keys, tiebreak="run_id", always_present=executions.ALWAYS_PRESENT, skip=offset,
                limit=limit, projection=projection,
            )  # fmt: skip
            assert total == total_expected
            assert page == await plain_page(db.cluster_executions, q), (projection, offset, limit)
    # the aggregation path ($addFields, nested exclusions) worked on copies: the runs are as stored
    assert [d async for d in db.cluster_executions.find({})] == before


async def test_run_list_stats_equal_the_database_aggregation(db: Any) -> None:
    await seed_runs(db)
    for match in MATCHES:
        pipeline = [
            {"$match": match},
            {"$group": {"_id": "$status", "n": {"$sum": 1}, "ms": {"$sum": "$execution_time_ms"}}},
            {"$sort": {"_id": 1}},
        ]
        plain = [d async for d in db.cluster_executions.aggregate(pipeline)]
        assert await aggregate(db.cluster_executions, pipeline) == plain
        assert (
            await aggregate(db.cluster_executions, pipeline, reads=("status", "execution_time_ms")) == plain
        )
    stats = await executions.list_stats(db, match=MATCHES[0])
    runs = [d async for d in db.cluster_executions.find(MATCHES[0])]
    assert stats["total_executions"] == len(runs)
    assert stats["total_documents_clustered"] == sum(r["num_points"] for r in runs)
    timed = [r["execution_time_ms"] for r in runs if "execution_time_ms" in r]
    assert stats["avg_execution_time_ms"] == pytest.approx(sum(timed) / len(timed))


async def test_an_aggregation_not_led_by_match_runs_as_it_is(db: Any) -> None:
    await seed_runs(db, 10)
    pipeline = [{"$group": {"_id": None, "n": {"$sum": 1}}}]
    assert await aggregate(db.cluster_executions, pipeline) == [{"_id": None, "n": 10}]


async def test_namespaces_resolve_by_id_and_by_name_whatever_the_name_looks_like(db: Any) -> None:
    plain = await namespaces.create(db, name="team-a")
    id_like = await namespaces.create(db, name="ns_abcdefghij")  # a name of the id format
    assert (await namespaces.find(db, ident=plain["namespace_id"]))["namespace_name"] == "team-a"
    assert (await namespaces.find(db, ident="team-a"))["namespace_id"] == plain["namespace_id"]
    assert (await namespaces.find(db, ident="ns_abcdefghij"))["namespace_id"] == id_like["namespace_id"]
    assert await namespaces.find(db, ident="nobody") is None
    assert await namespaces.find(db, ident="ns_0000000000") is None


async def test_clusters_resolve_to_their_id_by_id_or_name_within_the_namespace(db: Any) -> None:
    base = {"status": "PENDING", "created_at": T0}
    await clusters.create(
        db, doc={**base, "cluster_id": "clust_aaa", "namespace_id": "ns_a", "cluster_name": "alpha"}
    )
    await clusters.create(
        db, doc={**base, "cluster_id": "clust_bbb", "namespace_id": "ns_a", "cluster_name": "clust_named"}
    )
    assert await clusters.resolve_id(db, ns="ns_a", ident="clust_aaa") == "clust_aaa"
    assert await clusters.resolve_id(db, ns="ns_a", ident="alpha") == "clust_aaa"
    assert await clusters.resolve_id(db, ns="ns_a", ident="clust_named") == "clust_bbb"
    for ns, ident in [("ns_b", "clust_aaa"), ("ns_b", "alpha"), ("ns_a", "beta")]:
        with pytest.raises(NotFound, match=f"cluster '{ident}' not found"):
            await clusters.resolve_id(db, ns=ns, ident=ident)
    assert (await clusters.get_or_raise(db, ns="ns_a", ident="alpha"))["cluster_name"] == "alpha"
