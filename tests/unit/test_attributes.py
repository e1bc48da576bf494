"""Attribute grouping: flat and hierarchical ids, labels, missing values, lists, slugs."""

from __future__ import annotations

import pytest

from core.attributes import group, parse_attribute_config, slug, value_of
from core.errors import ValidationFailed


def test_four_categories_by_three_brands_make_sixteen_clusters():
    values = [(f"Cat {c}", f"Brand {b}") for c in range(4) for b in range(3) for _ in range(2)]
    g = group(
        values, parse_attribute_config({"attributes": ["category", "brand"], "hierarchical_grouping": True})
    )
    parents = [c for c in g.clusters if c.parent_id is None]
    leaves = [c for c in g.clusters if c.parent_id is not None]
    assert len(parents) == 4 and len(leaves) == 12 and len(g.relationships) == 12
    assert sum(c.num_members for c in leaves) == len(values)
    assert all(p.num_members == 6 for p in parents)
    assert g.hierarchy_detected and g.assignments[0] == "cl_cat_0_brand_0"
    assert g.metrics["silhouette_score"] is None and g.metrics["avg_cluster_size"] == 2.0


def test_flat_ids_by_size_then_value_and_joined_labels():
    values = [("b", "x"), ("a", "y"), ("b", "x"), ("a", "x")]
    g = group(values, parse_attribute_config({"attributes": ["p", "q"]}))
    assert [(c.cluster_id, c.label, c.num_members) for c in g.clusters] == [
        ("cl_cluster_0", "b / x", 2),
        ("cl_cluster_1", "a / x", 1),
        ("cl_cluster_2", "a / y", 1),
    ]
    assert list(g.assignments) == ["cl_cluster_0", "cl_cluster_2", "cl_cluster_0", "cl_cluster_1"]


def test_values_fields_metadata_paths_lists_and_missing():
    doc = {
        "team": "core",
        "metadata": {"geo": {"country": "FR"}, "tags": ["a", "b", "b"], "n": 3, "ok": True},
    }
    assert value_of(doc, "team") == "core"
    assert value_of(doc, "geo.country") == "FR" and value_of(doc, "metadata.geo.country") == "FR"
    assert value_of(doc, "tags") == "b" and value_of(doc, "tags", "first") == "a"
    assert value_of(doc, "tags", "last") == "b"
    assert value_of(doc, "n") == "3" and value_of(doc, "ok") == "true" and value_of(doc, "absent") == "none"


def test_slug_collisions_get_suffixes():
    assert slug("A B") == slug("a-b") == "a_b" and slug("!!") == "none"
    g = group(
        [("A B",), ("a-b",)], parse_attribute_config({"attributes": ["x"], "hierarchical_grouping": True})
    )
    assert sorted(c.cluster_id for c in g.clusters) == ["cl_a_b", "cl_a_b_2"]


@pytest.mark.parametrize(
    "raw, field",
    [
        ({}, "attribute_config.attributes"),
        ({"attributes": []}, "attribute_config.attributes"),
        ({"attributes": [3]}, "attribute_config.attributes[0]"),
        ({"attributes": ["a"], "aggregation_method": "mean"}, "attribute_config.aggregation_method"),
        ({"attributes": ["a"], "hierarchical_grouping": "yes"}, "attribute_config.hierarchical_grouping"),
    ],
)
def test_bad_configs_name_the_field(raw, field):
    with pytest.raises(ValidationFailed, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_attribute_config(raw)


def test_same_input_same_output_regardless_of_order():
    values = [("x",), ("y",), ("z",), ("y",)]
    a = group(values, parse_attribute_config({"attributes": ["k"]}))
    b = group(list(reversed(values)), parse_attribute_config({"attributes": ["k"]}))
    assert [c.cluster_id for c in a.clusters] == [c.cluster_id for c in b.clusters]
    assert [c.values for c in a.clusters] == [c.values for c in b.clusters]
