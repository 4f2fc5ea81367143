"""The stream-json dialogue with one CLI: turns, follow-up messages, interrupt, tool approvals."""

from __future__ import annotations

import json
import math
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import trio

from . import wire
from .approval_rules import ApprovalRules, input_change_refusal
from .cli_args import user_message
from .codes import ErrorCode
from .errors import ApprovalAnswered, Forbidden, NotFound, RunEnded, TooManyMessages
from .wire import REASON_FIELDS

Behavior = Literal["allow", "deny"]
Emit = Callable[[str, dict[str, Any]], None]
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


@dataclass
class Approval:
    """A tool call the CLI asked the gateway about (``can_use_tool``)."""

    approval_id: str
    request_id: str  # the CLI's id for its control request
    tool_name: str
    input: dict[str, Any]
    suggestions: list[Any]
    reasons: dict[str, str | None] = field(default_factory=dict)  # REASON_FIELDS
    refused: str | None = None  # why the gateway refused it without asking anyone
    requested_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # allow, deny, refused (by the gateway), timeout, cancelled (by the CLI), expired
    answer: str | None = None
    timer: trio.CancelScope = field(default_factory=trio.CancelScope)  # the timeout's

    def settle(self, answer: str) -> None:
        """Record the answer, stop the timeout, and let go of the tool's input."""
        self.answer = answer
        self.timer.cancel()
        self.input = {}

    def describe(self) -> dict[str, Any]:
        """Return the approval as the ``approval`` event and the listing show it."""
        return self.to_wire().wire()

    def to_wire(self) -> wire.Approval:
        """Return the approval as the model of the ``approval`` event and the listing."""
        return wire.Approval(
            approval_id=self.approval_id,
            tool_name=self.tool_name,
            input=self.input,
            suggestions=self.suggestions,
            requested_at=self.requested_at,
            **{name: self.reasons.get(name) for name in REASON_FIELDS},
            refused=self.refused,
        )

    def answered(self, answer: wire.Verdict) -> dict[str, Any]:
        """Settle the approval with ``answer``; return the ``approval_answered`` event's data."""
        self.settle(answer)
        return wire.ApprovalAnswered(approval_id=self.approval_id, answer=answer).wire()


