"""S3 failing under a real worker (moto over HTTP, faults injected on the wire by tests.s3_faults):
a run ends `failed` / `infrastructure` with a readable message, never `completed` pointing at
files that are not there, and leaves no partial artifacts; a short outage is retried through."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from core import artifacts
from core.store import executions
from tests.conftest import ADMIN_KEY, Api, serve_asgi
from tests.e2e.run_helpers import assert_error, get_cluster, start
from tests.s3_faults import FaultyS3, faulty_s3

pytestmark = pytest.mark.integration


@pytest.fixture
def s3() -> Iterator[FaultyS3]:
    with faulty_s3(f"faults-{uuid.uuid4().hex[:10]}") as s:
        yield s


@pytest.fixture
async def api_s3(make_settings: Any, s3: FaultyS3) -> AsyncIterator[Api]:
    async with serve_asgi(make_settings(**s3.settings())) as a:
        yield a


async def ns_id(api: Api) -> str:
    r = await api.client.get("/v1/namespaces/team-a", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    return str(r.json()["namespace_id"])


async def new_cluster(api: Api, name: str = "points") -> str:
    col, _ = await api.make_collection(name=name, prefix=name)
    return await api.make_cluster(col)


async def assert_failed_cleanly(api: Api, s3: FaultyS3, cid: str, run: dict[str, Any], *words: str) -> None:
    """failed/infrastructure, readable, mirrored on the cluster, and nothing left to find."""
    assert run["status"] == "failed", run
    assert run["failure_category"] == "infrastructure", run
    message = run["error_message"]
    assert message.startswith("artifact store: put s3://"), message
    assert any(w in message for w in words), message
    assert run.get("parquet_path") is None and run.get("members_key") is None
    cluster = await get_cluster(api, cid)
    assert cluster["status"] == "FAILED" and cluster["failure_category"] == "infrastructure"
    assert cluster["error"] == message
    latest = (await api.client.get(f"/v1/clusters/{cid}/executions", headers=api.h())).json()
    assert latest["run_id"] == run["run_id"] and latest["status"] == "failed"
    export = await api.client.get(f"/v1/clusters/{cid}/executions/{run['run_id']}/export", headers=api.h())
    assert_error(export, 404, "not_found")
    assert s3.keys(artifacts.run_prefix(await ns_id(api), cid, run["run_id"])) == []


async def test_missing_bucket_fails_the_run(make_settings: Any, s3: FaultyS3) -> None:
    settings = make_settings(**(s3.settings() | {"s3_bucket": f"missing-{uuid.uuid4().hex[:8]}"}))
    async with serve_asgi(settings) as a:
        cid = await new_cluster(a)
        run = await a.execute(cid)
        assert "NoSuchBucket" in run["error_message"], run
        assert run["status"] == "failed" and run["failure_category"] == "infrastructure"
        cluster = await get_cluster(a, cid)
        assert cluster["status"] == "FAILED" and cluster["failure_category"] == "infrastructure"


async def test_endpoint_gone_while_saving_fails_the_run(api_s3: Api, s3: FaultyS3) -> None:
    cid = await new_cluster(api_s3)
    s3.proxy.hold_puts()
    rid = await start(api_s3, cid)
    assert await asyncio.to_thread(s3.proxy.holding.wait, 60), "the worker never started saving"
    saving = await executions.get(api_s3.app.state.services.db, run_id=rid)
    assert saving is not None and saving["status"] == "processing" and saving["finalizing"] is True
    s3.stop_moto()
    s3.proxy.cut()  # the endpoint is unreachable: open connections die, new ones are refused
    s3.proxy.release()
    run = await api_s3.wait_run(cid, rid)
    s3.start_moto()
    s3.proxy.restore()
    await assert_failed_cleanly(api_s3, s3, cid, run, "Connection", "connection", "closed")
    # S3 is back: the next run completes
    again = await api_s3.execute(cid)
    assert again["status"] == "completed", again
    assert len(s3.keys(artifacts.run_prefix(await ns_id(api_s3), cid, again["run_id"]))) == 3  # + layout.npz


async def test_failure_after_the_first_artifact_leaves_no_partial_files(api_s3: Api, s3: FaultyS3) -> None:
    cid = await new_cluster(api_s3)
    s3.proxy.drop_puts_after = 1  # clusters.parquet lands, every members.parquet attempt is dropped
    run = await api_s3.execute(cid)
    assert s3.proxy.puts >= 2
    await assert_failed_cleanly(api_s3, s3, cid, run, "members.parquet")


async def test_short_outage_is_retried_and_the_run_completes(api_s3: Api, s3: FaultyS3) -> None:
    cid = await new_cluster(api_s3)
    s3.proxy.drop_connections = 2  # the first two connection attempts are cut; tenacity tries a third
    run = await api_s3.execute(cid)
    assert run["status"] == "completed", run
    assert s3.proxy.drop_connections == 0
    stored = await executions.get(api_s3.app.state.services.db, run_id=run["run_id"])
    assert stored is not None and stored["attempts"] == 1
    keys = s3.keys(artifacts.run_prefix(await ns_id(api_s3), cid, run["run_id"]))
    assert sorted(k.rsplit("/", 1)[1] for k in keys) == ["clusters.parquet", "layout.npz", "members.parquet"]
    assert run["members_key"] in keys and run["parquet_path"] in keys


async def test_deleting_a_cluster_while_its_run_saves_leaves_no_files(api_s3: Api, s3: FaultyS3) -> None:
    cid = await new_cluster(api_s3)
    other = await new_cluster(api_s3, "later")
    s3.proxy.hold_puts()
    rid = await start(api_s3, cid)
    assert await asyncio.to_thread(s3.proxy.holding.wait, 60), "the worker never started saving"
    r = await api_s3.client.delete(f"/v1/clusters/{cid}", headers=api_s3.h())
    assert r.status_code == 200 and r.json()["deleted_executions"] == 1, r.text
    s3.proxy.release()  # the saving run's uploads land after the purge removed the cluster's files
    # the embedded worker runs one job at a time: once a later run completes, the first is done
    assert (await api_s3.execute(other))["status"] == "completed"
    assert s3.proxy.puts >= 4
    assert s3.keys(artifacts.cluster_prefix(await ns_id(api_s3), cid)) == []
    assert (await api_s3.client.get(f"/v1/clusters/{cid}", headers=api_s3.h())).status_code == 404
    assert await executions.get(api_s3.app.state.services.db, run_id=rid) is None
