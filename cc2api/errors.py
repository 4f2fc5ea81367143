"""Errors that become JSON answers: each carries an HTTP status and a machine-readable code."""

from __future__ import annotations

from typing import Any

from .codes import ErrorCode
from .wire import Error


class ApiError(Exception):
    """Raised for any request the gateway refuses; the app turns it into JSON."""

    status: int = 400
    code: ErrorCode = ErrorCode.BAD_REQUEST

    def __init__(self, detail: str, *, code: ErrorCode | None = None) -> None:
        # Checked at run time too: a code the enum does not list fails here, not in a client.
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = ErrorCode(code)

    def body(self) -> dict[str, Any]:
        """Return the JSON body every non-2xx answer has."""
        return Error(detail=self.detail, code=self.code).wire()

    def headers(self) -> dict[str, str]:
        """Return the headers the answer needs besides its JSON body."""
        return {}


class InvalidJSON(ApiError):
    """Raised when the request body is not a JSON object."""

    status = 400
    code = ErrorCode.INVALID_JSON


class ValidationFailed(ApiError):
    """Raised when a field is missing, mistyped or has a value the gateway refuses."""

    status = 422
    code = ErrorCode.VALIDATION_ERROR


class InvalidCwd(ApiError):
    """Raised when ``cwd`` is not an absolute path of an existing directory."""

    status = 400
    code = ErrorCode.INVALID_CWD


class Unauthorized(ApiError):
    """Raised when Basic credentials are missing or wrong."""

    status = 401
    code = ErrorCode.UNAUTHORIZED

    def headers(self) -> dict[str, str]:
        """Return the Basic challenge."""
        return {"WWW-Authenticate": 'Basic realm="cc2api"'}


class TooManyRequests(ApiError):
    """Raised when a client must wait before asking again; says how long."""

    status = 429
    code = ErrorCode.TOO_MANY_REQUESTS

    def __init__(self, detail: str, *, retry_after: int, code: ErrorCode | None = None) -> None:
        super().__init__(detail, code=code)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        """Return ``Retry-After`` in whole seconds."""
        return {"Retry-After": str(self.retry_after)}


class QueueFull(TooManyRequests):
    """Raised when every run slot is held and the queue for them is full."""

    code = ErrorCode.QUEUE_FULL


class TooManyFailedLogins(TooManyRequests):
    """Raised for a client address locked out after repeated failed logins."""

    code = ErrorCode.TOO_MANY_FAILED_LOGINS


class NotFound(ApiError):
    """Raised when a process id (or a path) names nothing the gateway knows."""

    status = 404
    code = ErrorCode.NOT_FOUND


class SessionBusy(ApiError):
    """Raised when a live run is already using the session a request names."""

    status = 409
    code = ErrorCode.SESSION_BUSY


class Unavailable(ApiError):
    """Raised when the gateway cannot start runs: shutting down, or no usable CLI."""

    status = 503
    code = ErrorCode.UNAVAILABLE


class Forbidden(ApiError):
    """Raised when the operator's settings do not allow what a request asks for."""

    status = 403
    code = ErrorCode.FORBIDDEN


class RunEnded(ApiError):
    """Raised when a run can no longer take what was sent to it (a follow-up, an answer)."""

    status = 409
    code = ErrorCode.RUN_ENDED


class ApprovalAnswered(ApiError):
    """Raised when an approval was answered already, timed out, or expired with its turn."""

    status = 409
    code = ErrorCode.APPROVAL_ANSWERED


class BadRequest(ApiError):
    """Raised for a request that is malformed in a way no other error names."""

    status = 400
    code = ErrorCode.BAD_REQUEST


class TooManyMessages(TooManyRequests):
    """Raised when a run holds as many follow-up messages as it may."""

    code = ErrorCode.TOO_MANY_MESSAGES


class BodyTooComplex(ApiError):
    """Raised when a request body holds more keys, strings or values than any request needs."""

    status = 413
    code = ErrorCode.BODY_TOO_COMPLEX


class SessionExists(ApiError):
    """Raised when new_session_id names a session that exists already."""

    status = 409
    code = ErrorCode.SESSION_EXISTS
