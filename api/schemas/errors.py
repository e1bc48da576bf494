"""Error bodies as OpenAPI models, so each operation documents the statuses it can answer with.

Every /v1 error is the contract's ErrorResponse (§2.1); `/patterns/cluster` answers `{error, message}`.
The models only describe the wire shape (api/errors.py builds the bodies).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

DESCRIPTIONS = {
    400: "Bad request (e.g. X-Namespace missing, invalid filter, invalid state)",
    401: "Missing or invalid API key",
    403: "The key may not use this namespace or route",
    404: "Not found (unknown route, resource, or a resource of another namespace)",
    409: "Conflict (name or id already taken)",
    413: "Request body (or export) too large",
    422: "Validation error",
    500: "Internal error",
    503: "A backing service (broker, artifact store) is unavailable",
}


class ErrorInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str
    type: str
    code: str | None = None
    details: dict[str, Any] | None = None


class ErrorResponse(BaseModel):
    """`{success: false, status, error: {message, type, code?, details?}}`; status = the HTTP status."""

    model_config = ConfigDict(extra="forbid")
    success: Literal[False]
    status: int
    error: ErrorInfo


class PatternErrorResponse(BaseModel):
    """`/patterns/cluster` errors: `{"error": "invalid_request", "message": "..."}`."""

    model_config = ConfigDict(extra="forbid")
    error: str
    message: str


def error_responses(
    *statuses: int, model: type[BaseModel] = ErrorResponse
) -> dict[int | str, dict[str, Any]]:
    """`responses=` for FastAPI: each status with its body model."""
    return {s: {"model": model, "description": DESCRIPTIONS[s]} for s in statuses}


# any /v1 route behind auth: key (401), namespace header and scope (400/403/404 for an unknown
# namespace under STRICT_NAMESPACES), a body that cannot be decoded (400: not UTF-8), the body cap
# (413, any request with a body) and validation (422)
V1 = (400, 401, 403, 404, 413, 422)
