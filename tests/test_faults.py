"""Faults the real CLI cannot be made to show, through a real server and the fake CLI."""

from __future__ import annotations

import shutil
import uuid
from contextlib import aclosing
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import trio

from cc2api.limits import RunLimits

from .helpers import (
    FAKE_CLAUDE,
    Event,
    Served,
    Shared,
    chat_body,
    collect,
    exists,
    make_settings,
    post_chat,
    processes_with_marker,
    saved_session,
    served,
    sse_events,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)

GRACE = 1.5


async def run_until_message(
    gw: Served, body: dict[str, Any], key: str, *, then: str
) -> tuple[str, Any, list[Event], float]:
    """Start a run, wait for the message carrying ``key``, then DELETE or hang up.

    Returns the process id, that message's value for ``key``, the events after it
    (for DELETE), and the seconds from the action to the end of the stream.
    """
    async with gw.client.stream("POST", "/chat", json=body) as response:
        process_id = response.headers["x-process-id"]
        value: Any = None
        async with aclosing(sse_events(response)) as events:
            async for event in events:
                if event.event == "message" and key in event.json():
                    value = event.json()[key]
                    break
            start = trio.current_time()
            if then == "disconnect":
                return process_id, value, [], 0.0
            async with httpx.AsyncClient(base_url=gw.url, auth=gw.client.auth) as other:
                answer = await other.delete(f"/chat/{process_id}")
            assert answer.status_code == 200
            assert answer.json() == {"process_id": process_id, "status": "cancelled"}
            rest = [event async for event in events if event.event != ":"]
            return process_id, value, rest, trio.current_time() - start


