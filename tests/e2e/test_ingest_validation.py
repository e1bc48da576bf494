"""Ingestion validation over HTTP (contract §2.1, §3.3): every bad input is a 4xx ErrorResponse whose
message names the position and the field, a rejected batch writes nothing, and good writes read back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import ADMIN_KEY, Api, serve_asgi

pytestmark = pytest.mark.e2e

NS = "ingest"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
JSON_HEADERS = {**AUTH, "Content-Type": "application/json"}
UPSERT = f"/v1/namespaces/{NS}/documents/upsert"


@pytest.fixture
async def quick(make_settings: Any) -> AsyncIterator[Api]:
    """The real app without the embedded worker: ingestion never starts a run (fast teardown)."""
    async with serve_asgi(make_settings(embedded_worker=False)) as a:
        yield a


@pytest.fixture
async def client(quick: Api) -> AsyncIterator[httpx.AsyncClient]:
    """Same app, but an unhandled server exception comes back as the 500 a real client would see,
    instead of being re-raised into the test."""
    transport = httpx.ASGITransport(app=quick.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://clusterd.test", timeout=60) as c:
        yield c


def assert_error(r: httpx.Response, status: int | tuple[int, ...], *fragments: str) -> dict[str, Any]:
    """An ErrorResponse (never FastAPI's {"detail": ...}) whose message contains every fragment."""
    statuses = (status,) if isinstance(status, int) else status
    assert r.status_code in statuses, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"success", "status", "error"}, body
    assert body["success"] is False and body["status"] == r.status_code, body
    err = body["error"]
    assert isinstance(err["message"], str) and err["message"] and isinstance(err["type"], str), body
    expected_type = {
        400: "bad_request",
        404: "not_found",
        405: "method_not_allowed",
        409: "conflict",
        413: "payload_too_large",
        422: "validation_error",
    }[r.status_code]
    assert err["type"] == expected_type, body
    for fragment in fragments:
        assert fragment in err["message"], (fragment, err["message"])
    return body  # type: ignore[no-any-return]


async def new_collection(api: Api, name: str = "items", **extra: Any) -> str:
    r = await api.client.post("/v1/collections", json={"collection_name": name, **extra}, headers=api.h(NS))
    assert r.status_code == 200, r.text
    return str(r.json()["collection_id"])


async def upsert(api: Api, col: str, docs: list[dict[str, Any]]) -> httpx.Response:
    return await api.client.post(UPSERT, json={"collection_id": col, "documents": docs}, headers=AUTH)


async def seeded(api: Api, name: str = "items") -> str:
    """A collection whose `emb` index was inferred as 3 dimensions, holding two documents."""
    col = await new_collection(api, name)
    r = await upsert(
        api,
        col,
        [
            {"document_id": "seed-0", "vectors": {"emb": [1.0, 0.0, 0.0]}},
            {"document_id": "seed-1", "vectors": {"emb": [0.0, 1.0, 0.0]}},
        ],
    )
    assert r.status_code == 200, r.text
    return col


async def state(api: Api, col: str) -> tuple[int, list[tuple[str, int]]]:
    """(document count, [(index name, dimensions)]) of a collection."""
    r = await api.client.get(f"/v1/collections/{col}/documents/count", headers=api.h(NS))
    assert r.status_code == 200, r.text
    count = r.json()["count"]
    r = await api.client.get(f"/v1/collections/{col}", headers=api.h(NS))
    assert r.json()["document_count"] == count
    return count, [(ix["name"], ix["index"]["dimensions"]) for ix in r.json()["vector_indexes"]]


SEEDED_STATE = (2, [("emb", 3)])


# --------------------------------------------------------------------------- vectors


