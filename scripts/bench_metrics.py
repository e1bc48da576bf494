"""Quality metrics at 100k x 768 (issue 6): scikit-learn's three scores against clusterd's.

Data: `make_blobs` with 100,000 points, 768 dimensions, 50 centres, cluster_std 6.55, float32,
rows L2-normalised as the pipeline does; the labels are the ground truth (k = 50). `--quick`:
10,000 x 128.

Rows, timed round-robin on the same data:

- scikit-learn: `silhouette_score(sample_size=10_000, random_state=seed)`, `davies_bouldin_score`
  and `calinski_harabasz_score` on all points — what the metrics stage used to call;
- clusterd: `core.metrics.quality_metrics(X, labels, seed=seed)` with its default sample size
  (`SILHOUETTE_SAMPLE`), Davies–Bouldin and Calinski–Harabasz on all points, plus the size
  metrics and the degenerate flag;
- clusterd, 10,000 sample: the same with `sample_size=10_000`, i.e. the very points scikit-learn
  samples: like-for-like work, and its silhouette must equal scikit-learn's.

Targets: clusterd's metrics in <= 1 s at full size (quick mode reports only), its silhouette within
0.01 of scikit-learn's 10,000-point value, Davies–Bouldin and Calinski–Harabasz equal to
scikit-learn's to 1e-4 relative. The notes give the sample size, its measured error and the peak
memory each side adds.

    python scripts/bench.py --only metrics [--quick] [--repeats 3]
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import make_blobs
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_harness import CaseResult, Options, Stats, Target, peak_rss_delta_mb, round_robin  # noqa: E402

from core.metrics import SILHOUETTE_SAMPLE, quality_metrics  # noqa: E402
from core.pipeline import l2_normalize  # noqa: E402

FULL = (100_000, 768)
QUICK = (10_000, 128)
CENTERS = 50
CLUSTER_STD = 6.55
REFERENCE_SAMPLE = 10_000  # scikit-learn's silhouette sample, the value clusterd's must stay near
TARGET_S = 1.0
SILHOUETTE_TOLERANCE = 0.01
RELATIVE_TOLERANCE = 1e-4


def blobs(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_blobs(
        n_samples=n, n_features=dim, centers=CENTERS, cluster_std=CLUSTER_STD, random_state=seed
    )
    return l2_normalize(X.astype(np.float32)), y.astype(np.int64)


def sklearn_scores(X: np.ndarray, y: np.ndarray, seed: int) -> dict[str, Any]:
    return {
        "silhouette": silhouette_score(X, y, sample_size=REFERENCE_SAMPLE, random_state=seed),
        "davies_bouldin": davies_bouldin_score(X, y),
        "calinski_harabasz": calinski_harabasz_score(X, y),
    }


def clusterd_scores(X: np.ndarray, y: np.ndarray, seed: int, sample_size: int) -> dict[str, Any]:
    m = quality_metrics(X, y, sample_size=sample_size, seed=seed)
    return {
        "silhouette": m["silhouette_score"],
        "davies_bouldin": m["davies_bouldin_index"],
        "calinski_harabasz": m["calinski_harabasz_score"],
    }


def _peak_mb(fn: Callable[[], Any]) -> float:
    """Peak memory `fn` adds (the harness hands freed heap back first)."""
    return peak_rss_delta_mb(fn)[0]


def _cpu_seconds(row: Stats) -> float:
    return row.cpu_seconds


def _relative(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def metrics_case(opts: Options) -> CaseResult:
    n, dim = QUICK if opts.quick else FULL
    X, y = blobs(n, dim, opts.seed)
    seed = opts.seed
    rows = round_robin(
        {
            "scikit-learn": lambda: sklearn_scores(X, y, seed),
            "clusterd": lambda: clusterd_scores(X, y, seed, SILHOUETTE_SAMPLE),
            f"clusterd, {REFERENCE_SAMPLE:,} sample": lambda: clusterd_scores(X, y, seed, REFERENCE_SAMPLE),
        },
        opts.repeats,
    )
    sk, ours, like = (r.info for r in rows)
    result = CaseResult(
        case="metrics/100k",
        title=f"silhouette + Davies–Bouldin + Calinski–Harabasz, {n:,}×{dim} float32, k={CENTERS}",
        rows=rows,
        baseline="scikit-learn",
    )
    seconds = rows[1].median
    sil_error = abs(ours["silhouette"] - sk["silhouette"])
    db_rel = _relative(ours["davies_bouldin"], sk["davies_bouldin"])
    ch_rel = _relative(ours["calinski_harabasz"], sk["calinski_harabasz"])
    same_sample = abs(like["silhouette"] - sk["silhouette"])
    ratio = result.ratio("clusterd")
    db, ch = ours["davies_bouldin"], ours["calinski_harabasz"]
    result.targets = [
        Target(
            f"metrics {n:,}×{dim}: ≤ {TARGET_S:g} s"
            + (" (quick: reported, not judged)" if opts.quick else ""),
            opts.quick or seconds <= TARGET_S,
            f"median {seconds:.3f} s vs scikit-learn {rows[0].median:.3f} s ({ratio:.1f}×), "
            f"other load {rows[1].foreign:.2f} cores",
        ),
        Target(
            f"silhouette within {SILHOUETTE_TOLERANCE} of the {REFERENCE_SAMPLE:,}-sample value",
            sil_error <= SILHOUETTE_TOLERANCE,
            f"{ours['silhouette']:.5f} on {min(n, SILHOUETTE_SAMPLE):,} points vs {sk['silhouette']:.5f}: "
            f"error {sil_error:.1e}",
        ),
        Target(
            f"Davies–Bouldin and Calinski–Harabasz as scikit-learn's (≤ {RELATIVE_TOLERANCE:g} relative)",
            db_rel <= RELATIVE_TOLERANCE and ch_rel <= RELATIVE_TOLERANCE,
            f"DB {db:.6g} ({db_rel:.1e}), CH {ch:.6g} ({ch_rel:.1e})",
        ),
    ]
    ours_mb = _peak_mb(lambda: clusterd_scores(X, y, seed, SILHOUETTE_SAMPLE))
    sk_mb = _peak_mb(lambda: sklearn_scores(X, y, seed))
    result.notes = [
        f"silhouette sample: {SILHOUETTE_SAMPLE:,} points (core.metrics.SILHOUETTE_SAMPLE, seed {seed}: the "
        f"first {SILHOUETTE_SAMPLE:,} of scikit-learn's RandomState(seed) permutation, so a subset of its "
        f"{REFERENCE_SAMPLE:,}); measured error vs the {REFERENCE_SAMPLE:,}-point value {sil_error:.1e}",
        f"on scikit-learn's {REFERENCE_SAMPLE:,} points clusterd's silhouette is off by {same_sample:.1e}",
        f"peak memory added: scikit-learn {sk_mb:.0f} MB, clusterd {ours_mb:.0f} MB "
        f"(the data: {X.nbytes / 2**20:.0f} MB)",
        "CPU seconds per call (median; steadier than wall time when the machine is shared): "
        + ", ".join(f"{r.name} {_cpu_seconds(r):.3f}" for r in rows),
        "labels: make_blobs' ground truth",
    ]
    return result


CASES = {"metrics/100k": metrics_case}
