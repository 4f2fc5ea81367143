"""The store: run records, their event logs and session claims, behind one interface.

Design
======

The registry keeps the live objects (a :class:`~cc2api.runner.Run`, with its trio
state, process tree and event log) in memory and serves every read of a live run
from there. The store holds what must outlive them: a record of each run, its
events, and the session claims. Three backends are planned:

- :class:`~cc2api.sqlite_store.SqliteStore`, the default (``STORE=sqlite``): SQLite in
  ``DATA_DIR``, one gateway per database (a lock file refuses a second), WAL mode, one
  writer task running ``sqlite3`` in a worker thread. Every run's record and events
  outlive the process, within retention.
- :class:`InMemoryStore` (``STORE=memory``, and tests): nothing outlives the process,
  and records are dropped when the registry lets the run go.
- Redis, for several gateways sharing state: records in hashes, each run's events
  in a Redis Stream whose entry ids are the event ids (``XADD run:<id> <first>-0``),
  so ``Last-Event-ID`` maps onto ``XRANGE``; pub/sub for control (a cancel, an
  interrupt or an answer reaching the gateway that does not hold the run).

What is written, and when
-------------------------
Writes never wait. :meth:`Store.save_run` and :meth:`Store.append_events` queue,
and the backend's writer (:meth:`Store.serve`) drains the queue in batches: one
transaction (SQLite) or one pipeline (Redis) per batch. A run's record is saved
when it is accepted, when its CLI starts, when it learns its session and when it ends;
the newest save of a run wins, so a batch may fold several into one. Events arrive as
the framed batches the event log already makes, never one line at a time.

A run waits only when the writer is far behind (:attr:`Store.crowded`, then
:meth:`Store.room`): its event log waits for the store as for a slow reader, so a run
printing faster than the store writes is paced rather than outrunning it into the
backlog's bound. A store that cannot write (a full disk) is never crowded: runs go on
from memory, and the backlog's bound drops the oldest events instead.

What is read on the hot path
----------------------------
Nothing. Readers of a live run are fed from its in-memory event log; the store is
read only off the hot path: a replay of a run no longer in memory (after a
restart, or past its retention), the history API, the sessions API, and at
startup, :meth:`Store.unfinished` (runs that were live at a crash become ``lost``).

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

Reads off the hot path
----------------------
The history API (``list_runs`` with filters and an opaque cursor, ``get_run``), the
sessions API's ``session_runs``, and replays (``read_events``): a replay of pruned
events gets batches with a gap, which :mod:`cc2api.replay` reports as ``dropped``.
Retention (``RETENTION_DAYS``, ``STORE_MAX_BYTES``) is the backend's own.

Later issues
------------
Issue 13 fills :attr:`RunRecord.api_key_id` and filters every read by it
(:attr:`RunQuery.api_key_id`).

Usage
-----
Each run is counted once in hourly rollups (:mod:`cc2api.usage`), when its record is
first written with a final status: SQLite in the writer's own transaction (a run's
``counted`` flag, set only once), memory when its save turns final. :meth:`Store.usage`
and :meth:`Store.spent` read the rollups, which retention never deletes; what is still
queued is not counted yet, so a reader that must see every ended run flushes first.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import trio

from .claims import Claims
from .codes import FINAL_STATUSES
from .run_usage import RunUsage
from .usage import Rollup, Rollups, UsageQuery, UsageRow, rollups_of
from .webhook_records import MemoryAttempts, WebhookAttempt

if TYPE_CHECKING:
    from .runner import Run

__all__ = [
    "MAX_PAGE",
    "STORE_MARKER_VAR",
    "EventBatch",
    "InMemoryStore",
    "RunPage",
    "RunQuery",
    "RunRecord",
    "Store",
    "StoreStats",
    "StoreUnusable",
    "record_of",
    "rollups_of_record",
]

# Every process of a run carries the store's id beside CC2API_RUN_ID (proctree's
# marker), so that a gateway restarted on a DATA_DIR ends the leftovers of its own runs
# after a crash, and never another gateway's.
STORE_MARKER_VAR = "CC2API_STORE_ID"
_FINAL_NAMES = frozenset(str(status) for status in FINAL_STATUSES)
# The most records one page of GET /runs (or GET /sessions) holds.
MAX_PAGE = 500


class StoreUnusable(Exception):
    """The store cannot be opened: locked by another gateway, corrupt, or unwritable.

    Its message says what is wrong and what to do; the server refuses to start.
    """


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
    # Its tokens by model and its cost so far (cc2api.run_usage); what usage counts.
    run_usage: RunUsage | None = None
    # Every session the CLI said it used, the one resumed first (GET /sessions' runs).
    sessions: tuple[str, ...] = ()
    prompt: str | None = None  # only with STORE_PROMPTS=true: prompts may hold secrets
    # The id of its last event: the registry's count for a live run; a store that keeps
    # events answers its own (the last it holds), which a crash may leave behind.
    last_event_id: int = 0
    # The store pruned some of its events (STORE_MAX_BYTES): a replay starts with `dropped`.
    events_pruned: bool = False


@dataclass(frozen=True)
class StoreStats:
    """What a store holds and what waits in memory to be written, for /health and the bench."""

    backlog_bytes: int  # event bytes queued or being written now
    backlog_peak_bytes: int  # the most there ever were at once
    event_bytes: int  # event bytes stored
    runs: int  # runs stored
    schema_version: int | None = None  # None: a store without a schema
    path: Path | None = None  # None: a store without a file


@dataclass(frozen=True)
class RunQuery:
    """A page of GET /runs: filters, newest first, after an opaque cursor."""

    statuses: frozenset[str] = frozenset()  # empty: any
    session_id: str | None = None  # runs that used it (any of their sessions)
    cwd_prefix: str | None = None  # a folder: the runs in it and below it
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before
    cursor: str | None = None  # a RunPage's next_cursor
    limit: int = 100
    api_key_id: str | None = None  # issue 13: a key sees only its own runs


@dataclass(frozen=True)
class RunPage:
    """Records newest first, and the cursor of the next page (None: the last page)."""

    records: list[RunRecord]
    next_cursor: str | None


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


def record_of(run: Run, *, prompt: bool = False) -> RunRecord:
    """Return what the store keeps of ``run`` as it stands (its prompt only if ``prompt``)."""
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
        started_at=state.spawned_at,
        sessions=tuple(state.sessions),
        prompt=request.prompt if prompt else None,
        last_event_id=run.last_event_id,
        api_key_id=run.owner.key_id,
        run_usage=run.usage(),
    )


def rollups_of_record(record: RunRecord) -> list[Rollup]:
    """Return what an ended run's record adds to the usage rollups (cc2api.usage)."""
    return rollups_of(
        status=record.status,
        key_id=record.api_key_id,
        created_at=record.created_at,
        started_at=record.started_at,
        ended_at=record.ended_at,
        usage=record.run_usage,
    )


