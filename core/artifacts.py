"""Run artifacts (parquet) in S3 or a local directory under the same keys.

The only module that imports boto3. Everything here is synchronous; the worker calls it through
`asyncio.to_thread`. Both stores raise the same errors: `NotFound` for a missing key,
`ValueError` for a malformed key, `ServiceUnavailable` (code `artifact_store`) when the backend
fails, so callers never need botocore.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from core.errors import NotFound, ServiceUnavailable

if TYPE_CHECKING:
    from core.settings import Settings

T = TypeVar("T")

PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"
ERROR_CODE = "artifact_store"

CLUSTERS_SCHEMA = pa.schema(
    [
        ("cluster_id", pa.string()),
        ("label", pa.string()),
        ("num_members", pa.int64()),
        ("centroid_vector", pa.list_(pa.float32())),
    ]
)
MEMBERS_SCHEMA = pa.schema(
    [
        ("document_id", pa.string()),
        ("collection_id", pa.string()),
        ("cluster_id", pa.string()),
        ("distance_to_centroid", pa.float32()),
    ]
)
COORDINATE_COLUMNS = ("x", "y", "z")


@runtime_checkable
class ArtifactStore(Protocol):
    """Flat key -> bytes store; keys are `/`-separated relative paths."""

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None: ...

    def get_bytes(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def delete_prefix(self, prefix: str) -> int: ...

    def check(self) -> None: ...

    def describe(self) -> str: ...

    def download_url(self, key: str, expires_in: int) -> str: ...


# ---------------------------------------------------------------------------------------------
# keys


def run_prefix(namespace_id: str, cluster_id: str, run_id: str) -> str:
    return f"{namespace_id}/{cluster_id}/{run_id}/"


def attempt_prefix(namespace_id: str, cluster_id: str, run_id: str, attempt: int) -> str:
    """Where one attempt writes: a stale copy of a redelivered run (its fence already lost)
    can never overwrite or remove the files the run's current attempt points at."""
    return f"{run_prefix(namespace_id, cluster_id, run_id)}attempt-{int(attempt)}/"


def cluster_prefix(namespace_id: str, cluster_id: str) -> str:
    return f"{namespace_id}/{cluster_id}/"


def namespace_prefix(namespace_id: str) -> str:
    return f"{namespace_id}/"


def _segments(value: str, *, what: str, allow_trailing_slash: bool) -> list[str]:
    """Split a key or prefix, rejecting anything that could leave the store's root."""
    if not value:
        raise ValueError(f"{what}: must not be empty")
    if "\\" in value or "\x00" in value:
        raise ValueError(f"{what} {value!r}: backslashes and NUL are not allowed")
    if value.startswith("/"):
        raise ValueError(f"{what} {value!r}: must be relative (no leading '/')")
    body = value[:-1] if allow_trailing_slash and value.endswith("/") else value
    parts = body.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise ValueError(f"{what} {value!r}: empty, '.' and '..' segments are not allowed")
    return parts


def _check_key(key: str) -> list[str]:
    return _segments(key, what="artifact key", allow_trailing_slash=False)


def _check_prefix(prefix: str) -> list[str]:
    return _segments(prefix, what="artifact prefix", allow_trailing_slash=True)


def _check_expiry(expires_in: int) -> None:
    if expires_in <= 0:
        raise ValueError(f"expires_in: must be positive, got {expires_in}")


# ---------------------------------------------------------------------------------------------
# local directory


