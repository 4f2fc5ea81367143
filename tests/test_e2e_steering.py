"""Steering with the real Claude Code CLI: replay, interrupt, follow-ups, approvals, documents."""

from __future__ import annotations

from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
import trio

from .helpers import (
    Event,
    Served,
    alive,
    chat_body,
    collect,
    make_settings,
    post_chat,
    served,
    sse_events,
    wait_until,
)
from .scripted_api import ScriptedAPI, all_user_text
from .test_e2e_real_cli import tool_process

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(name="settings")
def _settings(real_claude: Path) -> Any:
    return make_settings(claude_path=real_claude, kill_grace_seconds=3.0)


def lines(events: list[Event]) -> list[dict[str, Any]]:
    """Return the CLI's lines among ``events``."""
    return [e.json() for e in events if e.event == "message"]


def results(events: list[Event]) -> list[dict[str, Any]]:
    """Return the CLI's result lines among ``events``."""
    return [line for line in lines(events) if line.get("type") == "result"]


async def approve_when_asked(
    gw: Served, body: dict[str, Any], answer: dict[str, Any]
) -> list[Event]:
    """Run ``body`` (approval: http), answer its first approval with ``answer``, read to the end."""
    async with gw.client.stream("POST", "/chat", json=body) as response:
        process_id = response.headers["x-process-id"]
        events: list[Event] = []
        async with aclosing(sse_events(response)) as stream:
            async for event in stream:
                if event.event == ":":
                    continue
                events.append(event)
                if event.event == "approval":
                    listed = (await gw.client.get(f"/chat/{process_id}/approvals")).json()
                    assert listed["approvals"] == [event.json()]
                    approval_id = event.json()["approval_id"]
                    reply = await gw.client.post(
                        f"/chat/{process_id}/approvals/{approval_id}", json=answer
                    )
                    assert reply.status_code == 200, reply.text
    return events


