"""Property-based fuzzing of every operation in the app's own OpenAPI schema (schemathesis, in-process).

Checks: no 5xx (`not_a_server_error`), responses match their declared schema (errors are the
contract's ErrorResponse), and every status returned is one the operation documents. Runs are
seeded (derandomized) and bounded so CI is reproducible and fast.

Schemathesis cannot guess ids, so a namespace is seeded first (a collection with documents, a
cluster with a completed run, an API key) and path parameters are swapped for those real ids in
most generated cases (chosen deterministically from the generated values). Destructive operations
(DELETE of a namespace, collection, document, cluster or key) get throwaway resources of their own
so they cannot empty the data the other operations are fuzzed against.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from api.main import create_app
from core.settings import Settings
from tests.conftest import ADMIN_KEY, Api, blobs

pytestmark = pytest.mark.e2e

NS = "fuzz"
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))


class PersistentLifespan:
    """The app with one lifespan for the whole module instead of one per test.

    schemathesis (4.32) starts an ASGI app's lifespan on the first request of a test and ends it in
    that test's teardown. Each operation is its own test, and the embedded store lives as long as
    one lifespan, so seeded data would vanish after the first operation (and every operation would
    pay for starting the embedded worker). This wrapper acknowledges schemathesis' lifespan messages
    itself; once armed, the first request enters the real lifespan in a task on schemathesis' event
    loop (where every request then runs) and seeds the data there. `close` ends it at module teardown.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.armed = False
        self.ids: dict[str, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            if self.armed:
                if self._ready is None:
                    self._start()
                assert self._ready is not None
                await asyncio.shield(self._ready)
            await self.app(scope, receive, send)
            return
        while True:  # schemathesis' own lifespans: acknowledged, the app's stays up
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready = self._loop.create_future()
        self._task = asyncio.create_task(self._hold(self._ready))

    async def _hold(self, ready: asyncio.Future[None]) -> None:
        assert self._stop is not None
        try:
            async with self.app.router.lifespan_context(self.app):
                transport = httpx.ASGITransport(app=self.app)
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://clusterd.test", timeout=60
                ) as c:
                    self.ids = await seed(Api(c, self.app))
                ready.set_result(None)
                await self._stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    def close(self) -> None:
        if self._loop is None or self._task is None:
            return
        loop, task, stop = self._loop, self._task, self._stop
        assert stop is not None

        async def finish() -> None:
            stop.set()
            await task

        asyncio.run_coroutine_threadsafe(finish(), loop).result(90)


async def seed(api: Api) -> dict[str, Any]:
    """Real ids for path parameters: a collection with documents, a cluster with a completed run
    (artifacts and a parquet export), plus throwaway resources for the DELETE operations."""
    c = api.client
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    r = await c.post("/v1/namespaces", json={"namespace_name": NS}, headers=admin)
    assert r.status_code == 200, r.text
    ns_id = r.json()["namespace_id"]
    col, _ = await api.make_collection(name="points", ns=NS, X=blobs(n_per=8, dims=4))
    cluster = await api.make_cluster(col, ns=NS)
    r = await c.post(f"/v1/clusters/{cluster}/execute", headers=api.h(NS))
    assert r.status_code == 200, r.text
    task = r.json()["task_id"]
    run = await api.wait_run(cluster, r.json()["additional_data"]["run_id"], ns=NS)
    assert run["status"] == "completed", run
    r = await c.get(f"/v1/clusters/{cluster}/executions/{run['run_id']}/export", headers=api.h(NS))
    assert r.status_code == 200, r.text
    key = await c.post("/v1/api-keys", json={"name": "fuzz", "namespaces": [NS]}, headers=admin)
    assert key.status_code == 200, key.text

    # throwaway resources for the destructive operations
    r = await c.post("/v1/namespaces", json={"namespace_name": "fuzz-victim"}, headers=admin)
    assert r.status_code == 200, r.text
    victim_col, _ = await api.make_collection(name="victim", ns=NS, X=blobs(n_per=2, dims=4), prefix="v")
    victim_cluster = await api.make_cluster(victim_col, ns=NS)
    victim_key = await c.post("/v1/api-keys", json={"name": "victim", "namespaces": [NS]}, headers=admin)
    assert victim_key.status_code == 200, victim_key.text
    return {
        "namespace": ns_id,
        "collection": col,
        "document": "d00000",
        "cluster": cluster,
        "run": run["run_id"],
        "task": task,
        "key": key.json()["key_id"],
        "victim_namespace": r.json()["namespace_id"],
        "victim_collection": victim_col,
        "victim_documents": [f"v{i:05d}" for i in range(6)],
        "victim_cluster": victim_cluster,
        "victim_key": victim_key.json()["key_id"],
    }