class Store(Protocol):
    """Run records, event logs and session claims; see the module's page for the design."""

    @property
    def store_id(self) -> str:
        """Return what tells this store's processes apart (the value of STORE_MARKER_VAR).

        Known before the store is opened: runs' environments are built from it.
        """
        ...

    @property
    def keeps_history(self) -> bool:
        """Return whether records and events outlive the registry's runs (and restarts)."""
        ...

    @property
    def problem(self) -> str | None:
        """Return why the store cannot write now (a full disk, ...), or None; /health shows it."""
        ...

    @property
    def kind(self) -> str:
        """Return its STORE setting's name: ``sqlite`` or ``memory``."""
        ...

    def stats(self) -> StoreStats:
        """Return what it holds and what waits to be written (cheap: no I/O)."""
        ...

    @property
    def crowded(self) -> bool:
        """Return whether so much waits to be written that runs should wait (cheap).

        Only while writes succeed: a store that cannot write holds no run back.
        """
        ...

    async def room(self) -> None:
        """Return once less waits to be written, or the store can no longer write.

        Cancellation: the wait stops; nothing else changes.
        """
        ...

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the store, then write what is queued, in batches, until cancelled.

        Started once it is open and upgraded, and ready for :meth:`unfinished`.

        Raises:
            StoreUnusable: before it is started: it cannot be opened (another gateway
                holds it, it is corrupt, or its folder cannot be written).

        Cancellation: what is still queued is flushed, shielded and bounded, then the
        store is closed and Cancelled propagates.
        """
        ...

    async def open(self) -> None:
        """Open the store now if it is not open (:meth:`serve` does otherwise).

        A server calls it before it listens, so that a store it cannot open stops the
        start with the reason, not a half-started server.

        Raises:
            StoreUnusable: as :meth:`serve`.
        """
        ...

    async def unfinished(self) -> list[RunRecord]:
        """Return the runs recorded as live: at startup, those the last gateway left behind.

        Their ``last_event_id`` is the last event the store holds. The caller ends
        their leftover processes, then saves each one ``lost`` with its ``done`` event.
        """
        ...

    async def flush(self) -> None:
        """Return once everything queued before the call is written (or could not be).

        Cancellation: the wait stops; the writes go on.
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
        """Return the record of ``run_id``, if any, its latest save included (off the hot path)."""
        ...

    async def list_runs(self, query: RunQuery) -> RunPage:
        """Return a page of records, newest first, as GET /runs lists them.

        Raises:
            ValueError: ``query.cursor`` is not a cursor this store made.
        """
        ...

    async def session_runs(
        self, session_ids: Sequence[str], key_id: str | None = None
    ) -> dict[str, list[str]]:
        """Return, for each session, the ids of the runs that used it, oldest first.

        With ``key_id``, only that key's runs: a key sees a session only through them.
        """
        ...

    async def sessions_of(self, key_id: str) -> set[str]:
        """Return every session a run of ``key_id`` used: the sessions that key may see."""
        ...

    # -- usage ------------------------------------------------------------------

    async def usage(self, query: UsageQuery) -> list[UsageRow]:
        """Return the usage counted in the query's hours, one row per group, by group.

        Each run is counted once, when its record is first written with a final
        status (see :mod:`cc2api.usage`); what waits to be written is not counted
        yet: :meth:`flush` first to see it.
        """
        ...

    async def spent(self, since: datetime) -> dict[str, float]:
        """Return the USD counted by key id ('' for the admin) in the hours from ``since``'s.

        As :meth:`usage`: runs written so far; :meth:`flush` first to see the rest.
        """
        ...

    # -- event logs -----------------------------------------------------------

    def append_events(self, run_id: str, batch: EventBatch) -> None:
        """Queue a batch of a run's events for writing; ids follow the last batch. Never waits."""
        ...

    async def read_events(
        self, run_id: str, after: int, max_bytes: int, *, before: int | None = None
    ) -> list[EventBatch]:
        """Return the batches holding the events after id ``after`` (and before ``before``).

        At least one batch when there is one, then more up to about ``max_bytes``; the
        first may start before ``after + 1``. A gap between ``after`` and the first
        batch's ``first`` means pruned (or never written) events. Queued batches count.
        """
        ...

    # -- webhook attempts -------------------------------------------------------

    async def add_webhook_attempt(self, attempt: WebhookAttempt) -> None:
        """Keep ``attempt`` at once (not through the batching writer)."""

    async def webhook_attempts(self, run_id: str) -> list[WebhookAttempt]:
        """Return the webhook attempts of ``run_id``, oldest first."""

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


