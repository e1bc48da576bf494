"""Security anchors over HTTP (reliability-notes §4): cross-namespace 404s on every route added after
test_isolation.py's probes, a canary grep, errors that leak nothing, hostile numbers and bodies, size
and count limits, and how keys are checked.

One app serves the module: namespace A (the caller) and namespace B (the victim, whose names all carry
CANARY) each hold a collection, documents, a cluster with a completed run (artifacts, an export, a
run name and a label override) and a failed run.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio

from core.settings import Settings
from tests.conftest import ADMIN_KEY, Api, blobs, serve_asgi

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

CANARY = "canary7q"
NS_A, NS_B = "sec-a", f"sec-b-{CANARY}"
ADHOC = {
    "algorithm": "kmeans",
    "algorithm_params": {"n_clusters": 2},
    "feature_vector": {"vector_name": "emb"},
}
ERROR_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    500: "internal_error",
    503: "service_unavailable",
}
LEAKS = re.compile(
    r"Traceback|File \"|pymongo|bson|mongomock|motor|site-packages|/work/|/tmp/|\.py\b|"
    r"line \d+|ObjectId|(?<![A-Za-z0-9])_id\b|key_hash",
)


@dataclass
class Tenant:
    ns: str
    ns_id: str
    key: str
    col: str
    doc: str
    cluster: str
    run: str
    task: str
    failed_cluster: str
    failed_run: str
    names: list[str] = field(default_factory=list)

    def ids(self) -> list[str]:
        return [
            self.ns_id,
            self.col,
            self.cluster,
            self.run,
            self.task,
            self.failed_cluster,
            self.failed_run,
            *self.names,
        ]


@dataclass
class World:
    api: Api
    raw: httpx.AsyncClient  # unhandled exceptions come back as the 500 a real client would see
    a: Tenant
    b: Tenant
    # (what A sent, what A got back) for every exchange, for the canary grep
    seen_by_a: list[tuple[str, str]] = field(default_factory=list)

    def saw(self, r: httpx.Response, text: str | None = None) -> None:
        sent = f"{r.request.method} {r.request.url} {r.request.content.decode('latin-1')}"
        self.seen_by_a.append((sent, r.text if text is None else text))

    def h(self, ns: str, key: str = ADMIN_KEY) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}", "X-Namespace": ns}


def _reject(literal: str) -> Any:
    raise AssertionError(f"non-JSON constant {literal} in a response")


def assert_error(r: httpx.Response, status: int) -> dict[str, Any]:
    """The contract's ErrorResponse, with nothing internal in it."""
    assert r.status_code == status, (r.request.method, str(r.request.url), r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = json.loads(r.text, parse_constant=_reject)  # strict JSON: no NaN / Infinity
    assert set(body) == {"success", "status", "error"}, body
    assert body["success"] is False and body["status"] == status, body
    err = body["error"]
    assert set(err) <= {"message", "type", "code", "details"}, body
    assert isinstance(err["message"], str) and err["message"], body
    assert err["type"] == ERROR_TYPES[status], body
    assert not LEAKS.search(r.text), r.text[:500]
    return body  # type: ignore[no-any-return]


async def make_tenant(api: Api, ns: str, tag: str) -> Tenant:
    c = api.client
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    r = await c.post("/v1/namespaces", json={"namespace_name": ns}, headers=admin)
    assert r.status_code == 200, r.text
    ns_id = r.json()["namespace_id"]
    r = await c.post("/v1/api-keys", json={"name": f"key-{tag}", "namespaces": [ns]}, headers=admin)
    assert r.status_code == 200, r.text
    key = r.json()["key"]
    col, _ = await api.make_collection(
        name=f"col-{tag}", ns=ns, X=blobs(n_per=6, dims=4), prefix=f"doc-{tag}-"
    )
    cluster = await api.make_cluster(col, ns=ns, k=3, cluster_name=f"cluster-{tag}")
    r = await c.post(f"/v1/clusters/{cluster}/execute", headers=api.h(ns))
    assert r.status_code == 200, r.text
    task = r.json()["task_id"]
    run = await api.wait_run(cluster, r.json()["additional_data"]["run_id"], ns=ns)
    assert run["status"] == "completed", run
    base = f"/v1/clusters/{cluster}/executions/{run['run_id']}"
    r = await c.patch(base + "/name", json={"run_name": f"run-{tag}"}, headers=api.h(ns))
    assert r.status_code == 200, r.text
    r = await c.patch(base + "/labels", json={"labels": {"cl_0": f"label-{tag}"}}, headers=api.h(ns))
    assert r.status_code == 200, r.text
    r = await c.get(base + "/export", headers=api.h(ns))
    assert r.status_code == 200, r.text
    # 18 points cannot make 50 clusters: the run fails (category validation, with a traceback)
    failed = await api.make_cluster(col, ns=ns, k=50, cluster_name=f"failing-{tag}")
    failed_run = await api.execute(failed, ns=ns)
    assert failed_run["status"] == "failed", failed_run
    return Tenant(
        ns=ns,
        ns_id=ns_id,
        key=key,
        col=col,
        doc=f"doc-{tag}-00000",
        cluster=cluster,
        run=run["run_id"],
        task=task,
        failed_cluster=failed,
        failed_run=failed_run["run_id"],
        names=[f"col-{tag}", f"cluster-{tag}", f"run-{tag}", f"label-{tag}", f"doc-{tag}-", f"failing-{tag}"],
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    settings = Settings(
        api_keys=[ADMIN_KEY],
        data_dir=tmp_path_factory.mktemp("security") / "data",
        adhoc_wait_s=30,
        heartbeat_interval_s=1.0,
        max_body_mb=1,
        max_batch_documents=50,
        max_vector_dimensions=64,
    )
    async with serve_asgi(settings) as api:
        a = await make_tenant(api, NS_A, "a")
        b = await make_tenant(api, NS_B, CANARY)
        transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://clusterd.test", timeout=60) as raw:
            yield World(api, raw, a, b)


# --------------------------------------------------------------------------- cross-namespace matrix


def victim_routes(a: Tenant, b: Tenant) -> list[tuple[str, str, Any]]:
    """Routes naming B's resources, sent with X-Namespace A (test_isolation.py covers the cluster,
    collection and document CRUD probes; these are the routes added since, plus reads of members,
    centroids and artifacts)."""
    run_b = f"/v1/clusters/{b.cluster}/executions/{b.run}"
    # B's run under A's own cluster, and A's run under B's cluster
    mixed = [f"/v1/clusters/{a.cluster}/executions/{b.run}", f"/v1/clusters/{b.cluster}/executions/{a.run}"]
    routes: list[tuple[str, str, Any]] = []
    for base in (run_b, *mixed):
        routes += [
            ("POST", base + "/cancel", None),
            ("GET", base + "/export", None),
            ("GET", base + "/export?format=parquet", None),
            ("GET", base + "/export?format=csv", None),
            ("GET", base + f"/export?format=csv&cluster_label=label-{CANARY}", None),
            ("GET", base + "/export/file", None),
            ("PATCH", base + "/labels", {"labels": {"cl_0": "stolen"}}),
            ("PATCH", base + "/name", {"run_name": "stolen"}),
            ("GET", base, None),
            ("GET", base + "?include_vectors=true", None),
        ]
    routes += [
        # B's pending-or-not state must not show through cancel (404, never 400 invalid_state)
        ("POST", f"/v1/clusters/{b.failed_cluster}/executions/{b.failed_run}/cancel", None),
        ("GET", f"/v1/clusters/{b.failed_cluster}/executions/{b.failed_run}", None),
        ("GET", f"/v1/clusters/{b.cluster}/executions?include_vectors=true", None),
        ("POST", f"/v1/clusters/{b.cluster}/executions/list", {"filters": {"run_id": b.run}}),
        ("GET", f"/v1/analytics/clusters/{b.cluster}/execution-history", None),
        ("GET", f"/v1/analytics/clusters/{b.cluster}/execution-history?hours=720&limit=1000", None),
        ("GET", f"/v1/analytics/clusters/{b.failed_cluster}/failures", None),
        ("GET", f"/v1/analytics/clusters/{b.failed_cluster}/failures?hours=720", None),
        ("GET", f"/v1/analytics/clusters/cluster-{CANARY}/execution-history", None),  # by name
        ("GET", f"/v1/clusters/cluster-{CANARY}", None),
        ("GET", f"/v1/clusters/{b.cluster}/groups", None),
        ("GET", f"/v1/clusters/{b.cluster}/groups?limit=1&members_limit=1000", None),
        ("GET", f"/v1/clusters/cluster-{CANARY}/groups", None),  # by name
        ("GET", f"/v1/clusters/{a.cluster}/groups?run_id={b.run}", None),
        ("GET", f"/v1/clusters/{b.cluster}/groups?run_id={a.run}", None),
        ("GET", f"/v1/clusters/{b.cluster}/visualization", None),
        ("GET", f"/v1/clusters/{b.cluster}/visualization?compact=true&max_points=1000000", None),
        ("GET", f"/v1/clusters/{b.cluster}/visualization?centroids_only=true", None),
        ("GET", f"/v1/clusters/cluster-{CANARY}/visualization", None),
        ("GET", f"/v1/clusters/{a.cluster}/visualization?run_id={b.run}", None),
        ("GET", f"/v1/clusters/{b.cluster}/visualization?run_id={a.run}", None),
        ("GET", f"/v1/collections/col-{CANARY}", None),
        ("GET", f"/v1/collections/{b.col}/documents/{b.doc}", None),
        ("GET", f"/v1/collections/{b.col}/documents/{b.doc}?return_vectors=true", None),
        ("DELETE", f"/v1/collections/{b.col}/documents/{b.doc}", None),
        ("GET", f"/v1/collections/{b.col}/documents?return_vectors=true", None),
        ("POST", f"/v1/collections/{b.col}/documents/list", {"return_vectors": True}),
        ("GET", f"/v1/collections/{b.col}/documents/count", None),
        # A's own document id under B's collection
        ("GET", f"/v1/collections/{b.col}/documents/{a.doc}", None),
        # B's document under A's collection
        ("GET", f"/v1/collections/{a.col}/documents/{b.doc}", None),
        ("DELETE", f"/v1/collections/{a.col}/documents/{b.doc}", None),
        ("POST", f"/v1/clusters/{b.cluster}/execute", {}),
        ("DELETE", f"/v1/clusters/{b.failed_cluster}", None),
        (
            "POST",
            "/v1/clusters/execute",
            {"collection_ids": [b.col], "config": ADHOC, "include_members": True},
        ),
    ]
    return routes


ROUTE_IDS = [
    f"{m} {p}"
    for m, p, _ in victim_routes(*[Tenant("x", "x", "k", "COL", "DOC", "CL", "RUN", "T", "FCL", "FRUN")] * 2)
]


@pytest.mark.parametrize("index", range(len(ROUTE_IDS)), ids=ROUTE_IDS)
async def test_another_namespace_is_404_on_every_route(world: World, index: int) -> None:
    method, path, body = victim_routes(world.a, world.b)[index]
    for key in (world.a.key, ADMIN_KEY):  # A's scoped key, and the admin key scoped by X-Namespace
        r = await world.raw.request(method, path, headers=world.h(NS_A, key), json=body)
        assert_error(r, 404)


async def test_tasks_of_another_namespace_are_404(world: World) -> None:
    r = await world.raw.get(f"/v1/tasks/{world.b.task}", headers=world.h(NS_A, world.a.key))
    assert_error(r, 404)
    r = await world.raw.get(f"/v1/tasks/{world.a.task}", headers=world.h(NS_A, world.b.key))
    assert_error(r, 404)
    r = await world.raw.get(f"/v1/tasks/{world.a.task}", headers=world.h(NS_A, world.a.key))
    assert r.status_code == 200 and r.json()["additional_data"]["run_id"] == world.a.run


async def test_scoped_key_may_not_name_the_other_namespace(world: World) -> None:
    c, a, b = world.raw, world.a, world.b
    for ident in (NS_B, b.ns_id):
        for method, path in (
            ("GET", f"/v1/clusters/{b.cluster}"),
            ("GET", f"/v1/analytics/clusters/{b.cluster}/failures"),
            ("GET", f"/v1/clusters/{b.cluster}/executions/{b.run}/export?format=csv"),
            ("GET", f"/v1/clusters/{b.cluster}/groups"),
            ("GET", f"/v1/clusters/{b.cluster}/visualization"),
        ):
            assert_error(await c.request(method, path, headers=world.h(ident, a.key)), 403)
        r = await c.post(
            f"/v1/namespaces/{ident}/documents/upsert",
            headers={"Authorization": f"Bearer {a.key}"},
            json={"collection_id": b.col, "documents": [{"document_id": "x"}]},
        )
        assert_error(r, 403)


async def test_lists_with_filters_never_show_the_other_namespace(world: World) -> None:
    a, b = world.a, world.b
    h = world.h(NS_A, a.key)
    lists: list[tuple[str, str, Any]] = [
        ("POST", "/v1/clusters/list", {"filters": {"cluster_id": b.cluster}}),
        ("POST", "/v1/clusters/list", {"filters": {"cluster_name": f"cluster-{CANARY}"}}),
        ("POST", "/v1/clusters/list", {"filters": {"namespace_id": b.ns_id}}),
        ("POST", "/v1/clusters/list", {"search": CANARY, "include_total": True}),
        ("GET", f"/v1/clusters?search={CANARY}", None),
        ("GET", f"/v1/clusters?search={b.cluster}", None),
        ("POST", f"/v1/clusters/{a.cluster}/executions/list", {"filters": {"run_id": b.run}}),
        ("POST", f"/v1/clusters/{a.cluster}/executions/list", {"search": CANARY}),
        ("POST", f"/v1/collections/{a.col}/documents/list", {"filters": {"document_id": b.doc}}),
        ("POST", f"/v1/collections/{a.col}/documents/list", {"search": CANARY, "return_vectors": True}),
        ("POST", "/v1/collections/list", {"limit": 1000}),
        ("GET", "/v1/collections?limit=1000", None),
    ]
    for method, path, body in lists:
        r = await world.raw.request(method, path, headers=h, json=body)
        world.saw(r)
        if r.status_code == 400:  # a filter on a field the list does not offer (namespace_id)
            assert_error(r, 400)
            continue
        assert r.status_code == 200, (path, body, r.text)
        assert r.json()["total_count"] == 0 or CANARY not in r.text, (path, r.text)
        assert b.cluster not in r.text and b.run not in r.text and b.doc not in r.text


async def test_canary_never_reaches_namespace_a(world: World) -> None:
    """Everything A sees (its own data, its lists, analytics, exports, and every 404 of the matrix)
    is free of B's ids and names."""
    a, c, h = world.a, world.raw, world.h(NS_A, world.a.key)
    for method, path, body in victim_routes(world.a, world.b):
        world.saw(await c.request(method, path, headers=h, json=body))
    run_a = f"/v1/clusters/{a.cluster}/executions/{a.run}"
    for method, path, body in [
        ("GET", f"/v1/clusters/{a.cluster}", None),
        ("GET", f"/v1/clusters/{a.cluster}/executions?include_vectors=true", None),
        ("GET", run_a + "?include_vectors=true", None),
        ("POST", f"/v1/clusters/{a.cluster}/executions/list", {"limit": 100}),
        ("GET", run_a + "/export?format=csv", None),
        ("GET", run_a + "/export", None),
        ("GET", f"/v1/clusters/{a.cluster}/groups?members_limit=1000", None),
        ("GET", f"/v1/clusters/{a.cluster}/visualization", None),
        ("GET", f"/v1/clusters/{a.cluster}/visualization?compact=true&run_id={a.run}", None),
        ("GET", f"/v1/analytics/clusters/{a.cluster}/execution-history?hours=720", None),
        ("GET", f"/v1/analytics/clusters/{a.failed_cluster}/failures?hours=720", None),
        ("GET", f"/v1/collections/{a.col}/documents?limit=1000&return_vectors=true", None),
        ("GET", f"/v1/tasks/{a.task}", None),
        ("GET", "/v1/clusters?limit=1000", None),
        (
            "POST",
            "/v1/clusters/execute",
            {"collection_ids": [a.col], "config": ADHOC, "include_members": True},
        ),
    ]:
        r = await c.request(method, path, headers=h, json=body)
        assert r.status_code == 200, (path, r.text[:300])
        world.saw(r)
    r = await c.get(run_a + "/export/file", headers=h)
    assert r.status_code == 200
    world.saw(r, r.content.decode("latin-1"))
    assert len(world.seen_by_a) > 50
    for sent, got in world.seen_by_a:
        # a 404 may repeat the id the caller itself sent ("cluster 'clust_…' not found"); nothing else
        for ident in [*world.b.ids(), CANARY]:
            if ident not in sent:
                assert ident not in got, (sent, ident, got[:300])


# --------------------------------------------------------------------------- nothing leaks in errors


async def test_failed_run_traceback_is_for_its_owner_only(world: World) -> None:
    a, b, c = world.a, world.b, world.raw
    path = f"/v1/clusters/{b.failed_cluster}/executions/{b.failed_run}"
    r = await c.get(path, headers=world.h(NS_B, b.key))
    assert r.status_code == 200 and r.json()["status"] == "failed"
    assert r.json()["error_traceback"].startswith("Traceback"), r.json()  # the owner's own diagnostics
    assert_error(await c.get(path, headers=world.h(NS_A, a.key)), 404)
    assert_error(await c.get(path, headers=world.h(NS_A)), 404)
    hb = world.h(NS_B, b.key)
    for method, url, body in [
        ("GET", f"/v1/clusters/{b.failed_cluster}/executions", None),  # the latest run: full view, owner
        ("POST", f"/v1/clusters/{b.failed_cluster}/executions/list", {"limit": 100}),
        ("POST", f"/v1/clusters/{b.failed_cluster}/executions/list", {"filters": {"status": "failed"}}),
        ("GET", f"/v1/analytics/clusters/{b.failed_cluster}/failures?hours=720", None),
        ("GET", f"/v1/analytics/clusters/{b.failed_cluster}/execution-history?hours=720", None),
        ("GET", f"/v1/clusters/{b.failed_cluster}", None),
        ("POST", "/v1/clusters/list", {"limit": 100}),
    ]:
        r = await c.request(method, url, headers=hb, json=body)
        assert r.status_code == 200, r.text
        if url.endswith("/executions"):
            continue
        assert "Traceback" not in r.text and "error_traceback" not in r.text, (url, r.text[:300])
    # a filter may not read it either
    r = await c.post(
        f"/v1/clusters/{b.failed_cluster}/executions/list",
        headers=hb,
        json={"filters": {"field": "error_traceback", "operator": "contains", "value": "Traceback"}},
    )
    assert_error(r, 400)


def hostile_requests(w: World) -> list[tuple[str, str, dict[str, str], Any]]:
    """(method, path, extra headers, body) that must each answer a clean 4xx."""
    a = w.a
    run = f"/v1/clusters/{a.cluster}/executions/{a.run}"
    js = {"Content-Type": "application/json"}
    return [
        ("GET", "/v1/clusters/clust_doesnotexist", {}, None),
        ("GET", "/v1/clusters/%00%ff", {}, None),
        ("GET", "/v1/clusters/" + "x" * 5000, {}, None),
        ("GET", f"/v1/clusters/{a.cluster}/executions/run_nope", {}, None),
        ("GET", f"/v1/clusters/{a.cluster}/executions/{a.run}/export?format=xml", {}, None),
        (
            "GET",
            f"/v1/clusters/{a.cluster}/executions/{a.run}/export?format=csv&cluster_label=nope",
            {},
            None,
        ),
        ("GET", f"/v1/clusters/{a.cluster}/visualization?max_points=0", {}, None),
        ("GET", f"/v1/clusters/{a.cluster}/visualization?run_id=%7B%22%24ne%22%3Anull%7D", {}, None),
        ("GET", f"/v1/clusters/{a.cluster}/groups?limit=-1&offset=x", {}, None),
        ("GET", f"/v1/clusters/{a.cluster}/groups?run_id=$where", {}, None),
        ("GET", f"/v1/collections/{a.col}/documents/$where", {}, None),
        ("GET", f"/v1/collections/{a.col}/documents/%7B%22%24gt%22%3A%22%22%7D", {}, None),
        ("GET", "/v1/tasks/task_nope", {}, None),
        ("GET", "/v1/namespaces/ns_nope", {}, None),
        ("GET", "/v1/api-keys/key_nope", {}, None),
        ("GET", "/v1/no-such-route", {}, None),
        ("GET", "/no-such-route", {}, None),
        ("PUT", "/v1/clusters", {}, None),
        ("DELETE", "/v1/clusters/list", {}, None),
        ("GET", "/v1/clusters/execute", {}, None),
        ("POST", "/v1/clusters", js, b"{not json"),
        ("POST", "/v1/clusters", js, b"\xff\xfe\x00binary\x00\x80"),
        ("POST", "/v1/clusters/execute", js, bytes(range(256))),
        ("POST", "/v1/clusters/list", {"Content-Type": "text/plain"}, b"hello"),
        ("POST", "/v1/collections", {"Content-Type": "application/octet-stream"}, b"\x00\x01\x02"),
        ("POST", "/v1/collections", {"Content-Type": "application/x-www-form-urlencoded"}, b"a=1&b=2"),
        ("POST", f"/v1/collections/{a.col}/documents", js, b'{"vectors": {"emb": [1, 2, '),
        ("POST", "/v1/clusters", js, b"[1, 2, 3]"),
        ("POST", "/v1/clusters", js, b'"just a string"'),
        ("POST", "/v1/clusters", js, b"[" * 5000 + b"]" * 5000),
        ("POST", "/v1/clusters", js, json.dumps({"collection_ids": ["col_nope"]}).encode()),
        ("POST", "/v1/clusters/list", js, json.dumps({"filters": {"$where": "sleep(1000)"}}).encode()),
        ("POST", "/v1/clusters/list", js, json.dumps({"sort": {"field": "$natural"}}).encode()),
        ("PATCH", run + "/labels", js, json.dumps({"labels": "x"}).encode()),
        ("PATCH", run + "/name", js, json.dumps({"run_name": 5}).encode()),
        ("GET", f"/v1/analytics/clusters/{a.cluster}/failures?hours=99999", {}, None),
        ("GET", f"/v1/analytics/clusters/{a.cluster}/failures?hours=abc", {}, None),
        ("GET", "/v1/clusters?limit=0", {}, None),
        ("GET", "/v1/clusters?cursor=not-a-cursor", {}, None),
        ("POST", "/v1/namespaces", js, json.dumps({"namespace_name": NS_B}).encode()),
    ]


async def test_errors_leak_nothing(world: World) -> None:
    statuses = set()
    for method, path, extra, body in hostile_requests(world):
        headers = {**world.h(NS_A), **extra}
        r = await world.raw.request(method, path, headers=headers, content=body)
        assert 400 <= r.status_code < 500, (method, path, r.status_code, r.text[:300])
        assert_error(r, r.status_code)
        if r.status_code != 409:  # the one conflict names the taken namespace, which the admin asked for
            assert CANARY not in r.text, (method, path, r.text)
        statuses.add(r.status_code)
    assert {400, 404, 405, 422} <= statuses, statuses


async def test_unexpected_exception_is_a_bare_500(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.store import clusters

    async def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(
            'Traceback: File "/work/secret/store.py", line 3: pymongo.errors.OperationFailure '
            f"on {NS_B} {world.b.cluster}"
        )

    monkeypatch.setattr(clusters, "get_or_raise", explode)
    r = await world.raw.get(f"/v1/clusters/{world.a.cluster}", headers=world.h(NS_A))
    body = assert_error(r, 500)
    assert "RuntimeError" in body["error"]["message"] and world.b.cluster not in r.text


# --------------------------------------------------------------------------- hostile numbers and bodies


def upsert_raw(w: World, body: bytes) -> Any:
    return w.raw.post(
        f"/v1/namespaces/{NS_A}/documents/upsert",
        content=body,
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"},
    )


def with_number(body: Any, literal: str) -> bytes:
    """`body` as JSON with every "N" string replaced by the raw literal (NaN, 1e999, ...)."""
    return json.dumps(body).replace('"N"', literal).encode()


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
async def test_non_finite_numbers_are_422(world: World, literal: str) -> None:
    a = world.a
    hn = {**world.h(NS_A), "Content-Type": "application/json"}
    doc = {"document_id": "nf", "vectors": {"emb": [1, "N", 0, 0]}}
    assert_error(
        await upsert_raw(world, with_number({"collection_id": a.col, "documents": [doc]}, literal)), 422
    )
    r = await world.raw.post(
        f"/v1/collections/{a.col}/documents", content=with_number(doc, literal), headers=hn
    )
    assert_error(r, 422)
    vc = {"clustering_method": "kmeans", "feature_uris": ["emb"]}
    adhoc = {"algorithm": "kmeans", "feature_vector": {"vector_name": "emb"}}
    # numeric params: the validation handler must not choke echoing them back
    for path, body in [
        (
            "/v1/clusters",
            {"collection_ids": [a.col], "vector_config": {**vc, "algorithm_params": {"n_clusters": "N"}}},
        ),
        (
            "/v1/clusters",
            {
                "collection_ids": [a.col],
                "vector_config": {**vc, "clustering_method": "dbscan", "algorithm_params": {"eps": "N"}},
            },
        ),
        ("/v1/clusters", {"collection_ids": [a.col], "vector_config": {**vc, "sample_size": "N"}}),
        ("/v1/clusters/execute", {"collection_ids": [a.col], "sample_size": "N", "config": adhoc}),
        (
            "/v1/clusters/execute",
            {"collection_ids": [a.col], "config": {**adhoc, "algorithm_params": {"n_clusters": "N"}}},
        ),
        (f"/v1/clusters/{a.cluster}/execute", {"sample_size": "N"}),
        ("/v1/clusters/list", {"limit": "N"}),
        ("/v1/clusters/list", {"filters": {"num_clusters": {"$gt": "N"}}}),
        ("/v1/clusters/list", {"filters": {"field": "num_clusters", "operator": "gt", "value": "N"}}),
        (
            "/v1/collections",
            {"collection_name": "nf-col", "vector_indexes": [{"name": "v", "dimensions": "N"}]},
        ),
    ]:
        r = await world.raw.post(path, content=with_number(body, literal), headers=hn)
        assert r.status_code in (400, 422), (path, r.status_code, r.text[:300])
        assert_error(r, r.status_code)
    r = await world.raw.post(
        "/patterns/cluster",
        content=f'{{"data": [[1, 2], [3, {literal}], [5, 6]]}}'.encode(),
        headers=hn,
    )
    assert r.status_code == 400 and set(r.json()) == {"error", "message"}, r.text


async def test_ragged_and_mismatched_vectors_are_422(world: World) -> None:
    a = world.a
    for vectors in ([[1, 2, 3, 4], [1, 2]], [1, 2, 3], [1, [2], 3, 4], ["1", 2, 3, 4], [True, 1, 0, 0], []):
        body = {"collection_id": a.col, "documents": [{"document_id": "rag", "vectors": {"emb": vectors}}]}
        r = await world.raw.post(
            f"/v1/namespaces/{NS_A}/documents/upsert",
            json=body,
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
        msg = assert_error(r, 422)["error"]["message"]
        assert "documents[0].vectors.emb" in msg, msg
    r = await world.raw.post(
        "/patterns/cluster", json={"data": [[1, 2], [3]]}, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert (
        r.status_code == 400 and r.json()["error"] == "invalid_request" and "data[1]" in r.json()["message"]
    )


async def test_validation_echo_is_truncated_and_capped(world: World) -> None:
    hn = world.h(NS_A)
    huge = list(range(50_000))  # ~340 KB, under this module's 1 MB body cap
    r = await world.raw.post("/v1/clusters/list", json={"limit": huge, "search": huge}, headers=hn)
    body = assert_error(r, 422)
    assert len(r.content) < 10_000, len(r.content)
    # many errors: at most 20 listed, the message says how many more
    r = await world.raw.post(
        "/v1/clusters/list",
        json={f"k{i}": 1 for i in range(5)}
        | {
            "limit": "x",
            "page_size": "x",
            "offset": "x",
            "page": "x",
            "cursor": 1,
            "next_cursor": 1,
            "after": 1,
            "include_total": "maybe",
            "filters": 1,
            "sort": 1,
            "sorts": 1,
            "search": 1,
            "return_vectors": "x",
            "select": 1,
        },
        headers=hn,
    )
    body = assert_error(r, 422)
    assert len(body["error"]["details"]["validation_errors"]) <= 20
    assert "more)" in body["error"]["message"]
    # a NaN inside an echoed input stays JSON (the default handler would 500 on it)
    r = await world.raw.post(
        "/v1/clusters/list",
        content=b'{"limit": NaN, "offset": [Infinity, -Infinity, 1e999]}',
        headers={**hn, "Content-Type": "application/json"},
    )
    assert_error(r, 422)  # parsed strictly: a NaN echoed as a number would fail here


async def test_bodies_over_the_limit_are_413_with_or_without_content_length(world: World) -> None:
    big = json.dumps(
        {"collection_id": world.a.col, "documents": [{"document_id": "x", "pad": "y" * (1 << 20)}]}
    )

    async def chunks() -> AsyncIterator[bytes]:
        data = big.encode()
        for i in range(0, len(data), 65536):
            yield data[i : i + 65536]

    jh = {**world.h(NS_A), "Content-Type": "application/json"}
    for path in (f"/v1/namespaces/{NS_A}/documents/upsert", "/v1/clusters/list", "/v1/clusters/execute"):
        r = await world.raw.post(path, content=big.encode(), headers=jh)
        assert_error(r, 413)
        r = await world.raw.post(path, content=chunks(), headers=jh)
        assert "content-length" not in r.request.headers
        assert_error(r, 413)
    for body in (big.encode(), chunks()):
        r = await world.raw.post("/patterns/cluster", content=body, headers=jh)
        assert r.status_code == 413 and set(r.json()) == {"error", "message"}, r.text[:300]
        assert r.json()["error"] == "payload_too_large"


async def test_patterns_errors_keep_their_own_shape(world: World) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"}
    for body, status in [
        (b"", 400),
        (b"\xff\xfe\x00", 400),
        (b"[1,2]", 400),
        (b'{"data": "x"}', 400),
        (b'{"data": [1, 2, 3], "method": "spectral"}', 400),
        (b'{"data": [1, 2, 3], "n_clusters": 1e999}', 400),
        (b'{"data": [1, 2, 3], "eps": NaN, "method": "dbscan"}', 400),
    ]:
        r = await world.raw.post("/patterns/cluster", content=body, headers=auth)
        assert r.status_code == status, (body, r.text)
        assert set(r.json()) == {"error", "message"} and r.json()["error"] == "invalid_request", r.text
        assert not LEAKS.search(r.text), r.text
    r = await world.raw.post("/patterns/cluster", json={"data": [1, 2]})
    assert r.status_code == 401 and set(r.json()) == {"error", "message"}


# --------------------------------------------------------------------------- count, size and depth limits


async def test_vector_count_and_dimension_limits_name_the_field(world: World) -> None:
    """CLUSTERD_MAX_BATCH_DOCUMENTS = 50 and CLUSTERD_MAX_VECTOR_DIMENSIONS = 64 in this module."""
    a = world.a
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    upsert = f"/v1/namespaces/{NS_A}/documents/upsert"
    docs = [{"document_id": f"lim{i}", "vectors": {"emb": [1.0, 0.0, 0.0, 0.0]}} for i in range(51)]
    r = await world.raw.post(upsert, json={"collection_id": a.col, "documents": docs}, headers=auth)
    msg = assert_error(r, 422)["error"]["message"]
    assert "documents" in msg and "50" in msg, msg
    wide = [{"document_id": "wide", "vectors": {"wide": [0.5] * 65}}]
    r = await world.raw.post(upsert, json={"collection_id": a.col, "documents": wide}, headers=auth)
    msg = assert_error(r, 422)["error"]["message"]
    assert "documents[0].vectors.wide" in msg and "64" in msg, msg
    r = await world.raw.post(
        f"/v1/collections/{a.col}/documents", json={"vectors": {"wide": [0.5] * 65}}, headers=world.h(NS_A)
    )
    msg = assert_error(r, 422)["error"]["message"]
    assert "vectors.wide" in msg, msg
    r = await world.raw.post(
        "/v1/collections",
        json={"collection_name": "too-wide", "vector_indexes": [{"name": "v", "dimensions": 65}]},
        headers=world.h(NS_A),
    )
    assert "vector_indexes[0].dimensions" in assert_error(r, 422)["error"]["message"]
    # at the limits: accepted
    r = await world.raw.post(
        upsert,
        json={"collection_id": a.col, "documents": [{"document_id": "w64", "vectors": {"w64": [0.5] * 64}}]},
        headers=auth,
    )
    assert r.status_code == 200, r.text
    r = await world.raw.delete(f"/v1/collections/{a.col}/documents/w64", headers=world.h(NS_A))
    assert r.status_code == 200


def nested(depth: int) -> dict[str, Any]:
    """A condition under `depth` AND nodes (filter depth counts logical nodes, root = 1)."""
    node: dict[str, Any] = {"field": "cluster_name", "operator": "eq", "value": "x"}
    for _ in range(depth):
        node = {"AND": [node]}
    return node


async def test_filter_depth_and_regex_guards_through_the_api(world: World) -> None:
    a, h = world.a, world.h(NS_A)
    targets = [
        "/v1/clusters/list",
        f"/v1/clusters/{a.cluster}/executions/list",
        f"/v1/collections/{a.col}/documents/list",
    ]
    for path in targets:
        field_name = {"/v1/clusters/list": "cluster_name"}.get(
            path, "run_id" if "executions" in path else "document_id"
        )
        deep = json.loads(json.dumps(nested(6)).replace("cluster_name", field_name))
        r = await world.raw.post(path, json={"filters": deep}, headers=h)
        msg = assert_error(r, 400)["error"]["message"]
        assert "filters" in msg and "depth" in msg, msg
        ok = json.loads(json.dumps(nested(5)).replace("cluster_name", field_name))
        assert (await world.raw.post(path, json={"filters": ok}, headers=h)).status_code == 200
        long_regex = {"field": field_name, "operator": "regex", "value": "a" * 5000}
        r = await world.raw.post(path, json={"filters": long_regex}, headers=h)
        assert "filters" in assert_error(r, 400)["error"]["message"]
        bad_regex = {"field": field_name, "operator": "regex", "value": "(unclosed"}
        assert_error(await world.raw.post(path, json={"filters": bad_regex}, headers=h), 400)
    # stored pre-filters get the same guards
    body = {
        "collection_ids": [a.col],
        "vector_config": {"clustering_method": "kmeans", "feature_uris": ["emb"]},
        "filters": json.loads(json.dumps(nested(6)).replace("cluster_name", "metadata.i")),
    }
    assert (
        "depth"
        in assert_error(await world.raw.post("/v1/clusters", json=body, headers=h), 400)["error"]["message"]
    )


# --------------------------------------------------------------------------- keys


async def test_keys_are_compared_with_compare_digest(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hashing at rest and revocation: test_isolation.py::test_api_keys_are_stored_hashed_and_revocable."""
    from core.store import api_keys

    original = api_keys.hmac.compare_digest

    calls: list[tuple[Any, Any]] = []
    verdict = {"match": True}

    def spy(x: Any, y: Any) -> bool:
        calls.append((x, y))
        return original(x, y) and verdict["match"]

    monkeypatch.setattr(api_keys.hmac, "compare_digest", spy)
    h = world.h(NS_A, world.a.key)
    assert (await world.raw.get("/v1/clusters", headers=h)).status_code == 200
    assert calls, "the key check did not go through hmac.compare_digest"
    stored = await world.api.app.state.services.db.api_keys.find_one({"name": "key-a"})
    assert stored["key_hash"] in [x for pair in calls for x in pair]
    # the comparison decides: when it says no, the same key is refused
    verdict["match"] = False
    assert_error(await world.raw.get("/v1/clusters", headers=h), 401)
    r = await world.raw.post("/patterns/cluster", json={"data": [1, 2, 3]}, headers=h)
    assert r.status_code == 401


async def test_unstorable_objects_are_422_not_500(world: World) -> None:
    """Found by the fuzzer: a NUL in a key (BSON keys are C strings) or an integer beyond 64 bits in
    a stored free-form object failed the MongoDB write with a 500."""
    a, h = world.a, world.h(NS_A)
    vc = {"clustering_method": "kmeans", "feature_uris": ["emb"]}
    for bad in ({"\u0000": 1}, {"ok": {"x\u0000y": 1}}, {"n": 2**70}, {"xs": [{"n": -(2**64)}]}):
        for method, path, body in [
            ("POST", "/v1/collections", {"collection_name": "unstorable", "metadata": bad}),
            ("POST", "/v1/collections", {"collection_name": "unstorable", "source": {"type": "none", **bad}}),
            ("POST", "/v1/clusters", {"collection_ids": [a.col], "vector_config": vc, "llm_labeling": bad}),
            ("POST", "/v1/clusters", {"collection_ids": [a.col], "vector_config": vc, "metadata": bad}),
            ("PATCH", f"/v1/clusters/{a.cluster}", {"llm_labeling": bad}),
            ("PATCH", f"/v1/clusters/{a.cluster}", {"metadata": bad}),
            (
                "POST",
                "/v1/clusters/execute",
                {"collection_ids": [a.col], "config": {**ADHOC, "llm_labeling": bad}},
            ),
        ]:
            r = await world.raw.request(method, path, headers=h, json=body)
            assert_error(r, 422)
