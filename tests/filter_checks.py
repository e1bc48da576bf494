"""Is a query one real MongoDB takes and reads as we mean? Only documented operators, no `$` in a
field path, scalars where values go, BSON-encodable, and (when libpcre2-8 is there) each `$regex`
compiles in PCRE2 and matches like Python's `re` on the given subject strings."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import bson

from tests.pcre2 import PCRE2, pcre_search

LOGICAL = ("$and", "$or", "$nor")
FIELD_OPS = {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$regex", "$options", "$exists"}
FIELD_OPS |= {"$not", "$type", "$elemMatch"}
SCALARS = (str, int, float, bool, type(None), datetime)
_seen: set[tuple[str, bool, int]] = set()


def check_regex(pattern: Any, ci: bool, subjects: Sequence[str]) -> None:
    assert isinstance(pattern, str) and "\x00" not in pattern, pattern
    compiled = re.compile(pattern, re.IGNORECASE if ci else 0)
    key = (pattern, ci, id(subjects))
    if PCRE2 is None or key in _seen:
        return
    _seen.add(key)
    pcre_search(pattern, "", caseless=ci)  # compiles, or raises
    for s in subjects:
        assert pcre_search(pattern, s, caseless=ci) == bool(compiled.search(s)), (pattern, ci, s)


def _field_expr(expr: Any, subjects: Sequence[str]) -> None:
    if not isinstance(expr, dict):
        assert isinstance(expr, SCALARS), expr
        return
    assert expr and set(expr) <= FIELD_OPS, expr
    for op, x in expr.items():
        if op == "$regex":
            assert expr.get("$options", "") in ("", "i")
            check_regex(x, expr.get("$options") == "i", subjects)
        elif op == "$options":
            assert "$regex" in expr
        elif op in ("$in", "$nin"):
            assert isinstance(x, list) and all(isinstance(v, SCALARS) for v in x), x
        elif op == "$not":
            assert x == {"$type": "array"}  # never $not around a $regex
        elif op == "$elemMatch":
            assert isinstance(x, dict)
            _field_expr(x, subjects)
        elif op == "$exists":
            assert isinstance(x, bool)
        else:
            assert isinstance(x, SCALARS), (op, x)


def _walk(q: Any, subjects: Sequence[str]) -> None:
    assert isinstance(q, dict), q
    for k, v in q.items():
        if k.startswith("$"):
            assert k in LOGICAL and isinstance(v, list) and v, (k, v)
            for sub in v:
                _walk(sub, subjects)
        else:
            assert k and not any(not seg or seg.startswith("$") for seg in k.split(".")), k
            _field_expr(v, subjects)


def check_portable(q: dict[str, Any], *, subjects: Sequence[str] = ()) -> None:
    _walk(q, subjects)
    bson.encode(q)
