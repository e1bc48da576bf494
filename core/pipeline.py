"""The clustering pipeline over arrays: validate, normalise, fit, centroids, distances, metrics.

No I/O: the worker pulls vectors, calls `run_pipeline`, and stores the result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel

from core.algorithms import get_algorithm
from core.centroids import MeanGeometry, compute_centroids, cosine_stats, mean_geometry, point_stats
from core.errors import RunDataError
from core.hierarchy_centroids import node_summaries
from core.hierarchy_split import Hierarchy, build_hierarchy
from core.metrics import SILHOUETTE_SAMPLE, SilhouetteSample, quality_metrics, silhouette_sample
from core.preprocess import describe, fit_steps
from core.threads import beside_fit, one_blas_thread

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]

# Stage name -> cumulative fraction reported once the stage is done.
STAGES: tuple[tuple[str, float], ...] = (
    ("validate", 0.1),
    ("normalize", 0.2),
    ("fit", 0.6),
    ("centroids", 0.75),
    ("distances", 0.85),
    ("metrics", 1.0),
)


REDUCE_ABOVE = 100
REDUCE_TO = 32  # PCA-32: hdbscan 4–6 s at 50k (raw 768-d does not finish in minutes)


class RunCanceled(Exception):
    """Raised between stages when `should_cancel()` says so.

    Not a ClusterdError on purpose: a cancel is not a failure and must not be mapped to one.
    """

    def __init__(self, stage: str):
        super().__init__(f"run canceled before stage '{stage}'")
        self.stage = stage


@dataclass
class PipelineConfig:
    algorithm: str
    params: BaseModel  # validated by core.algorithms.validate_params
    normalize: bool = True
    seed: int = 42
    compute_metrics: bool = True
    metrics_sample_size: int = SILHOUETTE_SAMPLE  # the silhouette's sample; the other scores use all
    centroid_method: str = "mean"
    # Density algorithms on high-dimensional vectors cluster a PCA projection: above
    # `reduce_above` dimensions they see `reduce_to` components (None disables the reduction).
    reduce_above: int | None = REDUCE_ABOVE
    reduce_to: int = REDUCE_TO
    owns_input: bool = False  # the caller hands X over: normalisation may overwrite it
    # X is an earlier run's fitted matrix (core.store.pull_cache): checked, and normalised when
    # `normalize`, already; read-only
    prepared: bool = False
    preprocessing: list[dict[str, Any]] | None = None  # explicit steps (core.preprocess): replace the above
    hierarchical: bool = False  # re-cluster large clusters recursively (core.hierarchy_split)
    max_hierarchy_depth: int = 3  # sub-levels below the algorithm's clusters


@dataclass
class ClusterSummary:
    cluster_id: str  # "cl_<k>", k = algorithm label
    label_value: int
    num_members: int
    centroid: np.ndarray  # float32 (D,), in the clustered (normalised) space
    mean_cosine_similarity: float | None
    min_cosine_similarity: float | None
    # hierarchical runs only: every node's members (a parent's are its descendants') and their
    # distances to its centroid; label_value is the node's index, the label its leaf members carry
    parent_cluster_id: str | None = None
    members: np.ndarray | None = None
    member_distances: np.ndarray | None = None

    @property
    def default_label(self) -> str:
        """`Cluster 3` for cl_3, `Cluster 0.1` for cl_0_sub_1."""
        return "Cluster " + self.cluster_id.removeprefix("cl_").replace("_sub_", ".")


@dataclass
class PipelineResult:
    labels: np.ndarray  # int64 (N,), -1 = noise
    clusters: list[ClusterSummary]  # sorted by label
    distances: np.ndarray  # float32 (N,), NaN for noise
    metrics: dict[str, Any]  # {} when compute_metrics is False
    num_points: int
    num_clusters: int  # excludes noise
    params_used: dict[str, Any] = field(default_factory=dict)  # automatic / adjusted values
    reduction: dict[str, Any] | None = None  # {"method": "pca", "from": D, "to": d} when applied
    preprocessor: Any = None  # core.preprocess.FittedSteps when explicit steps ran
    hierarchy: Hierarchy | None = None  # hierarchical runs: labels are then each point's leaf


def checked_input(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(`X` as float32 (N, D), its rows' float64 squared norms) or RunDataError naming what is wrong.

    One compiled pass (core.row_kernels) finds the norms and, with them, any NaN/inf (they
    propagate into the sum of squares, and a float32 value squared cannot overflow float64); no
    N×D boolean array."""
    from core import row_kernels
    from core.scores import workers

    X = _as_matrix(X)
    sq = row_kernels.sq_norms(X, workers())
    _all_finite(sq)
    return X, sq


