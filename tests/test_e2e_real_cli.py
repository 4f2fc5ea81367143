"""End to end with the real Claude Code CLI, offline against the scripted model."""

from __future__ import annotations

import json
import os
from contextlib import aclosing
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import trio

from .helpers import (
    Event,
    Served,
    chat_body,
    collect,
    exists,
    is_root,
    make_settings,
    post_chat,
    processes_with_marker,
    served,
    sse_events,
    wait_until,
)
from .scripted_api import ScriptedAPI, all_user_text

pytestmark = pytest.mark.timeout(120)


async def chat(gw: Served, body: dict[str, Any]) -> list[Event]:
    response, events = await post_chat(gw.client, body)
    assert response.status_code == 200, response.text
    return events


def messages(events: list[Event]) -> list[dict[str, Any]]:
    return [e.json() for e in events if e.event == "message"]


def tool_process(process_id: str, command: list[str]) -> int | None:
    """Return the pid of the run's tool process running ``command``, if there is one."""
    for pid in processes_with_marker(process_id):
        try:
            if psutil.Process(pid).cmdline() == command:
                return pid
        except psutil.Error:
            continue
    return None


@pytest.fixture(name="settings")
def _settings(real_claude: Path) -> Any:
    return make_settings(claude_path=real_claude, kill_grace_seconds=3.0)


