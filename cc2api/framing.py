"""Split a byte stream into lines with a hard cap on line length and no readline limits."""

from __future__ import annotations


def marked(lines: list[bytes], markers: tuple[bytes, ...], head_bytes: int) -> list[int]:
    """Return, in order, the indices of the lines whose first ``head_bytes`` hold a marker.

    The heads are searched as one, in C: a batch without a marker costs one join and
    one search per marker, and one with markers a search per marked line.
    """
    if not lines:
        return []
    heads = b"\n".join([line[:head_bytes] for line in lines])
    found: set[int] = set()
    for marker in markers:
        if b"\n" in marker:
            raise ValueError("a marker cannot hold a newline")
        at = heads.find(marker)
        counted, index = 0, 0
        while at >= 0:
            # Newlines only separate heads, so those before the hit number its line
            # (counted from the last hit on: a batch of many hits costs one pass).
            index += heads.count(b"\n", counted, at)
            counted = at
            found.add(index)
            # The next hit, if any, is in a later line: skip past this head.
            end = heads.find(b"\n", at)
            if end < 0:
                break
            at = heads.find(marker, end + 1)
    return sorted(found)


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
        fits = len(self._partial) + len(chunk) <= self._max  # then no line can be too long
        if self._partial:  # only the line that began earlier is copied, not the chunk
            lines[0] = bytes(self._partial) + lines[0]
        self._partial = bytearray(lines.pop())
        if fits:
            return lines
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
