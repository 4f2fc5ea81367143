"""One run: a Claude Code CLI process, supervised from spawn to the last reaped descendant."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import shutil
import subprocess
import tempfile
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, ParamSpec

import trio

from .approval_rules import ApprovalRules
from .cli_args import RunFiles, build_argv
from .confinement import ConfineSetup, RunFolders, bring_back, launcher_argv, prepare
from .conversation import Conversation, HeldBytes
from .eventlog import EventLog, Reader
from .framing import LineFramer, LineTooLong
from .landlock import PREFIX, SETUP_FAILED
from .models import ChatRequest
from .policy import Plan
from .proctree import RunProcesses, release, spawning
from .safecopy import CopyTooLarge
from .slots import Slot
from .sse import frame_json, frame_messages

log = logging.getLogger(__name__)

# As much as the CLI's stdout pipe holds once enlarged (the kernel's default cap for
# F_SETPIPE_SZ): fewer, larger reads, each framed and sent as one batch.
READ_CHUNK = 1024 * 1024
# The most a stream: false answer holds (every line, kept until the run ends).
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
STDERR_TAIL_BYTES = 8 * 1024
# Once the CLI has exited, what is left in its pipes arrives at once; a descendant
# that inherited them could hold them open for ever, so waiting this long in all
# counts as the end.
DRAIN_AFTER_EXIT_SECONDS = 1.0
# After its input is closed the CLI should exit promptly; one that does not (a stuck
# MCP server, say) is torn down after this long.
EXIT_AFTER_INPUT_SECONDS = 30.0
ROOT_REFUSAL = b"cannot be used with root/sudo privileges"
LAUNCHER_SAID = PREFIX.encode() + b":"
# A confined run's sessions are copied back to the real config folder in this long,
# and a run's folder is removed in this long; past it, each goes on in its thread.
BRING_BACK_SECONDS = 30.0
REMOVE_SECONDS = 30.0
# Only lines whose start names one of these are parsed; the rest pass untouched.
_INSPECT_MARKERS = (b'"init"', b'"result"', b'"control_')
HEAD_BYTES = 64
P = ParamSpec("P")


class DocumentTooLarge(Exception):
    """Raised when a stream: false run prints more than MAX_DOCUMENT_BYTES."""


class Status(StrEnum):
    """Where a run is; the last five are final and appear in the ``done`` event."""

    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class RunLimits:
    """The operator's settings a run obeys."""

    kill_grace: float = 5.0  # SIGTERM to SIGKILL
    max_line_bytes: int = 32 * 1024 * 1024
    stall_timeout: float = 60.0  # a reader taking nothing this long is gone
    buffer_bytes: int = 8 * 1024 * 1024  # events kept for replay
    followup_grace: float = 0.0  # input stays open this long after the last result
    approval_timeout: float = 300.0  # 0: wait for ever
    interrupt_patience: float = 5.0  # for the CLI to acknowledge an interrupt
    followup_max_bytes: int = 16 * 1024 * 1024  # follow-ups one run holds for a turn


def _suspects(lines: list[bytes]) -> list[bytes]:
    """Return the lines whose head names a marker: the heads are searched as one."""
    heads = b"\n".join([line[:HEAD_BYTES] for line in lines])
    if not any(marker in heads for marker in _INSPECT_MARKERS):
        return []
    return [line for line in lines if any(m in line[:HEAD_BYTES] for m in _INSPECT_MARKERS)]


def _parse_head_line(line: bytes) -> dict[str, Any] | None:
    """Return a line as a dict; None when it is not a JSON object."""
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