class LocalArtifactStore:
    """Artifacts under a directory; key `a/b/c.parquet` is the file `root/a/b/c.parquet`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*_check_key(key))

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        path = self._path(key)
        with _local_errors("put", key):
            path.parent.mkdir(parents=True, exist_ok=True)
            # temp file in the same directory, so os.replace is an atomic rename
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"artifact {key!r} not found") from None
        except OSError as exc:
            raise _unavailable("get", key, exc) from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete_prefix(self, prefix: str) -> int:
        parts = _check_prefix(prefix)
        if prefix.endswith("/"):
            targets = [self.root.joinpath(*parts)]
        else:
            # S3 semantics: "a/b" also matches "a/bc/..." and "a/b.parquet"
            parent = self.root.joinpath(*parts[:-1])
            try:
                targets = [p for p in parent.iterdir() if p.name.startswith(parts[-1])]
            except (FileNotFoundError, NotADirectoryError):
                return 0
        removed = 0
        with _local_errors("delete", prefix):
            for target in targets:
                if target.is_dir() and not target.is_symlink():
                    removed += sum(1 for p in target.rglob("*") if not p.is_dir())
                    shutil.rmtree(target)
                elif target.exists() or target.is_symlink():
                    target.unlink()
                    removed += 1
        return removed

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ServiceUnavailable(
                f"artifact directory {self.root} cannot be created: {exc}", code=ERROR_CODE
            ) from exc
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise ServiceUnavailable(f"artifact directory {self.root} is not writable", code=ERROR_CODE)

    def describe(self) -> str:
        return str(self.root)

    def download_url(self, key: str, expires_in: int) -> str:
        """A `file://` URI; like a presigned URL it does not check that the key exists."""
        _check_expiry(expires_in)
        return self._path(key).as_uri()


@contextlib.contextmanager
def _local_errors(op: str, key: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise _unavailable(op, key, exc) from exc


# ---------------------------------------------------------------------------------------------
# S3

_TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "SlowDown",
        "RequestLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
    }
)
_MISSING_KEY_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _is_transient(exc: BaseException) -> bool:
    """Connection failures, throttling and 5xx are worth another attempt; 4xx are not."""
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return True
    if isinstance(exc, ClientError):
        status = _http_status(exc)
        return _error_code(exc) in _TRANSIENT_CODES or status == 429 or status >= 500
    return False


class S3ArtifactStore:
    """Artifacts in one S3 bucket (AWS, MinIO, moto). `client` is a boto3 S3 client."""

    def __init__(self, bucket: str, client: Any, *, attempts: int = 3) -> None:
        if not bucket:
            raise ValueError("bucket: must not be empty")
        self.bucket = bucket
        self.client = client
        self._attempts = attempts

    def _call(self, op: str, key: str, fn: Callable[[], T]) -> T:
        """Run `fn` with retries on transient errors; map what is left to domain errors."""
        retrying = Retrying(
            retry=retry_if_exception(_is_transient),
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential_jitter(initial=0.1, max=1.0, jitter=0.1),
            reraise=True,
        )
        try:
            return retrying(fn)
        except ClientError as exc:
            if op == "get" and _error_code(exc) in _MISSING_KEY_CODES:
                raise NotFound(f"artifact {key!r} not found") from None
            raise _unavailable(op, f"s3://{self.bucket}/{key}", exc) from exc
        except BotoCoreError as exc:
            raise _unavailable(op, f"s3://{self.bucket}/{key}", exc) from exc

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        _check_key(key)
        self._call(
            "put",
            key,
            lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type),
        )

    def get_bytes(self, key: str) -> bytes:
        _check_key(key)

        def fetch() -> bytes:
            # the body is read inside the retried call: a dropped stream is retried too
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            with contextlib.closing(body):
                return bytes(body.read())

        return self._call("get", key, fetch)

    def exists(self, key: str) -> bool:
        _check_key(key)

        def head() -> bool:
            try:
                self.client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _error_code(exc) in _MISSING_KEY_CODES or _http_status(exc) == 404:
                    return False
                raise
            return True

        return self._call("head", key, head)

    def delete_prefix(self, prefix: str) -> int:
        _check_prefix(prefix)
        removed = 0
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": 1000}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call("list", prefix, functools.partial(self.client.list_objects_v2, **kwargs))
            keys = [obj["Key"] for obj in page.get("Contents", [])]
            # one page is at most 1000 keys, the DeleteObjects batch limit
            if keys:
                removed += self._delete_batch(prefix, keys)
            if not page.get("IsTruncated"):
                return removed
            token = page.get("NextContinuationToken")

    def _delete_batch(self, prefix: str, keys: list[str]) -> int:
        objects = [{"Key": k} for k in keys]
        resp = self._call(
            "delete",
            prefix,
            lambda: self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
            ),
        )
        errors = resp.get("Errors") or []
        if errors:
            first = errors[0]
            raise ServiceUnavailable(
                f"artifact store: delete s3://{self.bucket}/{prefix}: {len(errors)} of {len(keys)} objects "
                f"not deleted (first {first.get('Key')}: {first.get('Code')} {first.get('Message')})",
                code=ERROR_CODE,
            )
        return len(keys)

    def check(self) -> None:
        """One HEAD on the bucket, no retries: a health check should answer quickly."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code, status = _error_code(exc), _http_status(exc)
            if status == 404 or code in ("404", "NoSuchBucket", "NotFound"):
                reason = "bucket does not exist"
            elif status == 403 or code in ("403", "AccessDenied", "Forbidden"):
                reason = "access denied"
            else:
                reason = f"{code or status}: {exc}"
            raise ServiceUnavailable(f"artifact store s3://{self.bucket}: {reason}", code=ERROR_CODE) from exc
        except BotoCoreError as exc:
            raise ServiceUnavailable(
                f"artifact store s3://{self.bucket} unreachable: {exc}", code=ERROR_CODE
            ) from exc

    def describe(self) -> str:
        return f"s3://{self.bucket}"

    def download_url(self, key: str, expires_in: int) -> str:
        """A presigned GET URL; signing is local and does not check that the key exists."""
        _check_key(key)
        _check_expiry(expires_in)
        try:
            url = self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
            )
        except BotoCoreError as exc:
            raise _unavailable("presign", f"s3://{self.bucket}/{key}", exc) from exc
        return str(url)


