"""Pure validation of incoming documents (single creates and batches)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.errors import ValidationFailed
from core.json_numbers import check_float
from core.vectors import convert_many, validate_vectors

_RESERVED = {"_id", "namespace_id", "created_at", "updated_at", "vectors", "document_id", "collection_id"}
_MAX_KEY_DEPTH = 20
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


@dataclass
class PreparedDocument:
    document_id: str | None
    fields: dict[str, Any]
    vectors: dict[str, np.ndarray]


def check_keys(value: Any, loc: str) -> None:
    """MongoDB field names may not start with '$' or contain '.', and integers must fit in 64 bits;
    reject violations with their path."""
    _check_tree(value, loc, 0, _document_key_error)


def check_storable(value: Any, loc: str) -> None:
    """What any stored free-form object needs to reach MongoDB: string keys without NUL (BSON keys
    are C strings), integers within 64 bits, bounded nesting. Looser than `check_keys`: objects such
    as filters legitimately use dotted keys."""
    _check_tree(value, loc, 0, _storable_key_error)


def not_utf8(text: str) -> bool:
    """True for a string UTF-8 cannot encode (a lone surrogate, which stdlib JSON lets through
    from a `\\ud800` escape); BSON strings and keys are UTF-8."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _document_key_error(k: object, loc: str) -> str | None:
    if not isinstance(k, str) or not k or k.startswith("$") or "." in k or "\x00" in k:
        return f"{loc}.{k}: field names may not be empty, start with '$' or contain '.'"
    if not_utf8(k):
        return f"{loc}: field names must be valid Unicode text (no lone surrogates)"
    return None


def _storable_key_error(k: object, loc: str) -> str | None:
    if not isinstance(k, str) or "\x00" in k:
        return f"{loc}: field names may not contain NUL characters"
    if not_utf8(k):
        return f"{loc}: field names must be valid Unicode text (no lone surrogates)"
    return None


def _check_tree(value: Any, loc: str, depth: int, key_error: Callable[[object, str], str | None]) -> None:
    if depth > _MAX_KEY_DEPTH:
        raise ValidationFailed(f"{loc}: nested deeper than {_MAX_KEY_DEPTH} levels")
    if isinstance(value, dict):
        for k, v in value.items():
            if (problem := key_error(k, loc)) is not None:
                raise ValidationFailed(problem)
            _check_tree(v, f"{loc}.{k}", depth + 1, key_error)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_tree(v, f"{loc}[{i}]", depth + 1, key_error)
    elif type(value) is int and not _INT64_MIN <= value <= _INT64_MAX:
        raise ValidationFailed(f"{loc}: integer does not fit in 64 bits (MongoDB's largest integer)")
    elif type(value) is str and not_utf8(value):
        raise ValidationFailed(f"{loc}: must be valid Unicode text (no lone surrogates)")
    elif type(value) is float:
        check_float(value)  # an integer beyond 64 bits, as orjson reads it?


def check_document_id(doc_id: object, *, loc: str) -> None:
    if not isinstance(doc_id, str) or not doc_id.strip() or len(doc_id) > 200:
        raise ValidationFailed(f"{loc}: must be a non-empty string of at most 200 characters")
    if not_utf8(doc_id):
        raise ValidationFailed(f"{loc}: must be valid Unicode text (no lone surrogates)")


