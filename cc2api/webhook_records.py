"""What the store keeps of webhook deliveries: one row per attempt, read by the records route.

Attempts are rare (a few per run at most) and written as they happen, each in a
transaction of its own on a connection of its own, as keys are
(:mod:`cc2api.key_store`): they never pass through the batching writer of runs and
events, and never wait for it beyond SQLite's busy timeout. Memory keeps the newest
runs' attempts only, within a bound.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import trio

from .webhook_wire import WebhookAttemptInfo, WebhookEventType, WebhookOutcome

__all__ = [
    "MemoryAttempts",
    "WebhookAttempt",
    "read_attempts",
    "write_attempt",
    "write_attempt_at",
]

BUSY_SECONDS = 10.0
# Memory (STORE=memory) keeps this many runs' attempts, the newest, and so many of each.
MEMORY_RUNS = 1000
MEMORY_ATTEMPTS_PER_RUN = 200


@dataclass(frozen=True)
class WebhookAttempt:
    """One attempt to deliver a run's webhook, or a delivery dropped unsent (attempt 0)."""

    run_id: str
    api_key_id: str | None  # whose run: the records route shows it to them only
    delivery_id: str
    event_type: WebhookEventType
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    outcome: WebhookOutcome

    def info(self) -> WebhookAttemptInfo:
        """Return the attempt as the records route shows it."""
        return WebhookAttemptInfo(
            delivery_id=self.delivery_id,
            event_type=self.event_type,
            attempt=self.attempt,
            at=self.at,
            status_code=self.status_code,
            error=self.error,
            outcome=self.outcome,
        )


def _us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def write_attempt(conn: sqlite3.Connection, attempt: WebhookAttempt) -> None:
    """Insert ``attempt`` (``conn`` in autocommit mode: the insert is its own transaction)."""
    conn.execute(
        "INSERT INTO webhook_attempts (run_id, api_key_id, delivery_id, event_type, attempt, "
        "at_us, status_code, error, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            attempt.run_id,
            attempt.api_key_id,
            attempt.delivery_id,
            attempt.event_type,
            attempt.attempt,
            _us(attempt.at),
            attempt.status_code,
            attempt.error,
            attempt.outcome,
        ),
    )


async def write_attempt_at(db: Path, attempt: WebhookAttempt) -> None:
    """Insert ``attempt`` into the database at ``db``, on a connection of its own.

    Cancellation: shielded; the insert ends (committed or not) first.
    """

    def write() -> None:
        conn = sqlite3.connect(db, isolation_level=None, timeout=BUSY_SECONDS)
        try:
            write_attempt(conn, attempt)
        finally:
            conn.close()

    with trio.CancelScope(shield=True):
        await trio.to_thread.run_sync(write)


def read_attempts(conn: sqlite3.Connection, run_id: str) -> list[WebhookAttempt]:
    """Return the attempts of ``run_id``'s webhooks, oldest first."""
    rows = conn.execute(
        "SELECT api_key_id, delivery_id, event_type, attempt, at_us, status_code, error, "
        "outcome FROM webhook_attempts WHERE run_id = ? ORDER BY at_us, rowid",
        (run_id,),
    ).fetchall()
    return [
        WebhookAttempt(
            run_id=run_id,
            api_key_id=key_id,
            delivery_id=delivery_id,
            event_type=event_type,
            attempt=number,
            at=datetime.fromtimestamp(at_us / 1_000_000, UTC),
            status_code=status,
            error=error,
            outcome=outcome,
        )
        for key_id, delivery_id, event_type, number, at_us, status, error, outcome in rows
    ]


class MemoryAttempts:
    """The newest runs' attempts, in memory, within a bound (for STORE=memory)."""

    def __init__(self) -> None:
        self._runs: OrderedDict[str, list[WebhookAttempt]] = OrderedDict()

    def add(self, attempt: WebhookAttempt) -> None:
        """Keep ``attempt``; the oldest run's attempts go past MEMORY_RUNS runs."""
        kept = self._runs.setdefault(attempt.run_id, [])
        self._runs.move_to_end(attempt.run_id)
        if len(kept) < MEMORY_ATTEMPTS_PER_RUN:
            kept.append(attempt)
        while len(self._runs) > MEMORY_RUNS:
            self._runs.popitem(last=False)

    def of(self, run_id: str) -> list[WebhookAttempt]:
        """Return the attempts kept of ``run_id``, oldest first."""
        return list(self._runs.get(run_id, ()))
