"""Artifact stores: LocalArtifactStore on tmp_path and S3ArtifactStore on moto, same contract."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import numpy as np
import pyarrow as pa
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from moto import mock_aws
from moto.server import ThreadedMotoServer
from pydantic import SecretStr

from core.artifacts import (
    ArtifactStore,
    LocalArtifactStore,
    S3ArtifactStore,
    attempt_prefix,
    cluster_prefix,
    clusters_table,
    make_artifact_store,
    make_s3_client,
    members_table,
    namespace_prefix,
    parquet_bytes_to_table,
    read_table,
    run_prefix,
    table_to_parquet_bytes,
    write_table,
)
from core.errors import NotFound, ServiceUnavailable
from core.settings import Settings

pytestmark = pytest.mark.integration

BUCKET = "clusterd-test"
REGION = "us-east-1"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials only: nothing here may reach real AWS."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SECURITY_TOKEN", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def s3(aws_env: None) -> Iterator[Any]:
    """An in-process moto S3 client with the test bucket."""
    with mock_aws():
        client = make_s3_client(Settings(s3_bucket=BUCKET, s3_region=REGION))  # the production config
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return LocalArtifactStore(tmp_path / "artifacts")
    return S3ArtifactStore(BUCKET, request.getfixturevalue("s3"))


# --------------------------------------------------------------------------------------------- basics


def test_put_get_exists(store: ArtifactStore) -> None:
    key = run_prefix("ns_a", "clust_1", "run_1") + "clusters.parquet"
    assert not store.exists(key)
    store.put_bytes(key, b"hello")
    assert store.exists(key)
    assert store.get_bytes(key) == b"hello"
    store.put_bytes(key, b"replaced", content_type="text/plain")
    assert store.get_bytes(key) == b"replaced"
    store.put_bytes("ns_a/empty.bin", b"")
    assert store.get_bytes("ns_a/empty.bin") == b""


def test_missing_key_is_not_found(store: ArtifactStore) -> None:
    with pytest.raises(NotFound, match="nope.parquet"):
        store.get_bytes("ns_a/clust_1/run_1/nope.parquet")
    # a "directory" is not an object either
    store.put_bytes("ns_a/clust_1/run_1/x.bin", b"x")
    assert not store.exists("ns_a/clust_1/run_1")
    with pytest.raises(NotFound):
        store.get_bytes("ns_a/clust_1/run_1")


def test_prefix_helpers() -> None:
    assert run_prefix("ns", "clust_1", "run_1") == "ns/clust_1/run_1/"
    assert cluster_prefix("ns", "clust_1") == "ns/clust_1/"
    assert namespace_prefix("ns") == "ns/"
    assert run_prefix("ns", "clust_1", "run_1").startswith(cluster_prefix("ns", "clust_1"))
    assert attempt_prefix("ns", "clust_1", "run_1", 2) == "ns/clust_1/run_1/attempt-2/"
    assert cluster_prefix("ns", "clust_1").startswith(namespace_prefix("ns"))


def test_delete_prefix_removes_only_that_prefix(store: ArtifactStore) -> None:
    keys = {
        "ns_a/clust_1/run_1/clusters.parquet",
        "ns_a/clust_1/run_1/members.parquet",
        "ns_a/clust_1/run_2/clusters.parquet",
        "ns_a/clust_10/run_3/clusters.parquet",  # shares the string "ns_a/clust_1"
        "ns_b/clust_1/run_1/clusters.parquet",
    }
    for key in keys:
        store.put_bytes(key, key.encode())

    assert store.delete_prefix(run_prefix("ns_a", "clust_1", "run_1")) == 2
    assert store.delete_prefix(run_prefix("ns_a", "clust_1", "run_1")) == 0
    remaining = keys - {"ns_a/clust_1/run_1/clusters.parquet", "ns_a/clust_1/run_1/members.parquet"}
    assert {k for k in keys if store.exists(k)} == remaining

    assert store.delete_prefix(cluster_prefix("ns_a", "clust_1")) == 1
    assert store.exists("ns_a/clust_10/run_3/clusters.parquet")
    assert store.delete_prefix(namespace_prefix("ns_a")) == 1
    assert store.delete_prefix(namespace_prefix("ns_missing")) == 0
    assert {k for k in keys if store.exists(k)} == {"ns_b/clust_1/run_1/clusters.parquet"}
    assert store.get_bytes("ns_b/clust_1/run_1/clusters.parquet") == b"ns_b/clust_1/run_1/clusters.parquet"


def test_delete_prefix_without_slash_has_s3_semantics(store: ArtifactStore) -> None:
    for key in ("ns/clust_1/a", "ns/clust_10/b", "ns/clust_2/c", "ns/clust_1.bin"):
        store.put_bytes(key, b"x")
    assert store.delete_prefix("ns/clust_1") == 3
    assert store.exists("ns/clust_2/c")
    assert not store.exists("ns/clust_10/b")


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "../outside",
        "ns/../../outside",
        "ns/./x",
        "ns//x",
        "ns/x/",
        "ns\\..\\x",
        "ns/\x00",
    ],
)
def test_bad_keys_rejected(store: ArtifactStore, key: str) -> None:
    with pytest.raises(ValueError):
        store.put_bytes(key, b"x")
    with pytest.raises(ValueError):
        store.get_bytes(key)
    with pytest.raises(ValueError):
        store.exists(key)
    with pytest.raises(ValueError):
        store.download_url(key, 60)


@pytest.mark.parametrize("prefix", ["", "/", "../", "ns/../", "ns//"])
def test_bad_prefixes_rejected(store: ArtifactStore, prefix: str) -> None:
    store.put_bytes("ns/x", b"x")
    with pytest.raises(ValueError):
        store.delete_prefix(prefix)
    assert store.exists("ns/x")


def test_local_key_cannot_escape_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    store = LocalArtifactStore(root)
    for key in ("../escaped", "a/../../escaped", "/tmp/escaped", str(tmp_path / "escaped")):
        with pytest.raises(ValueError):
            store.put_bytes(key, b"x")
    with pytest.raises(ValueError):
        store.delete_prefix("../")
    assert not (tmp_path / "escaped").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # root is created lazily, nothing else


def test_local_writes_are_atomic_and_leave_no_temp_files(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "root")
    store.put_bytes("a/b/c.parquet", b"one")
    store.put_bytes("a/b/c.parquet", b"two")
    files = [p.relative_to(store.root).as_posix() for p in store.root.rglob("*") if p.is_file()]
    assert files == ["a/b/c.parquet"]
    assert (store.root / "a" / "b" / "c.parquet").read_bytes() == b"two"


def test_local_put_failure_is_service_unavailable(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "root")
    store.put_bytes("a", b"file")
    with pytest.raises(ServiceUnavailable) as info:
        store.put_bytes("a/b", b"x")  # "a" is a file, not a directory
    assert info.value.code == "artifact_store"


# --------------------------------------------------------------------------------------------- health


def test_check_and_describe(store: ArtifactStore, tmp_path: Path) -> None:
    store.check()
    if isinstance(store, LocalArtifactStore):
        assert store.describe() == str((tmp_path / "artifacts").resolve())
        assert Path(store.describe()).is_absolute()
    else:
        assert store.describe() == f"s3://{BUCKET}"


def test_s3_check_missing_bucket(s3: Any) -> None:
    store = S3ArtifactStore("no-such-bucket", s3)
    with pytest.raises(ServiceUnavailable, match="no-such-bucket.*does not exist") as info:
        store.check()
    assert info.value.code == "artifact_store"
    # other operations on a missing bucket are storage failures too, not "missing key"
    with pytest.raises(ServiceUnavailable):
        store.put_bytes("ns/x", b"x")
    with pytest.raises(ServiceUnavailable):
        store.get_bytes("ns/x")


def test_local_check_unusable_root(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(ServiceUnavailable, match="cannot be created"):
        LocalArtifactStore(blocker / "artifacts").check()


# --------------------------------------------------------------------------------------------- S3 details


class _SpyClient:
    """Passes calls to a real client, recording DeleteObjects batch sizes."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.delete_batches: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def delete_objects(self, **kwargs: Any) -> Any:
        self.delete_batches.append(len(kwargs["Delete"]["Objects"]))
        return self._client.delete_objects(**kwargs)


