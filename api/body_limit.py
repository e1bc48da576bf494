"""Request body cap (CLUSTERD_MAX_BODY_MB): 413 with the ErrorResponse body, counted as it streams.

`/patterns/cluster` is not a /v1 route: its 413 is `{"error": "payload_too_large", "message": …}`.
The file upload route (UPLOAD_PATH) has its own, larger cap (CLUSTERD_MAX_UPLOAD_MB).
"""

from __future__ import annotations

import re

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response

PATTERNS_PATH = "/patterns/cluster"
UPLOAD_PATH = "/v1/collections/{ident}/documents/upload"
_UPLOAD_RE = re.compile("^" + UPLOAD_PATH.replace("{ident}", "[^/]+") + "/?$")


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int, setting: str = "CLUSTERD_MAX_BODY_MB"):
        super().__init__(413, f"request body exceeds {limit // (1024 * 1024)} MB ({setting})")


def too_large_response(scope: Scope, message: str) -> JSONResponse:
    if str(scope.get("path", "")).rstrip("/") == PATTERNS_PATH:
        return JSONResponse({"error": "payload_too_large", "message": message}, status_code=413)
    return error_response(413, message)


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, upload_bytes: int | None = None):
        self.app, self.max_bytes = app, max_bytes
        self.upload_bytes = max_bytes if upload_bytes is None else upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self.max_bytes, "CLUSTERD_MAX_BODY_MB"
        if _UPLOAD_RE.match(str(scope.get("path", ""))):
            limit, setting = self.upload_bytes, "CLUSTERD_MAX_UPLOAD_MB"
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            exc = BodyTooLarge(limit, setting)
            await too_large_response(scope, str(exc.detail))(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # an HTTPException passes through FastAPI's body parsing untouched -> api.errors;
                    # /patterns/cluster reads its body itself and answers in its own shape
                    raise BodyTooLarge(limit, setting)
            return message

        await self.app(scope, counted, send)
