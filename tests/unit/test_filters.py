"""core.filters: parsing, the query each operator becomes, schemas, and every error with its path."""

from __future__ import annotations

import math
import random
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from core.errors import BadRequest
from core.filters import (
    CLUSTER_SCHEMA,
    DOCUMENT_SCHEMA,
    EXECUTION_SCHEMA,
    And,
    Cond,
    InvalidFilter,
    Kind,
    Not,
    Op,
    Or,
    Schema,
    combine,
    compile_filter,
    parse_filter,
    to_mongo,
)
from tests.filter_checks import check_portable

SCHEMA = Schema(
    resource="things",
    fields={
        "name": Kind.STRING,
        "status": Kind.KEYWORD_UPPER,
        "mode": Kind.KEYWORD_LOWER,
        "count": Kind.NUMBER,
        "created_at": Kind.DATETIME,
        "flag": Kind.BOOL,
    },
    open_prefixes=("metadata.",),
    forbidden_prefixes=("secret", "hidden."),
    aliases={"n": "count"},
)
END = r"(?![\s\S])"
UNKNOWN_KEY = "unknown key in a condition (allowed: field, operator, value, case_sensitive)"
NOT_ARRAY = {"$not": {"$type": "array"}}


def q(raw: Any, schema: Schema = SCHEMA) -> dict[str, Any]:
    return compile_filter(raw, schema=schema)


def c(field: str, op: str | None = None, value: Any = None, **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"field": field, "value": value, **kw}
    if op is not None:
        out["operator"] = op
    return out


def err(raw: Any, schema: Schema = SCHEMA, where: str = "filters") -> InvalidFilter:
    with pytest.raises(InvalidFilter) as info:
        compile_filter(raw, schema=schema, where=where)
    return info.value


def rx(pattern: str, ci: bool = True) -> dict[str, Any]:
    return {"$regex": pattern, "$options": "i"} if ci else {"$regex": pattern}


def matches(query: dict[str, Any], path: str, s: str) -> bool:
    """Evaluate a single-path $regex query in Python (enough for checking the patterns themselves)."""
    expr = query[path]
    return bool(re.search(expr["$regex"], s, re.IGNORECASE if expr.get("$options") == "i" else 0))


# ---- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [None, {}, {"case_sensitive": False}, {"AND": []}, {"OR": []}, {"NOT": []}, {"AND": None}, {"OR": [{}]}],
)
def test_no_constraint(raw: Any) -> None:
    assert parse_filter(raw, schema=SCHEMA) is None
    assert q(raw) == {}
    assert to_mongo(None) == {}


def test_shorthand() -> None:
    assert parse_filter({"name": "x"}, schema=SCHEMA) == Cond("name", Op.EQ, "x", False, Kind.STRING)
    assert parse_filter({"count": [1, 2]}, schema=SCHEMA) == Cond("count", Op.IN, (1, 2), False, Kind.NUMBER)
    assert parse_filter({"metadata.x": None}, schema=SCHEMA) == Cond("metadata.x", Op.IS_NULL, True)
    assert q({"flag": True, "count": 3}) == {"flag": True, "count": 3}


def test_all_parts_of_a_node_are_anded() -> None:
    raw = {
        "status": "failed",
        "AND": [c("count", "gt", 1)],
        "OR": [{"n": 1}, {"n": 2}],
        "NOT": [{"flag": True}],
    }
    node = parse_filter(raw, schema=SCHEMA)
    assert isinstance(node, And) and [type(k) for k in node.children] == [Cond, Cond, Or, Not]
    assert q(raw) == {
        "status": "FAILED",
        "count": {"$gt": 1},
        "$or": [{"count": 1}, {"count": 2}],
        "$nor": [{"flag": True}],
    }


def test_lowercase_logical_keys() -> None:
    assert q({"and": [{"n": 1}], "or": [{"n": 2}, {"n": 3}], "not": [{"n": 4}]}) == q(
        {"AND": [{"n": 1}], "OR": [{"n": 2}, {"n": 3}], "NOT": [{"n": 4}]}
    )


