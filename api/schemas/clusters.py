"""Cluster definition requests (create, patch) and their translation to stored documents."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.stored import Metadata, StoredDict
from core.algorithms import get_algorithm, supported_algorithms, validate_params
from core.errors import ValidationFailed
from core.models import ClusteringAlgorithm
from core.multifeature import MAX_FEATURES
from core.multifeature import METRICS as LEARNING_METRICS
from core.preprocess import parse_steps

LEGACY_PARAMS = {
    "kmeans": "kmeans_parameters",
    "dbscan": "dbscan_parameters",
    "hdbscan": "hdbscan_parameters",
}
LLM_MODELS = {
    "gpt-4o-2024-08-06",
    "gpt-4o-mini-2024-07-18",
    "gpt-4.1-2025-04-14",
    "gpt-4.1-mini-2025-04-14",
    "o3-mini-2025-01-31",
    "gemini-2.5-flash-lite",
    "gemini-2.5-flash",
    "gemini-2.5-pro",
    "gemini-3.1-flash-lite",
    "gemini-3.5-flash-lite",
    "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5-20251001",
    "claude-3-5-sonnet-20241022",
    "claude-3-5-haiku-20241022",
    "jev-latest",
    "jev-preview",
    "jev-1.13.0",
}
LLM_SHORT = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "o3-mini": "o3-mini-2025-01-31",
}


class ClusterCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")
    collection_ids: list[str] | None = Field(None, min_length=1)
    source_cluster_ids: list[str] | None = None
    cluster_name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = None
    metadata: Metadata | None = None
    cluster_type: Literal["vector", "attribute"] | None = None
    vector_config: StoredDict | None = None
    attribute_config: StoredDict | None = None
    filters: StoredDict | None = None
    llm_labeling: StoredDict | None = None


class ClusterPatch(BaseModel):
    model_config = ConfigDict(extra="ignore")
    cluster_name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = None
    metadata: Metadata | None = None
    llm_labeling: StoredDict | None = None
    filters: StoredDict | None = None
    sample_size: int | None = Field(None, ge=1, le=1_000_000)
    algorithm_params: StoredDict | None = None
    layout_stability: Literal["none", "transform", "align"] | None = None


class ExecuteById(BaseModel):
    model_config = ConfigDict(extra="ignore")
    mode: Literal["full", "assign", "composite"] = "full"
    filters: StoredDict | None = None
    sample_size: int | None = Field(None, ge=1, le=1_000_000)
    vis_n_components: Literal[2, 3] | None = None
    layout_stability: Literal["none", "transform", "align"] | None = None
    llm_labeling: StoredDict | None = None
    defer_visualization: bool | None = None


def check_document_filters(filters: dict[str, Any] | None, field: str) -> None:
    """A document pre-filter is validated when it is stored, so a run never meets a bad one."""
    from core.filters import DOCUMENT_SCHEMA, compile_filter

    compile_filter(filters, schema=DOCUMENT_SCHEMA, where=field)


def normalise_llm(cfg: dict[str, Any] | None) -> dict[str, Any] | None:
    if cfg is None:
        return None
    cfg = dict(cfg)
    name = cfg.get("model_name")
    if name is not None:
        name = LLM_SHORT.get(name, name)
        if name not in LLM_MODELS:
            raise ValidationFailed(f"llm_labeling.model_name: '{cfg['model_name']}' is not a supported model")
        cfg["model_name"] = name
    from core.labeling.options import parse_options

    parse_options(cfg)  # 422 naming the field (llm_labeling.max_samples_per_cluster: ...)
    return cfg


def effective_params(algorithm: str, vc: dict[str, Any], field: str | None) -> dict[str, Any]:
    """algorithm_params > legacy <algo>_parameters > defaults; foreign keys are ignored.
    `field` is the config object's name in error messages (None: a top-level algorithm_params)."""
    where = f"{field}.algorithm_params" if field else "algorithm_params"
    raw = vc.get("algorithm_params")
    if not raw and LEGACY_PARAMS.get(algorithm):
        raw = vc.get(LEGACY_PARAMS[algorithm])
    if raw is not None and not isinstance(raw, dict):
        raise ValidationFailed(f"{where}: must be an object")
    return validate_params(algorithm, raw, field=where).model_dump(mode="json")


AUTO_ALGORITHM = "hdbscan"  # `auto`: no k to guess, finds noise, scales to the engine cap


