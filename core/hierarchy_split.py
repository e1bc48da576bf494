"""Hierarchical vector clustering: re-cluster large clusters recursively (`vector_config.hierarchical`).

Pure numpy over the space the run's algorithm clustered (after normalisation and any PCA); no I/O.
`core.algorithms.hierarchy` is agglomerative clustering, a different thing.

Tree. The algorithm's clusters are the top level, `cl_<k>`. A node may be split into children
`<id>_sub_<i>` (i = 0.. by size descending, ties by lowest member index), each of which may be
split again, down to `max_depth` levels below the top: `max_hierarchy_depth` counts sub-levels, so
1 gives `cl_0_sub_1` at most and 3 (the default) `cl_0_sub_1_sub_0_sub_2`. A parent's members are
exactly the union of its children's; every point belongs to one leaf (noise, label -1, stays noise
and is never split).

When a node is split (`min_child`, `is_large`):
- a child must hold at least max(MIN_CHILD, the algorithm's own minimum cluster size,
  MIN_CHILD_SHARE of the node) members;
- a node is tried only when it holds at least twice that and at least SPLIT_MIN_FRACTION of the
  run's points (so the tree stays a few dozen splits deep, whatever N);
- the split must be meaningful, as below; otherwise the node is a leaf.

How a node is split (`splitter`):
- centroid algorithms (kmeans, agglomerative, spectral, gaussian_mixture): k-means on the node's
  top SPLIT_DIMS principal components, fitted on a seeded sample of at most SPLIT_SAMPLE members,
  k = 2..K_MAX chosen by silhouette (core.scores). It is meaningful when that silhouette beats
  by SILHOUETTE_MARGIN the best silhouette of the same search on a Gaussian reference of the same
  size and the same principal variances (a single blob with the node's spread: one cluster).
  A fixed silhouette threshold does not work across dimensions: one Gaussian split in two scores
  0.34–0.55 in 2-d but 0.05 at 128-d, while three separated sub-blobs score 0.6–0.9 and their
  reference 0.25–0.48 (measured; the gap for no structure stayed under 0.05). Every member then
  goes to its nearest k-means centre. The sample is small (≤ SPLIT_SAMPLE × SPLIT_DIMS), so the
  k-means and the silhouette (scikit-learn's definition, from one distance matrix per node) are
  plain numpy here: scikit-learn's and core.scores' per-call set-up (thread pools) cost more
  than the work itself.
- density algorithms (dbscan, hdbscan, optics, mean_shift): HDBSCAN on a seeded sample of at most
  DENSITY_SAMPLE members with `allow_single_cluster` (so a node with no inner structure comes back
  as one cluster: not split), `min_cluster_size` = the child minimum above, and the run's HDBSCAN
  `min_samples`, `metric`, `alpha` and `cluster_selection_method` (not its
  `cluster_selection_epsilon` or `max_cluster_size`, which exist to stop exactly such splits).
  Meaningful when it finds at least two clusters. Sampled members keep HDBSCAN's label; its
  noise and the unsampled members go to the nearest child mean (so no point is lost to noise).
Everything is seeded by the run seed: the same data and parameters give the same tree.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel

MIN_CHILD = 5
MIN_CHILD_SHARE = 0.05
SPLIT_MIN_FRACTION = 0.02
K_MAX = 8
SPLIT_SAMPLE = 1_000
SPLIT_DIMS = 16
SILHOUETTE_MARGIN = 0.1
KMEANS_RESTARTS = 2
LLOYD_ITER = 100
DENSITY_SAMPLE = 5_000
DENSITY_ALGORITHMS = frozenset({"dbscan", "hdbscan", "optics", "mean_shift"})
MAX_DEPTH = 5  # the contract's range for max_hierarchy_depth is 1..5

# (X, the node's member indices, the smallest child, seed) -> a child label per member, or None
Splitter = Callable[[np.ndarray, np.ndarray, int, int], "np.ndarray | None"]
_CHUNK = 8192  # member rows per projection step: never a copy of a large node's rows


@dataclass
class Node:
    cluster_id: str
    parent: int | None  # index of the parent node, None at the top level
    depth: int  # 0 = the algorithm's own clusters
    members: np.ndarray  # int64 point indices, ascending
    children: list[int] = field(default_factory=list)  # node indices

    @property
    def is_leaf(self) -> bool:
        return not self.children


@dataclass
class Hierarchy:
    nodes: list[Node]  # breadth first: the top level by label, then each level in parents' order
    leaf_labels: np.ndarray  # int64 (N,): index of each point's leaf node, -1 for noise
    report: dict[str, Any]  # JSON-safe: method, max_depth, depth_reached, splits, leaves, ...

    def parent_id(self, i: int) -> str | None:
        p = self.nodes[i].parent
        return None if p is None else self.nodes[p].cluster_id

    @property
    def relationships(self) -> list[dict[str, str]]:
        """[{parent_cluster_id, child_cluster_id}] in node order (the attribute runs' shape)."""
        return [
            {"parent_cluster_id": self.nodes[n.parent].cluster_id, "child_cluster_id": n.cluster_id}
            for n in self.nodes
            if n.parent is not None
        ]


def build_hierarchy(
    X: np.ndarray,
    labels: np.ndarray,
    *,
    algorithm: str,
    params: BaseModel,
    max_depth: int,
    seed: int,
    before_split: Callable[[], None] | None = None,
) -> Hierarchy:
    """Split the clusters of `labels` (-1 = noise) over `X` recursively (module docstring).
    `before_split()` runs before each attempt: the pipeline's cancel check raises from it."""
    if not 1 <= max_depth <= MAX_DEPTH:
        raise ValueError(f"max_depth must be between 1 and {MAX_DEPTH} (got {max_depth})")
    labels = np.asarray(labels, dtype=np.int64)
    n = labels.shape[0]
    split, own_min, method = splitter(algorithm, params)
    nodes: list[Node] = []
    for value in np.unique(labels[labels != -1]):
        nodes.append(Node(f"cl_{int(value)}", None, 0, np.flatnonzero(labels == value)))
    level = list(range(len(nodes)))
    tried = 0
    for depth in range(1, max_depth + 1):
        nxt: list[int] = []
        for i in level:
            node = nodes[i]
            m = node.members.shape[0]
            smallest = min_child(m, own_min)
            if not is_large(m, n, smallest):
                continue
            if before_split is not None:
                before_split()
            tried += 1
            sub = split(X, node.members, smallest, seed)
            if sub is None:
                continue
            for c, idx in enumerate(_children_by_size(sub)):
                node.children.append(len(nodes))
                nxt.append(len(nodes))
                nodes.append(Node(f"{node.cluster_id}_sub_{c}", i, depth, node.members[idx]))
        if not nxt:
            break
        level = nxt
    leaf_labels = np.full(n, -1, dtype=np.int64)
    for i, node in enumerate(nodes):
        if node.is_leaf:
            leaf_labels[node.members] = i
    report = {
        "method": method,
        "max_depth": int(max_depth),
        "depth_reached": max((nd.depth for nd in nodes), default=0),
        "top_level_clusters": sum(1 for nd in nodes if nd.parent is None),
        "splits": sum(1 for nd in nodes if nd.children),
        "split_attempts": tried,
        "leaves": sum(1 for nd in nodes if nd.is_leaf),
    }
    return Hierarchy(nodes, leaf_labels, report)


def min_child(members: int, own_min: int) -> int:
    """The smallest child a node of `members` points may have."""
    return max(MIN_CHILD, own_min, math.ceil(MIN_CHILD_SHARE * members))


def is_large(members: int, num_points: int, smallest_child: int) -> bool:
    """Whether a node is worth trying to split (module docstring)."""
    return members >= max(2 * smallest_child, math.ceil(SPLIT_MIN_FRACTION * num_points))


def splitter(algorithm: str, params: BaseModel) -> tuple[Splitter, int, str]:
    """(split function, the algorithm's own minimum cluster size, method name) for a run's algorithm."""
    if algorithm in DENSITY_ALGORITHMS:
        from core.algorithms.density import HDBSCANParams

        if isinstance(params, HDBSCANParams):
            base = params
            own = params.min_cluster_size
        else:  # dbscan / optics: min_samples is their notion of the smallest dense group
            own = int(getattr(params, "min_samples", MIN_CHILD) or MIN_CHILD)
            base = HDBSCANParams()
        return _density_splitter(base), own, "hdbscan"
    return _kmeans_split, 0, "kmeans_silhouette"


def _children_by_size(sub: np.ndarray) -> list[np.ndarray]:
    """Positions of each child's members, largest child first (ties: lowest first member)."""
    groups = [np.flatnonzero(sub == v) for v in np.unique(sub)]
    return sorted(groups, key=lambda g: (-g.shape[0], int(g[0])))


def _sample(m: int, size: int, seed: int) -> np.ndarray:
    if m <= size:
        return np.arange(m)
    return np.sort(np.random.default_rng(seed).choice(m, size=size, replace=False))


# --- centroid algorithms: k-means on principal components, against a Gaussian reference ---


def _kmeans_split(X: np.ndarray, members: np.ndarray, smallest: int, seed: int) -> np.ndarray | None:
    m = members.shape[0]
    rows = _sample(m, SPLIT_SAMPLE, seed)
    S = np.asarray(X[members[rows]], dtype=np.float64)
    mean = S.mean(axis=0)
    basis, variances = _principal_axes(S - mean, SPLIT_DIMS, seed)
    if basis.shape[0] == 0:
        return None  # all members identical: nothing to split
    Z = ((S - mean) @ basis.T).astype(np.float32)
    rng = np.random.default_rng(seed)
    # the sample holds |rows|/m of each child: a child under `smallest` members would show fewer
    least = max(2, math.ceil(smallest * Z.shape[0] / m))
    real = _best_kmeans(Z, least, rng)
    if real is None:
        return None
    reference = (rng.standard_normal(Z.shape) * np.sqrt(variances)).astype(np.float32)
    ref = _best_kmeans(reference, least, rng)
    if ref is not None and real[0] < ref[0] + SILHOUETTE_MARGIN:
        return None
    B = basis.T.astype(np.float32)
    shift = (mean @ basis.T).astype(np.float32)
    labels = _nearest_rows(X, members, lambda rows: rows @ B - shift, real[1])
    counts = np.bincount(labels, minlength=real[1].shape[0])
    if (counts < smallest).any():
        return None
    return labels


def _principal_axes(C: np.ndarray, dims: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Top principal axes (rows) of centred `C` and their variances; axes of ~0 variance dropped.
    A wide `C` takes a seeded randomized SVD (subspace iteration, Halko et al.): a full SVD of
    1000 × 768 costs ~0.2 s of CPU, this a few ms."""
    if min(C.shape) > 4 * dims:
        rng = np.random.default_rng(seed)
        Y = C @ rng.standard_normal((C.shape[1], dims + 10))
        for _ in range(4):
            Y = C @ (C.T @ np.linalg.qr(Y)[0])
        Q = np.linalg.qr(Y)[0]
        _, s, vt = np.linalg.svd(Q.T @ C, full_matrices=False)
    else:
        _, s, vt = np.linalg.svd(C, full_matrices=False)
    var = s**2 / max(C.shape[0] - 1, 1)
    keep = var > 1e-12 * max(float(var[0]) if var.size else 0.0, 1e-30)
    keep[dims:] = False
    return vt[keep], var[keep]


def _best_kmeans(Z: np.ndarray, least: int, rng: np.random.Generator) -> tuple[float, np.ndarray] | None:
    """(silhouette, centres) of the best k in 2..K_MAX whose clusters all hold >= `least` points."""
    best: tuple[float, np.ndarray] | None = None
    dist: np.ndarray | None = None
    for k in range(2, min(K_MAX, Z.shape[0] // least) + 1):
        labels, centres = _kmeans(Z, k, rng)
        if np.bincount(labels, minlength=k).min() < least:
            continue
        if dist is None:
            dist = _distance_matrix(Z)
        score = silhouette_from_distances(dist, labels, k)
        if best is None or score > best[0]:
            best = (score, centres)
    return best


def _distance_matrix(Z: np.ndarray) -> np.ndarray:
    Z = np.asarray(Z, dtype=np.float64)
    sq = (Z * Z).sum(axis=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (Z @ Z.T)
    np.fill_diagonal(d2, 0.0)
    return np.sqrt(np.maximum(d2, 0.0))


def silhouette_from_distances(dist: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Mean silhouette (scikit-learn's definition: a singleton scores 0) of labels 0..k-1, every
    label present, from the full distance matrix."""
    onehot = np.zeros((labels.shape[0], k))
    onehot[np.arange(labels.shape[0]), labels] = 1.0
    sums = dist @ onehot  # sums[i, c]: distances from point i to the members of c
    counts = onehot.sum(axis=0)
    rows = np.arange(labels.shape[0])
    own = counts[labels]
    a = sums[rows, labels] / np.maximum(own - 1.0, 1.0)
    sums[rows, labels] = np.inf
    b = (sums / counts).min(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(own > 1, (b - a) / np.maximum(a, b), 0.0)
    return float(np.nan_to_num(s).mean())


def _kmeans(Z: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd from k-means++ (KMEANS_RESTARTS restarts, lowest inertia), in numpy: the sample is at
    most SPLIT_SAMPLE × SPLIT_DIMS, where scikit-learn's per-call overhead would dominate."""
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for _ in range(KMEANS_RESTARTS):
        centres = _kmeans_plusplus(Z, k, rng)
        labels = np.zeros(Z.shape[0], dtype=np.int64)
        for it in range(LLOYD_ITER):
            new = _nearest(Z, centres)
            if it and np.array_equal(new, labels):
                break
            labels = new
            onehot = np.zeros((Z.shape[0], k))
            onehot[np.arange(Z.shape[0]), labels] = 1.0
            counts = onehot.sum(axis=0)
            filled = counts > 0  # an emptied centre stays where it was
            centres[filled] = (onehot.T @ Z)[filled] / counts[filled, None]
        d = ((Z - centres[labels]) ** 2).sum()
        if best is None or d < best[0]:
            best = (float(d), labels, centres.copy())
    assert best is not None
    return best[1], best[2]


def _kmeans_plusplus(Z: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (D² sampling), float64 centres."""
    Z64 = np.asarray(Z, dtype=np.float64)
    centres = np.empty((k, Z.shape[1]))
    centres[0] = Z64[rng.integers(Z.shape[0])]
    closest = ((Z64 - centres[0]) ** 2).sum(axis=1)
    for c in range(1, k):
        total = float(closest.sum())
        pick = int(rng.integers(Z.shape[0])) if total <= 0 else int(rng.choice(Z.shape[0], p=closest / total))
        centres[c] = Z64[pick]
        closest = np.minimum(closest, ((Z64 - centres[c]) ** 2).sum(axis=1))
    return centres


def _nearest_rows(
    X: np.ndarray, members: np.ndarray, project: Callable[[np.ndarray], np.ndarray], centres: np.ndarray
) -> np.ndarray:
    """Nearest centre of every member, `_CHUNK` rows of X at a time."""
    out = np.empty(members.shape[0], dtype=np.int64)
    for a in range(0, members.shape[0], _CHUNK):
        out[a : a + _CHUNK] = _nearest(project(np.asarray(X[members[a : a + _CHUNK]], np.float32)), centres)
    return out


def _nearest(Z: np.ndarray, centres: np.ndarray) -> np.ndarray:
    c = np.asarray(centres, dtype=np.float32)
    d = (c * c).sum(axis=1)[None, :] - 2.0 * (Z @ c.T)
    return np.asarray(np.argmin(d, axis=1), dtype=np.int64)


# --- density algorithms: HDBSCAN that may answer "one cluster" ---


def _density_splitter(base: BaseModel) -> Splitter:
    def split(X: np.ndarray, members: np.ndarray, smallest: int, seed: int) -> np.ndarray | None:
        from core.algorithms import get_algorithm

        m = members.shape[0]
        rows = _sample(m, DENSITY_SAMPLE, seed)
        S = np.asarray(X[members[rows]], dtype=np.float32)
        params = base.model_copy(
            update={
                "min_cluster_size": max(2, math.ceil(smallest * S.shape[0] / m)),
                "allow_single_cluster": True,
                "cluster_selection_epsilon": 0.0,
                "max_cluster_size": None,
            }
        )
        found = get_algorithm("hdbscan").fit(S, params, seed).labels
        values = np.unique(found[found != -1])
        if values.shape[0] < 2:
            return None
        centres = np.stack([S[found == v].mean(axis=0) for v in values])
        labels = _nearest_rows(X, members, lambda rows: rows, centres)
        kept = found != -1
        labels[rows[kept]] = np.searchsorted(values, found[kept])
        if (np.bincount(labels, minlength=values.shape[0]) < smallest).any():
            return None
        return labels

    return split
