"""The `clusterd` client commands for real: typer's CliRunner (and a few subprocesses) against a
live uvicorn with the embedded worker; results checked through the API."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from api.cli import app
from core.settings import Settings
from tests.conftest import ADMIN_KEY, blobs, free_port, serve_uvicorn

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
NS = "cli-tests"


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(
        api_keys=[ADMIN_KEY],
        data_dir=tmp_path_factory.mktemp("data"),
        heartbeat_interval_s=1.0,
        port=free_port(),
    )
    with serve_uvicorn(settings) as (base, _):
        yield base


@pytest.fixture
def api(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {ADMIN_KEY}", "X-Namespace": NS}, timeout=60
    ) as c:
        yield c


def run(url: str, *args: str, key: str | None = ADMIN_KEY, **env: str) -> Any:
    """`clusterd ARGS` in-process, connection settings from the environment like a user's shell."""
    base = {"CLUSTERD_URL": url, "CLUSTERD_NAMESPACE": NS, "CLUSTERD_API_KEY": key or ""} | env
    return CliRunner().invoke(app, list(args), env=base)


def ok(result: Any) -> Any:
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
    return result


def error_line(result: Any) -> str:
    """The `error: …` line of stderr (a progress bar may precede it)."""
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def stored(api: httpx.Client, collection: str, doc_id: str) -> dict[str, Any]:
    r = api.get(f"/v1/collections/{collection}/documents/{doc_id}", params={"return_vectors": True})
    assert r.status_code == 200, r.text
    return dict(r.json())


def count(api: httpx.Client, collection: str) -> int:
    r = api.get(f"/v1/collections/{collection}/documents/count")
    assert r.status_code == 200, r.text
    return int(r.json()["count"])


def vector(doc: dict[str, Any], name: str = "emb") -> np.ndarray:
    v = doc["vectors"][name]
    if isinstance(v, dict):
        return np.frombuffer(base64.b64decode(v["b64"]), "<f4")
    return np.asarray(v, dtype=np.float32)


# ingest: one test per format


def test_ingest_parquet_in_pieces_through_the_upload_route(
    url: str, api: httpx.Client, tmp_path: Path
) -> None:
    X = np.random.default_rng(1).standard_normal((3000, 64)).astype(np.float32)  # 768 KB of vectors
    table = pa.table(
        {
            "doc": [f"p{i:05d}" for i in range(len(X))],
            "emb": pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), 64),
            "group": [f"g{i % 7}" for i in range(len(X))],
        }
    )
    path = tmp_path / "docs.parquet"
    pq.write_table(table, path)
    # a 1 MB cap: pieces of at most 512 KB, so the file goes in two requests
    res = ok(
        run(url, "ingest", str(path), "-c", "parq", "--create", "--id-field", "doc", "--max-upload-mb", "1",
            "--json")
    )
    summary = json.loads(res.stdout)
    assert summary["documents"] == 3000 and summary["collection_count"] == 3000
    assert summary["replaced"] == 0
    assert count(api, "parq") == 3000
    doc = stored(api, "parq", "p02999")
    np.testing.assert_allclose(vector(doc), X[2999], rtol=1e-6)
    assert doc["metadata"]["group"] == "g3"
    # again: every document is replaced, nothing added
    again = json.loads(ok(run(url, "ingest", str(path), "-c", "parq", "--id-field", "doc", "--json")).stdout)
    assert again["replaced"] == 3000 and again["collection_count"] == 3000


