"""The visualization's point set: a seeded sample stratified by cluster, and its wire shapes (pure)."""

from __future__ import annotations

from typing import Any

import numpy as np

DECIMALS = 6  # coordinates span about [-1, 1]: 1e-6 is far below a pixel and halves the JSON


def quotas(sizes: np.ndarray, max_points: int) -> np.ndarray:
    """Points to keep per group: proportional to size (largest remainders), at least one for every
    non-empty group while `max_points` allows (then the largest groups get one each)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    if total <= max_points:
        return sizes.copy()
    present = np.flatnonzero(sizes > 0)
    out = np.zeros_like(sizes)
    if max_points < len(present):
        biggest = present[np.argsort(-sizes[present], kind="stable")[:max_points]]
        out[biggest] = 1
        return out
    out[present] = 1
    left = max_points - len(present)
    spare = sizes - out
    share = spare * (left / max(1, int(spare.sum())))
    base = np.minimum(np.floor(share).astype(np.int64), spare)
    out += base
    rest = left - int(base.sum())
    if rest > 0:
        remainder = np.where(spare - base > 0, share - base, -1.0)
        out[np.argsort(-remainder, kind="stable")[:rest]] += 1
    return out


def stratified_sample(groups: np.ndarray, max_points: int, seed: int = 42) -> np.ndarray | None:
    """Sorted row indices of at most `max_points` rows, every group (cluster, noise) keeping a
    share proportional to its size and at least one row; None when all rows fit. Seeded: the same
    request shows the same points."""
    groups = np.asarray(groups, dtype=np.int64)
    n = groups.size
    if n <= max_points:
        return None
    sizes = np.bincount(groups)
    keep = quotas(sizes, max_points)
    keys = np.random.default_rng(seed).random(n)
    order = np.lexsort((keys, groups))  # by group, random within each
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    rank = np.arange(n) - starts[groups[order]]
    chosen = order[rank < keep[groups[order]]]
    return np.sort(chosen)


def rounded(values: np.ndarray) -> list[float]:
    return np.round(np.asarray(values, dtype=np.float64), DECIMALS).tolist()  # type: ignore[no-any-return]


def points_payload(
    document_ids: list[str], cluster_ids: list[str | None], coords: np.ndarray, *, compact: bool
) -> list[dict[str, Any]] | dict[str, list[Any]]:
    """`[{document_id, cluster_id, x, y[, z]}]`, or with `compact` parallel arrays
    `{x, y[, z], cluster_ids, document_ids}`. Noise points have a null cluster_id."""
    axes = ("x", "y", "z")[: coords.shape[1]]
    columns = {axis: rounded(coords[:, i]) for i, axis in enumerate(axes)}
    if compact:
        return {**columns, "cluster_ids": list(cluster_ids), "document_ids": list(document_ids)}
    out = []
    for i, (doc, cid) in enumerate(zip(document_ids, cluster_ids, strict=True)):
        point: dict[str, Any] = {"document_id": doc, "cluster_id": cid}
        for axis in axes:
            point[axis] = columns[axis][i]
        out.append(point)
    return out
