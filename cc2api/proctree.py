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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import trio

from .logs import run_extra

MARKER_VAR = "CC2API_RUN_ID"
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_DUMPABLE = 4
_PROC = Path("/proc")
_POLL_SECONDS = 0.02
# A process stuck in uninterruptible sleep cannot die even from SIGKILL; stop
# waiting for it this long after SIGKILL rather than hang the run forever.
_AFTER_KILL_SECONDS = 3.0
# Reading /proc/<pid>/environ can block on a process stuck in the kernel; a scan
# taking longer than this is abandoned and retried.
_SCAN_SECONDS = 2.0


@dataclass
class _Children:
    """Our own children that others reap, and spawns under way.

    Zombies and the subreaper role belong to the whole process, not to one app, so
    this bookkeeping is process-wide: every registry in the process shares it.
    """

    keep: set[int] = field(default_factory=set)
    spawning: int = 0


_CHILDREN = _Children()


@contextmanager
def spawning() -> Iterator[set[int]]:
    """Hold off reaping while a CLI is spawned; add its pid to the yielded set.

    Until its pid is known, a CLI that died at once would look like an orphan.
    """
    _CHILDREN.spawning += 1
    try:
        yield _CHILDREN.keep
    finally:
        _CHILDREN.spawning -= 1


def release(pid: int) -> None:
    """Say that ``pid`` has been reaped by its owner, so it may be reused."""
    _CHILDREN.keep.discard(pid)


log = logging.getLogger(__name__)


def become_subreaper() -> bool:
    """Make orphaned descendants of this process reparent to it instead of init.

    Escaped tool processes then become our children when the CLI dies, so we can
    reap them even where init does not (some container inits never do). Returns
    whether the kernel accepted it.
    """
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def make_undumpable() -> bool:
    """Make this process's /proc files (environ, mem) unreadable to its own user.

    Its children's tools run as the same user; without this they could read the
    server's environment, passwords included. Returns whether the kernel accepted it.
    """
    return _prctl(_PR_SET_DUMPABLE, 0)


