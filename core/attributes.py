"""Attribute-based clustering: group documents by the values of attributes (contract §0.3, §1.9).

Values (`value_of`): attribute `a` is the document field `a`, else `metadata.a`; a dot path is a
nested lookup (first under the document, then under `metadata`). A list is reduced to one value by
the aggregation method (`most_frequent` by default, ties to the first occurrence; `first`; `last`).
Every value is a string: booleans are `true`/`false`, integral floats print as integers
(`3.0` -> `3`), and a missing value, an empty list or an object is the group `none`.

Flat (`group`, hierarchical_grouping false): one cluster per distinct value combination, ids
`cl_cluster_<i>` with i by size descending, then value tuple ascending; label `v1 / v2 ...`.

Hierarchical: parents `cl_<slug(v1)>` (label `v1`) and leaves `cl_<slug(v1)>_<slug(v2)>...`
(label `v1 / v2 ...`), both listed, parents first. Parents are ordered by value ascending and
leaves by value tuple ascending (so they follow their parents' order); ids are given in that
order, parents before leaves, and an id already taken in the run gets `_2`, `_3`, ... appended.
Ids therefore depend only on the set of values present, not on the group sizes. Documents belong to
their leaf; with a single attribute the parents are the only level and documents belong to them.

Metrics are the size-only metrics of core.metrics over the clusters documents are assigned to.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from core.errors import ValidationFailed
from core.metrics import size_metrics

Aggregation = Literal["most_frequent", "first", "last"]
MISSING = "none"
LABEL_SEPARATOR = " / "
_AGGREGATIONS: tuple[Aggregation, ...] = ("most_frequent", "first", "last")


@dataclass
class AttributeConfig:
    attributes: list[str]
    hierarchical_grouping: bool = False
    aggregation_method: Aggregation | None = None  # None means most_frequent


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
    assignments: np.ndarray  # object array: the (leaf) cluster id of each document
    relationships: list[dict[str, str]] = dataclasses.field(default_factory=list)
    hierarchy_detected: bool = False
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)


def parse_attribute_config(raw: Any, field: str = "attribute_config") -> AttributeConfig:
    """Validate an AttributeBasedConfig (§1.5.3); errors name the offending field."""
    if not isinstance(raw, dict):
        raise ValidationFailed(f"{field}: must be an object")
    attrs = raw.get("attributes")
    if attrs is None or (isinstance(attrs, list) and not attrs):
        raise ValidationFailed(f"{field}.attributes: at least one attribute is required")
    if not isinstance(attrs, list):
        raise ValidationFailed(f"{field}.attributes: must be a list of attribute names")
    names: list[str] = []
    for i, a in enumerate(attrs):
        if not isinstance(a, str) or not a.strip():
            raise ValidationFailed(f"{field}.attributes[{i}]: must be a non-empty field name or dot path")
        name = a.strip()
        if name.startswith("$") or any(not part for part in name.split(".")):
            raise ValidationFailed(f"{field}.attributes[{i}]: {name!r} is not a field name or dot path")
        names.append(name)
    hierarchical = raw.get("hierarchical_grouping")
    if hierarchical is None:  # the SDK sends null for "unset"
        hierarchical = False
    if not isinstance(hierarchical, bool):
        raise ValidationFailed(f"{field}.hierarchical_grouping: must be a boolean")
    agg = raw.get("aggregation_method")
    if agg is not None and agg not in _AGGREGATIONS:
        raise ValidationFailed(f"{field}.aggregation_method: must be one of {', '.join(_AGGREGATIONS)}")
    return AttributeConfig(names, hierarchical, agg)


def _lookup(doc: Any, parts: list[str]) -> Any:
    for p in parts:
        if not isinstance(doc, dict) or p not in doc:
            return None
        doc = doc[p]
    return doc


def _scalar(value: Any) -> str:
    """A scalar as a grouping value: None -> "none", True -> "true", 3.0 -> "3", 1.5 -> "1.5"."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None:
        return MISSING
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _reduce(items: list[str], aggregation: Aggregation | None) -> str:
    if not items:
        return MISSING
    if aggregation == "first":
        return items[0]
    if aggregation == "last":
        return items[-1]
    counts = Counter(items)
    best = max(counts.values())
    return next(v for v in items if counts[v] == best)  # ties: first occurrence


