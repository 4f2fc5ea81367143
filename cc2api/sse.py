"""Server-Sent Events: pure framing functions, and the generator that streams a run."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import trio

PING = b": ping\n\n"


def _data_lines(data: bytes) -> bytes:
    # SSE ends a field at CR, LF or CRLF: a payload holding one must be split into
    # several data fields, which the client joins back with LF.
    if b"\n" in data or b"\r" in data:
        parts = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        return b"".join(b"data: " + part + b"\n" for part in parts)
    return b"data: " + data + b"\n"


def frame(seq: int, event: str, data: bytes) -> bytes:
    """Return one SSE event with its id, name and payload."""
    return b"id: %d\nevent: %s\n%s\n" % (seq, event.encode(), _data_lines(data))


def frame_json(seq: int, event: str, data: dict[str, Any]) -> bytes:
    """Return one SSE event whose payload is ``data`` as compact JSON."""
    return frame(seq, event, json.dumps(data, separators=(",", ":")).encode())


def frame_messages(first_seq: int, lines: Iterable[bytes]) -> bytes:
    """Return ``message`` events for ``lines`` numbered from ``first_seq``, as one write."""
    return b"".join(
        b"id: %d\nevent: message\n%s\n" % (seq, _data_lines(line))
        for seq, line in enumerate(lines, first_seq)
    )


async def stream(
    attach: Callable[[], trio.MemoryReceiveChannel[bytes]],
    heartbeat: float,
    on_close: Callable[[], None],
) -> AsyncIterator[bytes]:
    """Yield a run's framed events, and ``: ping`` after every quiet ``heartbeat``.

    ``attach`` is called on the first iteration and returns the run's channel.
    Holds no nursery or cancel scope across a ``yield``. Cancellation or an early
    close (the client hung up) runs ``on_close``, which must be synchronous.
    """
    events = attach()
    try:
        while True:
            chunk = None
            with trio.move_on_after(heartbeat):
                try:
                    chunk = await events.receive()
                except trio.EndOfChannel:
                    return
            yield PING if chunk is None else chunk
    finally:
        events.close()
        on_close()
