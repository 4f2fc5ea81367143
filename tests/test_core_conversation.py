"""The stream-json dialogue on its own: no server, no CLI, time from trio's MockClock.

tests/test_steering.py drives the same behaviour through HTTP and the fake CLI;
here ``Conversation`` is fed the CLI's lines by hand and what it would write to the
CLI's stdin is read from :attr:`Conversation.outgoing`, so each case takes
milliseconds and timeouts cost no wall time.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing

from cc2api.approval_rules import ApprovalRules
from cc2api.conversation import MAX_HELD_MESSAGES, Conversation, HeldBytes
from cc2api.errors import ApprovalAnswered, Forbidden, NotFound, RunEnded, TooManyMessages

RESULT = {"type": "result", "subtype": "success", "is_error": False, "result": "ok"}
MiB = 1024 * 1024


class Dialogue:
    """A Conversation, the events it emitted, and what it has written to the CLI so far."""

    def __init__(
        self,
        *,
        grace: float = 0,
        approval_timeout: float = 300,
        held_limit: int = 16 * MiB,
        held_total: HeldBytes | None = None,
    ) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.held_total = HeldBytes(256 * MiB) if held_total is None else held_total
        self.conversation = Conversation(
            "first",
            followup_grace=grace,
            approval_timeout=approval_timeout,
            emit=lambda name, data: self.events.append((name, data)),
            held_limit=held_limit,
            held_total=self.held_total,
            rules=ApprovalRules(cwd="/work"),
        )
        self.closed = False  # whether the CLI's stdin has been closed (seen so far)

    def sent(self) -> list[dict[str, Any]]:
        """Return the lines written since the last call, parsed; note if stdin closed."""
        lines = []
        while True:
            try:
                lines.append(json.loads(self.conversation.outgoing.receive_nowait()))
            except trio.WouldBlock:
                return lines
            except trio.EndOfChannel:
                self.closed = True
                return lines

    def prompts(self) -> list[str]:
        """Return the user messages written since the last look, by their text."""
        return [line["message"]["content"] for line in self.sent() if line["type"] == "user"]

    def result(self) -> None:
        """Feed the CLI's result line: the turn in progress ends."""
        self.conversation.on_line(RESULT)

    def ask(self, request_id: str = "req-1", **request: Any) -> str:
        """Feed a can_use_tool question; return the approval id it was given."""
        body = {"subtype": "can_use_tool", "tool_name": "Bash", "input": {"command": "ls"}}
        line = {"type": "control_request", "request_id": request_id, "request": body | request}
        self.conversation.on_line(line)
        name, data = self.events[-1]
        if name == "approval_answered":  # refused at once: the approval came just before
            name, data = self.events[-2]
        assert name == "approval"
        return str(data["approval_id"])

    def answered(self) -> list[str]:
        """Return the answers of every approval_answered event so far."""
        return [data["answer"] for name, data in self.events if name == "approval_answered"]


