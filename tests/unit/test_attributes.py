"""Attribute grouping: flat and hierarchical ids, labels, missing values, lists, slugs, metrics."""

from __future__ import annotations

import re

import numpy as np
import pytest

from core.attributes import (
    AttributeConfig,
    AttributeGrouping,
    group,
    parse_attribute_config,
    slug,
    value_of,
)
from core.errors import ValidationFailed


def cfg(*attributes: str, hierarchical: bool = False, aggregation: str | None = None) -> AttributeConfig:
    raw: dict = {"attributes": list(attributes), "hierarchical_grouping": hierarchical}
    if aggregation is not None:
        raw["aggregation_method"] = aggregation
    return parse_attribute_config(raw)


def summary(g: AttributeGrouping) -> list[tuple]:
    return [(c.cluster_id, c.label, c.num_members, c.parent_id, c.values) for c in g.clusters]


# --- the contract's example ---------------------------------------------------------------------


def test_four_categories_by_three_brands_make_sixteen_clusters():
    values = [(f"Cat {c}", f"Brand {b}") for c in range(4) for b in range(3) for _ in range(2)]
    g = group(values, cfg("category", "brand", hierarchical=True))
    parents = [c for c in g.clusters if c.parent_id is None]
    leaves = [c for c in g.clusters if c.parent_id is not None]
    assert len(g.clusters) == 16 and len(parents) == 4 and len(leaves) == 12
    assert g.clusters[:4] == parents  # parents first
    assert sum(c.num_members for c in leaves) == len(values) == 24
    for p in parents:
        assert p.num_members == sum(c.num_members for c in leaves if c.parent_id == p.cluster_id) == 6
    assert len(g.relationships) == 12 and g.hierarchy_detected
    assert {r["child_cluster_id"] for r in g.relationships} == {c.cluster_id for c in leaves}
    assert all(
        r["parent_cluster_id"] == next(c.parent_id for c in leaves if c.cluster_id == r["child_cluster_id"])
        for r in g.relationships
    )
    assert [p.cluster_id for p in parents] == ["cl_cat_0", "cl_cat_1", "cl_cat_2", "cl_cat_3"]
    assert [p.label for p in parents] == ["Cat 0", "Cat 1", "Cat 2", "Cat 3"]
    assert leaves[0].cluster_id == "cl_cat_0_brand_0" and leaves[0].label == "Cat 0 / Brand 0"
    assert leaves[0].values == ("Cat 0", "Brand 0") and leaves[0].parent_id == "cl_cat_0"
    assert g.assignments.dtype == object and g.assignments.shape == (24,)
    assert g.assignments[0] == "cl_cat_0_brand_0" and g.assignments[-1] == "cl_cat_3_brand_2"
    assert set(g.assignments) == {c.cluster_id for c in leaves}  # documents sit in leaves only


def test_hierarchical_metrics_are_size_only_and_over_leaves():
    values = [(f"Cat {c}", f"Brand {b}") for c in range(4) for b in range(3) for _ in range(2)]
    m = group(values, cfg("category", "brand", hierarchical=True)).metrics
    assert m["silhouette_score"] is None
    assert m["davies_bouldin_index"] is None and m["calinski_harabasz_score"] is None
    assert m["avg_cluster_size"] == 2.0  # 24 documents over 12 leaves, not 16 clusters
    assert m["noise_ratio"] == 0.0 and m["cluster_size_entropy"] == pytest.approx(1.0)
    assert m["degenerate"] is False and "degenerate_detail" not in m
    assert m["should_recluster"] == 0 and type(m["should_recluster"]) is int


def test_hierarchical_leaves_with_uneven_and_missing_values():
    values = [("Cat 0", "x"), ("Cat 0", "none"), ("Cat 1", "y"), ("Cat 0", "x")]
    g = group(values, cfg("category", "brand", hierarchical=True))
    assert summary(g) == [
        ("cl_cat_0", "Cat 0", 3, None, ("Cat 0",)),
        ("cl_cat_1", "Cat 1", 1, None, ("Cat 1",)),
        ("cl_cat_0_none", "Cat 0 / none", 1, "cl_cat_0", ("Cat 0", "none")),
        ("cl_cat_0_x", "Cat 0 / x", 2, "cl_cat_0", ("Cat 0", "x")),
        ("cl_cat_1_y", "Cat 1 / y", 1, "cl_cat_1", ("Cat 1", "y")),
    ]
    assert list(g.assignments) == ["cl_cat_0_x", "cl_cat_0_none", "cl_cat_1_y", "cl_cat_0_x"]


