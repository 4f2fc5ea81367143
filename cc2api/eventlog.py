"""A run's event log: framed SSE events by sequence id, kept for replay, read by many readers."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import trio

from .sse import frame_json

# Frames events given the id of the first, and returns them as one bytes object with
# their count: ids are handed out only when events are added, so that events added
# while another batch waits get the next ones.
Build = Callable[[int], tuple[bytes, int]]
# Told of every batch as it is added (the store's copy): first id, count, frames.
Keep = Callable[[int, int, bytes], None]


class Room(Protocol):
    """The store's side of a run's pace: whether it can take more events now."""

    @property
    def crowded(self) -> bool:
        """Return whether the store holds so much unwritten that writers should wait."""
        ...

    async def room(self) -> None:
        """Return once the store has room again (or can no longer write: then at once)."""
        ...


# A reader gets what is there when it asks, but batches are joined only up to this
# much, so that a replay of a full buffer does not become one huge copy.
MAX_READ_BYTES = 1024 * 1024


@dataclass(frozen=True)
class _Batch:
    first: int  # id of its first event
    count: int
    data: bytes  # the framed events, ready to send

    @property
    def after(self) -> int:
        return self.first + self.count  # the id that follows

    def since(self, event_id: int) -> bytes:
        """Return the frames from event ``event_id`` (one of this batch's) on."""
        return frames_since(self.data, self.first, event_id)


def frames_since(data: bytes, first: int, event_id: int) -> bytes:
    """Return the frames of a batch whose first event is ``first``, from ``event_id`` on."""
    if event_id <= first:
        return data  # the common case: no copy
    # Data fields cannot hold a newline, so an id line after a blank line is
    # always the start of an event.
    return data[data.index(b"\n\nid: %d\n" % event_id) + 2 :]


class EventLog:
    """Events numbered from 1, kept in batches while they fit in ``max_bytes``.

    Every connected reader gets every event: :meth:`append` waits while a reader
    has not taken the batch before the last one (backpressure, so a slow client
    slows the CLI rather than growing memory). A reader the log waits on that has
    taken nothing for ``stall_timeout`` is cut off and reported to ``on_stall``.
    Batches no reader needs go first when the log outgrows ``max_bytes`` (the
    newest always stays); a reader that arrives later learns of the gap from a
    ``dropped`` event.
    """

    def __init__(
        self,
        max_bytes: int,
        stall_timeout: float,
        on_stall: Callable[[Reader], None],
        keep: Keep | None = None,
        room: Room | None = None,
    ) -> None:
        self._batches: deque[_Batch] = deque()
        self._bytes = 0
        self._next = 1
        self._max_bytes = max_bytes
        self._stall_timeout = stall_timeout
        self._on_stall = on_stall
        self._keep = keep
        self._room = room
        self._readers: set[Reader] = set()
        self._unbounded = False  # see stop_holding_back
        self._grown = trio.Event()
        self._read = trio.Event()
        self.closed = False

    @property
    def first_kept(self) -> int:
        """Return the id of the oldest event still held (the next id when none is)."""
        return self._batches[0].first if self._batches else self._next

    @property
    def last_id(self) -> int:
        """Return the id of the newest event (0 before the first)."""
        return self._next - 1

    def next_id(self) -> int:
        """Return the id the next event gets."""
        return self._next

    def reader(self, after: int = 0, *, owner: bool = False) -> Reader:
        """Return a reader that starts with the event after id ``after``."""
        reader = Reader(self, after + 1, owner=owner)
        self._readers.add(reader)
        return reader

    async def append(self, build: Build) -> None:
        """Add the events ``build(first_id)`` frames, once the readers and the store keep up.

        The store holds a run back as a slow reader does, and only while it writes
        more slowly than the run prints: a store that cannot write at all (a full disk)
        holds nothing back (see :class:`Room`).

        Cancellation: cancelled while waiting for readers or the store, nothing is added.
        """
        room = self._room
        if room is not None and room.crowded and not self._unbounded:
            await room.room()
        while not self._unbounded and (laggards := self._laggards()):
            # Stalled means idle: a reader that keeps taking, however slowly, is kept.
            now = trio.current_time()
            idle = [r for r in laggards if now - r.last_take >= self._stall_timeout]
            for reader in idle:
                reader.cut_off()
                self._on_stall(reader)
            if not idle:
                oldest = min(reader.last_take for reader in laggards)
                with trio.move_on_at(oldest + self._stall_timeout):
                    await self._read.wait()
        self.append_nowait(build)

    def append_nowait(self, build: Build) -> None:
        """Add events at once, whoever is behind (for the last few, and the small).

        Nothing is added once the log is closed: ``done`` stays the last event.
        """
        if self.closed:
            return
        data, count = build(self._next)
        if not count:
            return
        # A reader that was waiting, caught up, has been idle only from now on.
        now = trio.current_time()
        for reader in self._readers:
            if reader.cursor >= self._next and not reader.pending:
                reader.last_take = now
        if self._keep is not None:
            self._keep(self._next, count, data)
        self._batches.append(_Batch(self._next, count, data))
        self._bytes += len(data)
        self._next += count
        self._trim()
        self._grown.set()
        self._grown = trio.Event()

    def stop_holding_back(self) -> None:
        """Let :meth:`append` add at once from now on, however far readers are behind.

        For the end of a run (an interrupt): what the CLI says then (its
        acknowledgement, its last result) must be read, not wait for a slow client.
        Readers still lose nothing; the log keeps what they need.
        """
        self._unbounded = True
        self._wake_writer()

    def close(self) -> None:
        """Mark the end: readers finish once they have taken the rest."""
        self.closed = True
        self._grown.set()

    async def wait_for_more(self) -> None:
        """Return when an event is added or the log closes."""
        await self._grown.wait()

    def _laggards(self) -> list[Reader]:
        newest = self._batches[-1].first if self._batches else self._next
        return [r for r in self._readers if r.cursor < newest or r.pending]

    def _trim(self) -> None:
        floor = min((reader.cursor for reader in self._readers), default=self._next)
        batches = self._batches
        while self._bytes > self._max_bytes and len(batches) > 1 and batches[0].after <= floor:
            self._bytes -= len(batches.popleft().data)

    def take(self, reader: Reader) -> bytes:
        """Return the frames ``reader`` is owed and move its cursor past them.

        A write is at most about MAX_READ_BYTES: what is left of a larger batch (a
        huge line) waits in the reader, so a slow reader keeps taking, and is seen
        to, while it is sent.
        """
        reader.last_take = trio.current_time()
        self._wake_writer()
        if reader.pending:
            return reader.take_pending()
        batches = self._batches
        first = batches[0].first
        pieces = []
        if reader.cursor < first:
            gap = {"dropped": first - reader.cursor, "first_id": first}
            pieces.append(frame_json(None, "dropped", gap))
            reader.cursor = first
        # Batches are in id order; find the one holding the cursor from the end,
        # where a reader that keeps up always is.
        index = len(batches) - 1
        while batches[index].first > reader.cursor:
            index -= 1
        size = 0
        while index < len(batches) and (not pieces or size < MAX_READ_BYTES):
            batch = batches[index]
            piece = batch.since(reader.cursor)
            pieces.append(piece)
            size += len(piece)
            reader.cursor = batch.after
            index += 1
        self._trim()
        taken = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        if len(taken) <= MAX_READ_BYTES:
            return taken
        reader.pending = memoryview(taken)
        return reader.take_pending()

    def _wake_writer(self) -> None:
        """Let a waiting :meth:`append` look at its readers again."""
        self._read.set()
        self._read = trio.Event()

    def forget(self, reader: Reader) -> None:
        """Stop waiting on ``reader``; its events may go."""
        self._readers.discard(reader)
        self._wake_writer()


class Reader:
    """One client's place in an :class:`EventLog`."""

    def __init__(self, log: EventLog, cursor: int, *, owner: bool) -> None:
        self.cursor = cursor  # the id of the next event it wants
        self.owner = owner  # the stream of the POST /chat that started the run
        self.last_take = trio.current_time()
        self.pending = memoryview(b"")  # the rest of a batch too big for one write
        self._log = log
        self._cut_off = False

    async def receive(self, patience: float) -> bytes | None:
        """Return the next frames; ``b""`` at the end; None after ``patience`` seconds of quiet.

        Cancellation: nothing is taken from the log.
        """
        log = self._log
        with trio.move_on_after(patience):
            while True:
                if self._cut_off:
                    return b""
                if self.pending or self.cursor < log.next_id():
                    return log.take(self)
                if log.closed:
                    return b""
                await log.wait_for_more()
        return None

    def take_pending(self) -> bytes:
        """Return the next write's worth of what is left of a big batch."""
        piece, self.pending = self.pending[:MAX_READ_BYTES], self.pending[MAX_READ_BYTES:]
        return bytes(piece)

    def cut_off(self) -> None:
        """End this reader's stream: it stopped taking events."""
        self._cut_off = True
        self._log.forget(self)

    def close(self) -> None:
        """Leave the log; idempotent."""
        self._log.forget(self)
