"""An incremental Server-Sent Events parser: bytes in, whole events out."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

_LINE_END = re.compile("\r\n|\r|\n")


@dataclass(frozen=True)
class Frame:
    """One event as sent: its ``id`` (None: it had none), its name and its joined data."""

    id: int | None
    event: str
    data: str


class Parser:
    """Feed it the stream's bytes in any chunking; it returns the events they complete.

    Comments (``: ping``) are dropped. Lines end at LF, CR or CRLF, as the SSE
    specification says; an LF that starts a chunk after one that ended with CR
    is the rest of a CRLF.
    """

    def __init__(self) -> None:
        self._buffer = ""
        # A character may straddle chunks: the incremental decoder keeps its start.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._after_cr = False
        self._event = "message"
        self._data: list[str] = []
        self._id: int | None = None

    def feed(self, chunk: bytes) -> list[Frame]:
        """Return the events ``chunk`` completes."""
        text = self._decoder.decode(chunk)
        if self._after_cr and text.startswith("\n"):
            text = text[1:]  # the LF of a CRLF split across chunks
        if text:
            self._after_cr = False
        self._buffer += text
        # Only CR and LF end lines (str.splitlines would split at U+2028 and others,
        # which a CLI line may hold).
        cut = max(self._buffer.rfind("\r"), self._buffer.rfind("\n")) + 1
        if not cut:
            return []
        complete, self._buffer = self._buffer[:cut], self._buffer[cut:]
        self._after_cr = complete.endswith("\r") and not self._buffer
        frames: list[Frame] = []
        for line in _LINE_END.split(complete)[:-1]:
            found = self._line(line)
            if found is not None:
                frames.append(found)
        return frames

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
