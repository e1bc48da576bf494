"""DocumentResponse: a stored document as the API returns it."""

from __future__ import annotations

from typing import Any

from core.store import documents
from core.timeutil import iso


def document_out(doc: dict[str, Any], *, with_vectors: bool) -> dict[str, Any]:
    out = documents.to_public(doc, with_vectors=with_vectors)
    for k in ("created_at", "updated_at"):
        if k in out:
            out[k] = iso(out[k])
    return out
