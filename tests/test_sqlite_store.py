"""The SQLite store: opening, queued writes, reads, history pages, retention, faults, crashes."""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio

from cc2api import sqlite_store, store_sql
from cc2api.eventlog import EventLog
from cc2api.sqlite_store import SqliteStore, inspect
from cc2api.store import (
    EventBatch,
    RunQuery,
    RunRecord,
    StoreStats,
    StoreUnusable,
    decode_cursor,
    encode_cursor,
    newest_first,
)
from cc2api.store_schema import LATEST, PAGE_SIZE, migrate

from .store_faults import tmpfs

pytestmark = pytest.mark.timeout(60)

# Recent, so that runs ended then are within the retention of a store on the real clock.
T0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=1)
S1 = "11111111-1111-4111-8111-111111111111"
S2 = "22222222-2222-4222-8222-222222222222"
S3 = "33333333-3333-4333-8333-333333333333"
WORKTREE = Path(__file__).resolve().parent.parent
# A store's writer, quick to write, nothing pruned unless a test says so.
DEFAULTS: dict[str, Any] = {
    "retention_days": 14.0,
    "max_bytes": 1 << 30,
    "backlog_bytes": 64 << 20,
    "flush_interval": 0.01,
}


def record(run_id: str, minutes: float = 0, status: str = "running", **fields: Any) -> RunRecord:
    """A record created ``minutes`` after T0."""
    fields.setdefault("cwd", "/w")
    return RunRecord(
        run_id=run_id, created_at=T0 + timedelta(minutes=minutes), status=status, **fields
    )


def batch(first: int, count: int = 1, size: int = 100) -> EventBatch:
    """Framed events with ids from ``first``, each about ``size`` bytes."""
    pad = "x" * max(size - 40, 1)
    data = b"".join(
        b'id: %d\nevent: message\ndata: {"p":"%s"}\n\n' % (i, pad.encode())
        for i in range(first, first + count)
    )
    return EventBatch(first, count, data)


def done(first: int) -> EventBatch:
    """A run's last batch: its done event, alone."""
    return EventBatch(first, 1, b'id: %d\nevent: done\ndata: {"status":"completed"}\n\n' % first)


@asynccontextmanager
async def opened(data_dir: Path, **settings: Any) -> AsyncIterator[SqliteStore]:
    """A served store on ``data_dir``, stopped (cancelled) after the block."""
    store = SqliteStore(data_dir, **{**DEFAULTS, **settings})
    async with trio.open_nursery() as nursery:
        await nursery.start(store.serve)
        yield store
        nursery.cancel_scope.cancel()


def query_db(data_dir: Path, sql: str, *params: Any) -> list[Any]:
    """Rows of ``sql`` read from the store's database by a connection of the test's own."""
    conn = sqlite3.connect(data_dir / "cc2api.db")
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


async def eventually(check: Callable[[], bool], within: float = 10.0) -> None:
    """Return once ``check()`` is true; fail after ``within`` seconds."""
    with trio.fail_after(within):
        while not check():
            await trio.sleep(0.01)


def ids(records: list[RunRecord]) -> list[str]:
    return [r.run_id for r in records]


class TestSchema:
    async def test_a_new_database_is_at_the_latest_version_with_wal_and_incremental_vacuum(
        self, tmp_path: Path
    ) -> None:
        """A new database is at the latest version, in WAL mode, with incremental vacuum."""
        async with opened(tmp_path / "data") as store:
            assert store.stats().schema_version == LATEST
            assert query_db(tmp_path / "data", "PRAGMA user_version") == [(LATEST,)]
            assert query_db(tmp_path / "data", "PRAGMA journal_mode") == [("wal",)]
            assert query_db(tmp_path / "data", "PRAGMA auto_vacuum") == [(2,)]  # incremental
            assert query_db(tmp_path / "data", "PRAGMA page_size") == [(PAGE_SIZE,)]

    async def test_an_older_database_is_upgraded_and_its_runs_kept(self, tmp_path: Path) -> None:
        """A v1 database is upgraded at open; its run keeps its fields, sessions and events."""
        data = tmp_path / "data"
        data.mkdir()
        conn = sqlite3.connect(data / "cc2api.db", isolation_level=None)
        assert migrate(conn, upto=1) == 1
        created = store_sql.to_us(T0)
        conn.execute(
            "INSERT INTO runs (run_id, created_us, status, cwd, options, sessions, model, "
            "last_event_id, event_bytes) VALUES ('old', ?, 'completed', '/w', "
            "'{\"max_turns\":3}', ?, 'opus', 2, 10)",
            (created, f'["{S1}","{S2}"]'),
        )
        conn.execute("INSERT INTO events VALUES ('old', 1, 2, ?)", (b"0123456789",))
        conn.close()
        async with opened(data) as store:
            assert query_db(data, "PRAGMA user_version") == [(LATEST,)]
            found = await store.get_run("old")
            assert found is not None
            assert (found.created_at, found.status, found.model) == (T0, "completed", "opus")
            assert (found.options, found.sessions, found.last_event_id) == (
                {"max_turns": 3},
                (S1, S2),
                2,
            )
            assert await store.session_runs([S2]) == {S2: ["old"]}
            assert await store.read_events("old", 0, 1 << 20) == [EventBatch(1, 2, b"0123456789")]

    async def test_a_database_from_a_newer_cc2api_is_refused(self, tmp_path: Path) -> None:
        """A database at a version past the latest is refused: a newer cc2api made it."""
        data = tmp_path / "data"
        data.mkdir()
        conn = sqlite3.connect(data / "cc2api.db")
        conn.execute(f"PRAGMA user_version = {LATEST + 1}")
        conn.close()
        store = SqliteStore(data, **DEFAULTS)
        with pytest.raises(StoreUnusable, match="made by a newer cc2api"):
            await store.serve()


