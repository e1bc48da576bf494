"""Automatic choice of the number of clusters for algorithms that need one (kmeans, agglomerative,
spectral).

Method (deterministic for a given `seed`):

1. Sample: at most `sample` points (default 5,000), drawn without replacement with
   `numpy.random.default_rng(seed)` and kept in their original order. Smaller inputs are used whole.
2. Candidates: k = `k_min` .. min(`k_max`, n_sample - 1), i.e. 2..min(20, n-1) by default
   (a silhouette needs at least two labels and fewer labels than points).
3. Each candidate labels the sample through the caller's `fit_labels(X_sample, k)` (the algorithm
   itself, with the request's other params), and is scored by the mean silhouette (euclidean, the
   space the algorithm clustered) on a fixed seeded subset of at most `silhouette_sample` (2,000)
   sample points whose pairwise distances are computed once.
4. The highest silhouette wins; ties go to the smaller k. A labelling with fewer than two distinct
   labels on the scoring subset has no silhouette (reported as null) and cannot win. If no
   candidate can be scored (e.g. all points identical) the answer is `k_min`.

The report (JSON-safe, stored with the run) is
`{"method": "silhouette", "sample_size", "silhouette_sample_size", "tried": [k...],
"scores": [score|null ...], "best": k}`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.metrics import pairwise_distances, silhouette_score

from core.errors import RunDataError

K_MIN = 2
K_MAX = 20
SAMPLE = 5_000
SILHOUETTE_SAMPLE = 2_000


def seeded_sample(X: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Rows of `X` (at most `size`), drawn without replacement and kept in their original order."""
    n = X.shape[0]
    if n <= size:
        return X
    idx = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
    return X[idx]


def choose_k(
    X: np.ndarray,
    fit_labels: Callable[[np.ndarray, int], np.ndarray],
    *,
    k_min: int = K_MIN,
    k_max: int = K_MAX,
    sample: int = SAMPLE,
    silhouette_sample: int = SILHOUETTE_SAMPLE,
    seed: int,
) -> tuple[int, dict[str, Any]]:
    """Pick the number of clusters for `X` by silhouette over k_min..min(k_max, n_sample - 1).

    Parameters
    ----------
    X : (N, D) points.
    fit_labels : `(X_sample, k) -> labels` clustering the sample into k clusters.
    k_min, k_max : the candidate range (clipped to n_sample - 1).
    sample : points the candidates are fitted on (seeded sample when N is larger).
    silhouette_sample : points of that sample the silhouette is computed on.
    seed : makes the samples (and so the answer) reproducible.

    Returns
    -------
    (k, report) — see the module docstring for the report.
    """
    if k_min < 2:
        raise ValueError("k_min must be at least 2")
    Xs = seeded_sample(X, sample, seed)
    n = Xs.shape[0]
    hi = min(k_max, n - 1)
    if hi < k_min:
        raise RunDataError(f"automatic cluster count needs at least {k_min + 1} points (got {X.shape[0]})")
    # One fixed scoring subset for every candidate, so the scores are comparable.
    m = min(silhouette_sample, n)
    sub = np.arange(n) if m == n else np.sort(np.random.default_rng(seed + 1).choice(n, m, replace=False))
    dist = pairwise_distances(np.asarray(Xs[sub], dtype=np.float64))

    tried: list[int] = []
    scores: list[float | None] = []
    for k in range(k_min, hi + 1):
        labels = np.asarray(fit_labels(Xs, k))
        tried.append(k)
        scores.append(_silhouette(dist, labels[sub]))
    valid = [(s, k) for k, s in zip(tried, scores, strict=True) if s is not None]
    best = max(valid, key=lambda sk: (sk[0], -sk[1]))[1] if valid else k_min
    rounded = [None if s is None else round(s, 6) for s in scores]
    report: dict[str, Any] = {
        "method": "silhouette",
        "sample_size": int(n),
        "silhouette_sample_size": int(m),
        "tried": tried,
        "scores": rounded,
        "best": int(best),
    }
    return int(best), report


def _silhouette(dist: np.ndarray, labels: np.ndarray) -> float | None:
    distinct = np.unique(labels).size
    if distinct < 2 or distinct > labels.size - 1:
        return None
    return float(silhouette_score(dist, labels, metric="precomputed"))
