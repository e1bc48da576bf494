"""Sort, search and page queries for list endpoints (pure: builds MongoDB queries, runs none).

Sorting follows contract §1.5.11: `sorts` wins over `sort`, the first key is primary, a key
without a direction is descending, and missing values sort last in both directions. MongoDB puts
missing/null first when ascending, so every ascending key on a field that may be absent gets a
computed "is missing" flag sorted before it (an aggregation `$addFields`); lists sorted only on
always-present fields stay plain `find` queries that indexes serve.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from core.errors import BadRequest
from core.filters import InvalidFilter, Schema

MAX_SORT_KEYS = 5
MAX_SEARCH_TERMS = 10
MAX_SEARCH_LENGTH = 200


@dataclass(frozen=True)
class SortKey:
    path: str
    descending: bool


def resolve_path(schema: Schema, raw: Any, where: str) -> str:
    """A field a client names outside a filter (sort keys, `select`): the same paths a filter of
    that resource may name; returns the stored path (aliases translated)."""
    try:
        return schema.resolve(raw, where)[0]
    except InvalidFilter as exc:
        raise BadRequest(exc.message, code="invalid_field") from None


def _direction(raw: Any, where: str) -> bool:
    if raw is None:
        return True
    if isinstance(raw, str) and raw.lower() in ("asc", "desc"):
        return raw.lower() == "desc"
    if raw in (1, -1) and not isinstance(raw, bool):
        return raw == -1
    raise BadRequest(f"{where}: must be 'asc' or 'desc' (got {raw!r})", code="invalid_sort")


def parse_sort(
    sort: Any, sorts: Any, *, schema: Schema, default: list[SortKey], where: str = ""
) -> list[SortKey]:
    """`sorts` ([{field, direction}]) wins over `sort` ({field, direction}); none: `default`."""
    prefix = f"{where}." if where else ""
    if sorts not in (None, []):
        if not isinstance(sorts, list):
            raise BadRequest(f"{prefix}sorts: must be a list of {{field, direction}}", code="invalid_sort")
        items, name = sorts, f"{prefix}sorts"
    elif sort is not None:
        items, name = [sort], f"{prefix}sort"
    else:
        return list(default)
    if len(items) > MAX_SORT_KEYS:
        raise BadRequest(f"{name}: at most {MAX_SORT_KEYS} sort keys", code="invalid_sort")
    keys: list[SortKey] = []
    for i, item in enumerate(items):
        at = f"{name}[{i}]" if name.endswith("sorts") else name
        if not isinstance(item, dict):
            raise BadRequest(f"{at}: must be an object {{field, direction}}", code="invalid_sort")
        path = resolve_path(schema, item.get("field"), f"{at}.field")
        keys.append(SortKey(path, _direction(item.get("direction"), f"{at}.direction")))
    return keys


def search_query(text: Any, fields: tuple[str, ...], where: str = "search") -> dict[str, Any]:
    """Case-insensitive substring search: every whitespace-separated term must appear in at least
    one of `fields` (user text is escaped, never a pattern)."""
    if text is None:
        return {}
    if not isinstance(text, str):
        raise BadRequest(f"{where}: must be a string", code="invalid_search")
    if len(text) > MAX_SEARCH_LENGTH:
        raise BadRequest(f"{where}: at most {MAX_SEARCH_LENGTH} characters", code="invalid_search")
    terms = text.split()
    if len(terms) > MAX_SEARCH_TERMS:
        raise BadRequest(f"{where}: at most {MAX_SEARCH_TERMS} terms", code="invalid_search")
    clauses = [{"$or": [{f: {"$regex": re.escape(t), "$options": "i"}} for f in fields]} for t in terms]
    if not clauses:
        return {}
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def missing_flag(path: str) -> dict[str, Any]:
    # 1 when the field is missing or null ($ifNull folds both to null), else 0
    return {"$cond": [{"$eq": [{"$ifNull": ["$" + path, None]}, None]}, 1, 0]}


@dataclass(frozen=True)
class PageQuery:
    """Either a plain find (`pipeline` None) or an aggregation for missing-last ascending keys."""

    match: dict[str, Any]
    sort: list[tuple[str, int]]
    skip: int
    limit: int
    projection: dict[str, int]
    pipeline: list[dict[str, Any]] | None


def page_query(
    match: dict[str, Any],
    keys: list[SortKey],
    *,
    tiebreak: str,
    always_present: frozenset[str],
    skip: int,
    limit: int,
    projection: dict[str, int],
) -> PageQuery:
    """Sorted page of `match`; `tiebreak` (a unique field) makes the order total, so pages never
    overlap or skip a record while the data does not change."""
    sort: list[tuple[str, int]] = []
    flags: dict[str, Any] = {}
    for i, k in enumerate(keys):
        if not k.descending and k.path not in always_present:
            flag = f"__missing{i}"
            flags[flag] = missing_flag(k.path)
            sort.append((flag, 1))
        sort.append((k.path, -1 if k.descending else 1))
    if tiebreak not in {k.path for k in keys}:
        sort.append((tiebreak, -1 if keys and keys[0].descending else 1))
    projection = {"_id": 0, **projection}
    if not flags:
        return PageQuery(match, sort, skip, limit, projection, None)
    inclusive = any(v == 1 for k, v in projection.items() if k != "_id")
    final = projection if inclusive else {**projection, **dict.fromkeys(flags, 0)}
    pipeline: list[dict[str, Any]] = [
        {"$match": match},
        {"$addFields": flags},
        {"$sort": dict(sort)},
        {"$skip": skip},
        {"$limit": limit},
        {"$project": final},
    ]
    return PageQuery(match, sort, skip, limit, projection, pipeline)
