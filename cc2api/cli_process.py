"""The CLI process of one run: spawned, watched until it exits, and torn down with its tree.

The kill policy is an argument (:data:`KillPolicy`), apart from supervising, as
``trio.run_process`` takes ``deliver_cancel``: the run decides how its tree dies,
this module only when.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import subprocess
from collections.abc import Awaitable, Callable, Collection

import trio

from .launch import Launch
from .limits import RunLimits
from .outcome import STDERR_TAIL_BYTES
from .proctree import RunProcesses, release, spawning

log = logging.getLogger(__name__)

# As much as the CLI's stdout pipe holds once enlarged (the kernel's default cap for
# F_SETPIPE_SZ): fewer, larger reads, each framed and sent as one batch.
READ_CHUNK = 1024 * 1024
# Ends every process of a run: the CLI (while unreaped) and whatever it left. It must
# bound its own time (the default: the kill grace, plus a few seconds for a process
# stuck in the kernel), since teardown runs it shielded.
# It returns the pids left alive (an empty set or None: none).
KillPolicy = Callable[[RunProcesses], Awaitable[Collection[int] | None]]


def terminate_tree(grace: float) -> KillPolicy:
    """Return the default policy: SIGTERM to the whole tree, SIGKILL after ``grace`` s."""

    async def kill(processes: RunProcesses) -> set[int]:
        return await processes.terminate(grace)

    return kill


class CliProcess:
    """A spawned CLI: its three pipes, its exit, and the end of everything it started.

    Made by :func:`spawn`; :meth:`teardown` must run (shielded) whatever happens.
    """

    def __init__(
        self,
        proc: trio.Process,
        processes: RunProcesses,
        *,
        kill: KillPolicy,
        grace: float,
        drain_after_exit: float,
        reap: Callable[[], None],
    ) -> None:
        assert proc.stdin is not None  # noqa: S101 (all three are PIPE)
        assert proc.stdout is not None  # noqa: S101
        assert proc.stderr is not None  # noqa: S101
        self.stdin: trio.abc.SendStream = proc.stdin
        self.stdout: trio.abc.ReceiveStream = proc.stdout
        self.stderr: trio.abc.ReceiveStream = proc.stderr
        self._proc = proc
        self._processes = processes
        self._kill = kill
        self._grace = grace
        self._drain_after_exit = drain_after_exit
        self._reap = reap
        self.exited = trio.Event()
        self._pending_reads: set[trio.CancelScope] = set()
        self._drain_budget: dict[int, float] = {}  # id(stream) -> seconds left after exit

    @property
    def pid(self) -> int:
        """Return the CLI's pid (maybe another process's once it is reaped)."""
        return self._proc.pid

    @property
    def exit_code(self) -> int | None:
        """Return the CLI's exit status; None while it runs or if it could not be reaped."""
        return self._proc.returncode

    def running(self) -> bool:
        """Return whether the CLI has not exited (it is reaped, if it has)."""
        return self._proc.poll() is None

    async def exit(self) -> None:
        """Wait for the CLI itself to exit (reaped). Cancellation: the wait stops."""
        await self._proc.wait()

    def start_draining(self) -> None:
        """Switch the reads to draining: what is still in a pipe comes with a deadline.

        Call it once the CLI has exited and nothing is left to say to it.
        """
        self.exited.set()
        for read in list(self._pending_reads):
            read.cancel()

    async def end_leftovers(self) -> None:
        """End what the exited CLI left running (a tool's background job, a stuck MCP server).

        It may hold the pipes open, and it is not to outlive the run. Bounded by the
        kill grace. Cancellation: the kill stops; :meth:`teardown` ends the tree.
        """
        self._processes.root_pid = None  # reaped by exit(): its pid may be another's
        await self._kill(self._processes)

    async def receive(self, stream: trio.abc.ReceiveStream) -> bytes:
        """Return the next chunk of one of the CLI's output pipes, or b"" at the end.

        The end is EOF or, once the CLI has exited, ``drain_after_exit`` seconds spent
        waiting on this stream in all: data already in the pipe comes at once, and
        time spent delivering it to a slow reader does not count.
        Cancellation: nothing is lost; the chunk not yet read stays in the pipe.
        """
        while not self.exited.is_set():
            with trio.CancelScope() as read:
                self._pending_reads.add(read)
                try:
                    return bytes(await stream.receive_some(READ_CHUNK))
                finally:
                    self._pending_reads.discard(read)
        budget = self._drain_budget.get(id(stream), self._drain_after_exit)
        started = trio.current_time()
        chunk = b""
        with trio.move_on_after(budget):
            chunk = bytes(await stream.receive_some(READ_CHUNK))
        self._drain_budget[id(stream)] = budget - (trio.current_time() - started)
        return chunk

    async def drain_stderr(self, tail: bytearray) -> None:
        """Read stderr to its end into ``tail``, which keeps the last of it (an 8 KiB tail).

        Read all the time: a CLI blocked on a full stderr pipe would stall. Cancellation:
        nothing is lost; what was not read stays in the pipe.
        """
        while chunk := await self.receive(self.stderr):
            tail += chunk
            if len(tail) > 2 * STDERR_TAIL_BYTES:
                del tail[:-STDERR_TAIL_BYTES]

    async def teardown(self) -> int:
        """End every process of the run, reap the CLI and close its pipes.

        Returns how many processes the kill policy left alive (normally 0). Each step
        runs whatever the one before did: a failure must not leave the
        CLI unreaped or its pipes open. Bounded by the kill grace; call it shielded.
        """
        proc = self._proc
        try:
            if proc.returncode is not None:
                self._processes.root_pid = None  # reaped: its pid may already be another's
            left = await self._kill(self._processes)
        finally:
            try:
                with trio.move_on_after(self._grace + 1):
                    await proc.wait()
            finally:
                release(proc.pid)
                try:
                    self._reap()
                finally:
                    for stream in (proc.stdin, proc.stdout, proc.stderr):
                        if stream is not None:
                            await stream.aclose()
        return len(left or ())


