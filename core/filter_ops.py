"""Filter operators: value checks and the MongoDB query each condition becomes (contract §1.6).

Every query built here is one real MongoDB (4.4+) evaluates as documented; regexes use only syntax
that Python's `re` and PCRE read alike (no `\\b`, `\\w`, `\\z`, or `$` before a trailing newline).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from core.errors import BadRequest

MAX_IN = 1000
MAX_STRING = 1024
MAX_REGEX = 256
MAX_PATTERN = 16_000  # per alternation chunk of an `in`; MongoDB refuses regexes near 32 KB
INT64 = 2**63


class InvalidFilter(BadRequest):
    code = "invalid_filter"


class Kind(StrEnum):
    """How a field's values are stored and compared."""

    STRING = "string"
    KEYWORD_LOWER = "keyword_lower"
    KEYWORD_UPPER = "keyword_upper"
    NUMBER = "number"
    DATETIME = "datetime"
    BOOL = "bool"
    ANY = "any"


class Op(StrEnum):
    EQ = "eq"
    NE = "ne"
    GT = "gt"
    LT = "lt"
    GTE = "gte"
    LTE = "lte"
    IN = "in"
    NIN = "nin"
    CONTAINS = "contains"
    STARTS_WITH = "starts_with"
    ENDS_WITH = "ends_with"
    REGEX = "regex"
    EXISTS = "exists"
    IS_NULL = "is_null"
    TEXT = "text"
    PHRASE = "phrase"
    WORDS = "words"


GEO_OPS = frozenset({"geo_radius", "geo_bounding_box", "geo_polygon"})
RANGE_OPS = frozenset({Op.GT, Op.GTE, Op.LT, Op.LTE})
LIST_OPS = frozenset({Op.IN, Op.NIN})
FLAG_OPS = frozenset({Op.EXISTS, Op.IS_NULL})
PATTERN_OPS = frozenset({Op.STARTS_WITH, Op.ENDS_WITH, Op.REGEX, Op.TEXT, Op.PHRASE, Op.WORDS})
KEYWORDS = frozenset({Kind.KEYWORD_LOWER, Kind.KEYWORD_UPPER})
STRINGY = frozenset({Kind.STRING, Kind.KEYWORD_LOWER, Kind.KEYWORD_UPPER})

# A word is a run of ASCII letters, digits, `_` or any non-ASCII character; everything else (ASCII
# spaces, punctuation, controls) separates words. Spelled with \xHH so Python and PCRE agree.
_SEP_CLASS = r"\x00-\x2F\x3A-\x40\x5B-\x5E\x60\x7B-\x7F"
WORD_CHAR = f"[^{_SEP_CLASS}]"
SEPARATOR = f"[{_SEP_CLASS}]"
_WORDS_RE = re.compile(f"{WORD_CHAR}+")
START = "^"
END = r"(?![\s\S])"  # end of string; `$` would also match before a final newline
_FLAGS_GROUP = re.compile(r"\(\?([a-zA-Z]*)[-:)]")


