"""The embedded store's list and stats shortcuts (core.store.db) page and count exactly as a
MongoDB server does on the plain queries: the same runs seeded into both, every sort (the
missing-last aggregation included), offset and limit compared. nx-27017 stands in for MongoDB; it
returns datetimes tz-aware and ignores nested exclusions (`centroids.centroid_vector: 0`), so the
pages are compared by their run ids, in order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.listing import SortKey
from core.settings import Settings
from core.store import executions
from core.store.db import connect, embedded, list_matches
from tests import nx_mongo
from tests.unit.test_embedded_store import MATCHES, SORTS, seed_runs

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not nx_mongo.available(), reason="nx-27017 is not installed"),
]


async def test_embedded_pages_and_stats_equal_mongodb(tmp_path: Path) -> None:
    with nx_mongo.nx_server(tmp_path / "nx") as nx:
        _, mock = connect(Settings(data_dir=tmp_path))
        _, real = connect(Settings(data_dir=tmp_path, mongodb_url=nx.url, secret_key="x" * 20))
        assert embedded(mock.cluster_executions) and not embedded(real.cluster_executions)
        for db in (mock, real):
            await seed_runs(db)

        async def page(db: Any, match: dict[str, Any], keys: list[SortKey], offset: int, limit: int) -> Any:
            docs, total = await list_matches(
                db.cluster_executions, match=match, keys=keys, tiebreak="run_id",
                always_present=executions.ALWAYS_PRESENT, offset=offset, limit=limit,
                projection=executions.LIST_PROJECTION,
            )  # fmt: skip
            return total, [d["run_id"] for d in docs]

        for match in MATCHES:
            stats = await executions.list_stats(real, match=match)
            assert await executions.list_stats(mock, match=match) == stats
            for keys in SORTS:
                for offset, limit in [(0, 5), (12, 7), (0, 1000)]:
                    want = await page(real, match, keys, offset, limit)
                    assert await page(mock, match, keys, offset, limit) == want, (match, keys, offset, limit)