async def test_dimension_mismatch_names_every_bad_position(quick: Api) -> None:
    col = await seeded(quick)
    docs = [
        {"document_id": "ok", "vectors": {"emb": [1, 2, 3], "fresh": [1.0, 2.0]}},
        {"document_id": "bad-1", "vectors": {"emb": [1.0, 2.0, 3.0, 4.0]}},
        {"document_id": "ok-2", "vectors": {"emb": [1.0, 2.0, 3.0]}},
        {"document_id": "bad-3", "vectors": {"emb": [1.0, 2.0]}},
    ]
    body = assert_error(
        await upsert(quick, col, docs), 422, "documents[1].vectors.emb", "expected 3", "got 4", "emb (3)"
    )
    errors = body["error"]["details"]["validation_errors"]
    assert [e["loc"] for e in errors] == [["documents", 1], ["documents", 3]]
    assert "documents[3].vectors.emb" in errors[1]["msg"] and "got 2" in errors[1]["msg"]
    # all or nothing: the valid documents were not written and `fresh` was not indexed
    assert await state(quick, col) == SEEDED_STATE
    r = await quick.client.get(f"/v1/collections/{col}/documents/ok", headers=quick.h(NS))
    assert r.status_code == 404

    # a new name is fixed by its first use within the batch too
    docs = [
        {"document_id": "n0", "vectors": {"other": [1.0, 2.0]}},
        {"document_id": "n1", "vectors": {"other": [1.0, 2.0, 3.0]}},
    ]
    assert_error(await upsert(quick, col, docs), 422, "documents[1].vectors.other", "expected 2")
    assert await state(quick, col) == SEEDED_STATE

    # the single-document route checks the same index
    r = await quick.client.post(
        f"/v1/collections/{col}/documents", json={"vectors": {"emb": [1.0, 2.0]}}, headers=quick.h(NS)
    )
    assert_error(r, 422, "vectors.emb", "expected 3")
    assert await state(quick, col) == SEEDED_STATE


BAD_VECTORS = [
    pytest.param("[1.0, NaN, 2.0]", "documents[1].vectors.emb[1]", id="nan"),
    pytest.param("[1.0, 2.0, Infinity]", "documents[1].vectors.emb[2]", id="infinity"),
    pytest.param("[-Infinity, 2.0, 3.0]", "documents[1].vectors.emb[0]", id="minus-infinity"),
    pytest.param("[1e999, 2.0, 3.0]", "documents[1].vectors.emb[0]", id="1e999"),
    pytest.param("[1.0, 1e39, 3.0]", "documents[1].vectors.emb[1]", id="overflows-float32"),
    pytest.param("[1.0, 2.0, 1" + "0" * 400 + "]", "documents[1].vectors.emb[2]", id="huge-integer"),
    pytest.param("[[1.0, 2.0], [3.0]]", "documents[1].vectors.emb[0]", id="ragged"),
    pytest.param("[[1.0, 2.0, 3.0]]", "documents[1].vectors.emb[0]", id="nested"),
    pytest.param("[1.0, [2.0], 3.0]", "documents[1].vectors.emb[1]", id="nested-element"),
    pytest.param('["1.0", 2.0, 3.0]', "documents[1].vectors.emb[0]", id="string-element"),
    pytest.param("[1.0, true, 3.0]", "documents[1].vectors.emb[1]", id="bool-element"),
    pytest.param("[1.0, 2.0, null]", "documents[1].vectors.emb[2]", id="null-element"),
    pytest.param('[1.0, {"x": 1}, 3.0]', "documents[1].vectors.emb[1]", id="object-element"),
    pytest.param("[]", "documents[1].vectors.emb", id="empty"),
    pytest.param('"1.0,2.0,3.0"', "documents[1].vectors.emb", id="string"),
    pytest.param("3.0", "documents[1].vectors.emb", id="scalar"),
    pytest.param('{"values": [1.0, 2.0, 3.0]}', "documents[1].vectors.emb", id="object"),
]


