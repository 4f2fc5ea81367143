"""Run statuses and error codes: the words the gateway's JSON uses, each defined once here.

:mod:`cc2api.wire` re-exports them beside the shapes that carry them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, cast, get_args

__all__ = [
    "FINAL_STATUSES",
    "RUN_ERROR_CODES",
    "ErrorCode",
    "FinalStatus",
    "RunErrorCode",
    "Status",
    "Verdict",
    "as_final",
]


class Status(StrEnum):
    """Where a run is; the last six are final and appear in the `done` event."""

    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"
    # It was live when its gateway died (kill -9, power loss); marked at the next start.
    LOST = "lost"

    @property
    def final(self) -> bool:
        """Whether a run with this status has ended."""
        return self in FINAL_STATUSES


FinalStatus = Literal[
    Status.COMPLETED,
    Status.FAILED,
    Status.CANCELLED,
    Status.TIMEOUT,
    Status.INTERRUPTED,
    Status.LOST,
]
FINAL_STATUSES: frozenset[Status] = frozenset(get_args(FinalStatus))


def as_final(status: Status) -> FinalStatus:
    """Return the status of a run that has ended, typed as final.

    Raises:
        ValueError: the status is not final (the run has not ended).
    """
    if not status.final:
        raise ValueError(f"{status} is not a final status")
    return cast("FinalStatus", status)


class ErrorCode(StrEnum):
    """Every ``code`` the gateway sends: in error answers, ``error`` events and documents."""

    # Refusals of a request (ApiError and its subclasses).
    BAD_REQUEST = "bad_request"
    INVALID_JSON = "invalid_json"
    VALIDATION_ERROR = "validation_error"
    INVALID_CWD = "invalid_cwd"
    INVALID_LAST_EVENT_ID = "invalid_last_event_id"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    CWD_FORBIDDEN = "cwd_forbidden"
    PERMISSION_MODE_FORBIDDEN = "permission_mode_forbidden"
    FULL_ACCESS_FORBIDDEN = "full_access_forbidden"
    ROOT_FULL_ACCESS = "root_full_access"
    CALLER_CONFIG_FORBIDDEN = "caller_config_forbidden"
    UPDATED_INPUT_FORBIDDEN = "updated_input_forbidden"
    ADMIN_ONLY = "admin_only"
    NOT_FOUND = "not_found"
    PROCESS_NOT_FOUND = "process_not_found"
    APPROVAL_NOT_FOUND = "approval_not_found"
    KEY_NOT_FOUND = "key_not_found"
    UNKNOWN_SESSION = "unknown_session"
    SESSION_BUSY = "session_busy"
    SESSION_EXISTS = "session_exists"
    KEY_EXISTS = "key_exists"
    RUN_ENDED = "run_ended"
    APPROVAL_ANSWERED = "approval_answered"
    BODY_TOO_COMPLEX = "body_too_complex"
    TOO_MANY_REQUESTS = "too_many_requests"
    QUEUE_FULL = "queue_full"
    RATE_LIMITED = "rate_limited"
    BUDGET_EXHAUSTED = "budget_exhausted"
    TOO_MANY_FAILED_LOGINS = "too_many_failed_logins"
    TOO_MANY_MESSAGES = "too_many_messages"
    UNAVAILABLE = "unavailable"
    CLI_UNAVAILABLE = "cli_unavailable"
    CONFINEMENT_UNAVAILABLE = "confinement_unavailable"
    SHUTTING_DOWN = "shutting_down"
    DOCS_UNAVAILABLE = "docs_unavailable"
    WEBHOOK_FORBIDDEN = "webhook_forbidden"
    WEBHOOK_SECRET_MISSING = "webhook_secret_missing"  # noqa: S105 (a code, not a secret)
    # Quart's own refusals, named after werkzeug's exceptions (the app lowercases the name).
    METHOD_NOT_ALLOWED = "method_not_allowed"
    REQUEST_ENTITY_TOO_LARGE = "request_entity_too_large"
    REQUEST_TIMEOUT = "request_timeout"
    # How a run failed (the ``error`` event); internal_error is also the 500 answer.
    SPAWN_FAILED = "spawn_failed"
    CLI_FAILED = "cli_failed"
    LINE_TOO_LONG = "line_too_long"
    CLI_DID_NOT_EXIT = "cli_did_not_exit"
    TIMEOUT = "timeout"
    DOCUMENT_TOO_LARGE = "document_too_large"
    CONFINEMENT_FAILED = "confinement_failed"
    INTERNAL_ERROR = "internal_error"
    # A stream: false run that was cancelled (the document's code).
    CANCELLED = "cancelled"


RunErrorCode = Literal[
    ErrorCode.SPAWN_FAILED,
    ErrorCode.CLI_FAILED,
    ErrorCode.ROOT_FULL_ACCESS,
    ErrorCode.LINE_TOO_LONG,
    ErrorCode.CLI_DID_NOT_EXIT,
    ErrorCode.TIMEOUT,
    ErrorCode.DOCUMENT_TOO_LARGE,
    ErrorCode.CONFINEMENT_FAILED,
    ErrorCode.INTERNAL_ERROR,
]
RUN_ERROR_CODES: frozenset[ErrorCode] = frozenset(get_args(RunErrorCode))
# What became of an approval, as ``approval_answered`` says (``expired`` is never sent).
Verdict = Literal["allow", "deny", "refused", "timeout", "cancelled"]