def test_ingest_arrow_ipc_file(url: str, api: httpx.Client, tmp_path: Path) -> None:
    X = blobs(n_per=10)
    table = pa.table(
        {"document_id": [f"a{i}" for i in range(len(X))], "emb": [list(map(float, x)) for x in X]}
    )
    path = tmp_path / "docs.arrow"
    with pa.OSFile(str(path), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
        w.write_table(table)
    ok(run(url, "ingest", str(path), "-c", "arrowcol", "--create"))
    assert count(api, "arrowcol") == 30
    np.testing.assert_allclose(vector(stored(api, "arrowcol", "a7")), X[7], rtol=1e-6)


def test_ingest_csv_json_list_and_numbered_columns(url: str, api: httpx.Client, tmp_path: Path) -> None:
    X = blobs(n_per=20)
    listed = tmp_path / "list.csv"
    lines = ["document_id,emb,team,score,day"]
    lines += [
        f'c{i},"{json.dumps(x.tolist())}",t{i % 2},{i * 0.5},2026-01-{i % 28 + 1:02d}'
        for i, x in enumerate(X)
    ]
    listed.write_text("\n".join(lines) + "\n")
    res = ok(run(url, "ingest", str(listed), "-c", "csvcol", "--create", "--batch-size", "25"))
    assert "ingested 60 documents" in res.stderr
    assert count(api, "csvcol") == 60
    doc = stored(api, "csvcol", "c41")
    np.testing.assert_allclose(vector(doc), X[41], rtol=1e-6)
    assert doc["metadata"] == {"team": "t1", "score": 20.5, "day": "2026-01-14"}  # a date stays its text

    wide = tmp_path / "wide.csv"
    header = "id," + ",".join(f"v_{j}" for j in range(X.shape[1]))
    body = "\n".join(f"w{i}," + ",".join(map(str, x)) for i, x in enumerate(X))
    wide.write_text(f"{header}\n{body}\n")
    ok(run(url, "ingest", str(wide), "-c", "csvwide", "--create", "--id-field", "id", "--vector-field", "v"))
    assert count(api, "csvwide") == 60
    np.testing.assert_allclose(vector(stored(api, "csvwide", "w5"), "v"), X[5], rtol=1e-6)


def test_ingest_npy_generated_and_given_ids(url: str, api: httpx.Client, tmp_path: Path) -> None:
    X = blobs(n_per=15)
    path = tmp_path / "X.npy"
    np.save(path, X)
    ok(run(url, "ingest", str(path), "-c", "npycol", "--create", "--batch-size", "10"))
    assert count(api, "npycol") == 45
    np.testing.assert_array_equal(vector(stored(api, "npycol", "doc_000001")), X[0])
    np.testing.assert_array_equal(vector(stored(api, "npycol", "doc_000045")), X[44])

    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(f"row-{i}" for i in range(len(X))) + "\n")
    ok(run(url, "ingest", str(path), "-c", "npyids", "--create", "--ids", str(ids), "--vector-field", "e2"))
    np.testing.assert_array_equal(vector(stored(api, "npyids", "row-3"), "e2"), X[3])


def test_ingest_jsonl_upsert_shape_and_flat(url: str, api: httpx.Client, tmp_path: Path) -> None:
    X = blobs(n_per=5)
    path = tmp_path / "docs.jsonl"
    rows = [
        json.dumps({"document_id": f"j{i}", "vectors": {"emb": x.tolist()}, "metadata": {"i": i}})
        for i, x in enumerate(X)
    ]
    path.write_text("\n".join(rows[:7]) + "\n\n" + "\n".join(rows[7:]) + "\n")  # a blank line is skipped
    ok(run(url, "ingest", str(path), "-c", "jsonlcol", "--create", "--batch-size", "4"))
    assert count(api, "jsonlcol") == 15
    doc = stored(api, "jsonlcol", "j9")
    np.testing.assert_allclose(vector(doc), X[9], rtol=1e-6)
    assert doc["metadata"] == {"i": 9}

    flat = tmp_path / "flat.ndjson"
    flat.write_text("\n".join(flat_line(i, v) for i, v in enumerate(X)))
    ok(run(url, "ingest", str(flat), "-c", "jsonlflat", "--create", "--id-field", "id"))
    doc = stored(api, "jsonlflat", "f2")
    np.testing.assert_allclose(vector(doc), X[2], rtol=1e-6)
    assert doc["metadata"] == {"kind": "k"}


def flat_line(i: int, v: np.ndarray) -> str:
    return json.dumps({"id": f"f{i}", "emb": v.tolist(), "kind": "k"})


# ingest: bad input names its place


