"""Where the work grows: clusterd's algorithm stage for k-means (k=50) and HDBSCAN against N and D,
one run per cell (the 300k cells dominate), with peak memory next to the matrix size, so a user can
read off what a run will cost."""

from __future__ import annotations

from typing import Any

import numpy as np
from bench_harness import CaseResult, Options, peak_rss_delta_mb, timed
from bench_hdbscan import stage as hdbscan_stage
from bench_hdbscan import wide_blobs


def kmeans_stage(X: np.ndarray) -> dict[str, Any]:
    from core.algorithms import get_algorithm, validate_params

    fitted = get_algorithm("kmeans").fit(X, validate_params("kmeans", {"n_clusters": 50}), 0)
    return {
        "clusters": int(fitted.labels.max()) + 1,
        "engine": fitted.used.get("engine", {}).get("backend", "-"),
    }


def hdbscan_cell(X: np.ndarray) -> dict[str, Any]:
    _, labels, used = hdbscan_stage(X)
    return {"clusters": int(labels.max()) + 1, "engine": used.get("engine", "hdbscan")}


def measure(fn: Any, X: np.ndarray) -> tuple[float, tuple[float, float, float, Any]]:
    return peak_rss_delta_mb(lambda: timed(lambda: fn(X)))


def case_growth(opts: Options) -> CaseResult:
    from core.algorithms import hdbscan_engine

    sizes = (2_000, 5_000) if opts.quick else (10_000, 30_000, 100_000, 300_000)
    dims = (16, 64) if opts.quick else (64, 256, 768)
    hdbscan_engine.warm_up()
    res = CaseResult(
        "growth", "algorithm stage time against N and D (k-means k=50; HDBSCAN min_cluster_size 50)"
    )
    for d in dims:
        for n in sizes:
            X, _ = wide_blobs(n, d, k=50)
            for name, fn in (("kmeans", kmeans_stage), ("hdbscan", hdbscan_cell)):
                peak, (wall, foreign, _, info) = measure(fn, X)
                res.table.append(
                    {
                        "algorithm": name,
                        "N": n,
                        "D": d,
                        "seconds": round(wall, 2),
                        "µs per point": round(wall / n * 1e6, 1),
                        "peak ΔRSS MB": round(peak),
                        "matrix MB": round(X.nbytes / 2**20),
                        "clusters": info["clusters"],
                        "engine": info["engine"],
                        "other load": round(foreign, 2),
                    }
                )
    res.notes.append("one run per cell; rows L2-normalised; HDBSCAN sees PCA-32 above 100 dimensions")
    return res


CASES = {"growth": case_growth}
