"""Wire enums shared by api, worker and store."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """Execution (run) status: lowercase on the wire."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELED)


class ClusterStatus(StrEnum):
    """Cluster `status` and TaskResponse `status`: the SDK's UPPERCASE TaskStatusEnum subset we use."""

    PENDING = "PENDING"
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


RUN_TO_CLUSTER_STATUS = {
    RunStatus.PENDING: ClusterStatus.QUEUED,
    RunStatus.PROCESSING: ClusterStatus.PROCESSING,
    RunStatus.COMPLETED: ClusterStatus.COMPLETED,
    RunStatus.FAILED: ClusterStatus.FAILED,
    RunStatus.CANCELED: ClusterStatus.CANCELED,
}


class FailureCategory(StrEnum):
    TIMEOUT = "timeout"
    INFRASTRUCTURE = "infrastructure"
    ORPHANED = "orphaned"
    PIPELINE = "pipeline"
    MVS_DURABILITY = "mvs_durability"
    VALIDATION = "validation"
    UNKNOWN = "unknown"


class ClusteringAlgorithm(StrEnum):
    KMEANS = "kmeans"
    DBSCAN = "dbscan"
    HDBSCAN = "hdbscan"
    AGGLOMERATIVE = "agglomerative"
    SPECTRAL = "spectral"
    GAUSSIAN_MIXTURE = "gaussian_mixture"
    MEAN_SHIFT = "mean_shift"
    OPTICS = "optics"
    LEIDEN = "leiden"
    EVOC = "evoc"
    ATTRIBUTE_BASED = "attribute_based"
    AUTO = "auto"
