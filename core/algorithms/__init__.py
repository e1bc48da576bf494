"""Algorithm registry: each algorithm module registers a params model and a fit function.

Params are checked at one entry point, `validate_params`, so every caller (API, worker, SDK
defaults) gets the same ranges and the same error messages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_args

import numpy as np
from pydantic import BaseModel, ValidationError

from core.errors import ValidationFailed

P = TypeVar("P", bound=BaseModel)


@dataclass
class Fitted:
    """An algorithm's answer: labels (-1 = noise) and the parameter values it actually used where
    they differ from the request (an automatic `n_clusters` or `eps`, a capped value, ...)."""

    labels: np.ndarray
    used: dict[str, Any] = field(default_factory=dict)


FitFn = Callable[[np.ndarray, BaseModel, int], Fitted]
Fit = Callable[[np.ndarray, P, int], "np.ndarray | Fitted"]  # an algorithm's own fit, typed by its params


@dataclass(frozen=True)
class AlgorithmSpec:
    """A registered algorithm. `fit(X, params, seed)` returns a Fitted with int64 labels of shape (N,)."""

    name: str
    params_model: type[BaseModel]
    fit: FitFn
    produces_noise: bool
    reduces_high_dim: bool = False  # cluster a PCA projection of wide vectors (density methods)


_REGISTRY: dict[str, AlgorithmSpec] = {}


def register(
    name: str,
    params_model: type[P],
    *,
    produces_noise: bool = False,
    reduces_high_dim: bool = False,
) -> Callable[[Fit[P]], Fit[P]]:
    """Register `fn` under `name`; the stored fit checks the label contract on every call."""

    def decorator(fn: Fit[P]) -> Fit[P]:
        if name in _REGISTRY:
            raise ValueError(f"algorithm '{name}' is already registered")

        def fit(X: np.ndarray, params: BaseModel, seed: int) -> Fitted:
            if not isinstance(params, params_model):
                raise TypeError(f"{name}: expected {params_model.__name__}, got {type(params).__name__}")
            out = fn(X, params, seed)
            fitted = out if isinstance(out, Fitted) else Fitted(np.asarray(out))
            fitted.labels = _check_labels(name, np.asarray(fitted.labels), X.shape[0], produces_noise)
            return fitted

        _REGISTRY[name] = AlgorithmSpec(name, params_model, fit, produces_noise, reduces_high_dim)
        return fn

    return decorator


def _check_labels(name: str, labels: np.ndarray, n: int, produces_noise: bool) -> np.ndarray:
    # A broken algorithm must fail loudly here rather than corrupt centroids downstream.
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise RuntimeError(
            f"{name}: labels must be integers of shape ({n},), got {labels.dtype} {labels.shape}"
        )
    labels = labels.astype(np.int64, copy=False)
    lowest = -1 if produces_noise else 0
    if n and int(labels.min()) < lowest:
        raise RuntimeError(f"{name}: labels below {lowest} are not allowed")
    return labels


def get_algorithm(name: str) -> AlgorithmSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValidationFailed(
            f"config.algorithm: '{name}' is not supported", code="algorithm_not_supported"
        ) from None


def supported_algorithms() -> list[str]:
    return sorted(_REGISTRY)


def validate_params(
    name: str, raw: Mapping[str, Any] | None, *, field: str = "algorithm_params"
) -> BaseModel:
    """Build `name`'s params from `raw`, ignoring keys of other algorithms.

    The SDK sends whichever params model matched first (often a full KMeans default dict), so
    foreign keys are expected and dropped silently. `None` means "choose automatically" for a
    field whose type admits None (e.g. kmeans `n_clusters`, dbscan `eps`), else "use the default".
    """
    model = get_algorithm(name).params_model
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        err = {"loc": [field], "msg": "must be an object", "type": "dict_type"}
        raise ValidationFailed(
            f"{field}: must be an object (got {type(raw).__name__})", details={"validation_errors": [err]}
        )
    kept = {
        k: v for k, v in raw.items() if k in model.model_fields and (v is not None or _nullable(model, k))
    }
    try:
        return model.model_validate(kept)
    except ValidationError as exc:
        errors = _describe_errors(exc, model, kept, field)
        message = "; ".join(f"{field}.{e['loc'][1]}: {e['msg']}" for e in errors)
        raise ValidationFailed(message, details={"validation_errors": errors}) from None


def _nullable(model: type[BaseModel], key: str) -> bool:
    annotation = model.model_fields[key].annotation
    return annotation is None or type(None) in get_args(annotation)


def _describe_errors(
    exc: ValidationError, model: type[BaseModel], kept: Mapping[str, Any], field: str
) -> list[dict[str, Any]]:
    """One error per params field, phrased as `must be ... (got x)`."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for err in exc.errors():
        key = str(err["loc"][0]) if err["loc"] else ""
        if key in seen:
            continue  # a union reports one error per member; the first is enough
        seen.add(key)
        msg = _reason(err, model, key)
        if key in kept:
            msg += f" (got {kept[key]!r})"
        out.append({"loc": [field, key], "msg": msg, "type": err["type"]})
    return out


def _reason(err: Any, model: type[BaseModel], key: str) -> str:
    if err["type"] in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        info = model.model_fields.get(key)
        bounds = {
            k: getattr(m, k) for m in (info.metadata if info else []) for k in ("ge", "le") if hasattr(m, k)
        }
        if "ge" in bounds and "le" in bounds:
            return f"must be between {bounds['ge']} and {bounds['le']}"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        return msg[len("Value error, ") :]
    return msg.replace("Input should be", "must be", 1)


# Algorithm modules register themselves on import (one module per family).
from core.algorithms import density, hierarchy, kmeans, mixture, spectral  # noqa: E402, F401
