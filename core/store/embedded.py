"""Bulk reads straight from the embedded store's memory, for the vector pull.

mongomock's cursor slices its whole result list again for every document it hands out, so draining
a find over n documents costs O(n²) (100k documents took over two minutes), and before that it
filters, sorts and projects each document in Python. The pull reads up to millions of documents
once, so in embedded mode it selects them here instead: the same documents, in the same order, as
`find(scope AND match).sort(key, 1)` would return, but as the stored dicts themselves (no copies:
callers must not modify them).

The semantics are mongomock's own: `match` goes through `mongomock.filtering.filter_applies` (the
function `find` uses) after the same datetime normalisation `find` applies, the sort key through
`filtering.resolve_sort_key` unless every value is a string (then a plain string sort gives the same
order). Only the scope equalities (`namespace_id`, `collection_id`) take a shortcut, for string
values; any other value is handed to `filter_applies` too. tests/integration/test_pull.py checks
these reads against mongomock's find on awkward data. Against real MongoDB (motor) `store_of`
answers None and callers run their plain find.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

Scope = Mapping[str, "str | frozenset[str]"]


def store_of(collection: Any) -> Any | None:
    """mongomock's in-memory store behind an embedded (mongomock-motor) collection, else None."""
    mm = sys.modules.get("mongomock_motor")  # imported by core.store.db.connect in embedded mode only
    if mm is None or not isinstance(collection, mm.AsyncMongoMockCollection):
        return None
    inner = getattr(collection, "_AsyncMongoMockCollection__collection", None)
    store = getattr(inner, "_store", None)
    return store if store is not None and hasattr(store, "documents") else None


def matching(collection: Any, *, scope: Scope, match: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """The stored documents that pass every scope condition (equal to a string, or one of a set of
    strings) and `match`, in store order; None when `collection` is not embedded."""
    store = store_of(collection)
    if store is None:
        return None
    from mongomock import filtering, helpers

    applies = filtering.filter_applies
    spec = helpers.patch_datetime_awareness_in_document(match) if match else None
    conds = [(k, v if isinstance(v, str) else frozenset(v)) for k, v in scope.items()]
    out = []
    for doc in list(store.documents):  # a snapshot, as mongomock's cursor takes one
        for key, want in conds:
            have = doc.get(key)
            if type(have) is str:
                if (have != want) if type(want) is str else (have not in want):
                    break
            elif not applies({key: want if type(want) is str else {"$in": sorted(want)}}, doc):
                break
        else:
            if spec is None or applies(spec, doc):
                out.append(doc)
    return out


def sort_ascending(docs: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """`docs` in the order mongomock's `.sort(key, 1)` gives them (stable, like its `sorted`)."""
    values: list[Any] = [doc.get(key) for doc in docs]
    if not all(type(v) is str for v in values):  # else BSON order is code point order: str's own
        from mongomock import filtering

        values = [filtering.resolve_sort_key(key, doc) for doc in docs]
    order = sorted(range(len(docs)), key=lambda i: values[i])
    return [docs[i] for i in order]
