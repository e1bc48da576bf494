"""Cluster analytics over real runs: execution history (with its summary) and failure analysis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import Api, blobs, serve_asgi
from tests.e2e.run_helpers import assert_error, start, worker

pytestmark = pytest.mark.e2e

METRIC_KEYS = {
    "execution_id",
    "started_at",
    "duration_seconds",
    "num_documents",
    "num_clusters",
    "status",
    "algorithm",
}


def history_url(cid: str) -> str:
    return f"/v1/analytics/clusters/{cid}/execution-history"


def failures_url(cid: str) -> str:
    return f"/v1/analytics/clusters/{cid}/failures"


def parse_dt(value: str) -> datetime:
    assert isinstance(value, str) and value.endswith("Z"), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


@pytest.fixture
async def history(make_settings: Any) -> AsyncIterator[dict[str, Any]]:
    """One cluster with a canceled, two completed, a failed and a pending run (oldest first)."""
    async with serve_asgi(make_settings(embedded_worker=False)) as api:
        col, X = await api.make_collection()
        cid = await api.make_cluster(col)
        canceled = await start(api, cid)
        r = await api.client.post(f"/v1/clusters/{cid}/executions/{canceled}/cancel", headers=api.h())
        assert r.status_code == 200, r.text
        async with worker(api):
            done1 = await api.execute(cid)
            done2 = await api.execute(cid)
            # more clusters than points: the next run fails validation
            r = await api.client.patch(
                f"/v1/clusters/{cid}", headers=api.h(), json={"algorithm_params": {"n_clusters": 500}}
            )
            assert r.status_code == 200, r.text
            failed = await api.execute(cid)
        pending = await start(api, cid)  # the worker is gone: it stays pending
        assert done1["status"] == done2["status"] == "completed" and failed["status"] == "failed"
        yield {
            "api": api,
            "cid": cid,
            "n": len(X),
            "runs": {
                "canceled": canceled,
                "done1": done1["run_id"],
                "done2": done2["run_id"],
                "failed": failed["run_id"],
                "pending": pending,
            },
            "done": (done1, done2),
            "failed": failed,
        }


async def test_execution_history_fields_and_summary(history: dict[str, Any]) -> None:
    api: Api = history["api"]
    cid, runs, n = history["cid"], history["runs"], history["n"]
    r = await api.client.get(history_url(cid), headers=api.h())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["cluster_id"] == cid
    start, end = parse_dt(body["time_range"]["start"]), parse_dt(body["time_range"]["end"])
    assert end - start == timedelta(hours=24)
    results = body["results"]
    # newest first
    assert [x["execution_id"] for x in results] == [
        runs["pending"],
        runs["failed"],
        runs["done2"],
        runs["done1"],
        runs["canceled"],
    ]
    by_id = {x["execution_id"]: x for x in results}
    for x in results:
        assert set(x) == METRIC_KEYS
        assert is_int(x["num_documents"]) and is_int(x["num_clusters"]) and is_number(x["duration_seconds"])
        assert x["duration_seconds"] >= 0 and x["algorithm"] == "kmeans"
        assert start <= parse_dt(x["started_at"]) <= end
    for key, done in zip(("done1", "done2"), history["done"], strict=True):
        x = by_id[runs[key]]
        assert x["status"] == "completed" and x["num_documents"] == n and x["num_clusters"] == 3
        assert x["duration_seconds"] == pytest.approx(done["execution_time_ms"] / 1000)
        assert x["started_at"] == done["started_at"]
    failed = by_id[runs["failed"]]
    assert failed["status"] == "failed" and failed["num_documents"] == 0 and failed["num_clusters"] == 0
    f = history["failed"]
    assert failed["duration_seconds"] == pytest.approx(
        (parse_dt(f["completed_at"]) - parse_dt(f["started_at"])).total_seconds()
    )
    for key in ("canceled", "pending"):
        x = by_id[runs[key]]
        assert x["status"] == key and x["duration_seconds"] == 0
    # never started: started_at is the creation time
    got = (await api.client.get(f"/v1/clusters/{cid}/executions/{runs['canceled']}", headers=api.h())).json()
    assert by_id[runs["canceled"]]["started_at"] == got["created_at"]

    s = body["summary"]
    assert s["total_executions"] == 5
    assert s["executions_by_status"] == {"canceled": 1, "completed": 2, "failed": 1, "pending": 1}
    assert s["success_rate"] == pytest.approx(2 / 4)  # of the finished runs
    assert s["total_documents_clustered"] == 2 * n and is_int(s["total_documents_clustered"])
    measured = [by_id[runs[k]]["duration_seconds"] for k in ("done1", "done2", "failed")]
    assert s["avg_duration_seconds"] == pytest.approx(sum(measured) / 3, abs=1e-3)


async def test_history_limit_and_window(history: dict[str, Any]) -> None:
    api: Api = history["api"]
    cid, runs = history["cid"], history["runs"]
    r = await api.client.get(history_url(cid), params={"limit": 2}, headers=api.h())
    body = r.json()
    assert [x["execution_id"] for x in body["results"]] == [runs["pending"], runs["failed"]]
    assert body["summary"]["total_executions"] == 5  # over the whole window, not the page

    # a run created two days ago: outside 24 h, inside 72 h
    db = api.app.state.services.db
    old = await db.cluster_executions.find_one({"run_id": runs["done1"]}, {"_id": 0})
    created = datetime.now(UTC) - timedelta(hours=48)
    old.update(
        run_id="run_00000000000000aa",
        task_id="task_old",
        created_at=created,
        started_at=created,
        completed_at=created + timedelta(seconds=5),
        execution_time_ms=5000,
    )
    await db.cluster_executions.insert_one(old)
    body = (await api.client.get(history_url(cid), headers=api.h())).json()
    assert "run_00000000000000aa" not in [x["execution_id"] for x in body["results"]]
    assert body["summary"]["total_executions"] == 5
    body = (await api.client.get(history_url(cid), params={"hours": 72}, headers=api.h())).json()
    assert body["results"][-1]["execution_id"] == "run_00000000000000aa"
    assert body["results"][-1]["duration_seconds"] == 5.0
    assert body["summary"]["total_executions"] == 6
    assert body["summary"]["executions_by_status"]["completed"] == 3
    assert body["summary"]["total_documents_clustered"] == 3 * history["n"]
    # by name too
    name = (await api.client.get(f"/v1/clusters/{cid}", headers=api.h())).json()["cluster_name"]
    assert (await api.client.get(history_url(name), headers=api.h())).json()["cluster_id"] == cid


async def test_failure_analysis(history: dict[str, Any]) -> None:
    api: Api = history["api"]
    cid, runs, failed = history["cid"], history["runs"], history["failed"]
    body = (await api.client.get(failures_url(cid), headers=api.h())).json()
    assert body["cluster_id"] == cid and body["total_failures"] == 1
    assert parse_dt(body["time_range"]["end"]) - parse_dt(body["time_range"]["start"]) == timedelta(hours=24)
    assert body["failures"] == [
        {
            "timestamp": failed["completed_at"],
            "execution_id": runs["failed"],
            "error_message": failed["error_message"],
            "error_type": "validation",
        }
    ]
    # older failures: one in the window without a category, one outside it
    db = api.app.state.services.db
    stored = await db.cluster_executions.find_one({"run_id": runs["failed"]})
    now = datetime.now(UTC)
    for rid, age in (("run_00000000000000f1", 2), ("run_00000000000000f2", 30)):
        await db.cluster_executions.insert_one(
            {
                "run_id": rid,
                "task_id": f"task_{rid}",
                "namespace_id": stored["namespace_id"],
                "cluster_id": cid,
                "status": "failed",
                "num_clusters": 0,
                "num_points": 0,
                "created_at": now - timedelta(hours=age),
                "completed_at": now - timedelta(hours=age) + timedelta(seconds=1),
                "error_message": "boom",
                "error_traceback": "Traceback …",
                "config": {"algorithm": "kmeans"},
            }
        )
    body = (await api.client.get(failures_url(cid), headers=api.h())).json()
    assert body["total_failures"] == 2
    assert [f["execution_id"] for f in body["failures"]] == [runs["failed"], "run_00000000000000f1"]
    assert body["failures"][1]["error_type"] == "unknown" and body["failures"][1]["error_message"] == "boom"
    body = (await api.client.get(failures_url(cid), params={"hours": 48}, headers=api.h())).json()
    assert body["total_failures"] == 3 and len(body["failures"]) == 3
    hist = (await api.client.get(history_url(cid), params={"hours": 48}, headers=api.h())).json()
    assert hist["summary"]["executions_by_status"]["failed"] == 3


async def test_analytics_errors(api: Api) -> None:
    col, _ = await api.make_collection(X=blobs(n_per=5))
    cid = await api.make_cluster(col)
    # a cluster that never ran
    body = (await api.client.get(history_url(cid), headers=api.h())).json()
    assert body["results"] == [] and body["summary"]["total_executions"] == 0
    assert body["summary"]["success_rate"] == 0.0 and body["summary"]["avg_duration_seconds"] == 0.0
    body = (await api.client.get(failures_url(cid), headers=api.h())).json()
    assert body["failures"] == [] and body["total_failures"] == 0
    for params in ({"hours": 0}, {"hours": 721}, {"limit": 0}, {"limit": 1001}, {"hours": "x"}):
        assert_error(
            await api.client.get(history_url(cid), params=params, headers=api.h()), 422, "validation_error"
        )
    for params in ({"hours": 0}, {"hours": 721}):
        assert_error(
            await api.client.get(failures_url(cid), params=params, headers=api.h()), 422, "validation_error"
        )
    ok = await api.client.get(history_url(cid), params={"hours": 720, "limit": 1000}, headers=api.h())
    assert ok.status_code == 200
    for url in (history_url("clust_nope"), failures_url("clust_nope")):
        assert_error(await api.client.get(url, headers=api.h()), 404, "not_found")
    for url in (history_url(cid), failures_url(cid)):
        assert_error(await api.client.get(url, headers=api.h("team-b")), 404, "not_found")
        headers = {"Authorization": api.h()["Authorization"]}
        assert_error(await api.client.get(url, headers=headers), 400, "bad_request", "namespace_required")