def check_algorithm(value: Any, field: str) -> str:
    """Resolve a vector clustering_method to a registered algorithm (422 naming `field` if none)."""
    valid = {a.value for a in ClusteringAlgorithm}
    if value not in valid:
        raise ValidationFailed(f"{field}: must be one of {sorted(valid)} (got {value!r})")
    if value == ClusteringAlgorithm.ATTRIBUTE_BASED:
        raise ValidationFailed(
            f"{field}: attribute_based clusters use cluster_type 'attribute' with an attribute_config"
        )
    name = AUTO_ALGORITHM if value == ClusteringAlgorithm.AUTO else str(value)
    try:
        get_algorithm(name)
    except ValidationFailed as exc:  # name the request's field, not the registry's
        supported = ", ".join([*supported_algorithms(), "auto", "attribute_based"])
        raise ValidationFailed(
            f"{field}: '{value}' is not supported yet (supported: {supported})", code=exc.code
        ) from None
    return name


def vector_settings(vc: dict[str, Any]) -> dict[str, Any]:
    """Validate a vector_config; returns the stored, normalised config (always with clustering_method)."""
    if not vc.get("clustering_method"):
        raise ValidationFailed("vector_config.clustering_method: field required")
    algorithm = check_algorithm(vc["clustering_method"], "vector_config.clustering_method")
    uris = vc.get("feature_uris") or ([vc["feature_uri"]] if vc.get("feature_uri") else [])
    if not uris or not all(isinstance(u, str) and u for u in uris):
        raise ValidationFailed(
            "vector_config.feature_uris: at least one feature URI (or vector name) is required"
        )
    multi = multi_feature_settings(vc, list(uris))
    hierarchical, depth = hierarchy_settings(vc)
    sample_size = vc.get("sample_size")
    if sample_size is not None and (type(sample_size) is not int or not 1 <= sample_size <= 1_000_000):
        raise ValidationFailed("vector_config.sample_size: must be an integer between 1 and 1000000")
    method = vc.get("effective_feature_method") or "mean"
    if method not in ("mean", "median", "medoid"):
        raise ValidationFailed("vector_config.effective_feature_method: must be mean, median or medoid")
    vis = vc.get("vis_n_components", 2)
    if vis not in (2, 3):
        raise ValidationFailed("vector_config.vis_n_components: must be 2 or 3")
    layout = vc.get("layout_stability")
    if layout not in (None, "none", "transform", "align"):
        raise ValidationFailed("vector_config.layout_stability: must be none, transform or align")
    steps = parse_steps(vc.get("preprocessing_steps"), "vector_config.preprocessing_steps")
    normalize = vc.get("normalize_features", True)
    if not isinstance(normalize, bool):
        raise ValidationFailed("vector_config.normalize_features: must be a boolean")
    return {
        "clustering_method": vc["clustering_method"],
        "algorithm": algorithm,
        "feature_uris": list(uris),
        "sample_size": sample_size,
        "algorithm_params": effective_params(algorithm, vc, "vector_config"),
        "normalize_features": normalize,
        **multi,
        "effective_feature_method": method,
        "enrich_source": False,
        "hierarchical": hierarchical,
        "max_hierarchy_depth": depth,
        "vis_n_components": vis,
        "layout_stability": layout,
        "preprocessing_steps": steps,
    }


MULTI_STRATEGIES = ("concatenate", "independent", "weighted")
WEIGHT_METHODS = ("grid_search", "bayesian")


