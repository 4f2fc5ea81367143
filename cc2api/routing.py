"""A run's output, routed: the CLI's lines become events, and a ``stream: false`` document.

Lines are framed and logged in batches, one per read of the pipe: a read holds up to
a megabyte of lines, and the fixed costs (a UTF-8 check, a framing, an append that
wakes the readers) are paid once per batch rather than once per line. Only lines
whose first bytes name a type the gateway acts on are parsed (``init`` and
``result`` for the session and the figures, ``control_*`` for the conversation);
every other line passes through untouched and unparsed.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from .eventlog import EventLog
from .framing import LineFramer, LineTooLong, marked
from .run_usage import AssistantUsage
from .sse import frame_messages

# Only lines whose start names one of these are parsed; the rest pass untouched.
_INSPECT_MARKERS = (b'"init"', b'"result"', b'"control_')
# Assistant lines are not parsed: only their usage is read, for a run without a result.
_ASSISTANT_MARKERS = (b'"type":"assistant"',)
HEAD_BYTES = 64

__all__ = ["Document", "DocumentTooLarge", "LineTooLong", "OutputRouter", "valid_utf8"]


class DocumentTooLarge(Exception):
    """Raised when a stream: false run prints more than its document may hold."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the run printed more than {limit} bytes, the most a stream: false answer "
            "holds; stream it instead"
        )


class Document:
    """Every line of a ``stream: false`` run, kept until the answer is sent."""

    def __init__(self, limit: int) -> None:
        self.lines: list[bytes] = []
        self._bytes = 0
        self._limit = limit

    def add(self, lines: list[bytes]) -> None:
        """Keep ``lines``.

        Raises:
            DocumentTooLarge: the document would hold more than its limit.
        """
        self._bytes += sum(map(len, lines))
        if self._bytes > self._limit:
            raise DocumentTooLarge(self._limit)
        self.lines.extend(lines)

    def clear(self) -> None:
        """Drop every line: the answer says why, or has been sent."""
        self.lines = []


class OutputRouter:
    """Turns the CLI's stdout into the run's events.

    ``on_line`` sees each parsed line the gateway acts on, in order; control lines
    are the gateway's business, not the client's: they are taken out of the stream,
    and whatever events they cause come after the lines before them.
    """

    def __init__(
        self,
        log: EventLog,
        on_line: Callable[[dict[str, Any]], None],
        *,
        max_line_bytes: int,
        document: Document | None,
        assistant: AssistantUsage | None = None,
    ) -> None:
        self._log = log
        self._assistant = assistant
        self._on_line = on_line
        self._max_line_bytes = max_line_bytes
        self.document = document

    async def pump(self, receive: Callable[[], Awaitable[bytes]]) -> None:
        """Route every chunk ``receive`` returns until it returns b"".

        Raises:
            LineTooLong: a line outgrew the limit (the lines before it are routed).
            DocumentTooLarge: a stream: false document outgrew its limit.

        Cancellation: what was read is routed or dropped with the batch in progress.
        """
        framer = LineFramer(self._max_line_bytes)
        while chunk := await receive():
            try:
                lines = framer.feed(chunk)
            except LineTooLong as error:
                await self.route(error.before)
                raise
            await self.route(lines, chunk)
        await self.route(framer.finish())

    async def route(self, lines: list[bytes], chunk: bytes | None = None) -> None:
        """Log the CLI's complete lines; ``chunk`` is the read that completed them.

        Every line but the first lies wholly in ``chunk``, so a scan of the chunk
        (in C) answers for all of them whether a CR or non-ASCII byte is there.
        """
        if not lines:
            return
        ascii_only = chunk is not None and chunk.isascii() and lines[0].isascii()
        plain = chunk is not None and b"\r" not in chunk and b"\r" not in lines[0]
        if self._assistant is not None:
            for index in marked(lines, _ASSISTANT_MARKERS, HEAD_BYTES):
                self._assistant.see(lines[index])
        suspects = marked(lines, _INSPECT_MARKERS, HEAD_BYTES)
        if not suspects:
            await self._log_lines(lines, ascii_only=ascii_only, plain=plain)
            return
        start = 0
        for index in suspects:
            head = _parse_head_line(lines[index])
            if head is None:
                continue
            kind = head.get("type")
            if isinstance(kind, str) and kind.startswith("control_"):
                await self._log_lines(lines[start:index], ascii_only=ascii_only, plain=plain)
                start = index + 1
            self._on_line(head)
        await self._log_lines(lines[start:], ascii_only=ascii_only, plain=plain)

    async def _log_lines(self, lines: list[bytes], *, ascii_only: bool, plain: bool) -> None:
        if not lines:
            return
        if not ascii_only:
            lines = valid_utf8(lines)
        if self.document is not None:
            self.document.add(lines)
        await self._log.append(
            lambda first_id: (frame_messages(first_id, lines, plain=plain), len(lines))
        )


def _parse_head_line(line: bytes) -> dict[str, Any] | None:
    """Return a line as a dict; None when it is not a JSON object."""
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def valid_utf8(lines: list[bytes]) -> list[bytes]:
    """Return ``lines`` with any invalid UTF-8 replaced by U+FFFD.

    SSE is UTF-8 by definition: one bad byte from the CLI must not break a
    client's decoder for the rest of the stream. Checking the batch at once keeps
    the common, valid case at C speed.
    """
    try:
        b"".join(lines).decode()
    except UnicodeDecodeError:
        return [line.decode("utf-8", "replace").encode() for line in lines]
    return lines
