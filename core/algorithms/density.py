"""Density-based algorithms: dbscan, hdbscan (the `hdbscan` package), optics and mean_shift.

All four may label noise -1 (mean_shift only with `cluster_all: false`) and, on wide vectors, see a
PCA projection (registered with `reduces_high_dim=True`; `core.pipeline` does the reduction).

Parity: each fit is the reference library's own call with the request's params — scikit-learn's
`DBSCAN`, `OPTICS`, `MeanShift` and `hdbscan.HDBSCAN` — so the labels equal calling the library
directly. HDBSCAN params mean what they mean in the hdbscan package (contract §1.9): `min_samples`
excludes the point itself, `max_cluster_size: null` is the package's 0 (no limit).

Automatic parameters (a null in the request, reported in `Fitted.used`):
- dbscan `eps: null`: the knee of the sorted k-distance curve (`knee_eps`). The k-distance of a
  point is its distance to the k-th nearest point counting itself, k = `min_samples` (at least 2),
  i.e. scikit-learn's core distance: a point is a core point exactly when its k-distance is ≤ eps.
  The curve is computed for a seeded sample of at most KNEE_SAMPLE (5,000) points, each queried
  against all points (so sampling does not inflate the distances), with the request's metric, p,
  metric_params and neighbour search. The knee is the point farthest below the chord from the
  curve's first to its last point (`chord_knee`): the flat part left of it are the dense points, the
  steep tail the sparse ones. A curve with no point below its chord (no elbow) gives its maximum.
  eps is never 0: duplicates fall back to the smallest positive k-distance, or KNEE_FLOOR × the
  data's scale when every k-distance is 0. Reported as `used = {"eps": value, "eps_selection":
  {"method": "k_distance_knee", "k", "sample_size"}}`.
- mean_shift `bandwidth: null`: `estimate_bandwidth(X, quantile=bandwidth_quantile,
  n_samples=min(N, 2000), random_state=seed)`, reported as `used = {"bandwidth": value}`.

Metrics: dbscan / optics take the neighbour-search metrics listed in NEIGHBOUR_METRICS (`minkowski`
uses `p`, and its weights as `metric_params: {"w": [...]}`, the only metric_params accepted); hdbscan
the ones its trees support without extra params (HDBSCAN_METRICS). An unsupported metric, or a
metric the requested tree cannot serve (`cosine` with kd_tree / ball_tree), is a 422.

Foreign vocabulary: k-means' `algorithm` values (`lloyd`, `elkan`), sent by the SDK in its KMeans
default dict (api-contract §1.5.4, sdk-pitfalls 17), land on dbscan / optics `algorithm`, whose
values are neighbour searches. They are ignored (the default `auto` is used) rather than rejected;
any other unknown value is a 422. Keys of other algorithms are dropped by `validate_params`.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from sklearn.cluster import DBSCAN, OPTICS, MeanShift, estimate_bandwidth
from sklearn.neighbors import NearestNeighbors

from core.algorithms import Fitted, hdbscan_engine, register
from core.errors import RunDataError

KNEE_SAMPLE = 5_000  # points whose k-distance forms the knee curve
KNEE_FLOOR = 1e-6  # eps relative to the data's scale when every k-distance is 0
BANDWIDTH_SAMPLE = 2_000  # points estimate_bandwidth looks at

NeighbourSearch = Literal["auto", "ball_tree", "kd_tree", "brute"]
NeighbourMetric = Literal[
    "euclidean", "l2", "l1", "manhattan", "cityblock", "chebyshev", "minkowski", "cosine"
]
HDBSCANMetric = Literal["euclidean", "l2", "l1", "manhattan", "cityblock", "chebyshev"]
KMEANS_ALGORITHMS = frozenset({"lloyd", "elkan"})  # k-means' `algorithm`: foreign here
TREE_METRICS = {  # what scikit-learn's trees accept among NEIGHBOUR_METRICS
    "kd_tree": frozenset({"euclidean", "l2", "l1", "manhattan", "cityblock", "chebyshev", "minkowski"}),
    "ball_tree": frozenset({"euclidean", "l2", "l1", "manhattan", "cityblock", "chebyshev", "minkowski"}),
}


# --- shared validators (reused by DBSCANParams and OPTICSParams) ---


def _kmeans_algorithm_is_foreign(value: Any) -> Any:
    return "auto" if isinstance(value, str) and value in KMEANS_ALGORITHMS else value


def _check_metric_params(value: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
    if not value:
        return value
    if info.data.get("metric") != "minkowski" or set(value) != {"w"}:
        raise ValueError("must be null, {} or {'w': [weights]} with metric 'minkowski'")
    w = value["w"]
    if (
        not isinstance(w, list)
        or not w
        or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in w)
        or not all(math.isfinite(x) and x >= 0 for x in w)
        or not any(x > 0 for x in w)
    ):
        raise ValueError("must be {'w': [finite weights >= 0, not all 0]}")
    return {"w": [float(x) for x in w]}


def _check_search(value: str, info: ValidationInfo) -> str:
    metric = info.data.get("metric")
    if value in TREE_METRICS and metric is not None and metric not in TREE_METRICS[value]:
        raise ValueError(f"must be 'auto' or 'brute' with metric {metric!r}")
    if value == "kd_tree" and (info.data.get("metric_params") or {}).get("w") is not None:
        raise ValueError("must be 'auto', 'ball_tree' or 'brute' with minkowski weights (metric_params.w)")
    return value


def _check_n_jobs(value: int | None) -> int | None:
    if value == 0:
        raise ValueError("must be a non-zero integer (-1: all processors) or null")
    return value


# --- params models (api-contract §1.5.4; fields beyond the contract follow the SDK's models) ---


class DBSCANParams(BaseModel):
    model_config = ConfigDict(extra="ignore")

    eps: float | None = Field(0.5, gt=0, allow_inf_nan=False)  # null: knee of the k-distance curve
    min_samples: int = Field(5, ge=1)
    metric: NeighbourMetric = "euclidean"
    metric_params: dict[str, Any] | None = None
    algorithm: NeighbourSearch = "auto"
    leaf_size: int = Field(30, ge=1)
    p: float = Field(2, ge=1, allow_inf_nan=False)  # minkowski power
    n_jobs: int | None = 1

    _foreign_algorithm = field_validator("algorithm", mode="before")(_kmeans_algorithm_is_foreign)
    _metric_params = field_validator("metric_params")(_check_metric_params)
    _search = field_validator("algorithm")(_check_search)
    _n_jobs = field_validator("n_jobs")(_check_n_jobs)


class HDBSCANParams(BaseModel):
    model_config = ConfigDict(extra="ignore")

    min_cluster_size: int = Field(5, ge=2)
    min_samples: int | None = Field(None, ge=1)  # null: min_cluster_size (the package's default)
    cluster_selection_epsilon: float = Field(0.0, ge=0, allow_inf_nan=False)
    max_cluster_size: int | None = Field(None, ge=1)  # null: no limit (the package's 0)
    metric: HDBSCANMetric = "euclidean"
    alpha: float = Field(1.0, gt=0, allow_inf_nan=False)
    cluster_selection_method: Literal["eom", "leaf"] = "eom"
    allow_single_cluster: bool = False
    prediction_data: bool = False
    match_reference_implementation: bool = False

    @field_validator("metric", mode="before")
    @classmethod
    def _cosine_hint(cls, value: Any) -> Any:
        # hdbscan 0.8.44 fails on cosine ("Unrecognized metric") and its dense fallback does not scale.
        if value == "cosine":
            raise ValueError(
                "must be 'euclidean', 'l2', 'l1', 'manhattan', 'cityblock' or 'chebyshev' (for cosine, "
                "use 'euclidean' on normalised vectors: it ranks neighbours as cosine does)"
            )
        return value


class OPTICSParams(BaseModel):
    model_config = ConfigDict(extra="ignore")

    min_samples: int = Field(5, ge=2)
    max_eps: float | None = Field(None, gt=0)  # null or inf: no limit (stored as null)
    metric: NeighbourMetric = "minkowski"  # scikit-learn's and the SDK's default (= euclidean, p 2)
    p: float = Field(2, ge=1, allow_inf_nan=False)
    metric_params: dict[str, Any] | None = None
    cluster_method: Literal["xi", "dbscan"] = "xi"
    eps: float | None = Field(None, gt=0, allow_inf_nan=False)  # cluster_method dbscan; null: max_eps
    xi: float = Field(0.05, ge=0, le=1, allow_inf_nan=False)
    predecessor_correction: bool = True
    min_cluster_size: int | float | None = None  # an integer >= 2 or a fraction of N in (0, 1]
    algorithm: NeighbourSearch = "auto"
    leaf_size: int = Field(30, ge=1)
    n_jobs: int | None = 1

    @field_validator("max_eps")
    @classmethod
    def _inf_is_null(cls, value: float | None) -> float | None:
        return None if value is not None and math.isinf(value) else value  # JSON has no Infinity

    @field_validator("eps")
    @classmethod
    def _eps_within_max_eps(cls, value: float | None, info: ValidationInfo) -> float | None:
        max_eps = info.data.get("max_eps")
        if value is not None and max_eps is not None and value > max_eps:
            raise ValueError(f"must be less than or equal to max_eps ({max_eps})")
        return value

    @field_validator("min_cluster_size", mode="before")
    @classmethod
    def _size_or_fraction(cls, value: Any) -> Any:
        if value is None:
            return None
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if ok and isinstance(value, float) and 0 < value <= 1:
            return value
        if ok and value == int(value) and value >= 2:
            return int(value)
        raise ValueError("must be an integer >= 2 or a fraction between 0 and 1")

    _foreign_algorithm = field_validator("algorithm", mode="before")(_kmeans_algorithm_is_foreign)
    _metric_params = field_validator("metric_params")(_check_metric_params)
    _search = field_validator("algorithm")(_check_search)
    _n_jobs = field_validator("n_jobs")(_check_n_jobs)


class MeanShiftParams(BaseModel):
    model_config = ConfigDict(extra="ignore")

    bandwidth: float | None = Field(None, gt=0, allow_inf_nan=False)  # null: estimate_bandwidth
    bandwidth_quantile: float = Field(0.1, gt=0, le=1, allow_inf_nan=False)
    bin_seeding: bool = False
    min_bin_freq: int = Field(1, ge=1)
    cluster_all: bool = True  # false: orphans are noise (-1)
    n_jobs: int | None = 1
    max_iter: int = Field(300, ge=1)

    _n_jobs = field_validator("n_jobs")(_check_n_jobs)


# --- automatic eps ---


def chord_knee(curve: np.ndarray) -> int:
    """Index of the point of an ascending curve farthest below the chord joining its first and last
    points (both axes scaled to [0, 1]); the last index when no point lies below the chord."""
    n = int(curve.shape[0])
    span = float(curve[-1] - curve[0]) if n else 0.0
    if n < 3 or span <= 0:
        return n - 1
    x = np.arange(n, dtype=np.float64) / (n - 1)
    y = (curve.astype(np.float64) - float(curve[0])) / span
    gap = x - y  # ∝ the distance below the chord y = x
    i = int(np.argmax(gap))
    return i if gap[i] > 0 else n - 1


def knee_eps(X: np.ndarray, p: DBSCANParams, seed: int) -> tuple[float, dict[str, Any]]:
    """eps at the knee of the sorted k-distance curve (module docstring), and how it was chosen."""
    n = X.shape[0]
    k = min(max(p.min_samples, 2), n)
    queries = X
    if n > KNEE_SAMPLE:
        queries = X[np.sort(np.random.default_rng(seed).choice(n, KNEE_SAMPLE, replace=False))]
    nn = NearestNeighbors(n_neighbors=k, **_neighbour_search(p)).fit(X)
    dist, _ = nn.kneighbors(queries)  # column 0 is the point itself
    curve = np.sort(dist[:, -1].astype(np.float64))
    eps = float(curve[chord_knee(curve)])
    if not eps > 0:
        positive = curve[curve > 0]
        scale = float(np.abs(X).max()) if X.size else 0.0
        eps = float(positive.min()) if positive.size else KNEE_FLOOR * max(scale, 1.0)
    return eps, {"method": "k_distance_knee", "k": k, "sample_size": int(queries.shape[0])}


def _neighbour_search(p: DBSCANParams) -> dict[str, Any]:
    # The same neighbour search DBSCAN builds internally.
    return {
        "algorithm": p.algorithm,
        "leaf_size": p.leaf_size,
        "metric": p.metric,
        "metric_params": p.metric_params,
        "p": p.p,
        "n_jobs": p.n_jobs,
    }


def _check_weights(name: str, metric_params: dict[str, Any] | None, d: int) -> None:
    w = (metric_params or {}).get("w")
    if w is not None and len(w) != d:
        raise RunDataError(
            f"{name} metric_params.w has {len(w)} weights but the clustered vectors have {d} dimensions"
        )


# --- fits ---


@register("dbscan", DBSCANParams, produces_noise=True, reduces_high_dim=True)
def dbscan(X: np.ndarray, p: DBSCANParams, seed: int) -> Fitted:
    """DBSCAN (scikit-learn): `DBSCAN(eps, min_samples, metric, metric_params, algorithm, leaf_size,
    p, n_jobs).fit_predict(X)`; `eps: null` takes the k-distance knee and reports it."""
    _check_weights("dbscan", p.metric_params, X.shape[1])
    used: dict[str, Any] = {}
    eps = p.eps
    if eps is None:
        eps, selection = knee_eps(X, p, seed)
        used = {"eps": eps, "eps_selection": selection}
    labels = DBSCAN(eps=eps, min_samples=p.min_samples, **_neighbour_search(p)).fit_predict(X)
    return Fitted(np.asarray(labels, dtype=np.int64), used)


@register("hdbscan", HDBSCANParams, produces_noise=True, reduces_high_dim=True)
def hdbscan_(X: np.ndarray, p: HDBSCANParams, seed: int) -> np.ndarray | Fitted:
    """`hdbscan.HDBSCAN(...)` with the request's params (deterministic: no randomness in the package).
    Fewer points than min_cluster_size give all noise, as in the package. Wide data of at least
    hdbscan_engine.FAST_MIN_POINTS points takes fast-hdbscan once the worker has compiled it
    (core/algorithms/hdbscan_engine.py), reported as `used = {"engine": "fast_hdbscan"}`."""
    if hdbscan_engine.eligible(p, *X.shape) and hdbscan_engine.is_warm():
        return Fitted(hdbscan_engine.fit(X, p), used={"engine": "fast_hdbscan"})
    import hdbscan  # ~1 s to import: only workers that fit pay it

    model = hdbscan.HDBSCAN(
        min_cluster_size=p.min_cluster_size,
        min_samples=p.min_samples,
        cluster_selection_epsilon=float(p.cluster_selection_epsilon),
        max_cluster_size=p.max_cluster_size or 0,
        metric=p.metric,
        alpha=float(p.alpha),
        cluster_selection_method=p.cluster_selection_method,
        allow_single_cluster=p.allow_single_cluster,
        prediction_data=p.prediction_data,
        match_reference_implementation=p.match_reference_implementation,
        core_dist_n_jobs=1,  # speed only; labels do not depend on it
    )
    return np.asarray(model.fit_predict(X), dtype=np.int64)


@register("optics", OPTICSParams, produces_noise=True, reduces_high_dim=True)
def optics(X: np.ndarray, p: OPTICSParams, seed: int) -> np.ndarray:
    """OPTICS (scikit-learn) with the request's params; `max_eps: null` is scikit-learn's inf."""
    n = X.shape[0]
    if p.min_samples > n:
        raise RunDataError(f"optics min_samples ({p.min_samples}) exceeds the number of points ({n})")
    if isinstance(p.min_cluster_size, int) and p.min_cluster_size > n:
        raise RunDataError(
            f"optics min_cluster_size ({p.min_cluster_size}) exceeds the number of points ({n})"
        )
    _check_weights("optics", p.metric_params, X.shape[1])
    model = OPTICS(
        min_samples=p.min_samples,
        max_eps=p.max_eps if p.max_eps is not None else np.inf,
        metric=p.metric,
        p=p.p,
        metric_params=p.metric_params,
        cluster_method=p.cluster_method,
        eps=p.eps,
        xi=p.xi,
        predecessor_correction=p.predecessor_correction,
        min_cluster_size=p.min_cluster_size,
        algorithm=p.algorithm,
        leaf_size=p.leaf_size,
        n_jobs=p.n_jobs,
    )
    with warnings.catch_warnings():
        # Points beyond max_eps of every other point have infinite reachability: they are noise.
        warnings.filterwarnings("ignore", message="All reachability values are inf", category=UserWarning)
        return np.asarray(model.fit_predict(X), dtype=np.int64)


@register("mean_shift", MeanShiftParams, produces_noise=True, reduces_high_dim=True)
def mean_shift(X: np.ndarray, p: MeanShiftParams, seed: int) -> Fitted:
    """MeanShift (scikit-learn); `bandwidth: null` ⇒ estimate_bandwidth (module docstring), reported.
    Labels are -1 only with `cluster_all: false` (orphans)."""
    used: dict[str, Any] = {}
    bandwidth = p.bandwidth
    if bandwidth is None:
        bandwidth = float(
            estimate_bandwidth(
                X,
                quantile=p.bandwidth_quantile,
                n_samples=min(X.shape[0], BANDWIDTH_SAMPLE),
                random_state=seed,
            )
        )
        if not bandwidth > 0:
            raise RunDataError(
                "mean_shift: the estimated bandwidth is 0 (duplicate points, or bandwidth_quantile too "
                "small for the data); set bandwidth or raise bandwidth_quantile"
            )
        used = {"bandwidth": bandwidth}
    model = MeanShift(
        bandwidth=bandwidth,
        bin_seeding=p.bin_seeding,
        min_bin_freq=p.min_bin_freq,
        cluster_all=p.cluster_all,
        n_jobs=p.n_jobs,
        max_iter=p.max_iter,
    )
    with warnings.catch_warnings():
        # scikit-learn then seeds from every point, which is the documented fallback.
        warnings.filterwarnings("ignore", message="Binning data failed", category=UserWarning)
        try:
            labels = model.fit_predict(X)
        except ValueError as exc:  # no seed kept a point within bandwidth
            raise RunDataError(
                f"mean_shift found no cluster centre with bandwidth {bandwidth:.6g} "
                f"(bin_seeding={p.bin_seeding}, min_bin_freq={p.min_bin_freq}): {exc}"
            ) from None
    return Fitted(np.asarray(labels, dtype=np.int64), used)
