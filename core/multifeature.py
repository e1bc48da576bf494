"""Multi-feature runs: several vectors per document combined (concatenate, weighted) or clustered
one by one (independent). Pure functions over numpy; the worker (worker/multi_run.py) pulls the
aligned per-feature matrices and stores what these return.

Block rule (concatenate and weighted): with `normalize` each feature's vector is L2-normalised
on its own, then block b is multiplied by sqrt(w_b), the weights w normalised to sum to 1. The
squared euclidean distance of two documents is then Σ_b w_b·‖x_b − y_b‖², i.e. each feature
contributes to it in proportion to its weight, and (normalised) every concatenated row has
length 1. Without `normalize` the blocks keep their own scale and are only multiplied by sqrt(w_b).

weighted: the weights are learned by a search over the simplex lattice {w : w_b = i_b/m,
Σ i_b = m} (every weight vector in steps of 1/m, single features included), m the largest step
count whose lattice has at most `max_iterations` points. Each candidate is fitted with the run's
algorithm on a seeded sample and scored with the chosen metric (silhouette, davies_bouldin or
calinski_harabasz) in the space the algorithm saw; the best candidate's weights are then used on
all points. `method: bayesian` (the SDK's default) is answered by the same search: the lattice
over ≤ max_iterations candidates is small enough to try exhaustively.

independent: each feature is clustered on its own; cluster ids are `f<i>_cl_<k>` (i = the
feature's position in feature_uris, k the algorithm's label). A cluster of feature A whose
members lie ≥ HIERARCHY_SHARE inside one larger cluster of feature B is that cluster's child.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core import scores

MAX_FEATURES = 8
HIERARCHY_SHARE = 0.9  # share of a cluster's members inside the parent that makes it a child
LEARNING_SAMPLE = 2000  # default weight-learning sample
METRICS = ("silhouette", "davies_bouldin", "calinski_harabasz")
HIGHER_IS_BETTER = {"silhouette": True, "davies_bouldin": False, "calinski_harabasz": True}


def feature_prefix(index: int) -> str:
    """The in-run cluster id prefix of feature `index` under the independent strategy."""
    return f"f{index}_"


def normalised_weights(weights: Sequence[float]) -> np.ndarray:
    """Weights scaled to sum to 1 (float64); all zero is refused by the API before a run."""
    w = np.asarray(weights, dtype=np.float64)
    total = float(w.sum())
    if not np.all(w >= 0) or total <= 0:
        raise ValueError("weights must be non-negative and not all zero")
    return w / total


def combine(blocks: Sequence[np.ndarray], weights: Sequence[float], *, normalize: bool) -> np.ndarray:
    """One float32 (N, ΣD_b) matrix of the blocks per the block rule (module docstring)."""
    from core.pipeline import l2_normalize

    w = normalised_weights(weights)
    n = blocks[0].shape[0]
    out = np.empty((n, sum(b.shape[1] for b in blocks)), dtype=np.float32)
    col = 0
    for block, wb in zip(blocks, w, strict=True):
        d = block.shape[1]
        part = out[:, col : col + d]
        part[...] = block
        if normalize:
            l2_normalize(part, in_place=True)
        part *= np.float32(math.sqrt(wb))
        col += d
    return out


def lattice(n_features: int, budget: int) -> list[tuple[float, ...]]:
    """Weight vectors on the simplex in steps of 1/m, m the largest with ≤ budget points (m ≥ 1)."""
    m = 1
    while math.comb(m + 1 + n_features - 1, n_features - 1) <= budget:
        m += 1
    out = []
    for cuts in itertools.combinations(range(m + n_features - 1), n_features - 1):
        parts = np.diff([-1, *cuts, m + n_features - 1]) - 1  # stars and bars
        out.append(tuple(float(p) / m for p in parts))
    return out


def score(X: np.ndarray, labels: np.ndarray, metric: str) -> float | None:
    """The metric over the non-noise points, or None when it is undefined (< 2 clusters, ...)."""
    keep = labels >= 0
    Xc, lc = X[keep], labels[keep]
    if scores.encode(lc) is None:
        return None
    if metric == "silhouette":
        value = scores.silhouette(Xc, lc)
    else:
        both = scores.davies_bouldin_calinski_harabasz(Xc, lc)
        value = None if both is None else both[0 if metric == "davies_bouldin" else 1]
    return float(value) if value is not None and math.isfinite(value) else None


@dataclass
class LearnedWeights:
    weights: tuple[float, ...]  # normalised, in feature order
    score: float | None  # the best candidate's metric value (None: no candidate was scorable)
    metric: str
    candidates: int  # weight vectors tried
    sample_size: int  # points they were tried on


Fit = Callable[[np.ndarray], np.ndarray]  # matrix -> labels (-1 noise)


def learn_weights(
    blocks: Sequence[np.ndarray],
    fit: Fit,
    *,
    normalize: bool,
    metric: str = "silhouette",
    max_iterations: int = 20,
    sample_size: int | None = None,
    seed: int = 42,
) -> LearnedWeights:
    """The lattice weights whose clustering of a seeded sample scores best on `metric`.

    `fit` clusters a matrix as the run would (algorithm, params, any automatic reduction) and
    returns labels; each candidate is scored in the combined space it was fitted on. Ties keep the
    earlier candidate; the equal weights are tried first, so they win when nothing is better.
    """
    n = blocks[0].shape[0]
    size = min(n, sample_size or LEARNING_SAMPLE)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False)) if size < n else None
    sample = [b if rows is None else b[rows] for b in blocks]
    equal = tuple(1.0 / len(blocks) for _ in blocks)
    candidates = [equal, *(c for c in lattice(len(blocks), max_iterations) if not np.allclose(c, equal))]
    better = HIGHER_IS_BETTER[metric]
    best: tuple[float, ...] = equal
    best_score: float | None = None
    for weights in candidates:
        X = combine(sample, weights, normalize=normalize)
        value = score(X, fit(X), metric)
        if value is None:
            continue
        if best_score is None or (value > best_score if better else value < best_score):
            best, best_score = weights, value
    return LearnedWeights(best, best_score, metric, len(candidates), int(size))


def hierarchy(
    labelings: Sequence[np.ndarray], prefixes: Sequence[str], *, share: float = HIERARCHY_SHARE
) -> list[dict[str, Any]]:
    """Parent/child links between the clusterings of different features over the same points.

    A cluster `a` (of feature i) is the child of cluster `b` (of feature j ≠ i) when at least
    `share` of a's members are members of b and b is larger than a. Noise (-1) is no cluster.
    Each link: {parent_cluster_id, child_cluster_id, parent_feature_index, child_feature_index,
    overlap (the share, 0–1), child_members}; ordered by child then parent id.
    """
    out: list[dict[str, Any]] = []
    for i, j in itertools.permutations(range(len(labelings)), 2):
        a_labels, b_labels = labelings[i], labelings[j]
        both = (a_labels >= 0) & (b_labels >= 0)
        a_values, a_sizes = np.unique(a_labels[a_labels >= 0], return_counts=True)
        b_values, b_sizes = np.unique(b_labels[b_labels >= 0], return_counts=True)
        if not a_values.size or not b_values.size:
            continue
        # contingency table of (a, b) over the points in a cluster of both features
        table = np.zeros((a_values.size, b_values.size), dtype=np.int64)
        cells = (np.searchsorted(a_values, a_labels[both]), np.searchsorted(b_values, b_labels[both]))
        np.add.at(table, cells, 1)
        for ai in range(a_values.size):
            bi = int(np.argmax(table[ai]))
            overlap = table[ai, bi] / a_sizes[ai]
            if overlap >= share and b_sizes[bi] > a_sizes[ai]:
                out.append(
                    {
                        "parent_cluster_id": f"{prefixes[j]}cl_{int(b_values[bi])}",
                        "child_cluster_id": f"{prefixes[i]}cl_{int(a_values[ai])}",
                        "parent_feature_index": int(j),
                        "child_feature_index": int(i),
                        "overlap": round(float(overlap), 6),
                        "child_members": int(a_sizes[ai]),
                    }
                )
    out.sort(key=lambda r: (r["child_cluster_id"], r["parent_cluster_id"]))
    return out
