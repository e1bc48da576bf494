"""The one filter language (contract §1.6): raw JSON -> typed tree -> MongoDB query. Pure, no I/O.

    node = parse_filter(body.get("filters"), schema=CLUSTER_SCHEMA, where="filters")
    query = combine({"namespace_id": ns}, to_mongo(node))

Errors are `InvalidFilter` (HTTP 400) whose message starts with the offending path in the request,
e.g. `filters.AND[1].operator: 'foo' is not a known operator (valid: eq, ne, ...)`.

Where the contract leaves room (tests/filter_oracle.py states the same as a reference evaluator):
eq/in with null mean missing-or-null; declared fields are typed (a number field takes numbers, a
bool field booleans, string fields strings, datetime fields ISO-8601 or epoch seconds, compared at
BSON's millisecond precision); ordering of strings is by code point and case-sensitive; text,
phrase and words are always case-insensitive; a `regex` value runs on MongoDB's PCRE, whose word,
digit and boundary classes are ASCII-only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.filter_ops import GEO_OPS, InvalidFilter, Kind, Op, check_value, cond_to_mongo, fail, show

__all__ = [
    "CLUSTER_SCHEMA",
    "DOCUMENT_SCHEMA",
    "EXECUTION_SCHEMA",
    "And",
    "Cond",
    "InvalidFilter",
    "Kind",
    "Node",
    "Not",
    "Op",
    "Or",
    "Schema",
    "check_path",
    "combine",
    "compile_filter",
    "parse_filter",
    "to_mongo",
]

MAX_DEPTH = 5
MAX_CONDITIONS = 100
MAX_PATH = 200
_LOGICAL = {"AND": "AND", "and": "AND", "OR": "OR", "or": "OR", "NOT": "NOT", "not": "NOT"}
_COND_KEYS = ("field", "operator", "value", "case_sensitive")
_VALID_OPS = ", ".join(op.value for op in Op)


def check_path(path: Any, where: str) -> str:
    """A dotted path a query may name: non-empty segments, none starting with `$`, no NUL."""
    if not isinstance(path, str) or not path:
        raise fail(where, "a field name must be a non-empty string")
    if len(path) > MAX_PATH:
        raise fail(where, f"field name longer than {MAX_PATH} characters")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise fail(where, "field name is not valid UTF-8") from None
    if "\x00" in path or any(not seg or seg.startswith("$") for seg in path.split(".")):
        raise fail(
            where,
            f"invalid field name {show(path)} (dot-separated, no empty part, no part starting with '$')",
        )
    return path


def _under(path: str, prefix: str) -> bool:
    if prefix.endswith("."):
        return path.startswith(prefix)
    return path == prefix or path.startswith(prefix + ".")


@dataclass(frozen=True)
class Schema:
    """The paths a resource's filters may name, and how each is stored."""

    resource: str
    fields: Mapping[str, Kind]
    open_prefixes: tuple[str, ...] = ()
    open: bool = False
    forbidden_prefixes: tuple[str, ...] = ()
    aliases: Mapping[str, str] = field(default_factory=dict)

    def resolve(self, path: Any, where: str | None = None) -> tuple[str, Kind]:
        """(stored path, kind) for a wire path; InvalidFilter naming `where` if it may not be used."""
        where = where if where is not None else str(path)
        stored = self.aliases.get(check_path(path, where), path)
        if stored in self.fields:
            return stored, self.fields[stored]
        if any(_under(stored, p) for p in self.forbidden_prefixes):
            raise fail(where, f"{show(path)} cannot be used in {self.resource} filters")
        if self.open or any(stored.startswith(p) for p in self.open_prefixes):
            return stored, Kind.ANY
        raise fail(where, f"unknown field {show(path)} for {self.resource} (allowed: {self._allowed()})")

    def kind_of(self, path: str) -> Kind:
        """ANY for open paths, the declared kind for known ones; InvalidFilter for others."""
        return self.resolve(path)[1]

    def _allowed(self) -> str:
        names = sorted({*self.fields, *self.aliases}) + [p + "*" for p in self.open_prefixes]
        return ", ".join(names[:40]) + (", ..." if len(names) > 40 else "")


# ---- the typed tree ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Cond:
    path: str  # stored path (aliases resolved)
    op: Op
    value: Any  # validated: datetimes parsed, lists as tuples
    case_sensitive: bool = False
    kind: Kind = Kind.ANY


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]  # empty = always true (only inside NOT)


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    children: tuple[Node, ...]  # none of them true


