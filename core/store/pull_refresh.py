"""Bringing a kept matrix (core.store.pull_cache.Prepared) up to date with the documents written
since its run read them, so that the run after a small write does not read the whole store again.

`core.store.embedded.changes_since` names the `_id`s written; each is looked up (a dict lookup in
the embedded store) and judged as the pull would judge it now: counted when it passes the run's
scope (namespace, collection) and pre-filter with mongomock's own semantics
(`embedded.select`), a row when it also holds the run's vector at the collection's dimensions.
New rows are checked and normalised by the pipeline's own functions, so a refreshed matrix equals
the one a fresh pull and pipeline would give, bit for bit. When every changed document keeps its
row (same document_id, same collection), the rows are rewritten in place, unless a run is using
the matrix; otherwise a new matrix is made: the kept rows in order with the new ones merged in.

Anything this does not handle the way the pull would gives None, and the run pulls as before:
more changed documents than a quarter of the rows, stored values that are not strings where the
scope looks, a duplicate (document_id, collection) pair, a vector with NaN or infinity (the
pull's validation names it), fewer than 2 rows left, a store that is not plain mongomock's.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.store import embedded
from core.store.pull_cache import Prepared

DTYPE = np.dtype("<f4")


@dataclass(frozen=True)
class Part:
    """One collection of a run's scope: its id, the run's vector's name there (None: none of
    its documents has it) and its dimensions."""

    collection_id: str
    vector_name: str | None
    dimensions: int


@dataclass
class _Now:
    """A changed document as the pull would see it now."""

    key: Any
    counted: bool
    document_id: str | None = None
    collection_id: str | None = None
    blob: bytes | None = None  # its row's vector, None: no row


def refresh(
    collection: Any,
    entry: Prepared,
    *,
    ns: str,
    parts: list[Part],
    match: dict[str, Any] | None,
    normalize: bool,
    version: int,
    in_place: bool,
) -> Prepared | None:
    """`entry` as a pull at write count `version` (read before this call) would make it, or None."""
    if entry.keys is None or len({p.collection_id for p in parts}) != len(parts):
        return None
    changed = embedded.changes_since(collection, entry.version)
    if changed is None or len(changed) > max(64, len(entry.keys) // 4):
        return None
    keys = list(changed)
    docs = embedded.lookup(collection, keys)
    if docs is None:
        return None
    now = [_judge(key, doc, ns, parts, match) for key, doc in zip(keys, docs, strict=True)]
    if any(n is None for n in now):
        return None
    return _apply(entry, [n for n in now if n is not None], normalize, version, in_place)


def _judge(key: Any, doc: dict[str, Any] | None, ns: str, parts: list[Part], match: Any) -> _Now | None:
    if doc is None:
        return _Now(key, counted=False)
    scope_values = (doc.get("namespace_id"), doc.get("collection_id"), doc.get("document_id"))
    if not all(type(v) is str for v in scope_values):
        return None  # an array or another type: mongomock's slow path, left to the pull
    if doc["namespace_id"] != ns:
        return _Now(key, counted=False)
    part = next((p for p in parts if p.collection_id == doc["collection_id"]), None)
    scope = {"namespace_id": ns, "collection_id": doc["collection_id"]}
    if part is None or not embedded.select([doc], scope=scope, match=match):
        return _Now(key, counted=False)
    vectors = doc.get("vectors")
    blob = vectors.get(part.vector_name) if isinstance(vectors, dict) and part.vector_name else None
    usable = isinstance(blob, bytes) and len(blob) == part.dimensions * DTYPE.itemsize
    return _Now(key, True, doc["document_id"], part.collection_id, blob if usable else None)


class RowIndex:
    """Each row key's rows in a kept matrix: one int per key, built in one C-level pass (a list
    per key cost 100k small lists and ~130 young-generation collections at 100k rows), plus
    the lists of the keys that own several rows (a document stored in several collections)."""

    def __init__(self, keys: list[Any]) -> None:
        self._first = dict(zip(keys, range(len(keys)), strict=True))  # a repeated key: its last row
        self._several: dict[Any, list[int]] = {}
        if len(self._first) != len(keys):
            every: dict[Any, list[int]] = {}
            for i, key in enumerate(keys):
                every.setdefault(key, []).append(i)
            self._several = {k: v for k, v in every.items() if len(v) > 1}

    def rows(self, key: Any) -> list[int]:
        several = self._several.get(key)
        if several is not None:
            return several
        row = self._first.get(key)
        return [] if row is None else [row]

    def __contains__(self, key: Any) -> bool:
        return key in self._first


def _rows(entry: Prepared) -> RowIndex:
    if entry.row_of is None:
        assert entry.keys is not None
        entry.row_of = RowIndex(entry.keys.tolist())
    return entry.row_of


def _prepared_rows(blobs: list[bytes], dimensions: int, normalize: bool) -> np.ndarray | None:
    """The new rows as the pipeline would fit them (its owned-matrix pass: checked and, when
    `normalize`, L2-normalised in one go, core.pipeline.checked_normalized); None when one is not
    finite."""
    from core import row_kernels

    block = np.frombuffer(b"".join(blobs), dtype=DTYPE).reshape(len(blobs), dimensions).copy()
    sq = row_kernels.normalize_rows(block, 1) if normalize else row_kernels.sq_norms(block, 1)
    return block if np.isfinite(sq).all() else None


def _apply(
    entry: Prepared, now: list[_Now], normalize: bool, version: int, in_place: bool
) -> Prepared | None:
    assert entry.keys is not None
    row_of = _rows(entry)
    gap = set(entry.gap) if entry.gap is not None else None
    if gap is None and any(n.key not in row_of for n in now):
        return None  # whether it was counted before is not known
    was = sum(1 for n in now if n.key in row_of or (gap is not None and n.key in gap))
    source = entry.source_documents - was + sum(n.counted for n in now)
    if gap is not None:
        gap.difference_update(n.key for n in now)
        gap.update(n.key for n in now if n.counted and n.blob is None)
    with_rows = [n for n in now if n.blob is not None]
    block = None
    if with_rows:
        blobs = [n.blob for n in with_rows if n.blob is not None]
        block = _prepared_rows(blobs, int(entry.matrix.shape[1]), normalize)
        if block is None:
            return None
    new_gap = tuple(gap) if gap is not None else None
    doc_ids, col_ids = entry.document_ids, entry.collection_ids
    unmoved = all(_keeps_its_row(entry, row_of.rows(n.key), n) for n in now)
    if in_place and unmoved and _writable(entry.matrix):
        for j, n in enumerate(with_rows):
            entry.matrix[row_of.rows(n.key)[0]] = block[j]  # type: ignore[index]
        entry.matrix.flags.writeable = False
        return Prepared(version, source, doc_ids, col_ids, entry.matrix, entry.keys, new_gap, row_of)
    return _merged(entry, now, with_rows, block, row_of, source, new_gap, version)


def _keeps_its_row(entry: Prepared, rows: list[int], n: _Now) -> bool:
    """Whether a changed document has the rows it had: none before and none now, or its one row
    at the same place (same document_id, same collection)."""
    if not rows:
        return n.blob is None
    return (
        len(rows) == 1
        and n.blob is not None
        and entry.document_ids[rows[0]] == n.document_id
        and entry.collection_ids[rows[0]] == n.collection_id
    )


def _writable(matrix: np.ndarray) -> bool:
    """Make `matrix` writable (the caller makes it read-only again); False when it cannot be."""
    try:
        matrix.flags.writeable = True
    except ValueError:
        return False
    return True


def _merged(
    entry: Prepared,
    now: list[_Now],
    with_rows: list[_Now],
    block: np.ndarray | None,
    row_of: RowIndex,
    source: int,
    gap: tuple[Any, ...] | None,
    version: int,
) -> Prepared | None:
    """A new matrix: the rows of unchanged documents in order, the changed ones merged in."""
    assert entry.keys is not None
    doc_ids, col_ids = entry.document_ids, entry.collection_ids
    drop = [i for n in now for i in row_of.rows(n.key)]
    keep_mask = np.ones(len(doc_ids), dtype=bool)
    keep_mask[drop] = False
    kept = np.flatnonzero(keep_mask)
    targets = [(n.document_id or "", n.collection_id or "") for n in with_rows]
    order = sorted(range(len(with_rows)), key=targets.__getitem__)

    def at(i: int) -> tuple[str, str]:
        return doc_ids[i], col_ids[i]

    if any(targets[a] == targets[b] for a, b in itertools.pairwise(order)):
        return None  # two changed documents would make the same row
    slots = []
    for j in order:
        target = targets[j]
        pos = bisect.bisect_left(kept, target, key=at)  # type: ignore[arg-type]
        if pos < len(kept) and at(int(kept[pos])) == target:
            return None  # the pull would have this row twice
        slots.append(pos)
    m = len(kept) + len(order)
    if m < 2:
        return None
    is_new = np.zeros(m, dtype=bool)
    is_new[np.asarray(slots, dtype=np.int64) + np.arange(len(order))] = True
    matrix = np.empty((m, entry.matrix.shape[1]), dtype=entry.matrix.dtype)
    matrix[~is_new] = entry.matrix[kept]
    out_doc = np.empty(m, dtype=object)
    out_col = np.empty(m, dtype=object)
    out_key = np.empty(m, dtype=object)
    out_doc[~is_new], out_col[~is_new], out_key[~is_new] = doc_ids[kept], col_ids[kept], entry.keys[kept]
    if len(order):
        assert block is not None
        matrix[is_new] = block[order]
        out_doc[is_new] = [with_rows[j].document_id for j in order]
        out_col[is_new] = [with_rows[j].collection_id for j in order]
        out_key[is_new] = [with_rows[j].key for j in order]
    matrix.flags.writeable = False
    return Prepared(version, source, out_doc, out_col, matrix, out_key, gap)
