"""The store: run records, their event logs and session claims, behind one interface.

Design
======

The registry keeps the live objects (a :class:`~cc2api.runner.Run`, with its trio
state, process tree and event log) in memory and serves every read of a live run
from there. The store holds what must outlive them: a record of each run, its
events, and the session claims. Three backends are planned:

- :class:`InMemoryStore`, the default and today's behaviour: nothing outlives the
  process, and records are dropped when the registry lets the run go.
- SQLite in ``DATA_DIR`` (issue 12): one gateway per database (a lock file refuses a
  second), WAL mode, one writer task running ``sqlite3`` in a worker thread.
- Redis, for several gateways sharing state: records in hashes, each run's events
  in a Redis Stream whose entry ids are the event ids (``XADD run:<id> <first>-0``),
  so ``Last-Event-ID`` maps onto ``XRANGE``; pub/sub for control (a cancel, an
  interrupt or an answer reaching the gateway that does not hold the run).

What is written, and when
-------------------------
Writes never wait. :meth:`Store.save_run` and :meth:`Store.append_events` queue,
and the backend's writer (:meth:`Store.serve`) drains the queue in batches: one
transaction (SQLite) or one pipeline (Redis) per batch. A run's record is saved
when it is accepted, when it learns its session and when it ends; the newest save
of a run wins, so a batch may fold several into one. Events arrive as the framed
batches the event log already makes, never one line at a time.

What is read on the hot path
----------------------------
Nothing. Readers of a live run are fed from its in-memory event log; the store is
read only off the hot path: a replay of a run no longer in memory (after a
restart, or past its retention), the history API, the sessions API, and at
startup, :meth:`Store.recover` (runs that were live at a crash become ``lost``).

What must be atomic: claims
---------------------------
A run's claims (every session it names, and the whole project for
``continue_conversation``) are checked and taken together or not at all, with no
await in between, and :meth:`Store.claim` raises :class:`~cc2api.errors.SessionBusy`
before any CLI starts. They are answered synchronously: the in-memory and SQLite
backends keep them in memory (:class:`~cc2api.claims.Claims`) and never write
them, since one gateway owns a database and no run outlives it (every run live at
a crash is ``lost``, its session free). Redis must share them between gateways:
one Lua script checks and sets them at once, a network round trip, so the claim
methods become async when it lands, and ``Registry.start`` with them (its callers
are async handlers already).

Lifetime
--------
:meth:`Store.serve` runs for as long as the registry, and longer: the registry
cancels it only once its runs' nursery has closed, so each run's last record is
queued before the final flush. A graceful stop flushes everything (shielded,
bounded); a crash loses at most the unflushed batch.

Later issues
------------
Issue 12 adds reads for the history API (``list_runs`` with filters and an opaque
cursor) and retention (``RETENTION_DAYS``, ``STORE_MAX_BYTES``): a replay of pruned
events returns batches with a gap, which the reader reports as ``dropped``. Issue
13 fills :attr:`RunRecord.api_key_id` and filters every read by it; spend is summed
from the records' ``total_cost_usd``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import trio

from .claims import Claims

if TYPE_CHECKING:
    from .runner import Run

__all__ = ["EventBatch", "InMemoryStore", "RunRecord", "Store", "record_of"]


@dataclass(frozen=True)
class RunRecord:
    """What the store keeps of one run: everything but its events; never a secret."""

    run_id: str  # process_id on the wire
    created_at: datetime  # accepted
    status: str  # a Status value (cc2api.wire)
    cwd: str
    started_at: datetime | None = None  # its CLI spawned (None: still queued, or never)
    ended_at: datetime | None = None
    exit_code: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    session_id: str | None = None
    model: str | None = None
    permission_mode: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)  # the request's, no secrets
    detached: bool = False
    # From the CLI's result line.
    total_cost_usd: float | None = None
    usage: Mapping[str, Any] | None = None
    num_turns: int | None = None
    duration_api_ms: int | None = None
    api_key_id: str | None = None  # the key that started it (issue 13)


@dataclass(frozen=True)
class EventBatch:
    """Framed SSE events with consecutive ids from ``first``, as the event log makes them."""

    first: int
    count: int
    data: bytes


# The request's options a run record keeps: none can hold a secret (prompts, MCP
# configs, settings, agents and schemas can, so they are left out).
_RECORDED_OPTIONS = frozenset(
    {
        "fallback_model",
        "tools",
        "allowed_tools",
        "disallowed_tools",
        "strict_mcp_config",
        "setting_sources",
        "add_dir",
        "agent",
        "max_budget_usd",
        "max_turns",
        "effort",
        "include_partial_messages",
        "include_hook_events",
        "fork_session",
        "new_session_id",
        "continue_conversation",
        "no_session_persistence",
        "name",
        "stream",
        "approval",
        "timeout_seconds",
    }
)


# The CLI's JSON is trusted for nothing: a figure of the wrong type is left out.
def _text(found: dict[str, Any], key: str) -> str | None:
    value = found.get(key)
    return value if isinstance(value, str) else None


def _count(found: dict[str, Any], key: str) -> int | None:
    value = found.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _amount(found: dict[str, Any], key: str) -> float | None:
    value = found.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def record_of(run: Run) -> RunRecord:
    """Return what the store keeps of ``run`` as it stands."""
    request, state = run.request, run.state
    result = state.result or {}
    usage = result.get("usage")
    return RunRecord(
        run_id=run.run_id,
        created_at=state.started_at,
        status=str(state.status),
        cwd=request.cwd,
        ended_at=state.finished_at,
        exit_code=state.exit_code,
        error_code=None if state.error is None else str(state.error.code),
        error_message=None if state.error is None else state.error.message,
        session_id=state.session_id,
        model=request.model,
        permission_mode=request.permission_mode,
        options=request.model_dump(
            mode="json", include=set(_RECORDED_OPTIONS), exclude_defaults=True
        ),
        detached=run.detached,
        total_cost_usd=_amount(result, "total_cost_usd"),
        usage=usage if isinstance(usage, dict) else None,
        num_turns=_count(result, "num_turns"),
        duration_api_ms=_count(result, "duration_api_ms"),
    )


class Store(Protocol):
    """Run records, event logs and session claims; see the module's page for the design."""

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write what is queued, in batches, until cancelled.

        Cancellation: what is still queued is flushed, shielded and bounded, then
        Cancelled propagates.
        """
        ...

    async def recover(self) -> list[RunRecord]:
        """At startup, mark the runs that were live when the gateway died ``lost``; return them.

        The caller tears down their leftover processes before it serves.
        """
        ...

    # -- runs ---------------------------------------------------------------

    def save_run(self, record: RunRecord) -> None:
        """Queue a write of ``record``; the newest save of a run wins. Never waits."""
        ...

    def evict(self, run_id: str) -> None:
        """Say the registry has let the run go: a store without history drops its record."""
        ...

    async def get_run(self, run_id: str) -> RunRecord | None:
        """Return the stored record of ``run_id``, if any (off the hot path)."""
        ...

    # -- event logs -----------------------------------------------------------

    def append_events(self, run_id: str, batch: EventBatch) -> None:
        """Queue a batch of a run's events for writing; ids follow the last batch. Never waits."""
        ...

    async def read_events(self, run_id: str, after: int, max_bytes: int) -> list[EventBatch]:
        """Return the stored batches holding the events after id ``after``, up to ``max_bytes``.

        A gap between ``after`` and the first batch's ``first`` means pruned events.
        """
        ...

    # -- session claims ---------------------------------------------------------

    def claim(
        self,
        run_id: str,
        sessions: Sequence[str],
        project: str,
        *,
        continue_from: str | None = None,
    ) -> None:
        """Claim a new run's sessions and project place, all or nothing (see Claims.claim).

        Raises:
            SessionBusy: a live run holds one of them; nothing is claimed.
        """
        ...

    def claim_later(self, run_id: str, session_id: str) -> str:
        """Claim a session a running run has started using; return the run holding it."""
        ...

    def release(self, run_id: str) -> None:
        """Release every claim of ``run_id``; idempotent."""
        ...

    def holder(self, session_id: str) -> str | None:
        """Return the live run holding ``session_id``, if any."""
        ...


