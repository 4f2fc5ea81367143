"""Request schemas: what a caller may send, validated before anything runs."""

from __future__ import annotations

import json
import os
import uuid
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

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

# The kernel caps one argv string at 128 KiB and argv with the environment at about
# 2 MiB: single values and their sum are kept well below (in UTF-8 bytes).
MAX_WORD_BYTES = 16 * 1024
MAX_JSON_BYTES = 64 * 1024
MAX_ARGV_BYTES = 1024 * 1024
MAX_LIST_ITEMS = 256
# Settings keys that would let a caller set the CLI's environment or credentials,
# which come from the operator only.
FORBIDDEN_SETTINGS_KEYS = frozenset(
    {
        "env",
        "apiKeyHelper",
        "awsAuthRefresh",
        "awsCredentialExport",
        "gcpAuthRefresh",
        "otelHeadersHelper",
        "proxyAuthHelper",
        "policyHelper",
    }
)


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


def _max_bytes(limit: int) -> AfterValidator:
    def check(value: str) -> str:
        if len(value.encode()) > limit:
            raise ValueError(f"must be at most {limit} bytes in UTF-8")
        return value

    return AfterValidator(check)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError("must be a UUID") from None


def _absolute(value: str) -> str:
    # Whether it exists is checked later, once the operator's roots have allowed it:
    # the answer must not tell a caller what exists outside them.
    if not os.path.isabs(value):
        raise ValueError("must be an absolute path")
    return value


def is_inline(value: str) -> bool:
    """Return whether a settings or mcp_config value is inline JSON (else a file path)."""
    return value.lstrip().startswith("{")


def parse_object(text: str, what: str) -> dict[str, Any]:
    """Parse the JSON object ``text``; ValueError saying what was expected."""
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        raise ValueError(f"is not valid JSON ({what} expected)") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"must be {what}, a JSON object")
    return parsed


def check_mcp_config(config: dict[str, Any]) -> None:
    """Raise ValueError unless ``config`` is an MCP config."""
    if not isinstance(config.get("mcpServers"), dict):
        raise ValueError('must hold "mcpServers", an object of servers')


def check_settings(settings: dict[str, Any]) -> None:
    """Raise ValueError if ``settings`` would set what only the operator may."""
    forbidden = sorted(FORBIDDEN_SETTINGS_KEYS & settings.keys())
    if forbidden:
        raise ValueError(
            f"may not set {', '.join(forbidden)}: the CLI's environment, credentials and "
            "helper commands come from the operator"
        )


def _config_form(what: str, check: Any) -> AfterValidator:
    # Only the form is checked here; a file's content is read and checked later, after
    # the operator's rules have allowed it, off the event loop (see configfiles.py).
    def validate(value: str) -> str:
        if is_inline(value):
            check(parse_object(value, what))
        elif not os.path.isabs(value):
            raise ValueError(f"must be {what} as JSON or an absolute file path")
        return value

    return AfterValidator(validate)


MAX_URL_BYTES = 2048