def test_condition_defaults_and_root_condition() -> None:
    assert q({"field": "n", "value": 2}) == {"count": 2}
    assert q(c("n", None, 2)) == q(c("n", "eq", 2)) == q(c("n", "EQ", 2))
    assert q({"field": "flag", "operator": "exists"}) == {"flag": {"$exists": True}}
    assert q({"field": "flag", "operator": "is_null", "value": None}) == {"flag": None}
    assert q({"field": "metadata.x"}) == {"metadata.x": None}  # a value left out is null


def test_what_the_mixpeek_sdk_sends() -> None:
    # ListClustersRequest.from_dict({"filters": {"AND": [{"field": "status", "operator": "eq", "value":
    # "completed"}, {"OR": [{"field": "cluster_name", ...}], "NOT": [{"error": None}]}]}}).to_dict()
    # with mixpeek 1.3.783: every node and condition gains "case_sensitive": false
    wire = {
        "AND": [
            {"case_sensitive": False, "field": "status", "operator": "eq", "value": "completed"},
            {
                "OR": [
                    {"case_sensitive": False, "field": "cluster_name", "operator": "contains", "value": "Q3"}
                ],
                "NOT": [{"case_sensitive": False, "error": None}],
                "case_sensitive": False,
            },
        ],
        "case_sensitive": False,
    }
    assert wire["AND"][0]["case_sensitive"] is False  # the SDK adds it to every condition
    assert q(wire, CLUSTER_SCHEMA) == {
        "status": "COMPLETED",
        "$or": [
            {"cluster_name": {**rx(r"Q3"), **NOT_ARRAY}},
            {"cluster_name": {"$elemMatch": rx(r"^Q3" + END)}},
        ],
        "$nor": [{"error": None}],
    }


def test_case_sensitive_inherited_and_overridden() -> None:
    raw = {
        "case_sensitive": True,
        "AND": [
            c("name", "eq", "A"),  # inherits True
            c("name", "eq", "B", case_sensitive=False),  # its own wins
            {"OR": [c("name", "eq", "C"), c("name", "eq", "D")]},  # nested node inherits
            {
                "case_sensitive": False,
                "AND": [c("name", "eq", "E"), c("name", "eq", "F", case_sensitive=True)],
            },
        ],
        "metadata.g": "G",  # shorthand inherits
    }
    node = parse_filter(raw, schema=SCHEMA)
    assert isinstance(node, And)
    flags: dict[str, bool] = {}

    def walk(n: Any) -> None:
        if isinstance(n, Cond):
            flags[n.value] = n.case_sensitive
        else:
            for k in n.children:
                walk(k)

    walk(node)
    assert flags == {"A": True, "B": False, "C": True, "D": True, "E": False, "F": True, "G": True}


def test_or_and_not_shapes() -> None:
    assert q({"OR": [{"n": 1}]}) == {"count": 1}
    assert q({"OR": [{"n": 1}, {"OR": [{"n": 2}, {"n": 3}]}]}) == {"$or": [{"count": k} for k in (1, 2, 3)]}
    assert q({"OR": [{"n": 1}, {"case_sensitive": True}]}) == {}  # an always-true branch
    assert q({"NOT": [{"n": 1}, {"n": 2}]}) == {"$nor": [{"count": 1}, {"count": 2}]}
    assert q({"NOT": [{}]}) == {"$nor": [{}]}  # none of (always true): nothing matches
    assert q({"AND": [{"n": 1}, {"AND": [{"n": 2}]}]}) == {"$and": [{"count": 1}, {"count": 2}]}


def test_combine() -> None:
    assert combine({"namespace_id": "ns"}, {}) == {"namespace_id": "ns"}
    assert combine({"namespace_id": "ns"}, {"a": 1}) == {"namespace_id": "ns", "a": 1}
    assert combine({"a": 1}, {"a": 2}) == {"$and": [{"a": 1}, {"a": 2}]}
    assert combine({"$or": [{"a": 1}]}, {"$and": [{"b": 1}, {"$or": [{"c": 1}]}]}) == {
        "$and": [{"$or": [{"a": 1}]}, {"b": 1}, {"$or": [{"c": 1}]}]
    }
    assert combine() == {}


# ---- what each operator becomes ------------------------------------------------------------------


