"""Turn a validated request into the CLI's argv; pure, no I/O."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .models import ChatRequest

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


def build_argv(claude: Path, request: ChatRequest, files: PromptFiles) -> list[str]:
    """Return the full argv for one run.

    Every value is attached to its flag with ``=``, and one flag is emitted per list
    item, so no value can be read as an option or swallow the next argument. The
    prompt itself goes to stdin.
    """
    argv = [str(claude), *BASE_FLAGS]
    if request.model is not None:
        argv.append(f"--model={request.model}")
    if request.session_id is not None:
        argv.append(f"--resume={request.session_id}")
    if request.system_prompt is not None:
        argv.append(f"--system-prompt-file={files.system_prompt}")
    if request.append_system_prompt is not None:
        argv.append(f"--append-system-prompt-file={files.append_system_prompt}")
    if request.full_access:
        argv.append("--dangerously-skip-permissions")
    if request.tools is not None:
        # An empty list hides every built-in tool: the CLI reads --tools= as "none".
        argv.extend([f"--tools={tool}" for tool in request.tools] or ["--tools="])
    argv.extend(f"--allowedTools={tool}" for tool in request.allowed_tools or ())
    argv.extend(f"--disallowedTools={tool}" for tool in request.disallowed_tools or ())
    argv.extend(f"--mcp-config={config}" for config in request.mcp_config or ())
    return argv


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
