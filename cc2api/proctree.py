"""Find and end every process a run started, including ones that left its session.

The CLI's Bash tool starts each command in a session of its own, so neither the
CLI's process group nor its parent links are enough: once the CLI dies, those
commands are reparented. Each run therefore puts a marker in its CLI's
environment, which every descendant inherits, and teardown looks for the marker,
the CLI's live subtree, and every process it found before. Linux only (``/proc``).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import trio

MARKER_VAR = "CC2API_RUN_ID"
_PR_SET_CHILD_SUBREAPER = 36
_PROC = Path("/proc")
_POLL_SECONDS = 0.02
# A process stuck in uninterruptible sleep cannot die even from SIGKILL; stop
# waiting for it this long after SIGKILL rather than hang the run forever.
_AFTER_KILL_SECONDS = 3.0

log = logging.getLogger(__name__)


def become_subreaper() -> bool:
    """Make orphaned descendants of this process reparent to it instead of init.

    Escaped tool processes then become our children when the CLI dies, so we can
    reap them even where init does not (some container inits never do). Returns
    whether the kernel accepted it.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


@dataclass(frozen=True)
class _Proc:
    pid: int
    ppid: int
    zombie: bool
    start: int  # start time in clock ticks: with the pid, it names one process for good


def _read_stat(pid: int) -> _Proc | None:
    try:
        raw = (_PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    # The command name is in parentheses and may itself hold spaces or ')'.
    fields = raw[raw.rindex(b")") + 2 :].split()
    return _Proc(
        pid=pid, ppid=int(fields[1]), zombie=fields[0] in (b"Z", b"X"), start=int(fields[19])
    )


def _snapshot() -> dict[int, _Proc]:
    procs: dict[int, _Proc] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            info = _read_stat(int(entry.name))
            if info is not None:
                procs[info.pid] = info
    return procs


def _has_marker(pid: int, marker: bytes) -> bool:
    try:
        environ = (_PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return False
    return environ.startswith(marker) or (b"\0" + marker) in environ


def reap_zombie_children(keep: Collection[int]) -> int:
    """Reap this process's zombie children, except ``keep``; return how many.

    ``keep`` must hold every child whose exit status someone else will collect
    (the CLIs, which their ``trio.Process`` reaps).
    """
    me = os.getpid()
    children: set[int] = set()
    for listing in (_PROC / str(me) / "task").glob("*/children"):
        with contextlib.suppress(OSError):
            children.update(int(pid) for pid in listing.read_text().split())
    reaped = 0
    for pid in children.difference(keep):
        info = _read_stat(pid)
        if info is not None and info.zombie and info.ppid == me:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
                reaped += 1
    return reaped


@dataclass
class RunProcesses:
    """The processes of one run: the CLI's subtree, marked processes, and those seen before."""

    run_id: str
    root_pid: int | None = None  # set only while the CLI is unreaped, so its pid is its own
    _known: dict[int, int] = field(default_factory=dict)  # pid -> start time

    @property
    def env_entry(self) -> tuple[str, str]:
        """Return the environment variable that marks this run's processes."""
        return MARKER_VAR, self.run_id

    def scan(self) -> set[int]:
        """Return the live (not zombie) pids that belong to the run now, the CLI included."""
        marker = f"{MARKER_VAR}={self.run_id}\0".encode()
        procs = _snapshot()
        me = os.getpid()
        children: dict[int, list[int]] = {}
        for info in procs.values():
            children.setdefault(info.ppid, []).append(info.pid)
        members: set[int] = set()
        stack = [self.root_pid] if self.root_pid in procs else []
        while stack:
            pid = stack.pop()
            if pid not in members:
                members.add(pid)
                stack.extend(children.get(pid, ()))
        for pid, start in self._known.items():
            known = procs.get(pid)
            if known is not None and known.start == start:
                members.add(pid)
        for info in procs.values():
            if info.pid not in members and not info.zombie and _has_marker(info.pid, marker):
                members.add(info.pid)
        members.discard(me)
        live = {pid for pid in members if not procs[pid].zombie}
        self._known.update((pid, procs[pid].start) for pid in live)
        return live

    async def terminate(self, grace: float) -> set[int]:
        """Send SIGTERM to every process of the run, SIGKILL what is left after ``grace``.

        Returns the pids still alive when it gave up (normally none). Processes
        forked during teardown are found by the repeated scans, which run in a
        worker thread so a busy host does not stall the event loop.

        Cancellation: call it in a shielded scope; cancelled, it stops signalling
        and may leave processes behind.
        """
        deadline = trio.current_time() + grace
        termed: set[int] = set()
        killed = False
        while live := await trio.to_thread.run_sync(self.scan):
            now = trio.current_time()
            if now < deadline:
                fresh = live - termed
                _signal_all(fresh, signal.SIGTERM)
                # A stopped process only acts on SIGTERM once it runs again.
                _signal_all(fresh, signal.SIGCONT)
                termed |= live
            elif not killed or now < deadline + _AFTER_KILL_SECONDS:
                if not killed:
                    log.warning("run %s: %d process(es) ignored SIGTERM", self.run_id, len(live))
                killed = True
                _signal_all(live, signal.SIGKILL)
            else:
                log.error("run %s: pids %s survived SIGKILL", self.run_id, sorted(live))
                return live
            await trio.sleep(_POLL_SECONDS)
        return set()


def _signal_all(pids: set[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