def test_three_attributes_hierarchical_has_two_levels():
    values = [("a", "b", "c"), ("a", "b", "d"), ("e", "f", "g")]
    g = group(values, cfg("p", "q", "r", hierarchical=True))
    assert [c.cluster_id for c in g.clusters] == ["cl_a", "cl_e", "cl_a_b_c", "cl_a_b_d", "cl_e_f_g"]
    assert g.clusters[2].label == "a / b / c" and g.clusters[2].parent_id == "cl_a"
    assert len(g.relationships) == 3


def test_single_attribute_hierarchical_has_only_parents():
    values = [("red",), ("blue",), ("red",)]
    g = group(values, cfg("color", hierarchical=True))
    assert summary(g) == [
        ("cl_blue", "blue", 1, None, ("blue",)),
        ("cl_red", "red", 2, None, ("red",)),
    ]
    assert list(g.assignments) == ["cl_red", "cl_blue", "cl_red"]
    assert g.relationships == [] and g.hierarchy_detected is False
    assert g.metrics["avg_cluster_size"] == 1.5


# --- flat ---------------------------------------------------------------------------------------


def test_flat_ids_by_size_then_value_and_joined_labels():
    values = [("b", "x"), ("a", "y"), ("b", "x"), ("a", "x")]
    g = group(values, cfg("p", "q"))
    assert summary(g) == [
        ("cl_cluster_0", "b / x", 2, None, ("b", "x")),
        ("cl_cluster_1", "a / x", 1, None, ("a", "x")),
        ("cl_cluster_2", "a / y", 1, None, ("a", "y")),
    ]
    assert list(g.assignments) == ["cl_cluster_0", "cl_cluster_2", "cl_cluster_0", "cl_cluster_1"]
    assert g.relationships == [] and g.hierarchy_detected is False
    assert sum(c.num_members for c in g.clusters) == len(values)


def test_flat_single_attribute_labels_are_the_value():
    g = group([("Electronics",), ("Books",), ("Books",)], cfg("category"))
    assert summary(g) == [
        ("cl_cluster_0", "Books", 2, None, ("Books",)),
        ("cl_cluster_1", "Electronics", 1, None, ("Electronics",)),
    ]


def test_flat_metrics_and_degenerate_flags():
    one = group([("a",)] * 5, cfg("k")).metrics
    assert one["degenerate"] == "single_cluster" and one["should_recluster"] == 1
    assert one["degenerate_detail"] and one["cluster_size_entropy"] == 0.0
    singles = group([("a",), ("b",), ("c",)], cfg("k")).metrics
    assert singles["degenerate"] == "all_singletons" and singles["should_recluster"] == 1
    dominant = group([("a",)] * 19 + [("b",)], cfg("k")).metrics
    assert dominant["degenerate"] == "dominant_cluster"
    ok = group([("a",)] * 3 + [("b",)] * 2, cfg("k")).metrics
    assert ok["degenerate"] is False and ok["should_recluster"] == 0 and ok["avg_cluster_size"] == 2.5
    assert ok["noise_ratio"] == 0.0
    for m in (one, singles, dominant, ok):
        assert m["silhouette_score"] is None and m["davies_bouldin_index"] is None
        assert m["calinski_harabasz_score"] is None


def test_missing_attribute_is_the_none_group():
    docs = [{"metadata": {"brand": "Acme"}}, {"metadata": {}}, {}, {"brand": None}]
    values = [(value_of(d, "brand"),) for d in docs]
    assert values == [("Acme",), ("none",), ("none",), ("none",)]
    g = group(values, cfg("brand"))
    assert summary(g) == [
        ("cl_cluster_0", "none", 3, None, ("none",)),
        ("cl_cluster_1", "Acme", 1, None, ("Acme",)),
    ]
    h = group(values, cfg("brand", hierarchical=True))
    assert [c.cluster_id for c in h.clusters] == ["cl_acme", "cl_none"]


def test_group_converts_raw_values_like_value_of():
    g = group([(None, 3), (None, 3.0), (True, 1.5)], cfg("a", "b"))
    assert [c.values for c in g.clusters] == [("none", "3"), ("true", "1.5")]


def test_group_rejects_tuples_of_the_wrong_width():
    with pytest.raises(ValueError, match="one per attribute"):
        group([("a",), ("b", "c")], cfg("x"))


def test_empty_input_gives_no_clusters():
    g = group([], cfg("x", "y", hierarchical=True))
    assert g.clusters == [] and g.assignments.shape == (0,) and g.relationships == []


# --- values -------------------------------------------------------------------------------------


