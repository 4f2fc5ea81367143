"""CLI options and permissions, proven with the real CLI against the scripted model."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio

from .helpers import (
    Event,
    Served,
    chat_body,
    exists,
    make_settings,
    post_chat,
    processes_with_marker,
    served,
    wait_until,
)
from .scripted_api import ScriptedAPI, all_user_text

pytestmark = pytest.mark.timeout(120)

MCP_SERVER = Path(__file__).with_name("mcp_gauge.py")


@pytest.fixture(name="settings")
def _settings(real_claude: Path) -> Any:
    return make_settings(claude_path=real_claude)


async def run(gw: Served, body: dict[str, Any]) -> list[Event]:
    response, events = await post_chat(gw.client, body)
    assert response.status_code == 200, response.text
    assert events[-1].event == "done"
    return events


def lines(events: list[Event]) -> list[dict[str, Any]]:
    return [e.json() for e in events if e.event == "message"]


def result_of(events: list[Event]) -> dict[str, Any]:
    (result,) = [line for line in lines(events) if line["type"] == "result"]
    return result


def script(*calls: tuple[str, dict[str, Any]]) -> str:
    return "SCRIPT: " + json.dumps([list(call) for call in calls])


def tool_results(events: list[Event]) -> list[dict[str, Any]]:
    return [
        block
        for line in lines(events)
        if line["type"] == "user"
        for block in line["message"]["content"]
        if isinstance(block, dict) and block.get("type") == "tool_result"
    ]


@pytest.fixture(name="repo")
def _repo(workdir: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(workdir)], check=True)
    return workdir


class TestPermissions:
    async def test_git_only(self, settings: Any, real_environ: dict[str, str], repo: Path) -> None:
        """Bash with allowed_tools [Bash(git:*)] runs `git status` and refuses `echo x > file`."""
        body = chat_body(
            script(("Bash", {"command": "git status"}), ("Bash", {"command": "echo x > file"})),
            repo,
            tools=["Bash"],
            allowed_tools=["Bash(git:*)"],
        )
        async with served(settings, real_environ) as gw:
            events = await run(gw, body)
        git, echo = tool_results(events)
        assert not git.get("is_error")
        assert "No commits yet" in str(git["content"])
        assert echo["is_error"]
        assert not (repo / "file").exists()
        denials = result_of(events)["permission_denials"]
        assert [d["tool_input"]["command"] for d in denials] == ["echo x > file"]
        assert lines(events)[0]["permissionMode"] == "default"

    async def test_read_only_preset(
        self, settings: Any, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """The read-only preset (Read, Glob, Grep) reads a file and cannot write one."""
        (workdir / "notes.txt").write_text("the secret word is OTTER\n")
        preset = ["Read", "Glob", "Grep"]
        calls = script(
            ("Read", {"file_path": str(workdir / "notes.txt")}),
            ("Write", {"file_path": str(workdir / "new.txt"), "content": "x"}),
        )
        body = chat_body(calls, workdir, tools=preset, allowed_tools=preset)
        async with served(settings, real_environ) as gw:
            events = await run(gw, body)
        read, write = tool_results(events)
        assert "OTTER" in str(read["content"])
        assert write["is_error"]
        assert not (workdir / "new.txt").exists()
        assert sorted(lines(events)[0]["tools"]) == sorted(preset)

    async def test_disallowed_tools_beat_full_access(
        self, settings: Any, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """disallowed_tools blocks a tool that full access would otherwise allow."""
        body = chat_body("RUN_BASH: echo x > file", workdir, disallowed_tools=["Bash"])
        async with served(settings, real_environ) as gw:
            events = await run(gw, body)
        assert lines(events)[0]["permissionMode"] == "bypassPermissions"
        assert "Bash" not in lines(events)[0]["tools"]
        (bash,) = tool_results(events)
        assert bash["is_error"]
        assert not (workdir / "file").exists()

    async def test_always_disallowed_tools(
        self, real_claude: Path, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """ALWAYS_DISALLOWED_TOOLS blocks a tool in every run, whatever the caller says."""
        settings = make_settings(claude_path=real_claude, always_disallowed_tools="Bash")
        async with served(settings, real_environ) as gw:
            events = await run(gw, chat_body("RUN_BASH: echo x > file", workdir))
        assert "Bash" not in lines(events)[0]["tools"]
        assert not (workdir / "file").exists()

    async def test_force_restricted(
        self, real_claude: Path, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """Under FORCE_RESTRICTED a request without restrictions runs in the default mode."""
        settings = make_settings(claude_path=real_claude, force_restricted=True)
        async with served(settings, real_environ) as gw:
            events = await run(gw, chat_body("RUN_BASH: echo x > file", workdir))
        assert lines(events)[0]["permissionMode"] == "default"
        assert result_of(events)["permission_denials"]
        assert not (workdir / "file").exists()

    async def test_permission_mode_accept_edits(
        self, settings: Any, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """permission_mode acceptEdits lets the Write tool create a file without asking."""
        calls = script(("Write", {"file_path": str(workdir / "a.txt"), "content": "hi"}))
        body = chat_body(calls, workdir, permission_mode="acceptEdits", tools=["Write"])
        async with served(settings, real_environ) as gw:
            events = await run(gw, body)
        assert lines(events)[0]["permissionMode"] == "acceptEdits"
        assert (workdir / "a.txt").read_text() == "hi"


class TestOptions:
    async def test_include_partial_messages(
        self, settings: Any, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """include_partial_messages streams the model's text as stream_event lines."""
        body = chat_body("hello", workdir, include_partial_messages=True)
        async with served(settings, real_environ) as gw:
            events = await run(gw, body)
        deltas = [
            line["event"]["delta"]["text"]
            for line in lines(events)
            if line["type"] == "stream_event" and line["event"]["type"] == "content_block_delta"
        ]
        assert "".join(deltas) == "echo: hello"

    async def test_json_schema(
        self, settings: Any, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """json_schema makes the result carry structured_output matching the schema."""
        schema = {
            "type": "object",
            "properties": {"name": {"type": "string"}},
            "required": ["name"],
        }
        body = chat_body('STRUCTURED: {"name": "Ada"}', workdir, json_schema=schema)
        async with served(settings, real_environ) as gw:
            events = await run(gw, body)
        assert result_of(events)["structured_output"] == {"name": "Ada"}

    async def test_new_session_id(
        self, settings: Any, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """new_session_id is the session id the CLI reports, and done carries it."""
        session = str(uuid.uuid4())
        async with served(settings, real_environ) as gw:
            events = await run(gw, chat_body("hi", workdir, new_session_id=session))
        assert lines(events)[0]["session_id"] == session
        assert events[-1].json()["session_id"] == session

    async def test_fork_session(
        self,
        settings: Any,
        real_environ: dict[str, str],
        workdir: Path,
        scripted_api: ScriptedAPI,
    ) -> None:
        """fork_session continues a session under a new id, with the earlier turns."""
        async with served(settings, real_environ) as gw:
            first = await run(gw, chat_body("remember HERON", workdir))
            original = first[-1].json()["session_id"]
            body = chat_body("and now?", workdir, session_id=original, fork_session=True)
            forked = await run(gw, body)
        fork_id = forked[-1].json()["session_id"]
        assert fork_id != original
        uuid.UUID(fork_id)
        assert "remember HERON" in all_user_text(scripted_api.requests[-1])

    async def test_continue_conversation(
        self,
        settings: Any,
        real_environ: dict[str, str],
        workdir: Path,
        scripted_api: ScriptedAPI,
    ) -> None:
        """continue_conversation continues the folder's most recent conversation."""
        async with served(settings, real_environ) as gw:
            first = await run(gw, chat_body("remember IBIS", workdir))
            later = await run(gw, chat_body("again?", workdir, continue_conversation=True))
        assert later[-1].json()["session_id"] == first[-1].json()["session_id"]
        assert "remember IBIS" in all_user_text(scripted_api.requests[-1])

    async def test_max_turns(
        self, settings: Any, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """max_turns stops the agent loop: one turn allows no second model call."""
        body = chat_body("RUN_BASH: echo one", workdir, max_turns=1)
        async with served(settings, real_environ) as gw:
            events = await run(gw, body)
        assert result_of(events)["subtype"] == "error_max_turns"


class TestMcp:
    def mcp_config(self, pidfile: Path) -> str:
        # alwaysLoad: connected before the first turn, which calls its tool at once
        # (else the CLI connects it in the background, and the call may come too early).
        server = {
            "command": sys.executable,
            "args": [str(MCP_SERVER), str(pidfile)],
            "alwaysLoad": True,
        }
        return json.dumps({"mcpServers": {"gauge": server}})

    async def test_allowed_mcp_tool_runs_and_server_is_gone_after(
        self, settings: Any, real_environ: dict[str, str], workdir: Path, tmp_path: Path
    ) -> None:
        """An MCP tool in allowed_tools runs; when the run ends its server process is gone."""
        pidfile = tmp_path / "mcp.pid"
        body = chat_body(
            'CALL mcp__gauge__read_gauge {"name": "boiler"}',
            workdir,
            tools=[],
            allowed_tools=["mcp__gauge__read_gauge"],
            mcp_config=[self.mcp_config(pidfile)],
            strict_mcp_config=True,
        )
        async with served(settings, real_environ) as gw:
            response, events = await post_chat(gw.client, body)
        assert lines(events)[0]["mcp_servers"] == [{"name": "gauge", "status": "connected"}]
        (gauge,) = tool_results(events)
        assert "gauge boiler reads 42" in str(gauge["content"])
        assert not gauge.get("is_error")
        assert not exists(int(pidfile.read_text()))
        assert processes_with_marker(response.headers["x-process-id"]) == []

    async def test_mcp_tool_not_allowed_is_denied(
        self, settings: Any, real_environ: dict[str, str], workdir: Path, tmp_path: Path
    ) -> None:
        """An MCP tool outside allowed_tools is denied in a restricted run."""
        config = tmp_path / "mcp.json"
        config.write_text(self.mcp_config(tmp_path / "mcp.pid"))
        body = chat_body(
            'CALL mcp__gauge__read_gauge {"name": "boiler"}',
            workdir,
            allowed_tools=["Read"],
            mcp_config=[str(config)],
        )
        async with served(settings, real_environ) as gw:
            events = await run(gw, body)
        (gauge,) = tool_results(events)
        assert gauge["is_error"]
        denials = result_of(events)["permission_denials"]
        assert [d["tool_name"] for d in denials] == ["mcp__gauge__read_gauge"]
        assert not exists(int((tmp_path / "mcp.pid").read_text()))

    async def test_mcp_server_is_gone_after_a_cancel(
        self, settings: Any, real_environ: dict[str, str], workdir: Path, tmp_path: Path
    ) -> None:
        """Cancelling a run mid-answer also ends the MCP servers its CLI started."""
        pidfile = tmp_path / "mcp.pid"
        body = chat_body("SLOW story", workdir, mcp_config=[self.mcp_config(pidfile)])
        async with served(settings, real_environ) as gw:
            async with gw.client.stream("POST", "/chat", json=body) as r:
                await wait_until(pidfile.exists, timeout=30)
                await wait_until(lambda: pidfile.read_text() != "", timeout=5)
                pid = int(pidfile.read_text())
                assert exists(pid)
                answer = await gw.client.delete(f"/chat/{r.headers['x-process-id']}")
                assert answer.json()["status"] == "cancelled"
        assert not exists(pid)


def hook_settings(marker: Path) -> dict[str, Any]:
    command = {"type": "command", "command": f"touch {marker}"}
    return {"hooks": {"SessionStart": [{"hooks": [command]}]}}


class TestCallerConfigCannotEscalate:
    async def test_settings_cannot_raise_a_restricted_mode(
        self, settings: Any, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """A restricted run stays in the default mode though its settings say bypassPermissions."""
        escalate = json.dumps({"permissions": {"defaultMode": "bypassPermissions"}})
        body = chat_body(
            "RUN_BASH: touch made.txt",
            workdir,
            tools=["Bash"],
            allowed_tools=["Read"],
            settings=escalate,
        )
        async with served(settings, real_environ) as gw:
            events = await run(gw, body)
        assert lines(events)[0]["permissionMode"] == "default"
        assert not (workdir / "made.txt").exists()

    async def test_project_settings_cannot_raise_a_restricted_mode(
        self, settings: Any, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """A .claude/settings.json in cwd saying bypassPermissions does not lift restrictions."""
        (workdir / ".claude").mkdir()
        (workdir / ".claude" / "settings.json").write_text(
            json.dumps({"permissions": {"defaultMode": "bypassPermissions"}})
        )
        body = chat_body("RUN_BASH: touch made.txt", workdir, tools=["Bash"], allowed_tools=[])
        async with served(settings, real_environ) as gw:
            events = await run(gw, body)
        assert lines(events)[0]["permissionMode"] == "default"
        assert not (workdir / "made.txt").exists()

    async def test_trusted_caller_settings_hooks_run(
        self, settings: Any, real_environ: dict[str, str], workdir: Path, tmp_path: Path
    ) -> None:
        """By default a caller's settings may carry hooks, and they run (so the next test means
        something)."""
        marker = tmp_path / "hook-ran"
        body = chat_body("hi", workdir, settings=json.dumps(hook_settings(marker)))
        async with served(settings, real_environ) as gw:
            await run(gw, body)
        assert marker.exists()

    async def test_untrusted_project_hooks_do_not_run(
        self, real_claude: Path, real_environ: dict[str, str], workdir: Path, tmp_path: Path
    ) -> None:
        """With TRUST_CALLER_CONFIG off, hooks in the cwd's project settings are not loaded."""
        marker = tmp_path / "hook-ran"
        (workdir / ".claude").mkdir()
        (workdir / ".claude" / "settings.json").write_text(json.dumps(hook_settings(marker)))
        settings = make_settings(claude_path=real_claude, trust_caller_config=False)
        async with served(settings, real_environ) as gw:
            await run(gw, chat_body("hi", workdir))
        assert not marker.exists()

    @pytest.mark.parametrize("trusted", [True, False])
    async def test_git_config_in_cwd_runs_nothing_when_untrusted(
        self,
        real_claude: Path,
        real_environ: dict[str, str],
        repo: Path,
        tmp_path: Path,
        trusted: bool,
    ) -> None:
        """A core.fsmonitor command in the cwd's .git/config runs only when config is trusted."""
        marker = tmp_path / "fsmonitor-ran"
        await trio.run_process(
            ["git", "-C", str(repo), "config", "core.fsmonitor", f"touch {marker}; false"]
        )
        settings = make_settings(claude_path=real_claude, trust_caller_config=trusted)
        async with served(settings, real_environ) as gw:
            await run(gw, chat_body("hi", repo))
        assert marker.exists() is trusted