def control_responses(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the bodies of the control responses among ``lines``."""
    return [line["response"] for line in lines if line["type"] == "control_response"]


# -- turns and follow-ups ------------------------------------------------------------


def test_the_prompt_is_the_first_user_message() -> None:
    """A new conversation has the prompt waiting as a stream-json user message."""
    dialogue = Dialogue()
    (line,) = dialogue.sent()
    assert line["type"] == "user"
    assert line["message"] == {"role": "user", "content": "first"}
    assert not dialogue.closed


def test_without_grace_the_first_result_closes_the_input() -> None:
    """With no follow-up grace the CLI's stdin closes as soon as its turn's result is in."""
    dialogue = Dialogue(grace=0)
    dialogue.sent()
    dialogue.result()
    assert dialogue.sent() == []
    assert dialogue.closed
    assert dialogue.conversation.input_closed


def test_follow_ups_during_a_turn_wait_and_report_how_many_are_ahead() -> None:
    """Follow-ups sent while a turn runs are held, numbered 1, 2, ... and not yet written."""
    dialogue = Dialogue()
    dialogue.sent()
    aheads = [dialogue.conversation.follow_up(f"m{i}") for i in range(3)]
    assert aheads == [1, 2, 3]
    assert dialogue.sent() == []


def test_each_result_releases_the_next_held_follow_up_in_order() -> None:
    """Held follow-ups go to the CLI one per result, oldest first; the last result closes."""
    dialogue = Dialogue()
    dialogue.prompts()
    dialogue.conversation.follow_up("m1")
    dialogue.conversation.follow_up("m2")
    written = []
    for _ in range(3):
        dialogue.result()
        written.append(dialogue.prompts())
    assert written == [["m1"], ["m2"], []]
    assert dialogue.closed


def test_a_follow_up_after_the_input_closed_is_refused() -> None:
    """Once the input has closed, follow_up raises RunEnded."""
    dialogue = Dialogue(grace=0)
    dialogue.result()
    with pytest.raises(RunEnded):
        dialogue.conversation.follow_up("too late")


def test_at_most_max_held_messages_wait() -> None:
    """The follow-up past MAX_HELD_MESSAGES waiting on one turn raises TooManyMessages."""
    dialogue = Dialogue()
    for i in range(MAX_HELD_MESSAGES):
        dialogue.conversation.follow_up(f"m{i}")
    with pytest.raises(TooManyMessages) as refused:
        dialogue.conversation.follow_up("one more")
    assert refused.value.retry_after > 0


def test_a_runs_held_follow_ups_are_bounded_in_bytes() -> None:
    """Follow-ups whose bytes would pass the run's held_limit raise, naming FOLLOWUP_MAX_BYTES."""
    dialogue = Dialogue(held_limit=300)
    dialogue.conversation.follow_up("x" * 100)
    with pytest.raises(TooManyMessages, match="FOLLOWUP_MAX_BYTES"):
        dialogue.conversation.follow_up("x" * 100)


def test_all_runs_share_one_byte_limit_and_a_closed_run_frees_its_part() -> None:
    """Two conversations share HeldBytes; closing one's input gives its bytes back."""
    shared = HeldBytes(300)
    first, second = Dialogue(held_total=shared), Dialogue(held_total=shared)
    first.conversation.follow_up("x" * 100)
    with pytest.raises(TooManyMessages, match="FOLLOWUPS_TOTAL_MAX_BYTES"):
        second.conversation.follow_up("x" * 100)
    first.conversation.close_input()
    assert shared.held == 0
    assert second.conversation.follow_up("x" * 100) == 1


def test_a_sent_follow_up_no_longer_counts_as_held() -> None:
    """When a held follow-up is written to the CLI its bytes are given back."""
    dialogue = Dialogue()
    dialogue.conversation.follow_up("x" * 100)
    assert dialogue.held_total.held > 0
    dialogue.result()
    assert dialogue.held_total.held == 0


async def test_the_grace_closes_the_input_that_long_after_the_last_result(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With followup_grace, stdin stays open after the result and closes grace seconds later."""
    dialogue = Dialogue(grace=30)
    async with trio.open_nursery() as nursery:
        await nursery.start(dialogue.conversation.serve)
        start = trio.current_time()
        dialogue.result()
        await trio.sleep(29)
        assert not dialogue.conversation.input_closed
        while not dialogue.conversation.input_closed:
            await trio.sleep(0.5)
    assert trio.current_time() - start == pytest.approx(30, abs=0.5)


async def test_a_follow_up_in_the_grace_is_written_at_once_and_restarts_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A follow-up during the grace goes straight to the CLI (0 ahead); its result starts anew."""
    dialogue = Dialogue(grace=30)
    dialogue.prompts()
    async with trio.open_nursery() as nursery:
        await nursery.start(dialogue.conversation.serve)
        dialogue.result()
        await trio.sleep(20)
        ahead = dialogue.conversation.follow_up("more")
        written = dialogue.prompts()
        await trio.sleep(20)  # past the first grace: the turn in progress keeps stdin open
        assert not dialogue.conversation.input_closed
        dialogue.result()
        second_result = trio.current_time()
        while not dialogue.conversation.input_closed:
            await trio.sleep(0.5)
    assert (ahead, written) == (0, ["more"])
    assert trio.current_time() - second_result == pytest.approx(30, abs=0.5)


# -- interrupt -------------------------------------------------------------------------


async def test_interrupt_sends_a_control_request_and_returns_when_acknowledged(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """interrupt writes an interrupt control request and returns True once the CLI acks it."""
    dialogue = Dialogue()
    dialogue.sent()
    acknowledged: list[bool] = []

    async def interrupt() -> None:
        acknowledged.append(await dialogue.conversation.interrupt(patience=5))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(interrupt)
        await trio.sleep(1)
        (request,) = dialogue.sent()
        assert request["type"] == "control_request"
        assert request["request"] == {"subtype": "interrupt"}
        ack = {"subtype": "success", "request_id": request["request_id"]}
        dialogue.conversation.on_line({"type": "control_response", "response": ack})
    assert acknowledged == [True]
    assert dialogue.conversation.interrupt_requested


async def test_interrupt_not_acknowledged_in_time_returns_false(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """interrupt returns False after ``patience`` seconds without an acknowledgement."""
    dialogue = Dialogue()
    start = trio.current_time()
    assert not await dialogue.conversation.interrupt(patience=5)
    assert trio.current_time() - start == pytest.approx(5)


async def test_an_acknowledgement_for_another_request_does_not_count(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A control_response with some other request id leaves the interrupt waiting."""
    dialogue = Dialogue()
    acknowledged: list[bool] = []

    async def interrupt() -> None:
        acknowledged.append(await dialogue.conversation.interrupt(patience=5))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(interrupt)
        await trio.sleep(1)
        ack = {"subtype": "success", "request_id": "someone-else"}
        dialogue.conversation.on_line({"type": "control_response", "response": ack})
    assert acknowledged == [False]


async def test_after_an_interrupt_the_turns_result_closes_the_input(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An interrupted turn's result closes stdin, even with follow-up grace and held messages."""
    dialogue = Dialogue(grace=30)
    dialogue.conversation.follow_up("held")
    with trio.move_on_after(1):
        await dialogue.conversation.interrupt(patience=5)
    dialogue.sent()
    dialogue.result()
    assert dialogue.prompts() == []
    assert dialogue.closed


async def test_interrupt_drops_held_follow_ups_and_refuses_new_ones(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An interrupt gives back the held follow-ups' bytes, and follow_up then raises RunEnded."""
    dialogue = Dialogue()
    dialogue.conversation.follow_up("held")
    await dialogue.conversation.interrupt(patience=1)
    assert dialogue.held_total.held == 0
    with pytest.raises(RunEnded):
        dialogue.conversation.follow_up("more")


async def test_interrupt_with_no_turn_in_progress_just_closes_the_input(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Between turns, interrupt closes stdin at once, sends no request and returns True."""
    dialogue = Dialogue(grace=30)
    dialogue.sent()
    dialogue.result()
    assert await dialogue.conversation.interrupt(patience=5)
    assert dialogue.sent() == []
    assert dialogue.closed
    assert not dialogue.conversation.interrupt_requested


# -- approvals -------------------------------------------------------------------------


def test_a_question_becomes_a_pending_approval_and_an_event() -> None:
    """can_use_tool emits an approval event with the tool and its input, and waits."""
    dialogue = Dialogue()
    approval_id = dialogue.ask(command="ls")
    (name, data) = dialogue.events[-1]
    assert (name, data["tool_name"], data["input"]) == ("approval", "Bash", {"command": "ls"})
    assert [a.approval_id for a in dialogue.conversation.pending()] == [approval_id]


def test_allow_answers_the_cli_with_the_input_it_asked_about() -> None:
    """An allow writes a control_response with updatedInput equal to the asked input."""
    dialogue = Dialogue()
    dialogue.sent()
    approval_id = dialogue.ask(request_id="req-7")
    dialogue.conversation.answer(approval_id, "allow", None, None)
    (response,) = control_responses(dialogue.sent())
    assert response["request_id"] == "req-7"
    assert response["response"] == {"behavior": "allow", "updatedInput": {"command": "ls"}}
    assert dialogue.answered() == ["allow"]
    assert dialogue.conversation.pending() == []


def test_deny_without_a_message_says_the_approver_denied_it() -> None:
    """A deny with no message tells the CLI 'Denied by the approver.'."""
    dialogue = Dialogue()
    dialogue.sent()
    dialogue.conversation.answer(dialogue.ask(), "deny", None, None)
    (response,) = control_responses(dialogue.sent())
    assert response["response"] == {"behavior": "deny", "message": "Denied by the approver."}


def test_an_allow_may_add_to_the_input_without_changing_what_it_acts_on() -> None:
    """updated_input keeping Bash's command is passed on to the CLI as given."""
    dialogue = Dialogue()
    dialogue.sent()
    updated = {"command": "ls", "timeout": 5000}
    dialogue.conversation.answer(dialogue.ask(), "allow", updated, None)
    (response,) = control_responses(dialogue.sent())
    assert response["response"]["updatedInput"] == updated


def test_an_allow_changing_the_command_is_forbidden_and_the_approval_still_waits() -> None:
    """updated_input with another command raises Forbidden and writes nothing."""
    dialogue = Dialogue()
    dialogue.sent()
    approval_id = dialogue.ask()
    with pytest.raises(Forbidden):
        dialogue.conversation.answer(approval_id, "allow", {"command": "rm -rf ~"}, None)
    assert dialogue.sent() == []
    assert len(dialogue.conversation.pending()) == 1


def test_answering_twice_or_an_unknown_approval_is_refused() -> None:
    """A second answer raises ApprovalAnswered; an unknown approval id raises NotFound."""
    dialogue = Dialogue()
    approval_id = dialogue.ask()
    dialogue.conversation.answer(approval_id, "deny", None, None)
    with pytest.raises(ApprovalAnswered):
        dialogue.conversation.answer(approval_id, "allow", None, None)
    with pytest.raises(NotFound):
        dialogue.conversation.answer("nope", "allow", None, None)


async def test_an_unanswered_approval_is_denied_after_the_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """After approval_timeout seconds a pending approval is denied with a message saying so."""
    dialogue = Dialogue(approval_timeout=300)
    dialogue.sent()
    async with trio.open_nursery() as nursery:
        await nursery.start(dialogue.conversation.serve)
        dialogue.ask()
        await trio.sleep(299)
        assert dialogue.answered() == []
        await trio.sleep(2)
        nursery.cancel_scope.cancel()
    (response,) = control_responses(dialogue.sent())
    assert response["response"]["behavior"] == "deny"
    assert "timed out" in response["response"]["message"]
    assert dialogue.answered() == ["timeout"]


async def test_an_answered_approval_does_not_time_out_later(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An approval answered in time gets no second answer when its timeout would have run."""
    dialogue = Dialogue(approval_timeout=10)
    dialogue.sent()
    async with trio.open_nursery() as nursery:
        await nursery.start(dialogue.conversation.serve)
        dialogue.conversation.answer(dialogue.ask(), "allow", None, None)
        await trio.sleep(60)
        nursery.cancel_scope.cancel()
    assert dialogue.answered() == ["allow"]
    assert len(control_responses(dialogue.sent())) == 1


async def test_approval_timeout_zero_waits_for_ever(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With approval_timeout 0 an approval is still pending after a day."""
    dialogue = Dialogue(approval_timeout=0)
    async with trio.open_nursery() as nursery:
        await nursery.start(dialogue.conversation.serve)
        dialogue.ask()
        await trio.sleep(86_400)
        nursery.cancel_scope.cancel()
    assert len(dialogue.conversation.pending()) == 1
    assert dialogue.answered() == []


def test_closing_the_input_expires_pending_approvals() -> None:
    """close_input settles pending approvals as expired; answering one then is refused."""
    dialogue = Dialogue()
    approval_id = dialogue.ask()
    dialogue.conversation.close_input()
    assert dialogue.conversation.pending() == []
    assert dialogue.conversation.approvals[approval_id].answer == "expired"
    with pytest.raises(ApprovalAnswered):
        dialogue.conversation.answer(approval_id, "allow", None, None)


def test_close_input_is_idempotent() -> None:
    """Closing the input twice is harmless and leaves it closed."""
    dialogue = Dialogue()
    dialogue.conversation.close_input()
    dialogue.conversation.close_input()
    dialogue.sent()
    assert dialogue.closed


def test_a_result_expires_the_turns_unanswered_approvals() -> None:
    """A turn's result settles its still-pending approvals as expired."""
    dialogue = Dialogue(grace=30)
    approval_id = dialogue.ask()
    dialogue.result()
    assert dialogue.conversation.approvals[approval_id].answer == "expired"


def test_a_question_the_cli_withdraws_is_cancelled() -> None:
    """control_cancel_request settles the matching approval as cancelled and says so."""
    dialogue = Dialogue()
    approval_id = dialogue.ask(request_id="req-9")
    dialogue.conversation.on_line({"type": "control_cancel_request", "request_id": "req-9"})
    assert dialogue.conversation.approvals[approval_id].answer == "cancelled"
    assert dialogue.events[-1] == (
        "approval_answered",
        {"approval_id": approval_id, "answer": "cancelled"},
    )


def test_a_question_after_the_input_closed_is_ignored() -> None:
    """can_use_tool arriving once stdin is closed makes no approval and no event."""
    dialogue = Dialogue()
    dialogue.conversation.close_input()
    request = {"subtype": "can_use_tool", "tool_name": "Bash", "input": {"command": "ls"}}
    dialogue.conversation.on_line(
        {"type": "control_request", "request_id": "req-1", "request": request}
    )
    assert dialogue.conversation.approvals == {}
    assert dialogue.events == []


def test_other_control_requests_get_an_error_reply() -> None:
    """A control request other than can_use_tool is answered with an error, not left hanging."""
    dialogue = Dialogue()
    dialogue.sent()
    line = {"type": "control_request", "request_id": "req-2", "request": {"subtype": "mcp_x"}}
    dialogue.conversation.on_line(line)
    (response,) = control_responses(dialogue.sent())
    assert (response["subtype"], response["request_id"]) == ("error", "req-2")
    assert "mcp_x" in response["error"]
    assert dialogue.events == []


def test_a_safety_check_is_refused_at_once() -> None:
    """A question flagged safetyCheck is denied without waiting and recorded as refused."""
    dialogue = Dialogue()
    dialogue.sent()
    approval_id = dialogue.ask(decision_reason_type="safetyCheck", decision_reason="a secret")
    (response,) = control_responses(dialogue.sent())
    assert response["response"]["behavior"] == "deny"
    assert "cc2api refused" in response["response"]["message"]
    assert dialogue.conversation.approvals[approval_id].answer == "refused"
    assert dialogue.answered() == ["refused"]