Node = And | Or | Not | Cond
TRUE = And(())


def _conj(parts: list[Node]) -> Node | None:
    flat: list[Node] = []
    for p in parts:
        flat.extend(p.children if isinstance(p, And) and p.children else [p])
    if not flat:
        return None
    return flat[0] if len(flat) == 1 else And(tuple(flat))


class _Parser:
    def __init__(self, schema: Schema, where: str, max_depth: int):
        self.schema, self.where, self.max_depth = schema, where, max_depth
        self.count = 0

    def _counted(self, cond: Cond) -> Cond:
        self.count += 1
        if self.count > MAX_CONDITIONS:
            raise fail(self.where, f"more than {MAX_CONDITIONS} conditions (the limit is {MAX_CONDITIONS})")
        return cond

    @staticmethod
    def _flag(raw: dict[str, Any], path: str, inherited: bool) -> bool:
        value = raw.get("case_sensitive")
        if value is None:
            return inherited
        if not isinstance(value, bool):
            raise fail(f"{path}.case_sensitive", f"must be true or false, got {show(value)}")
        return value

    def node(self, raw: Any, path: str, depth: int, cs: bool) -> Node | None:
        if not isinstance(raw, dict):
            raise fail(path, f"must be an object (a filter node or condition), got {show(raw)}")
        if "field" in raw:
            return self.cond(raw, path, cs)
        if depth > self.max_depth:
            raise fail(self.where, f"depth {depth} exceeds the limit of {self.max_depth} (at {path})")
        cs = self._flag(raw, path, cs)
        parts: list[Node] = []
        for key, value in raw.items():
            if key == "case_sensitive":
                continue
            logical = _LOGICAL.get(key)
            if logical is None:
                if key in ("operator", "value"):
                    raise fail(f"{path}.{key}", "a condition needs 'field'")
                parts.append(self.shorthand(key, value, f"{path}.{key}", cs))
                continue
            if value is None:
                continue
            if not isinstance(value, list):
                raise fail(f"{path}.{key}", f"must be a list of filters, got {show(value)}")
            kids = [self.node(item, f"{path}.{key}[{i}]", depth + 1, cs) for i, item in enumerate(value)]
            real = [k for k in kids if k is not None]  # None: a child that constrains nothing
            if logical == "AND":
                parts.extend(real)
            elif logical == "OR":
                if real and len(real) == len(kids):  # an always-true branch makes the OR no constraint
                    parts.append(real[0] if len(real) == 1 else Or(tuple(real)))
            elif kids:
                parts.append(Not(tuple(TRUE if k is None else k for k in kids)))
        return _conj(parts)

    def shorthand(self, key: str, value: Any, path: str, cs: bool) -> Cond:
        stored, kind = self.schema.resolve(key, path)
        if isinstance(value, dict):
            if value.get("type") == "dynamic":
                raise fail(path, "dynamic values are only supported in retrievers; give a literal value")
            raise fail(path, "a shorthand value must be a scalar or a list, not an object")
        op = Op.IN if isinstance(value, list) else Op.IS_NULL if value is None else Op.EQ
        checked = check_value(op, kind, True if value is None else value, path, present=True)
        return self._counted(Cond(stored, op, checked, cs, kind))

    def cond(self, raw: dict[str, Any], path: str, inherited: bool) -> Cond:
        for key, value in raw.items():
            if key not in _COND_KEYS and not (key in _LOGICAL and value in (None, [])):
                raise fail(f"{path}.{key}", f"unknown key in a condition (allowed: {', '.join(_COND_KEYS)})")
        stored, kind = self.schema.resolve(raw["field"], f"{path}.field")
        op = self.operator(raw.get("operator"), f"{path}.operator")
        cs = self._flag(raw, path, inherited)
        value = check_value(op, kind, raw.get("value"), f"{path}.value", present="value" in raw)
        return self._counted(Cond(stored, op, value, cs, kind))

    @staticmethod
    def operator(raw: Any, path: str) -> Op:
        if raw is None:
            return Op.EQ
        if not isinstance(raw, str):
            raise fail(path, f"must be a string, got {show(raw)}")
        name = raw.lower()
        if name in GEO_OPS:
            raise fail(path, f"'{raw}' is not supported yet", code="operator_not_supported")
        try:
            return Op(name)
        except ValueError:
            raise fail(path, f"{show(raw)} is not a known operator (valid: {_VALID_OPS})") from None