class TestOpening:
    def test_the_constructor_touches_no_disk_and_knows_its_id(self, tmp_path: Path) -> None:
        """A new store writes nothing, and its id is the sha256 of DATA_DIR's real path."""
        (tmp_path / "real").mkdir()
        (tmp_path / "link").symlink_to(tmp_path / "real")
        store = SqliteStore(tmp_path / "link" / "data", **DEFAULTS)
        assert not (tmp_path / "real" / "data").exists()
        real = os.path.realpath(tmp_path / "real" / "data")
        assert store.store_id == hashlib.sha256(real.encode()).hexdigest()[:32]
        assert store.store_id == SqliteStore(tmp_path / "real" / "data", **DEFAULTS).store_id
        assert store.keeps_history

    async def test_the_database_files_are_private_in_a_shared_folder(self, tmp_path: Path) -> None:
        """In a DATA_DIR others may enter, under umask 022, the database and its WAL are 0600."""
        data = tmp_path / "data"
        data.mkdir(mode=0o755)
        data.chmod(0o755)
        old = os.umask(0o022)
        try:
            async with opened(data) as store:
                store.save_run(record("a"))
                store.append_events("a", batch(1, 3))
                await store.flush()
                modes = {
                    path.name: path.stat().st_mode & 0o777
                    for path in data.iterdir()
                    if path.name.startswith("cc2api.db")
                }
        finally:
            os.umask(old)
        assert modes == {"cc2api.db": 0o600, "cc2api.db-wal": 0o600, "cc2api.db-shm": 0o600}

    async def test_the_folder_and_its_missing_parents_are_made_private(
        self, tmp_path: Path
    ) -> None:
        """DATA_DIR and each missing parent are made with mode 0700; the lock file holds our pid."""
        data = tmp_path / "a" / "b" / "data"
        async with opened(data):
            for folder in (tmp_path / "a", tmp_path / "a" / "b", data):
                assert folder.stat().st_mode & 0o777 == 0o700
            assert (data / "cc2api.lock").read_text() == f"{os.getpid()}\n"

    async def test_a_second_gateway_on_the_folder_is_refused(self, tmp_path: Path) -> None:
        """A second store on a DATA_DIR in use, even in one process, is refused naming the pid."""
        async with opened(tmp_path / "data"):
            second = SqliteStore(tmp_path / "data", **DEFAULTS)
            with pytest.raises(StoreUnusable) as refused:
                await second.serve()
        assert f"in use by another cc2api gateway (pid {os.getpid()})" in str(refused.value)
        assert "stop it, or give this one its own DATA_DIR" in str(refused.value)

    async def test_the_lock_is_let_go_when_the_store_stops(self, tmp_path: Path) -> None:
        """Once a store has stopped, another opens the same DATA_DIR."""
        async with opened(tmp_path / "data") as store:
            store.save_run(record("a"))
        async with opened(tmp_path / "data") as again:
            assert await again.get_run("a") == record("a")

    async def test_a_file_that_is_not_a_database_is_refused_as_corrupt(
        self, tmp_path: Path
    ) -> None:
        """A cc2api.db that is no database is refused: corrupt, with what to do, and unlocked."""
        data = tmp_path / "data"
        data.mkdir()
        (data / "cc2api.db").write_bytes(b"not a database, " * 512)
        with pytest.raises(StoreUnusable) as refused:
            await SqliteStore(data, **DEFAULTS).serve()
        message = str(refused.value)
        assert f"{data / 'cc2api.db'} is corrupt" in message
        assert "stop cc2api, move the file aside" in message
        assert f'sqlite3 {data / "cc2api.db"} ".backup FILE"' in message
        assert "then start again" in message
        (data / "cc2api.db").unlink()
        async with opened(data):  # the failed store let the lock go
            pass

    async def test_a_database_that_fails_its_check_is_refused_as_corrupt(
        self, tmp_path: Path
    ) -> None:
        """A database whose pages are damaged fails its quick_check and is refused as corrupt."""
        data = tmp_path / "data"
        async with opened(data) as store:
            for n in range(2000):
                store.save_run(record(f"r{n:05d}", cwd="/w/" + "x" * 100))
        db = data / "cc2api.db"
        with db.open("r+b") as file:
            for page in range(3, db.stat().st_size // 4096, 2):
                file.seek(page * 4096 + 100)
                file.write(b"\xff" * 50)
        with pytest.raises(StoreUnusable, match=r"cc2api\.db is corrupt \(.*page"):
            await SqliteStore(data, **DEFAULTS).serve()


class TestQueuedWrites:
    async def test_saves_and_appends_only_queue_until_the_writer_writes(
        self, tmp_path: Path
    ) -> None:
        """save_run and append_events return at once; the rows appear once the writer writes."""
        data = tmp_path / "data"
        async with opened(data, flush_interval=30) as store:
            store.save_run(record("a"))
            store.append_events("a", batch(1, 3))
            assert query_db(data, "SELECT COUNT(*) FROM runs") == [(0,)]
            assert store.stats().backlog_bytes == len(batch(1, 3).data)
            await store.flush()
            assert query_db(data, "SELECT run_id, last_event_id FROM runs") == [("a", 3)]
            assert query_db(data, "SELECT first, count FROM events") == [(1, 3)]
            assert store.stats().backlog_bytes == 0

    async def test_figures_sqlite_cannot_hold_are_kept_as_near_as_it_can(
        self, tmp_path: Path
    ) -> None:
        """A 65-bit turn count and a lone surrogate in a session id are stored, not fatal."""
        data = tmp_path / "data"
        odd = record("a", num_turns=1 << 64, session_id="s\ud800", sessions=("s\ud800",))
        async with opened(data) as store:
            store.save_run(odd)
            await store.flush()
            store.save_run(record("b"))
            await store.flush()
            assert store.problem is None
        assert query_db(data, "SELECT run_id, num_turns, session_id FROM runs ORDER BY run_id") == [
            ("a", (1 << 63) - 1, "s\ufffd"),
            ("b", None, None),
        ]

    async def test_everything_queued_goes_in_one_write(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Records and batches queued together are written in one transaction, records first."""
        calls: list[tuple[list[str], list[tuple[str, int]]]] = []
        real = store_sql.write_batch

        def counted(conn: sqlite3.Connection, records: Any, events: Any) -> store_sql.Written:
            calls.append(([r.run_id for r in records], [(i, b.first) for i, b in events]))
            return real(conn, records, events)

        monkeypatch.setattr(store_sql, "write_batch", counted)
        async with opened(tmp_path / "data", flush_interval=30) as store:
            for n in range(3):
                store.append_events(f"r{n}", batch(1))
                store.save_run(record(f"r{n}"))
                store.append_events(f"r{n}", batch(2))
            await store.flush()
        assert calls == [
            (["r0", "r1", "r2"], [(f"r{n}", first) for n in range(3) for first in (1, 2)])
        ]

    async def test_the_newest_save_of_a_run_wins(self, tmp_path: Path) -> None:
        """Two saves of a run queued together leave one row, the newer."""
        data = tmp_path / "data"
        async with opened(data, flush_interval=30) as store:
            store.save_run(record("a", status="running"))
            store.save_run(record("a", status="completed", exit_code=0))
            await store.flush()
            assert query_db(data, "SELECT status, exit_code FROM runs") == [("completed", 0)]

    async def test_events_written_before_their_record_count_for_it(self, tmp_path: Path) -> None:
        """A run whose events were written before its record gets their last id and size."""
        async with opened(tmp_path / "data") as store:
            store.append_events("a", batch(1, 2))
            await store.flush()
            store.save_run(record("a"))
            await store.flush()
            found = await store.get_run("a")
            assert found is not None
            assert found.last_event_id == 2
            assert store.stats().event_bytes == len(batch(1, 2).data)
        assert query_db(tmp_path / "data", "SELECT event_bytes FROM runs") == [
            (len(batch(1, 2).data),)
        ]

    async def test_a_big_queue_is_written_without_waiting_for_the_interval(
        self, tmp_path: Path
    ) -> None:
        """Past about 4 MiB queued the writer writes at once, not after flush_interval."""
        data = tmp_path / "data"
        async with opened(data, flush_interval=60) as store:
            store.save_run(record("a"))
            for first in range(1, 5001, 100):
                store.append_events("a", batch(first, 100, size=1000))
            await eventually(lambda: store.stats().backlog_bytes == 0)
            assert query_db(data, "SELECT last_event_id FROM runs") == [(5000,)]

    async def test_flush_waits_for_what_was_queued_before_it(self, tmp_path: Path) -> None:
        """flush returns once what was queued before it is in the database, and at once if none."""
        data = tmp_path / "data"
        async with opened(data, flush_interval=30) as store:
            await store.flush()  # nothing queued
            store.save_run(record("a"))
            with trio.fail_after(5):
                await store.flush()
            assert query_db(data, "SELECT run_id FROM runs") == [("a",)]

    async def test_writes_never_hold_the_event_loop(self, tmp_path: Path) -> None:
        """While 40 MB of events are written, the event loop keeps turning (all SQL in threads)."""
        worst = 0.0
        async with opened(tmp_path / "data") as store:
            for n in range(20):
                store.save_run(record(f"r{n}"))
            data = batch(1, 100, size=200).data
            started = time.perf_counter()
            for step in range(100):
                tick = time.perf_counter()
                for n in range(20):
                    store.append_events(f"r{n}", EventBatch(1 + 100 * step, 100, data))
                await trio.sleep(0.005)
                worst = max(worst, time.perf_counter() - tick - 0.005)
            await store.flush()
            took = time.perf_counter() - started
            assert store.stats().event_bytes == 2000 * len(data)
        assert worst < 0.1, f"the event loop stalled for {worst:.3f} s"
        assert took < 30


class TestReads:
    async def test_reads_see_what_is_queued(self, tmp_path: Path) -> None:
        """get_run, list_runs, session_runs, read_events and unfinished see unwritten writes."""
        data = tmp_path / "data"
        async with opened(data, flush_interval=30) as store:
            store.append_events("a", batch(1, 2))
            store.save_run(record("a", sessions=(S1,)))
            assert query_db(data, "SELECT COUNT(*) FROM runs") == [(0,)]
            assert await store.get_run("a") == record("a", sessions=(S1,), last_event_id=2)
            assert ids((await store.list_runs(RunQuery())).records) == ["a"]
            assert await store.session_runs([S1]) == {S1: ["a"]}
            assert await store.read_events("a", 0, 1 << 20) == [batch(1, 2)]
            assert ids(await store.unfinished()) == ["a"]

    async def test_reads_see_a_write_under_way_and_do_not_wait_for_it(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """While the writer's transaction is under way, reads run and see what it is writing."""
        release = threading.Event()
        real = store_sql._write_events

        def slow(conn: sqlite3.Connection, events: Any) -> int:
            release.wait(10)  # inside the write's transaction
            return real(conn, events)

        async with opened(tmp_path / "data") as store:
            store.save_run(record("a", status="completed"))
            store.append_events("a", batch(1, 4))
            await store.flush()
            monkeypatch.setattr(store_sql, "_write_events", slow)
            store.append_events("a", batch(5, 2))  # taken by the write that waits
            await trio.sleep(0.1)
            assert query_db(tmp_path / "data", "SELECT last_event_id FROM runs") == [(4,)]
            with trio.fail_after(2):
                assert (await store.get_run("a")).last_event_id == 6  # type: ignore[union-attr]
                assert await store.read_events("a", 0, 1 << 20) == [batch(1, 4), batch(5, 2)]
            release.set()
            await store.flush()
            assert await store.read_events("a", 0, 1 << 20) == [batch(1, 4), batch(5, 2)]

    async def test_a_newer_queued_save_hides_the_stored_one(self, tmp_path: Path) -> None:
        """A stored record saved again, unwritten, is read as the new save everywhere."""
        async with opened(tmp_path / "data", flush_interval=30) as store:
            store.save_run(record("a", sessions=(S1,)))
            await store.flush()
            store.save_run(record("a", status="completed", sessions=(S2,)))
            found = await store.get_run("a")
            assert found is not None
            assert found.status == "completed"
            running = await store.list_runs(RunQuery(statuses=frozenset({"running"})))
            assert running.records == []
            assert await store.session_runs([S1, S2]) == {S1: [], S2: ["a"]}
            assert await store.unfinished() == []

    async def test_the_last_event_id_is_what_the_store_holds(self, tmp_path: Path) -> None:
        """A record's last_event_id is the store's last event, not the one the registry saved."""
        async with opened(tmp_path / "data", flush_interval=30) as store:
            store.save_run(record("a", last_event_id=999))
            assert (await store.get_run("a")).last_event_id == 0  # type: ignore[union-attr]
            store.append_events("a", batch(1, 3))
            await store.flush()
            assert (await store.get_run("a")).last_event_id == 3  # type: ignore[union-attr]
            store.append_events("a", batch(4, 2))  # queued only
            assert (await store.get_run("a")).last_event_id == 5  # type: ignore[union-attr]
            page = await store.list_runs(RunQuery())
            assert [r.last_event_id for r in page.records] == [5]

    async def test_an_unknown_run_has_no_record_and_no_events(self, tmp_path: Path) -> None:
        """A run the store never saw reads as None and no batches."""
        async with opened(tmp_path / "data") as store:
            assert await store.get_run("nope") is None
            assert await store.read_events("nope", 0, 1 << 20) == []

    async def test_reads_before_the_store_is_open_are_refused(self, tmp_path: Path) -> None:
        """A read of a store not served yet raises, saying serve() opens it."""
        store = SqliteStore(tmp_path / "data", **DEFAULTS)
        with pytest.raises(RuntimeError, match=r"serve\(\) opens it"):
            await store.get_run("a")


class TestReadEvents:
    @pytest.fixture(name="events")
    async def _events(self, tmp_path: Path) -> AsyncIterator[SqliteStore]:
        """A store holding run a's batches 1-3, 4-6 (both written) and 7-9 (queued)."""
        async with opened(tmp_path / "data", flush_interval=30) as store:
            store.save_run(record("a"))
            store.append_events("a", batch(1, 3))
            store.append_events("a", batch(4, 3))
            await store.flush()
            store.append_events("a", batch(7, 3))
            yield store

    async def test_the_first_batch_is_the_one_holding_the_next_event(
        self, events: SqliteStore
    ) -> None:
        """After id 4, the batches start with 4-6 (which holds 5), then 7-9 from memory."""
        assert await events.read_events("a", 4, 1 << 20) == [batch(4, 3), batch(7, 3)]
        assert await events.read_events("a", 0, 1 << 20) == [batch(1, 3), batch(4, 3), batch(7, 3)]
        assert await events.read_events("a", 9, 1 << 20) == []

    async def test_at_least_one_batch_then_up_to_max_bytes(self, events: SqliteStore) -> None:
        """A tiny max_bytes still gets one batch; a bigger one takes batches up to about it."""
        assert await events.read_events("a", 0, 1) == [batch(1, 3)]
        two = len(batch(1, 3).data) + 1
        assert await events.read_events("a", 0, two) == [batch(1, 3), batch(4, 3)]

    async def test_before_stops_the_batches(self, events: SqliteStore) -> None:
        """With before, only batches whose first id is below it are read."""
        assert await events.read_events("a", 0, 1 << 20, before=7) == [batch(1, 3), batch(4, 3)]
        assert await events.read_events("a", 5, 1 << 20, before=8) == [batch(4, 3), batch(7, 3)]


class TestListRuns:
    @pytest.fixture(name="many")
    async def _many(self, tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, list[RunRecord]]]:
        """A store with 120 varied records, most written, the last 20 only queued."""
        rng = random.Random(12)  # noqa: S311 (test data, not secrets)
        records = []
        for n in range(120):
            sessions = tuple(rng.sample([S1, S2, S3], rng.randint(0, 2)))
            records.append(
                record(
                    f"run-{rng.randrange(10**6):06d}-{n}",
                    minutes=rng.randrange(40),  # many share a moment: the id breaks the tie
                    status=rng.choice(["running", "completed", "failed", "lost"]),
                    cwd=rng.choice(["/a", "/a/b", "/a/bc", "/a/b/c", "/a%b", "/a_b", "/"]),
                    sessions=sessions,
                    session_id=sessions[0] if sessions else None,
                    api_key_id=rng.choice([None, "k1", "k2"]),
                )
            )
        async with opened(tmp_path / "data", flush_interval=30) as store:
            for found in records[:100]:
                store.save_run(found)
            await store.flush()
            for found in records[100:]:
                store.save_run(found)
            yield store, records

    async def test_every_filter_agrees_with_the_reference(
        self, many: tuple[SqliteStore, list[RunRecord]]
    ) -> None:
        """Each filter and their combinations pick what InMemoryStore's newest_first picks."""
        store, records = many
        queries = [
            RunQuery(),
            RunQuery(statuses=frozenset({"completed", "lost"})),
            RunQuery(session_id=S2),
            RunQuery(cwd_prefix="/a/b"),
            RunQuery(cwd_prefix="/a/b/"),
            RunQuery(cwd_prefix="/a%"),
            RunQuery(cwd_prefix="/a_"),
            RunQuery(cwd_prefix="/"),
            RunQuery(since=T0 + timedelta(minutes=10), until=T0 + timedelta(minutes=20)),
            RunQuery(api_key_id="k1"),
            RunQuery(statuses=frozenset({"running"}), session_id=S1, cwd_prefix="/a"),
        ]
        for query in queries:
            for limit in (1, 7, 500):
                paged = replace(query, limit=limit)
                got = await store.list_runs(paged)
                want = newest_first(records, paged)
                assert ids(got.records) == ids(want.records), query
                assert got.next_cursor == want.next_cursor, query

    async def test_a_cwd_prefix_is_a_folder_not_text(
        self, many: tuple[SqliteStore, list[RunRecord]]
    ) -> None:
        """cwd_prefix /a/b takes /a/b and /a/b/c but never /a/bc; % and _ are no wildcards."""
        store, _ = many
        page = await store.list_runs(RunQuery(cwd_prefix="/a/b", limit=500))
        assert {r.cwd for r in page.records} == {"/a/b", "/a/b/c"}
        page = await store.list_runs(RunQuery(cwd_prefix="/a%", limit=500))
        assert not page.records  # "/a%b" is not in the folder "/a%"
        page = await store.list_runs(RunQuery(cwd_prefix="/a%b", limit=500))
        assert {r.cwd for r in page.records} == {"/a%b"}
        page = await store.list_runs(RunQuery(cwd_prefix="/A/B", limit=500))
        assert not page.records  # case counts

    async def test_walking_the_pages_gives_each_record_once_while_runs_are_added(
        self, many: tuple[SqliteStore, list[RunRecord]]
    ) -> None:
        """Following next_cursor visits every record once, though new runs arrive meanwhile."""
        store, records = many
        seen: list[str] = []
        cursor = None
        for page_number in range(200):
            page = await store.list_runs(RunQuery(cursor=cursor, limit=9))
            seen.extend(ids(page.records))
            # New runs arrive between pages, newer than every listed one, some written.
            store.save_run(record(f"new-{page_number}", minutes=100 + page_number))
            if page_number % 3 == 0:
                await store.flush()
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert sorted(seen) == sorted(ids(records))

    async def test_the_cursor_is_that_of_the_last_record_and_a_bad_one_is_refused(
        self, many: tuple[SqliteStore, list[RunRecord]]
    ) -> None:
        """next_cursor encodes the page's last record; a cursor not made so is a ValueError."""
        store, _ = many
        page = await store.list_runs(RunQuery(limit=5))
        last = page.records[-1]
        assert page.next_cursor == encode_cursor(last.created_at, last.run_id)
        assert decode_cursor(page.next_cursor) == (last.created_at, last.run_id)
        with pytest.raises(ValueError, match="not a cursor"):
            await store.list_runs(RunQuery(cursor="not-a-cursor!"))


class TestSessionsAndUnfinished:
    async def test_session_runs_lists_each_sessions_runs_oldest_first(self, tmp_path: Path) -> None:
        """Each session maps to the runs that used it, oldest first, written or queued."""
        async with opened(tmp_path / "data", flush_interval=30) as store:
            store.save_run(record("b", minutes=2, sessions=(S1, S2)))
            store.save_run(record("c", minutes=3, sessions=(S2,)))
            await store.flush()
            store.save_run(record("a", minutes=1, sessions=(S1,)))
            assert await store.session_runs([S1, S2, S3]) == {
                S1: ["a", "b"],
                S2: ["b", "c"],
                S3: [],
            }

    async def test_unfinished_lists_live_runs_with_their_last_stored_event(
        self, tmp_path: Path
    ) -> None:
        """After a restart, the runs not final are listed, each with the last event it stored."""
        data = tmp_path / "data"
        statuses = ["queued", "running", "cancelling", "completed", "failed", "cancelled"]
        statuses += ["timeout", "interrupted", "lost"]
        async with opened(data) as store:
            for n, status in enumerate(statuses):
                store.save_run(record(f"r{n}", minutes=n, status=status, last_event_id=50))
                store.append_events(f"r{n}", batch(1, n + 1))
        async with opened(data) as store:
            live = await store.unfinished()
        assert [(r.run_id, r.status, r.last_event_id) for r in live] == [
            ("r0", "queued", 1),
            ("r1", "running", 2),
            ("r2", "cancelling", 3),
        ]


class TestRetention:
    @staticmethod
    async def ended_runs(store: SqliteStore, days_ago: list[float], now: datetime) -> None:
        """Runs r0, r1, ... that ended so many days before ``now``: 4 batches, then done."""
        for n, days in enumerate(days_ago):
            ended = now - timedelta(days=days)
            store.save_run(
                RunRecord(
                    run_id=f"r{n}",
                    created_at=ended - timedelta(minutes=1),
                    ended_at=ended,
                    status="completed",
                    cwd="/w",
                    sessions=(S1,),
                )
            )
            for first in range(1, 41, 10):
                store.append_events(f"r{n}", batch(first, 10, size=100))
            store.append_events(f"r{n}", done(41))
        await store.flush()

    async def test_runs_ended_past_the_retention_are_deleted_whole(self, tmp_path: Path) -> None:
        """At open, runs that ended over retention_days ago go: records, events and sessions."""
        data = tmp_path / "data"
        now = T0 + timedelta(days=100)
        async with opened(data, now=lambda: now) as store:
            await self.ended_runs(store, [20, 13], now)
            store.save_run(record("live", status="running"))  # created long ago, never ended
        async with opened(data, now=lambda: now) as store:
            assert await store.get_run("r0") is None
            assert await store.read_events("r0", 0, 1 << 20) == []
            assert await store.session_runs([S1]) == {S1: ["r1"]}
            assert await store.get_run("live") is not None
            assert store.stats().runs == 2
        assert query_db(data, "SELECT COUNT(*) FROM events WHERE run_id = 'r0'") == [(0,)]

    async def test_retention_runs_again_every_prune_interval(self, tmp_path: Path) -> None:
        """A run that passes the retention while the store is open goes at the next pruning."""
        clock = [T0]
        async with opened(tmp_path / "data", now=lambda: clock[0], prune_interval=0.05) as store:
            await self.ended_runs(store, [1], T0)
            clock[0] = T0 + timedelta(days=20)
            await eventually(lambda: store.stats().runs == 0)
            assert await store.get_run("r0") is None

    async def test_events_past_max_bytes_are_cut_from_the_oldest_ended_runs(
        self, tmp_path: Path
    ) -> None:
        """Over max_bytes, the oldest ended runs lose all but their last batch, the live none."""
        data = tmp_path / "data"
        now = T0 + timedelta(days=3)
        per_run = sum(len(batch(first, 10).data) for first in range(1, 41, 10)) + len(done(41).data)
        async with opened(data, now=lambda: now) as store:
            await self.ended_runs(store, [2.0, 1.0, 0.5], now)
            store.save_run(record("live", status="running"))  # the oldest of all, but live
            for first in range(1, 41, 10):
                store.append_events("live", batch(first, 10, size=100))
        # Room for the live run, one whole ended run and a bit: the two oldest are cut.
        limit = 2 * per_run + 100
        async with opened(data, now=lambda: now, max_bytes=limit) as store:
            cut = [await store.get_run(f"r{n}") for n in range(3)]
            assert [r.events_pruned for r in cut if r] == [True, True, False]
            assert await store.read_events("r0", 0, 1 << 20) == [done(41)]
            assert len(await store.read_events("r2", 0, 1 << 20)) == 5
            assert len(await store.read_events("live", 0, 1 << 20)) == 4
            assert store.stats().event_bytes <= limit
            assert (await store.get_run("r0")).last_event_id == 41  # type: ignore[union-attr]
        assert query_db(data, "PRAGMA freelist_count") == [(0,)]  # the space went back

    async def test_live_runs_are_never_cut(self, tmp_path: Path) -> None:
        """Runs not ended keep every batch, however far over max_bytes the store is."""
        data = tmp_path / "data"
        async with opened(data) as store:
            store.save_run(record("live", status="running"))
            for first in range(1, 101, 10):
                store.append_events("live", batch(first, 10))
        async with opened(data, max_bytes=1) as store:
            assert len(await store.read_events("live", 0, 1 << 20)) == 10
            assert not (await store.get_run("live")).events_pruned  # type: ignore[union-attr]


class TestLifetime:
    async def test_a_graceful_stop_loses_nothing(self, tmp_path: Path) -> None:
        """What was queued just before serve was cancelled is there for the next store."""
        data = tmp_path / "data"
        with trio.move_on_after(10) as stopped:
            async with opened(data, flush_interval=60) as store:
                store.save_run(record("a", status="completed"))
                store.append_events("a", batch(1, 5))
                store.append_events("a", done(6))
        assert not stopped.cancelled_caught
        async with opened(data) as store:
            assert (await store.get_run("a")).status == "completed"  # type: ignore[union-attr]
            assert await store.read_events("a", 0, 1 << 20) == [batch(1, 5), done(6)]

    async def test_cancelled_propagates_out_of_serve(self, tmp_path: Path) -> None:
        """Cancelling serve ends it with Cancelled (caught by the cancelling scope), lock let go."""
        store = SqliteStore(tmp_path / "data", **DEFAULTS)
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(store.serve)
                scope.cancel()
        assert scope.cancelled_caught
        async with opened(tmp_path / "data"):
            pass

    async def test_a_killed_gateway_leaves_whole_batches(self, tmp_path: Path) -> None:
        """A writer killed with SIGKILL mid-stream leaves a sound database and no partial batch."""
        data = tmp_path / "data"
        child = textwrap.dedent(
            """
            import sys, trio
            from datetime import UTC, datetime
            from pathlib import Path
            from cc2api.sqlite_store import SqliteStore
            from cc2api.store import EventBatch, RunRecord

            async def main():
                store = SqliteStore(Path(sys.argv[1]), retention_days=14, max_bytes=1 << 40,
                                    backlog_bytes=1 << 30, flush_interval=0.002)
                async with trio.open_nursery() as nursery:
                    await nursery.start(store.serve)
                    now = datetime.now(UTC)
                    nexts = {f"run{n}": 1 for n in range(8)}
                    for step in range(10**9):
                        for run_id, first in nexts.items():
                            if first == 1 or step % 50 == 0:
                                store.save_run(RunRecord(run_id, now, "running", "/w"))
                            count = 1 + (step * 7 + first) % 40
                            data = b"".join(b"id: %d\\nevent: m\\ndata: {}\\n\\n" % i
                                            for i in range(first, first + count))
                            store.append_events(run_id, EventBatch(first, count, data))
                            nexts[run_id] = first + count
                        if step == 20:
                            await store.flush()
                            print("ready", flush=True)
                        await trio.sleep(0)

            trio.run(main)
            """
        )
        env = {**os.environ, "PYTHONPATH": str(WORKTREE)}
        for _ in range(2):  # once on a new database, once on the one the kill left
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-c", child, str(data)], stdout=subprocess.PIPE, env=env
            )
            assert proc.stdout is not None
            with trio.fail_after(30):
                said = b""
                while b"\n" not in said:
                    said += await proc.stdout.receive_some()
            assert said == b"ready\n"
            await trio.sleep(0.5)
            proc.send_signal(signal.SIGKILL)
            with trio.fail_after(10):
                await proc.wait()
            await proc.stdout.aclose()
            assert proc.returncode == -signal.SIGKILL
            self.assert_whole(data)
            # Another run must continue the same ids: drop the runs the child made.
            conn = sqlite3.connect(data / "cc2api.db")
            conn.execute("DELETE FROM events")
            conn.execute("DELETE FROM runs")
            conn.commit()
            conn.close()

    @staticmethod
    def assert_whole(data: Path) -> None:
        conn = sqlite3.connect(data / "cc2api.db")
        try:
            assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]
            stored = conn.execute("SELECT run_id, last_event_id, event_bytes FROM runs")
            runs = {run_id: (last, size) for run_id, last, size in stored}
            assert len(runs) == 8
            for run_id, (last, size) in runs.items():
                rows = conn.execute(
                    "SELECT first, count, data FROM events WHERE run_id = ? ORDER BY first",
                    (run_id,),
                ).fetchall()
                expected = 1
                for first, count, blob in rows:
                    assert first == expected, run_id
                    assert bytes(blob).count(b"\n\n") == count
                    expected = first + count
                assert (last, size) == (expected - 1, sum(len(r[2]) for r in rows))
                assert last > 1
        finally:
            conn.close()


