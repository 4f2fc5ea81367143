"""Find and end every process a run started, including ones that left its session.

The CLI's Bash tool starts each command in a session of its own, so neither the
CLI's process group nor its parent links are enough: once the CLI dies, those
commands are reparented. Each run therefore puts a marker in its CLI's
environment, which every descendant inherits, and teardown looks for both the
marker and the CLI's live subtree. Linux only (it reads ``/proc``).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
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

    That keeps escaped tool processes findable as our children and lets us reap
    them, so none is left a zombie under an init that does not reap. Returns
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


def _read_stat(pid_dir: Path) -> _Proc | None:
    try:
        raw = (pid_dir / "stat").read_bytes()
    except OSError:
        return None
    # The command name is in parentheses and may itself hold spaces or ')'.
    fields = raw[raw.rindex(b")") + 2 :].split()
    return _Proc(pid=int(pid_dir.name), ppid=int(fields[1]), zombie=fields[0] in (b"Z", b"X"))


def _has_marker(pid: int, marker: bytes) -> bool:
    try:
        environ = (_PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return False
    return environ.startswith(marker) or (b"\0" + marker) in environ


def _snapshot() -> dict[int, _Proc]:
    procs: dict[int, _Proc] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            info = _read_stat(entry)
            if info is not None:
                procs[info.pid] = info
    return procs


@dataclass
class RunProcesses:
    """The processes of one run: the CLI's subtree plus every process with its marker."""

    run_id: str
    root_pid: int | None = None
    seen: set[int] = field(default_factory=set)

    @property
    def env_entry(self) -> tuple[str, str]:
        """Return the environment variable that marks this run's processes."""
        return MARKER_VAR, self.run_id

    def scan(self) -> tuple[set[int], set[int]]:
        """Return (live, zombie) pids that belong to the run right now, the CLI included."""
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
        for info in procs.values():
            candidate = info.pid not in members and info.pid != me and not info.zombie
            if candidate and _has_marker(info.pid, marker):
                members.add(info.pid)
        # Zombies we saw alive earlier and that were reparented to us are ours to reap.
        for pid in self.seen:
            seen_info = procs.get(pid)
            if seen_info is not None and seen_info.zombie and seen_info.ppid == me:
                members.add(pid)
        members.discard(me)
        self.seen |= members
        live = {pid for pid in members if not procs[pid].zombie}
        return live, members - live

    def _reap(self, zombies: set[int]) -> None:
        me = os.getpid()
        for pid in zombies:
            if pid == self.root_pid:
                continue  # the CLI is reaped by its trio.Process
            try:
                if _read_ppid(pid) == me:
                    os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass

    async def terminate(self, grace: float) -> set[int]:
        """Send SIGTERM to every process of the run, SIGKILL what is left after ``grace``.

        Returns the pids that were still alive when it gave up (normally none). New
        processes forked during teardown are found by the repeated scans.

        Cancellation: call it in a shielded scope; cancelled, it stops signalling
        and may leave processes behind.
        """
        deadline = trio.current_time() + grace
        termed: set[int] = set()
        killed = False
        while True:
            live, zombies = self.scan()
            self._reap(zombies)
            if not live:
                return set()
            now = trio.current_time()
            if now >= deadline:
                if killed and now >= deadline + _AFTER_KILL_SECONDS:
                    log.error("processes %s survived SIGKILL; giving up on them", sorted(live))
                    return live
                if not killed:
                    log.warning("run %s: %d process(es) ignored SIGTERM", self.run_id, len(live))
                killed = True
                _signal_all(live, signal.SIGKILL)
            else:
                fresh = live - termed
                _signal_all(fresh, signal.SIGTERM)
                # A stopped process only acts on SIGTERM once it runs again.
                _signal_all(fresh, signal.SIGCONT)
                termed |= live
            await trio.sleep(_POLL_SECONDS)


def _read_ppid(pid: int) -> int | None:
    info = _read_stat(_PROC / str(pid))
    return None if info is None else info.ppid


def _signal_all(pids: set[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
