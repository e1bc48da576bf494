"""Binary ingestion over HTTP: parquet / Arrow IPC uploads (`POST /v1/collections/{c}/documents/upload`)
and base64 float32 vectors in the JSON batch. Vectors read back bit for bit; every bad input is a
4xx ErrorResponse naming the row (`documents[i]`) or the column and the reason, and writes nothing."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from tests.conftest import ADMIN_KEY, Api, serve_asgi
from tests.e2e.test_ingest_validation import (
    AUTH,
    JSON_HEADERS,
    NS,
    UPSERT,
    assert_error,
    new_collection,
    state,
)

pytestmark = pytest.mark.e2e

PARQUET = "application/vnd.apache.parquet"


@pytest.fixture
async def quick(make_settings: Any) -> AsyncIterator[Api]:
    async with serve_asgi(make_settings(embedded_worker=False)) as a:
        yield a


def parquet(table: pa.Table, **kw: Any) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, **kw)
    return buf.getvalue()


def arrow_stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def arrow_file(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def fixed(X: np.ndarray) -> pa.Array:
    """A fixed_size_list column of X's rows (float64 stays float64: list<double>)."""
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(X).ravel()), X.shape[1])


async def upload(api: Api, col: str, body: bytes, content_type: str = PARQUET) -> httpx.Response:
    return await api.client.post(
        f"/v1/collections/{col}/documents/upload",
        content=body,
        headers={**api.h(NS), "Content-Type": content_type},
    )


async def get(api: Api, col: str, doc_id: str) -> dict[str, Any]:
    r = await api.client.get(
        f"/v1/collections/{col}/documents/{doc_id}?return_vectors=true", headers=api.h(NS)
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def vec(doc: dict[str, Any], name: str = "emb") -> np.ndarray:
    out = np.asarray(doc["vectors"][name], dtype=np.float64)
    assert np.array_equal(out.astype(np.float32).astype(np.float64), out)  # float32 values on the wire
    return out.astype(np.float32)


# --------------------------------------------------------------------------- uploads that succeed


async def test_parquet_upload_reads_back_exactly_and_replaces_by_id(quick: Api) -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 8)).astype(np.float32)
    X[0, 0], X[1, 1] = np.finfo(np.float32).max, -0.0
    small = rng.standard_normal((50, 3))  # float64 values: stored as float32
    table = pa.table(
        {
            "document_id": [f"p{i:03d}" for i in range(50)],
            "emb": fixed(X),
            "side": pa.array(
                [list(row) if i % 5 else None for i, row in enumerate(small)], pa.list_(pa.float64())
            ),
            "group": pa.array([f"g{i % 3}" for i in range(50)]).dictionary_encode(),
            "n": pa.array(range(50), pa.int64()),
            "score": pa.array([float("nan") if i == 7 else i / 2 for i in range(50)], pa.float64()),
            "flag": [i % 2 == 0 for i in range(50)],
            "note": [None if i == 3 else "é ✓" for i in range(50)],
        }
    )
    col = await new_collection(quick)
    r = await upload(quick, col, parquet(table))
    assert r.status_code == 200, r.text
    assert r.json() == {"collection_id": col, "inserted": 50, "replaced": 0}
    assert await state(quick, col) == (50, [("emb", 8), ("side", 3)])  # both indexes inferred
    for i in (0, 1, 3, 5, 7, 49):
        doc = await get(quick, col, f"p{i:03d}")
        assert np.array_equal(vec(doc), X[i]), i
        if i % 5:
            assert np.array_equal(vec(doc, "side"), small[i].astype(np.float32))
        else:
            assert "side" not in doc["vectors"]  # a null cell: no such vector
        assert doc["metadata"] == {
            "group": f"g{i % 3}",
            "n": i,
            "score": None if i == 7 else i / 2,  # NaN (pandas' missing float) is stored as null
            "flag": i % 2 == 0,
            "note": None if i == 3 else "é ✓",
        }
        assert doc["source_type"] == "direct_upsert"
    first = await get(quick, col, "p000")

    # the same ids again (plus one new): replaced, created_at kept; the index still fits
    Y = X[:10] + 1
    again = pa.table(
        {"document_id": [f"p{i:03d}" for i in range(10)] + ["new"], "emb": fixed(np.vstack([Y, Y[:1]]))}
    )
    r = await upload(quick, col, parquet(again), "application/octet-stream")
    assert r.status_code == 200, r.text
    assert r.json() == {"collection_id": col, "inserted": 11, "replaced": 10}
    assert await state(quick, col) == (51, [("emb", 8), ("side", 3)])
    doc = await get(quick, col, "p000")
    assert np.array_equal(vec(doc), Y[0]) and doc["metadata"] == {} and "side" not in doc["vectors"]
    assert doc["created_at"] == first["created_at"] and doc["updated_at"] >= first["updated_at"]

    # uploaded documents are clustered like any others
    r = await quick.client.post(
        f"/v1/collections/{col}/documents/list",
        headers=quick.h(NS),
        json={"filters": {"metadata.group": "g1"}, "limit": 100},
    )
    assert r.status_code == 200 and {d["document_id"] for d in r.json()["results"]} == {
        f"p{i:03d}" for i in range(10, 50) if i % 3 == 1
    }


