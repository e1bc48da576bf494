"""Domain errors. core raises these; api/errors.py maps them to HTTP once."""

from __future__ import annotations

from typing import Any


class ClusterdError(Exception):
    """Base error: `code` is the machine-readable reason, `message` names the field and the reason."""

    type = "internal_error"
    code: str | None = None

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class BadRequest(ClusterdError):
    type = "bad_request"


class Unauthorized(ClusterdError):
    type = "unauthorized"


class Forbidden(ClusterdError):
    type = "forbidden"


class NotFound(ClusterdError):
    type = "not_found"


class Conflict(ClusterdError):
    type = "conflict"


class ValidationFailed(ClusterdError):
    """A request (or a run's input data) is well-formed JSON but semantically invalid."""

    type = "validation_error"


class PayloadTooLarge(ClusterdError):
    type = "payload_too_large"


class ServiceUnavailable(ClusterdError):
    type = "service_unavailable"


class RunDataError(ValidationFailed):
    """The data a run pulled cannot be clustered (no vectors, mixed dimensions, too few points).

    The worker maps it to `failure_category: validation`.
    """
