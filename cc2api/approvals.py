"""Tool approvals: the CLI's ``can_use_tool`` requests, answered over HTTP or refused."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import trio

from . import wire
from .approval_rules import ApprovalRules, input_change_refusal
from .codes import ErrorCode
from .errors import ApprovalAnswered, Forbidden, NotFound
from .wire import REASON_FIELDS

Behavior = Literal["allow", "deny"]
Emit = Callable[[str, dict[str, Any]], None]


class Outbox:
    """The lines for the CLI's stdin, until the input closes."""

    def __init__(self) -> None:
        self._send, self.outgoing = trio.open_memory_channel[bytes](float("inf"))
        self.closed = False

    def write(self, line: bytes) -> None:
        """Queue ``line`` for stdin; dropped once the input is closed."""
        if not self.closed:
            self._send.send_nowait(line)

    def close(self) -> None:
        """Close stdin once what is queued has been written; idempotent."""
        self.closed = True
        self._send.close()


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


def control_line(value: dict[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def control_response(request_id: str, response: dict[str, Any]) -> bytes:
    body = {"subtype": "success", "request_id": request_id, "response": response}
    return control_line({"type": "control_response", "response": body})


class Approvals:
    """A run's approvals: asked, refused by the rules, timed out, or answered.

    The conversation feeds it the CLI's requests and gives it the nursery its
    timeouts run in while the conversation is served.
    """

    def __init__(self, outbox: Outbox, *, rules: ApprovalRules, timeout: float, emit: Emit) -> None:
        self._outbox = outbox
        self._rules = rules
        self._timeout = timeout
        self._emit = emit
        self.nursery: trio.Nursery | None = None  # while served: the timeouts' home
        self.by_id: dict[str, Approval] = {}

    def pending(self) -> list[Approval]:
        """Return the approvals still waiting for an answer, oldest first."""
        return [a for a in self.by_id.values() if a.answer is None]

    def expire_pending(self, answer: str) -> None:
        """Settle every pending approval as ``answer`` without telling the CLI (it moved on)."""
        for approval in self.pending():
            approval.settle(answer)

    def withdraw(self, request_id: object) -> None:
        """Settle the approval whose request the CLI withdrew, as ``cancelled``."""
        for approval in self.pending():
            if approval.request_id == request_id:
                self._emit(wire.ApprovalAnswered.event, approval.answered("cancelled"))

    def ask(self, request_id: str, request: dict[str, Any]) -> None:
        """Take in a ``can_use_tool`` request: refuse it by the rules, or wait for an answer."""
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
        self.by_id[approval.approval_id] = approval
        self._emit(wire.Approval.event, approval.describe())
        if approval.refused is not None:
            message = f"cc2api refused this without asking anyone: {approval.refused}."
            self._reply(approval, "deny", None, message, answer="refused")
        elif self._timeout > 0 and self.nursery is not None:
            self.nursery.start_soon(self._expire, approval)

    async def _expire(self, approval: Approval) -> None:
        with approval.timer:
            await trio.sleep(self._timeout)
        if approval.answer is None and not self._outbox.closed:
            message = (
                f"No answer within {self._timeout:g} s: the request to use "
                f"{approval.tool_name} timed out and was denied (nobody refused it)."
            )
            self._reply(approval, "deny", None, message, answer="timeout")

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
        approval = self.by_id.get(approval_id)
        if approval is None:
            raise NotFound(
                f"no approval {approval_id} in this run", code=ErrorCode.APPROVAL_NOT_FOUND
            )
        if approval.answer is not None or self._outbox.closed:
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
        self._outbox.write(control_response(approval.request_id, response))
        self._emit(wire.ApprovalAnswered.event, approval.answered(answer))
