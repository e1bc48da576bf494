"""The multi-feature pull: several named vectors per document, read in one pass.

Beside `documents.iter_vector_batches` (the single-feature path, left exactly as it is): the same
documents in the same order (ascending document_id; the embedded store read in bulk), but each
kept document yields one blob per wanted vector. A document lacking any of them, or holding one of
another length, is skipped (the run's index gap), so the per-feature rows stay aligned.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from core.filters import combine
from core.store import embedded
from core.store.db import Database
from core.store.documents import _chunks, _cursor_batches


async def iter_multi_vector_batches(
    db: Database,
    *,
    ns: str,
    collection_id: str,
    vector_names: Sequence[str],
    dimensions: Sequence[int],
    batch_size: int,
    match: dict[str, Any] | None = None,
) -> AsyncIterator[tuple[list[str], list[list[bytes]], int]]:
    """Yield (document_ids, blobs per feature, skipped) per `batch_size` documents read; blobs[f][r]
    is vector `vector_names[f]` of document_ids[r], exactly `dimensions[f]` float32."""
    scope = {"namespace_id": ns, "collection_id": collection_id}
    docs = embedded.in_id_order(db.documents, scope=scope, match=match)
    if docs is not None:
        batches: AsyncIterator[list[dict[str, Any]]] = _chunks(docs, batch_size)
    else:
        projection = {"_id": 0, "document_id": 1, **{f"vectors.{name}": 1 for name in vector_names}}
        cursor = db.documents.find(combine(scope, match or {}), projection).sort("document_id", 1)
        batches = _cursor_batches(cursor.batch_size(batch_size), batch_size)
    wanted = [(name, d * 4) for name, d in zip(vector_names, dimensions, strict=True)]
    async for batch in batches:
        ids: list[str] = []
        blobs: list[list[bytes]] = [[] for _ in wanted]
        for doc in batch:
            vectors = doc.get("vectors")
            if not isinstance(vectors, dict):
                continue
            row = [vectors.get(name) for name, _ in wanted]
            if all(isinstance(b, bytes) and len(b) == w for b, (_, w) in zip(row, wanted, strict=True)):
                ids.append(doc["document_id"])
                for f, b in enumerate(row):
                    blobs[f].append(b)  # type: ignore[arg-type]
        yield ids, blobs, len(batch) - len(ids)