def parse_filter(
    raw: Any, *, schema: Schema, where: str = "filters", max_depth: int = MAX_DEPTH
) -> Node | None:
    """The typed tree of a raw filter; None when it constrains nothing (None, {}, empty lists)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise fail(where, f"must be an object, got {show(raw)}")
    return _Parser(schema, where, max_depth).node(raw, where, 1, False)


def combine(*queries: dict[str, Any]) -> dict[str, Any]:
    """AND of queries: merged into one dict when their keys differ, else `{"$and": [...]}`."""
    parts: list[dict[str, Any]] = []
    for q in queries:
        if q:
            parts.extend(q["$and"] if set(q) == {"$and"} else [q])
    if len(parts) <= 1:
        return parts[0] if parts else {}
    merged: dict[str, Any] = {}
    for p in parts:
        if merged.keys() & p.keys():
            return {"$and": parts}
        merged.update(p)
    return merged


def to_mongo(node: Node | None) -> dict[str, Any]:
    """A plain MongoDB query for the tree ({} for None)."""
    if node is None:
        return {}
    if isinstance(node, Cond):
        return cond_to_mongo(node.path, node.op, node.value, node.case_sensitive, node.kind)
    if isinstance(node, And):
        return combine(*(to_mongo(c) for c in node.children))
    if isinstance(node, Or):
        branches: list[dict[str, Any]] = []
        for c in node.children:
            q = to_mongo(c)
            if not q:
                return {}
            branches.extend(q["$or"] if set(q) == {"$or"} else [q])
        return branches[0] if len(branches) == 1 else {"$or": branches}
    return {"$nor": [to_mongo(c) for c in node.children]}


def compile_filter(raw: Any, *, schema: Schema, where: str = "filters") -> dict[str, Any]:
    """parse_filter + to_mongo."""
    return to_mongo(parse_filter(raw, schema=schema, where=where))


# ---- the platform's resources -------------------------------------------------------------------

S, KL, KU, N, DT, B = (
    Kind.STRING,
    Kind.KEYWORD_LOWER,
    Kind.KEYWORD_UPPER,
    Kind.NUMBER,
    Kind.DATETIME,
    Kind.BOOL,
)

CLUSTER_SCHEMA = Schema(
    resource="clusters",
    fields={
        **dict.fromkeys(["cluster_id", "cluster_name", "description", "last_run_id", "error"], S),
        **dict.fromkeys(["input_collections", "feature_uris", "clustered_attributes"], S),  # arrays
        **dict.fromkeys(["algorithm", "cluster_type", "failure_category"], KL),
        "status": KU,
        **dict.fromkeys(
            ["num_clusters", "num_documents_clustered", "sample_size", "execution_time_seconds"], N
        ),
        **dict.fromkeys(["created_at", "updated_at", "last_executed_at", "completed_at"], DT),
        "hierarchy_detected": B,
    },
    open_prefixes=("metadata.", "algorithm_params.", "quality_metrics."),
    forbidden_prefixes=("namespace_id", "_id"),
    aliases={"collection_ids": "input_collections", "num_documents": "num_documents_clustered"},
)

EXECUTION_SCHEMA = Schema(
    resource="executions",
    fields={
        **dict.fromkeys(["run_id", "run_name", "error_message", "task_id"], S),
        **dict.fromkeys(["centroids.label", "centroids.summary", "centroids.cluster_id"], S),
        **dict.fromkeys(["status", "mode", "failure_category", "config.algorithm"], KL),
        **dict.fromkeys(["created_at", "completed_at", "started_at"], DT),
        **dict.fromkeys(
            ["num_clusters", "num_points", "execution_time_ms", "attempts", "noise_points"]
            + ["source_documents", "vectors_retrieved", "vectors_clustered", "centroids.num_members"],
            N,
        ),
    },
    open_prefixes=("metrics.",),
    forbidden_prefixes=(
        "namespace_id",
        "cluster_id",  # the route fixes it
        "error_traceback",
        "centroids.centroid_vector",
        "config.",
        "_id",
    ),
    aliases={"algorithm": "config.algorithm"},
)

DOCUMENT_SCHEMA = Schema(
    resource="documents",
    fields={"document_id": S, "collection_id": S, "created_at": DT, "updated_at": DT},
    open=True,
    forbidden_prefixes=("vectors", "_id", "namespace_id"),
)