@pytest.mark.parametrize(("vector_json", "where"), BAD_VECTORS)
async def test_bad_vector_values_are_rejected_with_their_position(
    quick: Api, client: httpx.AsyncClient, vector_json: str, where: str
) -> None:
    col = await seeded(quick)
    # sent as raw JSON text: NaN / Infinity / 1e999 cannot be produced by json= in httpx
    text = (
        '{"collection_id": "' + col + '", "documents": ['
        '{"document_id": "good", "vectors": {"emb": [0.5, 0.5, 0.5], "fresh": [1.0]}},'
        '{"document_id": "bad", "vectors": {"emb": ' + vector_json + "}}]}"
    )
    r = await client.post(UPSERT, content=text.encode(), headers=JSON_HEADERS)
    body = assert_error(r, 422, where)
    assert "0" * 50 not in r.text, "the error echoes a 400-digit number"
    assert body["error"]["details"]["validation_errors"][0]["loc"] == ["documents", 1]
    assert await state(quick, col) == SEEDED_STATE

    # the single-document route rejects the same value
    one = '{"document_id": "solo", "vectors": {"emb": ' + vector_json + "}}"
    r = await client.post(
        f"/v1/collections/{col}/documents", content=one.encode(), headers={**JSON_HEADERS, "X-Namespace": NS}
    )
    assert_error(r, 422, "vectors.emb")
    assert await state(quick, col) == SEEDED_STATE


async def test_bad_vector_maps_and_names(quick: Api) -> None:
    col = await seeded(quick)
    cases = [
        ({"emb": [1.0, 2.0, 3.0], "bad name": [1.0]}, "documents[0].vectors.bad name"),
        ({"emb": [1.0, 2.0, 3.0], "mixpeek://direct@v1/emb": [1.0, 2.0, 3.0]}, "given twice"),
        ([1.0, 2.0, 3.0], "documents[0].vectors"),
        ("emb", "documents[0].vectors"),
    ]
    for vectors, where in cases:
        assert_error(await upsert(quick, col, [{"document_id": "x", "vectors": vectors}]), 422, where)
    r = await quick.client.post(
        f"/v1/collections/{col}/documents",
        headers=quick.h(NS),
        json={"vectors": {"emb": [1.0, 2.0, 3.0], "x": [1.0] * 16385}},
    )
    assert_error(r, 422, "vectors.x", "16384")
    assert await state(quick, col) == SEEDED_STATE
    # a feature URI key is stored under its output name
    r = await upsert(quick, col, [{"document_id": "uri", "vectors": {"mixpeek://direct@v1/emb": [1, 2, 3]}}])
    assert r.status_code == 200, r.text
    assert await state(quick, col) == (3, [("emb", 3)])


async def test_unknown_vector_name_in_a_declared_collection(quick: Api) -> None:
    col = await new_collection(quick, "declared", vector_indexes=[{"name": "emb", "dimensions": 3}])
    assert await state(quick, col) == (0, [("emb", 3)])
    docs = [
        {"document_id": "a", "vectors": {"emb": [1.0, 2.0, 3.0]}},
        {"document_id": "b", "vectors": {"emb": [1.0, 2.0, 3.0], "extra": [1.0, 2.0]}},
    ]
    assert_error(
        await upsert(quick, col, docs), 422, "documents[1].vectors.extra", "unknown vector name", "emb"
    )
    assert_error(
        await upsert(quick, col, [{"document_id": "a", "vectors": {"emb": [1.0, 2.0]}}]),
        422,
        "documents[0].vectors.emb",
        "expected 3",
    )
    r = await quick.client.post(
        f"/v1/collections/{col}/documents", headers=quick.h(NS), json={"vectors": {"extra": [1.0]}}
    )
    assert_error(r, 422, "vectors.extra", "unknown vector name")
    assert await state(quick, col) == (0, [("emb", 3)])
    assert (await upsert(quick, col, docs[:1])).status_code == 200
    assert await state(quick, col) == (1, [("emb", 3)])


# --------------------------------------------------------------------------- batch shape and ids


async def test_batch_size_limit(quick: Api) -> None:
    col = await seeded(quick)
    docs = [{"document_id": f"d{i:04d}", "vectors": {"emb": [1.0, 0.0, float(i)]}} for i in range(1001)]
    assert_error(await upsert(quick, col, docs), 422, "documents", "1001", "1000")
    assert await state(quick, col) == SEEDED_STATE
    assert_error(await upsert(quick, col, []), 422, "documents")
    r = await upsert(quick, col, docs[:1000])
    assert r.status_code == 200 and r.json()["inserted"] == 1000
    assert await state(quick, col) == (1002, [("emb", 3)])


