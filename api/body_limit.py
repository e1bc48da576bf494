"""Request body cap (CLUSTERD_MAX_BODY_MB): 413 with the ErrorResponse body, counted as it streams.

`/patterns/cluster` is not a /v1 route: its 413 is `{"error": "payload_too_large", "message": …}`.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response

PATTERNS_PATH = "/patterns/cluster"


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"request body exceeds {limit // (1024 * 1024)} MB (CLUSTERD_MAX_BODY_MB)")


def too_large_response(scope: Scope, message: str) -> JSONResponse:
    if str(scope.get("path", "")).rstrip("/") == PATTERNS_PATH:
        return JSONResponse({"error": "payload_too_large", "message": message}, status_code=413)
    return error_response(413, message)


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            exc = BodyTooLarge(self.max_bytes)
            await too_large_response(scope, str(exc.detail))(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # an HTTPException passes through FastAPI's body parsing untouched -> api.errors;
                    # /patterns/cluster reads its body itself and answers in its own shape
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counted, send)
