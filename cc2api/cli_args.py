"""Turn a validated request into the CLI's argv; pure, no I/O."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from .models import ChatRequest
from .policy import Plan

BASE_FLAGS = (
    "-p",
    "--output-format=stream-json",
    "--input-format=stream-json",
    "--verbose",
)


@dataclass(frozen=True)
class RunFiles:
    """The run's private folder: what the CLI reads from files rather than argv.

    Prompts can be too long for argv, and argv is readable by every local user;
    settings and MCP configs are the checked copies (see configfiles.py).
    """

    folder: Path

    @property
    def system_prompt(self) -> Path:
        return self.folder / "system_prompt.txt"

    @property
    def append_system_prompt(self) -> Path:
        return self.folder / "append_system_prompt.txt"

    @property
    def settings(self) -> Path:
        return self.folder / "settings.json"

    def mcp(self, index: int) -> Path:
        return self.folder / f"mcp-{index}.json"

    def texts(self, request: ChatRequest, plan: Plan) -> dict[Path, str]:
        """Return each file the run's argv names, with what it holds."""
        texts = {
            self.system_prompt: request.system_prompt,
            self.append_system_prompt: request.append_system_prompt,
            self.settings: plan.configs.settings,
            **{self.mcp(i): text for i, text in enumerate(plan.configs.mcp)},
        }
        return {path: text for path, text in texts.items() if text is not None}

    def write(self, request: ChatRequest, plan: Plan) -> None:
        """Write the files the run's argv names, readable by this user only."""
        for path, text in self.texts(request, plan).items():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(text)


Style = Literal["value", "switch", "each", "json", "csv"]

# Request field -> its flag and how it is written:
#   value   --flag=<value> when set
#   switch  --flag when true
#   each    one --flag=<item> per list item (variadic options never swallow others)
#   json    --flag=<compact JSON>
#   csv     --flag=<items joined by commas>
# Fields needing more thought (prompts, permissions, tools, folders, debug) are in
# build_argv, which takes them from the request or from the policy's plan.
OPTIONS: tuple[tuple[str, str, Style], ...] = (
    ("model", "--model", "value"),
    ("fallback_model", "--fallback-model", "value"),
    ("session_id", "--resume", "value"),
    ("continue_conversation", "--continue", "switch"),
    ("fork_session", "--fork-session", "switch"),
    ("new_session_id", "--session-id", "value"),
    ("no_session_persistence", "--no-session-persistence", "switch"),
    ("name", "--name", "value"),
    ("allowed_tools", "--allowedTools", "each"),
    ("strict_mcp_config", "--strict-mcp-config", "switch"),
    ("agents", "--agents", "json"),
    ("agent", "--agent", "value"),
    ("json_schema", "--json-schema", "json"),
    ("max_budget_usd", "--max-budget-usd", "value"),
    ("max_turns", "--max-turns", "value"),
    ("effort", "--effort", "value"),
    ("include_partial_messages", "--include-partial-messages", "switch"),
    ("include_hook_events", "--include-hook-events", "switch"),
    ("betas", "--betas", "each"),
)


def _write(flag: str, style: Style, item: Any) -> list[str]:
    if item is None or item is False:
        return []
    if style == "switch":
        return [flag]
    if style == "each":
        return [f"{flag}={part}" for part in item]
    if style == "json":
        return [f"{flag}={_compact(item)}"]
    if style == "csv":
        return [f"{flag}={','.join(item)}"]
    return [f"{flag}={item}"]


def build_argv(claude: Path, request: ChatRequest, plan: Plan, files: RunFiles) -> list[str]:
    """Return the full argv for one run.

    Every value is attached to its flag with ``=``, and variadic options get one
    flag per item, so no value can be read as an option or swallow the next
    argument. The prompt goes to stdin; system prompts go through files.
    """
    argv = [str(claude), *BASE_FLAGS]
    argv += _write("--add-dir", "each", plan.add_dir)
    argv += _write("--plugin-dir", "each", plan.plugin_dir)
    for field, flag, style in OPTIONS:
        argv += _write(flag, style, getattr(request, field))
    if request.system_prompt is not None:
        argv.append(f"--system-prompt-file={files.system_prompt}")
    if request.append_system_prompt is not None:
        argv.append(f"--append-system-prompt-file={files.append_system_prompt}")
    if plan.full_access:
        argv.append("--dangerously-skip-permissions")
    elif plan.permission_mode is not None:
        argv.append(f"--permission-mode={plan.permission_mode}")
    if request.tools is not None:
        # An empty list hides every built-in tool: the CLI reads --tools= as "none".
        argv += _write("--tools", "each", request.tools or [""])
    argv += _write("--disallowedTools", "each", plan.disallowed_tools)
    if plan.configs.settings is not None:
        argv.append(f"--settings={files.settings}")
    argv += [f"--mcp-config={files.mcp(i)}" for i in range(len(plan.configs.mcp))]
    if plan.setting_sources is not None:
        argv += _write("--setting-sources", "csv", plan.setting_sources)
    if request.debug is not False:
        argv.append("--debug" if request.debug is True else f"--debug={request.debug}")
    if request.approval == "http":
        # The CLI asks on stdout (can_use_tool control requests); the gateway answers.
        argv.append("--permission-prompt-tool=stdio")
    return argv


def _compact(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=_plain)


def _plain(obj: object) -> object:
    if isinstance(obj, BaseModel):  # an Agent: its fields, extras included
        return obj.model_dump(exclude_none=True)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


# The kernel's limit for argv plus environment is about 2 MiB (ARG_MAX); keep clear.
MAX_COMMAND_LINE_BYTES = 1536 * 1024


def command_line_bytes(argv: list[str], env: Mapping[str, str]) -> int:
    """Return what argv and the environment take of the kernel's ARG_MAX."""
    pointer = 8
    args = sum(len(arg.encode()) + 1 + pointer for arg in argv)
    return args + sum(len(k.encode()) + len(v.encode()) + 2 + pointer for k, v in env.items())


# Never handed to the CLI: CLAUDECODE makes it think it runs inside Claude Code, and
# the gateway's own credentials must not be readable by the model's tools, nor where
# they are kept. The CC2API_ pair is what init-env and install.sh take the first
# credentials from; `./scripts/serve` leaves them in the server's environment.
WITHHELD_ENV = frozenset(
    {
        "CLAUDECODE",
        "AUTH_USER",
        "AUTH_PASSWORD",
        "AUTH_PASSWORD_FILE",
        "CREDENTIALS_DIRECTORY",
        "CC2API_AUTH_USER",
        "CC2API_AUTH_PASSWORD",
        "METRICS_TOKEN",
        "METRICS_TOKEN_FILE",
    }
)


def cli_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """Return the environment every run's CLI inherits: the server's, less ``WITHHELD_ENV``."""
    return {name: value for name, value in environ.items() if name not in WITHHELD_ENV}


def user_message(prompt: str) -> bytes:
    """Return the stream-json input line that carries one user turn."""
    line = {
        "type": "user",
        "message": {"role": "user", "content": prompt},
        "parent_tool_use_id": None,
        "session_id": "default",
    }
    return json.dumps(line, ensure_ascii=False).encode() + b"\n"
