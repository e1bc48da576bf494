"""Run management over HTTP with the real worker: cancel, export, label overrides, run name."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pyarrow.parquet as pq
import pytest

from core import artifacts
from core.pipeline import RunCanceled
from core.store import executions
from tests.conftest import ADMIN_KEY, Api, blobs, serve_asgi
from tests.e2e.run_helpers import assert_error, get_cluster, get_run, start, wait_status, worker
from worker import runtime
from worker.attribute_run import run_attribute
from worker.execution import execute_run
from worker.stages import Progress
from worker.vector_run import run_vector

pytestmark = pytest.mark.e2e

# vector runs have a 2-D layout by default: the export carries its coordinates
HEADER = ["document_id", "collection_id", "cluster_id", "cluster_label", "distance_to_centroid", "x", "y"]


@pytest.fixture
async def idle_api(make_settings: Any) -> AsyncIterator[Api]:
    """Embedded store and memory broker, but no worker: runs stay pending until a test starts one."""
    async with serve_asgi(make_settings(embedded_worker=False)) as a:
        yield a


def prefix_of(run: dict[str, Any], ns_id: str) -> str:
    return artifacts.run_prefix(ns_id, run["cluster_id"], run["run_id"])


async def ns_id(api: Api, ns: str = "team-a") -> str:
    r = await api.client.get(f"/v1/namespaces/{ns}", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert r.status_code == 200, r.text
    return str(r.json()["namespace_id"])


async def completed(api: Api, k: int = 3, X: np.ndarray | None = None, **extra: Any) -> tuple[str, dict]:
    col, _ = await api.make_collection(X=X)
    cid = await api.make_cluster(col, k=k, **extra)
    run = await api.execute(cid)
    assert run["status"] == "completed", run
    return cid, run


def cancel_url(cid: str, rid: str) -> str:
    return f"/v1/clusters/{cid}/executions/{rid}/cancel"


# ---------------------------------------------------------------------------------------------
# cancel


async def test_cancel_pending_run_never_starts(idle_api: Api) -> None:
    api = idle_api
    col, _ = await api.make_collection()
    cid = await api.make_cluster(col)
    first = await start(api, cid)
    second = await start(api, cid)
    assert (await get_run(api, cid, first))["status"] == "pending"

    r = await api.client.post(cancel_url(cid, first), headers=api.h())
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "run_id": first, "status": "canceled"}
    run = await get_run(api, cid, first)
    assert run["status"] == "canceled" and run["progress"]["stage"] == "canceled"
    assert run["completed_at"].endswith("Z")
    # the cluster mirrors its newest run only: `second` is newer and still queued
    assert (await get_cluster(api, cid))["status"] == "QUEUED"
    r = await api.client.post(cancel_url(cid, second), headers=api.h())
    assert r.status_code == 200, r.text
    assert (await get_cluster(api, cid))["status"] == "CANCELED"

    # a second cancel is refused and names the status
    err = assert_error(
        await api.client.post(cancel_url(cid, first), headers=api.h()), 400, "bad_request", "invalid_state"
    )
    assert "canceled" in err["message"]

    # a delivery of the canceled run does nothing: called directly ...
    rt = runtime.current()
    assert rt is not None
    assert await execute_run(rt, first) == "skipped"
    # ... and through a worker that consumes the queued messages (FIFO, one at a time): once a
    # later run has completed, both canceled messages were consumed before it
    other_col, _ = await api.make_collection(name="other")
    other = await api.make_cluster(other_col)
    async with worker(api):
        done = await api.execute(other)
    assert done["status"] == "completed"
    root = await ns_id(api)
    for rid in (first, second):
        run = await get_run(api, cid, rid)
        assert run["status"] == "canceled" and run["attempts"] == 0 and "started_at" not in run
        assert "centroids" not in run and "metrics" not in run and run["num_clusters"] == 0
        assert not api.app.state.services.artifacts.exists(prefix_of(run, root) + "members.parquet")
    assert (await get_cluster(api, cid))["status"] == "CANCELED"


async def test_cancel_processing_run_stops_at_the_next_stage(api: Api) -> None:
    X = blobs(n_per=700, dims=8, centers=3)
    col, _ = await api.make_collection(X=X)
    # ~4 s of restarts on a quiet machine: long enough to be canceled mid-fit, short enough that the
    # fit (which a cancel cannot interrupt) returns well within the wait below on a loaded one
    slow_params = {"n_clusters": 8, "n_init": 1000, "max_iter": 300, "tol": 0, "init": "random"}
    cid = await api.make_cluster(col, params=slow_params)
    rid = await start(api, cid)
    run = await wait_status(api, cid, rid, {"processing", "completed", "failed", "canceled"})
    assert run["status"] == "processing", "the run must still be clustering when it is canceled"

    r = await api.client.post(cancel_url(cid, rid), headers=api.h())
    assert r.status_code == 200, r.text
    assert (await get_cluster(api, cid))["status"] == "CANCELED"

    # the embedded worker runs one task at a time: when a later run has completed, the canceled
    # run's task has returned
    small, _ = await api.make_collection(name="small", X=blobs(n_per=10))
    small_id = await api.make_cluster(small)
    assert (await api.wait_run(small_id, await start(api, small_id), wait_s=240))["status"] == "completed"

    run = await get_run(api, cid, rid)
    assert run["status"] == "canceled" and run["progress"]["stage"] == "canceled"
    assert run["attempts"] == 1 and "started_at" in run
    for key in ("centroids", "metrics", "members_key", "parquet_path", "execution_time_ms"):
        assert key not in run, key
    assert run["num_clusters"] == 0 and run["num_points"] == 0
    stored = await api.app.state.services.db.cluster_executions.find_one({"run_id": rid})
    assert "finalizing" not in stored and "centroids" not in stored
    store = api.app.state.services.artifacts
    prefix = prefix_of(run, await ns_id(api))
    assert not store.exists(prefix + "members.parquet") and not store.exists(prefix + "clusters.parquet")
    assert (await get_cluster(api, cid))["status"] == "CANCELED"


async def test_canceled_runs_stages_write_nothing(idle_api: Api) -> None:
    """Both kinds of run stop at their first stage boundary once canceled, before any artifact."""
    api = idle_api
    col, _ = await api.make_collection()
    vector = await api.make_cluster(col)
    attribute = (await api.make_attribute_cluster(col, ["i"]))["cluster_id"]
    rt = runtime.current()
    assert rt is not None
    db, store, root = api.app.state.services.db, api.app.state.services.artifacts, await ns_id(api)
    for cid, stages in ((vector, run_vector), (attribute, run_attribute)):
        rid = await start(api, cid)
        assert (await api.client.post(cancel_url(cid, rid), headers=api.h())).status_code == 200
        run = await executions.get(db, run_id=rid)
        assert run is not None
        # a copy of the run that believes it owns attempt 1 (e.g. claimed just before the cancel)
        with pytest.raises(RunCanceled):
            await stages(rt, run, Progress(rt, rid, 1), time.perf_counter())
        after = await get_run(api, cid, rid)
        assert after["status"] == "canceled" and after["progress"]["stage"] == "canceled"
        assert not store.exists(prefix_of(after, root) + "members.parquet")
        assert not store.exists(prefix_of(after, root) + "clusters.parquet")


async def test_cancel_is_refused_once_the_run_is_saving(idle_api: Api) -> None:
    api = idle_api
    col, _ = await api.make_collection()
    cid = await api.make_cluster(col)
    rt = runtime.current()
    assert rt is not None
    db = api.app.state.services.db

    # canceled while processing: the commit point fails, so nothing is saved
    rid = await start(api, cid)
    claimed = await executions.claim(db, run_id=rid, worker="test")
    assert claimed is not None and claimed["status"] == "processing"
    assert (await api.client.post(cancel_url(cid, rid), headers=api.h())).status_code == 200
    with pytest.raises(RunCanceled):
        await Progress(rt, rid, 1).finalize()

    # past the commit point the cancel loses the race, like a cancel of a completed run
    rid = await start(api, cid)
    assert await executions.claim(db, run_id=rid, worker="test") is not None
    await Progress(rt, rid, 1).finalize()
    err = assert_error(
        await api.client.post(cancel_url(cid, rid), headers=api.h()), 400, "bad_request", "invalid_state"
    )
    assert "processing" in err["message"] and "saving" in err["message"]
    assert (await get_run(api, cid, rid))["status"] == "processing"


async def test_cancel_completed_run_and_unknown_runs(api: Api) -> None:
    cid, run = await completed(api)
    rid = run["run_id"]
    err = assert_error(
        await api.client.post(cancel_url(cid, rid), headers=api.h()), 400, "bad_request", "invalid_state"
    )
    assert "completed" in err["message"]
    assert (await get_run(api, cid, rid))["status"] == "completed"
    # by cluster name too
    name = (await get_cluster(api, cid))["cluster_name"]
    assert (await api.client.post(cancel_url(name, rid), headers=api.h())).status_code == 400
    # a run of another cluster, another namespace, or no run at all: 404
    col2, _ = await api.make_collection(name="second")
    other = await api.make_cluster(col2)
    assert_error(await api.client.post(cancel_url(other, rid), headers=api.h()), 404, "not_found")
    assert_error(await api.client.post(cancel_url(cid, rid), headers=api.h("team-b")), 404, "not_found")
    assert_error(await api.client.post(cancel_url(cid, "run_0000"), headers=api.h()), 404, "not_found")
    assert_error(await api.client.post(cancel_url("clust_nope", rid), headers=api.h()), 404, "not_found")


# ---------------------------------------------------------------------------------------------
# export


def export_url(cid: str, rid: str) -> str:
    return f"/v1/clusters/{cid}/executions/{rid}/export"


def members_of(api: Api, run: dict[str, Any]) -> dict[str, Any]:
    table = artifacts.read_table(api.app.state.services.artifacts, run["members_key"])
    return {row["document_id"]: row for row in table.to_pylist()}


async def test_export_parquet_through_the_file_route(api: Api) -> None:
    cid, run = await completed(api)
    rid = run["run_id"]
    r = await api.client.patch(
        f"/v1/clusters/{cid}/executions/{rid}/labels", headers=api.h(), json={"labels": {"cl_0": "Alpha"}}
    )
    assert r.status_code == 200, r.text

    r = await api.client.get(export_url(cid, rid), headers=api.h())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["format"] == "parquet" and body["run_id"] == rid
    assert isinstance(body["expires_in"], int) and body["expires_in"] > 0
    url = urlparse(body["download_url"])
    assert url.scheme == "http" and url.netloc == "clusterd.test"
    assert url.path == f"/v1/clusters/{cid}/executions/{rid}/export/file"
    # the export sits next to the run's other artifacts
    key = prefix_of(run, await ns_id(api)) + "cluster_documents.parquet"
    assert api.app.state.services.artifacts.exists(key)

    assert_error(await api.client.get(url.path), 401, "unauthorized")
    assert_error(await api.client.get(url.path, headers=api.h("team-b")), 404, "not_found")
    f = await api.client.get(body["download_url"], headers=api.h())
    assert f.status_code == 200
    assert f.headers["content-type"].startswith("application/vnd.apache.parquet")
    table = pq.read_table(io.BytesIO(f.content))
    assert table.column_names == HEADER
    rows = table.to_pylist()
    members = members_of(api, run)
    assert len(rows) == run["num_points"] == len(members)
    labels = {c["cluster_id"]: c["label"] for c in run["centroids"]} | {"cl_0": "Alpha"}
    for row in rows:
        m = members[row["document_id"]]
        assert row["collection_id"] == m["collection_id"] and row["cluster_id"] == m["cluster_id"]
        assert row["cluster_label"] == labels[row["cluster_id"]]
        assert row["distance_to_centroid"] == pytest.approx(m["distance_to_centroid"], rel=1e-6)
    assert sum(row["cluster_label"] == "Alpha" for row in rows) == next(
        c["num_members"] for c in run["centroids"] if c["cluster_id"] == "cl_0"
    )


def noisy_points() -> np.ndarray:
    """Three blobs plus a few far-apart points HDBSCAN leaves as noise."""
    rng = np.random.default_rng(1)
    far = rng.normal(0, 1, (6, 8)) * 40
    return np.concatenate([blobs(n_per=30), far.astype(np.float32)])


async def noisy_run(api: Api) -> tuple[str, dict]:
    col, _ = await api.make_collection(X=noisy_points())
    cid = await api.make_cluster(col, method="hdbscan", params={"min_cluster_size": 10})
    run = await api.execute(cid)
    assert run["status"] == "completed" and run["noise_points"] > 0, run
    return cid, run


def parse_csv(text: str) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    return list(reader.fieldnames or []), list(reader)


async def test_export_csv_rows_filters_and_noise(api: Api) -> None:
    cid, run = await noisy_run(api)
    rid = run["run_id"]
    r = await api.client.patch(
        f"/v1/clusters/{cid}/executions/{rid}/labels", headers=api.h(), json={"labels": {"cl_1": "Beta"}}
    )
    assert r.status_code == 200, r.text

    r = await api.client.get(export_url(cid, rid), params={"format": "csv"}, headers=api.h())
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    header, rows = parse_csv(r.text)
    assert header == HEADER and len(rows) == run["num_points"]
    noise = [row for row in rows if row["cluster_id"] == ""]
    assert len(noise) == run["noise_points"]
    assert all(row["cluster_label"] == "" and row["distance_to_centroid"] == "" for row in noise)
    members = members_of(api, run)
    for row in rows:
        assert (row["cluster_id"] or None) == members[row["document_id"]]["cluster_id"]
        if row["cluster_id"]:
            assert float(row["distance_to_centroid"]) >= 0
    counts = {c["cluster_id"]: c["num_members"] for c in run["centroids"]}

    by_id = await api.client.get(
        export_url(cid, rid), params={"format": "csv", "cluster_label": "cl_0"}, headers=api.h()
    )
    _, rows0 = parse_csv(by_id.text)
    assert len(rows0) == counts["cl_0"] and {row["cluster_id"] for row in rows0} == {"cl_0"}
    by_label = await api.client.get(
        export_url(cid, rid), params={"format": "csv", "cluster_label": "Beta"}, headers=api.h()
    )
    _, rows1 = parse_csv(by_label.text)
    assert len(rows1) == counts["cl_1"] and {(x["cluster_id"], x["cluster_label"]) for x in rows1} == {
        ("cl_1", "Beta")
    }
    # the machine label of an overridden cluster no longer selects it; another cluster's does
    machine1 = next(
        c["original_label"] for c in (await get_run(api, cid, rid))["centroids"] if c["cluster_id"] == "cl_1"
    )
    assert_error(
        await api.client.get(
            export_url(cid, rid), params={"format": "csv", "cluster_label": machine1}, headers=api.h()
        ),
        422,
        "validation_error",
    )
    label2 = next(c["label"] for c in run["centroids"] if c["cluster_id"] == "cl_2")
    r = await api.client.get(
        export_url(cid, rid), params={"format": "csv", "cluster_label": label2}, headers=api.h()
    )
    assert {row["cluster_id"] for row in parse_csv(r.text)[1]} == {"cl_2"}

    err = assert_error(
        await api.client.get(
            export_url(cid, rid), params={"format": "csv", "cluster_label": "nope"}, headers=api.h()
        ),
        422,
        "validation_error",
    )
    assert "cluster_label" in err["message"]
    assert_error(
        await api.client.get(export_url(cid, rid), params={"format": "xml"}, headers=api.h()),
        422,
        "validation_error",
    )
    assert_error(
        await api.client.get(export_url(cid, rid), params={"cluster_label": "cl_0"}, headers=api.h()),
        422,
        "validation_error",
    )


async def test_export_attribute_run_parent_selects_its_leaves(api: Api) -> None:
    r = await api.client.post("/v1/collections", json={"collection_name": "shop"}, headers=api.h())
    col = r.json()["collection_id"]
    docs = [
        {
            "document_id": f"p{i:03d}",
            "metadata": {"category": ["Food", "Tools"][i % 2], "brand": "XY"[i % 3 % 2]},
        }
        for i in range(12)
    ]
    await api.upsert(col, docs)
    cid = (await api.make_attribute_cluster(col, ["category", "brand"], hierarchical=True))["cluster_id"]
    run = await api.execute(cid)
    assert run["status"] == "completed", run
    rid = run["run_id"]
    counts = {c["cluster_id"]: c["num_members"] for c in run["centroids"]}
    r = await api.client.get(
        export_url(cid, rid), params={"format": "csv", "cluster_label": "cl_food"}, headers=api.h()
    )
    assert r.status_code == 200, r.text
    _, rows = parse_csv(r.text)
    assert len(rows) == counts["cl_food"] == 6
    assert {row["cluster_id"] for row in rows} == {"cl_food_x", "cl_food_y"}
    assert all(row["distance_to_centroid"] == "" for row in rows)  # attribute runs have no distances
    assert {row["cluster_label"] for row in rows} == {"Food / X", "Food / Y"}


async def test_export_csv_row_cap(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from api.routers import run_actions

    cid, run = await completed(api)
    rid = run["run_id"]
    monkeypatch.setattr(run_actions, "CSV_MAX_ROWS", run["num_points"] - 1)
    err = assert_error(
        await api.client.get(export_url(cid, rid), params={"format": "csv"}, headers=api.h()),
        413,
        "payload_too_large",
    )
    assert "parquet" in err["message"]
    # one cluster fits under the cap; parquet has none
    r = await api.client.get(
        export_url(cid, rid), params={"format": "csv", "cluster_label": "cl_0"}, headers=api.h()
    )
    assert r.status_code == 200
    assert (await api.client.get(export_url(cid, rid), headers=api.h())).status_code == 200


async def test_export_404s_say_what_is_missing(api: Api) -> None:
    # a failed run (more clusters than points)
    col, _ = await api.make_collection(name="tiny", X=blobs(n_per=2))
    failed = await api.make_cluster(col, k=50)
    run = await api.execute(failed)
    assert run["status"] == "failed" and run["failure_category"] == "validation"
    err = assert_error(
        await api.client.get(export_url(failed, run["run_id"]), headers=api.h()), 404, "not_found"
    )
    assert "failed" in err["message"] and "completed" in err["message"]

    # an ad-hoc run without save_artifacts
    col2, _ = await api.make_collection(name="adhoc")
    r = await api.client.post(
        "/v1/clusters/execute",
        headers=api.h(),
        json={
            "collection_ids": [col2],
            "config": {
                "algorithm": "kmeans",
                "algorithm_params": {"n_clusters": 3},
                "feature_vector": {"vector_name": "emb"},
            },
        },
    )
    assert r.status_code == 200, r.text
    adhoc = r.json()
    err = assert_error(
        await api.client.get(
            export_url(adhoc["cluster_id"], adhoc["run_id"]), params={"format": "csv"}, headers=api.h()
        ),
        404,
        "not_found",
    )
    assert "no artifacts" in err["message"] and "save_artifacts" in err["message"]

    # the members artifact is gone
    cid, done = await completed(api)
    rid = done["run_id"]
    file_url = export_url(cid, rid) + "/file"
    err = assert_error(await api.client.get(file_url, headers=api.h()), 404, "not_found")
    assert "no parquet export yet" in err["message"]
    api.app.state.services.artifacts.delete_prefix(prefix_of(done, await ns_id(api)))
    for params in ({"format": "csv"}, {"format": "parquet"}):
        err = assert_error(
            await api.client.get(export_url(cid, rid), params=params, headers=api.h()), 404, "not_found"
        )
        assert "members artifact" in err["message"]
    assert_error(await api.client.get(export_url(cid, "run_0000"), headers=api.h()), 404, "not_found")


async def test_export_on_s3_is_a_presigned_url(redis_api: Api) -> None:
    api = redis_api
    cid, run = await completed(api)
    rid = run["run_id"]
    r = await api.client.get(export_url(cid, rid), headers=api.h())
    assert r.status_code == 200, r.text
    body = r.json()
    url = urlparse(body["download_url"])
    key = prefix_of(run, await ns_id(api)) + "cluster_documents.parquet"
    assert url.path.endswith("/cluster_documents.parquet") and key in url.path
    assert "X-Amz-Signature=" in url.query and f"X-Amz-Expires={body['expires_in']}" in url.query
    store = api.app.state.services.artifacts
    assert store.describe() == "s3://clusterd-test"
    table = pq.read_table(io.BytesIO(store.get_bytes(key)))
    assert table.num_rows == run["num_points"] and table.column_names == HEADER
    # the file route serves the same bytes in S3 mode too
    f = await api.client.get(export_url(cid, rid) + "/file", headers=api.h())
    assert f.status_code == 200 and f.content == store.get_bytes(key)
    # cancel with a real broker: the revoke goes out, the cancel of a finished run is still refused
    assert_error(
        await api.client.post(cancel_url(cid, rid), headers=api.h()), 400, "bad_request", "invalid_state"
    )


async def test_cancel_with_a_real_broker_revokes(make_settings: Any) -> None:
    import uuid

    from tests.conftest import REDIS_URL

    settings = make_settings(
        broker_url=REDIS_URL, queue_name=f"clusterd-test-{uuid.uuid4().hex[:8]}", embedded_worker=False
    )
    async with serve_asgi(settings) as api:
        col, _ = await api.make_collection()
        cid = await api.make_cluster(col)
        rid = await start(api, cid)
        r = await api.client.post(cancel_url(cid, rid), headers=api.h())
        assert r.status_code == 200, r.text
        assert (await get_run(api, cid, rid))["status"] == "canceled"


async def test_cancel_does_not_need_the_broker(make_settings: Any) -> None:
    settings = make_settings(broker_url="redis://127.0.0.1:1/0", embedded_worker=False)
    async with serve_asgi(settings) as api:
        col, _ = await api.make_collection()
        cid = await api.make_cluster(col)
        r = await api.client.post(f"/v1/clusters/{cid}/execute", headers=api.h())
        assert r.status_code == 503
        rid = r.json()["error"]["details"]["run_id"]
        # as if it had been queued before the broker went away
        await api.app.state.services.db.cluster_executions.update_one(
            {"run_id": rid}, {"$set": {"status": "pending"}}
        )
        r = await api.client.post(cancel_url(cid, rid), headers=api.h())
        assert r.status_code == 200, r.text
        assert (await get_run(api, cid, rid))["status"] == "canceled"


# ---------------------------------------------------------------------------------------------
# labels


def labels_url(cid: str, rid: str) -> str:
    return f"/v1/clusters/{cid}/executions/{rid}/labels"


async def test_labels_merge_delete_and_show_everywhere(api: Api) -> None:
    cid, run = await completed(api)
    rid = run["run_id"]
    machine = {c["cluster_id"]: c["label"] for c in run["centroids"]}

    r = await api.client.patch(
        labels_url(cid, rid), headers=api.h(), json={"labels": {"cl_0": "  Alpha  ", "cl_1": "Beta"}, "x": 1}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "cluster_id": cid,
        "run_id": rid,
        "label_overrides": {"cl_0": "Alpha", "cl_1": "Beta"},
    }
    r = await api.client.patch(
        labels_url(cid, rid), headers=api.h(), json={"labels": {"cl_1": "", "cl_2": "Gamma"}}
    )
    assert r.json()["label_overrides"] == {"cl_0": "Alpha", "cl_2": "Gamma"}

    got = await get_run(api, cid, rid)
    assert got["label_overrides"] == {"cl_0": "Alpha", "cl_2": "Gamma"}
    shown = {c["cluster_id"]: (c["label"], c["original_label"]) for c in got["centroids"]}
    assert shown == {
        "cl_0": ("Alpha", machine["cl_0"]),
        "cl_1": (machine["cl_1"], machine["cl_1"]),
        "cl_2": ("Gamma", machine["cl_2"]),
    }
    # the centroid vectors survive the rewrite of the centroids array
    rv = await api.client.get(f"/v1/clusters/{cid}/executions/{rid}?include_vectors=true", headers=api.h())
    assert all(len(c["centroid_vector"]) == 8 for c in rv.json()["centroids"])
    # the latest-run route and the list agree
    latest = (await api.client.get(f"/v1/clusters/{cid}/executions", headers=api.h())).json()
    assert {c["cluster_id"]: c["label"] for c in latest["centroids"]}["cl_2"] == "Gamma"
    # the stored centroids carry the current label, so queries on centroids.label see it
    db = api.app.state.services.db
    assert await db.cluster_executions.count_documents({"run_id": rid, "centroids.label": "Gamma"}) == 1
    # the export uses current labels
    r = await api.client.get(export_url(cid, rid), params={"format": "csv"}, headers=api.h())
    labels_in_csv = {(row["cluster_id"], row["cluster_label"]) for row in parse_csv(r.text)[1]}
    assert labels_in_csv == {("cl_0", "Alpha"), ("cl_1", machine["cl_1"]), ("cl_2", "Gamma")}

    # concurrent patches of different clusters all land
    results = await asyncio.gather(
        *(
            api.client.patch(labels_url(cid, rid), headers=api.h(), json={"labels": {f"cl_{i}": f"L{i}"}})
            for i in range(3)
        )
    )
    assert all(x.status_code == 200 for x in results)
    assert (await get_run(api, cid, rid))["label_overrides"] == {"cl_0": "L0", "cl_1": "L1", "cl_2": "L2"}

    # deleting the last override leaves {} and the run omits the key again
    r = await api.client.patch(
        labels_url(cid, rid), headers=api.h(), json={"labels": {"cl_0": "", "cl_1": " ", "cl_2": ""}}
    )
    assert r.json()["label_overrides"] == {}
    got = await get_run(api, cid, rid)
    assert "label_overrides" not in got
    assert {c["cluster_id"]: c["label"] for c in got["centroids"]} == machine
    assert all(isinstance(c["original_label"], str) for c in got["centroids"])


async def test_labels_validation(api: Api) -> None:
    cid, run = await completed(api)
    rid = run["run_id"]
    err = assert_error(
        await api.client.patch(
            labels_url(cid, rid), headers=api.h(), json={"labels": {"cl_0": "A", "cl_99": "B"}}
        ),
        422,
        "validation_error",
    )
    assert "labels.cl_99" in err["message"]
    assert "label_overrides" not in await get_run(api, cid, rid)  # nothing applied
    for body in (
        {"labels": {}},
        {},
        {"labels": {"cl_0": "x" * 201}},
        {"labels": {"cl_0": 5}},
        {"labels": []},
    ):
        assert_error(
            await api.client.patch(labels_url(cid, rid), headers=api.h(), json=body), 422, "validation_error"
        )
    assert_error(await api.client.patch(labels_url(cid, rid), headers=api.h()), 422, "validation_error")
    ok = await api.client.patch(labels_url(cid, rid), headers=api.h(), json={"labels": {"cl_0": "x" * 200}})
    assert ok.status_code == 200
    assert_error(
        await api.client.patch(labels_url(cid, "run_0000"), headers=api.h(), json={"labels": {"cl_0": "A"}}),
        404,
        "not_found",
    )
    # a run that is not completed
    col, _ = await api.make_collection(name="tiny", X=blobs(n_per=2))
    failed = await api.execute(await api.make_cluster(col, k=50))
    assert failed["status"] == "failed"
    err = assert_error(
        await api.client.patch(
            labels_url(failed["cluster_id"], failed["run_id"]),
            headers=api.h(),
            json={"labels": {"cl_0": "A"}},
        ),
        400,
        "bad_request",
        "invalid_state",
    )
    assert "failed" in err["message"]


# ---------------------------------------------------------------------------------------------
# name


async def test_run_name_set_trim_clear(api: Api) -> None:
    cid, run = await completed(api)
    rid = run["run_id"]
    url = f"/v1/clusters/{cid}/executions/{rid}/name"
    assert "run_name" not in run
    r = await api.client.patch(url, headers=api.h(), json={"run_name": "  July baseline  "})
    assert r.status_code == 200, r.text
    assert r.json() == {"cluster_id": cid, "run_id": rid, "run_name": "July baseline"}
    assert (await get_run(api, cid, rid))["run_name"] == "July baseline"
    r = await api.client.patch(url, headers=api.h(), json={"run_name": "x" * 120})
    assert r.status_code == 200 and r.json()["run_name"] == "x" * 120
    err = assert_error(
        await api.client.patch(url, headers=api.h(), json={"run_name": "x" * 121}), 422, "validation_error"
    )
    assert "run_name" in err["message"]
    assert (await get_run(api, cid, rid))["run_name"] == "x" * 120
    for body in ({}, {"run_name": None}, {"run_name": 7}):
        assert_error(await api.client.patch(url, headers=api.h(), json=body), 422, "validation_error")
    r = await api.client.patch(url, headers=api.h(), json={"run_name": "   "})
    assert r.status_code == 200 and r.json() == {"cluster_id": cid, "run_id": rid, "run_name": None}
    assert "run_name" not in await get_run(api, cid, rid)
    stored = await api.app.state.services.db.cluster_executions.find_one({"run_id": rid})
    assert "run_name" not in stored
    assert_error(
        await api.client.patch(
            f"/v1/clusters/{cid}/executions/run_0000/name", headers=api.h(), json={"run_name": "a"}
        ),
        404,
        "not_found",
    )