def _unavailable(op: str, where: str, exc: BaseException) -> ServiceUnavailable:
    return ServiceUnavailable(f"artifact store: {op} {where}: {exc}", code=ERROR_CODE)


def make_s3_client(settings: Settings) -> Any:
    """A boto3 S3 client from settings; path-style addressing when an endpoint (MinIO) is set."""
    secret = settings.s3_secret_access_key
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},
        # botocore does not retry: S3ArtifactStore retries with tenacity, so attempts do not multiply
        retries={"total_max_attempts": 1},
        connect_timeout=5,
        read_timeout=60,
    )
    # a private session: creating clients from boto3's default session is not thread-safe
    session = boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url or None,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret is not None else None,
        config=config,
    )


def make_artifact_store(settings: Settings) -> ArtifactStore:
    """S3 when `s3_bucket` is set, else a local directory under `data_dir`."""
    if settings.s3_bucket:
        return S3ArtifactStore(settings.s3_bucket, make_s3_client(settings))
    return LocalArtifactStore(settings.artifact_dir)


# ---------------------------------------------------------------------------------------------
# parquet


def _same_length(**columns: int) -> int:
    lengths = set(columns.values())
    if len(lengths) > 1:
        detail = ", ".join(f"{name}={n}" for name, n in columns.items())
        raise ValueError(f"columns must have the same length: {detail}")
    return lengths.pop() if lengths else 0


