"""A completed run's groups (its clusters) and the members of each, for GET …/groups (pure).

A group's members are its rows of members.parquet, nearest to the centroid first (then by
document id; attribute runs have no distances, so by document id); a hierarchical parent's
members are its children's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa


def group_records(run: dict[str, Any], labels: dict[str, str]) -> list[dict[str, Any]]:
    """One ClusterGroup per centroid, in the run's order, with its current label (overrides win)."""
    out = []
    for c in run.get("centroids") or []:
        cid = str(c["cluster_id"])
        group: dict[str, Any] = {"cluster_id": cid, "member_count": int(c.get("num_members") or 0)}
        label = labels.get(cid) or c.get("label")
        if label:
            group["label"] = str(label)
        if isinstance(c.get("summary"), str):
            group["summary"] = c["summary"]
        if isinstance(c.get("keywords"), list):
            group["keywords"] = [str(k) for k in c["keywords"]]
        if c.get("parent_cluster_id"):
            group["parent_cluster_id"] = str(c["parent_cluster_id"])
        out.append(group)
    return out


def leaves(groups: list[dict[str, Any]]) -> dict[str, set[str]]:
    """group id -> the members.parquet cluster ids whose rows belong to it (itself and, for a
    hierarchical parent, its descendants)."""
    children: dict[str, list[str]] = {}
    for g in groups:
        if g.get("parent_cluster_id"):
            children.setdefault(g["parent_cluster_id"], []).append(g["cluster_id"])
    out: dict[str, set[str]] = {}
    for g in groups:
        found, todo = set(), [g["cluster_id"]]
        while todo:
            cid = todo.pop()
            if cid not in found:
                found.add(cid)
                todo.extend(children.get(cid, []))
        out[g["cluster_id"]] = found
    return out


def members_of(
    members: pa.Table, groups: list[dict[str, Any]], page: list[str], *, offset: int, limit: int
) -> dict[str, list[dict[str, str]]]:
    """For each group id in `page`: its members `[{document_id, collection_id}]` from `offset`, at
    most `limit`. `groups` are all the run's groups (a parent's children may be on other pages)."""
    out: dict[str, list[dict[str, str]]] = {cid: [] for cid in page}
    if limit <= 0 or members.num_rows == 0 or not page:
        return out
    ids = np.asarray([c or "" for c in members.column("cluster_id").to_pylist()], dtype=str)
    docs = np.asarray(members.column("document_id").to_pylist(), dtype=str)
    cols = members.column("collection_id").to_pylist()
    distance = members.column("distance_to_centroid").to_numpy(zero_copy_only=False).astype(np.float64)
    distance = np.where(np.isnan(distance), np.inf, distance)
    names, codes = np.unique(ids, return_inverse=True)
    order = np.lexsort((docs, distance, codes))  # by cluster; nearest first, then by document id
    bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
    where = {str(n): i for i, n in enumerate(names)}
    tree = leaves(groups)
    for gid in page:
        spans = [
            order[bounds[where[c]] : bounds[where[c] + 1]] for c in sorted(tree.get(gid, {gid})) if c in where
        ]
        if not spans:
            continue
        rows = spans[0] if len(spans) == 1 else np.concatenate(spans)
        if len(spans) > 1:
            rows = rows[np.lexsort((docs[rows], distance[rows]))]
        rows = rows[offset : offset + limit]
        out[gid] = [{"document_id": str(docs[i]), "collection_id": str(cols[i])} for i in rows]
    return out