class Run:
    """One ``POST /chat``: the CLI process, its event log, its conversation and its teardown.

    The supervisor (:meth:`supervise`) runs in the registry's nursery inside
    :attr:`cancel_scope`; HTTP handlers read :attr:`log` and steer the run through
    :attr:`conversation`.
    """

    def __init__(
        self,
        *,
        process_id: str,
        request: ChatRequest,
        plan: Plan,
        claude: Path,
        environ: Mapping[str, str],
        limits: RunLimits,
        slot: Slot,
        held_total: HeldBytes,
        confine: ConfineSetup,
        on_session: Callable[[Run, str], None],
        on_finish: Callable[[Run], None],
        reap: Callable[[], None],
    ) -> None:
        self.process_id = process_id
        self.request = request
        self.detached = request.detach
        self.session_id = request.session_id
        self.started_at = datetime.now(UTC)
        self.finished_at: datetime | None = None
        self.pid: int | None = None
        self.status = Status.RUNNING if slot.granted else Status.QUEUED
        self.exit_code: int | None = None
        self.error: dict[str, Any] | None = None
        self.result: dict[str, Any] | None = None  # the CLI's last result line
        self.cancel_scope = trio.CancelScope()
        self.finished = trio.Event()
        self.interrupt_forced = False
        # The log and the conversation call back into the run weakly: a run they kept
        # alive through a reference cycle would be freed only by the cycle collector,
        # late, with every event and message it holds.
        self.log = EventLog(limits.buffer_bytes, limits.stall_timeout, weakly(self._reader_stalled))
        self.conversation = Conversation(
            request.prompt,
            followup_grace=limits.followup_grace,
            approval_timeout=limits.approval_timeout,
            emit=weakly(self._emit),
            held_limit=limits.followup_max_bytes,
            held_total=held_total,
            rules=ApprovalRules.for_plan(plan),
        )
        self.lines: list[bytes] | None = None if request.stream else []  # for stream: false
        self._lines_bytes = 0
        self._plan = plan
        self._confine = confine
        # The sessions the CLI said it used, the one resumed first.
        self._sessions = [] if request.session_id is None else [request.session_id]
        self._claude = claude
        self._environ = environ
        self._limits = limits
        self._slot = slot
        self._timed_out = False
        self._on_session = on_session
        self._on_finish = on_finish
        self._reap = reap
        self._processes = RunProcesses(run_id=process_id)
        self._stderr_tail = bytearray()
        self._stdin_closed = trio.Event()
        self._cli_exited = trio.Event()
        self._pending_reads: set[trio.CancelScope] = set()
        self._drain_budget: dict[int, float] = {}  # id(stream) -> seconds left after exit
        self._reader_attached = trio.Event()
        self._conversation_scope = trio.CancelScope()
        self._interrupt_scope = trio.CancelScope()
        self._interrupting = False
        self._cli_nursery: trio.Nursery | None = None
        self._emit("process", {"process_id": process_id})

    # -- public -----------------------------------------------------------

    def cancel(self) -> None:
        """Ask the run to stop; synchronous and idempotent. ``finished`` tells when it has."""
        if self.status in (Status.QUEUED, Status.RUNNING):  # a settled run keeps its own
            self.cancel_scope.cancel()
            self.status = Status.CANCELLING

    def attach_reader(self) -> Reader:
        """Return the reader of the stream the run was started with (from the first event)."""
        return self.log.reader(owner=True)

    def stream_started(self) -> None:
        """Note that the starting client's stream body has begun (see cancel_unless_read)."""
        self._reader_attached.set()

    def stream_closed(self) -> None:
        """Note that the starting client's stream ended; a run not detached ends with it."""
        if not self.detached:
            self.cancel()

    async def interrupt(self) -> None:
        """Stop the current turn through the CLI's control protocol and wait for the end.

        A queued run (or one whose CLI has not started) is simply cancelled. If
        the CLI does not acknowledge within the interrupt patience, or does not end
        its turn as long after, the run is torn down as by :meth:`cancel`.
        Cancellation: the wait stops; the interrupt goes on in the run's own task.
        """
        if self.status is Status.QUEUED or (self.status is Status.RUNNING and self.pid is None):
            self.cancel()
        elif (
            self.status is Status.RUNNING
            and not self._interrupting
            and self._cli_nursery is not None
        ):
            self._interrupting = True
            # The nursery may be closing as the CLI ends: then so is the run.
            with contextlib.suppress(RuntimeError):
                self._cli_nursery.start_soon(self._interrupt)
        await self.finished.wait()

    async def _interrupt(self) -> None:
        # Cancelled when the CLI exits: whatever happened, it need not be forced.
        with self._interrupt_scope:
            # The acknowledgement must not queue behind a slow client's backlog.
            self.log.stop_holding_back()
            patience = self._limits.interrupt_patience
            if await self.conversation.interrupt(patience):
                # The turn's result closes the input; a CLI that acknowledged but
                # never ends its turn is not waited on for ever.
                with trio.move_on_after(patience):
                    await self._stdin_closed.wait()
                    return
            log.warning("run %s: the CLI did not stop its turn; tearing down", self.process_id)
            self.interrupt_forced = True
            self.cancel_scope.cancel()

    async def cancel_unless_read(self, patience: float) -> None:
        """Cancel the run if no reader takes its stream within ``patience`` seconds.

        A backstop for a client that hung up before Quart started the response
        body (the app also cancels when the unstarted body is dropped).
        Cancellation: cancelled, it simply stops watching.
        """
        with trio.move_on_after(patience):
            await self._reader_attached.wait()
            return
        log.warning("run %s: nobody read its stream; cancelling", self.process_id)
        self.stream_closed()

    def describe(self) -> dict[str, Any]:
        """Return the run as ``GET /processes`` lists it."""

        def when(moment: datetime | None) -> str | None:
            return None if moment is None else moment.isoformat().replace("+00:00", "Z")

        return {
            "process_id": self.process_id,
            "pid": self.pid,
            "cwd": self.request.cwd,
            "model": self.request.model,
            "session_id": self.session_id,
            "started_at": when(self.started_at),
            "status": str(self.status),
            "queue_position": self._slot.position,
            "detached": self.detached,
            "finished_at": when(self.finished_at),
            "last_event_id": self.log.last_id,
            "pending_approvals": len(self.conversation.pending()),
        }

    async def supervise(self) -> None:
        """Run the CLI to its end, tear everything down, and settle the run.

        Whatever happens, the log ends with ``done`` and the run is deregistered.
        An unexpected error ends this run as ``failed`` and never reaches the
        registry.

        Cancellation: cancelling :attr:`cancel_scope` (or the registry's nursery)
        ends the run as ``cancelled``, queued or not; the process tree is torn down
        in a shielded scope bounded by the kill grace before this returns or
        re-raises. The plan's timeout ends it the same way, as ``timeout``.
        """
        started = trio.current_time()
        try:
            with self.cancel_scope:
                try:
                    await self._wait_for_slot()
                    workdir = Path(tempfile.mkdtemp(prefix="cc2api-run-"))
                    try:
                        with trio.move_on_after(self._plan.timeout or math.inf) as timer:
                            await self._run_cli(workdir)
                        self._timed_out = timer.cancelled_caught
                    finally:
                        # A confined run's home and temporary files are in it: there may be
                        # many, so off the event loop, and within a bound.
                        with trio.CancelScope(shield=True), trio.move_on_after(REMOVE_SECONDS):
                            await trio.to_thread.run_sync(
                                remove_folder, workdir, abandon_on_cancel=True
                            )
                except* Exception:
                    log.exception("run %s: internal error", self.process_id)
                    self.error = {
                        "code": "internal_error",
                        "message": "the gateway failed while running the CLI; see its log",
                    }
        finally:
            # Cancelled by cancel() (even when it came during a natural teardown, too
            # late to interrupt anything) or from outside (the registry's nursery).
            cancelled = (
                self.cancel_scope.cancelled_caught
                or self.status is Status.CANCELLING
                or trio.current_effective_deadline() == float("-inf")
            )
            # No awaits from here on: nothing can be interrupted.
            self._slot.release()
            self.conversation.close_input()
            self._settle(cancelled)
            self.finished_at = datetime.now(UTC)
            self._on_finish(self)
            self._finish_log(round((trio.current_time() - started) * 1000))
            self.finished.set()

    async def _wait_for_slot(self) -> None:
        if not self._slot.granted:
            slots = self._slot.slots
            queued = {
                "position": self._slot.position,
                "running": slots.running,
                "max_concurrent_runs": slots.limit,
            }
            self._emit("queued", queued)
            await self._slot.wait()
        if self.status is Status.QUEUED:
            self.status = Status.RUNNING

    # -- the CLI process --------------------------------------------------

    async def _run_cli(self, workdir: Path) -> None:
        files = RunFiles(workdir)
        files.write(self.request, self._plan)
        argv = build_argv(self._claude, self.request, self._plan, files)
        env = {**self._environ, **self._plan.extra_env}
        folders = RunFolders(workdir) if self._plan.confined else None
        if folders is not None:
            try:
                await trio.to_thread.run_sync(
                    prepare,
                    folders,
                    self._confine.real_config,
                    env,
                    self.request.session_id,
                    self._plan.cwd,
                )
            except (OSError, CopyTooLarge) as error:
                self.error = {
                    "code": "confinement_failed",
                    "message": f"could not prepare the run's private folders: {error}",
                }
                return
            argv = [
                *launcher_argv(self._claude, self._plan, folders, self._confine.read_paths),
                *argv,
            ]
            env.update(folders.environment())
        key, value = self._processes.env_entry
        env[key] = value
        try:
            with spawning() as cli_pids:
                proc = await trio.lowlevel.open_process(
                    argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    cwd=self._plan.cwd,
                    env=env,
                    start_new_session=True,
                )
                cli_pids.add(proc.pid)
        except OSError as error:
            self.error = {
                "code": "spawn_failed",
                "message": f"could not start the Claude Code CLI ({self._claude}) "
                f"in {self.request.cwd}: {error.strerror or error}",
            }
            return
        self.pid = proc.pid
        self._processes.started(proc.pid)
        if isinstance(proc.stdout, trio.lowlevel.FdStream):
            _enlarge_pipe(proc.stdout.fileno())
        log.info("run %s started pid %d: %s", self.process_id, proc.pid, log_safe_argv(argv))
        try:
            async with trio.open_nursery() as nursery:
                assert proc.stdin is not None  # noqa: S101 (all three are PIPE)
                assert proc.stdout is not None  # noqa: S101
                assert proc.stderr is not None  # noqa: S101
                self._cli_nursery = nursery
                nursery.start_soon(self._converse)
                nursery.start_soon(self._pump_stdout, proc.stdout, nursery.cancel_scope)
                nursery.start_soon(self._drain_stderr, proc.stderr)
                nursery.start_soon(self._feed_stdin, proc.stdin)
                nursery.start_soon(self._watch_exit, proc, nursery.cancel_scope)
        finally:
            self._cli_nursery = None
            with trio.CancelScope(shield=True):
                await self._teardown(proc)
                if folders is not None:
                    # Abandoned after the bound: it then finishes on its own, or not at all.
                    with trio.move_on_after(BRING_BACK_SECONDS):
                        await trio.to_thread.run_sync(
                            self._bring_back, folders, abandon_on_cancel=True
                        )

    def _bring_back(self, folders: RunFolders) -> None:
        # In a worker thread, once every process of the run is gone.
        try:
            left_out = bring_back(
                folders,
                self._confine.real_config,
                self._plan.cwd,
                self._sessions,
                self.request.session_id,
            )
        except Exception:
            log.exception("run %s: its session could not be copied back", self.process_id)
            return
        for session in left_out:
            log.warning(
                "run %s: session %s exists already; the run's copy was not brought back",
                self.process_id,
                session,
            )

    async def _converse(self) -> None:
        with self._conversation_scope:
            await self.conversation.serve()

    async def _teardown(self, proc: trio.Process) -> None:
        # Each step runs whatever the one before did: a failure must not leave the
        # CLI unreaped or its pipes open.
        try:
            if proc.returncode is not None:
                self._processes.root_pid = None  # reaped: its pid may already be another's
            await self._processes.terminate(self._limits.kill_grace)
        finally:
            try:
                with trio.move_on_after(self._limits.kill_grace + 1):
                    await proc.wait()
                self.exit_code = proc.returncode
            finally:
                release(proc.pid)
                try:
                    self._reap()
                finally:
                    for stream in (proc.stdin, proc.stdout, proc.stderr):
                        if stream is not None:
                            await stream.aclose()

    async def _watch_exit(self, proc: trio.Process, scope: trio.CancelScope) -> None:
        async with trio.open_nursery() as nursery:

            async def hung_after_input() -> None:
                await self._stdin_closed.wait()
                await trio.sleep(EXIT_AFTER_INPUT_SECONDS)
                self.error = {
                    "code": "cli_did_not_exit",
                    "message": f"the Claude Code CLI did not exit within "
                    f"{EXIT_AFTER_INPUT_SECONDS:g} s of its input ending",
                }
                scope.cancel()

            nursery.start_soon(hung_after_input)
            await proc.wait()
            nursery.cancel_scope.cancel()
        # Nobody is left to talk to: what is still in the pipe is only passed on.
        self.conversation.close_input()
        self._cli_exited.set()
        self._conversation_scope.cancel()
        self._interrupt_scope.cancel()
        for read in list(self._pending_reads):
            read.cancel()  # switch the readers to draining with a deadline
        # What the CLI left running (a tool's background job, a stuck MCP server)
        # goes now: it may hold the pipes open, and it is not to outlive the run.
        self._processes.root_pid = None  # reaped by wait(): its pid may be another's
        await self._processes.terminate(self._limits.kill_grace)

    async def _receive(self, stream: trio.abc.ReceiveStream) -> bytes:
        """Return the next chunk, or b"" at the end.

        The end is EOF or, once the CLI has exited, DRAIN_AFTER_EXIT_SECONDS spent
        waiting on this stream in all: data already in the pipe comes at once, and
        time spent delivering it to a slow reader does not count.
        """
        while not self._cli_exited.is_set():
            with trio.CancelScope() as read:
                self._pending_reads.add(read)
                try:
                    return bytes(await stream.receive_some(READ_CHUNK))
                finally:
                    self._pending_reads.discard(read)
        budget = self._drain_budget.get(id(stream), DRAIN_AFTER_EXIT_SECONDS)
        started = trio.current_time()
        chunk = b""
        with trio.move_on_after(budget):
            chunk = bytes(await stream.receive_some(READ_CHUNK))
        self._drain_budget[id(stream)] = budget - (trio.current_time() - started)
        return chunk

    async def _pump_stdout(self, stdout: trio.abc.ReceiveStream, scope: trio.CancelScope) -> None:
        framer = LineFramer(self._limits.max_line_bytes)
        try:
            while chunk := await self._receive(stdout):
                try:
                    lines = framer.feed(chunk)
                except LineTooLong as error:
                    await self._emit_lines(error.before)
                    self.error = {"code": "line_too_long", "message": str(error)}
                    scope.cancel()
                    return
                await self._emit_lines(lines, chunk)
            await self._emit_lines(framer.finish())
        except DocumentTooLarge:
            self.lines = []  # the answer says why; it need not carry the 64 MiB too
            self.error = {
                "code": "document_too_large",
                "message": f"the run printed more than {MAX_DOCUMENT_BYTES} bytes, the most "
                "a stream: false answer holds; stream it instead",
            }
            scope.cancel()
        finally:
            self.conversation.close_input()  # no more output: nothing left to say

    async def _emit_lines(self, lines: list[bytes], chunk: bytes | None = None) -> None:
        """Log the CLI's complete lines; ``chunk`` is the read that completed them.

        Every line but the first lies wholly in ``chunk``, so a scan of the chunk
        (in C) answers for all of them whether a CR or non-ASCII byte is there.
        Control lines are the gateway's business, not the client's: they are
        taken out, and the events they cause come after the lines before them.
        """
        if not lines:
            return
        ascii_only = chunk is not None and chunk.isascii() and lines[0].isascii()
        plain = chunk is not None and b"\r" not in chunk and b"\r" not in lines[0]
        suspects = {id(line) for line in _suspects(lines)}
        if not suspects:
            await self._log_lines(lines, ascii_only=ascii_only, plain=plain)
            return
        start = 0
        for index, line in enumerate(lines):
            head = _parse_head_line(line) if id(line) in suspects else None
            if head is None:
                continue
            kind = head.get("type")
            if kind == "result" or (kind == "system" and head.get("subtype") == "init"):
                session = head.get("session_id")
                if isinstance(session, str) and session != self.session_id:
                    self.session_id = session
                    self._sessions.append(session)
                    self._on_session(self, session)
            if kind == "result":
                self.result = head
            if isinstance(kind, str) and kind.startswith("control_"):
                await self._log_lines(lines[start:index], ascii_only=ascii_only, plain=plain)
                start = index + 1
            self.conversation.on_line(head)
        await self._log_lines(lines[start:], ascii_only=ascii_only, plain=plain)

    async def _log_lines(self, lines: list[bytes], *, ascii_only: bool, plain: bool) -> None:
        if not lines:
            return
        if not ascii_only:
            lines = valid_utf8(lines)
        if self.lines is not None:
            self._lines_bytes += sum(map(len, lines))
            if self._lines_bytes > MAX_DOCUMENT_BYTES:
                raise DocumentTooLarge
            self.lines.extend(lines)
        await self.log.append(
            lambda first_id: (frame_messages(first_id, lines, plain=plain), len(lines))
        )

    async def _drain_stderr(self, stderr: trio.abc.ReceiveStream) -> None:
        # Read all the time: a CLI blocked on a full stderr pipe would stall the run.
        tail = self._stderr_tail
        while chunk := await self._receive(stderr):
            tail += chunk
            if len(tail) > 2 * STDERR_TAIL_BYTES:
                del tail[:-STDERR_TAIL_BYTES]

    async def _feed_stdin(self, stdin: trio.abc.SendStream) -> None:
        # stream-json input: the prompt never touches argv, and stdin stays open
        # while the conversation goes on (follow-ups, interrupts, approvals).
        try:
            async for line in self.conversation.outgoing:
                await stdin.send_all(line)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            with trio.CancelScope(shield=True):
                await stdin.aclose()
            self._stdin_closed.set()

    # -- events -----------------------------------------------------------

    def _emit(self, event: str, data: dict[str, Any]) -> None:
        """Log a gateway event at once (small, so readers' pace does not matter)."""
        self.log.append_nowait(lambda first: (frame_json(first, event, data), 1))

    def _reader_stalled(self, reader: Reader) -> None:
        # A client that vanished without closing its connection (a dead network
        # path, a frozen process) stops taking data but never hangs up.
        log.warning(
            "run %s: a client took no data for %g s; treating it as gone",
            self.process_id,
            self._limits.stall_timeout,
        )
        if reader.owner:
            self.stream_closed()

    def _settle(self, cancelled: bool) -> None:
        tail = bytes(self._stderr_tail[-STDERR_TAIL_BYTES:])
        # An interrupted CLI exits 1 (or is killed by us when forced); another status
        # means it failed on its own.
        interrupted = self.conversation.interrupt_requested and (
            self.interrupt_forced or (not cancelled and self.exit_code in (0, 1))
        )
        if interrupted and self.error is None and not self._timed_out:
            # The CLI ends an interrupted turn with an error result and exit status 1.
            self.status = Status.INTERRUPTED
            return
        if cancelled:
            self.status = Status.CANCELLED
            self.error = None
            return
        if self._timed_out:
            self.error = {
                "code": "timeout",
                "message": f"the run took longer than its timeout of {self._plan.timeout:g} s",
            }
        if self.error is None and self.exit_code not in (0, None):
            if self._plan.confined and self.exit_code == SETUP_FAILED and LAUNCHER_SAID in tail:
                self.error = {
                    "code": "confinement_failed",
                    "message": "the run could not be confined (see stderr_tail)",
                }
            elif ROOT_REFUSAL in tail:
                self.error = {
                    "code": "root_full_access",
                    "message": "the Claude Code CLI refuses full access "
                    "(--dangerously-skip-permissions) when run as root: run cc2api as "
                    "a non-root user, restrict the run with tools/allowed_tools, or set "
                    "IS_SANDBOX=1 in the server's environment inside a sandbox",
                }
            else:
                self.error = {
                    "code": "cli_failed",
                    "message": f"the Claude Code CLI exited with status {self.exit_code}",
                }
        if self.error is None:
            self.status = Status.COMPLETED
            return
        self.status = Status.TIMEOUT if self._timed_out else Status.FAILED
        self.error["exit_code"] = self.exit_code
        self.error["stderr_tail"] = tail.decode("utf-8", "replace")

    def _finish_log(self, duration_ms: int) -> None:
        # Added whatever the readers' pace: a reader that stalls can neither lose
        # them nor hold up the teardown.
        done = {
            "process_id": self.process_id,
            "status": str(self.status),
            "exit_code": self.exit_code,
            "session_id": self.session_id,
            "duration_ms": duration_ms,
        }
        if self.error is not None:
            self._emit("error", self.error)
        self._emit("done", done)
        self.log.close()