def _final(status: str) -> bool:
    return status in _FINAL_NAMES


def newest_first(records: list[RunRecord], query: RunQuery) -> RunPage:
    """Filter and page records in memory, as a store without an index answers GET /runs."""
    picked = [
        record
        for record in records
        if (not query.statuses or record.status in query.statuses)
        and (query.session_id is None or query.session_id in record.sessions)
        and (query.cwd_prefix is None or within(record.cwd, query.cwd_prefix))
        and (query.since is None or record.created_at >= query.since)
        and (query.until is None or record.created_at < query.until)
        and (query.api_key_id is None or record.api_key_id == query.api_key_id)
    ]
    picked.sort(key=lambda record: (record.created_at, record.run_id), reverse=True)
    if query.cursor is not None:
        moment, run_id = decode_cursor(query.cursor)
        picked = [r for r in picked if (r.created_at, r.run_id) < (moment, run_id)]
    page = picked[: query.limit]
    more = len(picked) > query.limit
    return RunPage(page, encode_cursor(page[-1].created_at, page[-1].run_id) if more else None)


def within(cwd: str, prefix: str) -> bool:
    """Return whether folder ``cwd`` is ``prefix`` or below it (by path, not by text)."""
    prefix = prefix.rstrip("/") or "/"
    return cwd == prefix or cwd.startswith(prefix if prefix == "/" else prefix + "/")


