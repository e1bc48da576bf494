"""Every list and filter path is served by an index created at start-up."""

from __future__ import annotations

from typing import Any

import pytest

from core.filters import CLUSTER_SCHEMA, DOCUMENT_SCHEMA, EXECUTION_SCHEMA, Schema
from core.store.db import INDEXES, ensure_indexes

pytestmark = pytest.mark.integration

# collection, schema, the scope every list of it is confined to
LISTS: list[tuple[str, Schema, tuple[str, ...]]] = [
    ("clusters", CLUSTER_SCHEMA, ("namespace_id",)),
    ("cluster_executions", EXECUTION_SCHEMA, ("namespace_id", "cluster_id")),
    ("documents", DOCUMENT_SCHEMA, ("namespace_id", "collection_id")),
]


def _served(keys: list[list[str]], scope: tuple[str, ...], field: str) -> bool:
    want = [*scope, field]
    return any(k[: len(want)] == want or (field in scope and k[: len(scope)] == list(scope)) for k in keys)


@pytest.mark.parametrize(("name", "schema", "scope"), LISTS, ids=[x[0] for x in LISTS])
def test_every_filter_field_has_a_scoped_index(name: str, schema: Schema, scope: tuple[str, ...]) -> None:
    keys = [[k for k, _ in spec] for spec, _ in INDEXES[name]]
    assert _served(keys, scope, "created_at") or name == "documents"
    missing = [f for f in schema.fields if not _served(keys, scope, f)]
    assert not missing, f"{name}: no index led by {scope} serves {missing}"
    for prefix in schema.open_prefixes:
        assert [prefix + "$**"] in keys, f"{name}: no wildcard index for {prefix}*"


async def test_indexes_exist_after_start_up() -> None:
    from mongomock_motor import AsyncMongoMockClient

    db: Any = AsyncMongoMockClient()["t"]
    await ensure_indexes(db)
    for name, specs in INDEXES.items():
        info = await db[name].index_information()
        have = [list(v["key"]) for v in info.values()]
        for spec, _ in specs:
            assert [tuple(k) for k in spec] in [[tuple(k) for k in h] for h in have], (name, spec)