def test_eq() -> None:
    assert q(c("name", "eq", "a.b*c(")) == {"name": rx("^" + re.escape("a.b*c(") + END)}
    assert q(c("name", "eq", "a.b*c(", case_sensitive=True)) == {"name": "a.b*c("}
    assert q(c("status", "eq", "completed")) == {"status": "COMPLETED"}  # exact: an index serves it
    assert q(c("mode", "eq", "FULL")) == {"mode": "full"}
    assert q(c("mode", "eq", "FULL", case_sensitive=True)) == {"mode": "FULL"}
    assert q(c("metadata.k", "eq", 2.5)) == {"metadata.k": 2.5}
    assert q(c("metadata.k", "eq", False)) == {"metadata.k": False}
    assert q(c("metadata.k", "eq", None)) == {"metadata.k": None}
    eq = q(c("name", "eq", "ABC"))
    assert matches(eq, "name", "abc") and not matches(eq, "name", "abc\n") and not matches(eq, "name", "xabc")


def test_ne_uses_nor_for_patterns() -> None:
    assert q(c("name", "ne", "Ab")) == {"$nor": [{"name": rx("^Ab" + END)}]}
    assert q(c("name", "ne", "Ab", case_sensitive=True)) == {"name": {"$ne": "Ab"}}
    assert q(c("status", "ne", "failed")) == {"status": {"$ne": "FAILED"}}
    assert q(c("n", "ne", 3)) == {"count": {"$ne": 3}}
    assert q(c("n", "ne", None)) == {"count": {"$ne": None}}


@pytest.mark.parametrize("op", ["gt", "gte", "lt", "lte"])
def test_ranges(op: str) -> None:
    assert q(c("n", op, 5)) == {"count": {f"${op}": 5}}
    assert q(c("name", op, "m")) == {"name": {f"${op}": "m"}}  # code-point order, case-sensitive
    when = datetime(2025, 1, 15, 10, 30, tzinfo=UTC)
    assert q(c("created_at", op, "2025-01-15T10:30:00Z")) == {"created_at": {f"${op}": when}}


def test_in_and_nin() -> None:
    assert q(c("n", "in", [1, 2.5])) == {"count": {"$in": [1, 2.5]}}
    assert q(c("n", "nin", [1])) == {"count": {"$nin": [1]}}
    assert q(c("status", "in", ["failed", "Completed"])) == {"status": {"$in": ["FAILED", "COMPLETED"]}}
    assert q(c("name", "in", ["A", "b"], case_sensitive=True)) == {"name": {"$in": ["A", "b"]}}
    assert q(c("name", "in", ["A", "b."])) == {"name": rx(r"^(?:A|b\.)" + END)}
    mixed = q(c("metadata.k", "in", ["A", 1, True, None]))
    assert mixed == {"$or": [{"metadata.k": {"$in": [1, True, None]}}, {"metadata.k": rx("^(?:A)" + END)}]}
    assert q(c("metadata.k", "nin", ["A", 1])) == {
        "$nor": [{"metadata.k": {"$in": [1]}}, {"metadata.k": rx("^(?:A)" + END)}]
    }
    assert q(c("name", "nin", ["A"])) == {"$nor": [{"name": rx("^(?:A)" + END)}]}
    assert q(c("n", "in", [])) == {"count": {"$in": []}}


def test_long_in_lists_split_into_several_patterns() -> None:
    values = [f"{i:04d}" + "x" * 900 for i in range(40)]
    query = q(c("name", "in", values))
    assert len(query["$or"]) > 1 and all(len(p["name"]["$regex"]) <= 16_100 for p in query["$or"])
    joined = "|".join(p["name"]["$regex"] for p in query["$or"])
    assert all(v in joined for v in values)


def test_contains() -> None:
    assert q(c("name", "contains", "a.b")) == {
        "$or": [{"name": {**rx(r"a\.b"), **NOT_ARRAY}}, {"name": {"$elemMatch": rx(r"^a\.b" + END)}}]
    }
    assert q(c("name", "contains", "a", case_sensitive=True)) == {
        "$or": [{"name": {"$regex": "a", **NOT_ARRAY}}, {"name": {"$elemMatch": {"$eq": "a"}}}]
    }
    assert q(c("status", "contains", "fail")) == {
        "$or": [{"status": {**rx("fail"), **NOT_ARRAY}}, {"status": {"$elemMatch": {"$eq": "FAIL"}}}]
    }
    assert q(c("metadata.k", "contains", 3)) == {"metadata.k": {"$elemMatch": {"$eq": 3}}}


