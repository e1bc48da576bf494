"""Auth and namespace isolation over HTTP (contract §0.2, §0.2.1, §2.1).

Data of one namespace is never visible from another, whatever the key; scoped keys are confined to
their namespaces and may not manage namespaces or keys; keys are stored hashed and revocable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_KEY, Api, blobs, serve_asgi

pytestmark = pytest.mark.e2e

ADHOC_CONFIG = {
    "algorithm": "kmeans",
    "algorithm_params": {"n_clusters": 3},
    "feature_vector": {"vector_name": "emb"},
}


@pytest.fixture
async def quick(make_settings: Any) -> AsyncIterator[Api]:
    """The real app without the embedded worker, for tests that never start a run (fast teardown)."""
    async with serve_asgi(make_settings(embedded_worker=False)) as a:
        yield a


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_error(r: httpx.Response, status: int, etype: str, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, (r.request.method, str(r.request.url), r.status_code, r.text)
    body = r.json()
    assert "detail" not in body, body
    assert body["success"] is False and body["status"] == status, body
    assert body["error"]["type"] == etype and isinstance(body["error"]["message"], str), body
    assert body["error"]["message"], body
    if code is not None:
        assert body["error"].get("code") == code, body
    return body  # type: ignore[no-any-return]


async def make_namespace(api: Api, name: str) -> str:
    r = await api.client.post("/v1/namespaces", json={"namespace_name": name}, headers=bearer(ADMIN_KEY))
    assert r.status_code == 200, r.text
    assert r.json()["namespace_name"] == name and r.json()["namespace_id"].startswith("ns_")
    return str(r.json()["namespace_id"])


async def make_key(api: Api, name: str, namespaces: list[str]) -> dict[str, Any]:
    r = await api.client.post(
        "/v1/api-keys", json={"name": name, "namespaces": namespaces}, headers=bearer(ADMIN_KEY)
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["key"] and body["key_id"] and body["admin"] is False
    return body  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- authentication


async def test_bad_credentials_all_get_the_same_401(quick: Api) -> None:
    c = quick.client
    await make_namespace(quick, "team-a")
    key = await make_key(quick, "soon-revoked", ["*"])
    assert (await c.get("/v1/collections", headers=quick.h("team-a", key["key"]))).status_code == 200
    r = await c.delete(f"/v1/api-keys/{key['key_id']}", headers=bearer(ADMIN_KEY))
    assert r.status_code == 200 and r.json()["revoked"] is True

    variants: dict[str, dict[str, str]] = {
        "no key": {},
        "empty header": {"Authorization": ""},
        "basic scheme": {"Authorization": "Basic dXNlcjpwYXNz"},
        "token scheme": {"Authorization": f"Token {ADMIN_KEY}"},
        "bare key": {"Authorization": ADMIN_KEY},
        "bearer without token": {"Authorization": "Bearer"},
        "unknown key": bearer("cd_this-key-was-never-issued-0000000"),
        "admin key with a typo": bearer(ADMIN_KEY + "x"),
        "revoked key": bearer(key["key"]),
    }
    routes = [
        ("GET", "/v1/collections"),
        ("GET", "/v1/clusters"),
        ("POST", "/v1/clusters/execute"),
        ("GET", "/v1/tasks/task_00000000000000000000000000000000"),
        ("GET", "/v1/namespaces"),
        ("POST", "/v1/api-keys"),
        ("POST", "/v1/namespaces/team-a/documents/upsert"),
    ]
    bodies = set()
    for label, headers in variants.items():
        for method, path in routes:
            # auth is checked before the namespace header and before the body
            r = await c.request(method, path, headers={**headers, "X-Namespace": "team-a"}, json={})
            body = assert_error(r, 401, "unauthorized")
            bodies.add(r.text)
            assert ADMIN_KEY not in r.text and key["key"] not in r.text, (label, r.text)
        r = await c.get("/v1/collections", headers=headers)  # no X-Namespace either: still 401
        assert_error(r, 401, "unauthorized")
        bodies.add(r.text)
    assert len(bodies) == 1, f"401 bodies differ, which lets a caller probe keys: {bodies}"
    assert body["error"]["message"]
    # none of those requests wrote anything
    assert (await c.get("/v1/collections", headers=quick.h("team-a"))).json()["results"] == []

    r = await c.get("/v1/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    r = await c.get("/v1/health", headers=bearer("cd_garbage-key-000000000000000"))
    assert r.status_code == 200


async def test_missing_namespace_header_is_400_namespace_required(quick: Api) -> None:
    c = quick.client
    routes = [
        ("GET", "/v1/clusters"),
        ("POST", "/v1/clusters"),
        ("POST", "/v1/clusters/list"),
        ("POST", "/v1/clusters/execute"),
        ("GET", "/v1/clusters/clust_0000000000"),
        ("GET", "/v1/collections"),
        ("POST", "/v1/collections"),
        ("POST", "/v1/collections/list"),
        ("GET", "/v1/collections/col_0000000000"),
        ("GET", "/v1/collections/col_0000000000/documents/count"),
    ]
    for method, path in routes:
        for headers in (bearer(ADMIN_KEY), {**bearer(ADMIN_KEY), "X-Namespace": "   "}):
            r = await c.request(method, path, headers=headers, json={})
            body = assert_error(r, 400, "bad_request", code="namespace_required")
            assert "X-Namespace" in body["error"]["message"]
    # nothing was created by those calls
    r = await c.get("/v1/namespaces", headers=bearer(ADMIN_KEY))
    assert r.json()["results"] == []
    # the no-namespace routes do not ask for it
    r = await c.get("/v1/tasks/task_00000000000000000000000000000000", headers=bearer(ADMIN_KEY))
    assert_error(r, 404, "not_found")
    assert (await c.get("/v1/namespaces", headers=bearer(ADMIN_KEY))).status_code == 200


# --------------------------------------------------------------------------- scoped keys


async def test_scoped_key_is_confined_to_its_namespace(quick: Api) -> None:
    c = quick.client
    ns_a = await make_namespace(quick, "scope-a")
    ns_b = await make_namespace(quick, "scope-b")
    key = await make_key(quick, "a-only", ["scope-a"])
    assert key["namespaces"] == [ns_a]  # names are resolved to ids when the key is made
    k = key["key"]

    # its own namespace, by name and by id
    for ident in ("scope-a", ns_a):
        r = await c.get("/v1/collections", headers=quick.h(ident, k))
        assert r.status_code == 200, r.text
    r = await c.post("/v1/collections", json={"collection_name": "mine"}, headers=quick.h("scope-a", k))
    assert r.status_code == 200 and r.json()["namespace_id"] == ns_a

    # another namespace, by name and by id: 403 forbidden on every namespaced route
    for ident in ("scope-b", ns_b):
        for method, path in [
            ("GET", "/v1/collections"),
            ("POST", "/v1/collections"),
            ("GET", "/v1/clusters"),
            ("POST", "/v1/clusters/list"),
            ("POST", "/v1/clusters/execute"),
        ]:
            r = await c.request(method, path, headers=quick.h(ident, k), json={"collection_name": "theirs"})
            assert_error(r, 403, "forbidden", code="forbidden")
        r = await c.post(
            f"/v1/namespaces/{ident}/documents/upsert",
            headers=bearer(k),
            json={"collection_id": "anything", "documents": [{"document_id": "x"}]},
        )
        assert_error(r, 403, "forbidden", code="forbidden")
    r = await c.get("/v1/collections", headers=quick.h("scope-b"))
    assert r.json()["results"] == [], "the forbidden create wrote into B"

    # namespace and key management is for admin keys only
    for method, path, body in [
        ("GET", "/v1/namespaces", None),
        ("POST", "/v1/namespaces", {"namespace_name": "sneaky"}),
        ("GET", f"/v1/namespaces/{ns_a}", None),
        ("DELETE", f"/v1/namespaces/{ns_a}", None),
        ("DELETE", f"/v1/namespaces/{ns_b}", None),
        ("GET", "/v1/api-keys", None),
        ("POST", "/v1/api-keys", {"name": "escalate", "namespaces": ["*"]}),
        ("GET", f"/v1/api-keys/{key['key_id']}", None),
        ("DELETE", f"/v1/api-keys/{key['key_id']}", None),
    ]:
        r = await c.request(method, path, headers=bearer(k), json=body)
        assert_error(r, 403, "forbidden", code="forbidden")
    assert (await c.get(f"/v1/namespaces/{ns_b}", headers=bearer(ADMIN_KEY))).status_code == 200
    keys = (await c.get("/v1/api-keys", headers=bearer(ADMIN_KEY))).json()["results"]
    assert [x["name"] for x in keys if not x["admin"]] == ["a-only"]
    assert not any(x["revoked"] for x in keys)

    # an unknown namespace name: 403, and nothing is auto-created for a scoped key
    listing = "/v1/namespaces?include_total=true"
    before = (await c.get(listing, headers=bearer(ADMIN_KEY))).json()["total_count"]
    for method, path in [("GET", "/v1/collections"), ("POST", "/v1/collections")]:
        r = await c.request(method, path, headers=quick.h("brand-new-ns", k), json={"collection_name": "x1x"})
        assert_error(r, 403, "forbidden", code="forbidden")
    r = await c.post(
        "/v1/namespaces/brand-new-ns/documents/upsert",
        headers=bearer(k),
        json={"collection_id": "x1x", "documents": [{"document_id": "x"}]},
    )
    assert_error(r, 403, "forbidden", code="forbidden")
    assert_error(await c.get("/v1/namespaces/brand-new-ns", headers=bearer(ADMIN_KEY)), 404, "not_found")
    after = (await c.get(listing, headers=bearer(ADMIN_KEY))).json()["total_count"]
    assert after == before == 2

    # a key for unknown namespaces cannot be made
    r = await c.post(
        "/v1/api-keys", json={"name": "bad", "namespaces": ["no-such-ns"]}, headers=bearer(ADMIN_KEY)
    )
    body = assert_error(r, 422, "validation_error")
    assert "namespaces[0]" in body["error"]["message"]


# --------------------------------------------------------------------------- cross-namespace invisibility


async def _populate(api: Api, ns: str, *, prefix: str) -> dict[str, Any]:
    """A collection (named 'points' in every namespace), documents, a cluster with a completed run,
    and a completed ad-hoc run."""
    col, X = await api.make_collection(name="points", ns=ns, X=blobs(n_per=10, dims=4), prefix=prefix)
    cid = await api.make_cluster(col, ns=ns)
    r = await api.client.post(f"/v1/clusters/{cid}/execute", headers=api.h(ns))
    assert r.status_code == 200, r.text
    task_id = r.json()["task_id"]
    run = await api.wait_run(cid, r.json()["additional_data"]["run_id"], ns=ns)
    assert run["status"] == "completed", run
    r = await api.client.post(
        "/v1/clusters/execute",
        headers=api.h(ns),
        json={"collection_ids": [col], "config": ADHOC_CONFIG, "save_artifacts": True},
    )
    assert r.status_code == 200 and r.json()["status"] == "completed", r.text
    adhoc = r.json()
    return {
        "col": col,
        "n": len(X),
        "cluster": cid,
        "run": run["run_id"],
        "task": task_id,
        "members_key": run["members_key"],
        "adhoc_cluster": adhoc["cluster_id"],
        "adhoc_run": adhoc["run_id"],
        "doc": f"{prefix}00000",
    }


async def test_namespace_data_is_invisible_from_another_namespace(api: Api) -> None:
    c = api.client
    await make_namespace(api, "iso-a")
    ns_b = await make_namespace(api, "iso-b")
    key_a = (await make_key(api, "key-a", ["iso-a"]))["key"]
    key_b = (await make_key(api, "key-b", ["iso-b"]))["key"]
    a = await _populate(api, "iso-a", prefix="a")
    b = await _populate(api, "iso-b", prefix="b")
    cluster_a_before = (await c.get(f"/v1/clusters/{a['cluster']}", headers=api.h("iso-a", key_a))).json()
    a_ids = [a[k] for k in ("col", "cluster", "run", "task", "adhoc_cluster", "adhoc_run", "doc")]

    # the name 'points' resolves inside the caller's namespace
    r = await c.get("/v1/collections/points", headers=api.h("iso-b"))
    assert r.status_code == 200 and r.json()["collection_id"] == b["col"]

    doc_body = {"document_id": "intruder", "vectors": {"emb": [1.0, 0.0, 0.0, 0.0]}, "metadata": {"x": 1}}
    col, cl, run, doc = a["col"], a["cluster"], a["run"], a["doc"]
    probes: list[tuple[str, str, Any]] = [
        ("GET", f"/v1/collections/{col}", None),
        ("DELETE", f"/v1/collections/{col}", None),
        ("GET", f"/v1/collections/{col}/documents", None),
        ("POST", f"/v1/collections/{col}/documents/list", {}),
        ("GET", f"/v1/collections/{col}/documents/count", None),
        ("GET", f"/v1/collections/{col}/documents/{doc}", None),
        ("GET", f"/v1/collections/{col}/documents/{doc}?return_vectors=true", None),
        ("DELETE", f"/v1/collections/{col}/documents/{doc}", None),
        ("POST", f"/v1/collections/{col}/documents", doc_body),
        ("POST", f"/v1/collections/{col}/documents", {**doc_body, "document_id": doc}),
        ("GET", f"/v1/clusters/{cl}", None),
        ("PATCH", f"/v1/clusters/{cl}", {"cluster_name": "hijacked", "metadata": {"owner": "b"}}),
        ("DELETE", f"/v1/clusters/{cl}", None),
        ("POST", f"/v1/clusters/{cl}/execute", {}),
        ("GET", f"/v1/clusters/{cl}/executions", None),
        ("GET", f"/v1/clusters/{cl}/executions/{run}", None),
        ("POST", f"/v1/clusters/{cl}/executions/list", {}),
        ("GET", f"/v1/clusters/{a['adhoc_cluster']}", None),
        ("GET", f"/v1/clusters/{a['adhoc_cluster']}/executions/{a['adhoc_run']}", None),
        ("DELETE", f"/v1/clusters/{a['adhoc_cluster']}", None),
        # A's run id under B's own cluster
        ("GET", f"/v1/clusters/{b['cluster']}/executions/{run}", None),
        # A's collection used as input from B
        ("POST", "/v1/clusters/execute", {"collection_ids": [col], "config": ADHOC_CONFIG}),
        (
            "POST",
            "/v1/clusters",
            {
                "collection_ids": [col],
                "vector_config": {
                    "clustering_method": "kmeans",
                    "feature_uris": ["emb"],
                    "algorithm_params": {"n_clusters": 3},
                },
            },
        ),
    ]
    for key in (ADMIN_KEY, key_b):
        for method, path, body in probes:
            r = await c.request(method, path, headers=api.h("iso-b", key), json=body)
            assert_error(r, 404, "not_found")
        # BYO upsert naming namespace B in the path, A's collection id in the body
        for ns_in_path in ("iso-b", ns_b):
            r = await c.post(
                f"/v1/namespaces/{ns_in_path}/documents/upsert",
                headers=bearer(key),
                json={"collection_id": col, "documents": [{**doc_body, "document_id": doc}]},
            )
            assert_error(r, 404, "not_found")

    # a task of A's run is invisible to B's scoped key, visible to A's and to the admin key
    assert_error(await c.get(f"/v1/tasks/{a['task']}", headers=bearer(key_b)), 404, "not_found")
    for key in (key_a, ADMIN_KEY):
        r = await c.get(f"/v1/tasks/{a['task']}", headers=bearer(key))
        assert r.status_code == 200 and r.json()["additional_data"]["run_id"] == run
    # and vice versa
    assert_error(await c.get(f"/v1/tasks/{b['task']}", headers=bearer(key_a)), 404, "not_found")

    # B's lists never mention anything of A
    lists = [
        ("GET", "/v1/collections?limit=100", None),
        ("POST", "/v1/collections/list", {"limit": 100}),
        ("GET", "/v1/clusters?limit=100", None),
        ("POST", "/v1/clusters/list", {"limit": 100}),
        ("GET", f"/v1/collections/{b['col']}/documents?limit=1000", None),
        ("POST", f"/v1/collections/{b['col']}/documents/list", {"limit": 1000}),
        ("GET", f"/v1/clusters/{b['cluster']}/executions", None),
        ("POST", f"/v1/clusters/{b['cluster']}/executions/list", {"limit": 100}),
    ]
    for key in (ADMIN_KEY, key_b):
        for method, path, body in lists:
            r = await c.request(method, path, headers=api.h("iso-b", key), json=body)
            assert r.status_code == 200, r.text
            for ident in a_ids:
                assert ident not in r.text, (path, ident)
    docs_b = (await c.get(f"/v1/collections/{b['col']}/documents?limit=1000", headers=api.h("iso-b"))).json()
    assert docs_b["total_count"] == b["n"]
    assert {d["collection_id"] for d in docs_b["results"]} == {b["col"]}

    # nothing changed in A (checked with A's own key)
    ha = api.h("iso-a", key_a)
    r = await c.get(f"/v1/collections/{col}/documents/count", headers=ha)
    assert r.status_code == 200 and r.json()["count"] == a["n"]
    r = await c.get(f"/v1/collections/{col}/documents/intruder", headers=ha)
    assert r.status_code == 404
    r = await c.get(f"/v1/collections/{col}/documents/{doc}", headers=ha)
    assert r.status_code == 200 and r.json()["metadata"] == {"i": 0}
    r = await c.get(f"/v1/clusters/{cl}", headers=ha)
    assert r.status_code == 200 and r.json() == cluster_a_before
    r = await c.post(f"/v1/clusters/{cl}/executions/list", headers=ha)
    assert [x["run_id"] for x in r.json()["results"]] == [run]
    r = await c.get(f"/v1/clusters/{a['adhoc_cluster']}/executions/{a['adhoc_run']}", headers=ha)
    assert r.status_code == 200 and r.json()["status"] == "completed"
    assert api.app.state.services.artifacts.exists(a["members_key"])
    # A's scoped key sees nothing of B either
    r = await c.get("/v1/collections", headers=ha)
    assert [x["collection_id"] for x in r.json()["results"]] == [col]
    assert_error(await c.get(f"/v1/collections/{b['col']}", headers=ha), 404, "not_found")
    assert_error(await c.get(f"/v1/clusters/{b['cluster']}", headers=ha), 404, "not_found")


# --------------------------------------------------------------------------- key storage and revocation


async def test_api_keys_are_stored_hashed_and_revocable(quick: Api) -> None:
    c = quick.client
    ns_a = await make_namespace(quick, "hash-a")
    created = await make_key(quick, "ci", ["hash-a"])
    k = created["key"]
    assert created["namespaces"] == [ns_a] and created["revoked"] is False

    stored = [d async for d in quick.app.state.services.db.api_keys.find({})]
    assert len(stored) == 2  # the bootstrap admin key and this one
    for d in stored:
        text = repr(d)
        assert k not in text and ADMIN_KEY not in text, d
        assert len(d["key_hash"]) == 64
    # listing and reading keys never shows secrets or hashes
    for r in (
        await c.get("/v1/api-keys", headers=bearer(ADMIN_KEY)),
        await c.get(f"/v1/api-keys/{created['key_id']}", headers=bearer(ADMIN_KEY)),
    ):
        assert r.status_code == 200
        assert k not in r.text and "key_hash" not in r.text and ADMIN_KEY not in r.text
        for d in stored:
            assert d["key_hash"] not in r.text

    assert (await c.get("/v1/collections", headers=quick.h("hash-a", k))).status_code == 200
    r = await c.delete(f"/v1/api-keys/{created['key_id']}", headers=bearer(ADMIN_KEY))
    assert r.status_code == 200
    assert r.json() == {"success": True, "key_id": created["key_id"], "revoked": True}
    unknown = await c.get("/v1/collections", headers=quick.h("hash-a", "cd_never-issued-key-000000000000"))
    for method, path in [("GET", "/v1/collections"), ("GET", "/v1/clusters")]:
        r = await c.request(method, path, headers=quick.h("hash-a", k))
        assert_error(r, 401, "unauthorized")
        assert r.text == unknown.text
    r = await c.get(f"/v1/api-keys/{created['key_id']}", headers=bearer(ADMIN_KEY))
    assert r.json()["revoked"] is True
    assert_error(await c.delete("/v1/api-keys/key_doesnotexist", headers=bearer(ADMIN_KEY)), 404, "not_found")
    # the admin key is unaffected
    assert (await c.get("/v1/collections", headers=quick.h("hash-a"))).status_code == 200


# --------------------------------------------------------------------------- namespace deletion


async def test_delete_namespace_removes_everything_in_it(api: Api) -> None:
    c = api.client
    db = api.app.state.services.db
    store = api.app.state.services.artifacts
    ns_a = await make_namespace(api, "gone-a")
    ns_b = await make_namespace(api, "kept-b")
    key_a = await make_key(api, "key-a", ["gone-a", "kept-b"])
    a = await _populate(api, "gone-a", prefix="a")
    b = await _populate(api, "kept-b", prefix="b")
    for coll in ("collections", "documents", "clusters", "cluster_executions"):
        assert await db[coll].count_documents({"namespace_id": ns_a}) > 0, coll

    r = await c.delete(f"/v1/namespaces/{ns_a}", headers=bearer(ADMIN_KEY))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["success"] is True and out["namespace_id"] == ns_a
    assert out["deleted_clusters"] == 2 and out["deleted_executions"] == 2
    assert out["deleted_documents"] == a["n"]

    for coll in ("collections", "documents", "clusters", "cluster_executions"):
        assert await db[coll].count_documents({"namespace_id": ns_a}) == 0, coll
    assert await db.namespaces.count_documents({"namespace_id": ns_a}) == 0
    assert not store.exists(a["members_key"])
    assert_error(await c.get(f"/v1/namespaces/{ns_a}", headers=bearer(ADMIN_KEY)), 404, "not_found")
    assert_error(await c.get("/v1/namespaces/gone-a", headers=bearer(ADMIN_KEY)), 404, "not_found")
    assert_error(await c.get(f"/v1/tasks/{a['task']}", headers=bearer(ADMIN_KEY)), 404, "not_found")
    assert_error(await c.delete(f"/v1/namespaces/{ns_a}", headers=bearer(ADMIN_KEY)), 404, "not_found")

    # the scoped key loses the namespace; a new namespace reusing the name starts empty and stays out of reach
    r = await c.get(f"/v1/api-keys/{key_a['key_id']}", headers=bearer(ADMIN_KEY))
    assert r.json()["namespaces"] == [ns_b]
    assert_error(await c.get("/v1/collections", headers=api.h("gone-a", key_a["key"])), 403, "forbidden")
    r = await c.get("/v1/collections", headers=api.h("gone-a"))  # admin: auto-creates a fresh namespace
    assert r.status_code == 200 and r.json()["results"] == []
    assert_error(await c.get(f"/v1/collections/{a['col']}", headers=api.h("gone-a")), 404, "not_found")
    assert_error(await c.get(f"/v1/clusters/{a['cluster']}", headers=api.h("gone-a")), 404, "not_found")
    assert_error(await c.get("/v1/collections", headers=api.h("gone-a", key_a["key"])), 403, "forbidden")

    # the other namespace is intact
    hb = api.h("kept-b", key_a["key"])
    r = await c.get(f"/v1/collections/{b['col']}/documents/count", headers=hb)
    assert r.status_code == 200 and r.json()["count"] == b["n"]
    r = await c.get(f"/v1/clusters/{b['cluster']}/executions/{b['run']}", headers=hb)
    assert r.status_code == 200 and r.json()["status"] == "completed"
    assert store.exists(b["members_key"])
    r = await c.get(f"/v1/tasks/{b['task']}", headers=bearer(key_a["key"]))
    assert r.status_code == 200
