"""Which members of each cluster the labellers read (pure, over the pipeline's arrays)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def ranked_members(
    labels: np.ndarray, distances: np.ndarray, cluster_values: Sequence[int]
) -> list[np.ndarray]:
    """Per cluster (in `cluster_values` order) its member positions, nearest the centroid first
    (ties by position). One sort for all clusters: 100k members in thousands of clusters is a
    single lexsort."""
    labels = np.asarray(labels)
    dist = np.nan_to_num(np.asarray(distances, dtype=np.float64), nan=np.inf)
    order = np.lexsort((np.arange(labels.size), dist, labels))
    sorted_labels = labels[order]
    values = np.asarray(list(cluster_values), dtype=labels.dtype)
    starts = np.searchsorted(sorted_labels, values, side="left")
    ends = np.searchsorted(sorted_labels, values, side="right")
    return [order[s:e] for s, e in zip(starts, ends, strict=True)]


def spread(ranked: np.ndarray, n: int) -> np.ndarray:
    """`n` members evenly spaced over the distance ranks: the nearest one first, then out to
    the cluster's edge, so the texts counted for keywords cover the whole cluster."""
    if ranked.size <= n:
        return ranked
    picks = np.unique(np.linspace(0, ranked.size - 1, n).round().astype(np.int64))
    return ranked[picks]


def representatives(ranked: np.ndarray, n: int, strategy: str = "nearest") -> np.ndarray:
    """The members a label is written from. `nearest`: the `n` closest to the centroid.
    `representative`: half of them nearest, the rest evenly spaced over the remaining distance
    ranks (from the core out to the edge), so neighbouring clusters whose cores look alike are
    still told apart. (No vectors are at hand here: the spread is over distances, not a
    farthest-point cover.)"""
    if strategy != "representative" or ranked.size <= n:
        return ranked[:n]
    near = (n + 1) // 2
    rest = ranked[near:]
    # evenly spaced and ending at the farthest member: the nearest of the rest is like the core
    picks = np.unique(np.linspace(0, rest.size - 1, n - near + 1)[1:].round().astype(np.int64))
    return np.concatenate([ranked[:near], rest[picks]])
