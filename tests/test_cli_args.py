"""Building argv: nothing a caller sends becomes a flag; the prompt stays out of argv."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from cc2api.cli_args import BASE_FLAGS, PromptFiles, build_argv, user_message
from cc2api.models import ChatRequest

CLAUDE = Path("/opt/claude")
FILES = PromptFiles(Path("/run/x/sp.txt"), Path("/run/x/asp.txt"))


def argv(**fields: Any) -> list[str]:
    request = ChatRequest.model_validate({"prompt": "hi", "cwd": "/tmp", **fields})
    return build_argv(CLAUDE, request, FILES)


class TestBuildArgv:
    def test_minimal_run_is_print_mode_stream_json_with_full_access(self) -> None:
        """Without tools or allowed_tools a run gets claudecode2api's full access."""
        assert argv() == [str(CLAUDE), *BASE_FLAGS, "--dangerously-skip-permissions"]

    def test_prompt_never_in_argv(self) -> None:
        """The prompt travels on stdin only, even when it looks like a flag."""
        request = ChatRequest.model_validate({"prompt": "--version", "cwd": "/tmp"})
        assert "--version" not in build_argv(CLAUDE, request, FILES)
        assert json.loads(user_message("--version"))["message"]["content"] == "--version"

    def test_session_id_becomes_resume_with_equals(self) -> None:
        """session_id is passed as --resume=<uuid>, which no parser can misread."""
        sid = "0b6f4c1e-3b9a-4f7e-8d2c-5a1e9f3c7b21"
        assert f"--resume={sid}" in argv(session_id=sid)

    def test_tools_make_the_run_restricted(self) -> None:
        """Giving tools drops full access and emits one --tools= per tool."""
        out = argv(tools=["Bash", "Read"])
        assert "--dangerously-skip-permissions" not in out
        assert out[-2:] == ["--tools=Bash", "--tools=Read"]

    def test_empty_tools_hides_all(self) -> None:
        """tools: [] becomes --tools= (no built-in tools)."""
        assert argv(tools=[])[-1] == "--tools="

    def test_allowed_tools_alone_restrict(self) -> None:
        """allowed_tools without tools is restricted too."""
        out = argv(allowed_tools=["Bash(git:*)"])
        assert "--dangerously-skip-permissions" not in out
        assert "--allowedTools=Bash(git:*)" in out

    def test_lists_are_one_flag_per_item(self) -> None:
        """Every list item gets its own flag, so none can swallow the next argument."""
        out = argv(
            allowed_tools=["Read"], disallowed_tools=["Write", "Edit"], mcp_config=['{"a":1}']
        )
        assert out[-4:] == [
            "--allowedTools=Read",
            "--disallowedTools=Write",
            "--disallowedTools=Edit",
            '--mcp-config={"a":1}',
        ]

    def test_system_prompts_go_through_files(self) -> None:
        """System prompts are passed as files, never as argv text."""
        out = argv(system_prompt="S" * 200_000, append_system_prompt="A")
        assert f"--system-prompt-file={FILES.system_prompt}" in out
        assert f"--append-system-prompt-file={FILES.append_system_prompt}" in out
        assert all(len(arg) < 1000 for arg in out)

    def test_model(self) -> None:
        """model is attached with =."""
        assert "--model=sonnet" in argv(model="sonnet")

    @pytest.mark.parametrize(
        "field", ["model", "tools", "allowed_tools", "disallowed_tools", "mcp_config"]
    )
    def test_values_that_look_like_flags_are_refused(self, field: str) -> None:
        """A value starting with '-' is rejected by validation, naming the field."""
        value: Any = "--help" if field == "model" else ["--help"]
        with pytest.raises(ValidationError, match=field):
            argv(**{field: value})


class TestUserMessage:
    def test_is_one_stream_json_line(self) -> None:
        """The prompt becomes one newline-terminated user message, unicode intact."""
        line = user_message("héllo\nworld")
        assert line.endswith(b"\n")
        assert line.count(b"\n") == 1
        body = json.loads(line)
        assert body["type"] == "user"
        assert body["message"] == {"role": "user", "content": "héllo\nworld"}