def prepare(
    raw: dict[str, Any],
    *,
    loc: str,
    known_dimensions: dict[str, int],
    declared_only: bool,
    max_dimensions: int,
    extra_field_key: str | None = None,
    converted: dict[str, np.ndarray] | None = None,
) -> PreparedDocument:
    """Split a request document into id, stored fields and float32 vectors.

    `extra_field_key` names a free-form object merged into the stored fields (BYO `payload`);
    `converted` holds vectors already converted in bulk (core.vectors.convert_many), by key.
    """
    doc_id = raw.get("document_id")
    if doc_id is not None:
        check_document_id(doc_id, loc=f"{loc}.document_id")
    vectors = validate_vectors(
        raw.get("vectors"),
        loc=f"{loc}.vectors",
        known_dimensions=known_dimensions,
        max_dimensions=max_dimensions,
        declared_only=declared_only,
        converted=converted,
    )
    fields: dict[str, Any] = {}
    for k, v in raw.items():
        if k in _RESERVED or k == extra_field_key:
            continue
        fields[k] = v
    if extra_field_key and raw.get(extra_field_key) is not None:
        payload = raw[extra_field_key]
        if not isinstance(payload, dict):
            raise ValidationFailed(f"{loc}.{extra_field_key}: must be an object")
        fields.update({k: v for k, v in payload.items() if k not in _RESERVED})
    metadata = fields.get("metadata")
    if metadata is None:
        fields["metadata"] = {}
    elif not isinstance(metadata, dict):
        raise ValidationFailed(f"{loc}.metadata: must be an object")
    check_keys(fields, loc)
    fields.setdefault("source_type", "direct_upsert")
    return PreparedDocument(doc_id.strip() if isinstance(doc_id, str) else None, fields, vectors)


def _convert_in_bulk(raws: list[Any], max_dimensions: int) -> dict[int, dict[str, np.ndarray]]:
    """The batch's list vectors converted by length group, one numpy call per group instead of a
    few per vector: {document position: {key: float32 array}}. A list numpy cannot vouch for is
    left out, for `prepare` to judge it one by one."""
    groups: dict[int, list[tuple[int, str, list[Any]]]] = {}
    for i, raw in enumerate(raws):
        vectors = raw.get("vectors") if isinstance(raw, dict) else None
        if not isinstance(vectors, dict):
            continue
        for key, value in vectors.items():
            if type(value) is list and 0 < len(value) <= max_dimensions:
                groups.setdefault(len(value), []).append((i, key, value))
    out: dict[int, dict[str, np.ndarray]] = {}
    for members in groups.values():
        if len(members) < 2:
            continue
        for (i, key, _), arr in zip(members, convert_many([v for _, _, v in members]), strict=True):
            if arr is not None:
                out.setdefault(i, {})[key] = arr
    return out


def prepare_batch(
    raws: list[Any],
    *,
    known_dimensions: dict[str, int],
    declared_only: bool,
    max_dimensions: int,
    max_documents: int,
    extra_field_key: str | None = None,
    single: bool = False,
) -> tuple[list[PreparedDocument], dict[str, int]]:
    """Validate a whole batch before anything is written; returns the documents and the vector
    names it would newly index. Errors list every bad position (up to 20)."""
    if len(raws) > max_documents:
        raise ValidationFailed(f"documents: {len(raws)} documents exceeds the batch limit of {max_documents}")
    if not raws:
        raise ValidationFailed("documents: must contain at least one document")
    known = dict(known_dimensions)
    new: dict[str, int] = {}
    out: list[PreparedDocument] = []
    errors: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    converted = _convert_in_bulk(raws, max_dimensions)
    for i, raw in enumerate(raws):
        loc = "body" if single else f"documents[{i}]"
        try:
            if not isinstance(raw, dict):
                raise ValidationFailed(f"{loc}: must be an object")
            doc = prepare(
                raw,
                loc=loc,
                known_dimensions=known,
                declared_only=declared_only,
                max_dimensions=max_dimensions,
                extra_field_key=extra_field_key,
                converted=converted.get(i),
            )
            if doc.document_id is not None:
                if doc.document_id in seen:
                    raise ValidationFailed(
                        f"{loc}.document_id: '{doc.document_id}' repeats documents[{seen[doc.document_id]}]"
                    )
                seen[doc.document_id] = i
            for name, vec in doc.vectors.items():
                if name not in known:
                    known[name] = new[name] = int(vec.shape[0])
            out.append(doc)
        except ValidationFailed as exc:
            errors.append(
                {"loc": ["body"] if single else ["documents", i], "msg": exc.message, "type": "value_error"}
            )
            if len(errors) >= 20:
                break
    if errors:
        more = (
            f" (and {len(errors) - 1} more; the batch was not written)"
            if len(errors) > 1
            else " (the batch was not written)"
        )
        raise ValidationFailed(errors[0]["msg"] + more, details={"validation_errors": errors})
    return out, new
