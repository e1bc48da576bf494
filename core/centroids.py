"""Cluster centroids and per-point distance / cosine to the point's own centroid.

Noise (label -1) never belongs to a cluster: it gets no centroid and NaN per-point values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CENTROID_METHODS: tuple[str, ...] = ("mean", "median", "medoid")

# Exact medoids cost O(m^2) per cluster; above this size use the member nearest the mean.
MEDOID_EXACT_MAX = 2048
_CHUNK = 8192  # rows per temporary: 25 MB at D=768, so the peak stays near the matrix itself


def cluster_members(labels: np.ndarray, cluster_labels: np.ndarray) -> list[np.ndarray]:
    """Indices of each cluster's members, in `cluster_labels` order (one sort, not k masks)."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, cluster_labels, side="left")
    ends = np.searchsorted(sorted_labels, cluster_labels, side="right")
    return [order[s:e] for s, e in zip(starts, ends, strict=True)]


def compute_centroids(
    X: np.ndarray, labels: np.ndarray, method: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """Return (cluster label values sorted ascending, float32 centroids of shape (k, D))."""
    if method not in CENTROID_METHODS:
        raise ValueError(f"centroid method must be one of {CENTROID_METHODS} (got {method!r})")
    cluster_labels = np.unique(labels[labels != -1]).astype(np.int64)
    if method == "mean":
        return cluster_labels, _means(X, labels, cluster_labels)
    centroids = np.empty((len(cluster_labels), X.shape[1]), dtype=np.float32)
    for i, idx in enumerate(cluster_members(labels, cluster_labels)):
        members = np.asarray(X[idx], dtype=np.float64)
        if method == "mean":
            centroids[i] = members.mean(axis=0)
        elif method == "median":
            centroids[i] = np.median(members, axis=0)
        else:
            centroids[i] = members[_medoid_index(members)]
    return cluster_labels, centroids


def _means(X: np.ndarray, labels: np.ndarray, cluster_labels: np.ndarray) -> np.ndarray:
    """Cluster means, summed in float64 from float32 member rows (no float64 copy of the members)."""
    out = np.empty((len(cluster_labels), X.shape[1]), dtype=np.float32)
    for i, idx in enumerate(cluster_members(labels, cluster_labels)):
        out[i] = X[idx].sum(axis=0, dtype=np.float64) / max(len(idx), 1)
    return out


def _medoid_index(members: np.ndarray) -> int:
    """Member with the smallest summed Euclidean distance to the others."""
    m = members.shape[0]
    if m > MEDOID_EXACT_MAX:
        d = np.linalg.norm(members - members.mean(axis=0), axis=1)
        return int(np.argmin(d))
    sq = np.einsum("ij,ij->i", members, members)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (members @ members.T)
    return int(np.argmin(np.sqrt(np.maximum(d2, 0.0)).sum(axis=1)))


def _centroid_index(labels: np.ndarray, cluster_labels: np.ndarray) -> np.ndarray:
    """Row of each point's centroid in `cluster_labels`; -1 for noise."""
    idx = np.searchsorted(cluster_labels, labels)
    clustered = labels != -1
    safe = np.minimum(idx, max(len(cluster_labels) - 1, 0))
    if clustered.any() and (
        len(cluster_labels) == 0 or not np.array_equal(cluster_labels[safe[clustered]], labels[clustered])
    ):
        raise ValueError("labels contain values missing from cluster_labels")
    return np.where(clustered, idx, -1)


def point_stats(
    X: np.ndarray, labels: np.ndarray, cluster_labels: np.ndarray, centroids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(Euclidean distance, cosine similarity) of each point to its own cluster's centroid, in one
    pass over X: float32 (N,) each, NaN for noise. A zero vector (or zero centroid) has no
    direction; its similarity is reported as 0.0."""
    idx = _centroid_index(labels, cluster_labels)
    c_norm = np.linalg.norm(centroids, axis=1)
    dist = np.full(X.shape[0], np.nan, dtype=np.float32)
    cos = np.full(X.shape[0], np.nan, dtype=np.float32)
    for start in range(0, X.shape[0], _CHUNK):
        stop = min(start + _CHUNK, X.shape[0])
        own = idx[start:stop]
        if (own >= 0).all():  # the common case: a slice, not a copy of the rows
            rows: slice | np.ndarray = slice(start, stop)
        else:
            rows = np.nonzero(own >= 0)[0] + start
            own = idx[rows]
            if not own.size:
                continue
        pts = np.asarray(X[rows], dtype=np.float32)
        cents = centroids[own]
        dots = np.einsum("ij,ij->i", pts, cents)
        denom = np.sqrt(np.einsum("ij,ij->i", pts, pts)) * c_norm[own]
        cos[rows] = np.clip(np.divide(dots, denom, out=np.zeros_like(dots), where=denom > 0), -1.0, 1.0)
        cents -= pts  # the gathered copy is ours: reuse it for the difference
        dist[rows] = np.sqrt(np.einsum("ij,ij->i", cents, cents))
    return dist, cos


@dataclass
class MeanGeometry:
    """Mean centroids and every point's relation to its own, from two passes over X.

    `centroids64` are the float64 means (sums of the float32 rows in float64), `centroids` the
    same in float32; `sq_distances` (float64, NaN for noise) are each point's squared Euclidean
    distance to its float32 centroid. They are exactly what Davies–Bouldin and Calinski–Harabasz
    need (core.scores.davies_bouldin_calinski_harabasz_from), so a run whose metrics space is X
    does not pass over X again for them.
    """

    cluster_labels: np.ndarray  # int64 (k,), ascending
    counts: np.ndarray  # int64 (k,)
    centroids: np.ndarray  # float32 (k, D)
    centroids64: np.ndarray  # float64 (k, D)
    sq_distances: np.ndarray  # float64 (N,)
    distances: np.ndarray  # float32 (N,)
    cosines: np.ndarray  # float32 (N,)


def mean_geometry(X: np.ndarray, labels: np.ndarray, threads: int | None = None) -> MeanGeometry:
    """Mean centroids, distances and cosines (as `compute_centroids` + `point_stats`) in two
    compiled passes over X (core.row_kernels), each shared out over `threads` (default: the BLAS
    thread count of this process): float64 cluster sums, then every point's distance and cosine."""
    from core import row_kernels
    from core.scores import workers

    labels = np.asarray(labels)
    threads = threads or workers()
    cluster_labels, idx, counts = _label_rows(labels)
    k = len(cluster_labels)
    totals = row_kernels.cluster_sums(X, idx, k, threads)
    centroids64 = totals / np.maximum(counts, 1)[:, None]
    centroids = centroids64.astype(np.float32)
    sq, dist, cos = row_kernels.point_geometry(X, idx, centroids, threads)
    return MeanGeometry(cluster_labels, counts, centroids, centroids64, sq, dist, cos)


def _label_rows(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cluster labels ascending, each point's row among them or -1 for noise, member counts).
    Labels from -1 up to a few times N (every algorithm's) by one bincount and a lookup table
    (~1 ms at 100k), others by sorting (np.unique + searchsorted, ~9 ms)."""
    n = labels.size
    if n and np.issubdtype(labels.dtype, np.integer) and labels.min() >= -1 and labels.max() < 4 * n + 1024:
        shifted = labels.astype(np.int64) + 1  # 0: noise
        sizes = np.bincount(shifted)
        present = np.flatnonzero(sizes[1:])
        row = np.full(sizes.size, -1, dtype=np.int64)
        row[present + 1] = np.arange(present.size)
        return present.astype(np.int64), row[shifted], sizes[present + 1].astype(np.int64)
    cluster_labels = np.unique(labels[labels != -1]).astype(np.int64)
    idx = _centroid_index(labels, cluster_labels)
    return cluster_labels, idx, np.bincount(idx[idx >= 0], minlength=len(cluster_labels)).astype(np.int64)


def positions_in(labels: np.ndarray, values: np.ndarray) -> np.ndarray:
    """int64: each label's position in `values` (distinct labels, any order), -1 where it is not
    among them (noise). Labels and values from -1 up to a few times N (every algorithm's) by a
    lookup table (~0.3 ms at 100k), others by sorting `values` and searching (~3 ms)."""
    labels = np.asarray(labels)
    values = np.asarray(values)
    n = labels.size
    if not values.size or not n:
        return np.full(labels.shape, -1, dtype=np.int64)
    limit = 4 * n + 1024
    if (
        np.issubdtype(labels.dtype, np.integer)
        and np.issubdtype(values.dtype, np.integer)
        and min(int(labels.min()), int(values.min())) >= -1
        and max(int(labels.max()), int(values.max())) < limit
    ):
        table = np.full(max(int(labels.max()), int(values.max())) + 2, -1, dtype=np.int64)
        table[values.astype(np.int64) + 1] = np.arange(values.size)
        return table[labels.astype(np.int64) + 1]
    order = np.argsort(values, kind="stable")
    at = np.minimum(np.searchsorted(values[order], labels), values.size - 1)
    return np.where(values[order][at] == labels, order[at], -1).astype(np.int64)


def distances_to_centroids(
    X: np.ndarray, labels: np.ndarray, cluster_labels: np.ndarray, centroids: np.ndarray
) -> np.ndarray:
    """Euclidean distance of each point to its own cluster's centroid: float32 (N,), NaN for noise."""
    return point_stats(X, labels, cluster_labels, centroids)[0]


def cosine_to_centroids(
    X: np.ndarray, labels: np.ndarray, cluster_labels: np.ndarray, centroids: np.ndarray
) -> np.ndarray:
    """Cosine similarity of each point to its own centroid: float32 (N,), NaN for noise.

    A zero vector (or zero centroid) has no direction; its similarity is reported as 0.0.
    """
    return point_stats(X, labels, cluster_labels, centroids)[1]


def cosine_stats(
    cosines: np.ndarray, labels: np.ndarray, cluster_labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster (mean, min) of `cosine_to_centroids` output, float64 arrays of shape (k,)."""
    groups = cluster_members(labels, cluster_labels)
    means = np.array([float(cosines[g].mean(dtype=np.float64)) for g in groups], dtype=np.float64)
    mins = np.array([float(cosines[g].min()) for g in groups], dtype=np.float64)
    return means, mins