def test_ingest_bad_row_names_its_line_and_the_server_message(
    url: str, api: httpx.Client, tmp_path: Path
) -> None:
    X = blobs(n_per=4)
    lines = [json.dumps({"document_id": f"b{i}", "vectors": {"emb": x.tolist()}}) for i, x in enumerate(X)]
    lines[8] = json.dumps({"document_id": "b8", "vectors": {"emb": [1.0, 2.0]}})  # wrong dimension
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    res = run(url, "ingest", str(path), "-c", "badcol", "--create", "--batch-size", "5")
    assert res.exit_code == 5, res.output
    line = error_line(res)
    assert line.startswith("error: 422 validation_error: documents[3].vectors.emb: expected 8 dimensions")
    where = "(at line 9 of bad.jsonl; nothing of this batch stored, the 5 documents before it are)"
    assert line.endswith(where), line
    assert count(api, "badcol") == 5

    broken = tmp_path / "broken.jsonl"
    broken.write_text(lines[0] + "\n{not json\n")
    res = run(url, "ingest", str(broken), "-c", "badcol")
    assert res.exit_code == 5 and "line 2 of broken.jsonl: not JSON" in res.stderr, res.output

    csv_path = tmp_path / "bad.csv"
    csv_path.write_text('document_id,emb\nx1,"[1, 2]"\nx2,"[1, oops]"\n')
    res = run(url, "ingest", str(csv_path), "-c", "badcol")
    assert res.exit_code == 5 and "line 3 of bad.csv: column 'emb'" in res.stderr, res.output

    npy = tmp_path / "flat.npy"
    np.save(npy, np.zeros(5, dtype=np.float32))
    res = run(url, "ingest", str(npy), "-c", "badcol")
    assert res.exit_code == 5 and "expected a non-empty N×D array" in res.stderr, res.output

    pq_path = tmp_path / "noid.parquet"
    pq.write_table(pa.table({"name": ["a"], "emb": [[1.0, 2.0]]}), pq_path)
    res = run(url, "ingest", str(pq_path), "-c", "badcol")
    assert res.exit_code == 5 and "no id column 'document_id'" in res.stderr, res.output

    rows = pa.table({"document_id": ["ok1", "bad"], "emb": [[1.0] * 8, [1.0, float("nan")] + [0.0] * 6]})
    pq.write_table(rows, pq_path)
    res = run(url, "ingest", str(pq_path), "-c", "badcol")
    assert res.exit_code == 5 and "422" in res.stderr and "at row 2 of noid.parquet" in res.stderr, res.stderr

    res = run(url, "ingest", str(path), "-c", "no-such-collection")
    assert res.exit_code == 5 and "404" in res.stderr and "pass --create" in res.stderr, res.output

    res = run(url, "ingest", str(tmp_path / "missing.jsonl"), "-c", "badcol")
    assert res.exit_code == 2  # typer's own usage error
    odd = tmp_path / "docs.txt"
    odd.write_text("x")
    res = run(url, "ingest", str(odd), "-c", "badcol")
    assert res.exit_code == 2 and "pass --format" in res.stderr, res.output


# from a file to a clustered dataset, its history and an export