def show(value: Any, limit: int = 60) -> str:
    """repr() for a message, cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def fail(path: str, reason: str, *, code: str | None = None) -> InvalidFilter:
    return InvalidFilter(f"{path}: {reason}", code=code, details={"path": path})


def words_of(text: str) -> list[str]:
    return _WORDS_RE.findall(text)


def literal(text: str) -> str:
    """A regex matching `text` literally; NUL spelled out (MongoDB rejects NUL in a pattern)."""
    return re.escape(text).replace("\x00", r"\x00")


# ---- values ---------------------------------------------------------------------------------


def _scalar(raw: Any, path: str) -> Any:
    if isinstance(raw, dict):
        if raw.get("type") == "dynamic":
            raise fail(path, "dynamic values are only supported in retrievers; give a literal value")
        raise fail(path, "must be a JSON scalar (string, number, boolean or null), not an object")
    if isinstance(raw, list):
        raise fail(path, "must be a JSON scalar, not a list (use operator 'in' for a list)")
    if isinstance(raw, bool) or raw is None:
        return raw
    if isinstance(raw, int):
        if not -INT64 <= raw < INT64:
            raise fail(path, "integer is out of the 64-bit range")
        return raw
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise fail(path, "must be a finite number")
        return raw
    if isinstance(raw, str):
        if len(raw) > MAX_STRING:
            raise fail(path, f"string longer than {MAX_STRING} characters")
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError:
            raise fail(path, "string is not valid UTF-8") from None
        return raw
    raise fail(path, f"unsupported value type {type(raw).__name__}")


def parse_datetime(raw: Any, path: str) -> datetime:
    """ISO-8601 (trailing `Z` ok, naive = UTC) or epoch seconds -> aware UTC, millisecond precision."""
    try:
        if isinstance(raw, bool):
            raise ValueError
        if isinstance(raw, int | float):
            dt = datetime.fromtimestamp(raw, UTC)
        elif isinstance(raw, str):
            dt = datetime.fromisoformat(raw.strip())
            dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
        else:
            raise ValueError
    except (ValueError, OverflowError, OSError):
        raise fail(path, f"{show(raw)} is not an ISO-8601 datetime or epoch seconds") from None
    # BSON datetimes hold milliseconds: compare at that precision on both sides
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def _typed(op: Op, kind: Kind, raw: Any, path: str) -> Any:
    """One scalar, checked against the field's kind."""
    v = _scalar(raw, path)
    if v is None:
        if op not in (Op.EQ, Op.NE, Op.IN, Op.NIN):
            raise fail(path, f"null is not a valid value for operator '{op}'")
        return None
    if kind is Kind.DATETIME:
        return parse_datetime(v, path)
    if kind is Kind.NUMBER and (isinstance(v, bool) or not isinstance(v, int | float)):
        raise fail(path, f"expects a number, got {show(v)}")
    if kind is Kind.BOOL and not isinstance(v, bool):
        raise fail(path, f"expects true or false, got {show(v)}")
    if kind in STRINGY and not isinstance(v, str):
        raise fail(path, f"expects a string, got {show(v)}")
    return v


def check_value(op: Op, kind: Kind, raw: Any, path: str, *, present: bool) -> Any:
    """Validate and normalise a condition's value for `op` on a field of `kind`."""
    if op in FLAG_OPS:
        if not present or raw is None:
            return True
        if not isinstance(raw, bool):
            raise fail(path, f"operator '{op}' expects true or false, got {show(raw)}")
        return raw
    if op in LIST_OPS:
        if isinstance(raw, dict):
            _scalar(raw, path)  # the dynamic-value / object message
        if not isinstance(raw, list):
            raise fail(path, f"operator '{op}' expects a list of values")
        if len(raw) > MAX_IN:
            raise fail(path, f"list has {len(raw)} items, more than the limit of {MAX_IN}")
        return tuple(_typed(op, kind, item, f"{path}[{i}]") for i, item in enumerate(raw))
    if op in RANGE_OPS and kind is Kind.BOOL:
        raise fail(path, f"operator '{op}' does not apply to a boolean field")
    if (op in PATTERN_OPS or op is Op.CONTAINS) and kind in (Kind.NUMBER, Kind.DATETIME, Kind.BOOL):
        raise fail(path, f"operator '{op}' applies to text fields, not a {kind} field")
    v = _typed(op, kind, raw, path)
    if op in PATTERN_OPS and not isinstance(v, str):
        raise fail(path, f"operator '{op}' expects a string, got {show(v)}")
    if op is Op.REGEX:
        return _check_regex(v, path)
    if op in (Op.PHRASE, Op.WORDS) and not words_of(v):
        raise fail(path, f"operator '{op}' needs at least one word in the value")
    return v


def _check_regex(pattern: str, path: str) -> str:
    if len(pattern) > MAX_REGEX:
        raise fail(path, f"regex longer than {MAX_REGEX} characters")
    if "\x00" in pattern:
        raise fail(path, "regex must not contain a NUL character")
    try:
        re.compile(pattern)
    except (re.error, OverflowError, RecursionError) as exc:
        raise fail(path, f"invalid regex: {exc}") from None
    if _python_only(pattern):
        raise fail(path, r"regex uses Python-only syntax (\u, \U, \N, \Z or the a/u/L flags)")
    return pattern


def _python_only(pattern: str) -> bool:
    """Syntax Python's `re` reads but PCRE rejects or reads otherwise: \\u \\U \\N \\Z, flags a u L."""
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\":
            if pattern[i + 1 : i + 2] in ("u", "U", "N", "Z"):
                return True
            i += 2
            continue
        m = _FLAGS_GROUP.match(pattern, i)
        if m and set(m.group(1)) & {"a", "u", "L"}:
            return True
        i += 1
    return False


