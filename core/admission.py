"""Admission: will a run fit one worker's budget? Decided before anything is queued.

Every route that starts a clustering run asks `check(algorithm, params, points, dimensions)`, with
`points` the number of points the run would cluster (min(documents with the vector, sample_size))
and `dimensions` those of the vector. Two bounds, both per algorithm:

- **points**: `Limit.points` × `CLUSTERD_ADMISSION_SCALE` — what one worker fits in a ~60 s budget,
  measured on a 2-core machine with float32 768-d vectors (each limit's `reason` says what was
  measured; docs/algorithms.md has the table).
- **memory**, only when `CLUSTERD_WORKER_MEMORY_LIMIT_MB` is set: the run's estimated peak,
  N×D×4 bytes × `memory_factor` (+ N² × `pair_bytes` for O(N²)-memory algorithms), must fit the
  limit less WORKER_RESERVE_MB for the libraries and the metrics sample.

A run over either bound is refused with a 422 `too_many_points` naming the sample size that fits.
The worker samples down to the same `cap` (seeded; `sampling.reason: "algorithm_cap"`) as a backstop
for documents written between submit and run, so API and workers need the same two settings.

Pure: no I/O, no settings lookup — callers pass the scale and the memory limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from core.algorithms.spectral import RBF_MAX_POINTS
from core.errors import ValidationFailed

WORKER_RESERVE_MB = 1024  # address space a worker process uses before any data (libraries, metrics)
ALTERNATIVES = "kmeans / hdbscan"


@dataclass(frozen=True)
class Limit:
    points: int  # most points one run clusters on one worker within ~60 s (before the scale)
    reason: str  # one line: the measurement behind `points`
    memory_factor: float = 8.0  # peak bytes ≈ memory_factor × N×D×4 (copies, normalised, fit)
    pair_bytes: float = 0.0  # + pair_bytes × N² for algorithms with O(N²) memory
    instead: str = f"use {ALTERNATIVES}"  # the way out besides a smaller sample_size


# One place for every limit. Measured peak memory of a run (pulled blocks, sorted copy, normalised
# copy, the fit) is ~6.5 × the N×D float32 matrix for the linear algorithms: 8 leaves a margin.
LIMITS: dict[str, Limit] = {
    "kmeans": Limit(
        1_000_000,
        "≈2.7 s per 100k×768 (k=50): ~2M fit in 60 s, 1M leaves room for pulling and metrics",
        instead="raise CLUSTERD_ADMISSION_SCALE on a larger worker",
    ),
    "hdbscan": Limit(500_000, "4.25 s at 50k on the PCA projection, about linear"),
    "dbscan": Limit(300_000, "4.4 s at 50k on the PCA projection; grows with eps", instead="use hdbscan"),
    "optics": Limit(25_000, "7–9 s at 10k, O(N²) time"),
    "agglomerative": Limit(30_000, "ward: 27 s and 3 GB at 20k; O(N²) time and memory", pair_bytes=8.0),
    "spectral": Limit(100_000, "nearest_neighbors graph: 1.0 s at 10k"),
    "gaussian_mixture": Limit(
        500_000, "full covariances, D=64, k=20: 5.6 s per 50k", instead="use covariance_type 'diag' or kmeans"
    ),
    "mean_shift": Limit(20_000, "10 s at 20k×16, then slows sharply"),
}
# limits that depend on the params
SPECTRAL_RBF = Limit(
    RBF_MAX_POINTS,
    "affinity 'rbf' builds a dense N×N matrix: ~4 GB and ~30 s at 10k",
    pair_bytes=40.0,
    instead="use affinity 'nearest_neighbors' or kmeans",
)
GAUSSIAN_MIXTURE_DIAG = Limit(
    1_000_000, "diagonal / spherical covariances: linear in D", instead="use kmeans"
)


def limit_for(algorithm: str, params: BaseModel | None = None) -> Limit | None:
    """The limit of `algorithm` with these (validated) params; None for an algorithm without one."""
    if algorithm == "spectral" and getattr(params, "affinity", "rbf") == "rbf":
        return SPECTRAL_RBF
    if algorithm == "gaussian_mixture" and getattr(params, "covariance_type", None) in ("diag", "spherical"):
        return GAUSSIAN_MIXTURE_DIAG
    return LIMITS.get(algorithm)


def estimated_bytes(limit: Limit, points: int, dimensions: int) -> float:
    """The run's estimated peak memory (without the WORKER_RESERVE_MB every worker uses)."""
    return points * dimensions * 4 * limit.memory_factor + points * points * limit.pair_bytes


