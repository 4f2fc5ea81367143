"""One run: a Claude Code CLI process, supervised from spawn to the last reaped descendant."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import trio

from .cli_args import PromptFiles, build_argv, user_message
from .framing import LineFramer, LineTooLong
from .models import ChatRequest
from .proctree import RunProcesses
from .sse import frame_json, frame_messages

log = logging.getLogger(__name__)

READ_CHUNK = 256 * 1024
STDERR_TAIL_BYTES = 8 * 1024
# One batch of framed events may wait in the channel while another is being sent:
# a slow reader then blocks the CLI's stdout instead of growing our memory.
STREAM_BUFFER = 1
# After the CLI exits, a descendant that inherited its stdout could keep the pipe
# open for ever; give what is already in the pipe this long to arrive.
DRAIN_AFTER_EXIT_SECONDS = 1.0
FINAL_EVENTS_SECONDS = 5.0
ROOT_REFUSAL = b"cannot be used with root/sudo privileges"
_INIT_PREFIX = b'{"type":"system","subtype":"init"'
_RESULT_PREFIX = b'{"type":"result"'


class Status(StrEnum):
    """Where a run is; the last three are final and appear in the ``done`` event."""

    RUNNING = "running"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


def _session_of(line: bytes) -> str | None:
    try:
        value = json.loads(line).get("session_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


class Run:
    """One ``POST /chat``: the CLI process, its events and its teardown.

    The supervisor (:meth:`supervise`) runs in the registry's nursery inside
    :attr:`cancel_scope`; the HTTP layer only reads :attr:`events`.
    """

    def __init__(
        self,
        *,
        process_id: str,
        request: ChatRequest,
        claude: Path,
        environ: Mapping[str, str],
        kill_grace: float,
        max_line_bytes: int,
        on_session: Callable[[Run, str], None],
        on_finish: Callable[[Run], None],
    ) -> None:
        self.process_id = process_id
        self.request = request
        self.session_id = request.session_id
        self.started_at = datetime.now(UTC)
        self.pid: int | None = None
        self.status = Status.RUNNING
        self.exit_code: int | None = None
        self.cancel_scope = trio.CancelScope()
        self.finished = trio.Event()
        self._claude = claude
        self._environ = environ
        self._kill_grace = kill_grace
        self._max_line_bytes = max_line_bytes
        self._on_session = on_session
        self._on_finish = on_finish
        self._processes = RunProcesses(run_id=process_id)
        self._error: dict[str, Any] | None = None
        self._stderr_tail = bytearray()
        self._input_done = trio.Event()
        self._reader_attached = trio.Event()
        self._stdout_eof = trio.Event()
        self._seq = 0
        self._out, self.events = trio.open_memory_channel[bytes](STREAM_BUFFER)
        self._out.send_nowait(self._frame("process", {"process_id": process_id}))

    # -- public -----------------------------------------------------------

    def cancel(self) -> None:
        """Ask the run to stop; synchronous and idempotent. ``finished`` tells when it has."""
        if self.status is Status.RUNNING:  # a settled run keeps its final status
            self.status = Status.CANCELLING
            self.cancel_scope.cancel()

    def attach_reader(self) -> trio.MemoryReceiveChannel[bytes]:
        """Return the event stream, marking that a reader took it."""
        self._reader_attached.set()
        return self.events

    async def cancel_unless_read(self, patience: float) -> None:
        """Cancel the run if no reader takes its stream within ``patience`` seconds.

        A client can hang up after the handler returned but before the response body
        is iterated; the stream generator then never runs, so nothing else would end
        the run. Cancellation: cancelled, it simply stops watching.
        """
        with trio.move_on_after(patience):
            await self._reader_attached.wait()
            return
        if not self._reader_attached.is_set():
            log.warning("run %s: nobody read its stream; cancelling", self.process_id)
            self.cancel()

    def describe(self) -> dict[str, Any]:
        """Return the run as ``GET /processes`` lists it."""
        return {
            "process_id": self.process_id,
            "pid": self.pid,
            "cwd": self.request.cwd,
            "model": self.request.model,
            "session_id": self.session_id,
            "started_at": self.started_at.isoformat().replace("+00:00", "Z"),
            "status": str(self.status),
        }

    async def supervise(self) -> None:
        """Run the CLI to its end and always finish the stream with ``done``.

        Cancellation: cancelling :attr:`cancel_scope` (or the registry's nursery)
        ends the run; the process tree is then torn down in a shielded scope
        bounded by the kill grace, the ``error``/``done`` events are sent (bounded
        too), and the run is deregistered before this returns or re-raises.
        """
        started = trio.current_time()
        workdir = Path(tempfile.mkdtemp(prefix="cc2api-run-"))
        outer_cancel = False
        try:
            with self.cancel_scope:
                await self._run_cli(workdir)
        except trio.Cancelled:
            outer_cancel = True
            raise
        finally:
            with trio.CancelScope(shield=True):
                shutil.rmtree(workdir, ignore_errors=True)
                cancelled = outer_cancel or self.cancel_scope.cancelled_caught
                self._settle(cancelled)
                self._on_finish(self)
                duration_ms = round((trio.current_time() - started) * 1000)
                await self._final_events(duration_ms)
                self.finished.set()

    # -- the CLI process --------------------------------------------------

    async def _run_cli(self, workdir: Path) -> None:
        files = PromptFiles(workdir / "system_prompt.txt", workdir / "append_system_prompt.txt")
        if self.request.system_prompt is not None:
            files.system_prompt.write_text(self.request.system_prompt, encoding="utf-8")
        if self.request.append_system_prompt is not None:
            files.append_system_prompt.write_text(
                self.request.append_system_prompt, encoding="utf-8"
            )
        argv = build_argv(self._claude, self.request, files)
        env = dict(self._environ)
        env.pop("CLAUDECODE", None)  # set inside Claude Code; the CLI would think it is nested
        key, value = self._processes.env_entry
        env[key] = value
        try:
            proc = await trio.lowlevel.open_process(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self.request.cwd,
                env=env,
                start_new_session=True,
            )
        except OSError as error:
            self._error = {
                "code": "spawn_failed",
                "message": f"could not start the Claude Code CLI ({self._claude}): "
                f"{error.strerror or error}",
            }
            return
        self.pid = self._processes.root_pid = proc.pid
        log.info("run %s started pid %d: %s", self.process_id, proc.pid, log_safe_argv(argv))
        try:
            async with trio.open_nursery() as nursery:
                assert proc.stdin is not None  # noqa: S101 (all three are PIPE)
                assert proc.stdout is not None  # noqa: S101
                assert proc.stderr is not None  # noqa: S101
                nursery.start_soon(self._pump_stdout, proc.stdout, nursery.cancel_scope)
                nursery.start_soon(self._drain_stderr, proc.stderr)
                nursery.start_soon(self._feed_stdin, proc.stdin)
                nursery.start_soon(self._watch_exit, proc, nursery.cancel_scope)
        finally:
            with trio.CancelScope(shield=True):
                left = await self._processes.terminate(self._kill_grace)
                if left:
                    log.error("run %s: could not end pids %s", self.process_id, sorted(left))
                with trio.move_on_after(self._kill_grace + 1):
                    await proc.wait()
                self.exit_code = proc.returncode
                for stream in (proc.stdin, proc.stdout, proc.stderr):
                    if stream is not None:
                        await stream.aclose()

    async def _watch_exit(self, proc: trio.Process, scope: trio.CancelScope) -> None:
        await proc.wait()
        with trio.move_on_after(DRAIN_AFTER_EXIT_SECONDS):
            await self._stdout_eof.wait()
        # Stderr may still be held open by a descendant; what arrived is enough.
        scope.cancel()

    async def _pump_stdout(self, stdout: trio.abc.ReceiveStream, scope: trio.CancelScope) -> None:
        framer = LineFramer(self._max_line_bytes)
        try:
            while chunk := await stdout.receive_some(READ_CHUNK):
                try:
                    lines = framer.feed(bytes(chunk))
                except LineTooLong as error:
                    await self._emit_lines(error.before)
                    self._error = {"code": "line_too_long", "message": str(error)}
                    scope.cancel()
                    return
                if lines:
                    await self._emit_lines(lines)
            await self._emit_lines(framer.finish())
        finally:
            self._stdout_eof.set()
            self._input_done.set()

    async def _emit_lines(self, lines: list[bytes]) -> None:
        if not lines:
            return
        for line in lines:
            if line.startswith((_INIT_PREFIX, _RESULT_PREFIX)):
                session = _session_of(line)
                if session and session != self.session_id:
                    self.session_id = session
                    self._on_session(self, session)
                if line.startswith(_RESULT_PREFIX):
                    self._input_done.set()
        first = self._seq + 1
        self._seq += len(lines)
        await self._send(frame_messages(first, lines))

    async def _drain_stderr(self, stderr: trio.abc.ReceiveStream) -> None:
        # Read all the time: a CLI blocked on a full stderr pipe would stall the run.
        tail = self._stderr_tail
        while chunk := await stderr.receive_some(READ_CHUNK):
            tail += chunk
            if len(tail) > 2 * STDERR_TAIL_BYTES:
                del tail[:-STDERR_TAIL_BYTES]

    async def _feed_stdin(self, stdin: trio.abc.SendStream) -> None:
        # stream-json input: the prompt never touches argv, and stdin stays open
        # until the turn's result so the control protocol can be spoken later.
        try:
            await stdin.send_all(user_message(self.request.prompt))
            await self._input_done.wait()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            with trio.CancelScope(shield=True):
                await stdin.aclose()

    # -- events -----------------------------------------------------------

    def _frame(self, event: str, data: dict[str, Any]) -> bytes:
        self._seq += 1
        return frame_json(self._seq, event, data)

    async def _send(self, frames: bytes) -> None:
        try:
            await self._out.send(frames)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # The reader is gone: nobody is left to stream to, so stop the run.
            self.cancel()
            await trio.lowlevel.checkpoint()  # raises Cancelled: our own scope is cancelled

    def _settle(self, cancelled: bool) -> None:
        tail = bytes(self._stderr_tail[-STDERR_TAIL_BYTES:])
        if cancelled:
            self.status = Status.CANCELLED
            self._error = None
            return
        if self._error is None and self.exit_code not in (0, None):
            if ROOT_REFUSAL in tail:
                self._error = {
                    "code": "root_full_access",
                    "message": "the Claude Code CLI refuses full access "
                    "(--dangerously-skip-permissions) when run as root: run cc2api as "
                    "a non-root user, restrict the run with tools/allowed_tools, or set "
                    "IS_SANDBOX=1 in the server's environment inside a sandbox",
                }
            else:
                self._error = {
                    "code": "cli_failed",
                    "message": f"the Claude Code CLI exited with status {self.exit_code}",
                }
        if self._error is not None:
            self.status = Status.FAILED
            self._error["exit_code"] = self.exit_code
            self._error["stderr_tail"] = tail.decode("utf-8", "replace")
        else:
            self.status = Status.COMPLETED

    async def _final_events(self, duration_ms: int) -> None:
        frames = b""
        if self._error is not None:
            frames += self._frame("error", self._error)
        frames += self._frame(
            "done",
            {
                "process_id": self.process_id,
                "status": str(self.status),
                "exit_code": self.exit_code,
                "session_id": self.session_id,
                "duration_ms": duration_ms,
            },
        )
        with trio.move_on_after(FINAL_EVENTS_SECONDS):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self._out.send(frames)
        self._out.close()


def log_safe_argv(argv: list[str]) -> str:
    """Return argv for logs: flags only, values cut, so nothing a caller sent is logged."""
    return " ".join(arg.split("=", 1)[0] for arg in argv[1:])
