"""Preprocessing steps before the fit: standardize, whitening, pca, umap, tsne (and `none`).

`vector_config.preprocessing_steps` is an ordered list of `{method, ...params}`. The steps run in
order on the (normalised) vectors and the algorithm fits the result; centroids, distances and
cosines stay in the normalised feature space (as with the automatic PCA-32, which explicit steps
replace). `[{"method": "none"}]` alone asks for the vectors as stored, with no automatic reduction;
`none` inside a longer list does nothing.

`parse_steps` validates a request's list (422 naming `<where>[i].<field>`) and fills the defaults,
so what is stored and echoed parses as the SDK's step models (UMAPParams, WhiteningParams,
TSNEParams, NoReduction; `standardize` and `pca` are this platform's own). `fit_steps` fits the
steps and returns the transformed matrix with a `FittedSteps` that can transform new vectors the
same way (tsne cannot: it has no out-of-sample transform). Pure: no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import RunDataError, ValidationFailed

METHODS = ("standardize", "whitening", "pca", "umap", "tsne", "none")
SDK_METHODS = frozenset({"none", "tsne", "umap", "whitening"})  # the SDK's step models (a oneOf)
MAX_STEPS = 8
UMAP_METRICS = ("euclidean", "cosine", "manhattan", "correlation", "chebyshev", "minkowski")

# method -> field -> (kind, default, low, high); kind "int" (strict), "num" (int or float), "str"
_PARAMS: dict[str, dict[str, tuple[str, Any, float | None, float | None]]] = {
    "standardize": {},
    "none": {},
    "whitening": {"regularization": ("num", 1e-5, 0.0, None)},
    "pca": {"n_components": ("int", 32, 1, 4096), "random_state": ("int", 42, None, None)},
    "umap": {
        "n_components": ("int", 50, 2, 256),
        "n_neighbors": ("int", 30, 2, 200),
        "min_dist": ("num", 0.0, 0.0, 1.0),
        "metric": ("str", "cosine", None, None),
        "random_state": ("int", 42, None, None),
    },
    "tsne": {
        "n_components": ("int", 2, 2, 3),
        "perplexity": ("num", 30.0, 1.0, 1000.0),
        "learning_rate": ("num", 200.0, 10.0, 10000.0),
        "random_state": ("int", 42, None, None),
    },
}


def parse_steps(raw: Any, where: str) -> list[dict[str, Any]]:
    """The validated steps with every parameter filled in; ValidationFailed names the bad field."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValidationFailed(f"{where}: must be a list of {{method: ...}} objects")
    if len(raw) > MAX_STEPS:
        raise ValidationFailed(f"{where}: at most {MAX_STEPS} steps (got {len(raw)})")
    return [_parse_step(step, f"{where}[{i}]") for i, step in enumerate(raw)]


def _parse_step(step: Any, where: str) -> dict[str, Any]:
    if not isinstance(step, dict):
        raise ValidationFailed(f"{where}: must be an object with a method")
    method = step.get("method")
    if method not in METHODS:
        raise ValidationFailed(f"{where}.method: must be one of {', '.join(METHODS)} (got {method!r})")
    out: dict[str, Any] = {"method": method}
    for name, (kind, default, low, high) in _PARAMS[method].items():
        value = step.get(name)
        out[name] = default if value is None else _check(value, kind, low, high, f"{where}.{name}")
    if method == "umap" and out["metric"] not in UMAP_METRICS:
        raise ValidationFailed(f"{where}.metric: must be one of {', '.join(UMAP_METRICS)}")
    return out


def _check(value: Any, kind: str, low: float | None, high: float | None, where: str) -> Any:
    if kind == "str":
        if not isinstance(value, str):
            raise ValidationFailed(f"{where}: must be a string")
        return value
    if kind == "int" and type(value) is not int:
        raise ValidationFailed(f"{where}: must be an integer")
    if kind == "num" and (type(value) not in (int, float) or not math.isfinite(value)):
        raise ValidationFailed(f"{where}: must be a finite number")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise ValidationFailed(f"{where}: must be {bounds} (got {value})")
    return value


