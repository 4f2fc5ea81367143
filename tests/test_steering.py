"""Steering runs with the fake CLI: detach and replay, approvals, interrupt, stream: false."""

from __future__ import annotations

import gc
import json
import uuid
import weakref
from contextlib import aclosing
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from cc2api.app import gateway_of
from cc2api.conversation import MAX_HELD_MESSAGES
from cc2api.limits import RunLimits

from .helpers import (
    Event,
    Gateway,
    Shared,
    alive,
    chat_body,
    collect,
    listing,
    make_settings,
    post_chat,
    served,
    sse_events,
    started_run,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)


async def start_and_hang_up(gw: Gateway, body: dict[str, object], until: str) -> tuple[str, int]:
    """Start a run, read until an event whose data holds ``until``, then hang up.

    Returns the process id and the last event id read.
    """
    async with gw.client.stream("POST", "/chat", json=body) as response:
        process_id = response.headers["x-process-id"]
        async with aclosing(sse_events(response)) as events:
            async for event in events:
                if until in event.data:
                    assert event.id is not None
                    return process_id, event.id
    raise AssertionError(f"the stream ended without {until!r}")


async def replay(gw: Gateway, process_id: str, **headers: str) -> list[Event]:
    """Read GET /chat/{id}/events to its end."""
    path = f"/chat/{process_id}/events"
    async with gw.client.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        return await collect(response)


async def listed_run(gw: Gateway, process_id: str) -> dict[str, Any]:
    """Return the run as GET /processes lists it (other tests' runs may be listed too)."""
    return next(run for run in await listing(gw.client) if run["process_id"] == process_id)


async def status_of(gw: Gateway, process_id: str) -> str:
    """Return the run's status as GET /processes lists it."""
    return str((await listed_run(gw, process_id))["status"])


async def wait_unlisted(gw: Gateway, process_id: str, timeout: float = 10) -> None:
    """Wait until GET /processes no longer lists the run; fail after ``timeout``."""
    with trio.fail_after(timeout):
        while any(run["process_id"] == process_id for run in await listing(gw.client)):
            await trio.sleep(0.05)


async def document_after(
    gw: Gateway, body: dict[str, object], method: str, action: str
) -> httpx.Response:
    """POST ``body`` with stream: false; once its CLI runs, send ``method /chat/{id}/action``.

    Returns the answer to the POST.
    """
    answers: list[httpx.Response] = []

    async def ask() -> None:
        answers.append(await gw.client.post("/chat", json={**body, "stream": False}))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        process_id = (await started_run(gw.client))["process_id"]
        await gw.client.request(method, f"/chat/{process_id}/{action}".rstrip("/"))
    return answers[0]


