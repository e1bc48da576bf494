"""A run's export rows: its members with current cluster labels (pure; no I/O).

Columns: document_id, collection_id, cluster_id, cluster_label, distance_to_centroid, then x, y[, z]
when the members artifact has layout coordinates. Noise rows have an empty cluster_id and label.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from core.artifacts import COORDINATE_COLUMNS

EXPORT_NAME = "cluster_documents.parquet"
COLUMNS = ("document_id", "collection_id", "cluster_id", "cluster_label", "distance_to_centroid")


def current_labels(run: dict[str, Any]) -> dict[str, str]:
    """cluster_id -> the label shown now: an override, else the centroid's (machine) label."""
    labels = {str(c["cluster_id"]): str(c.get("label") or "") for c in run.get("centroids") or []}
    overrides = run.get("label_overrides") or {}
    return labels | {k: str(v) for k, v in overrides.items() if v}


def export_table(members: pa.Table, labels: dict[str, str]) -> pa.Table:
    """The members artifact as export rows (noise: "" for cluster_id and cluster_label)."""
    ids = pc.fill_null(members.column("cluster_id").cast(pa.string()), "")
    label_col = pa.array([labels.get(cid, "") if cid else "" for cid in ids.to_pylist()], type=pa.string())
    distance = members.column("distance_to_centroid").cast(pa.float64())
    columns: list[Any] = [
        members.column("document_id").cast(pa.string()),
        members.column("collection_id").cast(pa.string()),
        ids,
        label_col,
        distance,
    ]
    names = list(COLUMNS)
    for name in COORDINATE_COLUMNS:
        if name in members.column_names:
            columns.append(members.column(name).cast(pa.float64()))
            names.append(name)
    return pa.table(columns, names=names)


def select_clusters(centroids: Iterable[dict[str, Any]], labels: dict[str, str], selector: str) -> set[str]:
    """Cluster ids `selector` names: a cluster id, else every cluster whose current label it is
    (case-insensitive when no exact match); a hierarchical parent brings its descendants along.
    Empty: nothing matches."""
    records = list(centroids)
    ids = {str(c["cluster_id"]) for c in records}
    if selector in ids:
        chosen = {selector}
    else:
        chosen = {cid for cid, label in labels.items() if label == selector and cid in ids}
        if not chosen:
            folded = selector.casefold()
            chosen = {cid for cid, label in labels.items() if label.casefold() == folded and cid in ids}
    parent_of = {str(c["cluster_id"]): c.get("parent_cluster_id") for c in records}
    while True:  # descendants at every depth (vector hierarchies nest up to 5 levels)
        more = {cid for cid, parent in parent_of.items() if parent in chosen and cid not in chosen}
        if not more:
            return chosen
        chosen |= more


def filter_clusters(table: pa.Table, cluster_ids: set[str]) -> pa.Table:
    mask = pc.is_in(table.column("cluster_id"), value_set=pa.array(sorted(cluster_ids), type=pa.string()))
    return table.filter(mask)


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        # user-set labels and ids reach spreadsheets: a leading quote keeps `=HYPERLINK(...)` text
        return "'" + value
    return value


def to_csv(table: pa.Table) -> str:
    """Header row + one row per member; nulls (noise distances) are empty cells."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.column_names)
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    for row in zip(*columns, strict=True):
        writer.writerow([_cell(v) for v in row])
    return out.getvalue()
