"""Density-based algorithms: dbscan, hdbscan (the hdbscan package), optics, mean_shift.

All of them label noise -1 and, on wide vectors, cluster a PCA projection (core.pipeline).
`eps: null` (dbscan) is taken from the knee of the sorted k-distance curve; `bandwidth: null`
(mean_shift) from scikit-learn's estimate_bandwidth. Both report the value used.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sklearn.cluster import DBSCAN, OPTICS, MeanShift, estimate_bandwidth
from sklearn.neighbors import NearestNeighbors

from core.algorithms import Fitted, register
from core.errors import RunDataError

KNEE_SAMPLE = 5_000
_METRICS = ("euclidean", "manhattan", "chebyshev", "minkowski", "cosine", "l1", "l2", "cityblock")


def _foreign_to_default(default: Any, allowed: tuple[Any, ...]) -> Any:
    """The SDK may send another algorithm's same-named field (k-means' `algorithm: "lloyd"`):
    a value outside this algorithm's vocabulary falls back to the default instead of a 422."""

    def check(value: Any) -> Any:
        return value if value in allowed else default

    return check


class DBSCANParams(BaseModel):
    model_config = ConfigDict(extra="ignore")

    eps: float | None = Field(0.5, gt=0, allow_inf_nan=False)
    min_samples: int = Field(5, ge=1)
    metric: str = "euclidean"
    metric_params: dict[str, Any] | None = None
    algorithm: str = "auto"
    leaf_size: int = Field(30, ge=1)
    p: float | None = Field(2, gt=0, allow_inf_nan=False)
    n_jobs: int | None = 1

    _algo = field_validator("algorithm")(
        lambda v: _foreign_to_default("auto", ("auto", "ball_tree", "kd_tree", "brute"))(v)
    )
    _metric = field_validator("metric")(lambda v: _foreign_to_default("euclidean", _METRICS)(v))


class HDBSCANParams(BaseModel):
    model_config = ConfigDict(extra="ignore")

    min_cluster_size: int = Field(5, ge=2)
    min_samples: int | None = Field(None, ge=1)
    cluster_selection_epsilon: float = Field(0.0, ge=0, allow_inf_nan=False)
    max_cluster_size: int | None = Field(None, ge=1)
    metric: str = "euclidean"
    alpha: float = Field(1.0, gt=0, allow_inf_nan=False)
    cluster_selection_method: Literal["eom", "leaf"] = "eom"
    allow_single_cluster: bool = False
    prediction_data: bool = False
    match_reference_implementation: bool = False

    _metric = field_validator("metric")(lambda v: _foreign_to_default("euclidean", _METRICS)(v))


class OPTICSParams(BaseModel):
    model_config = ConfigDict(extra="ignore")

    min_samples: int = Field(5, ge=2)
    xi: float = Field(0.05, ge=0, le=1)
    max_eps: float | None = Field(None, gt=0, allow_inf_nan=False)
    metric: str = "minkowski"
    cluster_method: Literal["xi", "dbscan"] = "xi"
    eps: float | None = Field(None, gt=0, allow_inf_nan=False)
    min_cluster_size: int | None = Field(None, ge=2)

    _metric = field_validator("metric")(lambda v: _foreign_to_default("minkowski", _METRICS)(v))


class MeanShiftParams(BaseModel):
    model_config = ConfigDict(extra="ignore")

    bandwidth: float | None = Field(None, gt=0, allow_inf_nan=False)
    bandwidth_quantile: float = Field(0.1, gt=0, le=1)
    bin_seeding: bool = False
    cluster_all: bool = True
    max_iter: int = Field(300, ge=1)


def knee_eps(X: np.ndarray, k: int, seed: int) -> float:
    """eps at the knee of the sorted distance-to-k-th-neighbour curve (point farthest from the
    chord joining its ends), on a seeded sample of at most KNEE_SAMPLE points."""
    if X.shape[0] > KNEE_SAMPLE:
        X = X[np.random.default_rng(seed).choice(X.shape[0], KNEE_SAMPLE, replace=False)]
    k = max(1, min(k, X.shape[0] - 1))
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X)
    curve = np.sort(dist[:, k])
    n = curve.shape[0]
    x = np.linspace(0.0, 1.0, n)
    span = curve[-1] - curve[0]
    if span <= 0:
        return float(curve[-1]) if curve[-1] > 0 else 1e-6
    y = (curve - curve[0]) / span
    knee = int(np.argmax(x - y))  # convex curve: largest gap below the chord y = x
    return max(float(curve[knee]), 1e-6)


