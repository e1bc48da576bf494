"""Wire shapes of stored records: ClusterMetadata, ClusterModel, ClusterExecutionResult, TaskResponse."""

from __future__ import annotations

import math
from typing import Any

from core.models import RunStatus
from core.preprocess import sdk_compatible
from core.timeutil import iso
from core.vectors import decode

_METADATA_KEYS = (
    "cluster_id",
    "cluster_name",
    "namespace_id",
    "description",
    "cluster_type",
    "status",
    "input_collections",
    "algorithm",
    "algorithm_params",
    "feature_uris",
    "sample_size",
    "filters",
    "metadata",
    "llm_labeling",
    "multi_feature_strategy",
    "effective_feature_method",
    "vis_n_components",
    "layout_stability",
    "hierarchical_vector",
    "hierarchical_grouping",
    "enrich_source",
    "hierarchy_detected",
    "max_hierarchy_depth",
    "output_collection_ids",
    "output_collection_names",
    "source_cluster_ids",
    "num_clusters",
    "num_documents_clustered",
    "quality_metrics",
    "execution_time_seconds",
    "error",
    "failure_category",
    "last_run_id",
    "last_execution_task_id",
    "clustered_attributes",
    "aggregation_method",
    "hierarchy_relationships",
    "preprocessing_steps",
    "llm_labeling_errors",
    "learned_weights",
    "learning_quality_score",
)
# run fields of multi-feature runs and preprocessing steps (worker/multi_run.py, docs/api.md)
MULTI_RUN_KEYS = (
    "multi_feature_strategy",
    "feature_dimensions",
    "feature_weights_used",
    "learned_weights",
    "learning_quality_score",
    "weight_learning",
    "per_feature",
    "preprocessing",
    "preprocessor_key",
)
_DATES = ("created_at", "updated_at", "last_executed_at", "completed_at")


def safe_number(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# leaves clean() returns as they are: skipping the call for them halves its cost on a run
_PLAIN = frozenset({str, int, bool, type(None)})


def clean(value: Any) -> Any:
    """No NaN/Infinity ever leaves the server."""
    if isinstance(value, dict):
        return {k: v if type(v) in _PLAIN else clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [v if type(v) in _PLAIN else clean(v) for v in value]
    return safe_number(value)


def cluster_metadata(doc: dict[str, Any]) -> dict[str, Any]:
    out = {k: doc[k] for k in _METADATA_KEYS if doc.get(k) is not None}
    out.setdefault("input_collections", [])
    for k in _DATES:
        if doc.get(k) is not None:
            out[k] = iso(doc[k])
    return clean(out)  # type: ignore[no-any-return]


def cluster_model(doc: dict[str, Any]) -> dict[str, Any]:
    """PATCH answers ClusterModel: ClusterMetadata plus the create-request echoes."""
    out = cluster_metadata(doc)
    out["collection_ids"] = doc.get("input_collections") or None
    if doc.get("vector_config"):
        vc = {k: v for k, v in doc["vector_config"].items() if k != "algorithm" and v is not None}
        if not sdk_compatible(vc.get("preprocessing_steps") or []):
            # the SDK types these steps as a oneOf of its four models: standardize / pca would not
            # parse; ClusterMetadata's preprocessing_steps (free-form) still carries them all
            vc.pop("preprocessing_steps")
        out["vector_config"] = vc
    if doc.get("attribute_config"):
        out["attribute_config"] = {k: v for k, v in doc["attribute_config"].items() if v is not None}
    out["task_id"] = doc.get("last_execution_task_id")
    if doc.get("num_clusters") is not None:
        out["cluster_stats"] = {
            "num_clusters": int(doc["num_clusters"]),
            "silhouette_score": (doc.get("quality_metrics") or {}).get("silhouette_score"),
        }
    return {k: v for k, v in out.items() if v is not None}


def centroid_out(c: dict[str, Any], include_vectors: bool) -> dict[str, Any]:
    out = {k: v for k, v in c.items() if k != "centroid_vector" and v is not None}
    if include_vectors and c.get("centroid_vector") is not None:
        out["centroid_vector"] = [float(x) for x in decode(c["centroid_vector"])]
    return out


def execution_result(
    run: dict[str, Any], *, include_vectors: bool = False, full: bool = True
) -> dict[str, Any]:
    status = run["status"]
    out: dict[str, Any] = {
        "run_id": run["run_id"],
        "cluster_id": run["cluster_id"],
        "status": status,
        "num_clusters": int(run.get("num_clusters") or 0),
        "num_points": int(run.get("num_points") or 0),
        "created_at": iso(run["created_at"]),
        "mode": run.get("mode", "full"),
        "task_id": run.get("task_id"),
        "algorithm": run.get("config", {}).get("algorithm"),
        "progress": run.get("progress"),
        "attempts": int(run.get("attempts") or 0),
    }
    for k in ("started_at", "completed_at"):
        if run.get(k) is not None:
            out[k] = iso(run[k])
    passed_through = ("params_used", "sampling", "reduction", "hierarchy_relationships", "hierarchy")
    for k in (*passed_through, *MULTI_RUN_KEYS):
        if run.get(k) is not None:
            out[k] = run[k]
    for k in (
        "noise_points",
        "source_documents",
        "vectors_retrieved",
        "vectors_clustered",
        "index_gap",
        "pipeline_drop",
        "execution_time_ms",
        "dimensions",
    ):
        if run.get(k) is not None:
            out[k] = int(run[k])
    if status == RunStatus.COMPLETED:
        out["metrics"] = run.get("metrics") or {}
        out["centroids"] = [centroid_out(c, include_vectors) for c in run.get("centroids") or []]
        for k in ("parquet_path", "members_key"):
            if run.get(k):
                out[k] = run[k]
    if status == RunStatus.FAILED:
        out["error_message"] = run.get("error_message") or "run failed"
        out["failure_category"] = run.get("failure_category") or "unknown"
        if full and run.get("error_traceback"):
            out["error_traceback"] = run["error_traceback"]
    for k in ("layout_stability_applied", "layout_stability_reason"):  # worker/layout_stage.py
        if run.get(k):
            out[k] = run[k]
    if run.get("run_name"):
        out["run_name"] = run["run_name"]
    if run.get("label_overrides"):
        out["label_overrides"] = run["label_overrides"]
    if run.get("llm_labeling_errors"):
        out["llm_labeling_errors"] = [str(e) for e in run["llm_labeling_errors"]]
    return clean({k: v for k, v in out.items() if v is not None})  # type: ignore[no-any-return]


TASK_STATUS = {
    "pending": "PENDING",
    "processing": "PROCESSING",
    "completed": "COMPLETED",
    "failed": "FAILED",
    "canceled": "CANCELED",
}


def task_response(run: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "task_id": run["task_id"],
        "task_type": "engine_cluster_build",
        "status": TASK_STATUS[run["status"]],
        "inputs": [run["cluster_id"]],
        "outputs": [],
        "additional_data": {
            "cluster_id": run["cluster_id"],
            "run_id": run["run_id"],
            "namespace_id": run["namespace_id"],
            "progress": run.get("progress"),
        },
    }
    if run["status"] == RunStatus.FAILED:
        out["error"] = run.get("error_message") or "run failed"
    return out