def test_document_field_first_then_metadata():
    doc = {"team": "core", "metadata": {"team": "other", "region": "eu"}}
    assert value_of(doc, "team") == "core"
    assert value_of(doc, "region") == "eu"
    assert value_of(doc, "metadata.team") == "other"
    assert value_of(doc, "metadata.region") == "eu"
    assert value_of(doc, "absent") == "none"
    assert value_of({"metadata": None}, "x") == "none"


def test_dot_paths_are_nested_lookups_under_document_then_metadata():
    doc = {
        "owner": {"name": "Ann"},
        "team": "flat string",
        "metadata": {"team": {"name": "Core"}, "geo": {"country": "FR"}},
    }
    assert value_of(doc, "owner.name") == "Ann"
    assert value_of(doc, "team.name") == "Core"  # doc's `team` is not an object: falls back
    assert value_of(doc, "geo.country") == "FR" and value_of(doc, "metadata.geo.country") == "FR"
    assert value_of(doc, "metadata.team.name") == "Core"
    assert value_of(doc, "geo.city") == "none" and value_of(doc, "metadata.owner.name") == "none"
    assert value_of({"a.b": "literal"}, "a.b") == "none"  # a dot is always a path separator


@pytest.mark.parametrize(
    "aggregation, expected",
    [(None, "b"), ("most_frequent", "b"), ("first", "a"), ("last", "c")],
)
def test_list_aggregation_methods(aggregation, expected):
    doc = {"metadata": {"tags": ["a", "b", "b", "c"]}}
    assert value_of(doc, "tags", aggregation) == expected


def test_list_edge_cases():
    assert value_of({"tags": ["x", "y", "y", "x"]}, "tags") == "x"  # tie: first occurrence
    assert value_of({"tags": ["y", "x"]}, "tags", "most_frequent") == "y"
    assert value_of({"tags": []}, "tags") == "none"
    assert value_of({"tags": [None, None]}, "tags") == "none"
    assert value_of({"tags": [None, "a", None]}, "tags") == "a"  # None elements are absent
    assert value_of({"tags": [[1], {"k": 1}, 2]}, "tags") == "2"
    assert value_of({"tags": [1, True, 1.0]}, "tags") == "1"
    assert value_of({"tags": ("p", "q")}, "tags", "last") == "q"


def test_non_string_values_become_strings():
    doc = {
        "metadata": {
            "t": True,
            "f": False,
            "i": 3,
            "x": 1.5,
            "whole": 3.0,
            "neg": -2,
            "obj": {"k": "v"},
            "np": np.int64(7),
            "npb": np.bool_(True),
        }
    }
    got = {k: value_of(doc, k) for k in doc["metadata"]}
    assert got == {
        "t": "true",
        "f": "false",
        "i": "3",
        "x": "1.5",
        "whole": "3",
        "neg": "-2",
        "obj": "none",
        "np": "7",
        "npb": "true",
    }
    assert value_of({"s": ""}, "s") == ""  # an empty string is a value, not a missing one


# --- slugs and ids ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        ("Electronics", "electronics"),
        ("A B", "a_b"),
        ("a-b", "a_b"),
        ("  Home & Garden!! ", "home_garden"),
        ("Café", "caf"),
        ("__x__", "x"),
        ("!!", "none"),
        ("", "none"),
        ("v1.2", "v1_2"),
    ],
)
def test_slug(value, expected):
    assert slug(value) == expected


def test_slug_collisions_get_suffixes():
    g = group([("A B",), ("a-b",), ("a-b",)], cfg("x", hierarchical=True))
    assert summary(g) == [
        ("cl_a_b", "A B", 1, None, ("A B",)),
        ("cl_a_b_2", "a-b", 2, None, ("a-b",)),
    ]
    assert list(g.assignments) == ["cl_a_b", "cl_a_b_2", "cl_a_b_2"]


def test_collisions_across_levels_and_with_suffixes_stay_unique():
    values = [("A B", "x"), ("a-b", "x"), ("a b 2", "q"), ("a", "b"), ("!!", "y"), ("none", "y")]
    g = group(values, cfg("p", "q", hierarchical=True))
    ids = [c.cluster_id for c in g.clusters]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"cl_[a-z0-9_]+", i) for i in ids)
    by_values = {c.values: c.cluster_id for c in g.clusters}
    assert by_values[("A B",)] == "cl_a_b"  # "A B" < "a b 2" < "a-b" by code point
    assert by_values[("a b 2",)] == "cl_a_b_2"
    assert by_values[("a-b",)] == "cl_a_b_3"
    assert by_values[("!!",)] == "cl_none" and by_values[("none",)] == "cl_none_2"
    assert by_values[("a", "b")] == "cl_a_b_4"  # parents take ids first
    assert by_values[("A B", "x")] == "cl_a_b_x" and by_values[("a-b", "x")] == "cl_a_b_x_2"
    parents = {c.cluster_id for c in g.clusters if c.parent_id is None}
    assert len(parents) == 6 and {r["parent_cluster_id"] for r in g.relationships} == parents
    assert all(c.parent_id == by_values[c.values[:1]] for c in g.clusters if c.parent_id)


