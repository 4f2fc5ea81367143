"""A minimal HTTP/1.1 client on trio sockets, cheap enough not to be what is measured.

It writes requests by hand and reads bodies as raw bytes (fixed length or chunked),
never parsing SSE events, so that on a small machine the client takes as little
CPU from the server as it can.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass

import trio

RECEIVE_BYTES = 1024 * 1024
Address = tuple[str, int]


class ConnectionClosed(Exception):
    """The server closed the connection before the response was complete."""


@dataclass(frozen=True)
class Head:
    """A response's status and headers (names in lower case)."""

    status: int
    headers: dict[str, str]


def basic_auth(user: str, password: str) -> dict[str, str]:
    """Return the header of HTTP Basic credentials."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def build_request(
    method: str,
    target: str,
    address: Address,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> bytes:
    """Return the bytes of one HTTP/1.1 request (keep-alive)."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {address[0]}:{address[1]}"]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


class Connection:
    """One client connection, with the bytes received but not yet read."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    @classmethod
    async def open(cls, address: Address) -> Connection:
        """Connect to ``address`` (trio turns Nagle off)."""
        return cls(await trio.open_tcp_stream(*address))

    async def send(self, data: bytes) -> None:
        """Send bytes as they are."""
        await self._stream.send_all(data)

    async def aclose(self) -> None:
        """Close the connection (the server sees the client hang up)."""
        await self._stream.aclose()

    async def _receive(self) -> bytes:
        data = await self._stream.receive_some(RECEIVE_BYTES)
        if not data:
            raise ConnectionClosed
        return bytes(data)

    async def read_until(self, separator: bytes) -> bytes:
        """Return the bytes up to and including ``separator``."""
        start = 0
        while (end := self._buffer.find(separator, start)) < 0:
            start = max(0, len(self._buffer) - len(separator) + 1)
            self._buffer += await self._receive()
        end += len(separator)
        found = bytes(self._buffer[:end])
        del self._buffer[:end]
        return found

    async def read_some(self, limit: int) -> bytes:
        """Return between 1 and ``limit`` bytes, buffered ones first."""
        if not self._buffer:
            data = await self._receive()
            if len(data) <= limit:
                return data  # the common case on a stream: no copy
            self._buffer += memoryview(data)[limit:]
            return data[:limit]
        piece = bytes(self._buffer[:limit])
        del self._buffer[:limit]
        return piece

    async def read_exactly(self, size: int) -> bytes:
        """Return exactly ``size`` bytes."""
        pieces = []
        while size:
            piece = await self.read_some(size)
            pieces.append(piece)
            size -= len(piece)
        return b"".join(pieces)

    async def read_head(self) -> Head:
        """Read a response's status line and headers."""
        raw = await self.read_until(b"\r\n\r\n")
        status_line, *fields = raw.decode("latin-1").split("\r\n")[:-2]
        headers = {}
        for field in fields:
            name, _, value = field.partition(":")
            headers[name.strip().lower()] = value.strip()
        return Head(int(status_line.split(" ", 2)[1]), headers)

    def body(self, head: Head) -> Body:
        """Return a reader of the body that follows ``head``."""
        return Body(self, head)


class Body:
    """A response body, read piece by piece: chunked or of a known length."""

    def __init__(self, connection: Connection, head: Head) -> None:
        self._connection = connection
        self._chunked = head.headers.get("transfer-encoding", "").lower() == "chunked"
        self._left = 0 if self._chunked else int(head.headers.get("content-length", "0"))
        self._crlf_due = False  # a chunk's data is followed by CRLF
        self._done = False

    async def read(self) -> bytes:
        """Return the next piece of the body; b"" once it has all been read."""
        if self._done:
            return b""
        if self._left == 0:
            if not self._chunked:
                self._done = True
                return b""
            if self._crlf_due:
                await self._connection.read_exactly(2)
            size = int((await self._connection.read_until(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self._connection.read_until(b"\r\n")  # the empty trailer
                self._done = True
                return b""
            self._left = size
            self._crlf_due = True
        piece = await self._connection.read_some(self._left)
        self._left -= len(piece)
        return piece

    async def read_all(self) -> bytes:
        """Return the rest of the body."""
        pieces = []
        while piece := await self.read():
            pieces.append(piece)
        return b"".join(pieces)

    async def read_until(self, needle: bytes, limit: int = 1024 * 1024) -> bytes:
        """Return the body read so far once it holds ``needle`` (up to ``limit`` bytes).

        Raises:
            ConnectionClosed: the body ended first.
        """
        seen = b""
        while needle not in seen and len(seen) < limit:
            piece = await self.read()
            if not piece:
                raise ConnectionClosed
            seen += piece
        return seen


async def fetch(
    address: Address, target: str, headers: Mapping[str, str] | None = None
) -> tuple[Head, bytes]:
    """Send one ``GET target`` on a connection of its own; return the head and the body."""
    connection = await Connection.open(address)
    try:
        await connection.send(build_request("GET", target, address, headers=headers))
        head = await connection.read_head()
        return head, await connection.body(head).read_all()
    finally:
        await connection.aclose()
