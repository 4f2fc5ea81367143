"""Request schemas: what a caller may send, validated before anything runs."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


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


# One argv string may not exceed 128 KiB; a flag value is kept well below that.
MAX_WORD_CHARS = 16 * 1024
MAX_LIST_ITEMS = 256

Text = Annotated[str, AfterValidator(_no_nul)]
Word = Annotated[
    str,
    Field(min_length=1, max_length=MAX_WORD_CHARS),
    AfterValidator(_no_nul),
    AfterValidator(_not_flag),
]
Words = Annotated[list[Word], Field(max_length=MAX_LIST_ITEMS)]


class ChatRequest(BaseModel):
    """The body of ``POST /chat``; field names and meaning follow claudecode2api."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    prompt: Annotated[str, AfterValidator(_no_nul), AfterValidator(_not_blank)] = Field(
        description="The user message; sent to the CLI on stdin, never in argv."
    )
    cwd: Annotated[str, Field(min_length=1), AfterValidator(_no_nul)] = Field(
        description="Absolute path of an existing directory the CLI runs in."
    )
    model: Word | None = Field(default=None, description="Model alias or full name.")
    session_id: Annotated[str, AfterValidator(_uuid)] | None = Field(
        default=None, description="Continue this session (--resume)."
    )
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
    mcp_config: Words | None = Field(
        default=None, description="MCP server configs: file paths or JSON strings."
    )

    @property
    def full_access(self) -> bool:
        """Return whether the run skips permission checks (claudecode2api's rule)."""
        return self.tools is None and self.allowed_tools is None
