"""How api.errors answers MongoDB errors: unavailable -> 503 with Retry-After, anything else ->
a generic 500; never the server's message, host names or a traceback."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from pymongo.errors import (
    AutoReconnect,
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    NetworkTimeout,
    NotPrimaryError,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
    WaitQueueTimeoutError,
    WTimeoutError,
)

from api import errors

SECRET = "db-7.internal.example:27017 errmsg=secret"

UNAVAILABLE = [
    ConnectionFailure(SECRET),
    AutoReconnect(SECRET),
    NotPrimaryError(SECRET),
    NetworkTimeout(SECRET),
    ServerSelectionTimeoutError(SECRET),
    WaitQueueTimeoutError(SECRET),
    ExecutionTimeout(SECRET, code=50),
    WTimeoutError(SECRET, code=64),
]
OTHER = [
    OperationFailure(SECRET, code=2, details={"errmsg": SECRET}),
    DuplicateKeyError(SECRET, code=11000),
    PyMongoError(SECRET),
]


def app_raising(exc: Exception) -> FastAPI:
    app = FastAPI()
    errors.install(app)

    @app.get("/v1/boom")
    async def boom() -> None:
        raise exc

    return app


async def call(exc: Exception) -> httpx.Response:
    transport = httpx.ASGITransport(app=app_raising(exc), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        return await c.get("/v1/boom")


@pytest.mark.parametrize("exc", UNAVAILABLE, ids=lambda e: type(e).__name__)
async def test_unavailable_database_is_503_with_retry_after(exc: Exception) -> None:
    r = await call(exc)
    assert r.status_code == 503
    assert r.json() == {
        "success": False,
        "status": 503,
        "error": {"message": "database unavailable, retry later", "type": "service_unavailable"},
    }
    assert int(r.headers["retry-after"]) > 0


@pytest.mark.parametrize("exc", OTHER, ids=lambda e: type(e).__name__)
async def test_other_database_errors_are_a_generic_500(
    exc: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    r = await call(exc)
    assert r.status_code == 500
    assert r.json()["error"]["type"] == "internal_error"
    assert "secret" not in r.text and "internal.example" not in r.text and "Traceback" not in r.text
    assert SECRET in caplog.text  # the details are in the server log