@pytest.mark.parametrize(
    "encode", [arrow_stream, arrow_file, parquet], ids=["arrow-stream", "arrow-file", "parquet"]
)
async def test_arrow_and_float32_bytes_columns(quick: Api, encode: Any) -> None:
    X = np.random.default_rng(1).standard_normal((20, 6)).astype(np.float32)
    table = pa.table(
        {
            "document_id": [f"a{i}" for i in range(20)],
            "mixpeek://direct@v1/emb": fixed(X),  # a feature URI names the column: stored as "emb"
            "raw": pa.FixedSizeBinaryArray.from_buffers(
                pa.binary(24), 20, [None, pa.py_buffer(X[:, ::-1].tobytes())]
            ),
            "blob": pa.array([X[i, :4].tobytes() for i in range(20)], pa.binary()),
        }
    )
    col = await new_collection(
        quick,
        vector_indexes=[
            {"name": "emb", "dimensions": 6},
            {"name": "raw", "dimensions": 6},
            {"name": "blob", "dimensions": 4},
        ],
    )
    r = await upload(quick, col, encode(table), "application/vnd.apache.arrow.stream")
    assert r.status_code == 200, r.text
    assert r.json()["inserted"] == 20
    for i in (0, 19):
        doc = await get(quick, col, f"a{i}")
        assert np.array_equal(vec(doc), X[i])
        assert np.array_equal(vec(doc, "raw"), X[i, ::-1])
        assert np.array_equal(vec(doc, "blob"), X[i, :4])


async def test_an_upload_may_exceed_the_json_body_limit(make_settings: Any) -> None:
    async with serve_asgi(make_settings(max_body_mb=1, max_upload_mb=4, embedded_worker=False)) as api:
        X = np.random.default_rng(2).standard_normal((600, 768)).astype(np.float32)  # ~1.8 MB
        col = await new_collection(api)
        body = parquet(pa.table({"document_id": [f"d{i}" for i in range(600)], "emb": fixed(X)}))
        assert len(body) > 1024 * 1024
        r = await upload(api, col, body)
        assert r.status_code == 200, r.text
        assert np.array_equal(vec(await get(api, col, "d599")), X[599])
        # ...but not its own limit, with or without a Content-Length
        big = parquet(
            pa.table({"document_id": [f"d{i}" for i in range(1500)], "emb": fixed(np.vstack([X] * 3)[:1500])})
        )
        assert len(big) > 4 * 1024 * 1024
        assert_error(await upload(api, col, big), 413, "4 MB", "CLUSTERD_MAX_UPLOAD_MB")

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(big), 256 * 1024):
                yield big[i : i + 256 * 1024]

        r = await api.client.post(
            f"/v1/collections/{col}/documents/upload",
            content=chunks(),
            headers={**api.h(NS), "Content-Type": PARQUET},
        )
        assert "content-length" not in r.request.headers
        assert_error(r, 413, "CLUSTERD_MAX_UPLOAD_MB")
        # a file that decodes to far more than it weighs
        zeros = pa.table({"document_id": [f"z{i}" for i in range(5000)], "emb": fixed(np.zeros((5000, 768)))})
        small = parquet(zeros, compression="zstd")
        assert len(small) < 4 * 1024 * 1024
        assert_error(await upload(api, col, small), 413, "decodes to more than 16 MB")
        assert await state(api, col) == (600, [("emb", 768)])
        # and the JSON routes keep theirs
        r = await api.client.post(UPSERT, content=b"{" + b" " * (1024 * 1024) + b"}", headers=JSON_HEADERS)
        assert_error(r, 413, "CLUSTERD_MAX_BODY_MB")