def multi_feature_settings(vc: dict[str, Any], uris: list[str]) -> dict[str, Any]:
    """multi_feature_strategy, output_strategy, feature_weights and weight_learning_config, checked
    (core.multifeature runs them). The bounds are the SDK's (WeightLearningConfig), so the stored
    echo parses; the weights are relative (a run normalises them to sum to 1)."""
    where = "vector_config"
    if len(uris) > MAX_FEATURES:
        raise ValidationFailed(f"{where}.feature_uris: at most {MAX_FEATURES} features (got {len(uris)})")
    if len(set(uris)) != len(uris):
        dup = next(u for u in uris if uris.count(u) > 1)
        raise ValidationFailed(f"{where}.feature_uris: '{dup}' is listed twice")
    strategy = vc.get("multi_feature_strategy") or "concatenate"
    if strategy not in MULTI_STRATEGIES:
        raise ValidationFailed(
            f"{where}.multi_feature_strategy: must be one of {', '.join(MULTI_STRATEGIES)} (got {strategy!r})"
        )
    output = vc.get("output_strategy") or "single"
    if output not in ("single", "per_feature"):
        raise ValidationFailed(f"{where}.output_strategy: must be single or per_feature (got {output!r})")
    weights = vc.get("feature_weights")
    if weights is not None:
        if not isinstance(weights, dict):
            raise ValidationFailed(f"{where}.feature_weights: must be an object of feature URI -> weight")
        for uri, w in weights.items():
            if uri not in uris:
                raise ValidationFailed(f"{where}.feature_weights.{uri}: not one of feature_uris")
            if type(w) not in (int, float) or not math.isfinite(w) or w < 0:
                raise ValidationFailed(f"{where}.feature_weights.{uri}: must be a finite number ≥ 0")
        if len(uris) > 1 and not any(weights.get(u, 1.0) > 0 for u in uris):
            raise ValidationFailed(f"{where}.feature_weights: at least one weight must be above 0")
    learning = vc.get("weight_learning_config")
    if learning is not None:
        learning = _weight_learning(learning, f"{where}.weight_learning_config")
    elif strategy == "weighted":
        learning = _weight_learning({}, f"{where}.weight_learning_config")
    return {
        "multi_feature_strategy": strategy,
        "output_strategy": output,
        "feature_weights": dict(weights) if weights is not None else None,
        "weight_learning_config": learning,
    }


def _weight_learning(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValidationFailed(f"{where}: must be an object")
    method = raw.get("method") or "bayesian"
    if method not in WEIGHT_METHODS:
        raise ValidationFailed(f"{where}.method: must be grid_search or bayesian (got {method!r})")
    metric = raw.get("metric") or "silhouette"
    if metric not in LEARNING_METRICS:
        choices = ", ".join(LEARNING_METRICS)
        raise ValidationFailed(f"{where}.metric: must be one of {choices} (got {metric!r})")
    out: dict[str, Any] = {"method": method, "metric": metric}
    for name, default, low, high in (
        ("max_iterations", 20, 5, 100),
        ("sample_size", None, 100, 1_000_000),
        ("random_state", 42, None, None),
    ):
        value = raw.get(name)
        if value is None:
            out[name] = default
            continue
        if type(value) is not int or (low is not None and value < low) or (high is not None and value > high):
            bounds = f" between {low} and {high}" if low is not None else ""
            raise ValidationFailed(f"{where}.{name}: must be an integer{bounds}")
        out[name] = value
    return out
def hierarchy_settings(vc: dict[str, Any]) -> tuple[bool, int]:
    """`hierarchical` (bool, null = false) and `max_hierarchy_depth` (int 1–5, null = 3; checked even
    when hierarchical is off, as the SDK always sends it): see core/hierarchy_split.py."""
    from core.hierarchy_split import MAX_DEPTH

    hierarchical = vc.get("hierarchical")
    if hierarchical is None:
        hierarchical = False
    if not isinstance(hierarchical, bool):
        raise ValidationFailed(
            f"vector_config.hierarchical: must be a boolean (got {hierarchical!r})",
            details={"validation_errors": [_error("hierarchical", "must be a boolean", "bool_type")]},
        )
    depth = vc.get("max_hierarchy_depth")
    if depth is None:
        depth = 3
    if type(depth) is not int or not 1 <= depth <= MAX_DEPTH:
        reason = f"must be an integer between 1 and {MAX_DEPTH}"
        raise ValidationFailed(
            f"vector_config.max_hierarchy_depth: {reason} (got {depth!r})",
            details={"validation_errors": [_error("max_hierarchy_depth", reason, "int_range")]},
        )
    return hierarchical, depth


def _error(key: str, msg: str, type_: str) -> dict[str, Any]:
    return {"loc": ["vector_config", key], "msg": msg, "type": type_}


def attribute_settings(raw: dict[str, Any]) -> dict[str, Any]:
    """Validate an attribute_config; returns the stored definition fields of an attribute cluster."""
    from core.attributes import parse_attribute_config

    ac = parse_attribute_config(raw)
    config = {
        "attributes": list(ac.attributes),
        "hierarchical_grouping": ac.hierarchical_grouping,
        "aggregation_method": ac.aggregation_method,
    }
    return {
        "cluster_type": "attribute",
        "algorithm": "attribute_based",
        "algorithm_params": {},
        "attribute_config": config,
        "clustered_attributes": config["attributes"],
        "hierarchical_grouping": ac.hierarchical_grouping,
        "aggregation_method": ac.aggregation_method or "most_frequent",
        "feature_uris": [],
    }