def test_s3_delete_prefix_pages_over_1000_keys(s3: Any) -> None:
    prefix = run_prefix("ns", "clust_1", "run_1")
    for i in range(1005):
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}part-{i:05d}", Body=b"")
    s3.put_object(Bucket=BUCKET, Key="ns/clust_1/run_2/keep", Body=b"")
    spy = _SpyClient(s3)
    store = S3ArtifactStore(BUCKET, spy)

    assert store.delete_prefix(prefix) == 1005
    assert spy.delete_batches == [1000, 5]
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["KeyCount"] == 0
    assert store.exists("ns/clust_1/run_2/keep")


class _FlakyClient:
    """Fails the first `failures` calls with `error`, then answers."""

    def __init__(self, error: Exception, failures: int) -> None:
        self.error = error
        self.failures = failures
        self.calls = 0
        self.stored: dict[str, bytes] = {}

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, ContentType: str) -> dict[str, Any]:  # noqa: N803
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        self.stored[Key] = Body
        return {}


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "op"
    )


@pytest.mark.parametrize(
    "error",
    [
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        _client_error("SlowDown", 503),
        _client_error("InternalError", 500),
        _client_error("Throttling", 400),
    ],
    ids=["connection", "slowdown", "5xx", "throttling"],
)
def test_s3_transient_errors_are_retried(error: Exception) -> None:
    client = _FlakyClient(error, failures=2)
    store = S3ArtifactStore(BUCKET, client)
    store.put_bytes("ns/x", b"x")
    assert client.calls == 3
    assert client.stored == {"ns/x": b"x"}

    client = _FlakyClient(error, failures=3)
    with pytest.raises(ServiceUnavailable, match="put s3://clusterd-test/ns/x"):
        S3ArtifactStore(BUCKET, client).put_bytes("ns/x", b"x")
    assert client.calls == 3