class TestDetach:
    async def test_detached_run_survives_a_hang_up_and_replays_from_last_event_id(
        self, gw: Shared, workdir: Path
    ) -> None:
        """After a dropped connection a detached run goes on; replay continues with no gap."""
        body = chat_body("ask echo hi", workdir, detach=True, approval="http")
        process_id, last = await start_and_hang_up(gw, body, '"approval_id"')
        # Nothing marks the moment the server hears the hang-up (a detached run shows no
        # change): this pause gives it the time to end the run wrongly, which is the check.
        await trio.sleep(0.3)
        assert await status_of(gw, process_id) == "running"
        approvals = (await gw.client.get(f"/chat/{process_id}/approvals")).json()
        approval_id = approvals["approvals"][0]["approval_id"]
        await gw.client.post(
            f"/chat/{process_id}/approvals/{approval_id}", json={"behavior": "allow"}
        )
        rest = await replay(gw, process_id, **{"Last-Event-ID": str(last)})
        assert [e.id for e in rest] == list(range(last + 1, last + 1 + len(rest)))
        assert rest[-1].event == "done"
        assert rest[-1].json()["status"] == "completed"

    async def test_replay_by_query_parameter_from_the_start(
        self, gw: Shared, workdir: Path
    ) -> None:
        """last_event_id in the query works like the header; without either, replay starts at 1."""
        response, first = await post_chat(gw.client, chat_body("echo x", workdir, detach=True))
        process_id = response.headers["x-process-id"]
        whole = await replay(gw, process_id)
        async with gw.client.stream(
            "GET", f"/chat/{process_id}/events", params={"last_event_id": "2"}
        ) as r:
            tail = await collect(r)
        assert [(e.id, e.event, e.data) for e in whole] == [(e.id, e.event, e.data) for e in first]
        assert [e.id for e in tail] == [e.id for e in first[2:]]

    async def test_without_detach_a_hang_up_still_ends_the_run(
        self, gw: Shared, workdir: Path
    ) -> None:
        """A run without detach is torn down when its client hangs up, as before."""
        process_id, _ = await start_and_hang_up(gw, chat_body("hang", workdir), '"pid"')
        pid = (await listed_run(gw, process_id))["pid"]
        await wait_unlisted(gw, process_id)
        assert not alive(pid)

    async def test_finished_detached_run_is_kept_then_evicted(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """Without a store, a finished detached run is readable until DETACHED_TTL_SECONDS pass."""
        settings = make_settings(detached_ttl_seconds=1.5, store="memory")
        async with served(settings, fake_environ) as gw:
            response, _ = await post_chat(gw.client, chat_body("echo x", workdir, detach=True))
            finished = trio.current_time()  # no later than the run finished
            process_id = response.headers["x-process-id"]
            listed = await listing(gw.client)
            health = (await gw.client.get("/health")).json()
            with trio.fail_after(10):
                while (later := await gw.client.get(f"/chat/{process_id}/events")).is_success:
                    await trio.sleep(0.05)
            kept = trio.current_time() - finished
        assert [(p["process_id"], p["status"], p["detached"]) for p in listed] == [
            (process_id, "completed", True)
        ]
        assert listed[0]["finished_at"] is not None
        assert health["active_processes"] == 0
        assert later.status_code == 404
        assert kept > 0.5  # kept for about the TTL (1.5 s), not evicted when it finished

    async def test_only_so_many_finished_runs_are_kept(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """Without a store, at most MAX_CONCURRENT_RUNS + MAX_QUEUED_RUNS finished runs are kept."""
        settings = make_settings(max_concurrent_runs=1, max_queued_runs=1, store="memory")
        async with served(settings, fake_environ) as gw:
            ids = []
            for _ in range(3):
                response, _ = await post_chat(gw.client, chat_body("echo", workdir, detach=True))
                ids.append(response.headers["x-process-id"])
            listed = [p["process_id"] for p in (await listing(gw.client))]
            oldest = await gw.client.get(f"/chat/{ids[0]}/events")
        assert listed == ids[1:]
        assert oldest.status_code == 404

    async def test_several_readers_at_once(self, gw: Shared, workdir: Path) -> None:
        """Two readers of one live run both get the whole run."""
        body = chat_body("ask echo hi", workdir, detach=True, approval="http")
        process_id, _ = await start_and_hang_up(gw, body, '"approval_id"')
        results: list[list[Event]] = []
        caught_up: list[None] = []  # one entry a reader that has read up to the approval

        async def read() -> None:
            path = f"/chat/{process_id}/events"
            async with gw.client.stream("GET", path) as response:
                assert response.status_code == 200, await response.aread()
                async with aclosing(sse_events(response)) as stream:
                    events = []
                    async for event in stream:
                        if event.event == ":":
                            continue
                        events.append(event)
                        if event.event == "approval":
                            caught_up.append(None)
            results.append(events)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            nursery.start_soon(read)
            await wait_until(lambda: len(caught_up) == 2, timeout=10)
            approval = (await gw.client.get(f"/chat/{process_id}/approvals")).json()
            approval_id = approval["approvals"][0]["approval_id"]
            await gw.client.post(
                f"/chat/{process_id}/approvals/{approval_id}", json={"behavior": "deny"}
            )
        assert len(results) == 2
        assert [(e.id, e.data) for e in results[0]] == [(e.id, e.data) for e in results[1]]
        assert results[0][-1].event == "done"

    async def test_buffer_overflow_is_announced_in_the_replay(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """Without a store, a replay of a run that outgrew RUN_BUFFER_BYTES starts with dropped."""
        settings = make_settings(run_buffer_bytes=64 * 1024, store="memory")
        async with served(settings, fake_environ) as gw:
            body = chat_body("lines 200 2000", workdir, detach=True)
            process_id, _ = await start_and_hang_up(gw, body, '"process_id"')
            with trio.fail_after(20):
                while await status_of(gw, process_id) == "running":
                    await trio.sleep(0.1)
            events = await replay(gw, process_id)
            resumed = await replay(gw, process_id, **{"Last-Event-ID": "3"})
        assert [(e.id, e.data) for e in resumed[1:]] == [(e.id, e.data) for e in events[1:]]
        assert resumed[0].event == "dropped"
        assert resumed[0].json()["dropped"] == resumed[0].json()["first_id"] - 4  # after 3
        assert events[0].event == "dropped"
        first = events[0].json()["first_id"]
        assert events[0].json()["dropped"] == first - 1
        assert [e.id for e in events[1:]] == list(range(first, first + len(events) - 1))
        assert events[-1].event == "done"

    @pytest.mark.parametrize(
        ("value", "fragment"),
        [("abc", "whole number"), ("999", "does not exist"), ("9" * 5000, "whole number")],
    )
    async def test_bad_last_event_id_is_400(
        self, gw: Shared, workdir: Path, value: str, fragment: str
    ) -> None:
        """A Last-Event-ID that is not a number, or names no event yet, gets 400 naming it."""
        response, _ = await post_chat(gw.client, chat_body("echo", workdir, detach=True))
        answer = await gw.client.get(
            f"/chat/{response.headers['x-process-id']}/events",
            headers={"Last-Event-ID": value},
        )
        assert answer.status_code == 400
        assert answer.json()["code"] == "invalid_last_event_id"
        assert fragment in answer.json()["detail"]


class TestApprovalsWithTheFake:
    async def test_pending_approval_dies_with_a_run_that_was_not_detached(
        self, gw: Shared, workdir: Path
    ) -> None:
        """A client hanging up on a pending approval (no detach) ends the run and its CLI."""
        body = chat_body("ask rm -rf /", workdir, approval="http")
        process_id, _ = await start_and_hang_up(gw, body, '"approval_id"')
        await wait_unlisted(gw, process_id)
        answer = await gw.client.get(f"/chat/{process_id}/approvals")
        assert answer.status_code == 404

    async def test_answers_are_checked(self, gw: Shared, workdir: Path) -> None:
        """Unknown approvals get 404, answered ones 409, and a bad answer body 422."""
        body = chat_body("ask ls", workdir, approval="http", detach=True)
        process_id, _ = await start_and_hang_up(gw, body, '"approval_id"')
        base = f"/chat/{process_id}/approvals"
        approval_id = (await gw.client.get(base)).json()["approvals"][0]["approval_id"]
        bad = await gw.client.post(f"{base}/{approval_id}", json={"behavior": "maybe"})
        unknown = await gw.client.post(f"{base}/nope", json={"behavior": "allow"})
        first = await gw.client.post(
            f"{base}/{approval_id}",
            json={"behavior": "allow", "updated_input": {"command": "ls", "timeout": 5000}},
        )
        again = await gw.client.post(f"{base}/{approval_id}", json={"behavior": "deny"})
        events = await replay(gw, process_id)
        assert bad.status_code == 422
        assert "behavior" in bad.json()["detail"]
        assert unknown.status_code == 404
        assert unknown.json()["code"] == "approval_not_found"
        assert first.json() == {"approval_id": approval_id, "answer": "allow"}
        assert again.status_code == 409
        assert again.json()["code"] == "approval_answered"
        decision = next(e.json()["decision"] for e in events if '"decision":' in e.data)
        assert decision == {"behavior": "allow", "updatedInput": {"command": "ls", "timeout": 5000}}
        answered = next(e.json() for e in events if e.event == "approval_answered")
        assert answered == {"approval_id": approval_id, "answer": "allow"}

    async def test_an_answer_may_not_change_what_the_call_acts_on(
        self, gw: Shared, workdir: Path
    ) -> None:
        """updated_input changing Bash's command gets 403, and the approval still waits."""
        body = chat_body("ask ls", workdir, approval="http", detach=True)
        process_id, _ = await start_and_hang_up(gw, body, '"approval_id"')
        base = f"/chat/{process_id}/approvals"
        approval_id = (await gw.client.get(base)).json()["approvals"][0]["approval_id"]
        changed = await gw.client.post(
            f"{base}/{approval_id}",
            json={"behavior": "allow", "updated_input": {"command": "rm -rf ~"}},
        )
        still = (await gw.client.get(base)).json()["count"]
        denied = await gw.client.post(f"{base}/{approval_id}", json={"behavior": "deny"})
        events = await replay(gw, process_id)
        assert changed.status_code == 403
        assert changed.json()["code"] == "updated_input_forbidden"
        assert "'command'" in changed.json()["detail"]
        assert still == 1
        assert denied.json()["answer"] == "deny"
        decision = next(e.json()["decision"] for e in events if '"decision":' in e.data)
        assert decision["behavior"] == "deny"

    async def test_a_safety_check_is_refused_without_asking(
        self, gw: Shared, workdir: Path
    ) -> None:
        """A question flagged safetyCheck is denied at once, with its reasons, and never pending."""
        request = {
            "tool_name": "Write",
            "display_name": "Write",
            "input": {"file_path": str(workdir / "notes.txt"), "content": "x"},
            "description": "notes.txt",
            "decision_reason": "a sensitive file",
            "decision_reason_type": "safetyCheck",
            "tool_use_id": "toolu_1",
        }
        body = chat_body("ask-json " + json.dumps(request), workdir, approval="http")
        _, events = await post_chat(gw.client, body)
        (asked,) = [e.json() for e in events if e.event == "approval"]
        assert asked["decision_reason_type"] == "safetyCheck"
        assert asked["decision_reason"] == "a sensitive file"
        assert (asked["description"], asked["tool_use_id"]) == ("notes.txt", "toolu_1")
        assert "safety check" in asked["refused"]
        answered = next(e.json() for e in events if e.event == "approval_answered")
        assert answered["answer"] == "refused"
        decision = next(e.json()["decision"] for e in events if '"decision":' in e.data)
        assert decision["behavior"] == "deny"
        assert "cc2api refused" in decision["message"]

    @pytest.mark.parametrize(
        "path", ["home/.claude/settings.json", "work/.git/hooks/pre-commit", "home/.bashrc"]
    )
    async def test_protected_paths_are_refused_even_unflagged(
        self, gw: Shared, workdir: Path, path: str
    ) -> None:
        """A write to configuration later runs load is refused, whatever reason the CLI gives."""
        target = workdir.parent / path
        request = {"tool_name": "Write", "input": {"file_path": str(target), "content": "x"}}
        body = chat_body("ask-json " + json.dumps(request), workdir, approval="http")
        _, events = await post_chat(gw.client, body)
        (asked,) = [e.json() for e in events if e.event == "approval"]
        assert "configuration" in asked["refused"]
        answered = next(e.json() for e in events if e.event == "approval_answered")
        assert answered["answer"] == "refused"

    async def test_a_path_outside_the_roots_is_refused(
        self, fake_environ: dict[str, str], workdir: Path, tmp_path: Path
    ) -> None:
        """With ALLOWED_CWD_ROOTS, a question about a file outside the run's folders is refused."""
        outside = tmp_path / "elsewhere" / "x.txt"
        request = {"tool_name": "Read", "input": {"file_path": str(outside)}}
        body = chat_body("ask-json " + json.dumps(request), workdir, approval="http")
        settings = make_settings(allowed_cwd_roots=str(workdir), confine_runs="off")
        async with served(settings, fake_environ) as gw:
            _, events = await post_chat(gw.client, body)
        (asked,) = [e.json() for e in events if e.event == "approval"]
        assert "outside the folders" in asked["refused"]

    async def test_unanswered_approval_times_out_as_a_denial_that_says_so(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """After APPROVAL_TIMEOUT_SECONDS the call is denied with a message naming the timeout."""
        async with served(make_settings(approval_timeout_seconds=0.5), fake_environ) as gw:
            _, events = await post_chat(gw.client, chat_body("ask ls", workdir, approval="http"))
        decision = next(e.json()["decision"] for e in events if '"decision":' in e.data)
        assert decision["behavior"] == "deny"
        assert "timed out" in decision["message"]
        answered = next(e.json() for e in events if e.event == "approval_answered")
        assert answered["answer"] == "timeout"
        assert events[-1].json()["status"] == "completed"

    async def test_detached_run_keeps_its_approval_after_a_hang_up(
        self, gw: Shared, workdir: Path
    ) -> None:
        """A detached run's pending approval survives the client's hang-up and can be denied."""
        body = chat_body("ask ls", workdir, approval="http", detach=True)
        process_id, _ = await start_and_hang_up(gw, body, '"approval_id"')
        # Nothing marks the moment the server hears the hang-up: this pause gives it the
        # time to drop the approval wrongly, which is the check.
        await trio.sleep(0.5)
        pending = (await gw.client.get(f"/chat/{process_id}/approvals")).json()
        approval_id = pending["approvals"][0]["approval_id"]
        await gw.client.post(
            f"/chat/{process_id}/approvals/{approval_id}",
            json={"behavior": "deny", "message": "not today"},
        )
        events = await replay(gw, process_id)
        assert pending["count"] == 1
        assert pending["approvals"][0]["input"] == {"command": "ls"}
        decision = next(e.json()["decision"] for e in events if '"decision":' in e.data)
        assert decision == {"behavior": "deny", "message": "not today"}

    async def test_approval_comes_after_the_lines_before_it(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """An approval event follows the tool call that led to it, even from the same read."""
        async with served(make_settings(approval_timeout_seconds=0.5), fake_environ) as gw:
            _, events = await post_chat(gw.client, chat_body("ask ls", workdir, approval="http"))
        names = [e.event for e in events]
        call = next(i for i, e in enumerate(events) if '"tool_use"' in e.data)
        assert names.index("approval") == call + 1
        assert [e.id for e in events] == list(range(1, len(events) + 1))
        assert not any('"control_' in e.data for e in events if e.event == "message")

    async def test_request_withdrawn_by_the_cli_is_cancelled(
        self, gw: Shared, workdir: Path
    ) -> None:
        """A control_cancel_request is not passed on; it ends its approval as cancelled."""
        body = chat_body("ask-withdraw ls", workdir, approval="http", detach=True)
        _, events = await post_chat(gw.client, body)
        process_id = events[0].json()["process_id"]
        approval_id = next(e.json()["approval_id"] for e in events if e.event == "approval")
        late = await gw.client.post(
            f"/chat/{process_id}/approvals/{approval_id}", json={"behavior": "allow"}
        )
        answered = next(e.json() for e in events if e.event == "approval_answered")
        assert answered["answer"] == "cancelled"
        assert not any("control_" in e.data for e in events if e.event == "message")
        assert late.status_code == 409

    async def test_question_after_the_input_closed_is_ignored(
        self, gw: Shared, workdir: Path
    ) -> None:
        """A can_use_tool after the run's input closed makes no approval, and done stays last."""
        body = chat_body("ask-late", workdir, approval="http", detach=True)
        response, events = await post_chat(gw.client, body)
        listed = await listed_run(gw, response.headers["x-process-id"])
        assert "approval" not in [e.event for e in events]
        assert events[-1].event == "done"
        assert listed["pending_approvals"] == 0

    async def test_question_read_after_the_cli_exited_is_ignored(
        self, gw: Shared, workdir: Path
    ) -> None:
        """A can_use_tool still in the pipe when the CLI exits does not fail the run."""
        body = chat_body("ask-and-exit 40", workdir, approval="http")
        async with gw.client.stream("POST", "/chat", json=body) as response:
            # Read nothing until the CLI has exited, its output still waiting for us; when
            # backpressure keeps it from exiting, give up on that after 1.5 s.
            process_id = response.headers["x-process-id"]
            with trio.move_on_after(1.5):
                while (pid := (await listed_run(gw, process_id))["pid"]) is None:
                    await trio.sleep(0.02)
                await wait_until(lambda: not alive(pid), timeout=20)
            events = await collect(response)
        # Whether the question is read before or after the exit is the scheduler's
        # choice; either way the run ends cleanly, with no approval left open.
        assert "error" not in [e.event for e in events]
        assert events[-1].json()["status"] == "completed"

    async def test_approval_timeout_zero_waits_for_ever(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """With APPROVAL_TIMEOUT_SECONDS=0 an approval waits past any timer for its answer."""
        async with served(make_settings(approval_timeout_seconds=0), fake_environ) as gw:
            body = chat_body("ask ls", workdir, approval="http", detach=True)
            process_id, _ = await start_and_hang_up(gw, body, '"approval_id"')
            # The wait is the check: no timer may deny it meanwhile (the core layer,
            # tests/test_core_conversation.py, waits a simulated day).
            await trio.sleep(1.5)
            pending = (await gw.client.get(f"/chat/{process_id}/approvals")).json()
            approval_id = pending["approvals"][0]["approval_id"]
            await gw.client.post(
                f"/chat/{process_id}/approvals/{approval_id}", json={"behavior": "allow"}
            )
            events = await replay(gw, process_id)
        assert pending["count"] == 1
        assert events[-1].json()["status"] == "completed"


class TestInterruptWithTheFake:
    async def test_interrupt_goes_on_when_its_caller_gives_up(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A client that stops waiting on POST /interrupt does not stop the forced teardown."""
        settings = make_settings(interrupt_timeout_seconds=0.5)
        async with served(settings, fake_environ) as gw:
            process_id, _ = await start_and_hang_up(
                gw, chat_body("hang", workdir, detach=True), '"pid"'
            )
            async with httpx.AsyncClient(base_url=gw.url, auth=gw.client.auth) as impatient:
                with pytest.raises(httpx.ReadTimeout):
                    await impatient.post(f"/chat/{process_id}/interrupt", timeout=0.1)
            events = await replay(gw, process_id)
        assert events[-1].json()["status"] == "interrupted"

    async def test_interrupt_with_no_turn_in_progress_ends_the_run_as_it_was(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """Interrupting a run waiting for follow-ups ends it; its status stays completed."""
        settings = make_settings(followup_grace_seconds=30)
        async with served(settings, fake_environ) as gw:
            body = chat_body("echo x", workdir, detach=True)
            process_id, _ = await start_and_hang_up(gw, body, '"type":"result"')
            answer = await gw.client.post(f"/chat/{process_id}/interrupt")
        assert answer.json() == {"process_id": process_id, "status": "completed", "forced": False}

    async def test_cli_that_ignores_the_interrupt_is_torn_down(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """An interrupt the CLI does not acknowledge falls back to the hard teardown."""
        settings = make_settings(interrupt_timeout_seconds=0.5)
        async with served(settings, fake_environ) as gw:
            process_id, _ = await start_and_hang_up(
                gw, chat_body("hang", workdir, detach=True), '"pid"'
            )
            runs = await listing(gw.client)
            pid = runs[0]["pid"]
            answer = await gw.client.post(f"/chat/{process_id}/interrupt")
            events = await replay(gw, process_id)
        assert answer.json() == {"process_id": process_id, "status": "interrupted", "forced": True}
        assert not alive(pid)
        assert events[-1].json()["status"] == "interrupted"

    async def test_interrupt_is_heard_while_a_slow_client_holds_the_run_back(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """An interrupt is acknowledged, not forced, even while the client reads nothing."""
        settings = make_settings(interrupt_timeout_seconds=2)
        async with served(settings, fake_environ) as gw:
            body = chat_body("interruptible", workdir)
            async with gw.client.stream("POST", "/chat", json=body) as response:
                process_id = response.headers["x-process-id"]
                # Reads nothing for a while, so that the CLI blocks on its stdout: the
                # interrupt must get through all the same. This pause is the behaviour.
                await trio.sleep(1.5)
                async with httpx.AsyncClient(base_url=gw.url, auth=gw.client.auth) as other:
                    answer = await other.post(f"/chat/{process_id}/interrupt")
                events = await collect(response)
        assert answer.json() == {"process_id": process_id, "status": "interrupted", "forced": False}
        assert events[-1].json()["status"] == "interrupted"
        assert "aborted_streaming" in events[-2].data

    async def test_interrupt_unknown_run_is_404(self, gw: Shared) -> None:
        """Interrupting a run that does not exist gets 404."""
        answer = await gw.client.post("/chat/0b6f4c1e-3b9a-4f7e-8d2c-5a1e9f3c7b21/interrupt")
        assert answer.status_code == 404


class TestFollowUpWithTheFake:
    async def test_too_many_waiting_follow_ups_get_429(self, gw: Shared, workdir: Path) -> None:
        """Past MAX_HELD_MESSAGES follow-ups waiting on one turn, another gets 429."""
        process_id, _ = await start_and_hang_up(
            gw, chat_body("hang", workdir, detach=True), '"pid"'
        )
        path = f"/chat/{process_id}/messages"
        answers = [
            await gw.client.post(path, json={"prompt": f"m{i}"})
            for i in range(MAX_HELD_MESSAGES + 1)
        ]
        await gw.client.delete(f"/chat/{process_id}")
        assert [a.json()["ahead"] for a in answers[:-1]] == list(range(1, MAX_HELD_MESSAGES + 1))
        assert answers[-1].status_code == 429
        assert answers[-1].json()["code"] == "too_many_messages"
        assert "retry-after" in answers[-1].headers

    async def test_follow_ups_past_a_runs_byte_limit_get_429(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """Follow-ups a run holds may add up to FOLLOWUP_MAX_BYTES; past it, 429 names it."""
        settings = make_settings(followup_max_bytes=256 * 1024)
        async with served(settings, fake_environ) as gw:
            process_id, _ = await start_and_hang_up(
                gw, chat_body("hang", workdir, detach=True), '"pid"'
            )
            path = f"/chat/{process_id}/messages"
            answers = [await gw.client.post(path, json={"prompt": "x" * 100_000}) for _ in range(3)]
            await gw.client.delete(f"/chat/{process_id}")
        assert [a.status_code for a in answers] == [202, 202, 429]
        assert answers[-1].json()["code"] == "too_many_messages"
        assert "FOLLOWUP_MAX_BYTES" in answers[-1].json()["detail"]

    async def test_follow_ups_past_the_servers_byte_limit_get_429_until_freed(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """Runs share FOLLOWUPS_TOTAL_MAX_BYTES of held follow-ups; an ended run frees its part."""
        settings = make_settings(followups_total_max_bytes=256 * 1024)
        message = {"prompt": "x" * 100_000}
        async with served(settings, fake_environ) as gw:
            hang = chat_body("hang", workdir, detach=True)
            first, _ = await start_and_hang_up(gw, hang, '"pid"')
            second, _ = await start_and_hang_up(gw, hang, '"pid"')
            held = [await gw.client.post(f"/chat/{first}/messages", json=message) for _ in range(2)]
            refused = await gw.client.post(f"/chat/{second}/messages", json=message)
            await gw.client.delete(f"/chat/{first}")
            taken = await gw.client.post(f"/chat/{second}/messages", json=message)
            await gw.client.delete(f"/chat/{second}")
        assert [a.status_code for a in held] == [202, 202]
        assert refused.status_code == 429
        assert "FOLLOWUPS_TOTAL_MAX_BYTES" in refused.json()["detail"]
        assert taken.status_code == 202

    async def test_follow_up_to_an_ended_run_is_409(self, gw: Shared, workdir: Path) -> None:
        """A follow-up to a run that has ended gets 409 run_ended."""
        response, _ = await post_chat(gw.client, chat_body("echo", workdir, detach=True))
        answer = await gw.client.post(
            f"/chat/{response.headers['x-process-id']}/messages", json={"prompt": "more"}
        )
        assert answer.status_code == 409
        assert answer.json()["code"] == "run_ended"

    async def test_follow_up_body_is_validated(self, gw: Shared, workdir: Path) -> None:
        """A follow-up without a prompt, or with unknown fields, gets 422 naming them."""
        process_id, _ = await start_and_hang_up(
            gw, chat_body("hang", workdir, detach=True), '"pid"'
        )
        answer = await gw.client.post(f"/chat/{process_id}/messages", json={"text": "more"})
        await gw.client.delete(f"/chat/{process_id}")
        assert answer.status_code == 422
        assert "prompt: field required" in answer.json()["detail"]
        assert "text: unknown field" in answer.json()["detail"]


class TestFollowUpGrace:
    async def test_run_ends_when_the_grace_runs_out(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """With FOLLOWUP_GRACE_SECONDS the run ends that long after its last answer, completed."""
        async with served(make_settings(followup_grace_seconds=1), fake_environ) as gw:
            start = trio.current_time()
            _, events = await post_chat(gw.client, chat_body("echo x", workdir))
            took = trio.current_time() - start
        assert events[-1].json()["status"] == "completed"
        assert 1 <= took < 10


class TestNewRoutes:
    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/chat/{id}/events"),
            ("POST", "/chat/{id}/interrupt"),
            ("POST", "/chat/{id}/messages"),
            ("GET", "/chat/{id}/approvals"),
            ("POST", "/chat/{id}/approvals/x"),
        ],
    )
    @pytest.mark.parametrize("process_id", ["0b6f4c1e-3b9a-4f7e-8d2c-5a1e9f3c7b21", "nope"])
    async def test_unknown_or_malformed_process_id_is_404(
        self, gw: Shared, method: str, path: str, process_id: str
    ) -> None:
        """Every route on a run answers 404 JSON for an unknown or non-UUID process id."""
        answer = await gw.client.request(
            method, path.format(id=process_id), json={"prompt": "x", "behavior": "allow"}
        )
        assert answer.status_code == 404
        assert answer.json()["code"] == "process_not_found"

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("POST", "/chat/{id}/events"),
            ("GET", "/chat/{id}/interrupt"),
            ("DELETE", "/chat/{id}/messages"),
            ("POST", "/chat/{id}/approvals"),
            ("GET", "/chat/{id}/approvals/x"),
        ],
    )
    async def test_wrong_method_is_405(self, gw: Shared, method: str, path: str) -> None:
        """A method a run's route does not take gets 405 JSON naming it."""
        answer = await gw.client.request(method, path.format(id=uuid.uuid4()))
        assert answer.status_code == 405
        assert method in answer.json()["detail"]


class TestDocument:
    async def test_stream_false_answers_one_document(self, gw: Shared, workdir: Path) -> None:
        """stream: false returns every line parsed, the result and the status as one JSON."""
        answer = await gw.client.post("/chat", json=chat_body("echo hi", workdir, stream=False))
        assert answer.status_code == 200
        body = answer.json()
        assert body["process_id"] == answer.headers["x-process-id"]
        assert body["status"] == "completed"
        assert body["exit_code"] == 0
        assert body["result"]["result"] == "echo hi"
        assert [m["type"] for m in body["messages"]] == ["system", "assistant", "result"]
        assert body["session_id"] == body["messages"][0]["session_id"]

    @pytest.mark.parametrize(
        ("prompt", "fields", "status", "code"),
        [
            ("crash", {}, 502, "cli_failed"),
            ("hang", {"timeout_seconds": 0.5}, 504, "timeout"),
        ],
    )
    async def test_stream_false_failures_get_their_status(
        self,
        gw: Shared,
        workdir: Path,
        *,
        prompt: str,
        fields: dict[str, object],
        status: int,
        code: str,
    ) -> None:
        """A failed or timed-out run without streaming answers with its HTTP status and code."""
        body = chat_body(prompt, workdir, stream=False, **fields)
        answer = await gw.client.post("/chat", json=body)
        assert answer.status_code == status
        assert answer.json()["code"] == code
        assert answer.json()["error"]["code"] == code

    async def test_stream_false_output_over_the_cap_fails(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A run printing more than a document may hold ends with document_too_large (502)."""
        settings = make_settings()
        limits = replace(RunLimits.from_settings(settings), max_document_bytes=100_000)
        async with served(settings, fake_environ, limits=limits) as gw:
            body = chat_body("lines 200 1000", workdir, stream=False)
            answer = await gw.client.post("/chat", json=body)
        assert answer.status_code == 502
        assert answer.json()["code"] == "document_too_large"

    async def test_stream_false_hang_up_cancels_the_run(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A client waiting for a document that hangs up cancels the run (without detach)."""
        async with served(make_settings(), fake_environ) as gw:
            async with httpx.AsyncClient(base_url=gw.url, auth=gw.client.auth) as impatient:
                with pytest.raises(httpx.ReadTimeout):
                    await impatient.post(
                        "/chat", json=chat_body("hang", workdir, stream=False), timeout=1.5
                    )
            with trio.fail_after(10):
                while (await gw.client.get("/processes")).json()["count"]:
                    await trio.sleep(0.05)

    async def test_stream_false_interrupted_is_200(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A run without streaming that is interrupted answers 200 with status interrupted."""
        settings = make_settings(interrupt_timeout_seconds=0.5)
        async with served(settings, fake_environ) as gw:
            answer = await document_after(gw, chat_body("hang", workdir), "POST", "interrupt")
        assert answer.status_code == 200
        assert answer.json()["status"] == "interrupted"

    async def test_stream_false_obeys_the_server_timeout(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """RUN_TIMEOUT_SECONDS ends a run without streaming too: 504 timeout."""
        async with served(make_settings(run_timeout_seconds=0.5), fake_environ) as gw:
            answer = await gw.client.post("/chat", json=chat_body("hang", workdir, stream=False))
        assert answer.status_code == 504
        assert answer.json()["status"] == "timeout"

    async def test_stream_false_detached_survives_a_hang_up(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A detached run without streaming goes on after its client hangs up."""
        async with served(make_settings(), fake_environ) as gw:
            async with httpx.AsyncClient(base_url=gw.url, auth=gw.client.auth) as impatient:
                body = chat_body("hang", workdir, stream=False, detach=True)
                with pytest.raises(httpx.ReadTimeout):
                    await impatient.post("/chat", json=body, timeout=1)
            # Nothing marks the moment the server hears the hang-up: this pause gives it
            # the time to end the run wrongly, which is the check.
            await trio.sleep(0.5)
            runs = await listing(gw.client)
            await gw.client.delete(f"/chat/{runs[0]['process_id']}")
        assert runs[0]["status"] == "running"

    async def test_stream_false_cancelled_by_delete_is_409(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A run without streaming cancelled by DELETE answers 409 cancelled."""
        async with served(make_settings(), fake_environ) as gw:
            answer = await document_after(gw, chat_body("hang", workdir), "DELETE", "")
        assert answer.status_code == 409
        assert answer.json()["code"] == "cancelled"
        assert answer.json()["status"] == "cancelled"


class TestFreedRuns:
    async def test_finished_runs_are_freed_without_the_cycle_collector(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """Completed, cancelled, queued, interrupted and asking runs are freed by refcount alone."""
        settings = make_settings(max_concurrent_runs=1, detached_ttl_seconds=0.2)
        refs: list[weakref.ref[object]] = []
        gc.collect()
        gc.disable()  # what the cycle collector would free does not count
        try:
            async with served(settings, fake_environ) as gw:
                registry = gateway_of(gw.app).registry

                def track(process_id: str) -> None:
                    refs.append(weakref.ref(registry.get(process_id)))

                async with gw.client.stream(
                    "POST", "/chat", json=chat_body("echo hi", workdir)
                ) as response:
                    track(response.headers["x-process-id"])
                    events = await collect(response)
                hanging, _ = await start_and_hang_up(
                    gw, chat_body("hang", workdir, detach=True), '"pid"'
                )
                track(hanging)
                queued, _ = await start_and_hang_up(
                    gw, chat_body("echo later", workdir, detach=True), '"position"'
                )
                track(queued)
                await gw.client.post(f"/chat/{queued}/messages", json={"prompt": "x" * 100_000})
                await gw.client.delete(f"/chat/{queued}")
                await gw.client.delete(f"/chat/{hanging}")
                asking, _ = await start_and_hang_up(
                    gw, chat_body("ask ls", workdir, approval="http", detach=True), '"approval_id"'
                )
                track(asking)
                pending = (await gw.client.get(f"/chat/{asking}/approvals")).json()
                approval_id = pending["approvals"][0]["approval_id"]
                await gw.client.post(
                    f"/chat/{asking}/approvals/{approval_id}", json={"behavior": "deny"}
                )
                interrupted, _ = await start_and_hang_up(
                    gw, chat_body("interruptible", workdir, detach=True), '"n"'
                )
                track(interrupted)
                await gw.client.post(f"/chat/{interrupted}/interrupt")
                with trio.fail_after(20):  # the detached ones are evicted after their TTL
                    while registry.runs():
                        await trio.sleep(0.05)
                assert events[-1].json()["status"] == "completed"
            assert len(refs) == 5
            assert [ref() for ref in refs] == [None] * 5
        finally:
            gc.enable()
