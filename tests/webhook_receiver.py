"""A webhook receiver on 127.0.0.1, in a thread: it keeps what it gets and answers as told;
and what the webhook tests share (the settings that turn webhooks on, a wait for POSTs)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import trio

SECRET = "a-webhook-secret-for-tests"
ON: dict[str, Any] = {
    "webhook_allowed_hosts": ["127.0.0.1"],
    "webhook_secret": SECRET,
    "confine_runs": "off",
}


@dataclass
class Received:
    """One POST the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """What the receiver got; it answers ``statuses`` in turn (then 200), after ``delay``.

    A 3xx answer sends ``Location: /elsewhere`` (which a webhook must not follow).
    """

    url: str
    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)


@contextmanager
def receiver(**behaviour: object) -> Iterator[Receiver]:
    """Serve a receiver on 127.0.0.1 on a free port for the block."""
    state = Receiver(url="", **behaviour)  # type: ignore[arg-type]
    stopping = threading.Event()  # ends every handler's delay when the block ends

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            state.received.append(Received(self.path, dict(self.headers.items()), body))
            stopping.wait(state.delay)
            status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.block_on_close = False
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        stopping.set()
        server.shutdown()
        server.server_close()


async def delivered(hook: Receiver, count: int = 1, timeout: float = 30) -> None:
    """Wait until ``hook`` has got ``count`` POSTs."""
    with trio.fail_after(timeout):
        while len(hook.received) < count:
            await trio.sleep(0.02)