class TestDelete:
    async def test_ends_stream_with_cancelled_and_kills_cli(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """DELETE mid-stream ends the stream within 1 s with done 'cancelled'; the CLI is gone."""
        async with served(make_settings(kill_grace_seconds=GRACE), fake_environ) as gw:
            process_id, pid, rest, took = await run_until_message(
                gw, chat_body("hang", workdir), "pid", then="delete"
            )
            assert [e.event for e in rest] == ["done"]
            done = rest[0].json()
            assert done["status"] == "cancelled"
            assert done["process_id"] == process_id
            assert took < 1.0
            assert not exists(pid)
            assert (await gw.client.get("/processes")).json()["count"] == 0

    async def test_kills_descendant_in_its_own_session(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A descendant that called setsid is gone within a second of DELETE, and reaped."""
        async with served(make_settings(kill_grace_seconds=GRACE), fake_environ) as gw:
            process_id, child, _, took = await run_until_message(
                gw, chat_body("escape", workdir), "child_pid", then="delete"
            )
            assert took < 1.0
            assert not exists(child)
            assert processes_with_marker(process_id) == []

    async def test_cli_ignoring_sigterm_is_killed_after_grace(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A CLI that ignores SIGTERM is SIGKILLed after KILL_GRACE_SECONDS, within 1 s more."""
        async with served(make_settings(kill_grace_seconds=GRACE), fake_environ) as gw:
            _, pid, rest, took = await run_until_message(
                gw, chat_body("ignore-sigterm", workdir), "pid", then="delete"
            )
            assert rest[-1].json()["status"] == "cancelled"
            assert GRACE <= took < GRACE + 1.0
            assert not exists(pid)

    async def test_descendant_ignoring_sigterm_is_killed_after_grace(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A setsid descendant that ignores SIGTERM is SIGKILLed after the grace too."""
        async with served(make_settings(kill_grace_seconds=GRACE), fake_environ) as gw:
            _, child, _, took = await run_until_message(
                gw, chat_body("escape-stubborn", workdir), "child_pid", then="delete"
            )
            assert GRACE <= took < GRACE + 1.0
            assert not exists(child)


class TestDisconnect:
    async def test_hanging_up_tears_down_the_tree(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """When the client hangs up, the CLI and its setsid descendant are gone within a second."""
        async with served(make_settings(kill_grace_seconds=GRACE), fake_environ) as gw:
            process_id, child, _, _ = await run_until_message(
                gw, chat_body("escape", workdir), "child_pid", then="disconnect"
            )
            took = await wait_until(lambda: not exists(child), timeout=5)
            assert took < 1.0
            await wait_until(lambda: processes_with_marker(process_id) == [], timeout=1)
            with trio.fail_after(2):
                while (await gw.client.get("/processes")).json()["count"]:
                    await trio.sleep(0.02)


class TestFailures:
    async def test_crash_reports_exit_code_and_stderr(self, gw: Shared, workdir: Path) -> None:
        """A CLI that exits non-zero yields an error event with its exit code and stderr tail."""
        _r, events = await post_chat(gw.client, chat_body("crash", workdir))
        assert [e.event for e in events][-2:] == ["error", "done"]
        error = events[-2].json()
        assert error["code"] == "cli_failed"
        assert error["exit_code"] == 3
        assert "fatal: something broke" in error["stderr_tail"]
        assert "status 3" in error["message"]
        assert events[-1].json()["status"] == "failed"
        assert events[-1].json()["exit_code"] == 3

    async def test_ten_mebibytes_of_stderr_do_not_stall(self, gw: Shared, workdir: Path) -> None:
        """A CLI writing 10 MiB to stderr still completes: stderr is drained all the time."""
        body = chat_body("stderr-flood 160", workdir)
        _r, events = await post_chat(gw.client, body)
        assert events[-2].json()["result"] == "survived"
        assert events[-1].json()["status"] == "completed"

    async def test_line_over_limit_ends_run_with_error(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A stdout line longer than MAX_LINE_BYTES ends the run with a line_too_long error."""
        async with served(make_settings(max_line_bytes=4096), fake_environ) as gw:
            body = chat_body("long-line 10000", workdir)
            _r, events = await post_chat(gw.client, body)
        assert [e.event for e in events] == ["process", "message", "error", "done"]
        assert events[2].json()["code"] == "line_too_long"
        assert "4096" in events[2].json()["message"]
        assert events[3].json()["status"] == "failed"

    async def test_line_under_limit_passes_whole(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A 3 MiB line under the limit arrives as one message event, intact."""
        async with served(make_settings(max_line_bytes=4 * 1024 * 1024), fake_environ) as gw:
            body = chat_body(f"long-line {3 * 1024 * 1024}", workdir)
            _r, events = await post_chat(gw.client, body)
        assert len(events[2].json()["pad"]) == 3 * 1024 * 1024
        assert events[-1].json()["status"] == "completed"

    async def test_non_json_line_passes_through(self, gw: Shared, workdir: Path) -> None:
        """A stdout line that is not JSON is still streamed as a message, unmodified."""
        _r, events = await post_chat(gw.client, chat_body("non-json", workdir))
        assert events[2].data == "this is not JSON"
        assert events[-1].json()["status"] == "completed"

    async def test_cli_that_cannot_start(
        self, fake_environ: dict[str, str], workdir: Path, tmp_path: Path
    ) -> None:
        """A CLI that vanished after startup yields a spawn_failed error, never an empty stream."""
        claude = tmp_path / "claude"
        shutil.copy(FAKE_CLAUDE, claude)
        async with served(make_settings(claude_path=claude), fake_environ) as gw:
            claude.unlink()
            _r, events = await post_chat(gw.client, chat_body("echo", workdir))
        assert [e.event for e in events] == ["process", "error", "done"]
        assert events[1].json()["code"] == "spawn_failed"
        assert events[2].json()["status"] == "failed"

    async def test_descendant_left_after_normal_exit_is_killed(
        self, gw: Shared, workdir: Path
    ) -> None:
        """A background process a tool left behind does not outlive a completed run."""
        body = chat_body("escape-and-exit", workdir)
        _r, events = await post_chat(gw.client, body)
        child = events[2].json()["child_pid"]
        assert events[-1].json()["status"] == "completed"
        assert not exists(child)

    async def test_slow_reader_gets_every_line(self, gw: Shared, workdir: Path) -> None:
        """A reader slower than the CLI still gets every line, though the CLI exited long before."""
        body = chat_body("lines 12 100000", workdir)
        async with gw.client.stream("POST", "/chat", json=body) as r:
            events = []
            async with aclosing(sse_events(r)) as stream:
                async for event in stream:
                    events.append(event)
                    await trio.sleep(0.2)  # the slowness is the behaviour under test
        numbers = [e.json()["n"] for e in events if e.event == "message" and "n" in e.json()]
        assert numbers == list(range(12))
        assert events[-2].json()["type"] == "result"
        assert events[-1].json()["status"] == "completed"

    async def test_tool_job_that_ends_on_its_own_is_reaped(self, gw: Shared, workdir: Path) -> None:
        """A setsid job that exits by itself mid-run is reaped, not left a zombie."""
        body = chat_body("short-orphan", workdir)
        _r, events = await post_chat(gw.client, body)
        child = events[2].json()["child_pid"]
        assert events[-1].json()["status"] == "completed"
        assert not exists(child)
        assert [p.pid for p in psutil.Process().children() if p.status() == "zombie"] == []

    async def test_chatty_leftover_does_not_keep_the_run_alive(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A job that inherited stdout and keeps writing after the CLI exits ends with the run."""
        async with served(make_settings(kill_grace_seconds=GRACE), fake_environ) as gw:
            with trio.fail_after(10):
                r, events = await post_chat(gw.client, chat_body("chatty-leftover", workdir))
            listing = (await gw.client.get("/processes")).json()
        child = events[2].json()["child_pid"]
        assert events[-1].json()["status"] == "completed"
        assert not exists(child)
        assert listing["count"] == 0
        assert processes_with_marker(r.headers["x-process-id"]) == []

    async def test_cli_that_does_not_exit_after_its_result(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A CLI still running well after its input ended is torn down with an error."""
        settings = make_settings(kill_grace_seconds=GRACE)
        limits = replace(RunLimits.from_settings(settings), exit_after_input=0.5)
        async with served(settings, fake_environ, limits=limits) as gw:
            r, events = await post_chat(gw.client, chat_body("no-exit", workdir))
        assert events[-3].json()["type"] == "result"
        assert events[-2].json()["code"] == "cli_did_not_exit"
        assert events[-1].json()["status"] == "failed"
        assert processes_with_marker(r.headers["x-process-id"]) == []


class TestSessions:
    async def test_session_in_use_is_409(self, gw: Shared, workdir: Path) -> None:
        """A second run naming a session a live run uses gets 409; after it ends, it is free."""
        session = saved_session(gw.home, workdir)
        body = chat_body("hang", workdir, session_id=session)
        async with gw.client.stream("POST", "/chat", json=body) as first:
            process_id = first.headers["x-process-id"]
            busy = await gw.client.post("/chat", json=body)
            assert busy.status_code == 409
            assert busy.json()["code"] == "session_busy"
            assert process_id in busy.json()["detail"]
            await gw.client.delete(f"/chat/{process_id}")
            await collect(first)
        again = chat_body("echo", workdir, session_id=session)
        async with gw.client.stream("POST", "/chat", json=again) as second:
            assert second.status_code == 200
            await collect(second)

    async def test_session_reported_by_the_cli_is_claimed(self, gw: Shared, workdir: Path) -> None:
        """A new run's session, once the CLI reports it, is busy until the run ends."""
        async with gw.client.stream("POST", "/chat", json=chat_body("hang", workdir)) as r:
            async with aclosing(sse_events(r)) as events:
                async for event in events:
                    if event.event == "message":
                        session = event.json()["session_id"]
                        break
                body = chat_body("echo", workdir, session_id=session)
                assert (await gw.client.post("/chat", json=body)).status_code == 409
                await gw.client.delete(f"/chat/{r.headers['x-process-id']}")

    async def test_new_session_id_is_reserved(self, gw: Shared, workdir: Path) -> None:
        """A new_session_id in use by a live run cannot be resumed or claimed again (409)."""
        session = str(uuid.uuid4())
        body = chat_body("hang", workdir, new_session_id=session)
        async with gw.client.stream("POST", "/chat", json=body) as first:
            resume = chat_body("echo", workdir, session_id=session)
            assert (await gw.client.post("/chat", json=resume)).status_code == 409
            assert (await gw.client.post("/chat", json=body)).status_code == 409
            await gw.client.delete(f"/chat/{first.headers['x-process-id']}")

    async def test_continue_waits_for_any_run_in_the_same_project(
        self, gw: Shared, tmp_path: Path
    ) -> None:
        """continue_conversation is refused while any run is live in a folder the CLI files
        under the same project name (/x/a-b and /x/a/b)."""
        (tmp_path / "a-b").mkdir()
        (tmp_path / "a" / "b").mkdir(parents=True)
        body = chat_body("hang", tmp_path / "a-b")
        async with gw.client.stream("POST", "/chat", json=body) as first:
            other = chat_body("echo", tmp_path / "a" / "b", continue_conversation=True)
            assert (await gw.client.post("/chat", json=other)).status_code == 409
            fresh = chat_body("echo", tmp_path / "a" / "b")
            response, _ = await post_chat(gw.client, fresh)
            assert response.status_code == 200
            await gw.client.delete(f"/chat/{first.headers['x-process-id']}")

    async def test_one_continue_per_folder(self, gw: Shared, workdir: Path) -> None:
        """Two runs may not continue the same folder's conversation at once; a fork may."""
        body = chat_body("hang", workdir, continue_conversation=True)
        async with gw.client.stream("POST", "/chat", json=body) as first:
            again = await gw.client.post("/chat", json=body)
            assert again.status_code == 409
            assert "continue_conversation would share" in again.json()["detail"]
            fork = chat_body("echo", workdir, continue_conversation=True, fork_session=True)
            response, events = await post_chat(gw.client, fork)
            assert response.status_code == 200
            assert events[-1].json()["status"] == "completed"
            await gw.client.delete(f"/chat/{first.headers['x-process-id']}")


class TestParallel:
    async def test_runs_in_parallel(self, gw: Shared, workdir: Path) -> None:
        """Twenty runs stream at once, each to its own client, all completing."""
        results: list[str] = []

        async def one(n: int) -> None:
            body = chat_body(f"echo run-{n}", workdir)
            _r, events = await post_chat(gw.client, body)
            assert events[-2].json()["result"] == f"echo run-{n}"
            results.append(events[-1].json()["status"])

        async with trio.open_nursery() as nursery:
            for n in range(20):
                nursery.start_soon(one, n)
        assert results == ["completed"] * 20
