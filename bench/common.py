"""What every figure shares: the run's context, chat requests, and checks of a stream's bytes."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import trio

from .client import Address, Connection, ConnectionClosed, build_request
from .config import Sizes
from .servers import AUTH, Server, StoreKind
from .table import Report

KEEP_BYTES = 4096  # of a stream's start and end, for its first and last events


@dataclass
class Bench:
    """One benchmark run: its sizes, scratch folder, the shared gateway and the report."""

    sizes: Sizes
    folder: Path
    workdir: Path  # the cwd of every run
    gateway: Server  # with the store on
    report: Report
    # The store of the gateways "with the store on" (the default, sqlite; memory for an
    # A/A run); those "with the store off" keep STORE=memory.
    store_on: StoreKind


@dataclass(frozen=True)
class Streamed:
    """A chat run read to its end: how long it took, and its id."""

    seconds: float
    run_id: str


def chat_request(
    address: Address, prompt: str, cwd: Path, headers: dict[str, str] | None = None
) -> bytes:
    """Return a ``POST /chat`` request for ``prompt`` in ``cwd`` (as the admin by default)."""
    body = json.dumps({"prompt": prompt, "cwd": str(cwd)}).encode()
    return build_request("POST", "/chat", address, body=body, headers=headers or AUTH)


async def key_headers(address: Address, name: str) -> dict[str, str]:
    """Make an API key on the gateway at ``address``; return the headers that send it."""
    body = json.dumps({"name": name}).encode()
    connection = await Connection.open(address)
    try:
        await connection.send(
            build_request("POST", "/admin/keys", address, body=body, headers=AUTH)
        )
        head = await connection.read_head()
        answer = json.loads(await connection.body(head).read_all())
    finally:
        await connection.aclose()
    if head.status != 201:
        raise RuntimeError(f"POST /admin/keys answered {head.status}: {answer}")
    return {"Authorization": f"Bearer {answer['token']}"}


async def stream_chat(
    bench: Bench, server: Server, prompt: str, message_bytes: int, label: str
) -> Streamed | None:
    """Run ``prompt`` on ``server`` and read its stream to the end; None if it was not whole.

    Whole as :meth:`Tally.problem` says, with ``message_bytes`` of ``message`` events.
    What went wrong is recorded as a failure under ``label``.
    """
    bench.report.runs += 1
    request = chat_request(server.address, prompt, bench.workdir)
    connection = await Connection.open(server.address)
    try:
        start = time.perf_counter()
        await connection.send(request)
        head = await connection.read_head()
        if head.status != 200:
            bench.report.fail(f"{label}: POST /chat answered {head.status}")
            return None
        body = connection.body(head)
        tally = Tally()
        while piece := await body.read():
            tally.add(piece)
        elapsed = time.perf_counter() - start
    except (OSError, ConnectionClosed, trio.BrokenResourceError) as error:
        bench.report.fail(f"{label}: connection failed: {error!r}")
        return None
    finally:
        await connection.aclose()
    if problem := tally.problem(message_bytes):
        bench.report.fail(f"{label}: {problem}")
        return None
    return Streamed(elapsed, head.headers["x-process-id"])


def event_data(frame: bytes) -> object:
    """Return the JSON payload of one SSE event's bytes."""
    return json.loads(frame.split(b"\ndata: ", 1)[1].rstrip(b"\n"))


def done_status(tail: bytes) -> str | None:
    """Return the ``done`` event's status if ``tail`` ends with one, else None."""
    start = tail.rfind(b"\n\nid: ") + 2
    last = tail[start:] if start >= 2 else tail
    if b"\nevent: done\n" not in last:
        return None
    data = event_data(last)
    return str(data.get("status")) if isinstance(data, dict) else None


class Tally:
    """Counts a stream's bytes and keeps its first and last few, parsing nothing else."""

    def __init__(self) -> None:
        self.total = 0
        self.head = b""
        self.tail = b""

    def add(self, piece: bytes) -> None:
        """Count one piece of the body."""
        self.total += len(piece)
        if len(self.head) < KEEP_BYTES:
            self.head += piece[: KEEP_BYTES - len(self.head)]
        self.tail = (self.tail + piece[-KEEP_BYTES:])[-KEEP_BYTES:]

    def problem(self, message_bytes: int) -> str | None:
        """Return what is wrong with the stream, or None when it is whole.

        Whole: a ``process`` event, then exactly ``message_bytes`` of ``message``
        events, then ``done`` with status ``completed``.
        """
        if not self.head.startswith(b"id: 1\nevent: process\n"):
            return "the stream did not start with a process event"
        status = done_status(self.tail)
        if status != "completed":
            return f"the stream ended with done status {status}, not completed"
        first = self.head.find(b"\n\n") + 2
        last = len(self.tail) - (self.tail.rfind(b"\n\nid: ") + 2)
        delivered = self.total - first - last
        if delivered != message_bytes:
            return f"{delivered} bytes of message events arrived, {message_bytes} were sent"
        return None
