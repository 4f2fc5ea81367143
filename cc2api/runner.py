"""One run: a Claude Code CLI process, supervised from spawn to the last reaped descendant.

The run is split by concern, and this module holds only its facade, :class:`Run`:

- :mod:`cc2api.launch`: the argv, environment and folders, built once per run;
- :mod:`cc2api.cli_process`: the process, its pipes, and its tree's teardown, with
  the kill policy as an argument (as ``trio.run_process`` takes ``deliver_cancel``);
- :mod:`cc2api.cli_tasks`: the five tasks of a running CLI;
- :mod:`cc2api.routing`: the CLI's lines to events, and the ``stream: false`` document;
- :mod:`cc2api.outcome`: a pure function from what happened to status and error;
- :mod:`cc2api.supervisor`: the lifecycle, from the queue to the ``done`` event;
- :mod:`cc2api.record`: the state all of them write and everyone reads.

States. A run is ``queued`` until a slot is free, then ``running``; ``cancel()``
makes it ``cancelling``. It ends in exactly one final status, decided once every
process is gone: ``completed``, ``failed``, ``cancelled``, ``timeout`` or
``interrupted``.

Teardown order, whatever ended the run (exit, cancel, timeout, a fault):
1. the CLI exits, or the CLI's nursery is cancelled;
2. every process of the run is ended (SIGTERM, then SIGKILL after the kill grace),
   the CLI reaped and its pipes closed, shielded;
3. a confined run's sessions are copied back, and its folder removed, each bounded;
4. the slot is freed, the outcome decided, the ``error`` and ``done`` events logged
   and the log closed, with no await in between, so nothing can interrupt it;
5. the registry forgets the run (or retains it, detached) and ``finished`` is set.

Why batches. stdout is read a megabyte at a time, and each read's complete lines
become one batch of events: framing, logging and waking readers cost the same for a
batch as for a line, so a fast CLI costs the gateway little per line.

No part refers back to the run except weakly: a finished run is freed by its
reference count alone, at once, with every event and message it holds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from .approval_rules import ApprovalRules
from .callbacks import weakly
from .cli_tasks import CliTasks
from .confinement import ConfineSetup
from .conversation import Approval, Behavior, Conversation, HeldBytes
from .errors import RunEnded
from .eventlog import EventLog, Keep, Reader, Room
from .launch import Launch
from .limits import RunLimits
from .logs import run_extra
from .models import ChatRequest
from .policy import Plan
from .pool import Pool
from .pool_profile import Profile
from .principal import ADMIN, Principal
from .record import RunState
from .routing import Document, OutputRouter
from .run_usage import AssistantUsage, RunUsage, usage_of
from .slots import Slot
from .supervisor import Emit, Supervisor, emitter
from .wire import Approval as WireApproval
from .wire import Process, ProcessEvent, Status

log = logging.getLogger(__name__)

__all__ = ["Run"]


class Run:
    """One ``POST /chat``, as the HTTP side and the registry see it: a small facade.

    Status and description, cancel, interrupt, follow-up, approvals, replay and the
    ``stream: false`` document; :meth:`supervise` is the run's own task.
    """

    def __init__(
        self,
        *,
        request: ChatRequest,
        plan: Plan,
        launch: Launch,
        limits: RunLimits,
        slot: Slot,
        held_total: HeldBytes,
        confine: ConfineSetup,
        on_session: Callable[[Run, str], None],
        on_start: Callable[[Run], None],
        on_finish: Callable[[Run], None],
        reap: Callable[[], None],
        keep_events: Keep | None = None,
        store_room: Room | None = None,
        owner: Principal = ADMIN,
        on_teardown: Callable[[float, int], None] | None = None,
        pool: Pool | None = None,
        profile: Profile | None = None,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.run_id = launch.run_id
        self.request = request
        self.owner = owner  # who started it: only they (and the admin) see it
        self.detached = request.detach
        self.state = RunState(
            run_id=launch.run_id,
            status=Status.RUNNING if slot.granted else Status.QUEUED,
            session_id=request.session_id,
            sessions=[] if request.session_id is None else [request.session_id],
        )
        self.cancel_scope = trio.CancelScope()
        self._limits = limits
        self._slot = slot
        self._on_session = on_session
        self._on_start = on_start
        self._on_finish = on_finish
        self._reader_attached = trio.Event()
        # What the run's parts call back goes through weak references: a run they kept
        # alive through a reference cycle would be freed only by the cycle collector,
        # late, with every event and message it holds.
        self._log = EventLog(
            limits.buffer_bytes,
            limits.stall_timeout,
            weakly(self._stalled),
            keep_events,
            store_room,
        )
        emit = emitter(self._log) if on_event is None else observed(emitter(self._log), on_event)
        self._conversation = Conversation(
            request.prompt,
            followup_grace=limits.followup_grace,
            approval_timeout=limits.approval_timeout,
            emit=emit,
            held_limit=limits.followup_max_bytes,
            held_total=held_total,
            rules=ApprovalRules.for_plan(plan),
        )
        document = None if request.stream else Document(limits.max_document_bytes)
        self._assistant_usage = AssistantUsage()
        router = OutputRouter(
            self._log,
            weakly(self._on_line),
            max_line_bytes=limits.max_line_bytes,
            document=document,
            assistant=self._assistant_usage,
        )
        self._document = document
        self._cli = CliTasks(
            request=request,
            plan=plan,
            launch=launch,
            limits=limits,
            confine=confine,
            conversation=self._conversation,
            router=router,
            log=self._log,
            reap=reap,
            cancel_run=self.cancel_scope,
            sessions=self.state.sessions,
            on_teardown=on_teardown,
            pool=pool,
            profile=profile,
        )
        self._supervisor = Supervisor(
            self.state,
            plan=plan,
            slot=slot,
            events=self._log,
            emit=emit,
            conversation=self._conversation,
            cli=self._cli,
            cancel_scope=self.cancel_scope,
            on_session=weakly(self._session_seen),
            on_start=weakly(self._started),
            on_finish=weakly(self._finished),
        )
        self.finished = self._supervisor.finished
        emit(ProcessEvent.event, ProcessEvent(process_id=self.run_id).wire())

    # -- what the HTTP side asks -----------------------------------------

    @property
    def status(self) -> Status:
        """Return where the run is."""
        return self.state.status

    @property
    def session_id(self) -> str | None:
        """Return the session the run uses, as the CLI last said."""
        return self.state.session_id

    @property
    def pid(self) -> int | None:
        """Return the CLI's pid once it is spawned."""
        return self._cli.pid

    @property
    def interrupt_forced(self) -> bool:
        """Return whether an interrupt the CLI did not honour tore the run down."""
        return self._cli.interrupt_forced

    @property
    def live(self) -> bool:
        """Return whether the run may still take messages (queued or running)."""
        return self.state.status in (Status.QUEUED, Status.RUNNING)

    @property
    def last_event_id(self) -> int:
        """Return the id of the run's last event so far."""
        return self._log.last_id

    def usage(self) -> RunUsage:
        """Return the tokens and cost so far: the last result's, else the messages' tokens."""
        return usage_of(self.state.result, self._assistant_usage)

    def cancel(self) -> None:
        """Ask the run to stop; synchronous and idempotent. ``finished`` tells when it has."""
        if self.live:  # a settled run keeps its own status
            self.cancel_scope.cancel()
            self.state.status = Status.CANCELLING

    def attach_reader(self) -> Reader:
        """Return the reader of the stream the run was started with (from the first event)."""
        return self._log.reader(owner=True)

    def replay(self, after: int) -> Reader:
        """Return a reader of the run's events after ``after`` (0: from the first kept)."""
        return self._log.reader(after)

    @property
    def first_kept(self) -> int:
        """Return the id of the oldest event memory holds (the next id when none is)."""
        return self._log.first_kept

    def stream_started(self) -> None:
        """Note that the starting client's stream body has begun (see cancel_unless_read)."""
        self._reader_attached.set()

    def stream_closed(self) -> None:
        """Note that the starting client's stream ended; a run not detached ends with it."""
        if not self.detached:
            self.cancel()

    def follow_up(self, prompt: str) -> int:
        """Queue a user message for the run; return how many are ahead of it.

        Raises:
            RunEnded: the run has ended or is ending.
            TooManyMessages: the run (or the server) holds too many follow-ups.
        """
        if not self.live:
            raise RunEnded(f"run {self.run_id} has ended or is ending ({self.status})")
        return self._conversation.follow_up(prompt)

    def approvals(self) -> list[WireApproval]:
        """Return the approvals waiting for an answer, oldest first."""
        return [approval.to_wire() for approval in self._conversation.pending()]

    def answer(
        self,
        approval_id: str,
        behavior: Behavior,
        updated_input: dict[str, Any] | None,
        message: str | None,
    ) -> Approval:
        """Answer a pending approval (see :meth:`Conversation.answer` for what it raises)."""
        return self._conversation.answer(approval_id, behavior, updated_input, message)

    def take_document(self) -> list[bytes]:
        """Return the lines of a finished ``stream: false`` run, and stop keeping them."""
        if self._document is None:
            return []
        lines, self._document.lines = self._document.lines, []
        return lines

    async def interrupt(self) -> None:
        """Stop the current turn through the CLI's control protocol and wait for the end.

        A queued run (or one whose CLI has not started) is simply cancelled. If
        the CLI does not acknowledge within the interrupt patience, or does not end
        its turn as long after, the run is torn down as by :meth:`cancel`.
        Cancellation: the wait stops; the interrupt goes on in the run's own task.
        """
        if self.status is Status.QUEUED or (self.status is Status.RUNNING and self.pid is None):
            self.cancel()
        elif self.status is Status.RUNNING:
            self._cli.interrupt()
        await self.finished.wait()

    async def cancel_unless_read(self, patience: float) -> None:
        """Cancel the run if no reader takes its stream within ``patience`` seconds.

        A backstop for a client that hung up before Quart started the response
        body (the app also cancels when the unstarted body is dropped).
        Cancellation: cancelled, it simply stops watching.
        """
        with trio.move_on_after(patience):
            await self._reader_attached.wait()
            return
        log.warning(
            "run %s: nobody read its stream; cancelling", self.run_id, extra=run_extra(self.run_id)
        )
        self.stream_closed()

    def describe(self) -> Process:
        """Return the run as ``GET /processes`` lists it."""
        state = self.state
        return Process(
            process_id=self.run_id,
            pid=self.pid,
            cwd=self.request.cwd,
            model=self.request.model,
            session_id=state.session_id,
            started_at=state.started_at,
            status=state.status,
            queue_position=self._slot.position,
            detached=self.detached,
            finished_at=state.finished_at,
            last_event_id=self._log.last_id,
            pending_approvals=len(self._conversation.pending()),
            pooled=self._cli.pooled,
        )

    async def supervise(self) -> None:
        """Run the CLI to its end and settle the run (see :meth:`Supervisor.supervise`).

        Cancellation: as :meth:`Supervisor.supervise`: the run ends ``cancelled``,
        its tree torn down (shielded, bounded) before this returns or re-raises.
        """
        await self._supervisor.supervise()

    # -- what the run's parts say ----------------------------------------

    def _on_line(self, line: dict[str, Any]) -> None:
        self._supervisor.on_line(line)

    def _session_seen(self, session_id: str) -> None:
        self._on_session(self, session_id)

    def _started(self) -> None:
        self._on_start(self)

    def _finished(self) -> None:
        self._on_finish(self)

    def _stalled(self, reader: Reader) -> None:
        # A client that vanished without closing its connection (a dead network
        # path, a frozen process) stops taking data but never hangs up.
        log.warning(
            "run %s: a client took no data for %g s; treating it as gone",
            self.run_id,
            self._limits.stall_timeout,
        )
        if reader.owner:
            self.stream_closed()


def observed(emit: Emit, observer: Callable[[str, dict[str, Any]], None]) -> Emit:
    """Return ``emit`` that also tells ``observer`` of each gateway event (after logging it).

    An observer that raises is logged; the run goes on.
    """

    def emit_and_tell(event: str, data: dict[str, Any]) -> None:
        emit(event, data)
        try:
            observer(event, data)
        except Exception:
            log.exception("an observer of a run's %s event failed", event)

    return emit_and_tell