@register("dbscan", DBSCANParams, produces_noise=True, reduces_high_dim=True, max_points=50_000)
def dbscan(X: np.ndarray, p: DBSCANParams, seed: int) -> Fitted:
    """DBSCAN (scikit-learn); `eps: null` ⇒ knee of the k-distance curve with k = min_samples."""
    eps = p.eps if p.eps is not None else knee_eps(X, p.min_samples, seed)
    labels = DBSCAN(
        eps=eps,
        min_samples=p.min_samples,
        metric=p.metric,
        metric_params=p.metric_params,
        algorithm=p.algorithm,
        leaf_size=p.leaf_size,
        p=p.p,
        n_jobs=p.n_jobs,
    ).fit_predict(X)
    return Fitted(np.asarray(labels, dtype=np.int64), {"eps": float(eps)} if p.eps is None else {})


@register("hdbscan", HDBSCANParams, produces_noise=True, reduces_high_dim=True)
def hdbscan_(X: np.ndarray, p: HDBSCANParams, seed: int) -> np.ndarray:
    """HDBSCAN from the `hdbscan` package: parameters mean what they mean there (contract §1.9)."""
    import hdbscan

    if X.shape[0] < p.min_cluster_size:
        raise RunDataError(
            f"hdbscan min_cluster_size ({p.min_cluster_size}) exceeds the number of points ({X.shape[0]})"
        )
    model = hdbscan.HDBSCAN(
        min_cluster_size=p.min_cluster_size,
        min_samples=p.min_samples,
        cluster_selection_epsilon=p.cluster_selection_epsilon,
        max_cluster_size=p.max_cluster_size or 0,
        metric=p.metric,
        alpha=p.alpha,
        cluster_selection_method=p.cluster_selection_method,
        allow_single_cluster=p.allow_single_cluster,
        prediction_data=p.prediction_data,
        match_reference_implementation=p.match_reference_implementation,
        core_dist_n_jobs=1,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the package warns through deprecated sklearn paths
        return np.asarray(model.fit_predict(np.asarray(X, dtype=np.float64)), dtype=np.int64)


@register("optics", OPTICSParams, produces_noise=True, reduces_high_dim=True, max_points=50_000)
def optics(X: np.ndarray, p: OPTICSParams, seed: int) -> np.ndarray:
    """OPTICS (scikit-learn)."""
    if X.shape[0] < p.min_samples:
        raise RunDataError(
            f"optics min_samples ({p.min_samples}) exceeds the number of points ({X.shape[0]})"
        )
    model = OPTICS(
        min_samples=p.min_samples,
        xi=p.xi,
        max_eps=p.max_eps if p.max_eps is not None else math.inf,
        metric=p.metric,
        cluster_method=p.cluster_method,
        eps=p.eps,
        min_cluster_size=p.min_cluster_size,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # inf reachability of isolated points
        return np.asarray(model.fit_predict(X), dtype=np.int64)


@register("mean_shift", MeanShiftParams, produces_noise=True, reduces_high_dim=True, max_points=50_000)
def mean_shift(X: np.ndarray, p: MeanShiftParams, seed: int) -> Fitted:
    """MeanShift (scikit-learn); `bandwidth: null` ⇒ estimate_bandwidth(quantile) on ≤ 2000 points."""
    bandwidth = p.bandwidth
    if bandwidth is None:
        bandwidth = float(
            estimate_bandwidth(
                X, quantile=p.bandwidth_quantile, n_samples=min(X.shape[0], 2000), random_state=seed
            )
        )
        if not bandwidth > 0:
            raise RunDataError("mean_shift: the estimated bandwidth is 0 (identical points); set bandwidth")
    model = MeanShift(
        bandwidth=bandwidth, bin_seeding=p.bin_seeding, cluster_all=p.cluster_all, max_iter=p.max_iter
    )
    labels = np.asarray(model.fit_predict(X), dtype=np.int64)
    return Fitted(labels, {"bandwidth": float(bandwidth)} if p.bandwidth is None else {})