async def spawn(
    launch: Launch,
    processes: RunProcesses,
    *,
    kill: KillPolicy,
    grace: float,
    drain_after_exit: float,
    reap: Callable[[], None],
) -> CliProcess:
    """Start the launch's command in a session of its own, with three pipes.

    Raises:
        OSError: the command could not be started.

    Cancellation: the spawn itself is not interrupted (it does not block).
    """
    with spawning() as cli_pids:
        proc = await trio.lowlevel.open_process(
            list(launch.argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=launch.cwd,
            env=dict(launch.env),
            start_new_session=True,
        )
        cli_pids.add(proc.pid)
    processes.started(proc.pid)
    if isinstance(proc.stdout, trio.lowlevel.FdStream):
        _enlarge_pipe(proc.stdout.fileno())
    return CliProcess(
        proc, processes, kill=kill, grace=grace, drain_after_exit=drain_after_exit, reap=reap
    )


async def spawn_run(launch: Launch, limits: RunLimits, reap: Callable[[], None]) -> CliProcess:
    """Spawn a run's CLI (or a pooled one) with the run's kill policy and limits.

    Raises and cancellation: as :func:`spawn`.
    """
    return await spawn(
        launch,
        RunProcesses(run_id=launch.run_id),
        kill=terminate_tree(limits.kill_grace),
        grace=limits.kill_grace,
        drain_after_exit=limits.drain_after_exit,
        reap=reap,
    )


def _enlarge_pipe(fd: int) -> None:
    # A 64 KiB pipe means a read, a framing and a send every 64 KiB; the fixed cost
    # of each halves throughput. Refused (a lower pipe-max-size), the default stays.
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, READ_CHUNK)