def test_prefix_suffix_text() -> None:
    assert q(c("name", "starts_with", "a(")) == {"name": rx(r"^a\(")}
    assert q(c("name", "starts_with", "a(", case_sensitive=True)) == {"name": rx(r"^a\(", ci=False)}
    assert q(c("name", "ends_with", "*z")) == {"name": rx(r"\*z" + END)}
    assert q(c("name", "text", "Hi.", case_sensitive=True)) == {"name": rx(r"Hi\.")}  # always insensitive
    ends = q(c("name", "ends_with", "ab"))
    assert matches(ends, "name", "xAB") and not matches(ends, "name", "xab\n")


def test_user_text_is_always_escaped() -> None:
    nasty = r"^.*+?()[]{}|\$ #~&-" + "\t\n\x00"
    for op in ("eq", "contains", "starts_with", "ends_with", "text"):
        query = q(c("metadata.s", op, nasty))
        pattern = (query["$or"][0] if "$or" in query else query)["metadata.s"]["$regex"]
        assert "\x00" not in pattern and r"\x00" in pattern
        assert re.search(pattern, "pre" + nasty + "post" if op in ("contains", "text") else nasty)
        assert not re.search(pattern, "pre.anything")


def test_regex() -> None:
    assert q(c("name", "regex", "^a.c$")) == {"name": rx("^a.c$")}
    assert q(c("name", "regex", "^a.c$", case_sensitive=True)) == {"name": {"$regex": "^a.c$"}}


def test_exists_and_is_null() -> None:
    assert q(c("name", "exists", True)) == {"name": {"$exists": True}}
    assert q(c("name", "exists", False)) == {"name": {"$exists": False}}
    assert q(c("name", "is_null", True)) == {"name": None}
    assert q(c("name", "is_null", False)) == {"name": {"$ne": None}}


def test_phrase_and_words() -> None:
    phrase = q(c("name", "phrase", "Hello, world"))
    assert phrase["name"]["$options"] == "i"
    for s, want in [
        ("say hello world now", True),
        ("HELLO   -  World!", True),
        ("hello, world", True),
        ("helloworld", False),
        ("world hello", False),
        ("hello worlds", False),
        ("ahello world", False),
        ("hello_world", False),  # `_` is part of a word
        ("caf\u00e9 hello world", True),
    ]:
        assert matches(phrase, "name", s) is want, s
    words = q(c("name", "words", "world HELLO world", case_sensitive=True))
    assert words["name"]["$options"] == "i"
    for s, want in [
        ("hello world", True),
        ("World, hello!", True),
        ("hello", False),
        ("hello worldly", False),
    ]:
        assert matches(words, "name", s) is want, s
    accent = q(c("name", "words", "caf\u00e9"))
    assert matches(accent, "name", "un CAF\u00c9 noir") and not matches(accent, "name", "caf\u00e9s")
    assert not matches(accent, "name", "cafe")


def test_datetimes() -> None:
    def value(v: Any) -> Any:
        return q(c("created_at", "gte", v))["created_at"]["$gte"]

    when = datetime(2025, 1, 15, 10, 30, tzinfo=UTC)
    assert value("2025-01-15T10:30:00Z") == when
    assert value("2025-01-15T12:30:00+02:00") == when
    assert value("2025-01-15T10:30:00") == when  # naive = UTC
    assert value(when.timestamp()) == when
    assert value(int(when.timestamp())) == when
    assert value("2025-01-15T10:30:00.123999Z") == when.replace(microsecond=123000)  # BSON keeps ms
    assert value(1736937000.5).microsecond == 500000
    assert q(c("created_at", "in", ["2025-01-15T10:30:00Z", None])) == {"created_at": {"$in": [when, None]}}


