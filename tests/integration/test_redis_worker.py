"""Production topology in one process: Redis broker, a real Celery worker, S3 on moto."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest

from core.store import executions
from tests.conftest import Api

pytestmark = [pytest.mark.integration, pytest.mark.redis]


async def test_run_through_redis_worker_writes_parquet_to_s3(redis_api: Api) -> None:
    col, X = await redis_api.make_collection()
    cid = await redis_api.make_cluster(col)
    run = await redis_api.execute(cid)
    assert run["status"] == "completed", run
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1")
    body = s3.get_object(Bucket="clusterd-test", Key=run["members_key"])["Body"].read()
    table = pq.read_table(io.BytesIO(body))
    assert table.num_rows == len(X)
    assert set(table.column("cluster_id").to_pylist()) == {c["cluster_id"] for c in run["centroids"]}
    clusters_table = pq.read_table(
        io.BytesIO(s3.get_object(Bucket="clusterd-test", Key=run["parquet_path"])["Body"].read())
    )
    assert clusters_table.num_rows == 3
    health = (await redis_api.client.get("/v1/health")).json()
    assert health["status"] == "ok", health


async def test_duplicate_delivery_is_harmless(redis_api: Api) -> None:
    """A second message for the same run id finds it no longer pending and exits."""
    col, _ = await redis_api.make_collection()
    cid = await redis_api.make_cluster(col)
    first = await redis_api.execute(cid)
    run_id = first["run_id"]
    svc = redis_api.app.state.services
    from worker.app import enqueue

    enqueue(svc.celery, run_id, svc.settings.queue_name)
    # a fresh run queued after the duplicate completes too, so the worker is past the duplicate
    await redis_api.execute(cid)
    again = await executions.get(svc.db, run_id=run_id)
    assert again is not None
    assert again["attempts"] == 1 and again["status"] == "completed"
    assert again["completed_at"].replace(tzinfo=None) == executions_completed(first)


def executions_completed(run: dict) -> object:
    from datetime import datetime

    return datetime.strptime(run["completed_at"], "%Y-%m-%dT%H:%M:%S.%fZ")


async def test_broker_down_fails_the_run_with_503(make_settings, s3_settings) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import serve_asgi

    settings = make_settings(broker_url="redis://127.0.0.1:1/0", embedded_worker=False, **s3_settings)
    async with serve_asgi(settings) as a:
        col, _ = await a.make_collection()
        cid = await a.make_cluster(col)
        r = await a.client.post(f"/v1/clusters/{cid}/execute", headers=a.h())
        assert r.status_code == 503 and r.json()["error"]["type"] == "service_unavailable"
        run_id = r.json()["error"]["details"]["run_id"]
        run = (await a.client.get(f"/v1/clusters/{cid}/executions/{run_id}", headers=a.h())).json()
        assert run["status"] == "failed" and run["failure_category"] == "infrastructure"
        health = (await a.client.get("/v1/health")).json()
        assert health["status"] == "degraded" and health["checks"]["broker"]["status"] == "error"
        # health needs no key: the broker's address never appears in it
        assert "127.0.0.1" not in json.dumps(health) and "redis://" not in json.dumps(health)
