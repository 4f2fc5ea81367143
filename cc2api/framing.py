"""Split a byte stream into lines with a hard cap on line length and no readline limits."""

from __future__ import annotations


class LineTooLong(Exception):
    """Raised when a line grows past the framer's limit before its newline arrives."""

    def __init__(self, limit: int, before: list[bytes]) -> None:
        super().__init__(f"the CLI printed a line longer than {limit} bytes")
        self.limit = limit
        self.before = before  # the complete lines that came ahead of the long one


class LineFramer:
    """Incremental splitter of newline-terminated lines.

    Memory stays bounded by the limit plus one chunk: a partial line is kept only
    while it is no longer than ``max_line_bytes``.
    """

    def __init__(self, max_line_bytes: int) -> None:
        self._max = max_line_bytes
        self._partial = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        """Return the complete lines (without their newline) that ``chunk`` finishes.

        Raises:
            LineTooLong: a line exceeds the limit, complete or not; it carries the
                complete lines that came before it.
        """
        if b"\n" not in chunk:
            self._partial += chunk
            if len(self._partial) > self._max:
                raise LineTooLong(self._max, [])
            return []
        lines = chunk.split(b"\n")
        if self._partial:  # only the line that began earlier is copied, not the chunk
            lines[0] = bytes(self._partial) + lines[0]
        self._partial = bytearray(lines.pop())
        for index, line in enumerate(lines):
            if len(line) > self._max:
                raise LineTooLong(self._max, lines[:index])
        if len(self._partial) > self._max:
            raise LineTooLong(self._max, lines)
        return lines

    def finish(self) -> list[bytes]:
        """Return the last line when the stream ended without a newline."""
        rest, self._partial = bytes(self._partial), bytearray()
        return [rest] if rest else []
