"""Run slots: at most N runs hold one, the rest wait in a bounded first-in, first-out queue.

A slot may belong to a share (an API key's) with limits of its own: at most
``Share.limit`` of its slots are held, and ``Share.queue_limit`` wait. A freed slot goes
to the oldest waiter whose share has room, so a key at its limit never holds back the
runs of others queued behind its own.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import trio

from .errors import QueueFull

# What a 429 for a full queue suggests: runs last seconds to minutes, so a client
# that retries this much later is likely to find room without hammering the server.
RETRY_AFTER_SECONDS = 5


@dataclass(eq=False)
class Share:
    """One owner's part of the slots (None limits: only the server's apply)."""

    name: str
    limit: int | None = None
    queue_limit: int | None = None
    held: int = field(default=0, init=False)
    queued: int = field(default=0, init=False)

    @property
    def has_room(self) -> bool:
        """Return whether one more of its slots may be held."""
        return self.limit is None or self.held < self.limit


class Slot:
    """One run's place: granted at once, or queued until an earlier run releases."""

    def __init__(self, slots: Slots, share: Share | None = None) -> None:
        self.slots = slots
        self.share = share
        self._granted = trio.Event()
        self._released = False

    @property
    def granted(self) -> bool:
        """Return whether this slot lets its run start."""
        return self._granted.is_set()

    @property
    def position(self) -> int:
        """Return the place in the queue, from 1; 0 once granted or released."""
        return self.slots.position(self)

    async def wait(self) -> None:
        """Return once the slot is granted.

        Cancellation: the wait stops and the slot stays queued; :meth:`release`
        removes it.
        """
        await self._granted.wait()

    def release(self) -> None:
        """Give the slot back (or leave the queue); idempotent."""
        if not self._released:
            self._released = True
            self.slots.release(self)

    def grant(self) -> None:
        """Let the run start; only :class:`Slots` calls this."""
        self._granted.set()


class Slots:
    """Hands out ``limit`` slots; up to ``queue_limit`` more requests wait in order."""

    def __init__(self, limit: int, queue_limit: int) -> None:
        self.limit = limit
        self.queue_limit = queue_limit
        self._held = 0
        self._queue: deque[Slot] = deque()

    @property
    def running(self) -> int:
        """Return how many slots are held."""
        return self._held

    @property
    def queued(self) -> int:
        """Return how many requests wait for a slot."""
        return len(self._queue)

    def take(self, share: Share | None = None) -> Slot:
        """Return a slot, granted if one is free (for ``share`` too), else queued at the end.

        Raises:
            QueueFull: every slot is held and the queue is full, or ``share``'s are.
        """
        slot = Slot(self, share)
        if self._held < self.limit and (share is None or share.has_room):
            self._grant(slot)
        elif share is not None and (
            share.queue_limit is not None and share.queued >= share.queue_limit
        ):
            raise QueueFull(
                f"key {share.name} has {share.held} runs running and {share.queued} queued, "
                f"the most it may (max_runs={share.limit}, max_queued={share.queue_limit}); "
                "retry later",
                retry_after=RETRY_AFTER_SECONDS,
            )
        elif len(self._queue) < self.queue_limit:
            self._queue.append(slot)
            if share is not None:
                share.queued += 1
        else:
            raise QueueFull(
                f"{self._held} runs are running and {len(self._queue)} are queued, "
                f"the most this server allows (MAX_CONCURRENT_RUNS={self.limit}, "
                f"MAX_QUEUED_RUNS={self.queue_limit}); retry later",
                retry_after=RETRY_AFTER_SECONDS,
            )
        return slot

    def position(self, slot: Slot) -> int:
        """Return ``slot``'s place in the queue from 1, or 0 when it is not queued."""
        try:
            return self._queue.index(slot) + 1
        except ValueError:
            return 0

    def release(self, slot: Slot) -> None:
        """Take ``slot`` back and grant freed slots to the oldest waiters with room."""
        share = slot.share
        if slot.granted:
            self._held -= 1
            if share is not None:
                share.held -= 1
        else:
            self._queue.remove(slot)
            if share is not None:
                share.queued -= 1
        self.refill()

    def refill(self) -> None:
        """Grant free slots to the oldest waiters with room (after a share's limit grew)."""
        if not self._queue or self._held >= self.limit:
            return
        for waiting in list(self._queue):
            if self._held >= self.limit:
                break
            if waiting.share is None or waiting.share.has_room:
                self._queue.remove(waiting)
                if waiting.share is not None:
                    waiting.share.queued -= 1
                self._grant(waiting)

    def _grant(self, slot: Slot) -> None:
        self._held += 1
        if slot.share is not None:
            slot.share.held += 1
        slot.grant()
