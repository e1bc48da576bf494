"""KMeans with the contract's params (§1.5.4).

Two paths, chosen by size: a problem of at most EXACT_MAX_CELLS (N×D) values calls scikit-learn's
`KMeans` exactly as the request says (same labels as the library: tests/unit/test_partition.py);
anything larger runs `core.algorithms.kmeans_engine` (k-means++ and restarts on a sample, oneDAL
Lloyd on all points; ~6× faster than scikit-learn at 100k×768, docs/benchmarks.md). `n_init`
defaults to 1 (issue 6: scikit-learn's `n_init=10` takes minutes at 100k×768); the SDK sends its own
default of 10 explicitly, which the engine makes affordable by running restarts on the sample.
The run reports `used = {"engine": ...}` for the engine path.

`n_clusters: null` asks for an automatic cluster count: `core.algorithms.auto_k.choose_k` (best
silhouette over k = 2..min(20, n-1) on a seeded sample of at most 5,000 points, each candidate fitted
with the request's other params); the final fit uses all points. The run reports
`used = {"n_clusters": k, "k_selection": {...}}`. A key absent from the request keeps the default 8.

Foreign vocabulary: `algorithm` values of the neighbour-search algorithms of DBSCAN / OPTICS
(`auto`, `ball_tree`, `kd_tree`, `brute`) are ignored (the default `lloyd` is used) rather than
rejected — they reach kmeans only through another algorithm's params dict.
"""

from __future__ import annotations

import warnings
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

from core.algorithms import Fitted, kmeans_engine, register
from core.algorithms.auto_k import choose_k
from core.errors import RunDataError


def _check_n_init(value: Any) -> Any:
    if value == "auto":
        return value
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or value < 1:
        raise ValueError("must be an integer >= 1 or 'auto'")
    return int(value)


class KMeansParams(BaseModel):
    model_config = ConfigDict(extra="ignore")

    n_clusters: int | None = Field(8, ge=2, le=1000)  # null: automatic (auto_k.choose_k)
    max_iter: int = Field(300, ge=1, le=10000)
    random_state: int | None = 42
    n_init: Annotated[int | Literal["auto"], BeforeValidator(_check_n_init)] = 1
    tol: float = Field(1e-4, ge=0, allow_inf_nan=False)
    init: Literal["k-means++", "random"] = "k-means++"
    verbose: int = Field(0, ge=0)
    copy_x: bool = True
    algorithm: Literal["lloyd", "elkan"] = "lloyd"

    @field_validator("algorithm", mode="before")
    @classmethod
    def _ignore_neighbour_search_algorithm(cls, value: Any) -> Any:
        # DBSCAN / OPTICS `algorithm` (neighbour search) is another algorithm's vocabulary.
        if isinstance(value, str) and value in _NEIGHBOUR_SEARCH:
            return cls.model_fields["algorithm"].default
        return value


_NEIGHBOUR_SEARCH = frozenset({"auto", "ball_tree", "kd_tree", "brute"})
EXACT_MAX_CELLS = 1_000_000  # N×D up to which scikit-learn's KMeans runs as is (well under 1 s)


@register("kmeans", KMeansParams)
def kmeans(X: np.ndarray, p: KMeansParams, seed: int) -> np.ndarray | Fitted:
    """Fit KMeans on float32 `X`.

    Parameters
    ----------
    X : (N, D) array of points.
    p : validated params; `random_state=None` falls back to `seed` so runs stay reproducible;
        `n_clusters=None` chooses k automatically (module docstring).
    seed : run seed.

    Returns
    -------
    int64 labels of shape (N,), values in [0, n_clusters); a Fitted reporting the chosen k when
    `n_clusters` was null.
    """
    X = np.asarray(X, dtype=np.float32)
    n = X.shape[0]
    if p.n_clusters is None:
        k, report = choose_k(X, lambda Xs, k: _fit(Xs, p, k, seed).labels, seed=seed)
        fitted = _fit(X, p, k, seed)
        fitted.used.update({"n_clusters": k, "k_selection": report})
        return fitted
    if p.n_clusters > n:
        raise RunDataError(f"kmeans n_clusters ({p.n_clusters}) exceeds the number of points ({n})")
    return _fit(X, p, p.n_clusters, seed)


def _fit(X: np.ndarray, p: KMeansParams, n_clusters: int, seed: int) -> Fitted:
    random_state = p.random_state if p.random_state is not None else seed
    if X.shape[0] * X.shape[1] > EXACT_MAX_CELLS:
        out = kmeans_engine.fit(
            X,
            n_clusters,
            seed=random_state,
            n_init=1 if p.n_init == "auto" else p.n_init,
            init=p.init,
            max_iter=p.max_iter,
            tol=p.tol,
        )
        engine = {"backend": out.backend, "sample_size": out.sample_size, "full_iterations": out.n_iter}
        return Fitted(out.labels, used={"engine": engine})
    model = KMeans(
        n_clusters=n_clusters,
        init=p.init,
        n_init=p.n_init,
        max_iter=p.max_iter,
        tol=p.tol,
        random_state=random_state,
        # always copy (X is at most 1M cells here): with copy_x=False scikit-learn centres X in
        # place during the fit, and the run's layout reads X at the same time (worker.layout_stage)
        copy_x=True,
        algorithm=p.algorithm,
        # `verbose` is accepted for wire compatibility but not passed: sklearn would print to stdout.
    )
    with warnings.catch_warnings():
        # Fewer distinct points than n_clusters: sklearn still labels every point; the metrics'
        # `degenerate` flag reports the outcome, so the warning adds nothing.
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = model.fit_predict(X)
    return Fitted(np.asarray(labels, dtype=np.int64))
