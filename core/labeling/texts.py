"""The text a stored document offers the labellers (pure).

With `labeling_inputs.input_mappings`, each mapping gives one value, in order:
- `payload`: a dotted path into the document as stored (its top-level fields, a BYO `payload`
  merged in); a path not found there is looked up under `metadata.` (as attribute clustering
  does), and a leading `payload.` is accepted as an envelope. Strings are used as they are,
  numbers and booleans as text, a list of those joined by spaces; objects and missing values
  give nothing.
- `literal`: a constant (the mapping's `override`, else `value`, else `path`). It is the same for
  every document, so it goes to the LLM prompt only: to c-TF-IDF it would be noise.
- `vector`, `blob`: not text; ignored by both labellers.

Without mappings every string of the document counts: its top-level string fields (not the
system ones: ids, `source_type`, dates) and the strings inside `metadata`, in stored key order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.labeling.ctfidf import MAX_TEXT_CHARS

SYSTEM_FIELDS = frozenset(
    {
        "_id",
        "namespace_id",
        "collection_id",
        "document_id",
        "vectors",
        "created_at",
        "updated_at",
        "source_type",
    }
)
_MAX_DEPTH = 4


@dataclass(frozen=True)
class InputMapping:
    input_key: str
    source_type: str  # payload | literal | vector | blob
    path: str | None = None
    value: str | None = None  # literal only


def projection(mappings: Sequence[InputMapping]) -> dict[str, int] | None:
    """The fields to read for `mappings` (None: the whole document but its vectors)."""
    paths = [m.path for m in mappings if m.source_type == "payload" and m.path]
    if not mappings:
        return None
    fields: dict[str, int] = {"document_id": 1}
    for p in paths:
        bare = p[len("payload.") :] if p.startswith("payload.") else p
        for candidate in (bare, f"metadata.{bare}", p):
            fields[candidate] = 1
    # MongoDB refuses a projection holding both a path and one inside it ("path collision")
    return {f: 1 for f in fields if not any(f.startswith(g + ".") for g in fields if g != f)}


def _lookup(doc: Mapping[str, Any], path: str) -> Any:
    cur: Any = doc
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, bool | int | float):
        return str(value)
    if isinstance(value, list):
        parts = [t for v in value if not isinstance(v, dict | list) and (t := _as_text(v))]
        return " ".join(parts) or None
    return None


def resolve(doc: Mapping[str, Any], path: str) -> Any:
    """`path` in the document, else under `metadata`, else without a `payload.` envelope."""
    for candidate in (path, f"metadata.{path}"):
        value = _lookup(doc, candidate)
        if value is not None:
            return value
    if path.startswith("payload."):
        return resolve(doc, path[len("payload.") :])
    return None


def mapped_inputs(doc: Mapping[str, Any], mappings: Sequence[InputMapping]) -> list[tuple[str, str, bool]]:
    """(input_key, text, is_literal) per mapping that gives text; the default strings without mappings."""
    if not mappings:
        return [(key, text, False) for key, text in default_strings(doc)]
    out = []
    for m in mappings:
        if m.source_type == "literal":
            if m.value:
                out.append((m.input_key, m.value, True))
        elif m.source_type == "payload" and m.path:
            text = _as_text(resolve(doc, m.path))
            if text:
                out.append((m.input_key, text, False))
    return out


def default_strings(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for k, v in doc.items():
        if k in SYSTEM_FIELDS:
            continue
        _collect(k, v, out, 0)
    return out


def _collect(key: str, value: Any, out: list[tuple[str, str]], depth: int) -> None:
    if depth > _MAX_DEPTH:
        return
    if isinstance(value, str):
        if value.strip():
            out.append((key, value.strip()))
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _collect(f"{key}.{k}", v, out, depth + 1)
    elif isinstance(value, list):
        for v in value:
            if isinstance(v, str | Mapping):
                _collect(key, v, out, depth + 1)


def document_text(inputs: Sequence[tuple[str, str, bool]], max_chars: int = MAX_TEXT_CHARS) -> str:
    """The text c-TF-IDF counts: the non-literal values joined, cut to `max_chars`."""
    return " ".join(text for _, text, literal in inputs if not literal)[:max_chars]


def sample_text(inputs: Sequence[tuple[str, str, bool]], max_chars: int) -> str:
    """One member as the LLM prompt shows it: `key: value` parts, cut to `max_chars`."""
    parts = [f"{key}: {text}" if len(inputs) > 1 else text for key, text, _ in inputs]
    text = " | ".join(" ".join(p.split()) for p in parts)
    return text if len(text) <= max_chars else text[: max_chars - 1].rstrip() + "…"
