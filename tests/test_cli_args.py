"""Building argv: every option has its flag, nothing a caller sends becomes a flag."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio
from pydantic import ValidationError

from cc2api.cli_args import BASE_FLAGS, OPTIONS, RunFiles, build_argv, user_message
from cc2api.configfiles import load_configs
from cc2api.errors import ValidationFailed
from cc2api.models import ChatRequest
from cc2api.policy import Plan, Policy

from .helpers import make_settings

CLAUDE = Path("/opt/claude")
FILES = RunFiles(Path("/run/x"))
FULL = Plan(full_access=True, permission_mode=None, disallowed_tools=())
SID = "0b6f4c1e-3b9a-4f7e-8d2c-5a1e9f3c7b21"


def request(**fields: Any) -> ChatRequest:
    return ChatRequest.model_validate({"prompt": "hi", "cwd": "/tmp", **fields})


def argv(plan: Plan | None = None, **fields: Any) -> list[str]:
    made = request(**fields)
    if plan is None:
        plan = Policy(make_settings(), {}, euid=1000).plan(made)
        plan = replace(plan, configs=trio.run(load_configs, made))
    return build_argv(CLAUDE, made, plan, FILES)


def restricted(mode: str | None = None, disallowed: tuple[str, ...] = ()) -> Plan:
    return Plan(False, mode, disallowed)  # type: ignore[arg-type]


class TestBuildArgv:
    def test_minimal_run_is_print_mode_stream_json_with_full_access(self) -> None:
        """A plain request is print mode, stream-json both ways, verbose, full access."""
        assert argv() == [str(CLAUDE), *BASE_FLAGS, "--dangerously-skip-permissions"]
        assert BASE_FLAGS == (
            "-p",
            "--output-format=stream-json",
            "--input-format=stream-json",
            "--verbose",
        )

    def test_prompt_never_in_argv(self) -> None:
        """The prompt travels on stdin only, even when it looks like a flag."""
        assert "--version" not in build_argv(CLAUDE, request(prompt="--version"), FULL, FILES)
        assert json.loads(user_message("--version"))["message"]["content"] == "--version"

    @pytest.mark.parametrize(
        ("fields", "expected"),
        [
            ({"model": "sonnet"}, ["--model=sonnet"]),
            ({"fallback_model": "haiku,sonnet"}, ["--fallback-model=haiku,sonnet"]),
            ({"session_id": SID}, [f"--resume={SID}"]),
            ({"continue_conversation": True}, ["--continue"]),
            ({"session_id": SID, "fork_session": True}, [f"--resume={SID}", "--fork-session"]),
            ({"new_session_id": SID}, [f"--session-id={SID}"]),
            ({"no_session_persistence": True}, ["--no-session-persistence"]),
            ({"name": "nightly build"}, ["--name=nightly build"]),
            (
                {"allowed_tools": ["Read", "Bash(git:*)"]},
                ["--allowedTools=Read", "--allowedTools=Bash(git:*)"],
            ),
            (
                {"mcp_config": ['{"mcpServers":{}}', '{"mcpServers":{}}']},
                [f"--mcp-config={FILES.mcp(0)}", f"--mcp-config={FILES.mcp(1)}"],
            ),
            ({"strict_mcp_config": True}, ["--strict-mcp-config"]),
            ({"settings": '{"a": 1}'}, [f"--settings={FILES.settings}"]),
            ({"setting_sources": ["user", "project"]}, ["--setting-sources=user,project"]),
            ({"setting_sources": []}, ["--setting-sources="]),
            ({"add_dir": ["/tmp", "/usr"]}, ["--add-dir=/tmp", "--add-dir=/usr"]),
            (
                {"agents": {"r": {"description": "d", "prompt": "p"}}},
                ['--agents={"r":{"description":"d","prompt":"p"}}'],
            ),
            ({"agent": "reviewer"}, ["--agent=reviewer"]),
            ({"json_schema": {"type": "object"}}, ['--json-schema={"type":"object"}']),
            ({"max_budget_usd": 0.5}, ["--max-budget-usd=0.5"]),
            ({"max_turns": 3}, ["--max-turns=3"]),
            ({"effort": "high"}, ["--effort=high"]),
            ({"include_partial_messages": True}, ["--include-partial-messages"]),
            ({"include_hook_events": True}, ["--include-hook-events"]),
            ({"betas": ["b1", "b2"]}, ["--betas=b1", "--betas=b2"]),
            ({"plugin_dir": ["/tmp", "/usr"]}, ["--plugin-dir=/tmp", "--plugin-dir=/usr"]),
            ({"debug": True}, ["--debug"]),
            ({"debug": "api,hooks"}, ["--debug=api,hooks"]),
            ({"system_prompt": "S" * 200_000}, [f"--system-prompt-file={FILES.system_prompt}"]),
            (
                {"append_system_prompt": "A"},
                [f"--append-system-prompt-file={FILES.append_system_prompt}"],
            ),
        ],
    )
    def test_each_field_has_its_flag(self, fields: dict[str, Any], expected: list[str]) -> None:
        """Each field becomes its flag in --flag=value form, lists one flag per item."""
        out = argv(**fields)
        permission = ("--dangerously-skip-permissions", "--permission-mode=default")
        assert [arg for arg in out[len(BASE_FLAGS) + 1 :] if arg not in permission] == expected

    def test_unset_fields_add_nothing(self) -> None:
        """False switches and missing values emit no flag at all."""
        out = argv(strict_mcp_config=False, include_partial_messages=False, debug=False)
        assert out == [str(CLAUDE), *BASE_FLAGS, "--dangerously-skip-permissions"]

    def test_every_option_field_exists(self) -> None:
        """Every field the option table names is a request field (no silent typo)."""
        assert {field for field, _, _ in OPTIONS} <= set(ChatRequest.model_fields)

    def test_restricted_plan_with_mode(self) -> None:
        """A restricted plan drops full access and passes its permission mode."""
        out = argv(restricted("acceptEdits"), tools=["Read"])
        assert "--dangerously-skip-permissions" not in out
        assert "--permission-mode=acceptEdits" in out
        assert "--tools=Read" in out

    def test_empty_tools_hides_all(self) -> None:
        """tools: [] becomes --tools= (no built-in tools)."""
        assert "--tools=" in argv(restricted(), tools=[])

    def test_disallowed_tools_come_from_the_plan(self) -> None:
        """Disallowed tools are the plan's: the caller's plus the operator's."""
        out = argv(restricted(disallowed=("Write", "WebFetch")), tools=["Read"])
        assert out[-2:] == ["--disallowedTools=Write", "--disallowedTools=WebFetch"]


