"""An incremental Server-Sent Events parser: bytes in, whole events out."""

from __future__ import annotations

import codecs
from dataclasses import dataclass


@dataclass(frozen=True)
class Frame:
    """One event as sent: its ``id`` (None: it had none), its name and its joined data."""

    id: int | None
    event: str
    data: str


class Parser:
    """Feed it the stream's bytes in any chunking; it returns the events they complete.

    Comments (``: ping``) are dropped. Lines end at LF, CR or CRLF, as the SSE
    specification says, and a CR at a chunk's end waits for the next chunk to
    tell a CRLF from a lone CR.
    """

    def __init__(self) -> None:
        self._buffer = ""
        # A character may straddle chunks: the incremental decoder keeps its start.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._event = "message"
        self._data: list[str] = []
        self._id: int | None = None

    def feed(self, chunk: bytes) -> list[Frame]:
        """Return the events ``chunk`` completes."""
        self._buffer += self._decoder.decode(chunk)
        frames: list[Frame] = []
        while True:
            end = _line_end(self._buffer)
            if end is None:
                return frames
            line, self._buffer = self._buffer[: end[0]], self._buffer[end[1] :]
            frame = self._line(line)
            if frame is not None:
                frames.append(frame)

    def _line(self, line: str) -> Frame | None:
        if not line:
            if not self._data:
                self._event, self._id = "message", None
                return None
            frame = Frame(self._id, self._event, "\n".join(self._data))
            self._event, self._data, self._id = "message", [], None
            return frame
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and value.isdigit():
            self._id = int(value)
        return None


def _line_end(buffer: str) -> tuple[int, int] | None:
    """Return where the first line ends and the next starts; None: no whole line yet."""
    lf, cr = buffer.find("\n"), buffer.find("\r")
    if cr == -1 or (lf != -1 and lf < cr):
        return None if lf == -1 else (lf, lf + 1)
    if cr == len(buffer) - 1:
        return None  # a CRLF may be split across chunks
    return (cr, cr + 2) if buffer[cr + 1] == "\n" else (cr, cr + 1)
