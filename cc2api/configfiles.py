"""Read the config files a request names, safely, once the operator's rules allow them.

The contents are checked like inline values and then handed to the CLI as private
copies in the run's folder, so a file changed or swapped after the check cannot
change what the CLI reads, and no config (MCP servers often carry tokens) lands in
argv, which every local user can read.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from .errors import ValidationFailed
from .models import (
    MAX_JSON_BYTES,
    ChatRequest,
    check_mcp_config,
    check_settings,
    is_inline,
    parse_object,
)

READ_SECONDS = 5.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Configs:
    """The JSON texts of a run's settings and MCP configs, checked."""

    settings: str | None = None
    mcp: tuple[str, ...] = ()


def _read(path: str) -> str:
    # O_NONBLOCK: a FIFO or a device must not block the read; then only regular files
    # are read at all. O_NOFOLLOW: the checked path's last link cannot be swapped.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file")
        data = os.read(fd, MAX_JSON_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_JSON_BYTES:
        raise ValueError("too long")
    return data.decode("utf-8", "replace")


def _load(request: ChatRequest) -> Configs:
    def text_of(field: str, value: str, what: str, check: Callable[[dict[str, Any]], None]) -> str:
        if is_inline(value):  # the caller's own text: it may hear what is wrong with it
            try:
                check(parse_object(value, what))
            except ValueError as error:
                raise ValidationFailed(f"{field}: {error}") from None
            return value
        try:
            text = _read(os.path.realpath(value))
            check(parse_object(text, what))
        except (OSError, ValueError) as error:
            # One answer whatever went wrong: the reason would tell the caller whether a
            # file exists, what it is and what it holds, which the caller may not know.
            # The operator's log has it.
            reason = error.strerror if isinstance(error, OSError) else str(error)
            log.info("refused %s file %r: %s", field, value, reason)
            raise ValidationFailed(
                f"{field}: cannot use the file {value!r}: it must be a readable regular "
                f"file holding {what} that this server accepts"
            ) from None
        return text

    settings = None
    if request.settings is not None:
        settings = text_of("settings", request.settings, "settings", check_settings)
    mcp = tuple(
        text_of(f"mcp_config.{i}", value, "an MCP config", check_mcp_config)
        for i, value in enumerate(request.mcp_config or ())
    )
    return Configs(settings, mcp)


async def load_configs(request: ChatRequest) -> Configs:
    """Return the request's settings and MCP configs as checked JSON texts.

    Call it only after the policy allowed the request: it reads the files it names.

    Raises:
        ValidationFailed: an inline value breaks the rules (saying which), or a file
            cannot be used: unreadable, not a regular file, or content that breaks the
            rules of inline values (one message for all, naming only the path).

    Cancellation: the read runs in a worker thread, abandoned when cancelled.
    """
    if request.settings is None and not request.mcp_config:
        return Configs()
    with trio.fail_after(READ_SECONDS):
        return await trio.to_thread.run_sync(_load, request, abandon_on_cancel=True)
