"""Bodies of the run management routes (labels, name) and the analytics wire shapes."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from core.models import RunStatus
from core.timeutil import aware, iso

MAX_LABEL = 200
MAX_RUN_NAME = 120

Label = Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_LABEL)]


class LabelsPatch(BaseModel):
    """`{labels: {cl_id: label}}`: values trimmed, "" deletes that override; other keys are ignored."""

    model_config = ConfigDict(extra="ignore")
    labels: dict[str, Label] = Field(min_length=1)


class RunNamePatch(BaseModel):
    """`{run_name}`: trimmed; "" clears the name."""

    model_config = ConfigDict(extra="ignore")
    run_name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_RUN_NAME)]


_UNFINISHED = (RunStatus.PENDING.value, RunStatus.PROCESSING.value)


def duration_seconds(run: dict[str, Any]) -> float:
    """execution_time_ms for finished runs, else completed_at - started_at; 0 while unfinished."""
    if run["status"] in _UNFINISHED:
        return 0.0
    if run.get("execution_time_ms") is not None:
        return float(run["execution_time_ms"]) / 1000.0
    started, completed = aware(run.get("started_at")), aware(run.get("completed_at"))
    if started is None or completed is None:
        return 0.0
    return max(0.0, (completed - started).total_seconds())


def execution_metric(run: dict[str, Any]) -> dict[str, Any]:
    """ClusterExecutionMetric: every key required by the SDK, ints as ints."""
    return {
        "execution_id": run["run_id"],
        "started_at": iso(run.get("started_at") or run["created_at"]),
        "duration_seconds": duration_seconds(run),
        "num_documents": int(run.get("num_points") or 0),
        "num_clusters": int(run.get("num_clusters") or 0),
        "status": str(run["status"]),
        "algorithm": str((run.get("config") or {}).get("algorithm") or "unknown"),
    }


def history_summary(groups: list[dict[str, Any]]) -> dict[str, Any]:
    """From the per-status `$group` rows: success_rate = completed / finished runs,
    avg_duration_seconds over the runs with a measured duration."""
    by_status = {str(g["_id"]): int(g["count"]) for g in groups}
    total = sum(by_status.values())
    finished = sum(n for s, n in by_status.items() if s not in _UNFINISHED)
    timed = sum(int(g.get("timed") or 0) for g in groups)
    duration_ms = sum(float(g.get("duration_ms") or 0) for g in groups)
    return {
        "total_executions": total,
        "executions_by_status": by_status,
        "success_rate": by_status.get(RunStatus.COMPLETED.value, 0) / finished if finished else 0.0,
        "avg_duration_seconds": duration_ms / timed / 1000.0 if timed else 0.0,
        "total_documents_clustered": int(sum(float(g.get("documents") or 0) for g in groups)),
    }


def failure_metric(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "timestamp": iso(run.get("completed_at") or run["created_at"]),
        "execution_id": run["run_id"],
        "error_message": str(run.get("error_message") or "run failed"),
        "error_type": str(run.get("failure_category") or "unknown"),
    }
