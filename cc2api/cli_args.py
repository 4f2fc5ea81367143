"""Turn a validated request into the CLI's argv; pure, no I/O."""

from __future__ import annotations

import json
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
class PromptFiles:
    """Where the run's system prompts are written; they never travel in argv."""

    system_prompt: Path
    append_system_prompt: Path


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
    ("mcp_config", "--mcp-config", "each"),
    ("strict_mcp_config", "--strict-mcp-config", "switch"),
    ("settings", "--settings", "value"),
    ("setting_sources", "--setting-sources", "csv"),
    ("agents", "--agents", "json"),
    ("agent", "--agent", "value"),
    ("json_schema", "--json-schema", "json"),
    ("max_budget_usd", "--max-budget-usd", "value"),
    ("max_turns", "--max-turns", "value"),
    ("effort", "--effort", "value"),
    ("include_partial_messages", "--include-partial-messages", "switch"),
    ("include_hook_events", "--include-hook-events", "switch"),
    ("betas", "--betas", "each"),
    ("plugin_dir", "--plugin-dir", "each"),
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


def build_argv(claude: Path, request: ChatRequest, plan: Plan, files: PromptFiles) -> list[str]:
    """Return the full argv for one run.

    Every value is attached to its flag with ``=``, and variadic options get one
    flag per item, so no value can be read as an option or swallow the next
    argument. The prompt goes to stdin; system prompts go through files.
    """
    argv = [str(claude), *BASE_FLAGS]
    argv += _write("--add-dir", "each", plan.add_dir)
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
    if plan.setting_sources is not None:
        argv += _write("--setting-sources", "csv", plan.setting_sources)
    if request.debug is not False:
        argv.append("--debug" if request.debug is True else f"--debug={request.debug}")
    return argv


def _compact(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=_plain)


def _plain(obj: object) -> object:
    if isinstance(obj, BaseModel):  # an Agent: its fields, extras included
        return obj.model_dump(exclude_none=True)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


# Never handed to the CLI: CLAUDECODE makes it think it runs inside Claude Code, and
# the gateway's own credentials must not be readable by the model's tools.
WITHHELD_ENV = frozenset({"CLAUDECODE", "AUTH_USER", "AUTH_PASSWORD"})


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