def value_of(doc: dict[str, Any], path: str, aggregation: Aggregation | None = None) -> str:
    """The grouping value of attribute `path` in `doc` (see the module docstring); never None."""
    parts = path.split(".")
    value = _lookup(doc, parts)
    if value is None and parts[0] != "metadata":
        value = _lookup(doc.get("metadata"), parts)
    if isinstance(value, list | tuple):
        # None elements are absent values; nested lists/objects cannot be grouping values
        items = [_scalar(v) for v in value if v is not None and not isinstance(v, dict | list | tuple)]
        return _reduce(items, aggregation)
    if isinstance(value, dict):
        return MISSING
    return _scalar(value)


def slug(v: str) -> str:
    """§0.3: lowercase, runs of non-[a-z0-9] -> `_`, trimmed of `_`; empty -> `none`."""
    s = re.sub(r"[^a-z0-9]+", "_", v.lower()).strip("_")
    return s or MISSING


def _unique(base: str, taken: set[str]) -> str:
    cid, n = base, 1
    while cid in taken:
        n += 1
        cid = f"{base}_{n}"
    taken.add(cid)
    return cid


def group(values: Sequence[tuple[Any, ...]], config: AttributeConfig) -> AttributeGrouping:
    """Group documents: `values[i]` holds document i's attribute values, one per attribute of
    `config`, as value_of returns them (other values are converted the same way)."""
    width = len(config.attributes)
    if width == 0:
        raise ValueError("config.attributes is empty")
    rows = [tuple(_scalar(x) for x in v) for v in values]
    if any(len(r) != width for r in rows):
        raise ValueError(f"every values tuple must hold {width} value(s), one per attribute")
    counts = Counter(rows)
    if config.hierarchical_grouping:
        return _hierarchical(rows, counts, width)
    order = sorted(counts, key=lambda v: (-counts[v], v))
    ids = {v: f"cl_cluster_{i}" for i, v in enumerate(order)}
    clusters = [AttributeCluster(ids[v], LABEL_SEPARATOR.join(v), counts[v], None, v) for v in order]
    assignments = np.asarray([ids[v] for v in rows], dtype=object)
    return AttributeGrouping(clusters, assignments, metrics=_metrics(assignments))


def _hierarchical(
    rows: list[tuple[str, ...]], counts: Counter[tuple[str, ...]], width: int
) -> AttributeGrouping:
    taken: set[str] = set()
    parent_counts = Counter(v[0] for v in rows)
    parents = sorted(parent_counts)
    parent_ids = {p: _unique(f"cl_{slug(p)}", taken) for p in parents}
    clusters = [AttributeCluster(parent_ids[p], p, parent_counts[p], None, (p,)) for p in parents]
    if width == 1:  # one attribute: the parents are the only level
        assignments = np.asarray([parent_ids[v[0]] for v in rows], dtype=object)
        return AttributeGrouping(clusters, assignments, metrics=_metrics(assignments))
    leaf_ids: dict[tuple[str, ...], str] = {}
    relationships: list[dict[str, str]] = []
    for v in sorted(counts):
        leaf = _unique("cl_" + "_".join(slug(x) for x in v), taken)
        leaf_ids[v] = leaf
        clusters.append(AttributeCluster(leaf, LABEL_SEPARATOR.join(v), counts[v], parent_ids[v[0]], v))
        relationships.append({"parent_cluster_id": parent_ids[v[0]], "child_cluster_id": leaf})
    assignments = np.asarray([leaf_ids[v] for v in rows], dtype=object)
    return AttributeGrouping(clusters, assignments, relationships, bool(relationships), _metrics(assignments))


def _metrics(assignments: np.ndarray) -> dict[str, Any]:
    """Size metrics over the clusters documents are assigned to (no noise in attribute runs)."""
    _, codes = np.unique(assignments.astype(str), return_inverse=True)
    return size_metrics(codes.reshape(-1))