def test_s3_client_errors_are_not_retried() -> None:
    client = _FlakyClient(_client_error("AccessDenied", 403), failures=1)
    with pytest.raises(ServiceUnavailable, match="AccessDenied"):
        S3ArtifactStore(BUCKET, client).put_bytes("ns/x", b"x")
    assert client.calls == 1


def test_s3_put_sets_content_type(s3: Any) -> None:
    store = S3ArtifactStore(BUCKET, s3)
    write_table(store, "ns/t.parquet", pa.table({"a": [1]}))
    store.put_bytes("ns/raw", b"x")
    assert (
        s3.head_object(Bucket=BUCKET, Key="ns/t.parquet")["ContentType"] == "application/vnd.apache.parquet"
    )
    assert s3.head_object(Bucket=BUCKET, Key="ns/raw")["ContentType"] == "application/octet-stream"


def test_download_url(store: ArtifactStore) -> None:
    key = "ns/clust_1/run_1/members.parquet"
    store.put_bytes(key, b"payload")
    url = store.download_url(key, expires_in=300)
    if isinstance(store, LocalArtifactStore):
        assert url.startswith("file://")
        with urllib.request.urlopen(url) as resp:  # file:// only
            assert resp.read() == b"payload"
    else:
        parsed = urlparse(url)
        assert parsed.scheme == "https"
        assert BUCKET in parsed.netloc + parsed.path
        assert parsed.path.endswith("/ns/clust_1/run_1/members.parquet")
        assert "X-Amz-Expires=300" in parsed.query
    with pytest.raises(ValueError):
        store.download_url(key, expires_in=0)