def _webhook_url(value: str) -> str:
    # Only the form here; whether the host may be reached is the operator's
    # WEBHOOK_ALLOWED_HOSTS, checked when a run is started (cc2api.webhook_hosts).
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in value):
        raise ValueError("must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        raise ValueError("is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http or https URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not hold credentials: webhooks are signed instead")
    if parts.fragment:
        raise ValueError("must not have a fragment")
    return value


WebhookUrl = Annotated[
    str, Field(max_length=MAX_URL_BYTES), _max_bytes(MAX_URL_BYTES), AfterValidator(_webhook_url)
]


def _json_size(value: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(value, ensure_ascii=False).encode()) > MAX_JSON_BYTES:
        raise ValueError(f"must be at most {MAX_JSON_BYTES} bytes as JSON")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
Word = Annotated[
    str,
    AfterValidator(_no_nul),
    AfterValidator(_not_blank),
    AfterValidator(_not_flag),
    _max_bytes(MAX_WORD_BYTES),
]
Words = Annotated[list[Word], Field(max_length=MAX_LIST_ITEMS)]
Uuid = Annotated[str, AfterValidator(_uuid)]
Folder = Annotated[str, AfterValidator(_no_nul), AfterValidator(_absolute)]
Folders = Annotated[list[Folder], Field(max_length=MAX_LIST_ITEMS)]
McpConfig = Annotated[
    str,
    AfterValidator(_no_nul),
    _max_bytes(MAX_JSON_BYTES),
    _config_form("an MCP config", check_mcp_config),
]
SettingsValue = Annotated[
    str,
    AfterValidator(_no_nul),
    _max_bytes(MAX_JSON_BYTES),
    _config_form("settings", check_settings),
]
JsonObject = Annotated[dict[str, Any], AfterValidator(_json_size)]


class Agent(BaseModel):
    """One custom agent of ``agents``; fields beyond these pass to the CLI as given."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    description: Annotated[str, AfterValidator(_not_blank)]
    prompt: Annotated[str, AfterValidator(_not_blank)]
    permissionMode: PermissionMode | None = None  # noqa: N815 (the CLI's own key)


def _agents_size(value: dict[str, Agent]) -> dict[str, Agent]:
    _json_size({name: agent.model_dump(exclude_none=True) for name, agent in value.items()})
    return value


def _bytes_of(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, dict):
        return sum(_bytes_of(k) + _bytes_of(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return sum(_bytes_of(item) + 32 for item in value)  # + a flag name each
    return 16


MAX_TIMEOUT_SECONDS = 7 * 24 * 3600  # a week: longer is a typo, not a plan
Timeout = Annotated[float, Field(gt=0, le=MAX_TIMEOUT_SECONDS, allow_inf_nan=False)]


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
    mcp_config: Annotated[list[McpConfig], Field(max_length=MAX_LIST_ITEMS)] | None = Field(
        default=None, description="MCP server configs: absolute file paths or JSON objects."
    )
    strict_mcp_config: bool = Field(
        default=False, description="Use only the MCP servers of mcp_config."
    )
    settings: SettingsValue | None = Field(
        default=None, description="Extra settings: an absolute file path or a JSON object."
    )
    setting_sources: Annotated[list[SettingSource], Field(max_length=3)] | None = Field(
        default=None, description="Which setting sources to load; [] loads none."
    )
    add_dir: Folders | None = Field(default=None, description="More folders tools may use.")
    agents: Annotated[dict[Word, Agent], AfterValidator(_agents_size)] | None = Field(
        default=None, description="Custom agents (--agents)."
    )
    agent: Word | None = Field(default=None, description="Agent for the session (--agent).")
    json_schema: JsonObject | None = Field(
        default=None, description="JSON Schema the final answer must match (--json-schema)."
    )
    max_budget_usd: Annotated[float, Field(gt=0, le=1_000_000, allow_inf_nan=False)] | None = Field(
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
    detach: bool = Field(
        default=False,
        description="Keep the run going when the client hangs up; read it again from "
        "GET /chat/{process_id}/events.",
    )
    stream: bool = Field(
        default=True, description="false: answer with one JSON document when the run ends."
    )
    approval: Literal["http"] | None = Field(
        default=None,
        description='"http": tool calls not already allowed wait for an answer at '
        "POST /chat/{process_id}/approvals/{approval_id} (--permission-prompt-tool stdio).",
    )
    timeout_seconds: Timeout | None = Field(
        default=None,
        description="End the run after this many seconds (at most RUN_TIMEOUT_SECONDS); "
        "time spent queued does not count.",
    )
    webhook_url: WebhookUrl | None = Field(
        default=None,
        description="POST run.completed and approval.requested here, signed (default: the "
        "key's webhook_url); its host must be among WEBHOOK_ALLOWED_HOSTS.",
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
        if (
            _bytes_of(self.model_dump(exclude={"prompt", "system_prompt", "append_system_prompt"}))
            > MAX_ARGV_BYTES
        ):
            raise ValueError(
                f"the options add up to more than {MAX_ARGV_BYTES} bytes of command line"
            )
        return self

    @property
    def names_session(self) -> bool:
        """Return whether the run's argv names a session: it resumes, continues or sets one.

        Such a run's CLI cannot be spawned before the request (the warm pool), and a
        bounded or confined one's session must be chosen within its roots.
        """
        return (
            self.session_id is not None
            or self.continue_conversation
            or self.new_session_id is not None
        )

    @property
    def asks_full_access(self) -> bool:
        """Return whether claudecode2api's rule gives this request full access."""
        return (
            self.tools is None
            and self.allowed_tools is None
            and self.permission_mode is None
            and self.approval is None
        )

    def folders(self) -> list[str]:
        """Return every folder the run may work in: cwd, then add_dir."""
        return [self.cwd, *(self.add_dir or ())]

    def missing_folder(self) -> tuple[str, str] | None:
        """Return the first of add_dir and plugin_dir that is not a folder, as (field, path)."""
        for name in ("add_dir", "plugin_dir"):
            for index, folder in enumerate(getattr(self, name) or ()):
                if not os.path.isdir(folder):
                    return f"{name}.{index}", folder
        return None


class FollowUp(BaseModel):
    """The body of ``POST /chat/{process_id}/messages``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    prompt: Annotated[str, AfterValidator(_no_nul), AfterValidator(_not_blank)] = Field(
        description="The next user message; answered after the current turn, in the same run."
    )


class ApprovalAnswer(BaseModel):
    """The body of ``POST /chat/{process_id}/approvals/{approval_id}``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    behavior: Literal["allow", "deny"] = Field(description="Run the tool call, or refuse it.")
    updated_input: JsonObject | None = Field(
        default=None, description="With allow: the input the tool runs with instead."
    )
    message: Annotated[Text, _max_bytes(16 * 1024)] | None = Field(
        default=None, description="With deny: what the model is told."
    )
