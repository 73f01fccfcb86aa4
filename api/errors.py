"""The one error hierarchy. Each error knows its HTTP status and a stable code.

Handlers in `api.app` turn these into JSON (API and OTLP paths) or an HTML page (web);
nothing else in the code base builds error responses by hand.
"""

from __future__ import annotations

from typing import Any


class InferwatchError(Exception):
    """Base of every error we raise on purpose. `status` is the HTTP status it maps to."""

    status: int = 500
    code: str = "internal"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": {"code": self.code, "message": self.message}}
        if self.details:
            body["error"]["details"] = self.details
        return body


class BadRequest(InferwatchError):
    status = 400
    code = "bad_request"


class Unauthorized(InferwatchError):
    status = 401
    code = "unauthorized"


class Forbidden(InferwatchError):
    status = 403
    code = "forbidden"


class NotFound(InferwatchError):
    status = 404
    code = "not_found"


class PayloadTooLarge(InferwatchError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(InferwatchError):
    status = 415
    code = "unsupported_media_type"


class TooManyRequests(InferwatchError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int = 1, details: dict[str, Any] | None = None):
        super().__init__(message, details=details)
        self.retry_after_s = retry_after_s


class ConfigError(InferwatchError):
    """Invalid settings or command-line input; the CLI prints it and exits 2."""

    status = 400
    code = "config"


class StoreError(InferwatchError):
    """The ClickHouse store failed or is unreachable. Retryable from the client's view."""

    status = 503
    code = "store_unavailable"


class MetaError(InferwatchError):
    """The metadata database failed or is unreachable."""

    status = 503
    code = "metadata_unavailable"
