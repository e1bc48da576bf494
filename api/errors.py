"""Every /v1 error leaves as the contract's ErrorResponse:
{success, status, error{message, type, code?, details?}}.

core raises ClusterdError subclasses; this module maps them once. Routers never build error JSON.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pymongo.errors import ConnectionFailure, ExecutionTimeout, PyMongoError, WTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import ClusterdError

log = logging.getLogger("clusterd.api")

STATUS = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "payload_too_large": 413,
    "validation_error": 422,
    "rate_limited": 429,
    "internal_error": 500,
    "service_unavailable": 503,
}
TYPE_BY_STATUS = {v: k for k, v in STATUS.items()} | {
    405: "method_not_allowed",
    415: "unsupported_media_type",
}
MAX_ERRORS = 20
RETRY_AFTER_S = 5
# the database is down, unreachable or too slow to answer: worth a retry, never a 500
# (ConnectionFailure covers AutoReconnect, NotPrimaryError, NetworkTimeout,
# ServerSelectionTimeoutError and WaitQueueTimeoutError)
DB_UNAVAILABLE = (ConnectionFailure, ExecutionTimeout, WTimeoutError)
DB_UNAVAILABLE_MESSAGE = "database unavailable, retry later"


def error_body(
    status: int, message: str, *, code: str | None = None, details: dict[str, Any] | None = None
) -> dict:
    err: dict[str, Any] = {"message": message, "type": TYPE_BY_STATUS.get(status, "bad_request")}
    if code:
        err["code"] = code
    if details:
        err["details"] = details
    return {"success": False, "status": status, "error": err}


def error_response(status: int, message: str, **kw: Any) -> JSONResponse:
    headers = kw.pop("headers", None)
    if status == 503:
        headers = {"Retry-After": str(RETRY_AFTER_S), **(headers or {})}
    return JSONResponse(error_body(status, message, **kw), status_code=status, headers=headers)


def database_error(exc: PyMongoError) -> tuple[int, str]:
    """(status, client message) for a MongoDB error. Host names, server messages and tracebacks
    stay in the server log."""
    if isinstance(exc, DB_UNAVAILABLE):
        log.warning("database unavailable: %s: %s", type(exc).__name__, exc)
        return 503, DB_UNAVAILABLE_MESSAGE
    log.error("database error", exc_info=exc)
    return 500, "internal error: a database operation failed"


def _loc(loc: Any) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


def _clean(value: Any, depth: int = 0) -> Any:
    """Echoed input must stay JSON-safe and short (NaN, bytes and huge arrays broke the default handler)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, list):
        return [_clean(v, depth + 1) for v in value[:5]] + (["…"] if len(value) > 5 else [])
    if isinstance(value, dict):
        return {str(k): _clean(v, depth + 1) for k, v in list(value.items())[:10]} if depth < 3 else "{…}"
    if isinstance(value, str) and len(value) > 200:
        return value[:200] + "…"
    return value


def validation_details(errors: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    items = [
        {
            "loc": [str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in errors[:MAX_ERRORS]
    ]
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    message = f"{_loc(first.get('loc', ()))}: {first.get('msg', 'invalid')}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return message, {"validation_errors": items}


def install(app: FastAPI) -> None:
    @app.exception_handler(ClusterdError)
    async def _domain(_: Request, exc: ClusterdError) -> JSONResponse:
        return error_response(STATUS.get(exc.type, 500), exc.message, code=exc.code, details=exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [dict(e) | {"input": _clean(e.get("input"))} for e in exc.errors()]
        message, details = validation_details(errors)
        return error_response(422, message, details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = "no such route"
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(PyMongoError)
    async def _database(_: Request, exc: PyMongoError) -> JSONResponse:
        status, message = database_error(exc)
        return error_response(status, message)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, f"internal error: {type(exc).__name__}")
