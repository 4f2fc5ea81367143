"""Errors that become JSON answers: each carries an HTTP status and a machine-readable code."""

from __future__ import annotations


class ApiError(Exception):
    """Raised for any request the gateway refuses; the app turns it into JSON."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code

    def body(self) -> dict[str, str]:
        """Return the JSON body every non-2xx answer has."""
        return {"detail": self.detail, "code": self.code}


class InvalidJSON(ApiError):
    """Raised when the request body is not a JSON object."""

    status = 400
    code = "invalid_json"


class ValidationFailed(ApiError):
    """Raised when a field is missing, mistyped or has a value the gateway refuses."""

    status = 422
    code = "validation_error"


class InvalidCwd(ApiError):
    """Raised when ``cwd`` is not an absolute path of an existing directory."""

    status = 400
    code = "invalid_cwd"


class Unauthorized(ApiError):
    """Raised when Basic credentials are missing or wrong."""

    status = 401
    code = "unauthorized"


class NotFound(ApiError):
    """Raised when a process id (or a path) names nothing the gateway knows."""

    status = 404
    code = "not_found"


class SessionBusy(ApiError):
    """Raised when a live run is already using the session a request names."""

    status = 409
    code = "session_busy"


class Unavailable(ApiError):
    """Raised when the gateway cannot start runs: shutting down, or no usable CLI."""

    status = 503
    code = "unavailable"


class Forbidden(ApiError):
    """Raised when the operator's settings do not allow what a request asks for."""

    status = 403
    code = "forbidden"