def clusters_table(
    cluster_ids: Sequence[str], labels: Sequence[str], num_members: Sequence[int], centroids: np.ndarray
) -> pa.Table:
    """One row per cluster; `centroids` is (k, d), stored as list<float32>."""
    c = np.asarray(centroids, dtype=np.float32)
    if c.ndim == 1 and c.size == 0:
        c = c.reshape(0, 0)  # no clusters (e.g. all noise)
    if c.ndim != 2:
        raise ValueError(f"centroids: expected a 2-D array, got shape {c.shape}")
    k, d = c.shape
    _same_length(cluster_ids=len(cluster_ids), labels=len(labels), num_members=len(num_members), centroids=k)
    if k * d >= 2**31:
        raise ValueError(f"centroids: {k}x{d} values exceed a list<float32> column")
    offsets = pa.array(np.arange(k + 1, dtype=np.int32) * np.int32(d))
    vectors = pa.ListArray.from_arrays(offsets, pa.array(c.reshape(-1)), type=pa.list_(pa.float32()))
    return pa.Table.from_arrays(
        [
            pa.array(cluster_ids, type=pa.string()),
            pa.array(labels, type=pa.string()),
            pa.array(np.asarray(num_members, dtype=np.int64)),
            vectors,
        ],
        schema=CLUSTERS_SCHEMA,
    )


def members_table(
    document_ids: Sequence[str] | np.ndarray,
    collection_ids: Sequence[str] | np.ndarray,
    cluster_ids: Sequence[str | None] | np.ndarray | pa.Array,
    distances: np.ndarray,
    coordinates: np.ndarray | None = None,
) -> pa.Table:
    """One row per clustered document; noise has a null cluster_id and a null distance.

    `coordinates` (n, 2 or 3), when given, adds float32 columns x, y[, z].
    """
    dist = np.asarray(distances, dtype=np.float32).reshape(-1)
    n = _same_length(
        document_ids=len(document_ids),
        collection_ids=len(collection_ids),
        cluster_ids=len(cluster_ids),
        distances=len(dist),
    )
    if isinstance(cluster_ids, pa.Array):  # e.g. a dictionary over the clusters' ids
        cluster_col = cluster_ids.cast(pa.string())
    else:
        cluster_col = pa.array(cluster_ids, type=pa.string())
    noise = cluster_col.is_null().to_numpy(zero_copy_only=False)
    columns = [
        pa.array(document_ids, type=pa.string()),
        pa.array(collection_ids, type=pa.string()),
        cluster_col,
        pa.array(dist, type=pa.float32(), mask=np.isnan(dist) | noise),
    ]
    schema = MEMBERS_SCHEMA
    if coordinates is not None:
        xyz = np.asarray(coordinates, dtype=np.float32)
        if xyz.ndim != 2 or xyz.shape[0] != n or xyz.shape[1] not in (2, 3):
            raise ValueError(f"coordinates: expected shape ({n}, 2) or ({n}, 3), got {xyz.shape}")
        for i, name in enumerate(COORDINATE_COLUMNS[: xyz.shape[1]]):
            columns.append(pa.array(np.ascontiguousarray(xyz[:, i])))
            schema = schema.append(pa.field(name, pa.float32()))
    return pa.Table.from_arrays(columns, schema=schema)


UNIQUE_COLUMNS = frozenset({"document_id"})  # one value per row: a dictionary only costs time


def table_to_parquet_bytes(table: pa.Table) -> bytes:
    """zstd parquet; a dictionary on the string columns but the per-row ids. Floats (distances,
    layout coordinates) get none: nearly every value is distinct, and trying one cost 72 ms of a
    100k-member file's 88 (1.7 MB; 16 ms and 1.1 MB without)."""
    sink = pa.BufferOutputStream()
    dictionary = [
        f.name
        for f in table.schema
        if f.name not in UNIQUE_COLUMNS and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))
    ]
    pq.write_table(table, sink, compression="zstd", use_dictionary=dictionary)
    return bytes(sink.getvalue().to_pybytes())


def parquet_bytes_to_table(data: bytes) -> pa.Table:
    return pq.read_table(pa.BufferReader(data))


def write_table(store: ArtifactStore, key: str, table: pa.Table) -> None:
    store.put_bytes(key, table_to_parquet_bytes(table), PARQUET_CONTENT_TYPE)


def read_table(store: ArtifactStore, key: str) -> pa.Table:
    return parquet_bytes_to_table(store.get_bytes(key))
