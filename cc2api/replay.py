"""A replay of a run's events: what the store holds first, then what memory holds.

A live run's event log keeps only its newest RUN_BUFFER_BYTES; the store keeps every
event (within retention). A client that reattaches with an older ``Last-Event-ID``
is fed from the store up to the oldest event memory holds, then from memory, live.
A run no longer in memory (finished and let go, or from before a restart) is
replayed from the store alone. Ids are the run's own throughout, so ``Last-Event-ID``
means the same whichever part an event comes from.

The memory reader is made first, so memory keeps everything from where it starts
while the store is read; the store is read only up to there (its writer may lag,
so its queue counts: see :meth:`Store.read_events`). Events neither holds (pruned,
or dropped while the store could not write) are reported once, where they are
missing, by a ``dropped`` event, as memory alone reports what it trimmed.
"""

from __future__ import annotations

from .eventlog import MAX_READ_BYTES, Reader, frames_since
from .sse import frame_json
from .store import Store
from .wire import DroppedEvent

__all__ = ["Replay"]


class Replay:
    """A :class:`~cc2api.sse.Source`: stored events after ``after``, then ``live`` (if any)."""

    def __init__(self, store: Store, run_id: str, after: int, live: Reader | None) -> None:
        self._store = store
        self._run_id = run_id
        self._next = after + 1  # the id of the next event owed
        self._live = live
        # Memory holds everything from the live reader's place: the store serves before it.
        self._before = None if live is None else live.cursor
        self._stored = self._before is None or self._next < self._before

    async def receive(self, patience: float) -> bytes | None:
        """Return the next frames; ``b""`` at the end; None after ``patience`` seconds of quiet.

        Cancellation: nothing is lost; a later call goes on where this one was.
        """
        if self._stored:
            frames = await self._from_store()
            if frames:
                return frames
            self._stored = False
            gap = self._gap_before_live()
            if gap:
                return gap
        if self._live is None:
            return b""
        return await self._live.receive(patience)

    async def _from_store(self) -> bytes:
        batches = await self._store.read_events(
            self._run_id, self._next - 1, MAX_READ_BYTES, before=self._before
        )
        pieces = []
        for batch in batches:
            end = batch.first + batch.count  # the id after it
            if self._before is not None and batch.first >= self._before:
                break
            if end <= self._next:
                continue
            if batch.first > self._next:
                pieces.append(_dropped(batch.first - self._next, batch.first))
            piece = frames_since(batch.data, batch.first, self._next)
            if self._before is not None and end > self._before:
                # Memory has the rest of this batch: stop where it starts.
                piece = piece[: _offset_of(piece, self._before)]
                end = self._before
            pieces.append(piece)
            self._next = end
        return b"".join(pieces)

    def _gap_before_live(self) -> bytes:
        if self._before is None or self._next >= self._before:
            return b""
        gap = _dropped(self._before - self._next, self._before)
        self._next = self._before
        return gap

    def close(self) -> None:
        """Leave the run's log; idempotent."""
        if self._live is not None:
            self._live.close()


def _dropped(count: int, first_id: int) -> bytes:
    # Without an id, as memory's own: the client's Last-Event-ID stays where it was.
    event = DroppedEvent(dropped=count, first_id=first_id)
    return frame_json(None, event.event, event.wire())


def _offset_of(frames: bytes, event_id: int) -> int:
    """Return where event ``event_id`` starts in ``frames`` (which hold it, after the first)."""
    return frames.index(b"\n\nid: %d\n" % event_id) + 2