def test_aliases_and_schemas() -> None:
    assert q({"collection_ids": "col_a"}, CLUSTER_SCHEMA) == {"input_collections": rx("^col_a" + END)}
    assert q(c("num_documents", "gt", 5), CLUSTER_SCHEMA) == {"num_documents_clustered": {"$gt": 5}}
    assert q(c("algorithm", "eq", "KMeans"), EXECUTION_SCHEMA) == {"config.algorithm": "kmeans"}
    assert q({"status": "Completed"}, EXECUTION_SCHEMA) == {"status": "completed"}
    assert q({"status": "completed"}, CLUSTER_SCHEMA) == {"status": "COMPLETED"}
    assert (
        q({"centroids.label": "x", "metrics.silhouette_score": 1}, EXECUTION_SCHEMA)[
            "metrics.silhouette_score"
        ]
        == 1
    )
    assert q({"quality_metrics.a.b": 1, "algorithm_params.k": 2}, CLUSTER_SCHEMA)
    assert q({"anything.at.all": 1, "document_id": "d"}, DOCUMENT_SCHEMA)
    assert CLUSTER_SCHEMA.kind_of("created_at") is Kind.DATETIME
    assert CLUSTER_SCHEMA.kind_of("metadata.team") is Kind.ANY
    assert CLUSTER_SCHEMA.kind_of("num_documents") is Kind.NUMBER
    assert EXECUTION_SCHEMA.kind_of("algorithm") is Kind.KEYWORD_LOWER
    assert DOCUMENT_SCHEMA.kind_of("vectors_meta") is Kind.ANY  # a prefix forbids whole segments only
    assert CLUSTER_SCHEMA.kind_of("hierarchy_detected") is Kind.BOOL


@pytest.mark.parametrize(
    ("schema", "path"),
    [
        (CLUSTER_SCHEMA, "namespace_id"),
        (CLUSTER_SCHEMA, "_id"),
        (EXECUTION_SCHEMA, "namespace_id"),
        (EXECUTION_SCHEMA, "cluster_id"),
        (EXECUTION_SCHEMA, "error_traceback"),
        (EXECUTION_SCHEMA, "centroids.centroid_vector"),
        (EXECUTION_SCHEMA, "config.n_clusters"),
        (DOCUMENT_SCHEMA, "vectors"),
        (DOCUMENT_SCHEMA, "vectors.emb"),
        (DOCUMENT_SCHEMA, "_id"),
        (DOCUMENT_SCHEMA, "namespace_id"),
    ],
)
def test_forbidden_fields(schema: Schema, path: str) -> None:
    e = err({"AND": [c(path, "exists", True)]}, schema)
    assert e.message == f"filters.AND[0].field: '{path}' cannot be used in {schema.resource} filters"
    assert err({path: 1}, schema).message.startswith(f"filters.{path}: '{path}' cannot be used")


# ---- errors, each naming its path ------------------------------------------------------------------


def test_error_type() -> None:
    e = err(c("n", "foo", 1))
    assert isinstance(e, BadRequest) and e.code == "invalid_filter" and e.type == "bad_request"
    assert e.details == {"path": "filters.operator"}


def test_unknown_operator_lists_the_valid_ones() -> None:
    e = err({"AND": [c("n", "eq", 1), c("n", "foo", 1)]})
    assert e.message == (
        "filters.AND[1].operator: 'foo' is not a known operator (valid: eq, ne, gt, lt, gte, lte, in, nin, "
        "contains, starts_with, ends_with, regex, exists, is_null, text, phrase, words)"
    )
    assert err(c("n", 3, 1)).message == "filters.operator: must be a string, got 3"