def _prctl(option: int, value: int) -> bool:
    """Call prctl(2); return whether the kernel accepted it (False off Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(option, value, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


class _Proc(NamedTuple):
    pid: int
    ppid: int
    zombie: bool
    start: int  # start time in clock ticks: with the pid, it names one process for good


def _read(path: str) -> bytes | None:
    # Plain open() rather than pathlib: a scan reads every process's files, and a
    # busy host has thousands.
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError:
        return None


def _read_stat(pid: int) -> _Proc | None:
    raw = _read(f"{_PROC}/{pid}/stat")
    if raw is None:
        return None
    # The command name is in parentheses and may itself hold spaces or ')'.
    fields = raw[raw.rindex(b")") + 2 :].split()
    return _Proc(
        pid=pid, ppid=int(fields[1]), zombie=fields[0] in (b"Z", b"X"), start=int(fields[19])
    )


def _snapshot() -> dict[int, _Proc]:
    procs: dict[int, _Proc] = {}
    for name in os.listdir(_PROC):
        if name.isdigit():
            info = _read_stat(int(name))
            if info is not None:
                procs[info.pid] = info
    return procs


class TreeUsage(NamedTuple):
    """What one process tree holds and has used."""

    rss_bytes: int  # resident memory, all its processes'
    # User and system time its live processes and the children they reaped have used,
    # in clock ticks.
    cpu_ticks: int


def tree_usage(roots: list[int]) -> dict[int, TreeUsage]:
    """Return each root's tree, descendants included, as memory and CPU used (one scan).

    Blocking (it reads /proc): call it in a worker thread.
    """
    if not roots:
        return {}
    procs = _snapshot()
    children: dict[int, list[int]] = {}
    for info in procs.values():
        children.setdefault(info.ppid, []).append(info.pid)
    page = os.sysconf("SC_PAGE_SIZE")
    found: dict[int, TreeUsage] = {}
    for root in roots:
        if root not in procs:
            continue
        rss = ticks = 0
        stack, seen = [root], set()
        while stack:
            pid = stack.pop()
            if pid in seen:
                continue
            seen.add(pid)
            stack.extend(children.get(pid, ()))
            statm = _read(f"{_PROC}/{pid}/statm")
            if statm is not None and len(pages := statm.split()) > 1:
                rss += int(pages[1]) * page
            stat = _read(f"{_PROC}/{pid}/stat")
            if stat is not None:
                fields = stat[stat.rindex(b")") + 2 :].split()
                ticks += sum(int(tick) for tick in fields[11:15])
        found[root] = TreeUsage(rss, ticks)
    return found


def _has_marker(pid: int, marker: bytes, tag: bytes | None = None) -> bool:
    environ = _read(f"{_PROC}/{pid}/environ")
    if environ is None:
        return False
    return all(
        environ.startswith(entry) or (b"\0" + entry) in environ
        for entry in (marker, tag)
        if entry is not None
    )


def _children_of(me: int) -> set[int]:
    # Plain listdir and open(), as in _snapshot: this runs on the event loop at every
    # run's end, and a gateway tearing many runs down has as many worker threads.
    tasks = f"{_PROC}/{me}/task"
    try:
        tids = os.listdir(tasks)
    except OSError:
        tids = []
    children: set[int] = set()
    listed = False
    for tid in tids:
        raw = _read(f"{tasks}/{tid}/children")
        if raw is not None:
            listed = True
            children.update(int(pid) for pid in raw.split())
    if not listed:  # a kernel without CONFIG_PROC_CHILDREN: look at every process
        return {info.pid for info in _snapshot().values() if info.ppid == me}
    return children


def reap_zombie_children() -> int:
    """Reap this process's zombie children, except the CLIs; return how many.

    Every child that is not a CLI (see :func:`spawning`) counts as an orphan we
    adopted as subreaper: code sharing the process must not start children of its
    own and wait for them.
    """
    if _CHILDREN.spawning:
        return 0
    me = os.getpid()
    reaped = 0
    for pid in _children_of(me) - _CHILDREN.keep:
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
    # A second variable a marked process must also carry (the store's id, for leftovers
    # of a gateway that died: run ids alone would do, but another DATA_DIR's are not ours).
    tag: tuple[str, str] | None = None
    since: int = 0  # the CLI's start time: nothing older can be one of the run's processes
    _known: dict[int, int] = field(default_factory=dict)  # pid -> start time

    def started(self, pid: int) -> None:
        """Record the CLI's pid and start time, right after it is spawned."""
        self.root_pid = pid
        info = _read_stat(pid)
        if info is not None:
            self.since = info.start

    @property
    def env_entry(self) -> tuple[str, str]:
        """Return the environment variable that marks this run's processes."""
        return MARKER_VAR, self.run_id

    def scan(self) -> set[int]:
        """Return the live (not zombie) pids that belong to the run now, the CLI included."""
        marker = f"{MARKER_VAR}={self.run_id}\0".encode()
        tag = None if self.tag is None else f"{self.tag[0]}={self.tag[1]}\0".encode()
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
            candidate = info.pid not in members and not info.zombie and info.start >= self.since
            if candidate and _has_marker(info.pid, marker, tag):
                members.add(info.pid)
        members.discard(me)
        live = {pid for pid in members if not procs[pid].zombie}
        self._known.update((pid, procs[pid].start) for pid in live)
        return live

    async def _scan_bounded(self) -> set[int] | None:
        """Scan in a worker thread; None when the scan hung (it is then abandoned)."""
        with trio.move_on_after(_SCAN_SECONDS):
            return await trio.to_thread.run_sync(self.scan, abandon_on_cancel=True)
        log.warning(
            "run %s: a /proc scan hung; abandoned it", self.run_id, extra=run_extra(self.run_id)
        )
        return None

    async def terminate(self, grace: float) -> set[int]:
        """Send SIGTERM to every process of the run, SIGKILL what is left after ``grace``.

        Returns the pids still alive when it gave up (normally none). Processes
        forked during teardown are found by the repeated scans, which run in a
        worker thread so a busy host does not stall the event loop.

        Cancellation: call it in a shielded scope; cancelled, it stops signalling
        and may leave processes behind.
        """
        deadline = trio.current_time() + grace
        give_up = deadline + _AFTER_KILL_SECONDS
        termed: set[int] = set()
        live: set[int] = set()
        killed = False
        while trio.current_time() < give_up:
            scanned = await self._scan_bounded()
            if scanned is not None:
                live = scanned
                if not live:
                    return set()
                if trio.current_time() < deadline:
                    fresh = live - termed
                    _signal_all(fresh, signal.SIGTERM)
                    # A stopped process only acts on SIGTERM once it runs again.
                    _signal_all(fresh, signal.SIGCONT)
                    termed |= live
                else:
                    if not killed:
                        log.warning(
                            "run %s: %d process(es) ignored SIGTERM", self.run_id, len(live)
                        )
                        killed = True
                    _signal_all(live, signal.SIGKILL)
            await trio.sleep(_POLL_SECONDS)
        log.error(
            "run %s: pids %s survived SIGKILL",
            self.run_id,
            sorted(live),
            extra=run_extra(self.run_id),
        )
        return live