@pytest.fixture(scope="module")
def clustered(url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """blobs (3 × 40) ingested, a k-means cluster of them, one run watched to the end."""
    path = tmp_path_factory.mktemp("in") / "blobs.npy"
    np.save(path, blobs())
    ok(run(url, "ingest", str(path), "-c", "blobs", "--create"))
    cid = ok(run(url, "clusters", "create", "three", "-c", "blobs", "--params", '{"n_clusters": 3}')).stdout
    res = ok(run(url, "execute", "three", "--wait", "--poll", "0.1"))
    return {"cluster_id": cid.strip(), "watched": res}


def test_execute_wait_shows_the_result(url: str, api: httpx.Client, clustered: dict[str, Any]) -> None:
    res = clustered["watched"]
    assert "3 clusters over 120 points" in res.stdout and "silhouette" in res.stdout
    res = ok(run(url, "execute", clustered["cluster_id"], "--wait", "--json", "--sample-size", "90"))
    result = json.loads(res.stdout)
    assert result["status"] == "completed" and result["num_clusters"] == 3 and result["num_points"] == 90
    assert sum(c["num_members"] for c in result["centroids"]) == 90  # a random sample of the 3 blobs
    r = api.get(f"/v1/clusters/three/executions/{result['run_id']}")
    assert r.json()["status"] == "completed"

    queued = ok(run(url, "execute", "three", "--json"))
    started = json.loads(queued.stdout)
    assert started["run_id"].startswith("run_") and started["cluster_id"] == clustered["cluster_id"]


def test_clusters_list(url: str, clustered: dict[str, Any]) -> None:
    rows = json.loads(ok(run(url, "clusters", "list", "--json")).stdout)
    assert clustered["cluster_id"] in [r["cluster_id"] for r in rows]
    table = ok(run(url, "clusters", "list")).stdout
    assert "three" in table and "kmeans" in table


def test_runs_table_and_json(url: str, clustered: dict[str, Any]) -> None:
    rows = json.loads(ok(run(url, "runs", "three", "--status", "completed", "--json")).stdout)
    assert rows and all(r["status"] == "completed" for r in rows)
    assert all(r["num_clusters"] == 3 and r["metrics"]["silhouette_score"] > 0.5 for r in rows)
    table = ok(run(url, "runs", "three", "--limit", "5")).stdout
    for head in ("run id", "status", "duration", "silhouette", "DB", "CH"):
        assert head in table
    assert rows[0]["run_id"] in table and "completed" in table
    assert f"{rows[0]['metrics']['silhouette_score']:.3f}" in table
    res = run(url, "runs", "three", "--status", "done")
    assert res.exit_code == 2


def test_export_parquet_and_csv(url: str, clustered: dict[str, Any], tmp_path: Path) -> None:
    listed = ok(run(url, "runs", "three", "--status", "completed", "--limit", "1", "--json"))
    newest = json.loads(listed.stdout)[0]
    run_id = newest["run_id"]
    n = newest["num_points"]
    out = tmp_path / "members.parquet"
    res = ok(run(url, "export", "three", run_id, "--out", str(out)))
    assert f"wrote {n} rows to {out}" in res.stderr
    table = pq.read_table(out)
    assert table.num_rows == n
    assert {"document_id", "cluster_id", "distance_to_centroid"} <= set(table.column_names)
    assert len(set(table.column("cluster_id").to_pylist())) == 3

    csv_out = tmp_path / "members.csv"
    info = json.loads(ok(run(url, "export", "three", run_id, "-o", str(csv_out), "--json")).stdout)
    assert info == {"path": str(csv_out), "format": "csv", "rows": n, "run_id": run_id}
    lines = csv_out.read_text().splitlines()
    assert lines[0].startswith("document_id,collection_id,cluster_id") and len(lines) == n + 1
    assert not list(tmp_path.glob(".*part"))  # no temporary file left

    latest = tmp_path / "latest.parquet"
    info = json.loads(ok(run(url, "export", "three", "latest", "-o", str(latest), "--json")).stdout)
    assert info["run_id"].startswith("run_") and info["rows"] == pq.read_table(latest).num_rows > 0
    done = json.loads(ok(run(url, "runs", "three", "--status", "completed", "--json")).stdout)
    assert info["run_id"] in [r["run_id"] for r in done]

    res = run(url, "export", "three", "run_nope", "-o", str(tmp_path / "x.csv"))
    assert res.exit_code == 5 and res.stderr.startswith("error: 404"), res.output
    assert not (tmp_path / "x.csv").exists() and not list(tmp_path.glob(".*part"))
    res = run(url, "export", "three", run_id, "-o", str(tmp_path / "x.xlsx"))
    assert res.exit_code == 2


# every error class has its exit code


def test_failed_run_exits_1_with_its_error(url: str, tmp_path: Path) -> None:
    path = tmp_path / "few.npy"
    np.save(path, blobs(n_per=2))
    ok(run(url, "ingest", str(path), "-c", "fewdocs", "--create"))
    ok(run(url, "clusters", "create", "too-many", "-c", "fewdocs", "--params", '{"n_clusters": 20}'))
    res = run(url, "execute", "too-many", "--wait", "--poll", "0.1")
    assert res.exit_code == 1, res.output
    assert "error: run run_" in res.stderr and " failed: " in res.stderr


def test_validation_error_names_the_field(url: str) -> None:
    res = run(url, "clusters", "create", "bad-k", "-c", "blobs", "--params", '{"n_clusters": 0}')
    assert res.exit_code == 5, res.output
    assert res.stderr.startswith("error: 422 ") and "n_clusters" in res.stderr, res.stderr
    res = run(url, "clusters", "create", "bad-json", "-c", "blobs", "--params", "{n_clusters")
    assert res.exit_code == 2 and "not JSON" in res.stderr


def test_auth_errors_exit_4(url: str, api: httpx.Client) -> None:
    res = run(url, "clusters", "list", key="wrong-key-0123456789")
    assert res.exit_code == 4
    assert res.stderr.startswith("error: 401 unauthorized: missing or invalid API key"), res.stderr
    res = run(url, "runs", "three", key=None)
    assert res.exit_code == 4 and "no API key" in res.stderr
    # a scoped key outside its namespace: 403
    r = api.post("/v1/api-keys", json={"name": "cli-scoped", "namespaces": [NS]})
    assert r.status_code == 200, r.text
    scoped = r.json()["key"]
    ok(run(url, "clusters", "list", key=scoped))
    res = run(url, "clusters", "list", "--namespace", "someone-else", key=scoped)
    assert res.exit_code == 4, res.output
    assert error_line(res).startswith("error: 403 forbidden: X-Namespace: this key may not use namespace")


def test_server_down_exits_3(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    res = run(down, "clusters", "list")
    assert res.exit_code == 3
    assert res.stderr.startswith(f"error: cannot reach clusterd at {down} (is `clusterd serve` running?)")


@pytest.fixture
def broker_down(tmp_path: Path) -> Iterator[str]:
    """The production topology with its Redis broker down: execute answers 503, nothing queued."""
    settings = Settings(
        api_keys=[ADMIN_KEY],
        data_dir=tmp_path / "data",
        port=free_port(),
        broker_url=f"redis://127.0.0.1:{free_port()}/0",
        embedded_worker=False,
    )
    with serve_uvicorn(settings) as (base, _):
        yield base


def test_server_error_exits_6(broker_down: str, tmp_path: Path) -> None:
    path = tmp_path / "blobs.npy"
    np.save(path, blobs(n_per=5))
    ok(run(broker_down, "ingest", str(path), "-c", "pts", "--create"))
    ok(run(broker_down, "clusters", "create", "k3", "-c", "pts", "--params", '{"n_clusters": 3}'))
    res = run(broker_down, "execute", "k3", "--wait")
    assert res.exit_code == 6, res.output
    assert error_line(res).startswith("error: 503 service_unavailable: broker unavailable, run not queued")


@pytest.mark.redis
def test_wait_timeout_exits_3_and_the_run_goes_on(tmp_path: Path) -> None:
    """A broker with no worker on its queue: the run stays pending past --timeout."""
    import redis

    from tests.conftest import REDIS_URL, redis_available

    assert redis_available(), "needs Redis on 127.0.0.1:6379 (scripts/test.sh starts it)"
    settings = Settings(
        api_keys=[ADMIN_KEY],
        data_dir=tmp_path / "data",
        port=free_port(),
        broker_url=REDIS_URL,
        queue_name=f"clusterd-cli-test-{os.getpid()}-{free_port()}",
        embedded_worker=False,
    )
    path = tmp_path / "blobs.npy"
    np.save(path, blobs(n_per=5))
    with serve_uvicorn(settings) as (base, _), contextlib.closing(redis.Redis.from_url(REDIS_URL)) as rds:
        ok(run(base, "ingest", str(path), "-c", "pts", "--create"))
        ok(run(base, "clusters", "create", "k3", "-c", "pts", "--params", '{"n_clusters": 3}'))
        res = run(base, "execute", "k3", "--wait", "--timeout", "1", "--poll", "0.2")
        assert res.exit_code == 3, res.output
        assert "still pending after 1 s (the run goes on)" in error_line(res)
        rows = json.loads(ok(run(base, "runs", "k3", "--json")).stdout)
        assert [r["status"] for r in rows] == ["pending"]
        rds.delete(settings.queue_name)  # the message nobody will take


def test_as_a_subprocess_exit_codes_reach_the_shell(url: str, clustered: dict[str, Any]) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CLUSTERD_API_KEY": ADMIN_KEY, "CLUSTERD_NAMESPACE": NS}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603
            [sys.executable, "-m", "api.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True,
            timeout=120,
        )

    p = cli("runs", "three", "--url", url, "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)[0]["cluster_id"] == clustered["cluster_id"]
    p = cli("runs", "three", "--url", f"http://127.0.0.1:{free_port()}")
    assert p.returncode == 3 and "cannot reach clusterd" in p.stderr
    p = cli("runs", "three", "--url", url, "--key", "nope-nope-nope-nope")
    assert p.returncode == 4 and "401" in p.stderr
    p = cli("execute", "three", "--url", url, "--sample-size", "0")
    assert p.returncode == 2