@pytest.mark.parametrize("op", ["geo_radius", "geo_bounding_box", "geo_polygon"])
def test_geo_is_not_supported(op: str) -> None:
    e = err({"OR": [c("metadata.loc", op, {"lat": 1, "lon": 2, "radius": 5})]})
    assert e.code == "operator_not_supported"
    assert e.message == f"filters.OR[0].operator: '{op}' is not supported yet"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([1], "filters: must be an object, got [1]"),
        ("status=x", "filters: must be an object, got 'status=x'"),
        ({"AND": {"n": 1}}, "filters.AND: must be a list of filters, got {'n': 1}"),
        ({"OR": [{"n": 1}, "x"]}, "filters.OR[1]: must be an object (a filter node or condition), got 'x'"),
        ({"operator": "eq", "value": 1}, "filters.operator: a condition needs 'field'"),
        ({"case_sensitive": "yes"}, "filters.case_sensitive: must be true or false, got 'yes'"),
        (
            {"AND": [c("n", "eq", 1, case_sensitive=1)]},
            "filters.AND[0].case_sensitive: must be true or false, got 1",
        ),
        (
            {"AND": [c("n", "eq", 1, extra=2)]},
            f"filters.AND[0].extra: {UNKNOWN_KEY}",
        ),
        (
            {"field": "n", "value": 1, "AND": [{"n": 2}]},
            f"filters.AND: {UNKNOWN_KEY}",
        ),
        ({"field": 5, "value": 1}, "filters.field: a field name must be a non-empty string"),
        ({"field": "", "value": 1}, "filters.field: a field name must be a non-empty string"),
    ],
)
def test_malformed(raw: Any, message: str) -> None:
    assert err(raw).message == message


def test_sdk_artefacts_in_a_condition_are_accepted() -> None:
    assert q({"field": "n", "value": 1, "AND": [], "OR": None, "case_sensitive": False}) == {"count": 1}


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"status": {"$ne": 1}}, "filters.status"),
        ({"AND": [{"metadata.x": {"$gt": ""}}]}, "filters.AND[0].metadata.x"),
    ],
)
def test_object_shorthand_is_refused(raw: Any, path: str) -> None:
    assert err(raw).message == f"{path}: a shorthand value must be a scalar or a list, not an object"


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"field": "$where", "value": "sleep(1)"}, "filters.field"),
        ({"$where": "sleep(1)"}, "filters.$where"),
        ({"$or": [{"n": 1}]}, "filters.$or"),
        ({"AND": [{"metadata.$gt": 1}]}, "filters.AND[0].metadata.$gt"),
        ({"field": "metadata..x", "value": 1}, "filters.field"),
        ({"field": "metadata.", "value": 1}, "filters.field"),
        ({"field": ".metadata", "value": 1}, "filters.field"),
        ({"field": "metadata.a\x00b", "value": 1}, "filters.field"),
    ],
)
def test_operator_injection_through_paths(raw: Any, path: str) -> None:
    assert err(raw).message.startswith(f"{path}: invalid field name ")


def test_long_and_odd_paths() -> None:
    assert (
        err(c("metadata." + "x" * 200, "eq", 1)).message
        == "filters.field: field name longer than 200 characters"
    )
    assert err(c("metadata.\ud800", "eq", 1)).message == "filters.field: field name is not valid UTF-8"


def test_unknown_field_lists_allowed() -> None:
    e = err({"AND": [c("nope", "eq", 1)]})
    assert e.message == (
        "filters.AND[0].field: unknown field 'nope' for things "
        "(allowed: count, created_at, flag, mode, n, name, status, metadata.*)"
    )
    assert err({"metadata": 1}).message.startswith("filters.metadata: unknown field 'metadata' for things")
    assert "cluster_name" in err({"nope": 1}, CLUSTER_SCHEMA).message


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({"$regex": ".*"}, "must be a JSON scalar (string, number, boolean or null), not an object"),
        ({"type": "dynamic", "field": "query.x"}, "dynamic values are only supported in retrievers"),
        ([1, 2], "must be a JSON scalar, not a list (use operator 'in' for a list)"),
        (float("nan"), "must be a finite number"),
        (float("inf"), "must be a finite number"),
        (2**63, "integer is out of the 64-bit range"),
        ("x" * 1025, "string longer than 1024 characters"),
        ("\ud800", "string is not valid UTF-8"),
    ],
)
def test_bad_values(value: Any, reason: str) -> None:
    assert err(
        {"OR": [{"AND": [{"n": 1}, {"n": 2}, c("metadata.k", "eq", value)]}, {"n": 3}]}
    ).message.startswith(f"filters.OR[0].AND[2].value: {reason}")


def test_dynamic_values_anywhere() -> None:
    dyn = {"type": "dynamic", "field": "inputs.q"}
    assert "dynamic" in err({"name": dyn}).message and err({"name": dyn}).message.startswith("filters.name:")
    assert err(c("name", "in", ["a", dyn])).message.startswith("filters.value[1]: dynamic values")
    assert err(c("name", "in", dyn)).message.startswith("filters.value: dynamic values")