def remove_folder(folder: Path) -> None:
    """Remove a run's folder, also where its tools took their own permissions away.

    A run may chmod what it made (Landlock does not cover metadata): the folder would
    otherwise stay behind, with whatever a confined run's private folder held.
    """

    def retry(function: Callable[..., object], path: str, _: object) -> None:
        # Never through a link: chmod would change the mode of what it points to.
        with contextlib.suppress(OSError):
            for place in (os.path.dirname(path), path):
                if os.path.isdir(place) and not os.path.islink(place):
                    os.chmod(place, 0o700)
            function(path)

    shutil.rmtree(folder, onerror=retry)
    if os.path.lexists(folder):
        log.warning("could not remove the run folder %s", folder)


def weakly(method: Callable[P, None]) -> Callable[P, None]:
    """Return a function that calls ``method`` while its object lives, and else does nothing."""
    ref = weakref.WeakMethod(method)

    def call(*args: P.args, **kwargs: P.kwargs) -> None:
        target = ref()
        if target is not None:
            target(*args, **kwargs)

    return call


def _enlarge_pipe(fd: int) -> None:
    # A 64 KiB pipe means a read, a framing and a send every 64 KiB; the fixed cost
    # of each halves throughput. Refused (a lower pipe-max-size), the default stays.
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, READ_CHUNK)


def valid_utf8(lines: list[bytes]) -> list[bytes]:
    """Return ``lines`` with any invalid UTF-8 replaced by U+FFFD.

    SSE is UTF-8 by definition: one bad byte from the CLI must not break a
    client's decoder for the rest of the stream. Checking the batch at once keeps
    the common, valid case at C speed.
    """
    try:
        b"".join(lines).decode()
    except UnicodeDecodeError:
        return [line.decode("utf-8", "replace").encode() for line in lines]
    return lines


def log_safe_argv(argv: list[str]) -> str:
    """Return argv for logs: flags only, values cut, so nothing a caller sent is logged."""
    return " ".join(arg.split("=", 1)[0] for arg in argv[1:])
