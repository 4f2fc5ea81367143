"""A replay of a run's events: what the store holds first, then what memory holds.

A live run's event log keeps only its newest RUN_BUFFER_BYTES; the store keeps every
event (within retention). A client that reattaches is fed from the store for as long
as the store has more for it, then from memory, live. A run no longer in memory
(finished and let go, or from before a restart) is replayed from the store alone.
Ids are the run's own throughout, so ``Last-Event-ID`` means the same whichever part
an event comes from.

Why the store first, and memory only after: a memory reader holds the run back (the
log waits for its slowest reader, and cuts off one that takes nothing for
CLIENT_STALL_SECONDS). A reader that sat in memory while the store part is sent would
stall the CLI for all that time, and then be cut off. So the memory reader is made
only once the store has nothing more, at the next id, in the same step that checks
memory still holds it. Every batch reaches the store's queue before memory holds it,
so what memory let go of meanwhile is the store's: it is read again. Events neither
holds (pruned, or dropped while the store could not write, or ``STORE=memory``) are
reported once, where they are missing, by a ``dropped`` event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .eventlog import MAX_READ_BYTES, Reader, frames_since
from .logs import run_extra
from .sse import frame_json
from .store import Store
from .wire import DroppedEvent

__all__ = ["Frames", "Live", "Replay"]

log = logging.getLogger(__name__)


class Frames:
    """A :class:`~cc2api.sse.Source` of frames known in advance: sent, then the end."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def receive(self, patience: float) -> bytes | None:
        """Return the frames, then ``b""``."""
        data, self._data = self._data, b""
        return data

    def close(self) -> None:
        """Nothing to leave."""


class Live:
    """A live run's event log, as a replay reaches it: where it starts, and a reader from an id."""

    def __init__(self, first_kept: Callable[[], int], reader: Callable[[int], Reader]) -> None:
        self.first_kept = first_kept  # the oldest id memory holds (the next one when none)
        self.reader = reader  # a reader of the events after the id given


class Replay:
    """A :class:`~cc2api.sse.Source`: stored events after ``after``, then ``live`` (if any)."""

    def __init__(self, store: Store, run_id: str, after: int, live: Live | None) -> None:
        self._store = store
        self._run_id = run_id
        self._next = after + 1  # the id of the next event owed
        self._live = live
        self._reader: Reader | None = None
        self._closed = False
        self._tried = False  # memory lacked the next id once already
        self._store_failed = False

    async def receive(self, patience: float) -> bytes | None:
        """Return the next frames; ``b""`` at the end; None after ``patience`` seconds of quiet.

        Cancellation: nothing is lost; a later call goes on where this one was.
        """
        while self._reader is None:
            frames = await self._from_store()
            if frames:
                return frames
            if self._live is None or self._closed:
                return b""
            gap = self._attach(self._live)
            if gap is None:  # memory let go of more while the store was read: read it again
                continue
            if gap:
                return gap
        return await self._reader.receive(patience)

    def _attach(self, live: Live) -> bytes | None:
        """Follow memory from the next id; None (and nothing done) if memory lacks it.

        Called only once the store had nothing more. The second time, what memory lacks
        the store lacks too: it is reported as dropped, and memory followed from there.
        """
        first = live.first_kept()
        if first > self._next and not self._tried:
            self._tried = True
            return None
        gap = b""
        if first > self._next:
            gap = _dropped(first - self._next, first)
            self._next = first
        self._reader = live.reader(self._next - 1)
        return gap

    async def _from_store(self) -> bytes:
        if self._store_failed:
            return b""
        try:
            batches = await self._store.read_events(self._run_id, self._next - 1, MAX_READ_BYTES)
        except Exception:
            # A store that cannot be read costs the replay its stored part, not the
            # stream: memory's part follows, after a `dropped` for what is missing.
            log.exception(
                "run %s: the store could not be read for a replay",
                self._run_id,
                extra=run_extra(self._run_id),
            )
            self._store_failed = True
            return b""
        pieces = []
        for batch in batches:
            end = batch.first + batch.count  # the id after it
            if end <= self._next:
                continue
            if batch.first > self._next:
                pieces.append(_dropped(batch.first - self._next, batch.first))
            pieces.append(frames_since(batch.data, batch.first, self._next))
            self._next = end
        return b"".join(pieces)

    def close(self) -> None:
        """Leave the run's log (if it was followed); idempotent."""
        self._closed = True
        if self._reader is not None:
            self._reader.close()


def _dropped(count: int, first_id: int) -> bytes:
    # Without an id, as memory's own: the client's Last-Event-ID stays where it was.
    event = DroppedEvent(dropped=count, first_id=first_id)
    return frame_json(None, event.event, event.wire())