def test_in_needs_a_list_of_scalars() -> None:
    assert (
        err({"AND": [c("n", "in", 3)]}).message
        == "filters.AND[0].value: operator 'in' expects a list of values"
    )
    assert err(c("n", "nin", "3")).message == "filters.value: operator 'nin' expects a list of values"
    assert err(c("metadata.k", "in", [1, {"$gt": 0}])).message.startswith(
        "filters.value[1]: must be a JSON scalar"
    )
    assert err(c("n", "in", list(range(1001)))).message == (
        "filters.value: list has 1001 items, more than the limit of 1000"
    )
    assert q(c("n", "in", list(range(1000))))
    assert err({"status": ["ok", 3]}).message == "filters.status[1]: expects a string, got 3"


def test_values_must_fit_the_field() -> None:
    assert err(c("n", "gt", "5")).message == "filters.value: expects a number, got '5'"
    assert err(c("n", "eq", True)).message == "filters.value: expects a number, got True"
    assert err(c("flag", "eq", 1)).message == "filters.value: expects true or false, got 1"
    assert (
        err(c("flag", "gt", True)).message == "filters.value: operator 'gt' does not apply to a boolean field"
    )
    assert err(c("name", "eq", 5)).message == "filters.value: expects a string, got 5"
    assert (
        err(c("n", "contains", 1)).message
        == "filters.value: operator 'contains' applies to text fields, not a number field"
    )
    assert err(c("created_at", "regex", "^2")).message.endswith(
        "applies to text fields, not a datetime field"
    )
    assert err(c("n", "gt", None)).message == "filters.value: null is not a valid value for operator 'gt'"
    assert (
        err(c("name", "contains", None)).message
        == "filters.value: null is not a valid value for operator 'contains'"
    )
    assert (
        err(c("metadata.k", "starts_with", 1)).message
        == "filters.value: operator 'starts_with' expects a string, got 1"
    )
    assert (
        err(c("name", "exists", "yes")).message
        == "filters.value: operator 'exists' expects true or false, got 'yes'"
    )
    assert (
        err(c("name", "is_null", 0)).message
        == "filters.value: operator 'is_null' expects true or false, got 0"
    )
    assert (
        err(c("name", "phrase", " ,.! ")).message
        == "filters.value: operator 'phrase' needs at least one word in the value"
    )


@pytest.mark.parametrize("value", ["yesterday", "2025-13-01", "", True, [2025]])
def test_bad_datetime(value: Any) -> None:
    message = err({"AND": [c("created_at", "lt", value)]}).message
    assert message.startswith("filters.AND[0].value: ")
    if not isinstance(value, list):
        assert message == f"filters.AND[0].value: {value!r} is not an ISO-8601 datetime or epoch seconds"


def test_bad_datetime_in_a_list_and_shorthand() -> None:
    assert err(c("created_at", "in", ["2025-01-01", "soon"])).message.startswith(
        "filters.value[1]: 'soon' is not"
    )
    assert err({"created_at": "soon"}).message.startswith("filters.created_at: 'soon' is not")
    assert err(c("created_at", "gt", 1e20)).message.startswith("filters.value: 1e+20 is not")


def test_regex_errors() -> None:
    e = err({"OR": [{"AND": [{"n": 1}, {"n": 2}, c("name", "regex", "a(b")]}, {"n": 3}]})
    assert e.message.startswith(
        "filters.OR[0].AND[2].value: invalid regex: missing ), unterminated subpattern"
    )
    assert err(c("name", "regex", "a" * 257)).message == "filters.value: regex longer than 256 characters"
    assert q(c("name", "regex", "a" * 256))
    assert err(c("name", "regex", "a\x00")).message == "filters.value: regex must not contain a NUL character"
    for python_only in [r"\u00e9", r"a\Z", r"\N{EM DASH}", "(?a)x", "(?u:x)", "(?aimsx)y"]:
        assert "Python-only syntax" in err(c("name", "regex", python_only)).message, python_only
    assert q(c("name", "regex", "(?i)x(?:y)(?P<n>z)(?=a)(?<!b)"))
    assert q(c("name", "regex", r"C:\\users\\Zed"))  # an escaped backslash before u / Z is fine


