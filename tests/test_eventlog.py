"""The per-run event log: ids, replay, several readers, backpressure, overflow, stalls."""

from __future__ import annotations

import re

import pytest
import trio

from cc2api.eventlog import MAX_READ_BYTES, Build, EventLog, Reader
from cc2api.sse import frame

pytestmark = pytest.mark.timeout(20)


def events(count: int, size: int = 10) -> list[bytes]:
    """Return ``count`` payloads of ``size`` bytes."""
    return [b"x" * size for _ in range(count)]


def build(payloads: list[bytes]) -> Build:
    """Return a builder framing ``payloads`` as message events from the id it is given."""
    return lambda first: (
        b"".join(frame(first + i, "message", p) for i, p in enumerate(payloads)),
        len(payloads),
    )


def new_log(max_bytes: int = 1 << 20, stall: float = 10.0) -> tuple[EventLog, list[Reader]]:
    """Return a log and the list its stalled readers are reported to."""
    stalled: list[Reader] = []
    return EventLog(max_bytes, stall, stalled.append), stalled


async def read_all(reader: Reader) -> bytes:
    """Return everything the reader gets until the log ends."""
    out = b""
    while (chunk := await reader.receive(5)) != b"":
        out += chunk or b""
    return out


def ids(frames: bytes) -> list[int]:
    """Return the event ids in ``frames``, in order."""
    return [int(i) for i in re.findall(rb"^id: (\d+)$", frames, re.MULTILINE)]


async def test_reader_from_the_start_gets_every_event() -> None:
    """A reader made before or after the events gets all of them, numbered from 1."""
    log, _ = new_log()
    early = log.reader()
    log.append_nowait(build(events(3)))
    late = log.reader()
    log.close()
    assert ids(await read_all(early)) == [1, 2, 3]
    assert ids(await read_all(late)) == [1, 2, 3]


async def test_reader_resumes_after_an_id() -> None:
    """A reader made with ``after=n`` starts at event n+1: no gap, no duplicate."""
    log, _ = new_log()
    log.append_nowait(build(events(5)))
    log.close()
    assert ids(await read_all(log.reader(after=2))) == [3, 4, 5]
    assert await read_all(log.reader(after=5)) == b""


async def test_ids_stay_in_order_when_a_small_event_passes_a_waiting_batch() -> None:
    """An event added at once while a batch waits for readers takes the next id, not a dup."""
    log, _ = new_log()
    reader = log.reader()
    await log.append(build(events(1)))
    await log.append(build(events(1)))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(log.append, build(events(2)))  # waits: reader is behind
        await trio.sleep(0.1)
        log.append_nowait(build([b"small"]))
        got = await read_all_until(reader, 5)
    assert ids(got) == [1, 2, 3, 4, 5]
    assert b"data: small" in got.split(b"id: 3\n")[1].split(b"id: 4\n")[0]


async def read_all_until(reader: Reader, last: int) -> bytes:
    """Return what the reader gets until it has event ``last``."""
    out = b""
    while not ids(out) or ids(out)[-1] < last:
        out += await reader.receive(5) or b""
    return out


async def test_a_slow_reader_holds_the_writer_back() -> None:
    """append waits while a reader has not taken the batch before the last one."""
    log, _ = new_log()
    reader = log.reader()
    await log.append(build(events(1)))
    await log.append(build(events(1)))
    with trio.move_on_after(0.2) as waited:
        await log.append(build(events(1)))
    assert waited.cancelled_caught
    await reader.receive(1)
    with trio.fail_after(1):
        await log.append(build(events(1)))


async def test_several_readers_each_get_everything() -> None:
    """Two readers following one log live both get every event in order."""
    log, _ = new_log()
    readers = [log.reader(), log.reader()]
    results: list[bytes] = []

    async def follow(reader: Reader) -> None:
        results.append(await read_all(reader))

    async with trio.open_nursery() as nursery:
        for reader in readers:
            nursery.start_soon(follow, reader)
        for _ in range(20):
            await log.append(build(events(3)))
        log.close()
    assert [ids(r) for r in results] == [list(range(1, 61))] * 2


async def test_overflow_drops_the_oldest_and_a_late_reader_is_told() -> None:
    """Past max_bytes the oldest events go; a reader arriving later first gets a dropped event."""
    log, _ = new_log(max_bytes=1000)
    for _ in range(20):
        await log.append(build(events(1, size=100)))
    log.close()
    got = await read_all(log.reader())
    first = got.split(b"\n\n")[0]
    assert first.startswith(b"event: dropped\ndata: ")
    kept = ids(got)
    assert kept == list(range(kept[0], 21))
    assert b'"first_id":%d' % kept[0] in first
    assert b'"dropped":%d' % (kept[0] - 1) in first
    assert len(got) < 1500


async def test_events_a_connected_reader_needs_are_never_dropped() -> None:
    """A connected reader keeps its unread events in the log, past max_bytes if need be."""
    log, _ = new_log(max_bytes=100)
    reader = log.reader()
    log.append_nowait(build(events(5, size=100)))
    log.close()
    assert ids(await read_all(reader)) == [1, 2, 3, 4, 5]


async def test_a_reader_that_takes_nothing_is_cut_off() -> None:
    """A reader that takes nothing for the stall timeout is reported and its stream ends."""
    log, stalled = new_log(stall=0.3)
    reader = log.reader(owner=True)
    await log.append(build(events(1)))
    await log.append(build(events(1)))
    with trio.fail_after(2):
        await log.append(build(events(1)))
    assert stalled == [reader]
    assert await reader.receive(1) == b""


async def test_quiet_log_returns_none_for_a_heartbeat() -> None:
    """A reader waiting on a quiet log gets None after its patience, then later events."""
    log, _ = new_log()
    reader = log.reader()
    assert await reader.receive(0.05) is None
    log.append_nowait(build(events(1)))
    assert ids(await reader.receive(1) or b"") == [1]


async def test_a_reader_waiting_for_events_is_not_stalled() -> None:
    """A caught-up reader that waited long is idle only from when events came."""
    log, stalled = new_log(stall=0.2)
    reader = log.reader()
    got: list[bytes] = []

    async def follow() -> None:
        got.append(await read_all(reader))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow)
        await trio.sleep(0.3)  # caught up and waiting, longer than the stall timeout
        for _ in range(3):  # one read of the CLI, split in three without a checkpoint
            await log.append(build(events(1)))
        log.close()
    assert stalled == []
    assert ids(got[0]) == [1, 2, 3]


async def test_a_big_batch_goes_out_a_mebibyte_at_a_time() -> None:
    """A batch over MAX_READ_BYTES (a huge line) is handed out in pieces of at most that."""
    log, _ = new_log(max_bytes=1 << 30)
    reader = log.reader()
    log.append_nowait(build([b"y" * (3 * MAX_READ_BYTES)]))
    log.close()
    sizes = []
    while (chunk := await reader.receive(1)) != b"":
        sizes.append(len(chunk or b""))
    assert max(sizes) <= MAX_READ_BYTES
    assert sum(sizes) > 3 * MAX_READ_BYTES


async def test_a_slow_reader_that_keeps_taking_is_kept() -> None:
    """A reader that takes a piece every so often, each within the stall timeout, stays."""
    log, stalled = new_log(max_bytes=1 << 30, stall=0.3)
    reader = log.reader()
    log.append_nowait(build([b"z" * (3 * MAX_READ_BYTES)]))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(log.append, build(events(1)))  # waits on the slow reader
        while (chunk := await reader.receive(1)) and b"id: 2" not in chunk:
            await trio.sleep(0.15)
    assert stalled == []