def _signal_all(pids: set[int], sig: signal.Signals) -> None:
    me = os.getpid()
    for pid in pids:
        if pid <= 1 or pid == me:  # never a process group, init or ourselves
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def runs_tagged(tag: tuple[str, str]) -> dict[str, str]:
    """Return the run ids live processes carrying ``tag`` are marked with, and each run's cwd.

    A run's cwd is its oldest process's (its CLI's, which starts in it), "" if unknown.
    Blocking (reads every process's environment): call it in a worker thread.
    """
    entry = f"{tag[0]}={tag[1]}\0".encode()
    prefix = f"{MARKER_VAR}=".encode()
    oldest: dict[str, tuple[int, int]] = {}  # run id -> (start time, pid)
    me = os.getpid()
    for info in _snapshot().values():
        if info.zombie or info.pid == me:
            continue
        environ = _read(f"{_PROC}/{info.pid}/environ")
        if environ is None or not (environ.startswith(entry) or b"\0" + entry in environ):
            continue
        for variable in environ.split(b"\0"):
            if variable.startswith(prefix):
                run_id = variable[len(prefix) :].decode(errors="replace")
                oldest[run_id] = min(
                    oldest.get(run_id, (info.start, info.pid)), (info.start, info.pid)
                )
    found = {}
    for run_id, (_, pid) in oldest.items():
        try:
            found[run_id] = os.readlink(f"{_PROC}/{pid}/cwd")
        except OSError:
            found[run_id] = ""
    return found


async def end_leftovers(tag: tuple[str, str], grace: float) -> dict[str, str]:
    """End every process still carrying ``tag``, run by run; return each such run's cwd.

    For a gateway restarted after a crash, before it starts runs: the runs of the one
    that died left their CLIs and tools running. The tag (the store's id) is all it
    takes, not the runs the store knows: a run whose record never reached the disk (a
    crash within a writer's batch, or while the disk was full) left processes too. Its
    lock says no live gateway has this store, so every such process is a leftover. They
    are ended as a cancel ends a run's tree (SIGTERM, SIGKILL after ``grace``), all
    runs at once.

    Cancellation: call it in a shielded scope, as :meth:`RunProcesses.terminate`.
    """

    async def end(run_id: str) -> None:
        processes = RunProcesses(run_id=run_id, tag=tag)
        await trio.to_thread.run_sync(processes.scan)
        await processes.terminate(grace)

    found = await trio.to_thread.run_sync(runs_tagged, tag)
    async with trio.open_nursery() as nursery:
        for run_id in sorted(found):
            nursery.start_soon(end, run_id)
    return found
