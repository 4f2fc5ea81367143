"""The SQLite store: run records and event logs in ``DATA_DIR/cc2api.db``, one gateway each.

Design
======

Writes never wait. :meth:`SqliteStore.save_run` and :meth:`SqliteStore.append_events`
only add to an in-memory queue (the newest save of a run replaces the one queued
before; a run's batches stay in order). The writer (:meth:`SqliteStore.serve`)
wakes when something is queued, gathers for ``flush_interval`` (or goes at once
past ~4 MiB, or when :meth:`~SqliteStore.flush` asks), swaps the queue for an empty
one and writes what it took in ONE transaction, records before events, in a
worker thread. The event loop only ever swaps queues; every statement runs in a
thread: the writer's on its one connection (its uses follow one another, never
overlap), each read on a connection of a small pool. WAL lets the reads go on
while the writer writes.

Reads see what is queued. A read takes what is queued and what is being written
(the batch the writer took) before it reads the database, then lays the first over
the second: whatever has left memory since is in the database by then, because a
batch leaves memory only once its transaction is committed.

When a write fails (a full disk, a read-only file system) it is rolled back and
what it took goes back in front of the queue; :attr:`SqliteStore.problem` says why,
and the writer tries again, 0.5 s later, then 1, 2, 4, 5, 5... One ERROR line is
logged when the failing starts, and a WARNING when writes resume. The queue is
bounded by ``backlog_bytes`` (it only grows that far while writes fail): past it,
the oldest queued event batches are dropped (never records), with a WARNING
saying how many, and a replay later shows the gap as ``dropped``.

Retention runs in the writer, at open and every ``prune_interval``: runs that
ended more than ``retention_days`` ago go whole; then, while the stored events
outgrow ``max_bytes``, the oldest ended runs lose every batch but their last.

Files: ``cc2api.lock`` (an exclusive flock held while the store is open, with the
holder's pid) and ``cc2api.db`` with its ``-wal`` and ``-shm``. :func:`inspect` reads
them for ``cc2api check`` without the lock and without writing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import trio

from . import store_sql
from .claims import Claims
from .store import (
    EventBatch,
    RunPage,
    RunQuery,
    RunRecord,
    StoreStats,
    decode_cursor,
    encode_cursor,
    newest_first,
)
from .store_files import (
    DB_NAME,
    Opened,
    StoreReport,
    close_files,
    inspect,
    open_files,
)
from .store_queue import Pending
from .usage import UsageQuery, UsageRow
from .webhook_records import WebhookAttempt, read_attempts, write_attempt_at

__all__ = ["SqliteStore", "StoreReport", "StoreStats", "inspect"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Runs wait for the writer while more than this share of STORE_BACKLOG_BYTES waits for
# it (a quarter: 64 MiB by default), until half as much is left.
CROWDED_SHARE = 4
# A queue this big is written at once rather than after flush_interval.
URGENT_BYTES = 4 * 1024 * 1024
# How long a graceful stop may spend writing what is queued.
FINAL_FLUSH_SECONDS = 10.0
# Between failed writes: from the first, doubling up to the last.
RETRY_FIRST, RETRY_LAST = 0.5, 5.0


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Readers:
    """A few read-only connections, each used by one thread at a time."""

    def __init__(self, conns: Sequence[sqlite3.Connection] = ()) -> None:
        self._free = list(conns)
        self._limiter = trio.CapacityLimiter(max(len(conns), 1))
        self._closed = not conns

    async def run(self, read: Callable[[sqlite3.Connection], T]) -> T:
        """Return ``read(conn)``, run in a worker thread on a free connection.

        Raises:
            RuntimeError: the store is not open (not yet, or no more).

        Cancellation: the read runs to its end (it is short), then Cancelled is raised.
        """
        async with self._limiter:
            if self._closed:
                raise RuntimeError("the store is not open: serve() opens it")
            conn = self._free.pop()
            try:
                return await trio.to_thread.run_sync(read, conn)
            finally:
                if self._closed:
                    conn.close()  # one the store closed meanwhile: it was in use
                else:
                    self._free.append(conn)

    def close(self) -> list[sqlite3.Connection]:
        """Refuse reads from now on; return the connections no read holds, to close."""
        self._closed = True
        free, self._free = self._free, []
        return free


# -- the store ----------------------------------------------------------------------


class _Writer:
    """The writer task: writes the queue in batches, tries a failed write again, prunes.

    Every use of the writer's connection is made from this task, one after another.
    """

    def __init__(
        self,
        pending: Pending,
        db: Path,
        *,
        flush_interval: float,
        prune_interval: float,
        retention: timedelta,
        max_bytes: int,
        now: Callable[[], datetime],
    ) -> None:
        self._pending = pending
        self._db = db
        self._flush_interval = flush_interval
        self._prune_interval = prune_interval
        self._retention = retention
        self._max_bytes = max_bytes
        self._now = now
        self.running = False  # a flush will be answered
        self.problem: str | None = None
        self.stored = store_sql.Totals(0, 0)  # what the database holds
        self._wake = trio.Event()  # something was queued
        self._hurry = trio.Event()  # write now: a flush waits, or the queue is big
        self._attempted = trio.Event()  # a write ended (replaced each time)
        self._attempted_upto = 0  # the saves and appends the last write covered
        self._retry_in = RETRY_FIRST
        self._retry_at = 0.0
        self.on_write: Callable[[float], None] | None = None  # a batch's seconds, once written

    def wake(self, *, hurry: bool = False) -> None:
        """Say something was queued (and, with ``hurry``, that it should be written now)."""
        self._wake.set()
        if hurry:
            self._hurry.set()

    async def serve(self, conn: sqlite3.Connection, *, task_status: trio.TaskStatus[None]) -> None:
        """Prune once, report started, then write what is queued until cancelled.

        Cancellation: what is queued is written, shielded and bounded by
        FINAL_FLUSH_SECONDS (what is left is logged); then Cancelled propagates.
        """
        self.running = True
        try:
            await self._prune(conn)
            task_status.started()
            await self._write_forever(conn)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(FINAL_FLUSH_SECONDS):
                while self._pending.queue:
                    await trio.sleep_until(self._retry_at)
                    await self._write_once(conn)
            self.running = False
            self._report_left()
            self._attempted.set()  # flushes still waiting get their answer

    async def _write_forever(self, conn: sqlite3.Connection) -> None:
        next_prune = trio.current_time() + self._prune_interval
        while True:
            with trio.move_on_at(next_prune):
                while not self._pending.queue:
                    self._wake = trio.Event()
                    await self._wake.wait()
                if self.problem is not None:
                    await trio.sleep_until(self._retry_at)
                else:
                    with trio.move_on_after(self._flush_interval):
                        await self._hurry.wait()
                await self._write_once(conn)
            if trio.current_time() >= next_prune:
                await self._prune(conn)
                next_prune = trio.current_time() + self._prune_interval

    async def _write_once(self, conn: sqlite3.Connection) -> None:
        """Write everything queued in one transaction; on failure, queue it again."""
        pending = self._pending
        covered = pending.queued
        self._hurry = trio.Event()
        taken = pending.take()
        records = list(taken.records.values())

        def write() -> store_sql.Written:
            # Rows are listed in the thread too: after a long outage there can be many.
            # Nothing changes what was taken until the write is over.
            return store_sql.write_batch(conn, records, taken.rows())

        began = trio.current_time()
        try:
            written = await trio.to_thread.run_sync(write)
        except (sqlite3.Error, OSError) as error:
            pending.failed()
            self._failed(error)
        except Exception:
            # Not the disk: something in the batch no retry would write. Kept, it would
            # fail every write after it; dropped, it costs this batch alone.
            log.exception("the store could not write a batch, and dropped it")
            pending.written()
        except BaseException:
            pending.failed()  # cancelled before the thread started: nothing was written
            raise
        else:
            pending.written()
            if self.on_write is not None:
                self.on_write(trio.current_time() - began)
            self.stored = store_sql.Totals(
                self.stored.runs + written.new_runs, self.stored.event_bytes + written.event_bytes
            )
            if self.problem is not None:
                log.warning("the store writes to %s again", self._db)
                self.problem = None
                self._retry_in = RETRY_FIRST
        finally:
            self._attempted_upto = covered
            self._attempted.set()
            self._attempted = trio.Event()
            self._report_drops()

    def _failed(self, error: BaseException) -> None:
        reason = str(error) or type(error).__name__
        if self.problem is None:  # one line per episode, not per try
            log.error(
                "the store cannot write to %s: %s; runs go on from memory, and it tries again",
                self._db,
                reason,
            )
        else:
            self._retry_in = min(self._retry_in * 2, RETRY_LAST)
        self.problem = (
            f"the store cannot write to {self._db}: {reason}; runs go on from memory and "
            "writes resume when it can write again"
        )
        self._retry_at = trio.current_time() + self._retry_in

    def _report_left(self) -> None:
        self._report_drops()
        left = self._pending.queue
        if left:
            log.error(
                "the store stopped with %d records and %d bytes of events it could not "
                "write to %s: %s",
                len(left.records),
                left.bytes,
                self._db,
                self.problem or "the final flush ran out of time",
            )

    def _report_drops(self) -> None:
        pending = self._pending
        if pending.dropped:
            log.warning(
                "the store's queue outgrew %d bytes: dropped its %d oldest event batches "
                "(%d bytes); replays of their runs show them as dropped",
                pending.limit,
                pending.dropped,
                pending.dropped_bytes,
            )
            pending.dropped = pending.dropped_bytes = 0

    async def _prune(self, conn: sqlite3.Connection) -> None:
        before = self._now() - self._retention

        def prune() -> store_sql.Pruned:
            pruned = store_sql.prune(conn, ended_before=before, max_bytes=self._max_bytes)
            store_sql.vacuum(conn)
            return pruned

        try:
            pruned = await trio.to_thread.run_sync(prune)
        except (sqlite3.Error, OSError) as error:
            if self.problem is None:  # else the failing writes have said it already
                log.warning(
                    "the store could not prune %s: %s; it tries again later", self._db, error
                )
            return
        self.stored = pruned.totals
        if pruned.deleted or pruned.trimmed:
            log.info(
                "the store deleted %d runs past retention and cut the events of %d",
                pruned.deleted,
                pruned.trimmed,
            )

    async def attempt(self) -> None:
        """Have what is queued written now; return once the write is over, done or failed.

        Cancellation: the wait stops; the write goes on.
        """
        self._hurry.set()
        await self._attempted.wait()

    async def flush(self) -> None:
        """Return once everything queued before the call is written, or a write failed.

        Cancellation: the wait stops; the writes go on.
        """
        target, pending = self._pending.queued, self._pending
        while (
            self.running
            and self.problem is None
            and self._attempted_upto < target
            # Empty and idle: what was queued is written, or was dropped.
            and (pending.queue or pending.writing)
        ):
            self._hurry.set()
            await self._attempted.wait()


class SqliteStore(Claims):
    """Records and events in SQLite in ``data_dir``; claims in memory. See the module's page.

    The constructor touches no disk: :meth:`serve` opens the store. ``now`` is the
    clock retention reads (tests give their own).
    """

    keeps_history = True
    kind = "sqlite"

    def __init__(
        self,
        data_dir: Path,
        *,
        retention_days: float,
        max_bytes: int,
        backlog_bytes: int,
        flush_interval: float = 0.05,
        prune_interval: float = 60.0,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self._dir = Path(data_dir)
        self._db = self._dir / DB_NAME
        self._pending = Pending(backlog_bytes)
        self._writer = _Writer(
            self._pending,
            self._db,
            flush_interval=flush_interval,
            prune_interval=prune_interval,
            retention=timedelta(days=retention_days),
            max_bytes=max_bytes,
            now=now,
        )
        Claims.__init__(self)  # claims are answered in memory (see cc2api.store)
        # The store's files are known by their real path, however DATA_DIR names them.
        real = os.path.realpath(self._dir)
        self._store_id = hashlib.sha256(real.encode()).hexdigest()[:32]
        self._opened: Opened | None = None
        self._serving = False
        self._version = 0
        self._readers = _Readers()

    @property
    def store_id(self) -> str:
        """Return the first 32 hex digits of the sha256 of the real path of ``data_dir``."""
        return self._store_id

    @property
    def problem(self) -> str | None:
        """Return why the store cannot write now, or None."""
        return self._writer.problem

    @property
    def crowded(self) -> bool:
        """Return whether over a quarter of STORE_BACKLOG_BYTES waits while writes succeed.

        A run that prints faster than the writer writes then waits for it, as for a
        slow reader, rather than grow the queue to its bound, where events would go.
        """
        return (
            self._writer.running
            and self._writer.problem is None
            and self._pending.bytes > self._pending.limit // CROWDED_SHARE
        )

    async def room(self) -> None:
        """Return once at most an eighth of STORE_BACKLOG_BYTES waits, or writes fail.

        Cancellation: the wait stops; the writes go on.
        """
        while self.crowded or (
            self._writer.running
            and self._writer.problem is None
            and self._pending.bytes > self._pending.limit // (2 * CROWDED_SHARE)
        ):
            await self._writer.attempt()

    def observe_writes(self, on_write: Callable[[float], None]) -> None:
        """Call ``on_write`` with the seconds each batch took, once it is written."""
        self._writer.on_write = on_write

    def stats(self) -> StoreStats:
        """Return what is held in memory and in the database now."""
        return StoreStats(
            backlog_bytes=self._pending.bytes,
            backlog_peak_bytes=self._pending.peak,
            event_bytes=self._writer.stored.event_bytes,
            runs=self._writer.stored.runs,
            schema_version=self._version,
            path=self._db,
        )

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the store (in a worker thread), prune once, then write what is queued.

        Raises:
            StoreUnusable: before it is started: another gateway holds ``data_dir``,
                the database is corrupt or newer than this code, or the folder
                cannot be written.

        Cancellation: what is queued is written, shielded and bounded by
        FINAL_FLUSH_SECONDS; then the connections are closed, the lock released,
        and Cancelled propagates.
        """
        if self._serving:
            raise RuntimeError("this store is served already; a store is served once at a time")
        self._serving = True
        try:
            await self.open()
            opened = self._opened
            assert opened is not None  # noqa: S101 (open() set it)
            try:
                await self._writer.serve(opened.writer, task_status=task_status)
            finally:
                self._opened = None
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(close_files, opened, self._readers.close())
        finally:
            self._serving = False

    async def open(self) -> None:
        """Open the store's files now, if they are not open: lock, check, upgrade.

        For a server that must refuse to start before it listens; :meth:`serve` opens
        them otherwise, and closes them when it ends.

        Raises:
            StoreUnusable: as :meth:`serve`.

        Cancellation: the opening goes on in its worker thread and its files stay
        open until the process ends; the store is not opened.
        """
        if self._opened is not None:
            return
        opened = await trio.to_thread.run_sync(open_files, self._dir)
        self._opened, self._version = opened, opened.version
        self._writer.stored = opened.totals
        self._readers = _Readers(opened.readers)

    async def flush(self) -> None:
        """Return once everything queued before the call is written, or a write failed.

        Returns at once when the store has a problem or is not open.

        Cancellation: the wait stops; the writes go on.
        """
        await self._writer.flush()

    # -- runs -----------------------------------------------------------------------

    def save_run(self, record: RunRecord) -> None:
        """Queue a write of ``record``; the newest save of a run wins. Never waits."""
        self._pending.save(record)
        self._writer.wake()

    def evict(self, run_id: str) -> None:
        """Keep the record: this store keeps history."""

    async def get_run(self, run_id: str) -> RunRecord | None:
        """Return the record of ``run_id``, its newest save included, or None.

        Cancellation: the read runs to its end in its thread, then Cancelled is raised.
        """
        memory = self._pending.records().get(run_id)
        queued_last = self._pending.last_id(run_id)
        if memory is not None:
            found = await self._readers.run(lambda conn: store_sql.marks(conn, [run_id]))
            return _marked(memory, found.get(run_id, _NOTHING_STORED), queued_last)
        stored = await self._readers.run(lambda conn: store_sql.get_run(conn, run_id))
        return None if stored is None else _marked(stored, None, queued_last)

    async def list_runs(self, query: RunQuery) -> RunPage:
        """Return a page of records, newest first, queued saves included.

        Raises:
            ValueError: ``query.cursor`` is not a cursor a store made.

        Cancellation: the read runs to its end in its thread, then Cancelled is raised.
        """
        after = None
        if query.cursor is not None:
            moment, run_id = decode_cursor(query.cursor)
            after = (store_sql.to_us(moment), run_id)
        memory = self._pending.records()
        lasts = {run_id: self._pending.last_id(run_id) for run_id in memory}
        # Rows of runs saved since are left out below: fetch enough to make up for them.
        limit = query.limit + 1 + len(memory)

        def read(conn: sqlite3.Connection) -> tuple[list[RunRecord], dict[str, tuple[int, bool]]]:
            return store_sql.list_runs(conn, query, after, limit), store_sql.marks(conn, [*memory])

        stored, found = await self._readers.run(read)
        picked = newest_first(list(memory.values()), replace(query, limit=len(memory)))
        records = [
            _marked(r, found.get(r.run_id, _NOTHING_STORED), lasts[r.run_id])
            for r in picked.records
        ]
        records += [
            _marked(r, None, self._pending.last_id(r.run_id))
            for r in stored
            if r.run_id not in memory
        ]
        records.sort(key=lambda r: (r.created_at, r.run_id), reverse=True)
        page = records[: query.limit]
        more = len(records) > query.limit
        return RunPage(page, encode_cursor(page[-1].created_at, page[-1].run_id) if more else None)

    async def session_runs(
        self, session_ids: Sequence[str], key_id: str | None = None
    ) -> dict[str, list[str]]:
        """Return, for each session, the ids of the runs that used it, oldest first
        (only ``key_id``'s runs, if given).

        Cancellation: the read runs to its end in its thread, then Cancelled is raised.
        """
        memory = self._pending.records()
        rows = await self._readers.run(
            lambda conn: store_sql.session_runs(conn, session_ids, key_id)
        )
        wanted = set(session_ids)
        found: list[tuple[str, int, str]] = [
            (session, created, run_id) for session, run_id, created in rows if run_id not in memory
        ]
        for record in memory.values():
            if key_id is not None and record.api_key_id != key_id:
                continue
            for session in wanted.intersection(record.sessions):
                found.append((session, store_sql.to_us(record.created_at), record.run_id))
        found.sort()
        runs: dict[str, list[str]] = {session: [] for session in session_ids}
        for session, _, run_id in found:
            runs[session].append(run_id)
        return runs

    async def usage(self, query: UsageQuery) -> list[UsageRow]:
        """Return the usage written so far in the query's hours, a row per group.

        Runs are counted by the writer, in the transaction that first writes them
        ended: what is still queued is not counted yet (:meth:`flush` first).

        Cancellation: the read runs to its end in its thread, then Cancelled is raised.
        """
        return await self._readers.run(lambda conn: store_sql.usage(conn, query))

    async def spent(self, since: datetime) -> dict[str, float]:
        """Return the USD written so far by key id ('' the admin), hours from ``since``'s on.

        Cancellation: the read runs to its end in its thread, then Cancelled is raised.
        """
        return await self._readers.run(lambda conn: store_sql.spent(conn, since))

    async def add_webhook_attempt(self, attempt: WebhookAttempt) -> None:
        """Write ``attempt`` now, in a transaction of its own (see :mod:`webhook_records`).

        Raises:
            RuntimeError: the store is not open. sqlite3.Error: it could not be written.

        Cancellation: shielded; the write ends first.
        """
        if not self._serving:
            raise RuntimeError("the store is not open: serve() opens it")
        await write_attempt_at(self._db, attempt)

    async def webhook_attempts(self, run_id: str) -> list[WebhookAttempt]:
        """Return the attempts of ``run_id``'s webhooks, oldest first.

        Cancellation: the read runs to its end in its thread, then Cancelled is raised.
        """
        return await self._readers.run(lambda conn: read_attempts(conn, run_id))

    async def sessions_of(self, key_id: str) -> set[str]:
        """Return every session a run of ``key_id`` used, queued saves included.

        Cancellation: the read runs to its end in its thread, then Cancelled is raised.
        """
        memory = self._pending.records()
        stored = await self._readers.run(lambda conn: store_sql.sessions_of(conn, key_id))
        for record in memory.values():
            if record.api_key_id == key_id:
                stored.update(record.sessions)
        return stored

    async def unfinished(self) -> list[RunRecord]:
        """Return the runs recorded as live, with the last event the store holds, oldest first.

        Cancellation: the read runs to its end in its thread, then Cancelled is raised.
        """
        memory = self._pending.records()

        def read(conn: sqlite3.Connection) -> tuple[list[RunRecord], dict[str, tuple[int, bool]]]:
            return store_sql.unfinished(conn), store_sql.marks(conn, [*memory])

        stored, found = await self._readers.run(read)
        records = [
            _marked(r, None, self._pending.last_id(r.run_id))
            for r in stored
            if r.run_id not in memory
        ]
        records += [
            _marked(r, found.get(r.run_id, _NOTHING_STORED), self._pending.last_id(r.run_id))
            for r in memory.values()
            if r.status not in store_sql.FINAL
        ]
        records.sort(key=lambda r: (r.created_at, r.run_id))
        return records

    # -- event logs -------------------------------------------------------------------

    def append_events(self, run_id: str, batch: EventBatch) -> None:
        """Queue a batch of a run's events; written with the next write. Never waits."""
        self._pending.append(run_id, batch)
        self._writer.wake(hurry=self._pending.queue.bytes >= URGENT_BYTES)

    async def read_events(
        self, run_id: str, after: int, max_bytes: int, *, before: int | None = None
    ) -> list[EventBatch]:
        """Return the batches holding events after ``after`` (first before ``before``).

        Queued batches count. At least one batch when there is one, then more up to
        about ``max_bytes``; the first may start before ``after + 1``.

        Cancellation: the read runs to its end in its thread, then Cancelled is raised.
        """
        memory = [
            batch
            for batch in self._pending.batches(run_id)
            if batch.first + batch.count - 1 > after and (before is None or batch.first < before)
        ]
        stored = await self._readers.run(
            lambda conn: store_sql.read_events(conn, run_id, after, max_bytes, before)
        )
        # A batch being written may be in both: the same batch, by its first id.
        merged = {batch.first: batch for batch in stored}
        merged.update((batch.first, batch) for batch in memory)
        batches: list[EventBatch] = []
        size = 0
        for first in sorted(merged):
            if batches and size >= max_bytes:
                break
            batches.append(merged[first])
            size += len(merged[first].data)
        return batches

    # Session claims are Claims' own: in memory, never written (see cc2api.store).


_NOTHING_STORED = (0, False)


def _marked(record: RunRecord, stored: tuple[int, bool] | None, queued_last: int) -> RunRecord:
    """Return ``record`` with the last event id the store holds, and whether it pruned any.

    ``stored`` is what the database holds of a record from memory (whose own
    last_event_id is the registry's count, not the store's); None for a record
    read from the database, which carries it already.
    """
    last, pruned = (record.last_event_id, record.events_pruned) if stored is None else stored
    last = max(last, queued_last)
    if (last, pruned) == (record.last_event_id, record.events_pruned):
        return record
    return replace(record, last_event_id=last, events_pruned=pruned)