# --------------------------------------------------------------------------------------------- parquet


def _members(n: int = 6) -> pa.Table:
    cluster_ids = ["cl_0", "cl_1", None, "cl_0", None, "cl_1"][:n]
    distances = np.array([0.5, 1.25, 0.0, np.nan, np.nan, 2.0], dtype=np.float64)[:n]
    return members_table([f"doc_{i}" for i in range(n)], ["col_a"] * n, cluster_ids, distances)


def test_clusters_table_types_and_round_trip(store: ArtifactStore) -> None:
    centroids = np.arange(6, dtype=np.float64).reshape(3, 2) / 4
    table = clusters_table(["cl_0", "cl_1", "cl_2"], ["A", "B", "Cluster 2"], [5, 3, 1], centroids)
    assert table.schema.field("cluster_id").type == pa.string()
    assert table.schema.field("label").type == pa.string()
    assert table.schema.field("num_members").type == pa.int64()
    assert table.schema.field("centroid_vector").type == pa.list_(pa.float32())

    key = run_prefix("ns", "clust_1", "run_1") + "clusters.parquet"
    write_table(store, key, table)
    back = read_table(store, key)
    assert back.schema.equals(table.schema)
    assert back.column_names == ["cluster_id", "label", "num_members", "centroid_vector"]
    assert back.column("cluster_id").to_pylist() == ["cl_0", "cl_1", "cl_2"]
    assert back.column("num_members").to_pylist() == [5, 3, 1]
    vectors = np.array(back.column("centroid_vector").to_pylist(), dtype=np.float32)
    np.testing.assert_array_equal(vectors, centroids.astype(np.float32))


def test_clusters_table_empty_and_invalid() -> None:
    empty = clusters_table([], [], [], np.empty((0,), dtype=np.float32))
    assert empty.num_rows == 0
    assert parquet_bytes_to_table(table_to_parquet_bytes(empty)).schema.equals(empty.schema)
    with pytest.raises(ValueError, match="same length"):
        clusters_table(["cl_0"], ["A", "B"], [1], np.zeros((1, 2)))
    with pytest.raises(ValueError, match="2-D"):
        clusters_table(["cl_0"], ["A"], [1], np.zeros(3))


def test_members_table_noise_is_null_and_round_trips(store: ArtifactStore) -> None:
    table = _members()
    assert table.schema.field("document_id").type == pa.string()
    assert table.schema.field("collection_id").type == pa.string()
    assert table.schema.field("cluster_id").type == pa.string()
    assert table.schema.field("distance_to_centroid").type == pa.float32()

    key = run_prefix("ns", "clust_1", "run_1") + "members.parquet"
    write_table(store, key, table)
    back = read_table(store, key)
    assert back.schema.equals(table.schema)
    assert back.column("cluster_id").to_pylist() == ["cl_0", "cl_1", None, "cl_0", None, "cl_1"]
    # noise rows (cluster_id null) and NaN distances are nulls, never NaN
    assert back.column("distance_to_centroid").to_pylist() == [0.5, 1.25, None, None, None, 2.0]
    assert back.column("cluster_id").null_count == 2
    assert back.column("distance_to_centroid").null_count == 3


def test_members_table_coordinates_and_validation() -> None:
    coords = np.arange(12, dtype=np.float64).reshape(6, 2)
    table = members_table(
        [f"doc_{i}" for i in range(6)], ["col_a"] * 6, ["cl_0"] * 6, np.zeros(6), coordinates=coords
    )
    assert table.column_names[-2:] == ["x", "y"]
    assert table.schema.field("x").type == pa.float32()
    assert table.column("y").to_pylist() == [1.0, 3.0, 5.0, 7.0, 9.0, 11.0]
    with pytest.raises(ValueError, match="coordinates"):
        members_table(["d"], ["c"], ["cl_0"], np.zeros(1), coordinates=np.zeros((1, 4)))
    with pytest.raises(ValueError, match="same length"):
        members_table(["d", "e"], ["c"], ["cl_0"], np.zeros(1))


