"""Retention of finished detached runs: readable for a while, then let go.

A detached run's client is expected to come back for the result, so the run stays
known for ``ttl`` seconds after it ends. Each one keeps up to RUN_BUFFER_BYTES of
events, so their number is capped too: past the cap the oldest goes first. Nothing
is kept past the registry: when it stops, every kept run is let go at once.

One timer task serves every kept run: they share one TTL, so the order they were
kept in is the order they expire in, and the task only ever sleeps until the oldest.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import trio

__all__ = ["Retention"]


class Retention:
    """Finished detached runs, by id, kept until their TTL or the cap lets them go.

    ``on_evict`` is called once with each id let go, by the TTL, by the cap or at stop.
    """

    def __init__(self, ttl: float, limit: int, on_evict: Callable[[str], None]) -> None:
        self._ttl = ttl
        self._limit = limit
        self._on_evict = on_evict
        self._kept: OrderedDict[str, float] = OrderedDict()  # run id -> deadline, oldest first
        self._open = False
        self._kept_one = trio.Event()

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._kept

    def __len__(self) -> int:
        return len(self._kept)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Let kept runs go as their TTL passes, until cancelled.

        Cancellation: every kept run is let go (synchronously, nothing to shield)
        and nothing more is kept; then Cancelled propagates.
        """
        self._open = True
        task_status.started()
        try:
            while True:
                if not self._kept:
                    self._kept_one = trio.Event()
                    await self._kept_one.wait()
                    continue
                # A deadline that the cap made stale only wakes us early: harmless.
                await trio.sleep_until(next(iter(self._kept.values())))
                now = trio.current_time()
                while self._kept and next(iter(self._kept.values())) <= now:
                    self._evict_oldest()
        finally:
            self.close()

    def keep(self, run_id: str) -> bool:
        """Keep a finished run for the TTL; return False when it is not kept.

        It is not kept when the TTL is 0, when the cap is 0, or once the
        registry has stopped (or before :meth:`serve` has started).
        """
        if not self._open or self._ttl <= 0 or self._limit <= 0:
            return False
        self._kept[run_id] = trio.current_time() + self._ttl
        self._kept.move_to_end(run_id)
        while len(self._kept) > self._limit:
            self._evict_oldest()
        self._kept_one.set()
        return True

    def close(self) -> None:
        """Let every kept run go and keep none from now on; idempotent."""
        self._open = False
        while self._kept:
            self._evict_oldest()

    def _evict_oldest(self) -> None:
        run_id, _ = self._kept.popitem(last=False)
        self._on_evict(run_id)