class InMemoryStore:
    """The default store: records of the runs the registry holds, claims, no history.

    The live event log is the only copy of a run's events, as it has always been:
    batches are not copied here, so memory stays bounded by RUN_BUFFER_BYTES per run.
    """

    def __init__(self) -> None:
        self._records: dict[str, RunRecord] = {}
        self._claims = Claims()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Wait until cancelled: every write is already done.

        Cancellation: returns at once by raising Cancelled; nothing to flush.
        """
        task_status.started()
        await trio.sleep_forever()

    async def recover(self) -> list[RunRecord]:
        """Return no runs: nothing survives the process in memory."""
        return []

    def save_run(self, record: RunRecord) -> None:
        """Keep ``record`` until the registry lets the run go."""
        self._records[record.run_id] = record

    def evict(self, run_id: str) -> None:
        """Drop the run's record."""
        self._records.pop(run_id, None)

    async def get_run(self, run_id: str) -> RunRecord | None:
        """Return the record of a run the registry holds."""
        return self._records.get(run_id)

    def append_events(self, run_id: str, batch: EventBatch) -> None:
        """Keep nothing: the run's own event log is the in-memory copy."""

    async def read_events(self, run_id: str, after: int, max_bytes: int) -> list[EventBatch]:
        """Return nothing: a run's events live in its event log, and go with it."""
        return []

    def claim(
        self,
        run_id: str,
        sessions: Sequence[str],
        project: str,
        *,
        continue_from: str | None = None,
    ) -> None:
        """Claim a new run's sessions and project place (see Claims.claim)."""
        self._claims.claim(run_id, sessions, project, continue_from=continue_from)

    def claim_later(self, run_id: str, session_id: str) -> str:
        """Claim a session a running run has started using; return its holder."""
        return self._claims.claim_later(run_id, session_id)

    def release(self, run_id: str) -> None:
        """Release every claim of ``run_id``."""
        self._claims.release(run_id)

    def holder(self, session_id: str) -> str | None:
        """Return the live run holding ``session_id``, if any."""
        return self._claims.holder(session_id)