def test_members_table_large() -> None:
    n = 200_000
    ids = np.char.add("doc_", np.arange(n).astype(str)).tolist()
    labels = np.where(np.arange(n) % 10 == 0, None, "cl_1").tolist()
    distances = np.random.default_rng(0).random(n).astype(np.float32)
    table = members_table(ids, ["col_a"] * n, labels, distances)
    assert table.num_rows == n
    assert table.column("distance_to_centroid").null_count == n // 10
    back = parquet_bytes_to_table(table_to_parquet_bytes(table))
    assert back.equals(table)


# --------------------------------------------------------------------------------------------- wiring


def test_make_artifact_store_local(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLUSTERD_DATA_DIR", str(tmp_path / "data"))
    store = make_artifact_store(Settings(s3_bucket=None, s3_endpoint_url=None))
    assert isinstance(store, LocalArtifactStore)
    assert store.root == (tmp_path / "data" / "artifacts").resolve()
    store.check()
    store.put_bytes("ns/x", b"x")
    assert (tmp_path / "data" / "artifacts" / "ns" / "x").read_bytes() == b"x"


def test_make_artifact_store_s3(s3: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLUSTERD_DATA_DIR", str(tmp_path / "data"))
    settings = Settings(
        s3_bucket=BUCKET,
        s3_region=REGION,
        s3_access_key_id="testing",
        s3_secret_access_key=SecretStr("testing"),
    )
    store = make_artifact_store(settings)
    assert isinstance(store, S3ArtifactStore)
    assert store.describe() == f"s3://{BUCKET}"
    store.check()
    store.put_bytes("ns/x", b"x")
    assert s3.get_object(Bucket=BUCKET, Key="ns/x")["Body"].read() == b"x"
    assert not (tmp_path / "data").exists()


def test_make_artifact_store_against_moto_server(aws_env: None, tmp_path: Path) -> None:
    """A real HTTP endpoint (MinIO-style): path-style addressing, presigned URLs, endpoint down."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        settings = Settings(
            s3_bucket="clusterd-server-test",
            s3_endpoint_url=endpoint,
            s3_region=REGION,
            s3_access_key_id="minio",
            s3_secret_access_key=SecretStr("minio-secret"),
            data_dir=tmp_path,
        )
        store = make_artifact_store(settings)
        assert isinstance(store, S3ArtifactStore)
        with pytest.raises(ServiceUnavailable, match="does not exist"):
            store.check()
        store.client.create_bucket(Bucket="clusterd-server-test")
        store.check()

        prefix = run_prefix("ns", "clust_1", "run_1")
        write_table(store, prefix + "members.parquet", _members())
        assert read_table(store, prefix + "members.parquet").equals(_members())
        assert store.exists(prefix + "members.parquet")
        with pytest.raises(NotFound):
            store.get_bytes(prefix + "missing.parquet")

        url = store.download_url(prefix + "members.parquet", expires_in=60)
        assert url.startswith(f"{endpoint}/clusterd-server-test/ns/clust_1/run_1/members.parquet?")
        resp = httpx.get(url)
        assert resp.status_code == 200
        assert parquet_bytes_to_table(resp.content).equals(_members())

        assert store.delete_prefix(cluster_prefix("ns", "clust_1")) == 1
        assert not store.exists(prefix + "members.parquet")
        httpx.post(f"{endpoint}/moto-api/reset")
    finally:
        server.stop()

    # the endpoint is gone: a health check and an operation fail as storage errors
    with pytest.raises(ServiceUnavailable, match="unreachable"):
        store.check()
    with pytest.raises(ServiceUnavailable, match="get s3://"):
        store.get_bytes(prefix + "members.parquet")
