"""Attribute-based clustering: group documents by the values of attributes (contract §1.9).

Flat: one cluster per distinct value combination, `cl_cluster_<i>` (i by size desc, then value).
Hierarchical: parents `cl_<slug(v1)>` from the first attribute and leaves
`cl_<slug(v1)>_<slug(v2)>...` below them; both are listed, documents belong to their leaf.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from core.errors import ValidationFailed
from core.metrics import size_metrics

Aggregation = Literal["most_frequent", "first", "last"]
MISSING = "none"
_AGGREGATIONS = ("most_frequent", "first", "last")


@dataclass(frozen=True)
class AttributeConfig:
    attributes: tuple[str, ...]
    hierarchical_grouping: bool = False
    aggregation_method: Aggregation | None = None


@dataclass
class AttributeCluster:
    cluster_id: str
    label: str
    num_members: int
    parent_id: str | None
    values: tuple[str, ...]


@dataclass
class AttributeGrouping:
    clusters: list[AttributeCluster]  # parents first, then leaves
    assignments: np.ndarray  # leaf cluster id per document (object array)
    relationships: list[dict[str, str]] = field(default_factory=list)
    hierarchy_detected: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)


def parse_attribute_config(raw: Any, field_name: str = "attribute_config") -> AttributeConfig:
    if not isinstance(raw, dict):
        raise ValidationFailed(f"{field_name}: must be an object")
    attrs = raw.get("attributes")
    if not isinstance(attrs, list) or not attrs:
        raise ValidationFailed(f"{field_name}.attributes: at least one attribute is required")
    for i, a in enumerate(attrs):
        if not isinstance(a, str) or not a.strip() or a.startswith("$"):
            raise ValidationFailed(f"{field_name}.attributes[{i}]: must be a field name or dot path")
    if len(attrs) > 10:
        raise ValidationFailed(f"{field_name}.attributes: at most 10 attributes")
    hierarchical = raw.get("hierarchical_grouping", False)
    if not isinstance(hierarchical, bool):
        raise ValidationFailed(f"{field_name}.hierarchical_grouping: must be a boolean")
    agg = raw.get("aggregation_method")
    if agg is not None and agg not in _AGGREGATIONS:
        raise ValidationFailed(f"{field_name}.aggregation_method: must be one of {', '.join(_AGGREGATIONS)}")
    return AttributeConfig(tuple(a.strip() for a in attrs), hierarchical, agg)


def _lookup(doc: Any, parts: list[str]) -> Any:
    for p in parts:
        if not isinstance(doc, dict) or p not in doc:
            return None
        doc = doc[p]
    return doc


def _scalar(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else repr(value)
    return str(value)


def value_of(doc: dict[str, Any], path: str, aggregation: Aggregation | None = None) -> str:
    """Attribute `a` is document field `a`, else `metadata.a`; dot paths are nested lookups.
    A list is reduced by `aggregation` (most_frequent by default); missing or empty ⇒ "none"."""
    parts = path.split(".")
    value = _lookup(doc, parts)
    if value is None and parts[0] != "metadata":
        value = _lookup(doc.get("metadata") or {}, parts)
    if isinstance(value, list):
        items = [_scalar(v) for v in value if not isinstance(v, dict | list)]
        if not items:
            return MISSING
        if aggregation == "first":
            return items[0]
        if aggregation == "last":
            return items[-1]
        counts = Counter(items)
        best = max(counts.values())
        return next(v for v in items if counts[v] == best)  # ties: first occurrence
    if isinstance(value, dict):
        return MISSING
    return _scalar(value)


def slug(v: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "_", v.lower()).strip("_")
    return s or MISSING


def _unique(base: str, taken: set[str]) -> str:
    cid, n = base, 1
    while cid in taken:
        n += 1
        cid = f"{base}_{n}"
    taken.add(cid)
    return cid


def group(values: list[tuple[str, ...]], config: AttributeConfig) -> AttributeGrouping:
    """`values[i]` holds document i's attribute values (as value_of returns them)."""
    counts = Counter(values)
    if config.hierarchical_grouping:
        return _hierarchical(values, counts)
    order = sorted(counts, key=lambda v: (-counts[v], v))
    ids = {v: f"cl_cluster_{i}" for i, v in enumerate(order)}
    clusters = [AttributeCluster(ids[v], " / ".join(v), counts[v], None, v) for v in order]
    assignments = np.asarray([ids[v] for v in values], dtype=object)
    return AttributeGrouping(clusters, assignments, metrics=_metrics(assignments))


def _hierarchical(values: list[tuple[str, ...]], counts: Counter[tuple[str, ...]]) -> AttributeGrouping:
    taken: set[str] = set()
    parent_counts = Counter(v[0] for v in values)
    parent_ids = {p: _unique(f"cl_{slug(p)}", taken) for p in sorted(parent_counts)}
    clusters = [
        AttributeCluster(parent_ids[p], p, parent_counts[p], None, (p,)) for p in sorted(parent_counts)
    ]
    if all(len(v) == 1 for v in counts):  # one attribute: the parents are the only level
        assignments = np.asarray([parent_ids[v[0]] for v in values], dtype=object)
        return AttributeGrouping(clusters, assignments, metrics=_metrics(assignments))
    leaf_ids: dict[tuple[str, ...], str] = {}
    relationships: list[dict[str, str]] = []
    for v in sorted(counts):
        leaf = _unique("cl_" + "_".join(slug(x) for x in v), taken)
        leaf_ids[v] = leaf
        clusters.append(AttributeCluster(leaf, " / ".join(v), counts[v], parent_ids[v[0]], v))
        relationships.append({"parent_cluster_id": parent_ids[v[0]], "child_cluster_id": leaf})
    assignments = np.asarray([leaf_ids[v] for v in values], dtype=object)
    return AttributeGrouping(clusters, assignments, relationships, True, _metrics(assignments))


def _metrics(assignments: np.ndarray) -> dict[str, Any]:
    _, codes = np.unique(assignments.astype(str), return_inverse=True)
    return size_metrics(codes)
