"""A run's lifecycle, from the queue to the ``done`` event; see :mod:`cc2api.runner`."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import trio

from .cli_tasks import CliTasks
from .conversation import Conversation
from .eventlog import EventLog
from .launch import remove_folder
from .logs import run_extra
from .outcome import Happened, decide
from .policy import Plan
from .record import RunState
from .slots import Slot
from .sse import frame_json
from .wire import DoneEvent, ErrorCode, QueuedEvent, RunFailure, Status, as_final

log = logging.getLogger(__name__)

# A run's folder is removed in this long; past it, the removal goes on in its thread.
REMOVE_SECONDS = 30.0
Emit = Callable[[str, dict[str, Any]], None]


def emitter(events: EventLog) -> Emit:
    """Return a function that logs a gateway event at once (small: readers' pace is moot)."""

    def emit(event: str, data: dict[str, Any]) -> None:
        events.append_nowait(lambda first: (frame_json(first, event, data), 1))

    return emit


class Supervisor:
    """Takes a run through its states and settles it; it never refers back to the run."""

    def __init__(
        self,
        state: RunState,
        *,
        plan: Plan,
        slot: Slot,
        events: EventLog,
        emit: Emit,
        conversation: Conversation,
        cli: CliTasks,
        cancel_scope: trio.CancelScope,
        on_session: Callable[[str], None],
        on_start: Callable[[], None],
        on_finish: Callable[[], None],
    ) -> None:
        self.state = state
        self._plan = plan
        self._slot = slot
        self._events = events
        self._emit = emit
        self._conversation = conversation
        self._cli = cli
        self._cancel_scope = cancel_scope
        self._on_session = on_session
        self._on_start = on_start
        self._on_finish = on_finish
        self._timed_out = False
        self._error: RunFailure | None = None  # the gateway's own failure
        self.finished = trio.Event()

    async def supervise(self) -> None:
        """Run the CLI to its end, tear everything down, and settle the run.

        Whatever happens, the log ends with ``done`` and ``on_finish`` is called.
        An unexpected error ends the run as ``failed`` and never reaches the caller.

        Cancellation: cancelling the run's cancel scope (or the caller's) ends the
        run as ``cancelled``, queued or not; the process tree is torn down in a
        shielded scope bounded by the kill grace before this returns or re-raises.
        The plan's timeout ends it the same way, as ``timeout``.
        """
        started = trio.current_time()
        try:
            with self._cancel_scope:
                try:
                    await self._wait_for_slot()
                    await self._run_in_folder()
                except* Exception:
                    log.exception(
                        "run %s: internal error",
                        self.state.run_id,
                        extra=run_extra(self.state.run_id),
                    )
                    self._error = RunFailure(
                        ErrorCode.INTERNAL_ERROR,
                        "the gateway failed while running the CLI; see its log",
                    )
        finally:
            # Cancelled by cancel() (even when it came during a natural teardown, too
            # late to interrupt anything) or from outside (the registry's nursery).
            cancelled = (
                self._cancel_scope.cancelled_caught
                or self.state.status is Status.CANCELLING
                or trio.current_effective_deadline() == float("-inf")
            )
            # No awaits from here on: nothing can be interrupted. Whatever fails, the
            # log is closed and ``finished`` set: readers, DELETE and drain wait on them.
            try:
                self._slot.release()
                self._conversation.close_input()
                self._settle(cancelled)
                self.state.finished_at = datetime.now(UTC)
                try:
                    self._on_finish()
                except Exception:
                    log.exception(
                        "run %s: recording its end failed",
                        self.state.run_id,
                        extra=run_extra(self.state.run_id),
                    )
                self._finish_log(round((trio.current_time() - started) * 1000))
            finally:
                self._events.close()
                self.finished.set()

    async def _wait_for_slot(self) -> None:
        if not self._slot.granted:
            slots = self._slot.slots
            queued = QueuedEvent(
                position=self._slot.position, running=slots.running, max_concurrent_runs=slots.limit
            )
            self._emit(queued.event, queued.wire())
            await self._slot.wait()
        if self.state.status is Status.QUEUED:
            self.state.status = Status.RUNNING

    async def _run_in_folder(self) -> None:
        # The run's folder is made only now (a queued run has nothing on disk), by the
        # CLI's tasks, or it comes with a pooled CLI.
        self.state.spawned_at = datetime.now(UTC)
        self._on_start()
        try:
            with trio.move_on_after(self._plan.timeout or math.inf) as timer:
                await self._cli.run()
            self._timed_out = timer.cancelled_caught
        finally:
            # A confined run's home and temporary files are in it: there may be many,
            # so off the event loop, and within a bound.
            workdir = self._cli.workdir
            with trio.CancelScope(shield=True), trio.move_on_after(REMOVE_SECONDS):
                await trio.to_thread.run_sync(remove_folder, workdir, abandon_on_cancel=True)

    def on_line(self, line: dict[str, Any]) -> None:
        """Learn from a line the gateway acts on: the session, the result, the conversation."""
        kind = line.get("type")
        state = self.state
        if kind == "result" or (kind == "system" and line.get("subtype") == "init"):
            session = line.get("session_id")
            if isinstance(session, str) and session != state.session_id:
                state.session_id = session
                state.sessions.append(session)
                self._on_session(session)
        if kind == "result":
            state.result = line
        self._conversation.on_line(line)

    def _settle(self, cancelled: bool) -> None:
        cli = self._cli
        outcome = decide(
            Happened(
                cancelled=cancelled,
                timed_out=self._timed_out,
                timeout=self._plan.timeout,
                interrupt_requested=self._conversation.interrupt_requested,
                interrupt_forced=cli.interrupt_forced,
                error=self._error or cli.error,
                exit_code=cli.exit_code,
                stderr_tail=bytes(cli.stderr_tail),
                confined=self._plan.confined,
            )
        )
        self.state.status, self.state.error = outcome.status, outcome.error
        self.state.exit_code = cli.exit_code

    def _finish_log(self, duration_ms: int) -> None:
        # Added whatever the readers' pace: a reader that stalls can neither lose
        # them nor hold up the teardown.
        state = self.state
        done = DoneEvent(
            process_id=state.run_id,
            status=as_final(state.status),
            exit_code=state.exit_code,
            session_id=state.session_id,
            duration_ms=duration_ms,
        )
        if state.error is not None:
            self._emit(state.error.event, state.error.wire())
        self._emit(done.event, done.wire())