class TestConversation:
    async def test_streamed_answer(
        self, settings: Any, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """A run streams the CLI's init, assistant and result lines, then done 'completed'."""
        async with served(settings, real_environ) as gw:
            events = await chat(gw, chat_body("hello there", workdir))
        assert events[0].event == "process"
        lines = messages(events)
        assert (lines[0]["type"], lines[0]["subtype"]) == ("system", "init")
        assert lines[0]["cwd"] == str(workdir)
        assert any(line["type"] == "assistant" for line in lines)
        assert lines[-1]["type"] == "result"
        assert lines[-1]["result"] == "echo: hello there"
        done = events[-1].json()
        assert events[-1].event == "done"
        assert done["status"] == "completed"
        assert done["exit_code"] == 0
        assert done["session_id"] == lines[0]["session_id"]

    async def test_prompt_that_looks_like_a_flag_reaches_the_model(
        self, settings: Any, real_environ: dict[str, str], workdir: Path, scripted_api: ScriptedAPI
    ) -> None:
        """The prompt '--version' is sent to the model as text, not read as a CLI flag."""
        async with served(settings, real_environ) as gw:
            events = await chat(gw, chat_body("--version", workdir))
        assert messages(events)[-1]["result"] == "echo: --version"
        assert "--version" in scripted_api.prompts()

    async def test_continue_by_session_id(
        self, settings: Any, real_environ: dict[str, str], workdir: Path, scripted_api: ScriptedAPI
    ) -> None:
        """A run given session_id continues that session: the model receives the earlier turn."""
        async with served(settings, real_environ) as gw:
            first = await chat(gw, chat_body("remember the word PELICAN", workdir))
            session = first[-1].json()["session_id"]
            second = await chat(gw, chat_body("what was the word?", workdir, session_id=session))
        assert second[-1].json()["session_id"] == session
        last_request = scripted_api.requests[-1]
        assert "remember the word PELICAN" in all_user_text(last_request)
        assert "what was the word?" in all_user_text(last_request)

    async def test_system_prompt_reaches_the_model(
        self, settings: Any, real_environ: dict[str, str], workdir: Path, scripted_api: ScriptedAPI
    ) -> None:
        """system_prompt and append_system_prompt arrive in the model's system text."""
        body = chat_body(
            "hi", workdir, system_prompt="You are ZEBRA-7.", append_system_prompt="Also OKAPI-3."
        )
        async with served(settings, real_environ) as gw:
            events = await chat(gw, body)
        assert events[-1].json()["status"] == "completed"
        system = json.dumps(scripted_api.requests[-1].get("system"))
        assert "You are ZEBRA-7." in system
        assert "Also OKAPI-3." in system

    async def test_one_mebibyte_prompt(
        self, settings: Any, real_environ: dict[str, str], workdir: Path, scripted_api: ScriptedAPI
    ) -> None:
        """A 1 MiB prompt reaches the model whole."""
        prompt = "BIG " + "y" * (1024 * 1024)
        async with served(settings, real_environ) as gw:
            events = await chat(gw, chat_body(prompt, workdir))
        assert events[-1].json()["status"] == "completed"
        assert prompt in scripted_api.prompts()

    async def test_eight_parallel_runs(
        self, settings: Any, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """Eight runs at once each get their own answer and complete."""
        results: dict[int, str] = {}
        async with served(settings, real_environ) as gw:

            async def one(n: int) -> None:
                events = await chat(gw, chat_body(f"parallel {n}", workdir))
                assert events[-1].json()["status"] == "completed"
                results[n] = messages(events)[-1]["result"]

            async with trio.open_nursery() as nursery:
                for n in range(8):
                    nursery.start_soon(one, n)
        assert results == {n: f"echo: parallel {n}" for n in range(8)}


class TestCancel:
    async def test_cancel_mid_answer_then_resume(
        self, settings: Any, real_environ: dict[str, str], workdir: Path, scripted_api: ScriptedAPI
    ) -> None:
        """A run cancelled mid-answer can be resumed by its session id, earlier prompt included."""
        session = None
        async with served(settings, real_environ) as gw:
            async with gw.client.stream(
                "POST", "/chat", json=chat_body("SLOW story", workdir)
            ) as r:
                process_id = r.headers["x-process-id"]
                async with aclosing(sse_events(r)) as events:
                    async for event in events:
                        if event.event == "message" and event.json().get("subtype") == "init":
                            session = event.json()["session_id"]
                            break
                    await wait_until(lambda: "SLOW story" in scripted_api.prompts(), timeout=30)
                    await trio.sleep(0.5)  # the model is now streaming its answer
                    answer = await gw.client.delete(f"/chat/{process_id}")
                    rest = [e async for e in events if e.event != ":"]
            assert answer.status_code == 200
            assert rest[-1].event == "done"
            assert rest[-1].json()["status"] == "cancelled"
            resumed = await chat(gw, chat_body("go on", workdir, session_id=session))
        assert resumed[-1].json()["status"] == "completed"
        assert resumed[-1].json()["session_id"] == session
        assert "SLOW story" in all_user_text(scripted_api.requests[-1])

    @pytest.mark.parametrize("how", ["delete", "disconnect"])
    async def test_bash_tool_process_is_gone(
        self, settings: Any, real_environ: dict[str, str], workdir: Path, how: str
    ) -> None:
        """A Bash tool's `sleep 600` (own session) dies within 1 s of DELETE or hang-up."""
        command = ["sleep", "600"]
        async with served(settings, real_environ) as gw:
            body = chat_body("RUN_BASH: sleep 600", workdir)
            async with gw.client.stream("POST", "/chat", json=body) as r:
                process_id = r.headers["x-process-id"]
                await wait_until(lambda: tool_process(process_id, command) is not None, 60)
                pid = tool_process(process_id, command)
                assert pid is not None
                cli_pid = (await gw.client.get("/processes")).json()["processes"][0]["pid"]
                assert os.getsid(pid) != os.getsid(cli_pid)  # it escaped the CLI's session
                if how == "delete":
                    async with httpx.AsyncClient(base_url=gw.url, auth=gw.client.auth) as other:
                        started = trio.current_time()
                        answer = await other.delete(f"/chat/{process_id}")
                    assert answer.status_code == 200
                    took = trio.current_time() - started
                    rest = await collect(r)
                    assert rest[-1].json()["status"] == "cancelled"
                    assert took < 1.0
            if how == "disconnect":
                took = await wait_until(lambda: not exists(pid), timeout=10)
                assert took < 1.0
            assert not exists(pid)
            if how == "delete":  # answered once every process of the run is gone
                assert processes_with_marker(process_id) == []
            with trio.fail_after(5):
                while (await gw.client.get("/processes")).json()["count"]:
                    await trio.sleep(0.05)
            # A hang-up has no answer to wait for: the run leaves /processes once its
            # teardown is over, and not one process of its tree may be left by then.
            assert processes_with_marker(process_id) == []


@pytest.mark.skipif(not is_root(), reason="the CLI only refuses full access under root")
class TestRoot:
    async def test_full_access_under_root_is_refused_up_front(
        self, real_claude: Path, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """Under root, a full-access request gets 403 root_full_access and nothing starts."""
        environ = {k: v for k, v in real_environ.items() if k != "IS_SANDBOX"}
        settings = make_settings(claude_path=real_claude, allow_root_full_access=False)
        async with served(settings, environ) as gw:
            response, _ = await post_chat(gw.client, chat_body("hello", workdir))
            listing = (await gw.client.get("/processes")).json()
        assert response.status_code == 403
        assert response.json()["code"] == "root_full_access"
        assert listing["count"] == 0

    async def test_allow_root_full_access_makes_it_work(
        self, real_claude: Path, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """With ALLOW_ROOT_FULL_ACCESS the real CLI runs with full access under root."""
        environ = {k: v for k, v in real_environ.items() if k != "IS_SANDBOX"}
        settings = make_settings(claude_path=real_claude, allow_root_full_access=True)
        async with served(settings, environ) as gw:
            events = await chat(gw, chat_body("RUN_BASH: echo hi > made.txt", workdir))
        assert events[1].json()["permissionMode"] == "bypassPermissions"
        assert events[-1].json()["status"] == "completed"
        assert (workdir / "made.txt").read_text() == "hi\n"

    async def test_refusal_by_the_cli_itself_is_a_clear_error(
        self, real_claude: Path, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """Should the CLI still refuse root (no IS_SANDBOX reached it), the run says so."""
        environ = {k: v for k, v in real_environ.items() if k != "IS_SANDBOX"}
        settings = make_settings(claude_path=real_claude)
        async with served(settings, environ) as gw:
            # Bypass the gateway's own check, as a misconfigured wrapper would.
            app_state = gw.app.extensions["cc2api"]
            real_plan = app_state.policy.plan
            app_state.policy.plan = lambda request: replace(real_plan(request), extra_env={})
            events = await chat(gw, chat_body("hello", workdir))
        assert [e.event for e in events][-2:] == ["error", "done"]
        error = events[-2].json()
        assert error["code"] == "root_full_access"
        assert "IS_SANDBOX=1" in error["message"]
        assert "root" in error["stderr_tail"]
        assert events[-1].json()["status"] == "failed"
