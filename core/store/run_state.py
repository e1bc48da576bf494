"""Run state changes that must also show on the cluster (its status mirrors its newest run)."""

from __future__ import annotations

from typing import Any

from core.models import RUN_TO_CLUSTER_STATUS, RunStatus
from core.store import clusters, executions
from core.store.db import Database


async def mirror(
    db: Database, run: dict[str, Any], status: RunStatus, extra: dict[str, Any] | None = None
) -> None:
    await clusters.mirror_run(
        db,
        ns=run["namespace_id"],
        cluster_id=run["cluster_id"],
        run_id=run["run_id"],
        fields={"status": RUN_TO_CLUSTER_STATUS[status].value, **(extra or {})},
    )


async def fail(
    db: Database,
    *,
    run_id: str,
    message: str,
    category: str,
    attempt: int | None = None,
    tb: str | None = None,
) -> dict[str, Any] | None:
    """Fail the run (fenced to `attempt` when given, else any active run) and its cluster summary."""
    fields: dict[str, Any] = {"error_message": message, "failure_category": category}
    if tb:
        fields["error_traceback"] = tb
    run = await executions.fail(db, run_id=run_id, fields=fields, attempt=attempt)
    if run is not None:
        await mirror(
            db,
            run,
            RunStatus.FAILED,
            {"error": message, "failure_category": category, "completed_at": run.get("completed_at")},
        )
    return run