def real_path_parameters(method: str, path: str, ids: dict[str, Any], rng: random.Random) -> dict[str, str]:
    """Seeded ids for every path parameter of one operation."""
    deleting = method == "DELETE"
    if path.startswith("/v1/namespaces/{ident}"):
        return {"ident": ids["victim_namespace" if deleting else "namespace"]}
    if path.startswith("/v1/namespaces/{namespace}"):
        return {"namespace": rng.choice([ids["namespace"], NS])}
    if path.startswith("/v1/api-keys/"):
        return {"key_id": ids["victim_key" if deleting else "key"]}
    if path.startswith("/v1/tasks/"):
        return {"task_id": ids["task"]}
    if path.startswith("/v1/collections/{ident}"):
        if path.endswith("{document_id}"):
            if deleting:
                return {"ident": ids["victim_collection"], "document_id": rng.choice(ids["victim_documents"])}
            return {"ident": ids["collection"], "document_id": ids["document"]}
        if deleting:
            return {"ident": ids["victim_collection"]}
        return {"ident": rng.choice([ids["collection"], "points"])}
    if path.startswith("/v1/analytics/clusters/{cluster_id}"):
        return {"cluster_id": ids["cluster"]}
    if path.startswith("/v1/clusters/{ident}"):
        out = {"ident": ids["victim_cluster" if deleting else "cluster"]}
        if "{run_id}" in path:
            out["run_id"] = ids["run"]
        return out
    return {}


DATA_DIR = Path(tempfile.mkdtemp(prefix="clusterd-fuzz-"))
atexit.register(shutil.rmtree, DATA_DIR, True)  # also when the module is only collected
APP = PersistentLifespan(
    create_app(
        Settings(
            api_keys=[ADMIN_KEY],
            data_dir=DATA_DIR / "data",
            # an ad-hoc execute the fuzzer gets right waits for its run: keep that short (202 after)
            adhoc_wait_s=2,
            heartbeat_interval_s=1.0,
        )
    )
)
# Loaded at import (collection) time: serving /openapi.json needs no lifespan, so nothing starts yet.
# (schemathesis.pytest.from_fixture would defer this, but 4.32's lazy loader breaks on pytest 9.)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module")
def fuzz_app() -> Iterator[PersistentLifespan]:
    APP.armed = True
    try:
        with schemathesis.python.asgi.get_client(APP) as client:
            r = client.get("/v1/health")  # the first armed request starts the app and seeds it
            assert r.status_code == 200, r.text
        yield APP
    finally:
        APP.close()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case: Any, fuzz_app: PersistentLifespan) -> None:
    ids = fuzz_app.ids
    method, path = case.operation.method.upper(), case.operation.path
    # deterministic from the generated values: most cases hit real ids, the rest keep fuzzed ones
    rng = random.Random(repr((method, path, case.path_parameters, case.query)))  # noqa: S311
    if case.path_parameters and rng.random() < 0.75:
        case.path_parameters = {**case.path_parameters, **real_path_parameters(method, path, ids, rng)}
    if (
        path == "/v1/clusters/execute"
        and isinstance(case.body, dict)
        and isinstance(case.body.get("collection_ids"), list)
        and rng.random() < 0.5
    ):
        case.body = {**case.body, "collection_ids": [ids["collection"]]}
    # The admin key and the seeded namespace on every case: the schema declares both headers as
    # optional parameters, and fuzzed values would only ever meet 401 / an empty auto-created
    # namespace. Missing and bad credentials are covered by test_isolation.py / test_security.py.
    headers = {"Authorization": f"Bearer {ADMIN_KEY}", "X-Namespace": NS}
    case.call_and_validate(headers=headers, checks=CHECKS)


def test_seeded_data_outlived_the_fuzzing(fuzz_app: PersistentLifespan) -> None:
    """The fuzzed operations ran against one app: its seeded cluster and run are still there."""
    ids = fuzz_app.ids
    headers = {"Authorization": f"Bearer {ADMIN_KEY}", "X-Namespace": NS}
    with schemathesis.python.asgi.get_client(fuzz_app) as client:
        r = client.get(f"/v1/clusters/{ids['cluster']}/executions/{ids['run']}", headers=headers)
        assert r.status_code == 200 and r.json()["status"] == "completed", r.text
        r = client.get(f"/v1/collections/{ids['collection']}/documents/count", headers=headers)
        assert r.status_code == 200 and r.json()["count"] >= 24, r.text  # the fuzzer may add some
