"""A reference evaluator of the filter language (contract §1.6), written from the contract alone.

It does not import core.filters: it reads the raw wire filter and a plain Python record and says
whether the record matches. Other tests compare real queries against it:

    from tests.filter_oracle import oracle_select
    assert ids(await coll.find(compile_filter(f, schema=S)).to_list(None)) == ids(oracle_select(recs, f))

Semantics it fixes (where the contract leaves room, this is what the platform promises):
- A path steps into objects; into an array it steps into each object element ("any element").
  A missing key, or a non-object in the middle of a path, is *missing*.
- A leaf array matches an element-wise test if any element passes (`contains` looks at the array).
- Equality with null (eq/in with null, shorthand `k: null`) means missing or null.
- Types never mix: a boolean is not a number, a string is not a number, a datetime only equals or
  orders against a datetime. Numbers compare by value (1 == 1.0).
- Strings order by code point, always case-sensitively; case_sensitive only changes equality and
  the string operators (eq, ne, in, nin, contains, starts_with, ends_with, regex).
- text, phrase and words are always case-insensitive. A word is a run of ASCII letters, digits,
  `_` and non-ASCII characters; anything else separates words.
- Datetime fields (`datetime_fields`) take ISO-8601 (naive = UTC) or epoch seconds; both sides
  compare at millisecond precision (what BSON stores).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()
LOGICAL = {"AND": "AND", "and": "AND", "OR": "OR", "or": "OR", "NOT": "NOT", "not": "NOT"}


def _is_word_char(c: str) -> bool:
    return ord(c) >= 128 or c.isalnum() or c == "_"


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    cur = ""
    for c in text:
        if _is_word_char(c):
            cur += c
        elif cur:
            out.append(cur)
            cur = ""
    if cur:
        out.append(cur)
    return [t.lower() for t in out]


def _to_dt(v: Any) -> Any:
    if isinstance(v, datetime):
        dt = v if v.tzinfo is not None else v.replace(tzinfo=UTC)
    elif isinstance(v, bool) or v is None:
        return v
    elif isinstance(v, int | float):
        dt = datetime.fromtimestamp(v, UTC)
    elif isinstance(v, str):
        dt = datetime.fromisoformat(v.strip())
        dt = dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
    else:
        return v
    dt = dt.astimezone(UTC)
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def _norm(v: Any) -> Any:
    return _to_dt(v) if isinstance(v, datetime) else v


def _bracket(v: Any) -> str | None:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, datetime):
        return "date"
    return None


def _equal(a: Any, b: Any, ci: bool) -> bool:
    a, b = _norm(a), _norm(b)
    if a is MISSING or b is MISSING:
        return False
    if a is None or b is None:
        return a is None and b is None
    ka, kb = _bracket(a), _bracket(b)
    if ka is None or ka != kb:
        return False
    if ka == "string" and ci:
        return bool(a.lower() == b.lower())
    return bool(a == b)


def _terminals(doc: Any, parts: list[str]) -> list[Any]:
    """Values at the end of the path, one per object reached; MISSING where the path stops."""
    if not parts:
        return [doc]
    if isinstance(doc, dict):
        return _terminals(doc[parts[0]], parts[1:]) if parts[0] in doc else [MISSING]
    if isinstance(doc, list):
        out: list[Any] = []
        for el in doc:
            if isinstance(el, dict):
                out.extend(_terminals(el, parts))
        return out
    return [MISSING]


def _elements(terminals: list[Any]) -> list[Any]:
    out: list[Any] = []
    for t in terminals:
        out.extend(t if isinstance(t, list) else [t])
    return out


def _nullish(elements: list[Any]) -> bool:
    return any(e is MISSING or e is None for e in elements)


def _order(a: Any, b: Any, op: str) -> bool:
    a, b = _norm(a), _norm(b)
    if _bracket(a) is None or _bracket(a) != _bracket(b):
        return False
    return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[op]


def _condition(record: Mapping[str, Any], path: str, op: str, value: Any, ci: bool) -> bool:
    terms = _terminals(record, path.split("."))
    els = _elements(terms)
    strings = [e for e in els if isinstance(e, str)]
    if op == "eq":
        return _nullish(els) if value is None else any(_equal(e, value, ci) for e in els)
    if op == "ne":
        return not _condition(record, path, "eq", value, ci)
    if op == "in":
        return any(_condition(record, path, "eq", v, ci) for v in value)
    if op == "nin":
        return not _condition(record, path, "in", value, ci)
    if op in ("gt", "gte", "lt", "lte"):
        return any(_order(e, value, op) for e in els)
    if op == "exists":
        return any(t is not MISSING for t in terms) == bool(value)
    if op == "is_null":
        return _nullish(els) == bool(value)

    def fold(s: str) -> str:
        return s.lower() if ci else s

    if op == "contains":
        for t in terms:
            if isinstance(t, list) and any(_equal(e, value, ci) for e in t):
                return True
            if isinstance(t, str) and isinstance(value, str) and fold(value) in fold(t):
                return True
        return False
    if op == "starts_with":
        return any(fold(s).startswith(fold(value)) for s in strings)
    if op == "ends_with":
        return any(fold(s).endswith(fold(value)) for s in strings)
    if op == "regex":
        return any(re.search(value, s, re.IGNORECASE if ci else 0) for s in strings)
    if op == "text":
        return any(value.lower() in s.lower() for s in strings)
    want = _tokens(value)
    if op == "phrase":
        n = len(want)
        return any(
            any(toks[i : i + n] == want for i in range(len(toks) - n + 1)) for toks in map(_tokens, strings)
        )
    if op == "words":
        return any(set(want) <= set(_tokens(s)) for s in strings)
    raise ValueError(f"oracle: unknown operator {op!r}")


class _Eval:
    def __init__(self, record: Mapping[str, Any], dt_fields: frozenset[str], aliases: Mapping[str, str]):
        self.record, self.dt_fields, self.aliases = record, dt_fields, aliases

    def value(self, path: str, wire: str, op: str, value: Any) -> Any:
        if not {path, wire} & self.dt_fields or op in ("exists", "is_null"):
            return value
        if isinstance(value, list):
            return [_to_dt(v) for v in value]
        return _to_dt(value)

    def cond(self, path: str, op: str, value: Any, ci: bool) -> bool:
        stored = self.aliases.get(path, path)
        return _condition(self.record, stored, op, self.value(stored, path, op, value), ci)

    def node(self, flt: Mapping[str, Any], case_sensitive: bool) -> bool:
        cs = flt.get("case_sensitive")
        cs = case_sensitive if cs is None else cs
        if "field" in flt:
            op = (flt.get("operator") or "eq").lower()
            value = flt.get("value")
            if op in ("exists", "is_null") and value is None:
                value = True
            return self.cond(flt["field"], op, value, not cs)
        for key, val in flt.items():
            if key == "case_sensitive":
                continue
            kind = LOGICAL.get(key)
            if kind is None:
                if val is None:
                    ok = self.cond(key, "is_null", True, not cs)
                elif isinstance(val, list):
                    ok = self.cond(key, "in", val, not cs)
                else:
                    ok = self.cond(key, "eq", val, not cs)
            elif not val:
                ok = True
            elif kind == "AND":
                ok = all(self.node(c, cs) for c in val)
            elif kind == "OR":
                ok = any(self.node(c, cs) for c in val)
            else:
                ok = not any(self.node(c, cs) for c in val)
            if not ok:
                return False
        return True


def oracle_match(
    record: Mapping[str, Any],
    flt: Mapping[str, Any] | None,
    *,
    datetime_fields: frozenset[str] = frozenset(),
    aliases: Mapping[str, str] = {},
) -> bool:
    """Whether `record` matches the wire filter `flt` (None / {} match everything)."""
    if not flt:
        return True
    return _Eval(record, datetime_fields, aliases).node(flt, False)


def oracle_select(records: Iterable[Mapping[str, Any]], flt: Mapping[str, Any] | None, **kw: Any) -> list:
    """The records that match, in their order."""
    return [r for r in records if oracle_match(r, flt, **kw)]
