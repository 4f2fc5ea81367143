"""Drift detector: every flag the gateway can emit is one the pinned CLI accepts."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any, get_args

import pytest

from cc2api.cli_args import RunFiles, build_argv
from cc2api.configfiles import Configs
from cc2api.models import PERMISSION_MODES, ChatRequest, Effort
from cc2api.policy import Plan

pytestmark = pytest.mark.timeout(120)

# Accepted by 2.1.197 though `claude --help` does not list them; test_hidden_flags_are_accepted
# proves each one.
HIDDEN_FLAGS = frozenset(
    {
        "--max-turns",
        "--system-prompt-file",
        "--append-system-prompt-file",
        "--permission-prompt-tool",
    }
)


def every_flag(tmp_path: Path) -> set[str]:
    """Return the flag names of argv built from requests that set every field."""
    (tmp_path / "dir").mkdir()
    config = tmp_path / "c.json"
    config.write_text('{"mcpServers": {}}')
    sid = "0b6f4c1e-3b9a-4f7e-8d2c-5a1e9f3c7b21"
    values: dict[str, Any] = {
        "prompt": "hi",
        "cwd": str(tmp_path),
        "model": "m",
        "fallback_model": "f",
        "permission_mode": "plan",
        "session_id": sid,
        "fork_session": True,
        "new_session_id": sid,
        "no_session_persistence": True,
        "name": "n",
        "system_prompt": "s",
        "append_system_prompt": "a",
        "tools": ["Read"],
        "allowed_tools": ["Read"],
        "disallowed_tools": ["Write"],
        "mcp_config": [str(config)],
        "strict_mcp_config": True,
        "settings": str(config),
        "setting_sources": ["user"],
        "add_dir": [str(tmp_path / "dir")],
        "agents": {"r": {"description": "d", "prompt": "p"}},
        "agent": "r",
        "json_schema": {"type": "object"},
        "max_budget_usd": 1.0,
        "max_turns": 2,
        "effort": "low",
        "include_partial_messages": True,
        "include_hook_events": True,
        "betas": ["b"],
        "plugin_dir": [str(tmp_path / "dir")],
        "debug": True,
        "timeout_seconds": 5,  # the gateway's own: no flag
        "detach": True,  # likewise
        "stream": False,  # likewise
        "webhook_url": "https://hooks.example/run",  # likewise
        "approval": "http",
    }
    assert set(values) == set(ChatRequest.model_fields) - {"continue_conversation"}
    files = RunFiles(tmp_path)
    flags: set[str] = set()
    configs = Configs(settings="{}", mcp=("{}",))
    plans = [
        Plan(True, None, ("X",), add_dir=("/a",), plugin_dir=("/p",), configs=configs),
        Plan(False, "plan", (), setting_sources=("user",), configs=configs),
    ]
    requests = [
        ChatRequest.model_validate(values),
        ChatRequest.model_validate(
            {**values, "session_id": None, "continue_conversation": True, "debug": "api"}
        ),
    ]
    for request in requests:
        for plan in plans:
            argv = build_argv(Path("claude"), request, plan, files)
            flags |= {arg.split("=", 1)[0] for arg in argv[1:]}
    return flags


def cli_help(claude: Path, home: Path) -> str:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home)}
    return subprocess.run(
        [str(claude), "--help"], capture_output=True, text=True, check=True, timeout=60, env=env
    ).stdout


def test_every_emitted_flag_is_known_to_the_cli(real_claude: Path, tmp_path: Path) -> None:
    """Each flag the gateway can emit is defined in `claude --help` or the proven hidden list."""
    # Only the option definitions count, not flags mentioned in other options' prose.
    defined: set[str] = set()
    for line in cli_help(real_claude, tmp_path).splitlines():
        if match := re.match(r"^\s+((?:-\w, )?--[\w-]+(?:, --[\w-]+)?)", line):
            defined |= set(re.findall(r"--?[\w-]+", match.group(1)))
    unknown = every_flag(tmp_path) - defined - HIDDEN_FLAGS
    assert unknown == set(), f"flags the pinned CLI does not define: {sorted(unknown)}"


def test_enumerations_match_the_cli(real_claude: Path, tmp_path: Path) -> None:
    """The permission modes and effort levels the gateway accepts are exactly the CLI's."""
    text = " ".join(cli_help(real_claude, tmp_path).split())
    modes = re.search(r"--permission-mode <mode> .*?\(choices: ([^)]*)\)", text)
    efforts = re.search(r"--effort <level> .*?\(([a-z, ]+)\)", text)
    assert modes
    assert efforts
    assert sorted(re.findall(r'"(\w+)"', modes.group(1))) == sorted(PERMISSION_MODES)
    assert efforts.group(1).split(", ") == list(get_args(Effort))


def test_hidden_flags_are_accepted(real_claude: Path, tmp_path: Path) -> None:
    """The hidden flags parse: the CLI, which rejects unknown options, takes each of them."""
    prompt = tmp_path / "p.txt"
    prompt.write_text("x")
    values = {
        "--max-turns": "1",
        "--system-prompt-file": str(prompt),
        "--append-system-prompt-file": str(prompt),
        "--permission-prompt-tool": "stdio",
    }
    assert set(values) == HIDDEN_FLAGS

    def parse(*flags: str) -> str:
        # With no prompt the CLI stops right after parsing its options, and says why.
        done = subprocess.run(
            [str(real_claude), "-p", *flags],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        return done.stdout + done.stderr

    assert "unknown option '--no-such-flag'" in parse("--no-such-flag")
    for flag, value in values.items():
        output = parse(f"{flag}={value}")
        assert "unknown option" not in output
        assert "Input must be provided" in output  # parsing went through
