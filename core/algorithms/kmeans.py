"""KMeans (scikit-learn) with the contract's params (§1.5.4)."""

from __future__ import annotations

import warnings
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

from core.algorithms import register
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

    n_clusters: int = Field(8, ge=2, le=1000)
    max_iter: int = Field(300, ge=1, le=10000)
    random_state: int | None = 42
    n_init: Annotated[int | Literal["auto"], BeforeValidator(_check_n_init)] = 10
    tol: float = Field(1e-4, ge=0, allow_inf_nan=False)
    init: Literal["k-means++", "random"] = "k-means++"
    verbose: int = Field(0, ge=0)
    copy_x: bool = True
    algorithm: Literal["lloyd", "elkan"] = "lloyd"


@register("kmeans", KMeansParams, max_points=1_000_000)
def kmeans(X: np.ndarray, p: KMeansParams, seed: int) -> np.ndarray:
    """Fit KMeans on float32 `X`.

    Parameters
    ----------
    X : (N, D) array of points.
    p : validated params; `random_state=None` falls back to `seed` so runs stay reproducible.
    seed : run seed.

    Returns
    -------
    int64 labels of shape (N,), values in [0, n_clusters).
    """
    n = X.shape[0]
    if p.n_clusters > n:
        raise RunDataError(f"kmeans n_clusters ({p.n_clusters}) exceeds the number of points ({n})")
    model = KMeans(
        n_clusters=p.n_clusters,
        init=p.init,
        n_init=p.n_init,
        max_iter=p.max_iter,
        tol=p.tol,
        random_state=p.random_state if p.random_state is not None else seed,
        copy_x=p.copy_x,
        algorithm=p.algorithm,
        # `verbose` is accepted for wire compatibility but not passed: sklearn would print to stdout.
    )
    with warnings.catch_warnings():
        # Fewer distinct points than n_clusters: sklearn still labels every point; the metrics'
        # `degenerate` flag reports the outcome, so the warning adds nothing.
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = model.fit_predict(np.asarray(X, dtype=np.float32))
    return np.asarray(labels, dtype=np.int64)
