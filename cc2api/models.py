"""Request schemas: what a caller may send, validated before anything runs."""

from __future__ import annotations

import json
import os
import uuid
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

PermissionMode = Literal["default", "acceptEdits", "plan", "dontAsk", "bypassPermissions", "auto"]
PERMISSION_MODES: tuple[PermissionMode, ...] = (
    "default",
    "acceptEdits",
    "plan",
    "dontAsk",
    "bypassPermissions",
    "auto",
)
Effort = Literal["low", "medium", "high", "xhigh", "max"]
SettingSource = Literal["user", "project", "local"]

# One argv string may not exceed 128 KiB; a flag value is kept well below that.
MAX_WORD_CHARS = 16 * 1024
MAX_JSON_CHARS = 64 * 1024
MAX_LIST_ITEMS = 256


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL bytes")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


def _not_flag(value: str) -> str:
    # Values travel as --flag=value, so the CLI cannot read them as options; a
    # leading dash is still refused so that no caller input ever looks like one.
    if value.startswith("-"):
        raise ValueError("must not start with '-'")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError("must be a UUID") from None


def _existing_dir(value: str) -> str:
    if not os.path.isabs(value):
        raise ValueError("must be an absolute path")
    if not os.path.isdir(value):
        raise ValueError("must be an existing directory")
    return value


def _path_or_json_object(value: str) -> str:
    if value.lstrip().startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError:
            raise ValueError("looks like JSON but does not parse") from None
        if not isinstance(parsed, dict):
            raise ValueError("must be a JSON object")
        return value
    if not os.path.isabs(value):
        raise ValueError("must be a JSON object or an absolute file path")
    if not os.path.isfile(value):
        raise ValueError("must be an existing file")
    return value


def _json_size(value: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(value)) > MAX_JSON_CHARS:
        raise ValueError(f"must be at most {MAX_JSON_CHARS} characters as JSON")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
Word = Annotated[
    str,
    Field(min_length=1, max_length=MAX_WORD_CHARS),
    AfterValidator(_no_nul),
    AfterValidator(_not_flag),
]
Words = Annotated[list[Word], Field(max_length=MAX_LIST_ITEMS)]
Uuid = Annotated[str, AfterValidator(_uuid)]
Folder = Annotated[str, AfterValidator(_no_nul), AfterValidator(_existing_dir)]
Folders = Annotated[list[Folder], Field(max_length=MAX_LIST_ITEMS)]
PathOrJson = Annotated[
    str,
    Field(min_length=1, max_length=MAX_JSON_CHARS),
    AfterValidator(_no_nul),
    AfterValidator(_path_or_json_object),
]
JsonObject = Annotated[dict[str, Any], AfterValidator(_json_size)]


class ChatRequest(BaseModel):
    """The body of ``POST /chat``: claudecode2api's fields plus every print-mode CLI option.

    Field names are the CLI's flags in snake_case; API.md lists each with its flag.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    prompt: Annotated[str, AfterValidator(_no_nul), AfterValidator(_not_blank)] = Field(
        description="The user message; sent to the CLI on stdin, never in argv."
    )
    cwd: Annotated[str, Field(min_length=1), AfterValidator(_no_nul)] = Field(
        description="Absolute path of an existing directory the CLI runs in."
    )
    model: Word | None = Field(default=None, description="Model alias or full name (--model).")
    fallback_model: Word | None = Field(
        default=None, description="Model(s) to fall back to when overloaded (--fallback-model)."
    )
    permission_mode: PermissionMode | None = Field(
        default=None, description="Permission mode (--permission-mode)."
    )
    session_id: Uuid | None = Field(default=None, description="Continue this session (--resume).")
    system_prompt: Text | None = Field(default=None, description="Replace the system prompt.")
    append_system_prompt: Text | None = Field(
        default=None, description="Append to the default system prompt."
    )
    tools: Words | None = Field(
        default=None, description="Built-in tools the model can see; [] hides them all."
    )
    allowed_tools: Words | None = Field(
        default=None, description="Tool patterns that run without asking, e.g. Bash(git:*)."
    )
    disallowed_tools: Words | None = Field(default=None, description="Tool patterns refused.")
    mcp_config: Annotated[list[PathOrJson], Field(max_length=MAX_LIST_ITEMS)] | None = Field(
        default=None, description="MCP server configs: absolute file paths or JSON objects."
    )
    strict_mcp_config: bool = Field(
        default=False, description="Use only the MCP servers of mcp_config."
    )
    settings: PathOrJson | None = Field(
        default=None, description="Extra settings: an absolute file path or a JSON object."
    )
    setting_sources: Annotated[list[SettingSource], Field(max_length=3)] | None = Field(
        default=None, description="Which setting sources to load; [] loads none."
    )
    add_dir: Folders | None = Field(default=None, description="More folders tools may use.")
    agents: JsonObject | None = Field(default=None, description="Custom agents (--agents).")
    agent: Word | None = Field(default=None, description="Agent for the session (--agent).")
    json_schema: JsonObject | None = Field(
        default=None, description="JSON Schema the final answer must match (--json-schema)."
    )
    max_budget_usd: Annotated[float, Field(gt=0, le=1_000_000)] | None = Field(
        default=None, description="Spending cap in US dollars (--max-budget-usd)."
    )
    max_turns: Annotated[int, Field(ge=1, le=100_000)] | None = Field(
        default=None, description="Most agentic turns (--max-turns)."
    )
    effort: Effort | None = Field(default=None, description="Effort level (--effort).")
    include_partial_messages: bool = Field(
        default=False, description="Stream partial message chunks as stream_event lines."
    )
    include_hook_events: bool = Field(default=False, description="Stream hook lifecycle events.")
    fork_session: bool = Field(
        default=False, description="With session_id or continue_conversation: new session id."
    )
    new_session_id: Uuid | None = Field(
        default=None, description="Id for the new session (--session-id)."
    )
    continue_conversation: bool = Field(
        default=False, description="Continue the folder's most recent conversation (--continue)."
    )
    no_session_persistence: bool = Field(
        default=False, description="Do not save the session to disk."
    )
    name: Word | None = Field(default=None, description="Display name of the session (--name).")
    betas: Words | None = Field(default=None, description="Beta headers (--betas).")
    plugin_dir: Folders | None = Field(
        default=None, description="Plugin folders, one --plugin-dir each."
    )
    debug: bool | Word = Field(
        default=False, description="Debug output on stderr; a string is a category filter."
    )

    @model_validator(mode="after")
    def _consistent(self) -> ChatRequest:
        if self.session_id is not None and self.continue_conversation:
            raise ValueError("session_id and continue_conversation: give one or the other")
        resuming = self.session_id is not None or self.continue_conversation
        if self.fork_session and not resuming:
            raise ValueError("fork_session needs session_id or continue_conversation")
        if self.new_session_id is not None and resuming and not self.fork_session:
            raise ValueError(
                "new_session_id names a new session: with session_id or "
                "continue_conversation it needs fork_session"
            )
        return self

    @property
    def asks_full_access(self) -> bool:
        """Return whether claudecode2api's rule gives this request full access."""
        return self.tools is None and self.allowed_tools is None and self.permission_mode is None

    def folders(self) -> list[str]:
        """Return every folder the run may work in: cwd, then add_dir."""
        return [self.cwd, *(self.add_dir or ())]