class TestInspect:
    def test_a_missing_database_is_reported_as_such(self, tmp_path: Path) -> None:
        """inspect of a folder without a database says so, and creates nothing."""
        report = inspect(tmp_path / "data")
        assert (report.exists, report.held, report.schema_version, report.problem) == (
            False,
            False,
            None,
            None,
        )
        assert not (tmp_path / "data").exists()

    async def test_a_report_counts_runs_and_says_who_holds_it(self, tmp_path: Path) -> None:
        """inspect counts runs by status and unfinished ones, and names the gateway holding it."""
        data = tmp_path / "data"
        async with opened(data) as store:
            store.save_run(record("a", status="running"))
            store.save_run(record("b", status="completed"))
            store.save_run(record("c", status="completed"))
            store.append_events("a", batch(1, 2))
            await store.flush()
            report = inspect(data)
            assert (report.held, report.holder_pid) == (True, os.getpid())
            assert report.runs_by_status == {"completed": 2, "running": 1}
            assert (report.unfinished, report.schema_version) == (1, LATEST)
            assert report.event_bytes == len(batch(1, 2).data)
            store.save_run(record("d"))  # the store still writes: inspect took no lock
            await store.flush()
            assert store.problem is None
        files = sorted(path.name for path in data.iterdir())
        mtime = (data / "cc2api.db").stat().st_mtime_ns
        report = inspect(data)
        assert (report.held, report.holder_pid, report.exists) == (False, None, True)
        assert report.size_bytes == (data / "cc2api.db").stat().st_size
        assert sorted(path.name for path in data.iterdir()) == files  # no -wal, no -shm made
        assert (data / "cc2api.db").stat().st_mtime_ns == mtime

    def test_a_corrupt_database_is_reported_not_raised(self, tmp_path: Path) -> None:
        """inspect of a damaged database returns a report whose problem says it is corrupt."""
        data = tmp_path / "data"
        data.mkdir()
        (data / "cc2api.db").write_bytes(b"garbage " * 1000)
        report = inspect(data)
        assert report.problem is not None
        assert "is corrupt" in report.problem
        assert report.schema_version is None