# --- determinism --------------------------------------------------------------------------------


@pytest.mark.parametrize("hierarchical", [False, True])
def test_same_input_same_output_regardless_of_order(hierarchical):
    values = [("x", "1"), ("y", "2"), ("z", "1"), ("y", "2"), ("w", "3"), ("x", "1")]
    config = cfg("k", "v", hierarchical=hierarchical)
    a = group(values, config)
    b = group(list(reversed(values)), config)
    c = group(values[3:] + values[:3], config)
    assert summary(a) == summary(b) == summary(c)
    assert a.relationships == b.relationships == c.relationships
    assert a.metrics == b.metrics == c.metrics
    assert list(b.assignments) == list(reversed(a.assignments))
    again = group(values, config)
    assert summary(again) == summary(a) and list(again.assignments) == list(a.assignments)


def test_flat_ties_break_by_value_not_input_order():
    for values in ([("b",), ("a",), ("c",)], [("c",), ("b",), ("a",)]):
        g = group(values, cfg("k"))
        assert [(c.cluster_id, c.label) for c in g.clusters] == [
            ("cl_cluster_0", "a"),
            ("cl_cluster_1", "b"),
            ("cl_cluster_2", "c"),
        ]


# --- config -------------------------------------------------------------------------------------


def test_config_defaults_and_normalisation():
    c = parse_attribute_config({"attributes": [" category ", "metadata.brand"]})
    assert c == AttributeConfig(["category", "metadata.brand"], False, None)
    assert isinstance(c.attributes, list)
    c = parse_attribute_config(
        {"attributes": ["a"], "hierarchical_grouping": None, "aggregation_method": None, "extra": 1}
    )
    assert c.hierarchical_grouping is False and c.aggregation_method is None
    c = parse_attribute_config(
        {"attributes": ["a"], "hierarchical_grouping": True, "aggregation_method": "last"}
    )
    assert c.hierarchical_grouping is True and c.aggregation_method == "last"
    assert len(parse_attribute_config({"attributes": [f"a{i}" for i in range(20)]}).attributes) == 20


@pytest.mark.parametrize(
    "raw, message",
    [
        (None, "attribute_config: must be an object"),
        ([], "attribute_config: must be an object"),
        ({}, "attribute_config.attributes: at least one attribute is required"),
        ({"attributes": []}, "attribute_config.attributes: at least one attribute is required"),
        ({"attributes": None}, "attribute_config.attributes: at least one attribute is required"),
        ({"attributes": "category"}, "attribute_config.attributes: must be a list"),
        ({"attributes": [3]}, "attribute_config.attributes[0]: must be a non-empty"),
        ({"attributes": ["a", "  "]}, "attribute_config.attributes[1]: must be a non-empty"),
        ({"attributes": ["a..b"]}, "attribute_config.attributes[0]: 'a..b' is not"),
        ({"attributes": [".a"]}, "attribute_config.attributes[0]"),
        ({"attributes": ["a."]}, "attribute_config.attributes[0]"),
        ({"attributes": ["$where"]}, "attribute_config.attributes[0]"),
        ({"attributes": ["a"], "aggregation_method": "mean"}, "attribute_config.aggregation_method"),
        ({"attributes": ["a"], "aggregation_method": 1}, "attribute_config.aggregation_method"),
        ({"attributes": ["a"], "hierarchical_grouping": "yes"}, "attribute_config.hierarchical_grouping"),
        ({"attributes": ["a"], "hierarchical_grouping": 1}, "attribute_config.hierarchical_grouping"),
    ],
)
def test_bad_configs_name_the_field(raw, message):
    with pytest.raises(ValidationFailed, match=re.escape(message)) as info:
        parse_attribute_config(raw)
    assert info.value.type == "validation_error"


def test_error_messages_use_the_given_field_name():
    with pytest.raises(ValidationFailed, match=re.escape("config.attribute_config.attributes:")):
        parse_attribute_config({"attributes": []}, field="config.attribute_config")
