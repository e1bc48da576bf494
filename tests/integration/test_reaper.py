"""A run whose worker died (heartbeat stopped) is requeued, then failed as orphaned after max attempts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from api.reaper import reap_once
from core.ids import new_run_id, new_task_id
from core.timeutil import utcnow
from tests.conftest import Api

pytestmark = pytest.mark.integration


async def _processing_run(api: Api, cluster_id: str, *, attempts: int, silent_for: float) -> str:
    """A run as a dead worker leaves it: processing, heartbeat `silent_for` seconds old."""
    svc = api.app.state.services
    template = await svc.db.cluster_executions.find_one({"cluster_id": cluster_id}, {"_id": 0})
    run_id = new_run_id()
    beat = utcnow() - timedelta(seconds=silent_for)
    await svc.db.cluster_executions.insert_one(
        {
            "run_id": run_id,
            "task_id": new_task_id(),
            "namespace_id": template["namespace_id"],
            "cluster_id": cluster_id,
            "mode": "full",
            "config": template["config"],
            "status": "processing",
            "num_clusters": 0,
            "num_points": 0,
            "attempts": attempts,
            "created_at": beat,
            "started_at": beat,
            "heartbeat_at": beat,
            "progress": {"stage": "fit", "fraction": 0.5},
        }
    )
    await svc.db.clusters.update_one({"cluster_id": cluster_id}, {"$set": {"last_run_id": run_id}})
    return run_id


async def test_stale_run_is_requeued_and_completes(api: Api) -> None:
    col, _ = await api.make_collection()
    cid = await api.make_cluster(col)
    await api.execute(cid)
    dead = await _processing_run(api, cid, attempts=1, silent_for=3600)
    alive = await _processing_run(api, cid, attempts=1, silent_for=1)
    counts = await reap_once(api.app.state.services)
    assert counts == {"requeued": 1, "orphaned": 0, "republished": 0, "skipped": 0}
    run = await api.wait_run(cid, dead)
    assert run["status"] == "completed" and run["attempts"] == 2
    untouched = (await api.client.get(f"/v1/clusters/{cid}/executions/{alive}", headers=api.h())).json()
    assert untouched["status"] == "processing" and untouched["attempts"] == 1


async def test_run_out_of_attempts_fails_as_orphaned(api: Api) -> None:
    col, _ = await api.make_collection()
    cid = await api.make_cluster(col)
    await api.execute(cid)
    dead = await _processing_run(api, cid, attempts=3, silent_for=3600)
    assert await reap_once(api.app.state.services) == {
        "requeued": 0,
        "orphaned": 1,
        "republished": 0,
        "skipped": 0,
    }
    run = (await api.client.get(f"/v1/clusters/{cid}/executions/{dead}", headers=api.h())).json()
    assert run["status"] == "failed" and run["failure_category"] == "orphaned"
    assert "no heartbeat" in run["error_message"]
    cluster = (await api.client.get(f"/v1/clusters/{cid}", headers=api.h())).json()
    assert cluster["status"] == "FAILED" and cluster["failure_category"] == "orphaned"
    assert await reap_once(api.app.state.services) == {
        "requeued": 0,
        "orphaned": 0,
        "republished": 0,
        "skipped": 0,
    }