def checked_normalized(X: np.ndarray) -> np.ndarray:
    """`checked_input` then `l2_normalize(in_place=True)` in one compiled pass over the rows:
    float32 `X` scaled in place when it already is a C-contiguous writable float32 matrix (the
    caller must own it), else a converted copy. On a RunDataError `X` may be partly scaled."""
    from core import row_kernels
    from core.scores import workers

    X = _as_matrix(X)
    if not X.flags.writeable:
        X = X.copy()
    _all_finite(row_kernels.normalize_rows(X, workers()))
    return X


def _as_matrix(X: np.ndarray) -> np.ndarray:
    """`X` as a C-contiguous float32 (N ≥ 2, D ≥ 1) matrix, or RunDataError naming what is wrong."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise RunDataError(f"vectors must form a 2-D array (got shape {X.shape})")
    if not (np.issubdtype(X.dtype, np.number) and not np.issubdtype(X.dtype, np.complexfloating)):
        raise RunDataError(f"vectors must be real numbers (got dtype {X.dtype})")
    if X.shape[0] < 2:
        raise RunDataError(f"at least 2 points are needed to cluster (got {X.shape[0]})")
    if X.shape[1] < 1:
        raise RunDataError("vectors have no dimensions")
    if X.dtype != np.float32 or not X.flags.c_contiguous:
        with np.errstate(over="ignore", invalid="ignore"):  # float64 beyond float32's range: inf
            X = np.ascontiguousarray(X, dtype=np.float32)
    return X


def _all_finite(sq: np.ndarray) -> None:
    bad = int((~np.isfinite(sq)).sum())
    if bad:
        raise RunDataError(f"vectors contain NaN or infinite values ({bad} of {sq.shape[0]} points)")


def l2_normalize(X: np.ndarray, *, in_place: bool = False, sq_norms: np.ndarray | None = None) -> np.ndarray:
    """Unit-length rows; zero rows stay zero (they have no direction to keep). `in_place` scales
    `X` itself (the pipeline owns its matrix: one copy of 293 MB less at 100k×768); `sq_norms`
    are the rows' squared norms if already known (`checked_input`)."""
    if sq_norms is None:
        sq_norms = np.einsum("ij,ij->i", X, X, dtype=np.float64)
    norms = np.sqrt(np.asarray(sq_norms, dtype=np.float64))
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0).astype(X.dtype)
    if in_place and X.dtype == np.float32 and X.flags.c_contiguous:
        from core import row_kernels
        from core.scores import workers

        row_kernels.scale_rows(X, scale, workers())
        return X
    if in_place:
        X *= scale[:, None]
        return X
    return np.multiply(X, scale[:, None])