def encode_cursor(created_at: datetime, run_id: str) -> str:
    """Return the opaque cursor of the page after the record (created_at, run_id)."""
    raw = f"{created_at.isoformat()}|{run_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Return what :func:`encode_cursor` encoded.

    Raises:
        ValueError: not such a cursor.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, run_id = raw.split("|", 1)
        parsed = datetime.fromisoformat(moment)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{cursor!r} is not a cursor this server gave") from error
    if parsed.tzinfo is None:
        raise ValueError(f"{cursor!r} is not a cursor this server gave")
    return parsed, run_id


class InMemoryStore(Claims):
    """A store without history: records of the runs the registry holds, and claims.

    The live event log is the only copy of a run's events, as it has always been:
    batches are not copied here, so memory stays bounded by RUN_BUFFER_BYTES per run.
    For tests, and for operators who want nothing written (STORE=memory).
    """

    keeps_history = False
    problem = None
    kind = "memory"

    def __init__(self) -> None:
        self._records: dict[str, RunRecord] = {}
        self._rollups = Rollups()
        self._attempts = MemoryAttempts()
        Claims.__init__(self)  # claims are answered in memory (see cc2api.store)
        self.store_id = f"memory-{uuid.uuid4()}"

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Wait until cancelled: every write is already done.

        Cancellation: returns at once by raising Cancelled; nothing to flush.
        """
        task_status.started()
        await trio.sleep_forever()

    def stats(self) -> StoreStats:
        """Return what it holds: the records of the runs the registry holds, nothing queued."""
        return StoreStats(0, 0, 0, len(self._records))

    crowded = False

    async def room(self) -> None:
        """Return at once: nothing waits to be written."""

    async def open(self) -> None:
        """Do nothing: there is nothing to open."""

    async def unfinished(self) -> list[RunRecord]:
        """Return no runs: nothing survives the process in memory."""
        return []

    async def flush(self) -> None:
        """Return at once: nothing is queued."""

    def save_run(self, record: RunRecord) -> None:
        """Keep ``record`` until the registry lets the run go; count it once it has ended."""
        before = self._records.get(record.run_id)
        if _final(record.status) and (before is None or not _final(before.status)):
            self._rollups.add(rollups_of_record(record))
        self._records[record.run_id] = record

    def evict(self, run_id: str) -> None:
        """Drop the run's record."""
        self._records.pop(run_id, None)

    async def get_run(self, run_id: str) -> RunRecord | None:
        """Return the record of a run the registry holds."""
        return self._records.get(run_id)

    async def list_runs(self, query: RunQuery) -> RunPage:
        """Return a page of the records of the runs the registry holds."""
        return newest_first(list(self._records.values()), query)

    async def sessions_of(self, key_id: str) -> set[str]:
        """Return the sessions of the held runs of ``key_id``."""
        return {
            session
            for record in self._records.values()
            if record.api_key_id == key_id
            for session in record.sessions
        }

    async def session_runs(
        self, session_ids: Sequence[str], key_id: str | None = None
    ) -> dict[str, list[str]]:
        """Return the runs the registry holds that used each session (``key_id``'s only)."""
        wanted = set(session_ids)
        found: dict[str, list[str]] = {session: [] for session in session_ids}
        for record in sorted(self._records.values(), key=lambda r: r.created_at):
            if key_id is not None and record.api_key_id != key_id:
                continue
            for session in wanted.intersection(record.sessions):
                found[session].append(record.run_id)
        return found

    async def usage(self, query: UsageQuery) -> list[UsageRow]:
        """Return the usage counted since the process started (key groups named by id)."""
        return self._rollups.usage(query)

    async def spent(self, since: datetime) -> dict[str, float]:
        """Return the USD counted by key id in the hours from ``since``'s on."""
        return self._rollups.spent(since)

    def append_events(self, run_id: str, batch: EventBatch) -> None:
        """Keep nothing: the run's own event log is the in-memory copy."""

    async def read_events(
        self, run_id: str, after: int, max_bytes: int, *, before: int | None = None
    ) -> list[EventBatch]:
        """Return nothing: a run's events live in its event log, and go with it."""
        return []

    async def add_webhook_attempt(self, attempt: WebhookAttempt) -> None:
        """Keep ``attempt`` in memory, within a bound (see :class:`MemoryAttempts`)."""
        self._attempts.add(attempt)

    async def webhook_attempts(self, run_id: str) -> list[WebhookAttempt]:
        """Return the attempts kept of ``run_id``, oldest first."""
        return self._attempts.of(run_id)
