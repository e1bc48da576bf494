"""Cluster analytics: a cluster's run history and its failures over the last `hours`."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import NamespaceDep, ServicesDep
from api.schemas.errors import V1, error_responses
from api.schemas.run_actions import execution_metric, failure_metric, history_summary
from core.store import clusters, run_analytics
from core.timeutil import iso, utcnow

router = APIRouter(responses=error_responses(*V1))

MAX_FAILURES = 1000
Hours = Annotated[int, Query(ge=1, le=720, description="hours of history")]


def _window(hours: int) -> tuple[Any, Any]:
    end = utcnow()
    return end - timedelta(hours=hours), end


@router.get("/v1/analytics/clusters/{cluster_id}/execution-history")
async def execution_history(
    cluster_id: str,
    svc: ServicesDep,
    ns: NamespaceDep,
    hours: Hours = 24,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    cid = await clusters.resolve_id(svc.db, ns=ns, ident=cluster_id)
    start, end = _window(hours)
    runs = await run_analytics.history(svc.db, ns=ns, cluster_id=cid, since=start, until=end, limit=limit)
    groups = await run_analytics.history_summary(svc.db, ns=ns, cluster_id=cid, since=start, until=end)
    return {
        "cluster_id": cid,
        "time_range": {"start": iso(start), "end": iso(end)},
        "results": [execution_metric(r) for r in runs],
        "summary": history_summary(groups),
    }


@router.get("/v1/analytics/clusters/{cluster_id}/failures")
async def failure_analysis(
    cluster_id: str, svc: ServicesDep, ns: NamespaceDep, hours: Hours = 24
) -> dict[str, Any]:
    cid = await clusters.resolve_id(svc.db, ns=ns, ident=cluster_id)
    start, end = _window(hours)
    runs, total = await run_analytics.failures(
        svc.db, ns=ns, cluster_id=cid, since=start, until=end, limit=MAX_FAILURES
    )
    return {
        "cluster_id": cid,
        "time_range": {"start": iso(start), "end": iso(end)},
        "failures": [failure_metric(r) for r in runs],
        "total_failures": total,
    }
