"""Open connections: a cap below the descriptor limit, and which ones give way at it.

Each open connection holds a slot, from before it is accepted until its socket is
closed. A connection is *idle* while its idle timer runs: from connect until its first
request head is complete, and between a response and the next request. Only idle
connections are ever closed to make room; one with a request in flight (an SSE stream,
say) keeps its slot until it ends.

When every slot is held the accept loop waits. If a connection is waiting in the
kernel's queue and some connection is idle, the one idle the longest is closed to make
room for it (evicted): silent connections cannot starve clients that send their request
at once. With none idle the new connection waits in the listen backlog until a slot
frees; the server never accepts a connection it has no descriptor for. Evictions go one
at a time, each once the last evicted connection's socket is closed, so no more are
closed than come in.

One client address may hold at most ``per_address`` connections (0: no such limit): a
connection beyond it is closed as soon as it is accepted, so one host cannot take every
slot with connections that do hold a request in flight (a large public file it never
reads, say), which no eviction frees.

What the cap did is logged at most once per REPORT_SECONDS, with counts, never once per
connection: a flood must not flood the log too.
"""

from __future__ import annotations

import errno
import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import trio

log = logging.getLogger(__name__)

REPORT_SECONDS = 10.0
# The rest are accept errors.
COUNTED = frozenset({"silent", "idle", "stalled", "full", "address"})


class Connection:
    """One connection's slot, as the table sees it."""

    __slots__ = ("address", "evicted", "requested")

    def __init__(self) -> None:
        self.evicted = False
        self.requested = False  # whether a complete request head ever came in
        self.address: str | None = None  # the client's, once accepted and counted


class Pressure:
    """What the cap and the accept loop had to do, logged as one line per period."""

    def __init__(self, cap: int, period: float = REPORT_SECONDS) -> None:
        self._cap = cap
        self._period = period
        self._counts: Counter[str] = Counter()
        self._pending = trio.Event()

    def evicted(self, connection: Connection) -> None:
        """Count a connection closed to make room."""
        self._note("idle" if connection.requested else "silent")

    def stalled(self) -> None:
        """Count a connection closed because its client took no data for the send deadline."""
        self._note("stalled")

    def over_address_limit(self) -> None:
        """Count a connection closed because its address held as many as it may."""
        self._note("address")

    def full(self) -> None:
        """Count a time a connection had to wait because every connection was busy."""
        self._note("full")

    def accept_failed(self, number: int) -> None:
        """Count an accept(2) that failed for want of descriptors or memory."""
        self._note(errno.errorcode.get(number, str(number)))

    def _note(self, what: str) -> None:
        self._counts[what] += 1
        self._pending.set()

    def describe(self) -> str:
        """Return the line for what was counted since the last one, and start counting anew."""
        counts, self._counts = self._counts, Counter()
        parts = []
        if counts["silent"]:
            parts.append(f"closed {counts['silent']} connection(s) that had sent no request")
        if counts["idle"]:
            parts.append(f"closed {counts['idle']} connection(s) idle between requests")
        if counts["stalled"]:
            parts.append(f"closed {counts['stalled']} connection(s) whose client took no data")
        if counts["address"]:
            parts.append(
                f"closed {counts['address']} new connection(s) from addresses at their limit"
            )
        if counts["full"]:
            parts.append(f"new connections waited {counts['full']} time(s), every one busy")
        failures = {what: n for what, n in counts.items() if what not in COUNTED}
        if failures:
            named = ", ".join(f"{what} {n} time(s)" for what, n in sorted(failures.items()))
            parts.append(f"accept failed: {named}")
        return (
            f"connection pressure (cap {self._cap}): {'; '.join(parts)} "
            f"(at most one such line per {self._period:g} s)"
        )

    async def run(self) -> NoReturn:
        """Log what was counted: at once, then at most once per period.

        Cancellation: nothing to clean up; counts not yet logged are dropped.
        """
        while True:
            await self._pending.wait()
            self._pending = trio.Event()
            log.warning(self.describe())
            await trio.sleep(self._period)


class ConnectionTable:
    """The slots of a server's connections: at most ``cap`` open at once."""

    def __init__(self, cap: int, pressure: Pressure, per_address: int = 0) -> None:
        self.cap = cap
        self.per_address = per_address
        self._pressure = pressure
        self._open = 0
        self._by_address: Counter[str] = Counter()
        # Idle connections, the longest idle first, each with the scope that evicts it.
        self._idle: dict[Connection, trio.CancelScope] = {}
        self._leaving = 0  # evicted connections whose socket is not closed yet
        self._waiters: set[trio.CancelScope] = set()

    @property
    def open(self) -> int:
        """Return how many slots are held."""
        return self._open

    async def admit(self, listening: trio.socket.SocketType) -> Connection:
        """Return a slot for the next connection on ``listening``, once there is one.

        At the cap: evicts the longest idle connection once one is waiting to be
        accepted, or waits for a slot. The caller must ``release`` the slot.

        Cancellation: no slot is held.
        """
        reported = False
        while self._open >= self.cap:
            if self._idle and not self._leaving:
                if await self._wait(listening) and self._open >= self.cap and self._idle:
                    self._evict_oldest()
            else:
                if not self._idle and not self._leaving and not reported:
                    self._pressure.full()
                    reported = True
                await self._wait(None)
        self._open += 1
        return Connection()

    def count_address(self, connection: Connection, address: str) -> bool:
        """Count an accepted connection for its client address; False when it is over the limit.

        A connection refused this way is closed by the caller, and its slot released.
        """
        if self.per_address and self._by_address[address] >= self.per_address:
            self._pressure.over_address_limit()
            return False
        self._by_address[address] += 1
        connection.address = address
        return True

    def release(self, connection: Connection) -> None:
        """Give back a connection's slot, once its socket is closed."""
        if connection.address is not None:
            self._by_address[connection.address] -= 1
            if not self._by_address[connection.address]:
                del self._by_address[connection.address]
            connection.address = None
        self._open -= 1
        if connection.evicted:
            connection.evicted = False
            self._leaving -= 1
        self._notify()

    @contextmanager
    def idle(self, connection: Connection, deadline: trio.CancelScope) -> Iterator[None]:
        """Let ``connection`` be evicted within the block, by cancelling ``deadline``.

        The block ends normally when the connection is to be closed (its deadline passed,
        it was evicted, the server stops), by an exception when its idle time ended
        otherwise (a request came in).
        """
        self._idle[connection] = deadline
        self._notify()
        try:
            yield
        except BaseException:
            if connection.evicted:  # too late: a request came in first, and it stays open
                connection.evicted = False
                self._leaving -= 1
                self._notify()
            raise
        finally:
            self._idle.pop(connection, None)

    def _evict_oldest(self) -> None:
        connection = next(iter(self._idle))
        self._idle.pop(connection).cancel()
        connection.evicted = True
        self._leaving += 1
        self._pressure.evicted(connection)

    async def _wait(self, listening: trio.socket.SocketType | None) -> bool:
        """Wait until the table changes, or a connection waits on ``listening``: True then."""
        with trio.CancelScope() as scope:
            self._waiters.add(scope)
            try:
                if listening is None:
                    await trio.sleep_forever()
                else:
                    await trio.lowlevel.wait_readable(listening)
                    return True
            finally:
                self._waiters.discard(scope)
        return False

    def _notify(self) -> None:
        for scope in self._waiters:
            scope.cancel()
