"""The stream-json dialogue with one CLI: turns, follow-up messages, interrupt, tool approvals."""

from __future__ import annotations

import uuid
from collections import deque
from typing import Any

import trio

from .approval_rules import ApprovalRules
from .approvals import Approval, Approvals, Behavior, Emit, Outbox, control_line
from .cli_args import user_message
from .errors import RunEnded, TooManyMessages

__all__ = ["MAX_HELD_MESSAGES", "Approval", "Behavior", "Conversation", "HeldBytes"]
# Follow-ups a run holds while a turn is in progress, at most; FOLLOWUP_MAX_BYTES and
# FOLLOWUPS_TOTAL_MAX_BYTES bound their size, one run's and all runs' together.
MAX_HELD_MESSAGES = 16
RETRY_HELD_SECONDS = 5


class HeldBytes:
    """The bytes of follow-up messages that all runs hold together, against one limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> bool:
        """Count ``size`` more bytes held, if they fit; return whether they did."""
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        """Count ``size`` bytes no longer held."""
        self.held -= size


class Conversation:
    """What the gateway says to the CLI on stdin, and what it makes of the CLI's replies.

    Stdin stays open while a turn is in progress and, after the last turn's
    ``result``, for ``followup_grace`` seconds more; then it closes and the CLI
    ends. Lines to send wait in :attr:`outgoing` for the run's stdin writer.
    """

    def __init__(
        self,
        prompt: str,
        *,
        followup_grace: float,
        approval_timeout: float,
        emit: Emit,
        held_limit: int,
        held_total: HeldBytes,
        rules: ApprovalRules,
    ) -> None:
        self._outbox = Outbox()
        self.outgoing = self._outbox.outgoing
        self._outbox.write(user_message(prompt))
        self._turns = 1  # user messages sent and not yet answered with a result
        self._held: deque[bytes] = deque()  # follow-ups waiting for the current turn
        self._held_bytes = 0
        self._held_limit = held_limit
        self._held_total = held_total
        self._grace = followup_grace
        self._approvals = Approvals(self._outbox, rules=rules, timeout=approval_timeout, emit=emit)
        self._acks: dict[str, trio.Event] = {}
        self._idle = trio.Event()  # no turn in progress: the grace runs
        self.interrupt_requested = False  # an interrupt was sent while a turn ran

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the timers (the follow-up grace, approval timeouts) until cancelled.

        Cancellation: the timers stop; nothing is sent.
        """
        try:
            async with trio.open_nursery() as nursery:
                self._approvals.nursery = nursery
                task_status.started()
                while True:
                    await self._idle.wait()
                    idle = self._idle
                    await trio.sleep(self._grace)
                    if idle is self._idle:  # no follow-up came meanwhile
                        self.close_input()
                        return
        finally:
            self._approvals.nursery = None  # closed: no timer can start any more

    def close_input(self) -> None:
        """Close the CLI's stdin once what is queued has been written; idempotent."""
        if not self._outbox.closed:
            self._outbox.close()
            self._drop_held()
            self._approvals.expire_pending("expired")

    def _drop_held(self) -> None:
        self._held.clear()
        self._held_total.give(self._held_bytes)
        self._held_bytes = 0

    def _next_held(self) -> bytes:
        line = self._held.popleft()
        self._held_bytes -= len(line)
        self._held_total.give(len(line))
        return line

    @property
    def input_closed(self) -> bool:
        """Return whether the CLI's stdin is closed (or closing): nothing more is said."""
        return self._outbox.closed

    @property
    def approvals(self) -> dict[str, Approval]:
        """Return every approval of the run, by id."""
        return self._approvals.by_id

    def pending(self) -> list[Approval]:
        """Return the approvals still waiting for an answer, oldest first."""
        return self._approvals.pending()

    # -- what the CLI says --------------------------------------------------

    def on_line(self, line: dict[str, Any]) -> None:
        """Take in a line of the CLI's that names a result or a control message."""
        kind = line.get("type")
        if kind == "result":
            self._turn_ended()
        elif kind == "control_request":
            self._on_control_request(line)
        elif kind == "control_response":
            response = line.get("response")
            request_id = response.get("request_id") if isinstance(response, dict) else None
            if isinstance(request_id, str) and request_id in self._acks:
                self._acks.pop(request_id).set()
        elif kind == "control_cancel_request":  # the CLI withdrew a request of its own
            self._approvals.withdraw(line.get("request_id"))

    def _turn_ended(self) -> None:
        self._turns = max(0, self._turns - 1)
        self._approvals.expire_pending("expired")
        if self.interrupt_requested:
            self.close_input()
        elif self._held:
            self._write(self._next_held())
            self._turns += 1
        elif self._turns == 0:
            if self._grace <= 0:
                self.close_input()
            else:
                self._idle.set()

    def _on_control_request(self, line: dict[str, Any]) -> None:
        request_id = line.get("request_id")
        request = line.get("request")
        if not isinstance(request_id, str) or not isinstance(request, dict):
            return
        if self.input_closed:
            return  # nothing can answer it any more; the CLI is ending
        if request.get("subtype") != "can_use_tool":
            # Left unanswered, the CLI would wait for ever.
            body = {
                "subtype": "error",
                "request_id": request_id,
                "error": f"cc2api does not handle {request.get('subtype')!r} requests",
            }
            self._write(control_line({"type": "control_response", "response": body}))
            return
        self._approvals.ask(request_id, request)

    # -- what clients ask ---------------------------------------------------

    def follow_up(self, prompt: str) -> int:
        """Send ``prompt`` as the next user message; return how many wait before it.

        Raises:
            RunEnded: the run's input is closed or it is being interrupted.
            TooManyMessages: MAX_HELD_MESSAGES follow-ups wait already, or holding this
                one too would pass the run's or all runs' byte limit.
        """
        if self.input_closed or self.interrupt_requested:
            raise RunEnded("the run takes no more messages: it has ended or is ending")
        line = user_message(prompt)
        if self._turns == 0:
            self._idle = trio.Event()  # the grace is over: a turn is in progress
            self._write(line)
            self._turns = 1
            return 0
        if len(self._held) >= MAX_HELD_MESSAGES:
            raise TooManyMessages(
                f"{MAX_HELD_MESSAGES} follow-ups wait for the current turn already",
                retry_after=RETRY_HELD_SECONDS,
            )
        if self._held_bytes + len(line) > self._held_limit:
            raise TooManyMessages(
                f"the follow-ups waiting for the current turn would hold more than "
                f"{self._held_limit} bytes (FOLLOWUP_MAX_BYTES)",
                retry_after=RETRY_HELD_SECONDS,
            )
        if not self._held_total.take(len(line)):
            raise TooManyMessages(
                f"the server holds {self._held_total.limit} bytes of follow-ups for "
                "turns in progress already (FOLLOWUPS_TOTAL_MAX_BYTES)",
                retry_after=RETRY_HELD_SECONDS,
            )
        self._held.append(line)
        self._held_bytes += len(line)
        return len(self._held)

    async def interrupt(self, patience: float) -> bool:
        """Ask the CLI to stop the current turn; return whether it acknowledged in time.

        Follow-ups not yet sent are dropped; once the turn's result is in, the
        input closes. With no turn in progress there is nothing to interrupt: the
        input just closes (and the run ends as it would have). Cancellation: the
        wait stops; the request stays sent.
        """
        self._drop_held()
        if self.input_closed or self._turns == 0:
            self.close_input()
            return True
        self.interrupt_requested = True
        request_id = str(uuid.uuid4())
        acknowledged = self._acks[request_id] = trio.Event()
        request = {"type": "control_request", "request_id": request_id}
        self._write(control_line({**request, "request": {"subtype": "interrupt"}}))
        try:
            with trio.move_on_after(patience):
                await acknowledged.wait()
                return True
            return False
        finally:
            self._acks.pop(request_id, None)

    def answer(
        self,
        approval_id: str,
        behavior: Behavior,
        updated_input: dict[str, Any] | None,
        message: str | None,
    ) -> Approval:
        """Answer a pending approval (see :meth:`Approvals.answer` for what it raises)."""
        return self._approvals.answer(approval_id, behavior, updated_input, message)

    def _write(self, line: bytes) -> None:
        self._outbox.write(line)