class TestValidation:
    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("model", "--help"),
            ("fallback_model", "-x"),
            ("agent", "--print"),
            ("name", "-n"),
            ("tools", ["--help"]),
            ("allowed_tools", ["-p"]),
            ("disallowed_tools", ["--version"]),
            ("betas", ["--x"]),
            ("debug", "--verbose"),
        ],
    )
    def test_values_that_look_like_flags_are_refused(self, field: str, value: Any) -> None:
        """A value starting with '-' is rejected, naming the field."""
        with pytest.raises(ValidationError, match=field):
            request(**{field: value})

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("permission_mode", "yolo"),
            ("effort", "extreme"),
            ("setting_sources", ["everything"]),
            ("session_id", "not-a-uuid"),
            ("new_session_id", "1234"),
            ("max_turns", 0),
            ("max_turns", 1.5),
            ("max_budget_usd", 0),
            ("max_budget_usd", -1.0),
            ("add_dir", ["relative/dir"]),
            ("plugin_dir", ["relative/dir"]),
            ("mcp_config", ["{not json"]),
            ("mcp_config", ["relative.json"]),
            ("settings", "[1, 2]"),
            ("agents", "not an object"),
            ("json_schema", ["list"]),
            ("include_partial_messages", "yes"),
            ("extra_env", {"A": "1"}),
            ("model", "   "),
            ("max_budget_usd", float("nan")),
            ("settings", '{"env": {"ANTHROPIC_BASE_URL": "http://elsewhere"}}'),
            ("settings", '{"apiKeyHelper": "cat key"}'),
            ("mcp_config", ['{"foo": 1}']),
            ("agents", {"x": 1}),
            ("agents", {"x": {"description": "d"}}),
            ("agents", {"x": {"description": "d", "prompt": "p", "permissionMode": "god"}}),
            ("settings", "relative/settings.json"),
            ("allowed_tools", ["é" * 9000]),
        ],
    )
    def test_values_checked_by_type_and_value(self, field: str, value: Any) -> None:
        """Enums, UUIDs, folders, files, numbers and types are checked, naming the field."""
        with pytest.raises(ValidationError, match=field):
            request(**{field: value})

    @pytest.mark.parametrize(
        "fields",
        [
            {"fork_session": True},
            {"session_id": SID, "continue_conversation": True},
            {"session_id": SID, "new_session_id": SID},
        ],
    )
    def test_inconsistent_session_fields(self, fields: dict[str, Any]) -> None:
        """Session options that contradict each other are refused with a reason."""
        with pytest.raises(ValidationError, match="session"):
            request(**fields)

    def test_settings_file_content_is_checked(self, tmp_path: Path) -> None:
        """A settings file is read, later, and held to the same rules as inline settings."""
        path = tmp_path / "settings.json"
        path.write_text('{"env": {"A": "1"}}')
        with pytest.raises(ValidationFailed, match="settings: cannot use the file") as raised:
            trio.run(load_configs, request(settings=str(path)))
        assert "env" not in raised.value.detail  # what the file holds is not told

    @pytest.mark.parametrize("name", ["missing.json", "fifo", "dir"])
    def test_config_file_must_be_a_readable_regular_file(self, tmp_path: Path, name: str) -> None:
        """A config path that is missing, a FIFO or a folder is refused without blocking."""
        os.mkfifo(tmp_path / "fifo")
        (tmp_path / "dir").mkdir()
        with pytest.raises(ValidationFailed, match=r"mcp_config\.0"):
            trio.run(load_configs, request(mcp_config=[str(tmp_path / name)]))

    def test_options_adding_up_past_the_argv_budget(self) -> None:
        """Options that would overflow the kernel's argv limit get a validation error."""
        items = ["x" * 15000] * 100
        with pytest.raises(ValidationError, match="bytes of command line"):
            request(allowed_tools=items)

    def test_mcp_config_accepts_files_and_objects(self, tmp_path: Path) -> None:
        """mcp_config takes absolute paths of existing files and JSON objects."""
        config = tmp_path / "mcp.json"
        config.write_text('{"mcpServers": {}}')
        assert request(mcp_config=[str(config), '{"mcpServers": {}}']).mcp_config


class TestUserMessage:
    def test_is_one_stream_json_line(self) -> None:
        """The prompt becomes one newline-terminated user message, unicode intact."""
        line = user_message("héllo\nworld")
        assert line.endswith(b"\n")
        assert line.count(b"\n") == 1
        body = json.loads(line)
        assert body["type"] == "user"
        assert body["message"] == {"role": "user", "content": "héllo\nworld"}