class TestReattach:
    async def test_replay_after_a_dropped_connection_has_no_gap_and_no_duplicate(
        self, settings: Any, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """A detached run read again from Last-Event-ID joins up exactly with what was read."""
        body = chat_body("SLOW 15", workdir, detach=True, include_partial_messages=True)
        async with served(settings, real_environ) as gw:
            seen: list[Event] = []
            async with gw.client.stream("POST", "/chat", json=body) as response:
                process_id = response.headers["x-process-id"]
                async with aclosing(sse_events(response)) as stream:
                    async for event in stream:
                        if event.event != ":":
                            seen.append(event)
                        if "word3" in event.data:
                            break  # hang up mid-answer
            last = seen[-1].id
            assert last is not None
            await trio.sleep(1)  # the run goes on meanwhile
            async with gw.client.stream(
                "GET", f"/chat/{process_id}/events", headers={"Last-Event-ID": str(last)}
            ) as response:
                rest = await collect(response)
        ids = [e.id for e in seen + rest]
        assert ids == list(range(1, len(ids) + 1))
        text = "".join(
            line["event"]["delta"].get("text", "")
            for line in lines(seen + rest)
            if line.get("type") == "stream_event" and "delta" in line["event"]
        )
        assert text == "".join(f"word{i} " for i in range(15))
        assert rest[-1].json()["status"] == "completed"


class TestInterrupt:
    async def test_interrupt_mid_answer_then_resume(
        self,
        settings: Any,
        real_environ: dict[str, str],
        workdir: Path,
        scripted_api: ScriptedAPI,
    ) -> None:
        """An interrupt ends the turn through the CLI, not by a kill; the session resumes."""
        async with served(settings, real_environ) as gw:
            async with gw.client.stream(
                "POST", "/chat", json=chat_body("SLOW story", workdir)
            ) as response:
                process_id = response.headers["x-process-id"]
                await wait_until(lambda: "SLOW story" in scripted_api.prompts(), 30)
                await trio.sleep(0.5)  # the model is streaming its answer
                started = trio.current_time()
                answer = await gw.client.post(f"/chat/{process_id}/interrupt")
                took = trio.current_time() - started
                events = await collect(response)
            done = events[-1].json()
            resumed = await post_chat(
                gw.client, chat_body("go on", workdir, session_id=done["session_id"])
            )
        assert answer.json() == {"process_id": process_id, "status": "interrupted", "forced": False}
        assert took < 5
        assert done["status"] == "interrupted"
        result = results(events)[-1]
        assert result["subtype"] == "error_during_execution"
        assert "abort" in result["terminal_reason"]
        assert resumed[1][-1].json()["status"] == "completed"
        assert "SLOW story" in all_user_text(scripted_api.requests[-1])

    async def test_interrupt_kills_the_running_tool(
        self, settings: Any, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """An interrupt while a Bash command runs ends that command and the run, not forced."""
        command = ["sleep", "600"]
        body = chat_body("RUN_BASH: sleep 600", workdir, detach=True)
        async with served(settings, real_environ) as gw:
            async with gw.client.stream("POST", "/chat", json=body) as response:
                process_id = response.headers["x-process-id"]
            await wait_until(lambda: tool_process(process_id, command) is not None, 60)
            pid = tool_process(process_id, command)
            assert pid is not None
            answer = await gw.client.post(f"/chat/{process_id}/interrupt")
        assert answer.json() == {"process_id": process_id, "status": "interrupted", "forced": False}
        assert not alive(pid)


class TestFollowUp:
    async def test_follow_up_is_answered_in_the_same_run(
        self, settings: Any, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """A message sent while the first turn runs is answered after it, in the same stream."""
        async with served(settings, real_environ) as gw:
            async with gw.client.stream(
                "POST", "/chat", json=chat_body("SLOW 10", workdir)
            ) as response:
                process_id = response.headers["x-process-id"]
                sent = await gw.client.post(
                    f"/chat/{process_id}/messages", json={"prompt": "and one more thing"}
                )
                events = await collect(response)
        assert sent.status_code == 202
        assert sent.json() == {"process_id": process_id, "ahead": 1}
        answers = results(events)
        assert len(answers) == 2
        assert answers[1]["result"] == "echo: and one more thing"
        assert answers[0]["session_id"] == answers[1]["session_id"]
        assert events[-1].json()["status"] == "completed"

    async def test_follow_up_within_the_grace_after_the_last_answer(
        self, real_claude: Path, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """With FOLLOWUP_GRACE_SECONDS the run waits after its answer for another message."""
        settings = make_settings(claude_path=real_claude, followup_grace_seconds=10)
        async with served(settings, real_environ) as gw:
            async with gw.client.stream(
                "POST", "/chat", json=chat_body("first", workdir)
            ) as response:
                process_id = response.headers["x-process-id"]
                events: list[Event] = []
                async with aclosing(sse_events(response)) as stream:
                    async for event in stream:
                        events.append(event)
                        if '"type":"result"' in event.data:
                            break
                    sent = await gw.client.post(
                        f"/chat/{process_id}/messages", json={"prompt": "second"}
                    )
                    assert sent.status_code == 202
                    events += [e async for e in stream if e.event != ":"]
        assert [r["result"] for r in results(events)] == ["echo: first", "echo: second"]


class TestApprovals:
    async def test_allowed_command_runs(
        self, settings: Any, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """An approval answered allow lets the Bash command run."""
        body = chat_body("RUN_BASH: touch approved.txt", workdir, tools=["Bash"], approval="http")
        async with served(settings, real_environ) as gw:
            events = await approve_when_asked(gw, body, {"behavior": "allow"})
        approval = next(e.json() for e in events if e.event == "approval")
        assert approval["tool_name"] == "Bash"
        assert approval["input"]["command"] == "touch approved.txt"
        assert isinstance(approval["suggestions"], list)
        assert (workdir / "approved.txt").exists()
        assert events[-1].json()["status"] == "completed"

    async def test_denied_command_does_not_run(
        self, settings: Any, real_environ: dict[str, str], workdir: Path, scripted_api: ScriptedAPI
    ) -> None:
        """An approval answered deny keeps the command from running; the model hears why."""
        body = chat_body("RUN_BASH: touch denied.txt", workdir, tools=["Bash"], approval="http")
        async with served(settings, real_environ) as gw:
            events = await approve_when_asked(
                gw, body, {"behavior": "deny", "message": "not on a Friday"}
            )
        assert not (workdir / "denied.txt").exists()
        assert "not on a Friday" in str(scripted_api.requests[-1]["messages"][-1])
        assert events[-1].json()["status"] == "completed"

    async def test_unanswered_approval_times_out(
        self,
        real_claude: Path,
        real_environ: dict[str, str],
        workdir: Path,
        scripted_api: ScriptedAPI,
    ) -> None:
        """An approval nobody answers is denied after APPROVAL_TIMEOUT_SECONDS, saying so."""
        settings = make_settings(claude_path=real_claude, approval_timeout_seconds=1)
        body = chat_body("RUN_BASH: touch late.txt", workdir, tools=["Bash"], approval="http")
        async with served(settings, real_environ) as gw:
            _, events = await post_chat(gw.client, body)
        assert not (workdir / "late.txt").exists()
        answered = next(e.json() for e in events if e.event == "approval_answered")
        assert answered["answer"] == "timeout"
        assert "timed out" in str(scripted_api.requests[-1]["messages"][-1])


class TestDocument:
    async def test_stream_false_returns_the_whole_run(
        self, settings: Any, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """stream: false answers with the result and every line once the run has ended."""
        async with served(settings, real_environ) as gw:
            answer = await gw.client.post(
                "/chat", json=chat_body("hello document", workdir, stream=False)
            )
        body = answer.json()
        assert answer.status_code == 200
        assert body["status"] == "completed"
        assert body["result"]["result"] == "echo: hello document"
        assert body["messages"][0]["subtype"] == "init"
        assert body["messages"][-1] == body["result"]
        assert body["session_id"] == body["result"]["session_id"]
