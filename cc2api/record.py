"""What is known of a run as it goes: the part a store keeps and ``GET /processes`` shows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .wire import ErrorEvent, Status


@dataclass
class RunState:
    """A run's state, written by its supervisor and read by everyone else.

    Plain data with no reference to the run's tasks, so that a later store can keep
    it as it is and a finished run can be described without its live parts.
    """

    run_id: str
    status: Status
    session_id: str | None  # the session the CLI said it uses (at first: the one resumed)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))  # accepted
    spawned_at: datetime | None = None  # its CLI started (None: queued, or never)
    finished_at: datetime | None = None
    exit_code: int | None = None
    error: ErrorEvent | None = None
    result: dict[str, Any] | None = None  # the CLI's last result line
    # Every session the CLI said it used, the one resumed first.
    sessions: list[str] = field(default_factory=list)