async def test_duplicate_document_id_within_a_batch(quick: Api) -> None:
    col = await seeded(quick)
    docs = [
        {"document_id": "dup", "vectors": {"emb": [1.0, 2.0, 3.0]}},
        {"document_id": "other", "vectors": {"emb": [1.0, 2.0, 3.0], "fresh": [1.0]}},
        {"document_id": "dup", "vectors": {"emb": [3.0, 2.0, 1.0]}},
    ]
    assert_error(await upsert(quick, col, docs), 422, "documents[2].document_id", "dup", "documents[0]")
    assert await state(quick, col) == SEEDED_STATE


async def test_document_id_is_required_and_must_be_a_string_in_upsert(quick: Api) -> None:
    col = await seeded(quick)
    docs = [
        {"document_id": "fine", "vectors": {"emb": [1.0, 2.0, 3.0], "fresh": [1.0, 2.0]}},
        {"vectors": {"emb": [1.0, 2.0, 3.0]}, "metadata": {"k": 1}},
    ]
    assert_error(await upsert(quick, col, docs), 422, "documents[1].document_id", "required")
    assert await state(quick, col) == SEEDED_STATE  # `fresh` was not indexed either
    for bad in (17, "", "   ", ["x"], "x" * 201):
        assert_error(
            await upsert(quick, col, [{"document_id": bad, "vectors": {"emb": [1, 2, 3]}}]),
            422,
            "documents[0].document_id",
        )
    assert_error(await upsert(quick, col, [{"document_id": "ok"}, "not-an-object"]), 422, "documents[1]")
    # the target collection itself
    r = await quick.client.post(UPSERT, json={"documents": [{"document_id": "x"}]}, headers=AUTH)
    assert_error(r, 422, "collection_id")
    assert_error(await upsert(quick, "col_nothere000", [{"document_id": "x"}]), 404, "collection_id")
    r = await quick.client.post(UPSERT, json={"collection_id": col, "documents": "x"}, headers=AUTH)
    assert_error(r, 422, "documents")
    assert await state(quick, col) == SEEDED_STATE


# --------------------------------------------------------------------------- metadata and fields


BAD_FIELDS = [
    pytest.param({"metadata": {"$set": 1}}, "documents[0].metadata.$set", id="dollar-key"),
    pytest.param({"metadata": {"a.b": 1}}, "documents[0].metadata.a.b", id="dotted-key"),
    pytest.param({"metadata": {"outer": {"$gt": 1}}}, "documents[0].metadata.outer.$gt", id="nested-dollar"),
    pytest.param({"metadata": {"xs": [{"a.b": 1}]}}, "documents[0].metadata.xs[0].a.b", id="dotted-in-list"),
    pytest.param({"metadata": {"": 1}}, "documents[0].metadata", id="empty-key"),
    pytest.param({"metadata": "not an object"}, "documents[0].metadata", id="metadata-not-object"),
    pytest.param({"$where": "1 == 1"}, "documents[0].$where", id="top-level-dollar"),
    pytest.param({"payload": {"$inc": 1}}, "$inc", id="payload-dollar"),
    pytest.param({"payload": {"x.y": 1}}, "x.y", id="payload-dotted"),
    pytest.param({"payload": ["not", "an", "object"]}, "documents[0].payload", id="payload-not-object"),
    pytest.param({"metadata": {"n": 2**70}}, "documents[0].metadata.n", id="int-beyond-64-bits"),
]


@pytest.mark.parametrize(("fields", "where"), BAD_FIELDS)
async def test_bad_field_names_and_values_are_rejected(
    quick: Api, client: httpx.AsyncClient, fields: dict[str, Any], where: str
) -> None:
    col = await seeded(quick)
    docs = [
        {"document_id": "good", "vectors": {"emb": [1.0, 2.0, 3.0], "fresh": [1.0]}},
        {"document_id": "bad", "vectors": {"emb": [1.0, 2.0, 3.0], "fresh": [1.0]}, **fields},
    ]
    # the bad document first so the expected position is documents[0]
    r = await client.post(UPSERT, json={"collection_id": col, "documents": docs[::-1]}, headers=AUTH)
    assert_error(r, 422, where)
    assert await state(quick, col) == SEEDED_STATE
    if "payload" not in fields:
        r = await client.post(f"/v1/collections/{col}/documents", json=docs[1], headers=quick.h(NS))
        assert_error(r, 422, where.removeprefix("documents[0]."))
        assert await state(quick, col) == SEEDED_STATE


