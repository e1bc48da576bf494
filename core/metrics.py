"""Clustering quality metrics (ClusterExecutionMetrics, contract §1.5.10).

Computed on non-noise points in the space actually clustered. Every value is a plain Python
float/int/str/bool or None, never NaN/inf, so it serialises to JSON and the SDK accepts it.
The scores themselves are `core.scores` (float32, equal to scikit-learn's): Davies–Bouldin and
Calinski–Harabasz on every clustered point, the silhouette on a seeded sample of
`SILHOUETTE_SAMPLE` points (docs/algorithms.md gives its measured error).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from core.centroids import MeanGeometry, positions_in
from core.scores import (
    davies_bouldin_calinski_harabasz,
    davies_bouldin_calinski_harabasz_from,
    sample_distances,
    sample_indices,
    silhouette,
    silhouette_from_distances,
)

DOMINANT_SHARE = 0.9
# Points the silhouette is computed on (seeded sample above this). The distances of 2,048 points
# take 0.07 s of one core at D = 768, so they fit beside a k-means fit with the layout (4,096
# took 0.25 s and slowed the fit); its error is measured in docs/algorithms.md.
SILHOUETTE_SAMPLE = 2048
T = TypeVar("T")


def quality_metrics(
    X: np.ndarray,
    labels: np.ndarray,
    *,
    sample_size: int = SILHOUETTE_SAMPLE,
    seed: int = 42,
    geometry: MeanGeometry | None = None,
    presampled: SilhouetteSample | None = None,
) -> dict[str, Any]:
    """Silhouette / Davies-Bouldin / Calinski-Harabasz, size statistics and the degenerate flag.

    The score metrics are None unless 2 <= clusters <= clustered points - 1. Silhouette is
    O(n^2), so above `sample_size` clustered points it runs on a seeded uniform sample (the
    first `sample_size` of `RandomState(seed).permutation`, as scikit-learn's
    `silhouette_score(sample_size=..., random_state=seed)` draws it); the other two use every point.
    `geometry`, when given, is `mean_geometry(X, labels)`: the two centroid scores come from it
    without another pass over X; `presampled`, `silhouette_sample(X, sample_size, seed)`
    computed beside the fit, serves the silhouette when every point is clustered.
    """
    labels = np.asarray(labels)
    clustered = labels != -1
    Xc, lc = (X, labels) if clustered.all() else (X[clustered], labels[clustered])
    metrics = size_metrics(labels)
    k, m = int(np.unique(lc).shape[0]), int(lc.shape[0])
    if 2 <= k <= m - 1:
        usable = presampled if presampled is not None and presampled.serves(m, sample_size, seed) else None
        metrics["silhouette_score"] = _silhouette(Xc, lc, sample_size, seed, usable)
        if geometry is not None:
            codes = positions_in(lc, geometry.cluster_labels)
            sq = geometry.sq_distances if clustered.all() else geometry.sq_distances[clustered]
            c64 = geometry.centroids64
            scores = _safe(lambda _x, _l: davies_bouldin_calinski_harabasz_from(c64, codes, sq), Xc, lc)
        else:
            scores = _safe(davies_bouldin_calinski_harabasz, Xc, lc)
        db, ch = scores if scores is not None else (None, None)
        metrics["davies_bouldin_index"] = _nonneg(_finite(db))
        metrics["calinski_harabasz_score"] = _nonneg(_finite(ch))
    return metrics


def size_metrics(labels: np.ndarray) -> dict[str, Any]:
    """The metrics that need only labels (-1 = noise); the score metrics are None here.
    Attribute runs report exactly these."""
    labels = np.asarray(labels)
    lc = labels[labels != -1]
    _, counts = np.unique(lc, return_counts=True)
    n, m, k = int(labels.shape[0]), int(lc.shape[0]), int(counts.shape[0])
    metrics: dict[str, Any] = {
        "silhouette_score": None,
        "davies_bouldin_index": None,
        "calinski_harabasz_score": None,
        "avg_cluster_size": float(m / k) if k else 0.0,
        "noise_ratio": float((n - m) / n) if n else 0.0,
        "cluster_size_entropy": _size_entropy(counts),
    }
    reason, detail = _degenerate(n, m, counts)
    metrics["degenerate"] = reason or False
    if reason:
        metrics["degenerate_detail"] = detail
    metrics["should_recluster"] = 1 if reason else 0
    return metrics


def _silhouette(
    Xc: np.ndarray, lc: np.ndarray, sample_size: int, seed: int, presampled: SilhouetteSample | None
) -> float | None:
    idx = sample_indices(lc.shape[0], sample_size, seed) if lc.shape[0] > sample_size else None
    if presampled is not None:
        labels = lc if idx is None else lc[idx]
        D = presampled.distances
        value = _finite(_safe(lambda _x, lab: silhouette_from_distances(D, lab), Xc, labels))
    else:
        if idx is not None:
            Xc, lc = Xc[idx], lc[idx]
        value = _finite(_safe(silhouette, Xc, lc))  # None too when the sample has < 2 labels
    return None if value is None else min(1.0, max(-1.0, value))


@dataclass
class SilhouetteSample:
    """The silhouette sample's distances, drawn over all `n` points before the labels exist: it
    is the sample `quality_metrics` draws whenever all n points are clustered (no noise)."""

    n: int
    sample_size: int
    seed: int
    distances: np.ndarray

    def serves(self, clustered: int, sample_size: int, seed: int) -> bool:
        return (self.n, self.sample_size, self.seed) == (clustered, sample_size, seed)


def silhouette_sample(
    X: np.ndarray, sample_size: int = SILHOUETTE_SAMPLE, seed: int = 42
) -> SilhouetteSample:
    n = X.shape[0]
    rows = X if n <= sample_size else X[sample_indices(n, sample_size, seed)]
    return SilhouetteSample(n, sample_size, seed, sample_distances(rows))


def _safe(score: Callable[[np.ndarray, np.ndarray], T | None], Xc: np.ndarray, lc: np.ndarray) -> T | None:
    """Run a score; a metric that cannot be computed is None, never a failed run."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            return score(Xc, lc)
        except (ValueError, FloatingPointError, ZeroDivisionError):
            return None


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _nonneg(value: float | None) -> float | None:
    return None if value is None else max(0.0, value)


def _size_entropy(counts: np.ndarray) -> float:
    """Shannon entropy of cluster sizes divided by log(k): 1 = equal sizes, 0 = one cluster."""
    if counts.shape[0] < 2:
        return 0.0
    p = counts / counts.sum()
    h = float(-(p * np.log(p)).sum() / math.log(counts.shape[0]))
    return min(1.0, max(0.0, h))


def _degenerate(n: int, m: int, counts: np.ndarray) -> tuple[str | None, str | None]:
    k = int(counts.shape[0])
    if k == 0:
        return "all_noise", f"all {n} points are noise"
    if k == 1:
        return "single_cluster", f"all {m} clustered points are in one cluster"
    if int(counts.max()) == 1:
        return "all_singletons", f"each of the {k} clusters has a single member"
    share = int(counts.max()) / m
    if share >= DOMINANT_SHARE:
        return "dominant_cluster", f"one of {k} clusters holds {share:.1%} of {m} clustered points"
    return None, None
