"""Replays: stored events first, then what memory holds, with every gap said once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from cc2api.eventlog import EventLog
from cc2api.replay import Live, Replay
from cc2api.sqlite_store import SqliteStore
from cc2api.sse import frame_json
from cc2api.store import EventBatch, InMemoryStore, Store

from .helpers import Event, parse_block

RUN = "00000000-0000-4000-8000-000000000001"


@asynccontextmanager
async def sqlite_store(folder: Path) -> AsyncIterator[SqliteStore]:
    """A SQLite store in ``folder``, served for the block."""
    store = SqliteStore(folder, retention_days=14, max_bytes=1 << 30, backlog_bytes=1 << 28)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.serve)
        yield store
        nursery.cancel_scope.cancel()


def batch(first: int, count: int) -> EventBatch:
    """Return ``count`` framed events numbered from ``first``, each saying its own id."""
    data = b"".join(frame_json(i, "message", {"n": i}) for i in range(first, first + count))
    return EventBatch(first, count, data)


def log_keeping(store: Store, max_bytes: int) -> EventLog:
    """Return an event log that hands every batch to ``store``, as a run's does."""

    def keep(first: int, count: int, data: bytes) -> None:
        store.append_events(RUN, EventBatch(first, count, data))

    return EventLog(max_bytes, 60.0, lambda reader: None, keep)


def add(log: EventLog, count: int) -> None:
    """Add ``count`` events to ``log``, one batch."""
    log.append_nowait(lambda first: (batch(first, count).data, count))


def replay_of(log: EventLog, store: Store, after: int) -> Replay:
    """Return a replay of the log's run after ``after``, made as the events route makes it."""
    return Replay(store, RUN, after, Live(lambda: log.first_kept, log.reader))


async def read_all(source: Replay) -> list[Event]:
    """Return every event the source gives until it ends."""
    text = b""
    while (chunk := await source.receive(1.0)) not in (b"", None):
        assert chunk is not None
        text += chunk
    source.close()
    return [parse_block(block) for block in text.decode().split("\n\n") if block]


class TestStoredOnly:
    async def test_a_stored_run_replays_from_the_start(self, tmp_path: Path) -> None:
        """A run known only to the store replays every event, in order."""
        async with sqlite_store(tmp_path) as store:
            store.append_events(RUN, batch(1, 3))
            store.append_events(RUN, batch(4, 5))
            events = await read_all(Replay(store, RUN, 0, None))
        assert [e.id for e in events] == list(range(1, 9))

    async def test_a_stored_run_replays_after_an_id_inside_a_batch(self, tmp_path: Path) -> None:
        """A replay after an id in the middle of a stored batch starts at the next event."""
        async with sqlite_store(tmp_path) as store:
            store.append_events(RUN, batch(1, 10))
            events = await read_all(Replay(store, RUN, 6, None))
        assert [e.id for e in events] == [7, 8, 9, 10]

    async def test_a_gap_in_the_store_is_said_once_where_it_is(self, tmp_path: Path) -> None:
        """Events missing from the store show as one dropped event at their place."""
        async with sqlite_store(tmp_path) as store:
            store.append_events(RUN, batch(1, 3))
            store.append_events(RUN, batch(7, 2))
            events = await read_all(Replay(store, RUN, 0, None))
        assert [e.id for e in events] == [1, 2, 3, None, 7, 8]
        assert events[3].event == "dropped"
        assert events[3].json() == {"dropped": 3, "first_id": 7}


class TestStoreThenMemory:
    async def test_a_replay_reading_the_store_never_holds_the_run_back(
        self, tmp_path: Path
    ) -> None:
        """While a replay sends stored events, the run adds events without waiting on it."""
        async with sqlite_store(tmp_path) as store:
            log = log_keeping(store, max_bytes=2000)
            for _ in range(40):
                add(log, 5)
            source = replay_of(log, store, 0)
            first = await source.receive(1.0)  # the stored part has begun: memory not yet
            with trio.fail_after(1):
                for _ in range(40):
                    await log.append(lambda first_id: (batch(first_id, 5).data, 5))
            log.close()
            rest = await read_all(source)
        assert first is not None
        head = [parse_block(b) for b in first.decode().split("\n\n") if b]
        assert [e.id for e in head + rest] == list(range(1, 401))

    async def test_events_memory_trimmed_come_from_the_store(self, tmp_path: Path) -> None:
        """A replay from the start of a run whose log was trimmed has no gap and no duplicate."""
        async with sqlite_store(tmp_path) as store:
            log = log_keeping(store, max_bytes=2000)
            for _ in range(40):
                add(log, 5)
            assert log.first_kept > 1  # memory has let the oldest go
            events = await read_all_then_close(log, replay_of(log, store, 0))
        assert [e.id for e in events] == list(range(1, 201))

    async def test_the_replay_follows_the_run_live_after_the_store(self, tmp_path: Path) -> None:
        """Events added while a replay reads the store reach it after the stored ones."""
        async with sqlite_store(tmp_path) as store:
            log = log_keeping(store, max_bytes=2000)
            for _ in range(20):
                add(log, 5)
            source = replay_of(log, store, 0)
            first = await source.receive(1.0)
            add(log, 5)
            log.close()
            rest = await read_all(source)
        assert first is not None
        head = [parse_block(b) for b in first.decode().split("\n\n") if b]
        assert [e.id for e in head + rest] == list(range(1, 106))

    async def test_a_store_that_cannot_be_read_leaves_memory_s_part(self) -> None:
        """When the store's read fails, the replay says what is missing and follows memory."""

        class Unreadable(InMemoryStore):
            """A store whose reads fail, as a broken disk's would."""

            async def read_events(
                self, run_id: str, after: int, max_bytes: int, *, before: int | None = None
            ) -> list[EventBatch]:
                """Fail."""
                raise OSError("read error")

        store = Unreadable()
        log = log_keeping(store, max_bytes=2000)
        for _ in range(40):
            add(log, 5)
        first = log.first_kept
        events = await read_all_then_close(log, replay_of(log, store, 0))
        assert events[0].json() == {"dropped": first - 1, "first_id": first}
        assert [e.id for e in events[1:]] == list(range(first, 201))

    async def test_without_a_store_the_trimmed_events_are_dropped(self) -> None:
        """With no stored copy, a replay says how many events memory let go, then goes on."""
        store = InMemoryStore()
        log = log_keeping(store, max_bytes=2000)
        for _ in range(40):
            add(log, 5)
        first = log.first_kept
        events = await read_all_then_close(log, replay_of(log, store, 0))
        assert events[0].event == "dropped"
        assert events[0].json() == {"dropped": first - 1, "first_id": first}
        assert [e.id for e in events[1:]] == list(range(first, 201))


async def read_all_then_close(log: EventLog, source: Replay) -> list[Event]:
    """Close the log (the run ended), then read the whole replay."""
    log.close()
    return await read_all(source)