# --------------------------------------------------------------------------- transport-level errors


async def test_body_over_the_size_limit_is_413(make_settings: Any) -> None:
    async with serve_asgi(make_settings(max_body_mb=1, embedded_worker=False)) as api:
        col = await seeded(api)
        pad = "x" * (1024 * 1024 + 64)
        big = json.dumps(
            {"collection_id": col, "documents": [{"document_id": "big", "metadata": {"pad": pad}}]}
        )
        r = await api.client.post(UPSERT, content=big.encode(), headers=JSON_HEADERS)
        assert_error(r, 413, "1 MB")

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
            data = big.encode()
            for i in range(0, len(data), 64 * 1024):
                yield data[i : i + 64 * 1024]

        r = await api.client.post(UPSERT, content=chunks(), headers=JSON_HEADERS)
        assert "content-length" not in r.request.headers
        assert_error(r, 413, "1 MB")
        r = await api.client.post(
            f"/v1/collections/{col}/documents", content=chunks(), headers={**JSON_HEADERS, "X-Namespace": NS}
        )
        assert_error(r, 413)
        assert await state(api, col) == SEEDED_STATE
        # just under the limit is fine
        small = json.dumps(
            {
                "collection_id": col,
                "documents": [{"document_id": "almost", "metadata": {"pad": "x" * (1024 * 1024 - 1024)}}],
            }
        )
        r = await api.client.post(UPSERT, content=small.encode(), headers=JSON_HEADERS)
        assert r.status_code == 200, r.text
        assert (await state(api, col))[0] == 3


@pytest.mark.parametrize(
    "payload", [b'{"collection_id": ', b"{'single': 'quotes'}", b"not json at all", b'{"a": 1,}', b""]
)
async def test_malformed_json_is_an_error_response(quick: Api, payload: bytes) -> None:
    col = await seeded(quick)
    h = {**JSON_HEADERS, "X-Namespace": NS}
    for path in (
        UPSERT,
        "/v1/collections",
        f"/v1/collections/{col}/documents",
        "/v1/api-keys",
        "/v1/namespaces",
    ):
        r = await quick.client.post(path, content=payload, headers=h)
        assert_error(r, (400, 422))
    assert await state(quick, col) == SEEDED_STATE


async def test_wrong_json_types_are_validation_errors(quick: Api) -> None:
    col = await seeded(quick)
    h = quick.h(NS)
    assert_error(await quick.client.post(UPSERT, json=[1, 2], headers=AUTH), 422)
    assert_error(await quick.client.post(f"/v1/collections/{col}/documents", json=[1, 2], headers=h), 422)
    assert_error(
        await quick.client.post("/v1/collections", json={"collection_name": 5}, headers=h),
        422,
        "collection_name",
    )
    assert_error(await quick.client.post("/v1/collections", json={}, headers=h), 422, "collection_name")
    r = await quick.client.post(
        "/v1/collections",
        headers=h,
        json={"collection_name": "dims", "vector_indexes": [{"name": "v", "dimensions": "3"}]},
    )
    assert_error(r, 422, "vector_indexes[0].dimensions")
    assert await state(quick, col) == SEEDED_STATE


async def test_unknown_routes_and_methods(quick: Api) -> None:
    for path in ("/v1/nope", "/v1/collections/x/documents/y/z", "/nope"):
        assert_error(await quick.client.get(path, headers=quick.h(NS)), 404)
    assert_error(await quick.client.put("/v1/collections", headers=quick.h(NS)), 405)
    assert_error(await quick.client.delete("/v1/namespaces/x/documents/upsert", headers=AUTH), 405)


# --------------------------------------------------------------------------- writes that succeed


