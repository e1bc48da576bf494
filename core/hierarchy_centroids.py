"""Centroids and member statistics for every node of a vector hierarchy (core.hierarchy_split).

A node's centroid is computed over all its members (a parent: the union of its children's) with
the run's centroid method, in the feature space (as flat runs do); so are its mean / min cosine and
each member's distance to it (which picks the representatives nearest the centroid). One pass over
X per tree level, with the functions flat runs use (core.centroids).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.centroids import compute_centroids, cosine_stats, point_stats
from core.hierarchy_split import Hierarchy


@dataclass
class NodeSummary:
    index: int  # the node's index in Hierarchy.nodes (the leaf label of its members)
    cluster_id: str
    parent_cluster_id: str | None
    num_members: int
    centroid: np.ndarray  # float32 (D,)
    mean_cosine_similarity: float
    min_cosine_similarity: float
    members: np.ndarray  # int64 point indices, ascending
    member_distances: np.ndarray  # float32, each member's distance to this node's centroid


def node_summaries(X: np.ndarray, hierarchy: Hierarchy, method: str = "mean") -> list[NodeSummary]:
    """One summary per node, in `hierarchy.nodes` order (parents before their children)."""
    n = X.shape[0]
    out: list[NodeSummary | None] = [None] * len(hierarchy.nodes)
    for depth in range(int(hierarchy.report.get("depth_reached", 0)) + 1):
        at_depth = [i for i, node in enumerate(hierarchy.nodes) if node.depth == depth]
        if not at_depth:
            break
        labels = np.full(n, -1, dtype=np.int64)  # the node each point belongs to at this depth
        for i in at_depth:
            labels[hierarchy.nodes[i].members] = i
        cluster_labels, centroids = compute_centroids(X, labels, method)
        distances, cosines = point_stats(X, labels, cluster_labels, centroids)
        mean_cos, min_cos = cosine_stats(cosines, labels, cluster_labels)
        for row, i in enumerate(int(v) for v in cluster_labels):
            node = hierarchy.nodes[i]
            out[i] = NodeSummary(
                index=i,
                cluster_id=node.cluster_id,
                parent_cluster_id=hierarchy.parent_id(i),
                num_members=int(node.members.shape[0]),
                centroid=centroids[row],
                mean_cosine_similarity=float(mean_cos[row]),
                min_cosine_similarity=float(min_cos[row]),
                members=node.members,
                member_distances=distances[node.members],
            )
    missing = [hierarchy.nodes[i].cluster_id for i, s in enumerate(out) if s is None]
    if missing:
        raise ValueError(f"hierarchy nodes without members: {missing[:5]}")
    return [s for s in out if s is not None]
