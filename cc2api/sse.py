"""Server-Sent Events: pure framing functions, and the generator that streams a run."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

PING = b": ping\n\n"


def _data_lines(data: bytes) -> bytes:
    # SSE ends a field at CR, LF or CRLF: a payload holding one must be split into
    # several data fields, which the client joins back with LF.
    if b"\n" in data or b"\r" in data:
        parts = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        return b"".join(b"data: " + part + b"\n" for part in parts)
    return b"data: " + data + b"\n"


def frame(seq: int | None, event: str, data: bytes) -> bytes:
    """Return one SSE event with its id (none: the client's last id stays), name and payload."""
    head = b"" if seq is None else b"id: %d\n" % seq
    return b"%sevent: %s\n%s\n" % (head, event.encode(), _data_lines(data))


def frame_json(seq: int | None, event: str, data: dict[str, Any]) -> bytes:
    """Return one SSE event whose payload is ``data`` as compact JSON."""
    return frame(seq, event, json.dumps(data, separators=(",", ":")).encode())


def frame_messages(first_seq: int, lines: list[bytes], *, plain: bool = False) -> bytes:
    """Return a ``message`` event for each line, numbered from ``first_seq``, as one write.

    ``plain`` promises that no line holds a CR or LF (the caller checked the
    whole batch at once): each line is then copied once, into the result.
    """
    if not plain:
        return b"".join(
            b"id: %d\nevent: message\n%s\n" % (seq, _data_lines(line))
            for seq, line in enumerate(lines, first_seq)
        )
    count = len(lines)
    parts = [b"\n\n"] * (3 * count)
    parts[0::3] = [
        b"id: %d\nevent: message\ndata: " % seq for seq in range(first_seq, first_seq + count)
    ]
    parts[1::3] = lines
    return b"".join(parts)


class Source(Protocol):
    """What :func:`stream` reads: a reader of a run's event log."""

    async def receive(self, patience: float) -> bytes | None: ...

    def close(self) -> None: ...


async def stream(
    source: Source,
    heartbeat: float,
    on_close: Callable[[], None],
    on_start: Callable[[], None] | None = None,
    on_sent: Callable[[int], None] | None = None,
) -> AsyncIterator[bytes]:
    """Yield framed events from ``source``, and ``: ping`` after every quiet ``heartbeat``.

    Holds no nursery or cancel scope across a ``yield``. Ends when the source does.
    ``on_start`` is called once the body is being sent. However it ends (the
    client hung up: cancellation or an early close), the source is closed and
    ``on_close`` called. ``on_sent`` is told each chunk's size (a batch of events, or a
    ping) as it is handed on.
    """
    if on_start is not None:
        on_start()
    try:
        while (chunk := await source.receive(heartbeat)) != b"":
            if chunk is None:
                chunk = PING
            if on_sent is not None:
                on_sent(len(chunk))
            yield chunk
    finally:
        source.close()
        on_close()
