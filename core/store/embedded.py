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

Bulk writes (`writable_store`, `upsert`), for the document write path: mongomock's `insert_many`
spends ~100 µs of pure Python on every document (a BSON encode to validate it, a recursive copy to
patch datetimes, a lock round trip, an index scan), which capped the embedded server near 10k
documents/s whatever the API did, and finding the ids already stored scanned the whole collection
per batch. Documents reach the store already validated (core.documents: string keys without '$',
'.' or NUL, 64-bit integers, UTF-8 strings; the upload path allows only the same scalar types), so
they are stored here as mongomock would have stored them: datetimes as naive UTC with millisecond
precision, keyed by the record's own `_id` (core.store.documents.record_id, so a stored id is
found by a dict lookup). A store this module does not recognise (another mongomock version, a
unique or TTL index on the collection) gets None from `writable_store`, and the caller writes
through the driver as on MongoDB. tests/integration/test_document_writes.py checks that a document
stored here reads back as one stored by mongomock's `insert_one`.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
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
    return select(_snapshot(store), scope=scope, match=match)


def select(docs: list[dict[str, Any]], *, scope: Scope, match: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The documents of `docs` that `matching` would select, in their order."""
    from mongomock import filtering, helpers

    applies = filtering.filter_applies
    spec = helpers.patch_datetime_awareness_in_document(match) if match else None
    conds = [(k, v if isinstance(v, str) else frozenset(v)) for k, v in scope.items()]

    def slow(key: str, want: str | frozenset[str], doc: dict[str, Any]) -> bool:
        """mongomock's own test, for a stored value that is not a string (e.g. an array)."""
        return bool(applies({key: want if type(want) is str else {"$in": sorted(want)}}, doc))

    if len(conds) == 2:  # (namespace_id, collection_id): every caller; one comprehension, ~4x faster
        (k1, w1), (k2, w2) = conds
        c1 = (w1,) if type(w1) is str else w1
        c2 = (w2,) if type(w2) is str else w2
        out = [
            d
            for d in docs
            if ((a in c1) if type(a := d.get(k1)) is str else slow(k1, w1, d))
            and ((b in c2) if type(b := d.get(k2)) is str else slow(k2, w2, d))
        ]
    else:
        out = [d for d in docs if all(_passes(d, key, want, slow) for key, want in conds)]
    return out if spec is None else [d for d in out if applies(spec, d)]


def _passes(doc: dict[str, Any], key: str, want: str | frozenset[str], slow: Any) -> bool:
    have = doc.get(key)
    if type(have) is str:
        return have == want if type(want) is str else have in want
    return bool(slow(key, want, doc))


def _snapshot(store: Any) -> list[dict[str, Any]]:
    """The store's documents now, as mongomock's cursor takes them (expired TTL documents gone)."""
    if hasattr(store, "_documents") and hasattr(store, "_rwlock"):
        store._remove_expired_documents()
        with store._rwlock.reader():
            # the underlying dict's values: the same documents in the same order (mongomock never
            # calls move_to_end), where OrderedDict's own walk looks every key up again (4-12 ms
            # at 100k documents, against 0.4)
            return list(dict.values(store._documents))
    return list(store.documents)


def sort_ascending(docs: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """`docs` in the order mongomock's `.sort(key, 1)` gives them (stable, like its `sorted`)."""
    values: list[Any] = [doc.get(key) for doc in docs]
    if all(type(v) is str for v in values):  # BSON order is then code point order: str's own
        if values == sorted(values):  # the usual case (ids written in order): nothing to move
            return docs
    else:
        from mongomock import filtering

        values = [filtering.resolve_sort_key(key, doc) for doc in docs]
    order = sorted(range(len(docs)), key=values.__getitem__)
    return [docs[i] for i in order]


def in_id_order(
    collection: Any, *, scope: Scope, match: dict[str, Any] | None
) -> list[dict[str, Any]] | None:
    """`matching` in ascending document_id order: what `find(scope AND match).sort("document_id",
    1)` returns (every bulk read of documents); None when `collection` is not embedded."""
    docs = matching(collection, scope=scope, match=match)
    return None if docs is None else sort_ascending(docs, "document_id")


# --------------------------------------------------------------------------- change counter

_WRITES = "_clusterd_writes"  # on a mongomock CollectionStore: the writes it has seen
_LOG = "_clusterd_log"  # on a CollectionStore: its _Log
PULL_CACHE = "_clusterd_pull_cache"  # on a CollectionStore: its core.store.pull_cache.PullCache
LOG_KEYS = 50_000  # the _ids the log holds at most (older writes: `changes_since` answers None)
_counter_lock = threading.Lock()
_tracking = False
_updating = threading.local()  # .keys: the _ids Collection._update is visiting, on this thread


def track_writes() -> bool:
    """Count every write to every mongomock collection store from now on, with the `_id`s it
    wrote (idempotent): what lets core.store.pull_cache know what changed since it read a
    collection. True when counting; False when this mongomock lacks a method it wraps (then
    `version` is None).

    mongomock writes a document through its store's `__setitem__` / `__delitem__` (insert,
    delete, replace's rollback, TTL expiry), empties one with `drop` (no ids: every older read
    is out of date), and updates (update_*, replace_one, find_one_and_*, bulk updates) modify the
    stored dicts in place inside `Collection._update`, which finds them through
    `Collection._iter_documents`: the ids it hands out during an update are the ones written.
    This module's own direct writes (`upsert`, `delete_matching`) count themselves."""
    global _tracking
    from mongomock import collection, store

    targets: list[tuple[Any, str, Callable[..., Any]]] = [
        (store.CollectionStore, "__setitem__", lambda method: _counted(method, lambda s, a: (s, (a[0],)))),
        (store.CollectionStore, "__delitem__", lambda method: _counted(method, lambda s, a: (s, (a[0],)))),
        (store.CollectionStore, "drop", lambda method: _counted(method, lambda s, a: (s, None))),
        (collection.Collection, "_update", _counted_update),
        (collection.Collection, "_iter_documents", _visits),
    ]
    with _counter_lock:
        if _tracking:
            return True
        if not all(callable(getattr(cls, name, None)) for cls, name, _ in targets):
            return False
        for cls, name, wrap in targets:
            setattr(cls, name, wrap(getattr(cls, name)))
        _tracking = True
    return True


def _counted(
    method: Callable[..., Any], written: Callable[[Any, tuple[Any, ...]], Any]
) -> Callable[..., Any]:
    """`method`, then `wrote(*written(self, args))`: (the store, the _ids or None)."""

    @functools.wraps(method)
    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        finally:  # counted after the change: a reader that saw the old count re-reads
            wrote(*written(self, args))

    return counted


def _counted_update(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        outer = getattr(_updating, "keys", None)
        keys: list[Any] = []
        _updating.keys = keys
        try:
            return method(self, *args, **kwargs)
        finally:
            _updating.keys = outer
            wrote(self._store, keys)

    return counted


def _visits(method: Callable[..., Any]) -> Callable[..., Any]:
    """`Collection._iter_documents`, noting each document's `_id` while an update runs."""

    @functools.wraps(method)
    def visiting(self: Any, *args: Any, **kwargs: Any) -> Any:
        docs = method(self, *args, **kwargs)
        keys = getattr(_updating, "keys", None)
        return docs if keys is None else _noted(docs, keys)

    return visiting


def _noted(docs: Any, keys: list[Any]) -> Any:
    for doc in docs:
        keys.append(doc.get("_id"))
        yield doc


@dataclass
class _Log:
    """What a store's writes wrote, for `changes_since`: (write number, _ids), oldest first."""

    entries: deque[tuple[int, tuple[Any, ...]]] = field(default_factory=deque)
    held: int = 0  # _ids in `entries`
    floor: int = 0  # the oldest write count `changes_since` can answer from


def wrote(store: Any, keys: Iterable[Any] | None = None) -> None:
    """One more write to `store`, of the documents under `_id`s `keys` (None: unknown, e.g. a drop:
    then nothing read before can be brought up to date, and core.store.pull_cache's entries for
    the store go)."""
    with _counter_lock:
        count = getattr(store, _WRITES, 0) + 1
        setattr(store, _WRITES, count)
        log: _Log | None = store.__dict__.get(_LOG)
        if log is None:  # (not setdefault: that would build a _Log on every write)
            log = store.__dict__[_LOG] = _Log()
        if keys is None:
            log.entries.clear()
            log.held, log.floor = 0, count
        else:
            ids = tuple(keys)
            log.entries.append((count, ids))
            log.held += len(ids)
            while log.held > LOG_KEYS:
                log.floor, dropped = log.entries.popleft()
                log.held -= len(dropped)
    if keys is None:
        cache = store.__dict__.get(PULL_CACHE)
        if cache is not None:
            cache.clear()


def changes_since(collection: Any, count: int) -> set[Any] | None:
    """The `_id`s written to an embedded collection's store since its write count was `count`
    (`version`), or None when that is not known (not embedded or not counted, a write of unknown
    documents since, or more than `LOG_KEYS` ids ago)."""
    store = store_of(collection) if _tracking else None
    if store is None:
        return None
    with _counter_lock:
        log: _Log = store.__dict__.get(_LOG) or _Log()
        if count < log.floor or count > getattr(store, _WRITES, 0):
            return None
        out: set[Any] = set()
        for at, ids in reversed(log.entries):
            if at <= count:
                break
            out.update(ids)
        return out


def version(collection: Any) -> int | None:
    """How many writes an embedded collection's store has seen (read it before reading the
    documents: equal counts later mean nothing was written meanwhile); None when the collection
    is not embedded or writes are not counted (`track_writes`)."""
    store = store_of(collection) if _tracking else None
    return None if store is None else int(getattr(store, _WRITES, 0))


# --------------------------------------------------------------------------- writes


def writable_store(collection: Any) -> Any | None:
    """The store behind an embedded collection when `upsert` may write to it directly: mongomock's
    plain store, with no unique or TTL index to maintain; else None."""
    store = store_of(collection)
    if store is None or not isinstance(getattr(store, "_documents", None), OrderedDict):
        return None
    if not hasattr(store, "_rwlock") or getattr(store, "_ttl_indexes", None):
        return None
    if any(ix.get("unique") for ix in getattr(store, "indexes", {}).values()):
        return None  # mongomock's insert checks those: leave it to mongomock
    return store


def has_id(collection: Any, key: Any) -> bool | None:
    """Whether a document is stored under `_id` `key` (a dict lookup, where mongomock's find_one
    scans the collection); None when the store is not `writable_store`."""
    store = writable_store(collection)
    return None if store is None else key in store._documents


def size(collection: Any) -> int | None:
    """How many documents an embedded collection holds (a length, not a scan); None otherwise."""
    store = store_of(collection)
    if store is None or not hasattr(store, "_documents"):
        return None
    return len(store._documents)


def lookup(collection: Any, keys: list[Any]) -> list[dict[str, Any] | None] | None:
    """The stored documents under `_id`s `keys` (None where there is none), by dict lookups; None
    when the store is not `writable_store`. Stored dicts themselves: callers must not modify them."""
    store = writable_store(collection)
    if store is None:
        return None
    with store._rwlock.reader():
        docs = store._documents
        return [docs.get(key) for key in keys]


def delete_matching(collection: Any, *, scope: Scope) -> int | None:
    """Delete the stored documents `matching(collection, scope=scope)` selects and return how
    many; None when the store is not `writable_store` (then the caller uses delete_many:
    mongomock's re-scans the collection for every document it removes, 4 s for 40k)."""
    store = writable_store(collection)
    if store is None:
        return None
    doomed = [doc["_id"] for doc in matching(collection, scope=scope, match=None) or []]
    try:
        with store._rwlock.writer():  # (matching takes the store's reader lock itself)
            docs = store._documents
            for key in doomed:
                docs.pop(key, None)
    finally:
        wrote(store, doomed)
    return len(doomed)


def _as_stored(value: datetime) -> datetime:
    """What mongomock keeps for a datetime: naive UTC, truncated to milliseconds (as MongoDB)."""
    if value.tzinfo is not None:
        value = (value - value.utcoffset()).replace(tzinfo=None)  # type: ignore[operator]
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def upsert(store: Any, records: list[dict[str, Any]]) -> int:
    """Store every record under its `_id`; one that replaces a stored document keeps that
    document's `created_at` (what `replace_one` does in core.store.documents.upsert_many).
    Returns how many documents were replaced.

    The records themselves become the stored documents (their `created_at` / `updated_at`
    converted in place, the only datetimes a record from core.store.documents.to_record(s) has),
    so callers must not use them afterwards.
    """
    replaced = 0
    stored: dict[datetime, datetime] = {}  # the records of a batch share their timestamps

    def as_stored(v: datetime) -> datetime:
        if (out := stored.get(v)) is None:
            out = stored[v] = _as_stored(v)
        return out

    try:
        with store._rwlock.writer():  # the embedded worker thread reads this store concurrently
            docs = store._documents
            for doc in records:
                doc["updated_at"] = as_stored(doc["updated_at"])
                old = docs.get(doc["_id"])
                if old is not None:
                    replaced += 1
                kept = old.get("created_at") if old is not None else None
                doc["created_at"] = kept or as_stored(doc["created_at"])
                docs[doc["_id"]] = doc
    finally:
        wrote(store, [doc["_id"] for doc in records])
    return replaced
