"""k-means cases: clusterd's algorithm stage against scikit-learn and scikit-learn-intelex called
directly, on the same make_blobs data, alternating runs; each repeat uses the next seed for every
candidate, so the inertia compared is a mean over the same seeds."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import numpy as np
from bench_harness import CaseResult, Options, Target, round_robin
from scipy import sparse
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score


def blobs(n: int, d: int, k: int, seed: int = 0) -> np.ndarray:
    """The anchors' data: RMS intra-cluster distance 0.75× the inter-cluster one in any dimension."""
    std = 6.55 * np.sqrt(d / 768)
    X, _ = make_blobs(n_samples=n, n_features=d, centers=k, cluster_std=std, random_state=seed)
    return np.asarray(X, dtype=np.float32)


def inertia(X: np.ndarray, labels: np.ndarray) -> float:
    """Sum of squared distances to each cluster's mean, the same formula for every candidate."""
    k = int(labels.max()) + 1
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    sums = np.zeros((k, X.shape[1]), dtype=np.float64)
    for start in range(0, X.shape[0], 4096):  # float64 one-hot products (np.add.at takes seconds)
        rows = slice(start, start + 4096)
        part = labels[rows]
        onehot = sparse.csr_matrix((np.ones(part.size), (part, np.arange(part.size))), shape=(k, part.size))
        sums += onehot @ X[rows]
    centers = sums / np.maximum(counts, 1)[:, None]
    total = float(np.einsum("ij,ij->", X, X, dtype=np.float64))
    return total - float((counts * np.einsum("ij,ij->i", centers, centers)).sum())


def seeded(fit: Callable[[int], np.ndarray], labels: list[np.ndarray]) -> Callable[[], None]:
    """A round-robin candidate: the i-th call fits with seed i and keeps its labels (their inertia
    is computed after the timed calls: it costs seconds at 100k×768 and is not the candidate's)."""

    def run() -> None:
        labels.append(fit(len(labels)))

    return run


def compare(X: np.ndarray, k: int, opts: Options, *, with_intelex: bool) -> dict[str, Any]:
    from sklearn.cluster import KMeans

    from core.algorithms import get_algorithm, validate_params

    spec = get_algorithm("kmeans")
    params = validate_params("kmeans", {"n_clusters": k})
    kept: dict[str, list[np.ndarray]] = {}

    def ours(seed: int) -> np.ndarray:
        return spec.fit(X, params.model_copy(update={"random_state": seed}), seed).labels

    def sklearn(seed: int) -> np.ndarray:
        return KMeans(k, n_init=1, algorithm="lloyd", random_state=seed).fit(X).labels_

    def intelex(seed: int) -> np.ndarray:
        from sklearnex.cluster import KMeans as OneDalKMeans

        return OneDalKMeans(k, n_init=1, random_state=seed).fit(X).labels_

    fits = {"scikit-learn KMeans(lloyd, n_init=1)": sklearn, "clusterd kmeans (algorithm stage)": ours}
    if with_intelex:
        fits["scikit-learn-intelex KMeans(n_init=1), direct"] = intelex
    candidates = {name: seeded(fn, kept.setdefault(name, [])) for name, fn in fits.items()}
    rows = round_robin(candidates, opts.repeats)
    inertias = {name: [inertia(X, labels) for labels in kept[name]] for name in fits}
    for row in rows:
        row.info = {"mean_inertia": statistics.fmean(inertias[row.name])}
    return {"rows": rows, "inertias": inertias, "names": list(fits)}


def same_start(X: np.ndarray, k: int) -> tuple[float, float]:
    """Labels of clusterd's Lloyd and scikit-learn's from the same initial centres:
    (share of points with the same label, ARI)."""
    from sklearn.cluster import KMeans

    from core.algorithms import kmeans_engine

    rng = np.random.default_rng(0)
    C0 = kmeans_engine.kmeans_plusplus(
        X[rng.choice(X.shape[0], min(20_000, X.shape[0]), replace=False)], k, rng
    )
    ours, _, _, _ = kmeans_engine.lloyd(X, C0, max_iter=300, tol=1e-4)
    theirs = KMeans(k, init=C0, n_init=1, max_iter=300, tol=1e-4).fit(X).labels_
    return float(np.mean(ours == theirs)), float(adjusted_rand_score(theirs, ours))


def case_100k(opts: Options) -> CaseResult:
    n, d, k = (20_000, 128, 20) if opts.quick else (100_000, 768, 50)
    X = blobs(n, d, k)
    out = compare(X, k, opts, with_intelex=True)
    sk, ours, dal = out["names"]
    res = CaseResult(f"kmeans/{n // 1000}k", f"k-means {n}×{d}, k={k}, float32", out["rows"], baseline=sk)
    ratio_sk, ratio_dal = res.ratio(ours), res.ratio(ours, to=dal)
    rel = statistics.fmean(out["inertias"][ours]) / statistics.fmean(out["inertias"][sk])
    agree, ari = same_start(X, k)
    res.targets = [
        Target("≥ 3× faster than scikit-learn", ratio_sk >= 3, f"{ratio_sk:.2f}×"),
        Target(
            "no slower than scikit-learn-intelex called directly",
            ratio_dal >= 1,
            f"{ratio_dal:.2f}× (intelex median / clusterd median)",
        ),
        Target("≤ 1% higher inertia than scikit-learn", rel <= 1.01, f"mean inertia ratio {rel:.4f}"),
        Target(
            "same labels as scikit-learn from the same initial centres",
            agree >= 0.999,
            f"{agree:.5%} of points agree, ARI {ari:.5f} (only float32 ties may differ)",
        ),
    ]
    res.notes.append(f"inertia over seeds 0..{opts.repeats - 1}, the same seeds for every candidate")
    return res


def case_1m(opts: Options) -> CaseResult:
    n, d, k = (100_000, 32, 20) if opts.quick else (1_000_000, 128, 100)
    X = blobs(n, d, k)
    out = compare(X, k, opts, with_intelex=False)
    sk, ours = out["names"]
    res = CaseResult(
        f"kmeans/{n // 1000}k-{d}d", f"k-means {n}×{d}, k={k}, float32", out["rows"], baseline=sk
    )
    ratio = res.ratio(ours)
    rel = statistics.fmean(out["inertias"][ours]) / statistics.fmean(out["inertias"][sk])
    res.targets = [
        Target("≥ 2.5× faster than scikit-learn", ratio >= 2.5, f"{ratio:.2f}×"),
        Target("≤ 1% higher inertia than scikit-learn", rel <= 1.01, f"mean inertia ratio {rel:.4f}"),
    ]
    return res


CASES = {"kmeans/100k": case_100k, "kmeans/1m": case_1m}