async def test_create_document_honours_the_id_and_rejects_a_duplicate(quick: Api) -> None:
    col = await seeded(quick)
    url = f"/v1/collections/{col}/documents"
    h = quick.h(NS)
    r = await quick.client.post(
        url,
        headers=h,
        json={
            "document_id": "mine-1",
            "vectors": {"emb": [1, 2, 3]},
            "metadata": {"v": 1},
            "title": "kept as a field",
        },
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["document_id"] == "mine-1" and out["collection_id"] == col
    assert out["metadata"] == {"v": 1} and out["title"] == "kept as a field" and "vectors" not in out
    r = await quick.client.post(url, headers=h, json={"vectors": {"emb": [3, 2, 1]}})
    assert r.status_code == 200 and r.json()["document_id"].startswith("doc_")
    assert await state(quick, col) == (4, [("emb", 3)])

    r = await quick.client.post(
        url, headers=h, json={"document_id": "mine-1", "vectors": {"emb": [0, 0, 1]}, "metadata": {"v": 2}}
    )
    assert_error(r, 409, "mine-1")
    assert r.json()["error"]["code"] == "document_exists"
    r = await quick.client.get(f"{url}/mine-1", headers=h)
    assert r.json()["metadata"] == {"v": 1}
    assert await state(quick, col) == (4, [("emb", 3)])


async def test_rejected_duplicate_create_does_not_extend_the_vector_indexes(quick: Api) -> None:
    col = await seeded(quick)
    url = f"/v1/collections/{col}/documents"
    r = await quick.client.post(
        url,
        headers=quick.h(NS),
        json={"document_id": "seed-0", "vectors": {"emb": [1, 2, 3], "fresh": [1.0, 2.0]}},
    )
    assert_error(r, 409, "seed-0")
    assert await state(quick, col) == SEEDED_STATE, "a rejected create indexed the vector name 'fresh'"


async def test_single_create_errors_name_the_request_field(quick: Api) -> None:
    """The single-document route has no `documents` array: its messages should not point into one."""
    col = await seeded(quick)
    r = await quick.client.post(
        f"/v1/collections/{col}/documents", headers=quick.h(NS), json={"vectors": {"emb": [1.0, 2.0]}}
    )
    body = assert_error(r, 422, "vectors.emb")
    assert not body["error"]["message"].startswith("documents["), body["error"]["message"]


async def test_upsert_with_an_existing_id_replaces_the_document(quick: Api) -> None:
    col = await seeded(quick)
    h = quick.h(NS)
    r = await upsert(
        quick,
        col,
        [
            {
                "document_id": "seed-0",
                "vectors": {"emb": [0.0, 0.0, 1.0]},
                "metadata": {"version": 2},
                "payload": {"source": "byo"},
            },
            {"document_id": "new-1", "vectors": {"emb": [1.0, 1.0, 1.0]}},
        ],
    )
    assert r.status_code == 200, r.text
    assert r.json()["inserted"] == 2 and r.json()["document_ids"] == ["seed-0", "new-1"]
    assert await state(quick, col) == (3, [("emb", 3)])
    r = await quick.client.get(f"/v1/collections/{col}/documents/seed-0?return_vectors=true", headers=h)
    doc = r.json()
    assert doc["metadata"] == {"version": 2} and doc["source"] == "byo"
    assert doc["vectors"] == {"emb": [0.0, 0.0, 1.0]}
    # a second identical upsert is idempotent
    r = await upsert(
        quick,
        col,
        [{"document_id": "seed-0", "vectors": {"emb": [0.0, 0.0, 1.0]}, "metadata": {"version": 3}}],
    )
    assert r.status_code == 200
    assert await state(quick, col) == (3, [("emb", 3)])
    r = await quick.client.get(f"/v1/collections/{col}/documents/seed-0", headers=h)
    assert r.json()["metadata"] == {"version": 3} and "source" not in r.json()


async def test_vectors_round_trip_as_float32(quick: Api) -> None:
    col = await new_collection(quick)
    values = [0.1, 1 / 3, -2.5, 1e-8, 3.4e38, 7, -0.0, 123456.789]
    vectors = {"emb": values, "mixpeek://direct@v1/two": [1, 2]}
    r = await upsert(quick, col, [{"document_id": "v", "vectors": vectors}])
    assert r.status_code == 200, r.text
    expected = np.asarray(values, dtype=np.float64).astype(np.float32).tolist()
    assert expected != values  # the test would be vacuous otherwise
    h = quick.h(NS)
    r = await quick.client.get(f"/v1/collections/{col}/documents/v?return_vectors=true", headers=h)
    assert r.status_code == 200
    got = r.json()["vectors"]
    assert got["emb"] == expected and got["two"] == [1.0, 2.0]
    assert all(float(np.float32(x)) == x for x in got["emb"])
    r = await quick.client.get(f"/v1/collections/{col}/documents/v", headers=h)
    assert "vectors" not in r.json()
    r = await quick.client.post(
        f"/v1/collections/{col}/documents/list", json={"return_vectors": True}, headers=h
    )
    assert r.json()["results"][0]["vectors"]["emb"] == expected
    r = await quick.client.get(f"/v1/collections/{col}/documents", headers=h)
    assert "vectors" not in r.json()["results"][0]
    assert await state(quick, col) == (1, [("emb", len(values)), ("two", 2)])


async def test_count_and_pagination(quick: Api) -> None:
    col = await new_collection(quick)
    ids = [f"p{i:02d}" for i in range(7)]
    r = await upsert(
        quick,
        col,
        [{"document_id": i, "vectors": {"emb": [1.0, float(n)]}} for n, i in enumerate(reversed(ids))],
    )
    assert r.status_code == 200
    h = quick.h(NS)
    r = await quick.client.get(f"/v1/collections/{col}/documents/count", headers=h)
    assert r.json() == {"collection_id": col, "count": 7}
    r = await quick.client.get("/v1/collections/items/documents/count", headers=h)  # by name
    assert r.json() == {"collection_id": col, "count": 7}

    seen: list[str] = []
    for offset in (0, 3, 6):
        r = await quick.client.get(f"/v1/collections/{col}/documents?limit=3&offset={offset}", headers=h)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["total_documents"] == 7
        seen += [d["document_id"] for d in body["results"]]
        nxt = body["pagination"]["next_page"]
        if offset < 6:
            assert isinstance(nxt, str) and nxt == str(offset // 3 + 2)
        else:
            assert nxt is None and len(body["results"]) == 1
    assert seen == ids

    r = await quick.client.post(
        f"/v1/collections/{col}/documents/list",
        headers=h,
        json={"limit": 3, "offset": 3, "include_total": True},
    )
    body = r.json()
    assert [d["document_id"] for d in body["results"]] == ids[3:6]
    assert body["pagination"]["next_page"] == "3" and body["pagination"]["total"] == 7
    assert body["pagination"]["total_pages"] == 3
    r = await quick.client.post(
        f"/v1/collections/{col}/documents/list",
        headers=h,
        json={"limit": 3, "cursor": body["pagination"]["next_cursor"]},
    )
    assert [d["document_id"] for d in r.json()["results"]] == ids[6:]
    r = await quick.client.post(f"/v1/collections/{col}/documents/list", headers=h)  # empty body: defaults
    assert [d["document_id"] for d in r.json()["results"]] == ids

    for query in ("limit=0", "limit=1001", "offset=-1", "offset=10001", "page=0", "cursor=garbage"):
        r = await quick.client.get(f"/v1/collections/{col}/documents?{query}", headers=h)
        assert_error(r, 422, query.split("=")[0])

    r = await quick.client.delete(f"/v1/collections/{col}/documents/p03", headers=h)
    assert r.status_code == 200 and r.json() == {"success": True, "document_id": "p03"}
    assert_error(await quick.client.delete(f"/v1/collections/{col}/documents/p03", headers=h), 404, "p03")
    assert_error(await quick.client.get(f"/v1/collections/{col}/documents/p03", headers=h), 404, "p03")
    r = await quick.client.get(f"/v1/collections/{col}/documents/count", headers=h)
    assert r.json()["count"] == 6
