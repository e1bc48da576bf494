"""Spectral clustering: scikit-learn's SpectralClustering.

A fit with `n_clusters: k` is the same call as `SpectralClustering(n_clusters=k, affinity=...,
n_neighbors=..., gamma=..., assign_labels=..., random_state=..., n_init=...)`; `random_state: null`
uses the run seed.

`n_clusters: null` chooses the count by silhouette (`core.algorithms.auto_k.choose_k`: k =
2..min(20, n-1) on a seeded sample of at most 2,000 points — spectral is O(N²)-O(N³), so the sample is
smaller than for the other algorithms). The sample's affinity matrix and spectral embedding (with as
many eigenvectors as the largest candidate k) are computed once; candidate k labels the first k
eigenvectors with k-means (scikit-learn's `assign_labels="kmeans"` step, whatever the request's
`assign_labels`). The final fit on all points uses the request's params with the chosen k, and the
run reports `used = {"n_clusters": k, "k_selection": {...}}`.

Limits: `affinity="rbf"` builds a dense N×N matrix (10,000 points already take ~4 GB and ~30 s), so
rbf runs above RBF_MAX_POINTS are refused at submit time (`core.admission`), and a fit above it fails
with a message pointing at `nearest_neighbors` or `sample_size`; `nearest_neighbors` runs are admitted
up to 100,000 points.
`n_neighbors` above the number of points is capped (reported in `used`).

Foreign vocabulary: `n_init: "auto"` (a KMeans value) and `affinity` values that are metric names of
other algorithms (`euclidean`, `manhattan`, `minkowski`, ... — the agglomerative / DBSCAN
vocabulary) are ignored (the defaults are used) instead of rejected.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from scipy import sparse
from sklearn.cluster import KMeans, SpectralClustering
from sklearn.exceptions import ConvergenceWarning
from sklearn.manifold import spectral_embedding
from sklearn.metrics.pairwise import PAIRWISE_KERNEL_FUNCTIONS, pairwise_kernels
from sklearn.neighbors import VALID_METRICS, kneighbors_graph

from core.algorithms import Fitted, register
from core.algorithms.auto_k import K_MAX, choose_k
from core.errors import RunDataError

RBF_MAX_POINTS = 10_000
AUTO_K_SAMPLE = 2_000

# Metric names other algorithms use (agglomerative `affinity`/`metric`, DBSCAN / OPTICS / HDBSCAN
# `metric`) that are not spectral affinities; `cosine` and `precomputed` are spectral vocabulary too
# (a kernel / a matrix input) and stay errors.
FOREIGN_AFFINITIES: frozenset[str] = (
    frozenset(set().union(*VALID_METRICS.values()))
    - set(PAIRWISE_KERNEL_FUNCTIONS)
    - {"precomputed", "nearest_neighbors", "precomputed_nearest_neighbors"}
)


class SpectralParams(BaseModel):
    model_config = ConfigDict(extra="ignore")

    n_clusters: int | None = Field(8, ge=2)  # null: automatic (auto_k.choose_k)
    affinity: Literal["rbf", "nearest_neighbors"] = "rbf"
    n_neighbors: int = Field(10, ge=2)
    gamma: float = Field(1.0, gt=0, allow_inf_nan=False)
    assign_labels: Literal["kmeans", "discretize", "cluster_qr"] = "kmeans"
    random_state: int | None = 42  # null: the run seed
    n_init: int = Field(10, ge=1)

    @field_validator("affinity", "n_init", mode="before")
    @classmethod
    def _ignore_foreign(cls, value: Any, info: ValidationInfo) -> Any:
        name = info.field_name or ""
        if (name == "n_init" and value == "auto") or (
            name == "affinity" and isinstance(value, str) and value in FOREIGN_AFFINITIES
        ):
            return cls.model_fields[name].default
        return value


@register("spectral", SpectralParams)
def spectral(X: np.ndarray, p: SpectralParams, seed: int) -> np.ndarray | Fitted:
    """Fit SpectralClustering on float32 `X` (details in the module docstring).

    Returns int64 labels of shape (N,); a Fitted with the automatic k or a capped n_neighbors.
    """
    X = np.asarray(X, dtype=np.float32)
    n = X.shape[0]
    if p.affinity == "rbf" and n > RBF_MAX_POINTS:
        raise RunDataError(
            f"spectral with affinity 'rbf' builds a dense {n}x{n} matrix; it allows at most "
            f"{RBF_MAX_POINTS} points: use affinity 'nearest_neighbors' or a sample_size up to "
            f"{RBF_MAX_POINTS}"
        )
    rs = p.random_state if p.random_state is not None else seed
    used: dict[str, Any] = {}
    n_neighbors = p.n_neighbors
    if p.affinity == "nearest_neighbors" and n_neighbors > n:
        n_neighbors = n
        used["n_neighbors"] = n
    if p.n_clusters is None:
        k, report = choose_k(X, _EmbeddingKMeans(p, n_neighbors, rs), sample=AUTO_K_SAMPLE, seed=seed)
        used.update(n_clusters=k, k_selection=report)
    else:
        k = p.n_clusters
        if k > n:
            raise RunDataError(f"spectral n_clusters ({k}) exceeds the number of points ({n})")
    model = SpectralClustering(
        n_clusters=k,
        affinity=p.affinity,
        n_neighbors=n_neighbors,
        gamma=p.gamma,
        assign_labels=p.assign_labels,
        random_state=rs,
        n_init=p.n_init,
    )
    with _quiet():
        labels = np.asarray(model.fit_predict(X), dtype=np.int64)
    return Fitted(labels, used=used) if used else labels


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the warnings of a legitimate but degenerate input: a disconnected affinity graph
    (well-separated groups under rbf) and k-means on repeated points. The run's metrics report the
    outcome."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Graph is not fully connected", category=UserWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


class _EmbeddingKMeans:
    """`fit_labels` for choose_k: the sample's affinity and spectral embedding are computed once
    (as scikit-learn's SpectralClustering does), each k runs k-means on the first k eigenvectors."""

    def __init__(self, p: SpectralParams, n_neighbors: int, random_state: int):
        self.p, self.n_neighbors, self.rs = p, n_neighbors, random_state
        self._X: np.ndarray | None = None
        self._maps: np.ndarray | None = None

    def _embed(self, X: np.ndarray) -> np.ndarray:
        n = X.shape[0]
        if self.p.affinity == "nearest_neighbors":
            conn = kneighbors_graph(X, n_neighbors=min(self.n_neighbors, n), include_self=True)
            affinity: Any = sparse.csr_matrix(0.5 * (conn + conn.T))
        else:
            affinity = pairwise_kernels(X, metric="rbf", filter_params=True, gamma=self.p.gamma)
        n_components = min(K_MAX, n - 1)  # the largest candidate k
        with _quiet():
            maps = spectral_embedding(
                affinity, n_components=n_components, random_state=self.rs, drop_first=False
            )
        return np.asarray(maps)

    def __call__(self, X: np.ndarray, k: int) -> np.ndarray:
        if self._maps is None or self._X is not X:
            self._X, self._maps = X, self._embed(X)
        maps = self._maps[:, : min(k, self._maps.shape[1])]
        with _quiet():
            labels = KMeans(n_clusters=k, random_state=self.rs, n_init=self.p.n_init).fit_predict(maps)
        return np.asarray(labels, dtype=np.int64)
