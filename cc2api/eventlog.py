"""A run's event log: framed SSE events by sequence id, kept for replay, read by many readers."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable

import trio

from .sse import frame_json

# Frames events given the id of the first: ids are handed out only when events are
# added, so that events added while another batch waits get the next ones.
Build = Callable[[int], list[bytes]]
# A reader gets what is there when it asks, but at most this much in one write, so
# that a replay of a full buffer does not become one huge copy.
MAX_READ_BYTES = 1024 * 1024


class EventLog:
    """Events numbered from 1, kept while they fit in ``max_bytes``.

    Every connected reader gets every event: :meth:`append` waits while a reader
    has not taken the batch before the last one (backpressure, so a slow client
    slows the CLI rather than growing memory). A reader that takes nothing for
    ``stall_timeout`` while the log waits on it is cut off and reported to
    ``on_stall``. Events no reader needs go first when the log outgrows
    ``max_bytes``; a reader that arrives later learns of the gap from a
    ``dropped`` event.
    """

    def __init__(
        self, max_bytes: int, stall_timeout: float, on_stall: Callable[[Reader], None]
    ) -> None:
        self._frames: list[bytes] = []  # _frames[i] is event _base + i
        self._ends: list[int] = []  # _ends[i]: bytes logged up to the end of _frames[i]
        self._dropped_bytes = 0  # bytes logged before _frames[0]
        self._base = 1
        self._next = 1
        self._max_bytes = max_bytes
        self._stall_timeout = stall_timeout
        self._on_stall = on_stall
        self._last_batch = 1  # first id of the latest batch
        self._readers: set[Reader] = set()
        self._grown = trio.Event()
        self._read = trio.Event()
        self.closed = False

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
        """Add the events ``build(first_id)`` frames, once the readers keep up.

        Cancellation: cancelled while waiting for readers, nothing is added.
        """
        with trio.move_on_after(self._stall_timeout):
            while laggards := self._laggards():
                await self._read.wait()
            self.append_nowait(build)
            return
        for reader in laggards:
            reader.cut_off()
            self._on_stall(reader)
        self.append_nowait(build)

    def append_nowait(self, build: Build) -> None:
        """Add events at once, whoever is behind (for the last few, and the small)."""
        frames = build(self._next)
        if not frames:
            return
        self._last_batch = self._next
        logged = self._ends[-1] if self._ends else self._dropped_bytes
        self._ends.extend(itertools.accumulate(map(len, frames), initial=logged))
        del self._ends[len(self._frames)]  # the initial value accumulate repeats
        self._frames.extend(frames)
        self._next += len(frames)
        self._trim()
        self._grown.set()
        self._grown = trio.Event()

    def close(self) -> None:
        """Mark the end: readers finish once they have taken the rest."""
        self.closed = True
        self._grown.set()

    async def wait_for_more(self) -> None:
        """Return when an event is added or the log closes."""
        await self._grown.wait()

    def _laggards(self) -> list[Reader]:
        return [r for r in self._readers if r.cursor < self._last_batch]

    def _trim(self) -> None:
        if not self._ends or self._ends[-1] - self._dropped_bytes <= self._max_bytes:
            return
        floor = min((reader.cursor for reader in self._readers), default=self._next)
        # Keep the newest events that fit; drop the rest unless a reader needs them.
        last_to_drop = bisect.bisect_left(self._ends, self._ends[-1] - self._max_bytes)
        drop = min(last_to_drop + 1, floor - self._base)
        if drop > 0:
            self._dropped_bytes = self._ends[drop - 1]
            del self._frames[:drop]
            del self._ends[:drop]
            self._base += drop

    def take(self, reader: Reader) -> bytes:
        """Return the frames ``reader`` is owed and move its cursor past them."""
        gap = b""
        if reader.cursor < self._base:
            dropped = self._base - reader.cursor
            gap = frame_json(None, "dropped", {"dropped": dropped, "first_id": self._base})
            reader.cursor = self._base
        start = reader.cursor - self._base
        before = self._ends[start - 1] if start else self._dropped_bytes
        # At least one event, then as many as fit in MAX_READ_BYTES.
        end = max(start + 1, bisect.bisect_right(self._ends, before + MAX_READ_BYTES, lo=start))
        taken = gap + b"".join(self._frames[start:end])
        reader.cursor += end - start
        self._read.set()
        self._read = trio.Event()
        self._trim()
        return taken

    def forget(self, reader: Reader) -> None:
        """Stop waiting on ``reader``; its events may go."""
        self._readers.discard(reader)
        self._read.set()
        self._read = trio.Event()


class Reader:
    """One client's place in an :class:`EventLog`."""

    def __init__(self, log: EventLog, cursor: int, *, owner: bool) -> None:
        self.cursor = cursor  # the id of the next event it wants
        self.owner = owner  # the stream of the POST /chat that started the run
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
                if self.cursor < log.next_id():
                    return log.take(self)
                if log.closed:
                    return b""
                await log.wait_for_more()
        return None

    def cut_off(self) -> None:
        """End this reader's stream: it stopped taking events."""
        self._cut_off = True
        self._log.forget(self)

    def close(self) -> None:
        """Leave the log; idempotent."""
        self._log.forget(self)
