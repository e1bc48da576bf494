"""Clustering quality metrics (ClusterExecutionMetrics, contract §1.5.10).

Computed on non-noise points in the space actually clustered. Every value is a plain Python
float/int/str/bool or None, never NaN/inf, so it serialises to JSON and the SDK accepts it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

DOMINANT_SHARE = 0.9


def quality_metrics(
    X: np.ndarray, labels: np.ndarray, *, sample_size: int = 10_000, seed: int = 42
) -> dict[str, Any]:
    """Silhouette / Davies-Bouldin / Calinski-Harabasz, size statistics and the degenerate flag.

    The score metrics are None unless 2 <= clusters <= clustered points - 1. Silhouette is
    O(n^2), so above `sample_size` clustered points it runs on a seeded uniform sample.
    """
    labels = np.asarray(labels)
    clustered = labels != -1
    Xc, lc = X[clustered], labels[clustered]
    metrics = size_metrics(labels)
    k, m = int(np.unique(lc).shape[0]), int(lc.shape[0])
    if 2 <= k <= m - 1:
        metrics["silhouette_score"] = _silhouette(Xc, lc, sample_size, seed)
        metrics["davies_bouldin_index"] = _nonneg(_safe(davies_bouldin_score, Xc, lc))
        metrics["calinski_harabasz_score"] = _nonneg(_safe(calinski_harabasz_score, Xc, lc))
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


def _silhouette(Xc: np.ndarray, lc: np.ndarray, sample_size: int, seed: int) -> float | None:
    if lc.shape[0] > sample_size:
        idx = np.sort(np.random.default_rng(seed).choice(lc.shape[0], size=sample_size, replace=False))
        Xc, lc = Xc[idx], lc[idx]
        k = np.unique(lc).shape[0]
        if not 2 <= k <= lc.shape[0] - 1:
            return None
    value = _safe(silhouette_score, Xc, lc)
    return None if value is None else min(1.0, max(-1.0, value))


def _safe(score: Callable[..., Any], Xc: np.ndarray, lc: np.ndarray) -> float | None:
    """Run an sklearn score; a metric that cannot be computed is None, never a failed run."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            value = float(score(Xc, lc))
        except (ValueError, FloatingPointError, ZeroDivisionError):
            return None
    return value if math.isfinite(value) else None


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
