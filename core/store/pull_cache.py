"""A run's prepared matrix, kept to serve the next run of the same scope.

Re-running a cluster (another k, another algorithm, the same job again) reads the same vectors:
at 100k×768 the pull walks 100k stored dicts in Python and copies 293 MB out of their blobs, the
pipeline then checks and normalises them (~0.25 s together, the largest part of a whole run
beyond its algorithm, and a fresh 293 MB to fault in). A run that clustered its whole pull leaves
its matrix here as the algorithm saw it (validated, normalised when the run normalises; made
read-only) with its ids and counts, under the store's write count (`core.store.embedded.version`)
read before its documents were. The next run of the same scope clusters that matrix as is when
the count is unchanged; when documents were written since, it is first brought up to date with
just those documents (core.store.pull_refresh, from the ids `embedded.changes_since` lists), in
place when no run is using it. A write of unknown documents (a drop) drops every entry. Least
recently used entries go first to stay within the worker's `pull_cache_mb`; 0 turns it off.
MongoDB runs never use it (no write count).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from core.store import embedded

if TYPE_CHECKING:
    from core.store.pull_refresh import RowIndex

ID_BYTES = 100  # what a stored id string costs with its list slot, roughly


@dataclass
class Prepared:
    """A run's matrix and what it was read from, in run order (ascending document_id, then
    collection id)."""

    version: int  # the store's write count read before the documents were
    source_documents: int
    document_ids: np.ndarray  # object (n,)
    collection_ids: np.ndarray  # object (n,)
    matrix: np.ndarray  # float32 (n, dimensions), read-only: as the algorithm fitted it
    keys: np.ndarray | None = None  # object (n,): each row's stored `_id` (None: not refreshable)
    gap: tuple[Any, ...] | None = None  # `_id`s counted in source_documents without a row
    row_of: RowIndex | None = field(default=None, repr=False)  # pull_refresh's index

    @property
    def nbytes(self) -> int:
        return int(self.matrix.nbytes) + ID_BYTES * 3 * len(self.document_ids)


Refresh = Callable[[Prepared, bool], "Prepared | None"]  # (entry, may write it in place)


class PullCache:
    """Entries by key (the run's scope: namespace, collections, vector, filter), LRU-evicted.
    A run `lend`s the entry it clusters (`get` / `put` with `lend=True`) and gives it back with
    `release`: an entry lent out is never modified in place."""

    def __init__(self) -> None:
        self._entries: OrderedDict[Hashable, Prepared] = OrderedDict()
        self._lent: dict[int, int] = {}  # id(entry) -> runs using it
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.refreshes = 0

    def get(
        self, key: Hashable, version: int, refresh: Refresh | None = None, *, lend: bool = False
    ) -> Prepared | None:
        """The entry for `key` as of write count `version`: as kept, or brought up to date by
        `refresh` (None: it cannot be, and the entry goes)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.version != version:
                fresh = refresh(entry, id(entry) not in self._lent) if refresh is not None else None
                if fresh is None or fresh.version != version:
                    del self._entries[key]
                    entry = None
                else:
                    self._entries[key] = entry = fresh
                    self.refreshes += 1
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            if lend:
                self._lent[id(entry)] = self._lent.get(id(entry), 0) + 1
            return entry

    def put(
        self,
        key: Hashable,
        entry: Prepared,
        budget_bytes: int,
        version_now: int | None,
        *,
        lend: bool = False,
    ) -> bool:
        """Keep `entry` (evicting the least recently used to fit); False when it cannot fit or
        the store was written since its pull read it (`version_now`, read after the pull)."""
        if entry.nbytes > budget_bytes or version_now != entry.version:
            return False
        entry.matrix.flags.writeable = False
        with self._lock:
            self._entries.pop(key, None)
            used = sum(e.nbytes for e in self._entries.values())
            while self._entries and used + entry.nbytes > budget_bytes:
                _, old = self._entries.popitem(last=False)
                used -= old.nbytes
            self._entries[key] = entry
            if lend:
                self._lent[id(entry)] = self._lent.get(id(entry), 0) + 1
        return True

    def release(self, entry: Prepared) -> None:
        """A run that borrowed `entry` is done with it."""
        with self._lock:
            left = self._lent.get(id(entry), 0) - 1
            if left > 0:
                self._lent[id(entry)] = left
            else:
                self._lent.pop(id(entry), None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


_attach_lock = threading.Lock()


def of(collection: Any) -> PullCache | None:
    """The cache of an embedded collection whose writes are counted, else None."""
    if embedded.version(collection) is None:
        return None
    store = embedded.store_of(collection)
    with _attach_lock:
        cache = store.__dict__.get(embedded.PULL_CACHE)
        if cache is None:
            cache = PullCache()
            setattr(store, embedded.PULL_CACHE, cache)
    return cache