# ---- translation ----------------------------------------------------------------------------


def _rx(pattern: str, ci: bool) -> dict[str, Any]:
    return {"$regex": pattern, "$options": "i"} if ci else {"$regex": pattern}


def _fold(kind: Kind, s: str) -> str:
    return s.upper() if kind is Kind.KEYWORD_UPPER else s.lower()


def _eq_expr(kind: Kind, v: Any, ci: bool) -> Any:
    """What goes after `path:` (or inside `$elemMatch`) to test equality with v."""
    if isinstance(v, str) and ci:
        if kind in KEYWORDS:  # stored in one case: an exact match an index can serve
            return _fold(kind, v)
        return _rx(START + literal(v) + END, True)
    return v


def _in_parts(path: str, kind: Kind, values: tuple[Any, ...], ci: bool) -> list[dict[str, Any]]:
    if not ci or kind in KEYWORDS:
        return [{path: {"$in": [_fold(kind, v) if ci and isinstance(v, str) else v for v in values]}}]
    others = [v for v in values if not isinstance(v, str)]
    strings = list(dict.fromkeys(literal(v) for v in values if isinstance(v, str)))
    parts: list[dict[str, Any]] = [{path: {"$in": others}}] if others or not strings else []
    chunk: list[str] = []
    for i, s in enumerate(strings):
        chunk.append(s)
        if i == len(strings) - 1 or sum(map(len, chunk)) + len(strings[i + 1]) > MAX_PATTERN:
            parts.append({path: _rx(START + "(?:" + "|".join(chunk) + ")" + END, True)})
            chunk = []
    return parts


def _any(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return parts[0] if len(parts) == 1 else {"$or": parts}


def _positive(path: str, op: Op, kind: Kind, v: Any, ci: bool) -> dict[str, Any]:
    if op in (Op.EQ, Op.NE):
        return {path: _eq_expr(kind, v, ci)}
    if op in LIST_OPS:
        return _any(_in_parts(path, kind, v, ci))
    raise AssertionError(op)


def cond_to_mongo(path: str, op: Op, v: Any, case_sensitive: bool, kind: Kind) -> dict[str, Any]:
    """The MongoDB query for one validated condition."""
    ci = not case_sensitive
    if op is Op.EQ or op is Op.IN:
        return _positive(path, op, kind, v, ci)
    if op is Op.NE or op is Op.NIN:
        q = _positive(path, op, kind, v, ci)
        if set(q) == {path}:
            inner = q[path]
            if not isinstance(inner, dict):
                return {path: {"$ne": inner}}
            if set(inner) == {"$in"}:
                return {path: {"$nin": inner["$in"]}}
        elif set(q) == {"$or"}:
            return {"$nor": q["$or"]}
        return {"$nor": [q]}  # portable negation of a regex (no `$not` around `$regex`)
    if op in RANGE_OPS:
        return {path: {f"${op}": v}}
    if op is Op.EXISTS:
        return {path: {"$exists": v}}
    if op is Op.IS_NULL:
        return {path: None} if v else {path: {"$ne": None}}
    if op is Op.CONTAINS:
        e = _eq_expr(kind, v, ci)
        element = {path: {"$elemMatch": e if isinstance(e, dict) else {"$eq": e}}}
        if not isinstance(v, str):
            return element
        # a string contains v, or an array has an element equal to v (not an element containing it)
        substring = {path: {**_rx(literal(v), ci), "$not": {"$type": "array"}}}
        return {"$or": [substring, element]}
    if op is Op.STARTS_WITH:
        return {path: _rx(START + literal(v), ci)}
    if op is Op.ENDS_WITH:
        return {path: _rx(literal(v) + END, ci)}
    if op is Op.REGEX:
        return {path: _rx(v, ci)}
    if op is Op.TEXT:
        return {path: _rx(literal(v), True)}
    before, after = f"(?<!{WORD_CHAR})", f"(?!{WORD_CHAR})"
    tokens = words_of(v)
    if op is Op.PHRASE:
        return {path: _rx(before + f"{SEPARATOR}+".join(map(literal, tokens)) + after, True)}
    if op is Op.WORDS:
        unique = {t.lower(): t for t in tokens}.values()
        looks = "".join(rf"(?=[\s\S]*?{before}{literal(t)}{after})" for t in unique)
        return {path: _rx(START + looks, True)}
    raise AssertionError(op)
