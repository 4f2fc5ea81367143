"""One pooled CLI: spawned ahead for a profile, watched until a run takes it or it retires."""

from __future__ import annotations

import array
import contextlib
import fcntl
import logging
import os
import termios
from collections.abc import Callable
from pathlib import Path

import trio

from .cli_process import CliProcess
from .launch import Launch, remove_folder
from .pool_profile import Profile, Signature, signature
from .proctree import TreeUsage

log = logging.getLogger(__name__)

__all__ = ["Warm"]

# A retired CLI's folder is removed in this long; past it, the removal goes on alone.
REMOVE_SECONDS = 30.0
# A CLI using less of a CPU than this between two measures has done starting; one that
# is still busy this long after its spawn counts as started all the same.
QUIET_CPU_SHARE = 0.05
START_LIMIT_SECONDS = 15.0
# The shortest span a judgement of quiet is made over: CPU time comes in 10 ms ticks.
QUIET_WINDOW_SECONDS = 0.25
_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


class Warm:
    """A CLI waiting on stdin for its first message, owned by the pool until handed over.

    While it waits, :meth:`watch` owns it: a CLI that exits or prints anything on
    stdout is spoiled and torn down, never handed out. What it writes on stderr is
    kept, as a cold run keeps it, and handed over with it.
    """

    def __init__(
        self, profile: Profile, launch: Launch, cli: CliProcess, signature: Signature
    ) -> None:
        self.profile = profile
        self.launch = launch
        self.cli = cli
        self.signature = signature  # the start-up files as they were before the spawn
        self.spawned_at = trio.current_time()
        self.stderr_tail = bytearray()
        self.rss_bytes = 0  # the CLI's tree, as last measured
        # Started: it has loaded and gone quiet, waiting on stdin (see :meth:`measured`).
        self.started = False
        self._cpu: tuple[float, int] | None = None  # when last measured, its CPU ticks then
        self._quiet = 0  # measures in a row it used almost no CPU
        self.reason: str | None = None  # why it retired (or was spoiled); None once handed
        self._taken = False
        self._handed = False
        self._scope = trio.CancelScope()
        self._decided = trio.Event()  # handed over, or not: set before any teardown

    def measured(self, usage: TreeUsage, now: float) -> None:
        """Take in a measure of the CLI's tree; it has started once it stops using CPU.

        A CLI prints nothing until its message, so its start-up ends when its CPU use
        stays at almost none for two measures in a row (a pause to read a file is
        shorter), or after :data:`START_LIMIT_SECONDS`, whatever it does.
        """
        self.rss_bytes = usage.rss_bytes
        last = self._cpu
        if last is not None and now - last[0] < QUIET_WINDOW_SECONDS:
            return  # too short a span to tell quiet from busy: the next measure will
        self._cpu = (now, usage.cpu_ticks)
        if self.started or last is None:
            return
        seconds = (usage.cpu_ticks - last[1]) / _TICKS_PER_SECOND
        quiet = seconds / max(now - last[0], 1e-3) < QUIET_CPU_SHARE
        self._quiet = self._quiet + 1 if quiet else 0
        self.started = self._quiet >= 2 or now - self.spawned_at > START_LIMIT_SECONDS

    @property
    def marker(self) -> str:
        """Return the id its processes are marked with (a pool id, never a run's)."""
        return self.launch.run_id

    def unfit(self, now: float, max_idle: float, config: Path) -> str | None:
        """Return why the CLI may not be handed out now (``idle`` or ``stale``), or None.

        Stale: a file it read at start (in ``config`` too) has changed since.
        """
        if now - self.spawned_at > max_idle:
            return "idle"
        profile = self.profile
        if signature(profile.cwd, config, profile.claude) != self.signature:
            return "stale"
        return None

    async def watch(self, on_end: Callable[[Warm], None]) -> None:
        """Own the CLI until it is handed over or retired; a CLI not handed over ends here.

        ``on_end`` is called once, as soon as the CLI is handed over or is to end (before
        its teardown), with :attr:`reason` saying which.
        Cancellation: the CLI's tree is torn down (shielded, bounded by the kill grace),
        and its folder removed, unless it was handed over first.
        """
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._exit, nursery.cancel_scope)
                    nursery.start_soon(self._stdout, nursery.cancel_scope)
                    # Read as a run reads it, kept for the run that takes the CLI.
                    nursery.start_soon(self.cli.drain_stderr, self.stderr_tail)
        except Exception:
            log.exception("pooled CLI %s: watching it failed; retiring it", self.marker)
            self.reason = self.reason or "error"
        finally:
            if self._taken and self.reason is None:
                # It may have spoken or ended just as it was taken, unseen by the watch.
                self.reason = self._last_look()
            self._handed = self._taken and self.reason is None
            if not self._handed:
                self.reason = self.reason or "shutdown"
            self._decided.set()
            on_end(self)
            if not self._handed:
                with trio.CancelScope(shield=True):
                    await self._end()

    async def hand_over(self) -> CliProcess | None:
        """Stop watching and return the CLI, or None if it was spoiled meanwhile.

        The caller owns a returned CLI, and must tear it down. Cancellation: shielded;
        the watch decides within a scheduler pass (a spoiled CLI's teardown goes on in
        it), so the CLI is never left owned by no one.
        """
        self._taken = True
        self._scope.cancel()
        with trio.CancelScope(shield=True):
            await self._decided.wait()
        return self.cli if self._handed else None

    def retire(self, reason: str) -> None:
        """End the CLI in its watch task; ignored once it is handed over or ended."""
        if not self._taken and self.reason is None:
            self.reason = reason
            self._scope.cancel()

    def _last_look(self) -> str | None:
        stdout = self.cli.stdout
        if isinstance(stdout, trio.lowlevel.FdStream) and _pending(stdout.fileno()):
            return "printed"
        return None if self.cli.running() else "exited"

    async def _end(self) -> None:
        try:
            await self.cli.teardown()
        finally:
            with trio.move_on_after(REMOVE_SECONDS):
                await trio.to_thread.run_sync(
                    remove_folder, self.launch.workdir, abandon_on_cancel=True
                )

    async def _exit(self, scope: trio.CancelScope) -> None:
        await self.cli.exit()
        self.reason = self.reason or "exited"
        scope.cancel()

    async def _stdout(self, scope: trio.CancelScope) -> None:
        # Waited on, not read: the bytes stay in the pipe, and a CLI that said
        # anything before its message is not to be handed out anyway.
        stdout = self.cli.stdout
        assert isinstance(stdout, trio.lowlevel.FdStream)  # noqa: S101 (spawn's pipes)
        await trio.lowlevel.wait_readable(stdout.fileno())
        self.reason = self.reason or ("printed" if _pending(stdout.fileno()) else "exited")
        scope.cancel()


def _pending(fd: int) -> int:
    """Return how many bytes wait in a pipe (0 when readable means its end)."""
    count = array.array("i", [0])
    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, termios.FIONREAD, count)
    return count[0]