# --------------------------------------------------------------------------- uploads refused


def good(n: int = 4, dims: int = 3) -> dict[str, Any]:
    return {"document_id": [f"g{i}" for i in range(n)], "emb": fixed(np.ones((n, dims)))}


def with_column(name: str, values: Any, **base: Any) -> bytes:
    cols = good() | base
    cols[name] = values
    return parquet(pa.table(cols))


BAD_UPLOADS = [
    pytest.param(b'{"documents": []}', 422, ("body", "not a parquet"), id="json-body"),
    pytest.param(b"", 422, ("not a parquet",), id="empty-body"),
    pytest.param(
        parquet(pa.table(good()))[:-100] + b"PAR1", 422, ("not a readable parquet",), id="truncated"
    ),
    pytest.param(b"PAR1" + b"\0" * 64 + b"PAR1", 422, ("not a readable parquet",), id="garbage"),
    pytest.param(b"\xff\xff\xff\xff garbage", 422, ("not a readable Arrow IPC",), id="garbage-arrow"),
    pytest.param(
        parquet(pa.table({"emb": fixed(np.ones((2, 3)))})), 422, ("document_id", "column"), id="no-id-column"
    ),
    pytest.param(
        with_column("document_id", [1, 2, 3, 4]), 422, ("column 'document_id'", "strings"), id="int-ids"
    ),
    pytest.param(
        with_column("document_id", ["a", None, "c", "d"]),
        422,
        ("documents[1].document_id", "null"),
        id="null-id",
    ),
    pytest.param(
        with_column("document_id", ["a", "b", "a", "d"]),
        422,
        ("documents[2].document_id", "repeats documents[0]"),
        id="dup-id",
    ),
    pytest.param(
        with_column("document_id", ["a", "  ", "c", "d"]), 422, ("documents[1].document_id",), id="blank-id"
    ),
    pytest.param(
        with_column("document_id", ["a", "b", "x" * 201, "d"]),
        422,
        ("documents[2].document_id", "200"),
        id="long-id",
    ),
    pytest.param(
        with_column("document_id", ["a", "b", " a ", "a"]),
        422,
        ("documents[2].document_id", "'a' repeats documents[0]"),
        id="dup-after-strip",
    ),
    pytest.param(
        with_column(
            "emb", fixed(np.array([[1, 2, 3], [1, np.nan, 3], [1, 2, 3], [np.inf, 0, 0]], np.float32))
        ),
        422,
        ("documents[1].vectors.emb[1]", "finite", "nan"),
        id="nan",
    ),
    pytest.param(
        with_column("emb", fixed(np.array([[1, 2, 3]] * 3 + [[0, 0, 1e39]]))),
        422,
        ("documents[3].vectors.emb[2]", "overflows float32"),
        id="overflow",
    ),
    pytest.param(
        with_column(
            "emb",
            pa.array(
                [[1.0, 2.0, 3.0], [1.0, None, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], pa.list_(pa.float32())
            ),
        ),
        422,
        ("documents[1].vectors.emb[1]", "null"),
        id="null-element",
    ),
    pytest.param(
        with_column(
            "emb", pa.array([[1.0, 2.0, 3.0], [1.0, 2.0], [1.0, 2.0, 3.0], []], pa.list_(pa.float32()))
        ),
        422,
        ("documents[1].vectors.emb", "expected 3", "got 2"),
        id="ragged",
    ),
    pytest.param(
        with_column("emb", fixed(np.ones((4, 5)))),
        422,
        ("vectors.emb", "expected 3 dimensions, got 5", "emb (3)"),
        id="wrong-dims",
    ),
    pytest.param(
        with_column("emb", pa.array([["a"]] * 4)),
        422,
        ("column 'emb'", "lists of numbers"),
        id="list-of-strings",
    ),
    pytest.param(
        with_column("emb", pa.array([b"\0" * 12, b"\0" * 10, b"\0" * 12, b"\0" * 12])),
        422,
        ("documents[1].vectors.emb", "10 bytes"),
        id="odd-bytes",
    ),
    pytest.param(
        with_column("other", fixed(np.ones((4, 2)))),
        422,
        ("column 'other'", "unknown vector name", "emb"),
        id="undeclared-vector",
    ),
    pytest.param(
        with_column("bad name", fixed(np.ones((4, 2)))),
        422,
        ("column 'bad name'", "vector names"),
        id="bad-vector-name",
    ),
    pytest.param(
        with_column("when", pa.array([0, 1, 2, 3], pa.timestamp("s"))),
        422,
        ("column 'when'", "not supported"),
        id="timestamp",
    ),
    pytest.param(
        with_column("nested", pa.array([{"a": 1}] * 4)),
        422,
        ("column 'nested'", "not supported"),
        id="struct",
    ),
    pytest.param(
        with_column("a.b", [1, 2, 3, 4]), 422, ("column 'a.b'", "metadata names"), id="dotted-metadata"
    ),
    pytest.param(
        with_column("$x", [1, 2, 3, 4]), 422, ("column '$x'", "metadata names"), id="dollar-metadata"
    ),
    pytest.param(
        with_column("big", pa.array([1, 2**63, 3, 4], pa.uint64())),
        422,
        ("documents[1].metadata.big", "64 bits"),
        id="uint64",
    ),
    pytest.param(
        with_column("x", [1.0, float("inf"), 3.0, 4.0]),
        422,
        ("documents[1].metadata.x", "finite"),
        id="inf-metadata",
    ),
    pytest.param(parquet(pa.table(good()).slice(0, 0)), 422, ("at least one row",), id="no-rows"),
]


@pytest.mark.parametrize(("body", "status", "fragments"), BAD_UPLOADS)
async def test_bad_uploads_are_refused_whole(
    quick: Api, body: bytes, status: int, fragments: tuple[str, ...]
) -> None:
    col = await new_collection(quick, "declared", vector_indexes=[{"name": "emb", "dimensions": 3}])
    seed = parquet(pa.table({"document_id": ["seed"], "emb": fixed(np.ones((1, 3)))}))
    assert (await upload(quick, col, seed)).status_code == 200
    r = await upload(quick, col, body)
    out = assert_error(r, status, *fragments)
    if status == 422 and "validation_errors" in (out["error"].get("details") or {}):
        errors = out["error"]["details"]["validation_errors"]
        assert errors and all(e["loc"][0] in ("documents", "columns") for e in errors), errors
    assert await state(quick, col) == (1, [("emb", 3)])


async def test_every_bad_row_is_listed(quick: Api) -> None:
    col = await new_collection(quick)
    X = np.ones((60, 3), np.float32)
    X[5:60:2, 1] = np.nan
    r = await upload(
        quick, col, parquet(pa.table({"document_id": [f"r{i}" for i in range(60)], "emb": fixed(X)}))
    )
    body = assert_error(r, 422, "documents[5].vectors.emb[1]", "and 19 more", "not written")
    errors = body["error"]["details"]["validation_errors"]
    assert [e["loc"] for e in errors] == [["documents", i] for i in range(5, 45, 2)][:20]
    assert await state(quick, col) == (0, [])


async def test_upload_to_an_unknown_collection_or_without_a_namespace(quick: Api) -> None:
    body = parquet(pa.table(good()))
    assert_error(await upload(quick, "col_nothere000", body), 404, "collection")
    r = await quick.client.post(
        "/v1/collections/x/documents/upload", content=body, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert_error(r, 400, "X-Namespace")


# --------------------------------------------------------------------------- base64 in the JSON batch


def b64(x: np.ndarray) -> dict[str, str]:
    return {"b64": base64.b64encode(np.ascontiguousarray(x, "<f4").tobytes()).decode()}


async def test_base64_vectors_read_back_exactly(quick: Api) -> None:
    X = np.random.default_rng(3).standard_normal((30, 5)).astype(np.float32)
    col = await new_collection(quick)
    docs = [{"document_id": f"b{i}", "vectors": {"emb": b64(X[i])}, "metadata": {"i": i}} for i in range(30)]
    docs[1]["vectors"]["mixpeek://direct@v1/two"] = [1, 2]  # mixed with a JSON list in one batch
    r = await quick.client.post(UPSERT, json={"collection_id": col, "documents": docs}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert await state(quick, col) == (30, [("emb", 5), ("two", 2)])
    for i in (0, 1, 29):
        doc = await get(quick, col, f"b{i}")
        assert np.array_equal(vec(doc), X[i]) and doc["metadata"] == {"i": i}
    r = await quick.client.post(
        f"/v1/collections/{col}/documents",
        json={"document_id": "one", "vectors": {"emb": b64(X[0])}},
        headers=quick.h(NS),
    )
    assert r.status_code == 200, r.text
    assert np.array_equal(vec(await get(quick, col, "one")), X[0])


BAD_B64 = [
    pytest.param({"b64": "not base64!"}, ("documents[1].vectors.emb.b64", "base64"), id="not-base64"),
    pytest.param(
        {"b64": base64.b64encode(b"\0" * 10).decode()},
        ("documents[1].vectors.emb.b64", "10 bytes"),
        id="not-float32s",
    ),
    pytest.param({"b64": ""}, ("documents[1].vectors.emb", "empty"), id="empty"),
    pytest.param({"b64": 17}, ("documents[1].vectors.emb.b64", "string"), id="not-a-string"),
    pytest.param(b64(np.ones(4)), ("documents[1].vectors.emb", "expected 3", "got 4"), id="wrong-dims"),
    pytest.param(b64(np.array([1, np.nan, 2])), ("documents[1].vectors.emb[1]", "finite", "nan"), id="nan"),
    pytest.param(b64(np.array([1, 2, -np.inf])), ("documents[1].vectors.emb[2]", "finite", "-inf"), id="inf"),
    pytest.param({**b64(np.ones(3)), "dtype": "f4"}, ("documents[1].vectors.emb", "exactly"), id="extra-key"),
]


@pytest.mark.parametrize(("vector", "fragments"), BAD_B64)
async def test_bad_base64_vectors_are_rejected(quick: Api, vector: Any, fragments: tuple[str, ...]) -> None:
    col = await new_collection(quick)
    ok = {"document_id": "ok", "vectors": {"emb": b64(np.ones(3)), "fresh": [1.0]}}
    r = await quick.client.post(
        UPSERT,
        json={"collection_id": col, "documents": [ok, {"document_id": "bad", "vectors": {"emb": vector}}]},
        headers=AUTH,
    )
    body = assert_error(r, 422, *fragments)
    assert body["error"]["details"]["validation_errors"][0]["loc"] == ["documents", 1]
    assert await state(quick, col) == (0, [])


# --------------------------------------------------------------------------- numbers orjson reads differently


async def test_numbers_orjson_reads_as_floats_are_judged_as_written(quick: Api) -> None:
    col = await new_collection(quick)
    h = JSON_HEADERS

    def raw(doc: str) -> bytes:
        return ('{"collection_id": "' + col + '", "documents": [' + doc + "]}").encode()

    # an integer literal beyond 64 bits: refused as the integer it is (orjson would read a float)
    r = await quick.client.post(
        UPSERT, content=raw('{"document_id": "i", "metadata": {"n": -' + "9" * 25 + "}}"), headers=h
    )
    assert_error(r, 422, "documents[0].metadata.n", "64 bits")
    r = await quick.client.post(
        UPSERT, content=raw('{"document_id": "v", "vectors": {"emb": [1, 1' + "0" * 39 + "]}}"), headers=h
    )
    assert_error(r, 422, "documents[0].vectors.emb[1]", "integer overflows float32")
    # the same magnitudes written as floats are fine
    body = raw(
        '{"document_id": "f", "vectors": {"emb": [1, 1e30]}, '
        '"metadata": {"n": 1e25, "m": 12345678901234567890.0}}'
    )
    r = await quick.client.post(UPSERT, content=body, headers=h)
    assert r.status_code == 200, r.text
    doc = await get(quick, col, "f")
    assert doc["metadata"] == {"n": 1e25, "m": 12345678901234567890.0} and doc["vectors"]["emb"][1] == float(
        np.float32(1e30)
    )
    # an integer within 64 bits stays an integer
    r = await quick.client.post(
        UPSERT, content=raw('{"document_id": "k", "metadata": {"n": 9223372036854775807}}'), headers=h
    )
    assert r.status_code == 200, r.text
    assert (await get(quick, col, "k"))["metadata"] == {"n": 2**63 - 1}


async def test_lone_surrogates_are_a_validation_error(quick: Api) -> None:
    col = await new_collection(quick)
    for doc in (
        '{"document_id": "s", "metadata": {"x": "\\ud800"}}',
        '{"document_id": "\\udfff"}',
        '{"document_id": "t", "metadata": {"\\ud800": 1}}',
    ):
        body = ('{"collection_id": "' + col + '", "documents": [' + doc + "]}").encode()
        assert_error(
            await quick.client.post(UPSERT, content=body, headers=JSON_HEADERS),
            422,
            "documents[0]",
            "Unicode",
        )
    assert json.loads('"\\ud800"') == "\ud800"  # the stdlib does read them
    assert await state(quick, col) == (0, [])


# --------------------------------------------------------------------------- receive buffers


async def test_upload_bodies_reuse_receive_buffers_without_mixing_them(quick: Api) -> None:
    """api.body_buffers: the second upload is read from the first one's buffer (longer than it),
    a body without Content-Length longer than the kept buffer grows it, and a refused upload
    leaves the next one intact."""
    from api import body_buffers

    body_buffers._idle.clear()
    rng = np.random.default_rng(5)
    X, Y, Z = (rng.standard_normal((n, 64)).astype(np.float32) for n in (400, 30, 900))

    def file(prefix: str, M: np.ndarray) -> bytes:
        ids = [f"{prefix}{i}" for i in range(len(M))]
        return arrow_stream(pa.table({"document_id": ids, "emb": fixed(M)}))

    big, small, bigger = file("x", X), file("y", Y), file("z", Z)
    col = await new_collection(quick, vector_indexes=[{"name": "emb", "dimensions": 64}])
    assert (await upload(quick, col, big, "application/vnd.apache.arrow.stream")).status_code == 200
    assert body_buffers.kept_bytes() == len(big)
    kept = body_buffers._idle[0]
    r = await upload(quick, col, small, "application/vnd.apache.arrow.stream")
    assert r.status_code == 200, r.text
    assert body_buffers._idle == [kept]  # the same buffer, read only up to the body's length
    assert np.array_equal(vec(await get(quick, col, "y29")), Y[29])
    assert np.array_equal(vec(await get(quick, col, "x399")), X[399])

    no_ids = arrow_stream(pa.table({"emb": fixed(Y)}))
    assert_error(await upload(quick, col, no_ids, "application/vnd.apache.arrow.stream"), 422, "document_id")

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(bigger), 7_000):
            yield bigger[i : i + 7_000]

    r = await quick.client.post(
        f"/v1/collections/{col}/documents/upload",
        content=chunks(),
        headers={**quick.h(NS), "Content-Type": "application/vnd.apache.arrow.stream"},
    )
    assert "content-length" not in r.request.headers
    assert r.status_code == 200, r.text
    for i in (0, 450, 899):
        assert np.array_equal(vec(await get(quick, col, f"z{i}")), Z[i])
    assert max(len(b) for b in body_buffers._idle) >= len(bigger)
    assert await state(quick, col) == (400 + 30 + 900, [("emb", 64)])


def test_a_buffer_still_viewed_is_not_reused() -> None:
    from api import body_buffers

    body_buffers._idle.clear()
    buf = bytearray(b"abcdef")
    view = memoryview(buf)[:4]
    held = np.frombuffer(view, dtype=np.uint8)  # as a decoded Arrow column would hold it
    body_buffers._release(view, buf)
    assert body_buffers._idle == []
    del held
    view = memoryview(buf)[:4]
    body_buffers._release(view, buf)
    assert body_buffers._idle == [buf]
    assert body_buffers._take(3) is buf and body_buffers._idle == []
    assert len(body_buffers._take(10)) == 10  # nothing kept: a new one