def test_depth_limit() -> None:
    def nest(levels: int) -> dict[str, Any]:
        node: dict[str, Any] = {"n": 1}
        for _ in range(levels - 1):
            node = {"AND": [node]}
        return node

    assert q(nest(5)) == {"count": 1}
    e = err(nest(6))
    assert e.message == (
        "filters: depth 6 exceeds the limit of 5 (at filters.AND[0].AND[0].AND[0].AND[0].AND[0])"
    )
    assert err(nest(6), where="body.filters").message.startswith(
        "body.filters: depth 6 exceeds the limit of 5"
    )
    # conditions are leaves, not nodes: a condition under the fifth node is fine
    deep: dict[str, Any] = {"AND": [c("n", "eq", 1)]}
    for _ in range(4):
        deep = {"OR": [deep]}
    assert q(deep) == {"count": 1}
    with pytest.raises(InvalidFilter, match="depth 3 exceeds the limit of 2"):
        parse_filter(nest(3), schema=SCHEMA, max_depth=2)


def test_condition_limit() -> None:
    assert q({"AND": [c("n", "eq", i) for i in range(100)]})
    e = err({"AND": [c("n", "eq", i) for i in range(50)], "OR": [{f"metadata.k{i}": i} for i in range(51)]})
    assert e.message == "filters: more than 100 conditions (the limit is 100)"


def test_where_prefixes_every_message() -> None:
    assert err({"AND": [c("n", "foo", 1)]}, where="body.filters").message.startswith(
        "body.filters.AND[0].operator:"
    )
    assert err({"nope": 1}, where="filters[2]").message.startswith("filters[2].nope: unknown field")


# ---- hostile input never escapes as anything but InvalidFilter ----------------------------------

HOSTILE = [
    None, True, 0, -1, 2**63, -(2**63) - 1, 1.5, math.nan, math.inf, "", "x", "$where", "$ne", "a" * 2000,
    "\ud800", "a\x00b", "(", "^.*$", "2025-01-15T10:30:00Z", [], [1, "a", None], [{"$gt": 1}], {},
    {"$gt": 1}, {"$where": "1"}, {"type": "dynamic", "field": "x"}, {"AND": []}, {"field": "n"},
    [[1]], {"OR": [{"$or": 1}]}, "eq", "regex", "geo_radius", "AND", "NOT",
]  # fmt: skip
KEYS = ["AND", "OR", "NOT", "and", "field", "operator", "value", "case_sensitive", "n", "name", "status",
        "created_at", "flag", "metadata.x", "$where", "a..b", "secret", "nope", "count"]  # fmt: skip
OPS = [op.value for op in Op] + ["geo_radius", "EQ", "foo", None, 1]


def _hostile(rng: random.Random, depth: int = 0) -> Any:
    x = rng.random()
    if depth < 4 and x < 0.3:
        return {rng.choice(KEYS): _hostile(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    if depth < 4 and x < 0.45:
        return [_hostile(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 4 and x < 0.75:
        cond: dict[str, Any] = {"field": rng.choice(KEYS), "operator": rng.choice(OPS)}
        if rng.random() < 0.8:
            cond["value"] = _hostile(rng, depth + 1) if rng.random() < 0.3 else rng.choice(HOSTILE)
        return cond
    return rng.choice(HOSTILE)


@pytest.mark.parametrize("schema", [SCHEMA, CLUSTER_SCHEMA, EXECUTION_SCHEMA, DOCUMENT_SCHEMA])
def test_fuzz_only_invalid_filter_or_a_portable_query(schema: Schema) -> None:
    rng = random.Random(schema.resource)
    accepted = 0
    for _ in range(1500):
        raw = _hostile(rng)
        try:
            query = compile_filter(raw, schema=schema)
        except InvalidFilter as e:
            assert e.message.startswith("filters") and e.code in ("invalid_filter", "operator_not_supported")
            continue
        check_portable(query)
        accepted += 1
    assert accepted > 50  # the fuzz reaches the translator, not just the first check
