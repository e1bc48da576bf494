"""Agglomerative (hierarchical) clustering: scikit-learn's AgglomerativeClustering.

Modes
-----
- `n_clusters: k` (default 2): cut the tree into k clusters — the same call as
  `AgglomerativeClustering(n_clusters=k, linkage=..., metric=..., compute_full_tree=...)`.
- `distance_threshold: t`: scikit-learn's threshold mode (`n_clusters=None`): merges stop at linkage
  distance t and the number of clusters found is reported as `used.n_clusters`. A threshold wins
  over `n_clusters` (the SDK always sends its default `n_clusters: 2`, so the pair is ambiguous
  otherwise, and scikit-learn would reject it).
- `n_clusters: null` and no threshold: automatic cluster count by silhouette
  (`core.algorithms.auto_k.choose_k`: k = 2..min(20, n-1) on a seeded sample of at most 5,000 points;
  the tree of the sample is built once and cut at each k). The final fit uses all points and the run
  reports `used = {"n_clusters": k, "k_selection": {...}}`.

Ward linkage only allows the euclidean metric (422 naming `metric`, as scikit-learn does).

Foreign vocabulary: metric names of other algorithms' params — DBSCAN / OPTICS / HDBSCAN metrics
such as `minkowski` or `chebyshev` (any name scikit-learn's neighbour searches accept) and spectral
affinities / kernels such as `rbf` or `nearest_neighbors` — are ignored (the default `euclidean` is
used) instead of rejected. `affinity` is accepted as the pre-1.4 scikit-learn / SDK name of `metric`
(the SDK's AgglomerativeParams only has `affinity`); `metric` wins when both are sent.

O(N²) memory and time: `core.admission` admits at most 30,000 points per run.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from sklearn.cluster import AgglomerativeClustering
from sklearn.metrics.pairwise import PAIRWISE_KERNEL_FUNCTIONS
from sklearn.neighbors import VALID_METRICS

from core.algorithms import Fitted, register
from core.algorithms.auto_k import choose_k
from core.errors import RunDataError

Metric = Literal["euclidean", "l1", "l2", "manhattan", "cosine"]
METRICS: tuple[str, ...] = ("euclidean", "l1", "l2", "manhattan", "cosine")

# Metric / affinity names that belong to other algorithms' params (ignored, see the module docstring).
# `precomputed` is agglomerative's own vocabulary but needs a distance matrix this platform never has:
# it stays an error.
FOREIGN_METRICS: frozenset[str] = (
    frozenset(
        set().union(*VALID_METRICS.values())
        | {"rbf", "nearest_neighbors", "precomputed_nearest_neighbors"}
        | set(PAIRWISE_KERNEL_FUNCTIONS)
    )
    - set(METRICS)
    - {"precomputed"}
)


def _ward_check(value: str, info: ValidationInfo) -> str:
    if info.data.get("linkage") == "ward" and value != "euclidean":
        raise ValueError("must be 'euclidean' when linkage is 'ward'")
    return value


class AgglomerativeParams(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # null: automatic (auto_k.choose_k) unless distance_threshold is set
    n_clusters: int | None = Field(2, ge=2)
    linkage: Literal["ward", "complete", "average", "single"] = "ward"
    distance_threshold: float | None = Field(None, gt=0, allow_inf_nan=False)
    metric: Metric = "euclidean"
    # Synonym of `metric` (SDK / scikit-learn < 1.4); folded into `metric`, never dumped.
    affinity: Metric | None = Field(None, exclude=True)
    compute_full_tree: Literal["auto"] | bool = "auto"

    @field_validator("metric", "affinity", mode="before")
    @classmethod
    def _ignore_foreign_metric(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and value in FOREIGN_METRICS:
            return cls.model_fields[info.field_name or "metric"].default
        return value

    @field_validator("metric")
    @classmethod
    def _metric_fits_linkage(cls, value: str, info: ValidationInfo) -> str:
        return _ward_check(value, info)

    @field_validator("affinity")
    @classmethod
    def _affinity_fits_linkage(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Only when it is the metric actually used (`metric` absent or left at its default).
        if value is not None and info.data.get("metric") == "euclidean":
            _ward_check(value, info)
        return value

    @field_validator("compute_full_tree", mode="before")
    @classmethod
    def _full_tree(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if value != "auto" and not isinstance(value, bool):
            raise ValueError("must be 'auto', true or false")
        return value

    @field_validator("compute_full_tree")
    @classmethod
    def _full_tree_for_threshold(cls, value: Any, info: ValidationInfo) -> Any:
        if value is False and info.data.get("distance_threshold") is not None:
            raise ValueError("must be true or 'auto' when distance_threshold is set")
        return value

    @model_validator(mode="after")
    def _fold_affinity(self) -> AgglomerativeParams:
        if self.affinity is not None and "metric" not in self.model_fields_set:
            self.metric = self.affinity
        return self


# O(N^2) memory: ward on 50k x 768 took ~20 GB and 16 min on 2 cores (point limit: core.admission)
@register("agglomerative", AgglomerativeParams)
def agglomerative(X: np.ndarray, p: AgglomerativeParams, seed: int) -> np.ndarray | Fitted:
    """Fit AgglomerativeClustering on float32 `X` (modes in the module docstring).

    Returns int64 labels of shape (N,); a Fitted with `used.n_clusters` when the count was not given.
    """
    X = np.asarray(X, dtype=np.float32)
    n = X.shape[0]
    if p.distance_threshold is not None:
        model = _model(p, None, p.distance_threshold).fit(X)
        return Fitted(_labels(model), used={"n_clusters": int(model.n_clusters_)})
    if p.n_clusters is None:
        cut = _TreeCutter(p)
        k, report = choose_k(X, cut, seed=seed)
        return Fitted(_labels(_model(p, k, None).fit(X)), used={"n_clusters": k, "k_selection": report})
    if p.n_clusters > n:
        raise RunDataError(f"agglomerative n_clusters ({p.n_clusters}) exceeds the number of points ({n})")
    return _labels(_model(p, p.n_clusters, None).fit(X))


def _model(
    p: AgglomerativeParams, n_clusters: int | None, threshold: float | None
) -> AgglomerativeClustering:
    return AgglomerativeClustering(
        n_clusters=n_clusters,
        metric=p.metric,
        linkage=p.linkage,
        distance_threshold=threshold,
        compute_full_tree=p.compute_full_tree,
    )


def _labels(model: AgglomerativeClustering) -> np.ndarray:
    return np.asarray(model.labels_, dtype=np.int64)


class _TreeCutter:
    """`fit_labels` for choose_k: builds the full tree of a sample once, then cuts it at each k.

    Cutting the full tree at k (undoing its last k-1 merges) gives the partition scikit-learn returns
    for `n_clusters=k` on the same points (its labels are numbered differently, which the silhouette
    ignores)."""

    def __init__(self, p: AgglomerativeParams):
        self.p = p
        self._X: np.ndarray | None = None
        self._children: np.ndarray | None = None

    def __call__(self, X: np.ndarray, k: int) -> np.ndarray:
        if self._children is None or self._X is not X:
            tree = AgglomerativeClustering(
                n_clusters=None,
                distance_threshold=0.0,
                compute_full_tree=True,
                metric=self.p.metric,
                linkage=self.p.linkage,
            ).fit(X)
            self._X, self._children = X, np.asarray(tree.children_)
        return cut_tree(self._children, X.shape[0], k)


def cut_tree(children: np.ndarray, n: int, k: int) -> np.ndarray:
    """Labels 0..k-1 of the k clusters left after the first n-k merges of `children`
    (scikit-learn's `children_`: merge i joins the two nodes children[i] into node n+i)."""
    m = 2 * n - k  # leaves plus the merges applied
    parent = np.full(m, -1, dtype=np.int64)
    for i in range(n - k):
        parent[children[i]] = n + i
    top = np.arange(m)
    for node in range(m - 1, -1, -1):  # a parent's id is larger than its children's
        if parent[node] >= 0:
            top[node] = top[parent[node]]
    _, labels = np.unique(top[:n], return_inverse=True)
    return np.asarray(labels, dtype=np.int64)
