"""Gaussian mixture models: scikit-learn's GaussianMixture, labels = most likely component.

A fit with `n_components: k` is the same call as `GaussianMixture(n_components=k,
covariance_type=..., random_state=..., max_iter=..., n_init=..., tol=..., reg_covar=...).fit_predict(X)`
(equal to `.fit(X).predict(X)`); `random_state: null` uses the run seed.

`n_components: null` chooses the count by BIC (lower is better): on a seeded sample of at most
BIC_SAMPLE (2,000) points, k = 1..min(BIC_K_MAX (15), n_sample - 1) are fitted with the request's
other params, scanning upwards and stopping once BIC_PATIENCE (3) consecutive k have not improved on
the best BIC so far (the fits grow with k; a clean minimum is not revisited). Ties go to the smaller
k; a k whose fit fails (ill-defined covariance) has no BIC (null). The final fit uses all points and
the run reports `used = {"n_components": k, "k_selection": {"method": "bic", "sample_size",
"tried": [k...], "bic": [value|null ...], "best", "stopped_early"}}`.

Foreign vocabulary: `n_init: "auto"` (a KMeans value) and `tol: 0` (valid for KMeans, whose range is
≥ 0; here tol must be > 0) are ignored — the defaults are used — instead of rejected.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from core.algorithms import Fitted, register
from core.algorithms.auto_k import seeded_sample
from core.errors import RunDataError

BIC_SAMPLE = 2_000
BIC_K_MAX = 15
BIC_PATIENCE = 3


class GaussianMixtureParams(BaseModel):
    model_config = ConfigDict(extra="ignore")

    n_components: int | None = Field(1, ge=1)  # null: chosen by BIC
    covariance_type: Literal["full", "tied", "diag", "spherical"] = "full"
    random_state: int | None = 42  # null: the run seed
    max_iter: int = Field(100, ge=1)
    n_init: int = Field(1, ge=1)
    tol: float = Field(1e-3, gt=0, allow_inf_nan=False)
    reg_covar: float = Field(1e-6, ge=0, allow_inf_nan=False)

    @field_validator("n_init", "tol", mode="before")
    @classmethod
    def _ignore_foreign(cls, value: Any, info: ValidationInfo) -> Any:
        name = info.field_name or ""
        foreign = value == "auto" if name == "n_init" else _is_zero(value)
        return cls.model_fields[name].default if foreign else value


def _is_zero(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == 0


# full covariances on 768-d vectors are slow and always pick one component: fit a PCA projection
@register("gaussian_mixture", GaussianMixtureParams, reduces_high_dim=True)
def gaussian_mixture(X: np.ndarray, p: GaussianMixtureParams, seed: int) -> np.ndarray | Fitted:
    """Fit a GaussianMixture on float32 `X` and label each point with its most likely component.

    Returns int64 labels of shape (N,); a Fitted with the BIC choice when `n_components` was null.
    """
    X = np.asarray(X, dtype=np.float32)
    n = X.shape[0]
    rs = p.random_state if p.random_state is not None else seed
    if p.n_components is None:
        k, report = choose_components(X, p, rs, seed)
        return Fitted(_fit(X, p, k, rs), used={"n_components": k, "k_selection": report})
    if p.n_components > n:
        raise RunDataError(
            f"gaussian_mixture n_components ({p.n_components}) exceeds the number of points ({n})"
        )
    return _fit(X, p, p.n_components, rs)


def choose_components(
    X: np.ndarray, p: GaussianMixtureParams, random_state: int, seed: int
) -> tuple[int, dict[str, Any]]:
    """The BIC choice of the module docstring."""
    Xs = seeded_sample(X, BIC_SAMPLE, seed)
    n = Xs.shape[0]
    hi = max(1, min(BIC_K_MAX, n - 1))
    tried: list[int] = []
    bics: list[float | None] = []
    best: tuple[float, int] | None = None
    since_best = 0
    for k in range(1, hi + 1):
        tried.append(k)
        try:
            with _quiet():
                bic = float(_model(p, k, random_state).fit(Xs).bic(Xs))
        except ValueError:  # ill-defined covariance (e.g. reg_covar 0 on repeated points)
            bic = float("nan")
        if not np.isfinite(bic):
            bics.append(None)
        else:
            bics.append(round(bic, 4))
            if best is None or bic < best[0]:
                best, since_best = (bic, k), 0
                continue
        since_best += 1
        if best is not None and since_best >= BIC_PATIENCE:
            break
    k_best = best[1] if best is not None else 1
    report: dict[str, Any] = {
        "method": "bic",
        "sample_size": int(n),
        "tried": tried,
        "bic": bics,
        "best": k_best,
        "stopped_early": tried[-1] < hi,
    }
    return k_best, report


def _model(p: GaussianMixtureParams, k: int, random_state: int) -> GaussianMixture:
    return GaussianMixture(
        n_components=k,
        covariance_type=p.covariance_type,
        tol=p.tol,
        reg_covar=p.reg_covar,
        max_iter=p.max_iter,
        n_init=p.n_init,
        random_state=random_state,
    )


def _fit(X: np.ndarray, p: GaussianMixtureParams, k: int, random_state: int) -> np.ndarray:
    try:
        with _quiet():
            labels = _model(p, k, random_state).fit_predict(X)
    except ValueError as exc:  # ill-defined covariance: the data, not the request, is at fault
        raise RunDataError(f"gaussian_mixture could not be fitted: {exc}") from None
    return np.asarray(labels, dtype=np.int64)


@contextmanager
def _quiet() -> Iterator[None]:
    """EM stopping at max_iter before `tol` is reached is a legitimate outcome, not a failure."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield
