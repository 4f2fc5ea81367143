"""Server-Sent Events: pure framing functions, and the generator that streams a run."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from typing import Any, Protocol

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


class Streamable(Protocol):
    """What :func:`stream` needs of a run."""

    final_frames: bytes

    def attach_reader(self) -> trio.MemoryReceiveChannel[bytes]: ...

    def cancel(self) -> None: ...


async def stream(run: Streamable, heartbeat: float) -> AsyncIterator[bytes]:
    """Yield a run's framed events, and ``: ping`` after every quiet ``heartbeat``.

    Holds no nursery or cancel scope across a ``yield``. When the channel ends, the
    run's final frames (``error``, ``done``) follow. Cancellation or an early close
    (the client hung up) cancels the run.
    """
    events = run.attach_reader()
    try:
        while True:
            chunk = None
            with trio.move_on_after(heartbeat):
                try:
                    chunk = await events.receive()
                except trio.EndOfChannel:
                    break
            yield PING if chunk is None else chunk
        yield run.final_frames
    finally:
        events.close()
        run.cancel()