def explicit(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The steps that do something (`none` is only a switch for the automatic reduction)."""
    return [s for s in steps if s.get("method") != "none"]


def sdk_compatible(steps: list[dict[str, Any]]) -> bool:
    """Whether every step parses as one of the SDK's step models (VectorBasedConfigOutput types
    them as a oneOf of those four; ClusterMetadata keeps free-form dicts)."""
    return all(s.get("method") in SDK_METHODS for s in steps)


class Whitener:
    """PCA whitening: centre, rotate onto the covariance eigenvectors, divide each component by
    sqrt(max(eigenvalue, regularization)). Keeps min(N, D) components; the floor keeps components
    of (almost) no variance from being blown up."""

    def __init__(self, regularization: float) -> None:
        self.regularization = regularization
        self.mean_: np.ndarray | None = None
        self.components_: np.ndarray | None = None  # (D, k), already divided by the scales

    def fit(self, X: np.ndarray) -> Whitener:
        X64 = X.astype(np.float64)
        self.mean_ = X64.mean(axis=0)
        Xc = X64 - self.mean_
        cov = (Xc.T @ Xc) / max(1, X.shape[0] - 1)
        values, vectors = np.linalg.eigh(cov)  # ascending
        order = np.argsort(values)[::-1][: min(X.shape[0], X.shape[1])]
        values, vectors = values[order], vectors[:, order]
        # eigenvectors are defined up to sign: fix it so the same data gives the same output
        signs = np.sign(vectors[np.argmax(np.abs(vectors), axis=0), np.arange(vectors.shape[1])])
        vectors = vectors * np.where(signs == 0, 1.0, signs)
        self.components_ = vectors / np.sqrt(np.maximum(values, self.regularization))
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        assert self.mean_ is not None and self.components_ is not None, "fit first"
        return ((X.astype(np.float64) - self.mean_) @ self.components_).astype(np.float32)


@dataclass
class FittedSteps:
    """The fitted steps of one run, in order: `transform` maps vectors of the normalised feature
    space into the space the algorithm clustered. Pickled with the run (core.preprocess_artifact)."""

    steps: list[dict[str, Any]]
    models: list[Any] = field(default_factory=list)
    input_dimensions: int = 0

    def transform(self, X: np.ndarray) -> np.ndarray:
        Z = np.asarray(X, dtype=np.float32)
        if Z.ndim != 2 or Z.shape[1] != self.input_dimensions:
            raise ValueError(f"expected (n, {self.input_dimensions}) vectors, got shape {Z.shape}")
        for step, model in zip(self.steps, self.models, strict=True):
            if step["method"] == "tsne":
                raise ValueError("tsne has no out-of-sample transform: its embedding fits only its own run")
            Z = np.asarray(model.transform(Z), dtype=np.float32)
        return Z


def fit_steps(X: np.ndarray, steps: list[dict[str, Any]], seed: int = 42) -> tuple[np.ndarray, FittedSteps]:
    """Fit `steps` (parsed, `none` dropped) in order on X; returns (transformed X, fitted steps).

    Component counts above what the data allows are lowered to it (min(N, D) for pca; N − 2 for
    umap and its n_neighbors ≤ N − 1), and each step's `random_state` seeds it (the run's seed
    when a step has none). Raises RunDataError when the data is too small for a step.
    """
    fitted = FittedSteps(steps=[], input_dimensions=int(X.shape[1]))
    Z = np.ascontiguousarray(X, dtype=np.float32)
    for step in steps:
        model, Z, used = _fit_one(Z, step, seed)
        fitted.steps.append(used)
        fitted.models.append(model)
    return Z, fitted


def _fit_one(Z: np.ndarray, step: dict[str, Any], seed: int) -> tuple[Any, np.ndarray, dict[str, Any]]:
    method = step["method"]
    n, d = Z.shape
    used = dict(step)
    rs = step.get("random_state", seed)
    if method == "standardize":
        from sklearn.preprocessing import StandardScaler

        model: Any = StandardScaler().fit(Z)
    elif method == "whitening":
        model = Whitener(float(step["regularization"])).fit(Z)
    elif method == "pca":
        from sklearn.decomposition import PCA

        used["n_components"] = min(int(step["n_components"]), n, d)
        model = PCA(n_components=used["n_components"], random_state=rs).fit(Z)
    elif method == "umap":
        if n < 4:
            raise RunDataError(f"the umap step needs at least 4 points (got {n})")
        used["n_components"] = min(int(step["n_components"]), n - 2)
        used["n_neighbors"] = min(int(step["n_neighbors"]), n - 1)
        model = _umap(used, rs)
        model.fit(Z)
        return model, np.asarray(model.embedding_, dtype=np.float32), used
    elif method == "tsne":
        from sklearn.manifold import TSNE

        used["perplexity"] = min(float(step["perplexity"]), max(1.0, (n - 1) / 3.0))
        model = TSNE(
            n_components=int(step["n_components"]),
            perplexity=used["perplexity"],
            learning_rate=float(step["learning_rate"]),
            init="pca",
            random_state=rs,
        )
        return model, np.asarray(model.fit_transform(Z), dtype=np.float32), used
    else:  # parse_steps admits nothing else
        raise ValueError(f"unknown preprocessing method {method!r}")
    return model, np.ascontiguousarray(model.transform(Z), dtype=np.float32), used


def _umap(step: dict[str, Any], seed: int) -> Any:
    """umap-learn, imported only when a run asks for it (numba compiles on first use: seconds)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # import-time deprecation noise of its dependencies
        import umap

    return umap.UMAP(
        n_components=int(step["n_components"]),
        n_neighbors=int(step["n_neighbors"]),
        min_dist=float(step["min_dist"]),
        metric=str(step["metric"]),
        random_state=int(seed),
        n_jobs=1,  # a random_state makes umap single-threaded anyway; say it so it does not warn
    )


def describe(fitted: FittedSteps, input_dimensions: int, output_dimensions: int) -> dict[str, Any]:
    """The run's `preprocessing` report: the steps as fitted (with lowered counts) and the shapes."""
    return {
        "method": "preprocessing_steps",
        "steps": fitted.steps,
        "from": int(input_dimensions),
        "to": int(output_dimensions),
    }


def dumps(fitted: FittedSteps) -> bytes:
    """The fitted steps as pickle bytes (the run's `preprocessor.pkl` artifact). Only this
    platform's own artifact store is ever unpickled: never load one from elsewhere."""
    import pickle

    return pickle.dumps(fitted, protocol=pickle.HIGHEST_PROTOCOL)


def loads(data: bytes) -> FittedSteps | list[FittedSteps | None]:
    """A `preprocessor.pkl`: the FittedSteps of the run, or for an independent multi-feature run
    a list with one entry per feature (None where that feature had no steps)."""
    import pickle

    out = pickle.loads(data)  # noqa: S301 - our own artifact (see dumps)
    items = out if isinstance(out, list) else [out]
    if not all(x is None or isinstance(x, FittedSteps) for x in items):
        raise ValueError("not a preprocessor artifact")
    return out  # type: ignore[no-any-return]


def dumps_many(fitted: list[FittedSteps | None]) -> bytes:
    """An independent run's steps, one entry per feature."""
    import pickle

    return pickle.dumps(fitted, protocol=pickle.HIGHEST_PROTOCOL)