def _line(value: dict[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _control_response(request_id: str, response: dict[str, Any]) -> bytes:
    body = {"subtype": "success", "request_id": request_id, "response": response}
    return _line({"type": "control_response", "response": body})


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
        self._out, self.outgoing = trio.open_memory_channel[bytes](math.inf)
        self._out.send_nowait(user_message(prompt))
        self._turns = 1  # user messages sent and not yet answered with a result
        self._held: deque[bytes] = deque()  # follow-ups waiting for the current turn
        self._held_bytes = 0
        self._held_limit = held_limit
        self._held_total = held_total
        self._rules = rules
        self._grace = followup_grace
        self._approval_timeout = approval_timeout
        self._emit = emit
        self._acks: dict[str, trio.Event] = {}
        self._idle = trio.Event()  # no turn in progress: the grace runs
        self._nursery: trio.Nursery | None = None
        self.approvals: dict[str, Approval] = {}
        self.input_closed = False
        self.interrupt_requested = False  # an interrupt was sent while a turn ran

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the timers (the follow-up grace, approval timeouts) until cancelled.

        Cancellation: the timers stop; nothing is sent.
        """
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                while True:
                    await self._idle.wait()
                    idle = self._idle
                    await trio.sleep(self._grace)
                    if idle is self._idle:  # no follow-up came meanwhile
                        self.close_input()
                        return
        finally:
            self._nursery = None  # closed: no timer can start any more

    def close_input(self) -> None:
        """Close the CLI's stdin once what is queued has been written; idempotent."""
        if not self.input_closed:
            self.input_closed = True
            self._out.close()
            self._drop_held()
            self._expire_pending("expired")

    def _drop_held(self) -> None:
        self._held.clear()
        self._held_total.give(self._held_bytes)
        self._held_bytes = 0

    def _next_held(self) -> bytes:
        line = self._held.popleft()
        self._held_bytes -= len(line)
        self._held_total.give(len(line))
        return line

    def _expire_pending(self, answer: str) -> None:
        for approval in self.pending():
            approval.settle(answer)

    def pending(self) -> list[Approval]:
        """Return the approvals still waiting for an answer, oldest first."""
        return [a for a in self.approvals.values() if a.answer is None]

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
            withdrawn = line.get("request_id")
            for approval in self.pending():
                if approval.request_id == withdrawn:
                    self._emit(wire.ApprovalAnswered.event, approval.answered("cancelled"))

    def _turn_ended(self) -> None:
        self._turns = max(0, self._turns - 1)
        self._expire_pending("expired")
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
            self._write(_line({"type": "control_response", "response": body}))
            return
        tool_input = request.get("input")
        suggestions = request.get("permission_suggestions")
        approval = Approval(
            approval_id=str(uuid.uuid4()),
            request_id=request_id,
            tool_name=str(request.get("tool_name", "")),
            input=tool_input if isinstance(tool_input, dict) else {},
            suggestions=suggestions if isinstance(suggestions, list) else [],
            reasons={
                name: value if isinstance(value := request.get(name), str) else None
                for name in REASON_FIELDS
            },
            refused=self._rules.refusal(request),
        )
        self.approvals[approval.approval_id] = approval
        self._emit(wire.Approval.event, approval.describe())
        if approval.refused is not None:
            message = f"cc2api refused this without asking anyone: {approval.refused}."
            self._reply(approval, "deny", None, message, answer="refused")
        elif self._approval_timeout > 0 and self._nursery is not None:
            self._nursery.start_soon(self._expire, approval)

    async def _expire(self, approval: Approval) -> None:
        with approval.timer:
            await trio.sleep(self._approval_timeout)
        if approval.answer is None and not self.input_closed:
            message = (
                f"No answer within {self._approval_timeout:g} s: the request to use "
                f"{approval.tool_name} timed out and was denied (nobody refused it)."
            )
            self._reply(approval, "deny", None, message, answer="timeout")

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
        self._write(_line({**request, "request": {"subtype": "interrupt"}}))
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
        """Answer a pending approval.

        Raises:
            NotFound: the run never had such an approval.
            ApprovalAnswered: it was answered already (or refused, timed out, or expired).
            Forbidden: ``updated_input`` changes what the call would act on.
        """
        approval = self.approvals.get(approval_id)
        if approval is None:
            raise NotFound(
                f"no approval {approval_id} in this run", code=ErrorCode.APPROVAL_NOT_FOUND
            )
        if approval.answer is not None or self.input_closed:
            raise ApprovalAnswered(
                f"approval {approval_id} was answered already: {approval.answer}"
            )
        if behavior == "allow" and updated_input is not None:
            refusal = input_change_refusal(approval.tool_name, approval.input, updated_input)
            if refusal is not None:
                raise Forbidden(refusal, code=ErrorCode.UPDATED_INPUT_FORBIDDEN)
        self._reply(approval, behavior, updated_input, message, answer=behavior)
        return approval

    def _reply(
        self,
        approval: Approval,
        behavior: Behavior,
        updated_input: dict[str, Any] | None,
        message: str | None,
        *,
        answer: wire.Verdict,
    ) -> None:
        if behavior == "allow":
            response: dict[str, Any] = {
                "behavior": "allow",
                "updatedInput": approval.input if updated_input is None else updated_input,
            }
        else:
            response = {"behavior": "deny", "message": message or "Denied by the approver."}
        self._write(_control_response(approval.request_id, response))
        self._emit(wire.ApprovalAnswered.event, approval.answered(answer))

    def _write(self, line: bytes) -> None:
        if not self.input_closed:
            self._out.send_nowait(line)