def run_pipeline(
    X: np.ndarray,
    config: PipelineConfig,
    progress: Progress | None = None,
    should_cancel: Callable[[], bool] | None = None,
    on_normalized: Callable[[np.ndarray], None] | None = None,
) -> PipelineResult:
    """Cluster `X` per `config`; calls `progress(stage, fraction)` after each stage and checks
    `should_cancel()` before each one, raising RunCanceled. `on_normalized(X)` gets the matrix
    the algorithm is about to fit (validated, normalised; read it, never write it): a caller may
    start work that needs no labels, which then overlaps the fit."""
    spec = get_algorithm(config.algorithm)
    stages = iter(STAGES)

    def step() -> None:
        name, fraction = next(stages)
        if progress is not None:
            progress(name, fraction)

    def check(stage: str) -> None:
        if should_cancel is not None and should_cancel():
            raise RunCanceled(stage)

    check("validate")
    if not config.prepared and config.normalize and config.owns_input:
        X = checked_normalized(X)  # the checks and the normalisation in one pass, in place
    elif not config.prepared:
        given = X
        X, sq_norms = checked_input(X)
        if config.normalize:  # in place only on a matrix the pipeline made itself
            X = l2_normalize(X, in_place=X is not given, sq_norms=sq_norms)
    step()

    check("normalize")
    step()
    presample = None  # the silhouette's sample distances, beside the fit (core.threads.beside_fit)
    if (
        config.compute_metrics
        and not spec.produces_noise  # then the sample over all points is the metrics' sample
        and not config.preprocessing
        and not _reduces(X, spec.reduces_high_dim, config)  # and X is the space clustered
    ):
        Xs = X
        presample = beside_fit(lambda: silhouette_sample(Xs, config.metrics_sample_size, config.seed))
    if on_normalized is not None:
        on_normalized(X)

    check("fit")
    preprocessor = None
    reduction: dict[str, Any] | None
    if config.preprocessing:
        X_fit, preprocessor = fit_steps(X, config.preprocessing, config.seed)
        reduction = describe(preprocessor, X.shape[1], X_fit.shape[1])
    else:
        X_fit, reduction = reduce_for_fit(X, spec.reduces_high_dim, config)
    fitted = spec.fit(X_fit, config.params, config.seed)
    labels = fitted.labels
    hierarchy = None
    if config.hierarchical:  # leaves are what points belong to: members, distances, metrics
        hierarchy = build_hierarchy(
            X_fit,
            labels,
            algorithm=config.algorithm,
            params=config.params,
            max_depth=config.max_hierarchy_depth,
            seed=config.seed,
            before_split=lambda: check("fit"),
        )
        labels = hierarchy.leaf_labels
    step()

    check("centroids")
    geometry: MeanGeometry | None = None
    if config.centroid_method == "mean":
        geometry = mean_geometry(X, labels)
        cluster_labels, centroids = geometry.cluster_labels, geometry.centroids
        distances, cosines, counts = geometry.distances, geometry.cosines, geometry.counts
    else:
        cluster_labels, centroids = compute_centroids(X, labels, config.centroid_method)
        distances, cosines = point_stats(X, labels, cluster_labels, centroids)
        member_rows = np.searchsorted(cluster_labels, labels[labels != -1])
        counts = np.bincount(member_rows, minlength=len(cluster_labels))
    mean_cos, min_cos = cosine_stats(cosines, labels, cluster_labels)
    clusters = [
        ClusterSummary(
            cluster_id=f"cl_{int(label)}",
            label_value=int(label),
            num_members=int(counts[i]),
            centroid=centroids[i],
            mean_cosine_similarity=float(mean_cos[i]),
            min_cosine_similarity=float(min_cos[i]),
        )
        for i, label in enumerate(cluster_labels)
    ]
    if hierarchy is not None:  # every node, parents before children (num_clusters counts them all)
        clusters = [
            ClusterSummary(
                s.cluster_id,
                s.index,
                s.num_members,
                s.centroid,
                s.mean_cosine_similarity,
                s.min_cosine_similarity,
                s.parent_cluster_id,
                s.members,
                s.member_distances,
            )
            for s in node_summaries(X, hierarchy, config.centroid_method)
        ]
    step()

    check("distances")
    # computed with the cosines above (one pass over X); the stage is kept for progress reports
    step()

    check("metrics")
    metrics: dict[str, Any] = {}
    if config.compute_metrics:
        # in the space actually clustered (after normalisation and any reduction); on one BLAS
        # thread: the products here are small (2048² silhouette sums: ~5 ms more on one thread),
        # and an OpenBLAS call on several threads leaves its workers spinning for ~0.1 s after it,
        # a core taken from the labels and artifacts that follow (measured: 100 ms of CPU)
        with one_blas_thread():
            metrics = quality_metrics(
                X_fit,
                labels,
                sample_size=config.metrics_sample_size,
                seed=config.seed,
                geometry=geometry if X_fit is X else None,  # the mean geometry is in X's space
                presampled=_presampled(presample),
            )
        member_cos = cosines[labels != -1]
        metrics["mean_cosine_to_centroid"] = (
            float(member_cos.mean(dtype=np.float64)) if member_cos.size else None
        )
        metrics["min_cosine_to_centroid"] = float(member_cos.min()) if member_cos.size else None
    step()

    return PipelineResult(
        labels=labels,
        clusters=clusters,
        distances=distances,
        metrics=metrics,
        num_points=int(X.shape[0]),
        num_clusters=len(clusters),
        params_used=fitted.used,
        reduction=reduction,
        preprocessor=preprocessor,
        hierarchy=hierarchy,
    )


def reduce_for_fit(
    X: np.ndarray, wanted: bool, config: PipelineConfig
) -> tuple[np.ndarray, dict[str, Any] | None]:
    """PCA before density algorithms on wide vectors: raw 768-d HDBSCAN does not finish in minutes.
    Centroids, distances and cosines stay in the feature space; only the fit sees the projection."""
    d = X.shape[1]
    if not _reduces(X, wanted, config):
        return X, None
    from sklearn.decomposition import PCA

    k = min(config.reduce_to, d, X.shape[0])
    Z = PCA(n_components=k, random_state=config.seed).fit_transform(X).astype(np.float32)
    return Z, {"method": "pca", "from": int(d), "to": int(k)}


def _reduces(X: np.ndarray, wanted: bool, config: PipelineConfig) -> bool:
    return wanted and config.reduce_above is not None and X.shape[1] > config.reduce_above


def _presampled(job: Future[SilhouetteSample] | None) -> SilhouetteSample | None:
    """The beside-the-fit silhouette sample; None (the metrics compute it) if it failed."""
    if job is None:
        return None
    try:
        return job.result()
    except Exception:  # noqa: BLE001 - e.g. MemoryError: the metrics stage tries again its own way
        log.warning("silhouette sample beside the fit failed; computed after it", exc_info=True)
        return None
