"""Run slots: at most N runs hold one, the rest wait in a bounded first-in, first-out queue."""

from __future__ import annotations

from collections import deque

import trio

from .errors import QueueFull

# What a 429 for a full queue suggests: runs last seconds to minutes, so a client
# that retries this much later is likely to find room without hammering the server.
RETRY_AFTER_SECONDS = 5


class Slot:
    """One run's place: granted at once, or queued until an earlier run releases."""

    def __init__(self, slots: Slots) -> None:
        self.slots = slots
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

    def take(self) -> Slot:
        """Return a slot, granted if one is free, else queued at the end.

        Raises:
            QueueFull: every slot is held and the queue is full.
        """
        slot = Slot(self)
        if self._held < self.limit:
            self._held += 1
            slot.grant()
        elif len(self._queue) < self.queue_limit:
            self._queue.append(slot)
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
        """Take ``slot`` back and grant freed slots to the oldest waiters."""
        if slot.granted:
            self._held -= 1
        else:
            self._queue.remove(slot)
        while self._queue and self._held < self.limit:
            self._held += 1
            self._queue.popleft().grant()