def _memory_points(limit: Limit, dimensions: int, memory_limit_mb: int) -> int:
    """The most points whose estimated peak fits the memory limit (0 when the reserve alone does not)."""
    budget = (memory_limit_mb - WORKER_RESERVE_MB) * 1024 * 1024
    if budget <= 0:
        return 0
    a, b = limit.pair_bytes, dimensions * 4 * limit.memory_factor  # a·N² + b·N ≤ budget
    if a > 0:
        return int((-b + math.sqrt(b * b + 4 * a * budget)) / (2 * a))
    return int(budget // b) if b > 0 else math.inf  # type: ignore[return-value]


@dataclass(frozen=True)
class Cap:
    points: int  # the most points a run may cluster
    bound: str  # "points" or "memory": which bound sets it
    limit: Limit


def cap(
    algorithm: str,
    params: BaseModel | None,
    dimensions: int,
    *,
    scale: float = 1.0,
    memory_limit_mb: int | None = None,
) -> Cap | None:
    """The most points one run of `algorithm` may cluster on one worker (None: no limit)."""
    limit = limit_for(algorithm, params)
    if limit is None:
        return None
    by_points = max(1, int(limit.points * scale))
    if memory_limit_mb:
        by_memory = _memory_points(limit, dimensions, memory_limit_mb)
        if by_memory < by_points:
            return Cap(by_memory, "memory", limit)
    return Cap(by_points, "points", limit)


class TooManyPoints(ValidationFailed):
    """A run would cluster more points than its algorithm's cap (a 422 before anything is queued)."""

    code = "too_many_points"


def check(
    algorithm: str,
    params: BaseModel | None,
    points: int,
    dimensions: int,
    *,
    scale: float = 1.0,
    memory_limit_mb: int | None = None,
    field: str = "sample_size",
    remedy: str | None = None,
) -> None:
    """Raise TooManyPoints when `points` exceed the cap. `field` is what the caller can lower;
    `remedy` replaces the default advice ("set <field> ≤ <max> or <alternative>"), with `{max}`
    standing for the cap."""
    c = cap(algorithm, params, dimensions, scale=scale, memory_limit_mb=memory_limit_mb)
    if c is None or points <= c.points:
        return
    details: dict[str, Any] = {
        "algorithm": algorithm,
        "points": int(points),
        "max_points": int(c.points),
        "bound": c.bound,
        "field": field,
        "dimensions": int(dimensions),
        "admission_scale": scale,
        "reason": c.limit.reason,
    }
    if remedy is not None:
        fix = remedy.format(max=c.points)
    elif c.bound == "points":
        fix = f"set {field} ≤ {c.points} or {c.limit.instead}"
    elif c.points:  # the points bound does not move the memory bound: only more memory does
        fix = f"set {field} ≤ {c.points} or give the workers more memory"
    else:
        fix = f"{WORKER_RESERVE_MB:,} MB are reserved for the libraries: give the workers more memory"
    if c.bound == "memory":
        need_mb = estimated_bytes(c.limit, points, dimensions) / 2**20 + WORKER_RESERVE_MB
        details |= {"memory_limit_mb": memory_limit_mb, "estimated_mb": math.ceil(need_mb)}
        message = (
            f"this run would cluster {points:,} points of {dimensions} dimensions, needing about "
            f"{need_mb:,.0f} MB; {algorithm} fits at most {c.points:,} of them in one worker's "
            f"{memory_limit_mb:,} MB (CLUSTERD_WORKER_MEMORY_LIMIT_MB): {fix}"
        )
    else:
        message = (
            f"this run would cluster {points:,} points: {algorithm} accepts at most {c.points:,} "
            f"points per run on one worker (≈60 s budget; {c.limit.reason}); {fix}"
        )
    raise TooManyPoints(message, details=details)