class TestStats:
    async def test_stats_track_the_backlog_and_its_peak(self, tmp_path: Path) -> None:
        """The backlog grows with queued events and empties when written; its peak stays."""
        data = tmp_path / "data"
        async with opened(data, flush_interval=30) as store:
            store.save_run(record("a"))
            store.append_events("a", batch(1, 10))
            store.append_events("a", batch(11, 10))
            size = len(batch(1, 10).data) + len(batch(11, 10).data)
            assert store.stats().backlog_bytes == size
            await store.flush()
            assert store.stats() == StoreStats(
                backlog_bytes=0,
                backlog_peak_bytes=size,
                event_bytes=size,
                runs=1,
                schema_version=LATEST,
                path=data / "cc2api.db",
            )


class TestFaults:
    async def test_a_full_disk_sets_a_problem_until_writes_resume(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A full disk: one ERROR, a problem, tries backing off; freed, writes resume, all kept."""
        caplog.set_level(logging.INFO, logger=sqlite_store.__name__)
        tries: list[float] = []
        real = store_sql.write_batch

        def timed(conn: sqlite3.Connection, records: Any, events: Any) -> store_sql.Written:
            tries.append(time.monotonic())
            return real(conn, records, events)

        monkeypatch.setattr(store_sql, "write_batch", timed)
        with tmpfs(tmp_path / "mnt", "8m") as disk:
            data = disk.path / "data"
            async with opened(data) as store:
                store.save_run(record("a"))
                await store.flush()
                disk.fill()
                store.save_run(record("a", status="completed"))
                for first in range(1, 2001, 100):
                    store.append_events("a", batch(first, 100, size=1000))
                await eventually(lambda: store.problem is not None)
                assert store.problem is not None
                assert store.problem.startswith(
                    f"the store cannot write to {data / 'cc2api.db'}: database or disk is full;"
                )
                assert store.problem.endswith(
                    "runs go on from memory and writes resume when it can write again"
                )
                failed_at = len(tries) - 1
                await store.flush()  # returns: the write failed
                assert (await store.get_run("a")).status == "completed"  # type: ignore[union-attr]
                assert len(await store.read_events("a", 0, 1 << 30)) == 20
                await trio.sleep(2.5)  # tries again after 0.5 s, then 1 s more
                gaps = [b - a for a, b in itertools.pairwise(tries[failed_at:])]
                assert len(gaps) >= 2
                assert 0.4 < gaps[0] < 0.8
                assert 0.9 < gaps[1] < 1.3
                errors = [r for r in caplog.records if r.levelno == logging.ERROR]
                assert len(errors) == 1
                disk.free()
                await eventually(lambda: store.problem is None)
                assert any("writes to" in r.getMessage() for r in caplog.records)
            async with opened(data) as again:
                assert (await again.get_run("a")).last_event_id == 2000  # type: ignore[union-attr]
                assert len(await again.read_events("a", 0, 1 << 30)) == 20

    async def test_past_the_backlog_the_oldest_batches_go_but_records_stay(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """While it cannot write, past its bound the oldest batches go, never records."""
        caplog.set_level(logging.WARNING, logger=sqlite_store.__name__)
        with tmpfs(tmp_path / "mnt", "8m") as disk:
            data = disk.path / "data"
            limit = 200_000
            async with opened(data, backlog_bytes=limit) as store:
                store.save_run(record("a"))
                await store.flush()
                disk.fill()
                store.append_events("a", batch(1, 100, size=1000))  # enough to fail
                await eventually(lambda: store.problem is not None)
                for first in range(101, 1001, 100):
                    store.append_events("a", batch(first, 100, size=1000))
                for n in range(50):
                    store.save_run(record(f"more{n}"))
                stats = store.stats()
                assert stats.backlog_bytes <= limit
                assert stats.backlog_peak_bytes > limit - 100_000
                disk.free()
                await eventually(lambda: store.problem is None)
                await store.flush()
                assert store.stats().runs == 51
                replay = await store.read_events("a", 0, 1 << 30)
                assert replay[0].first > 1  # the gap a reader reports as dropped
                assert replay[-1] == batch(901, 100, size=1000)
            warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert any("dropped its" in text and "oldest event batches" in text for text in warned)

    async def test_a_stop_on_a_full_disk_is_bounded(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Cancelled while it cannot write, serve gives up its final flush after its bound."""
        monkeypatch.setattr(sqlite_store, "FINAL_FLUSH_SECONDS", 1.0)
        caplog.set_level(logging.ERROR, logger=sqlite_store.__name__)
        with tmpfs(tmp_path / "mnt", "8m") as disk:
            started = 0.0
            async with opened(disk.path / "data") as store:
                disk.fill()
                store.save_run(record("a"))
                store.append_events("a", batch(1, 100, size=1000))
                await eventually(lambda: store.problem is not None)
                started = trio.current_time()
            assert trio.current_time() - started < 8
            disk.free()
        assert "stopped with 1 records and" in caplog.records[-1].getMessage()

    async def test_a_read_only_folder_is_refused_at_open(self, tmp_path: Path) -> None:
        """A DATA_DIR on a read-only file system refuses to open, saying it cannot be written."""
        with tmpfs(tmp_path / "mnt", "8m") as disk:
            data = disk.path / "data"
            async with opened(data) as store:
                store.save_run(record("a"))
            disk.read_only()
            with pytest.raises(StoreUnusable, match=f"cannot write in DATA_DIR {data}"):
                await SqliteStore(data, **DEFAULTS).serve()
            assert inspect(data).schema_version == LATEST  # still readable


def keeping_log(store: SqliteStore) -> EventLog:
    """Return an event log that hands its batches to ``store`` and waits for it, as a run's."""

    def keep(first: int, count: int, data: bytes) -> None:
        store.append_events("a", EventBatch(first, count, data))

    return EventLog(1 << 30, 60.0, lambda reader: None, keep, store)


def megabyte(first: int) -> tuple[bytes, int]:
    """Frame one event of about 1 MiB with id ``first``."""
    return batch(first, 1, size=1 << 20).data, 1


class TestPace:
    async def test_a_run_waits_for_a_store_far_behind(self, tmp_path: Path) -> None:
        """Past a quarter of the backlog bound, appending waits until the writer catches up."""
        data = tmp_path / "data"
        async with opened(data, flush_interval=30, backlog_bytes=4 << 20) as store:
            store.save_run(record("a"))
            log = keeping_log(store)
            for _ in range(2):
                await log.append(megabyte)  # under the quarter: queued, not waited for
            assert query_db(data, "SELECT COUNT(*) FROM events") == [(0,)]
            with trio.fail_after(10):
                await log.append(megabyte)  # over it: the writer is hurried and waited for
            assert query_db(data, "SELECT COUNT(*) FROM events") == [(2,)]
            assert store.stats().backlog_peak_bytes < 4 << 20

    async def test_a_store_that_cannot_write_holds_no_run_back(self, tmp_path: Path) -> None:
        """On a full disk, appending waits for one failed write at most, then not at all."""
        with tmpfs(tmp_path / "mnt", "8m") as disk:
            async with opened(disk.path / "data", backlog_bytes=4 << 20) as store:
                store.save_run(record("a"))
                await store.flush()
                disk.fill()
                log = keeping_log(store)
                with trio.fail_after(10):
                    for _ in range(8):
                        await log.append(megabyte)
                assert store.problem is not None
                assert not store.crowded
                assert store.stats().backlog_bytes <= 4 << 20  # the bound drops the oldest
                disk.free()  # so that the stop's final write need not wait out its bound
