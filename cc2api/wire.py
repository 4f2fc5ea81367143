"""Placeholder: replaced by the wire shapes module at integration."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """Where a run is; the last five are final and appear in the ``done`` event."""

    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"


class ErrorCode(StrEnum):
    """Error codes."""

    INTERNAL_ERROR = "internal_error"
    CLI_DID_NOT_EXIT = "cli_did_not_exit"
    LINE_TOO_LONG = "line_too_long"
    DOCUMENT_TOO_LARGE = "document_too_large"
    TIMEOUT = "timeout"
    CONFINEMENT_FAILED = "confinement_failed"
    ROOT_FULL_ACCESS = "root_full_access"
    CLI_FAILED = "cli_failed"
    SPAWN_FAILED = "spawn_failed"
    CANCELLED = "cancelled"
