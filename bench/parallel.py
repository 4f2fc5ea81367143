"""Figure 3: many streams at once, on a fresh gateway: completion, events/s, memory per stream.

Every fake opens a FIFO that the benchmark holds open for writing, prints its init
line and waits for EOF on the FIFO. Once every stream has its init event, the
gateway's memory is read (all streams open, nothing flowing), the FIFO is closed, and
all fakes print their lines at once, one write per line, as the CLI does.

The reference is the same number of fakes, gated the same way, spawned directly and
read straight from their pipes by one thread (a poll loop and blocking reads).
"""

from __future__ import annotations

import os
import selectors
import subprocess
import time
from functools import partial
from pathlib import Path

import trio

from .client import Connection, ConnectionClosed
from .common import Bench, Tally, chat_request
from .fake import (
    INIT_LINE,
    READ_BYTES,
    RESULT_LINE,
    SESSION,
    assistant_line,
    message_frames_bytes,
    read_first_line,
    spawn,
)
from .servers import Server, start_gateway, stop
from .table import Row, kib, ratio

# Connections opened at once: Hypercorn's listen backlog is 100, and a burst past it
# would measure SYN retransmits rather than the gateway.
OPENING = 64
SAMPLE_SECONDS = 0.02
TIMEOUT_SECONDS = 300.0


class Streams:
    """The state shared by one figure's client tasks."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.opened = 0  # streams past their init event, or failed before it
        self.all_opened = trio.Event()
        self.completed = 0

    def one_opened(self) -> None:
        """Count a stream out of its opening phase."""
        self.opened += 1
        if self.opened == self.count:
            self.all_opened.set()


async def one_stream(
    bench: Bench,
    server: Server,
    request: bytes,
    *,
    message_bytes: int,
    streams: Streams,
    opening: trio.CapacityLimiter,
) -> None:
    """Run one stream to its end; count it completed or record why not."""
    bench.report.runs += 1
    opened = False
    connection: Connection | None = None
    try:
        tally = Tally()
        async with opening:
            connection = await Connection.open(server.address)
            await connection.send(request)
            head = await connection.read_head()
        if head.status != 200:
            bench.report.fail(f"{streams.count} streams: POST /chat answered {head.status}")
            return
        body = connection.body(head)
        tally.add(await body.read_until(b"\nevent: message\n"))
        opened = True
        streams.one_opened()
        while piece := await body.read():
            tally.add(piece)
        if problem := tally.problem(message_bytes):
            bench.report.fail(f"{streams.count} streams: {problem}")
            return
        streams.completed += 1
    except (OSError, ConnectionClosed, trio.BrokenResourceError) as error:
        bench.report.fail(f"{streams.count} streams: connection failed: {error!r}")
    finally:
        if not opened:
            streams.one_opened()
        if connection is not None:
            await connection.aclose()


async def sample_peak(server: Server, peak: list[int]) -> None:
    """Keep the highest RSS of the server in ``peak[0]`` until cancelled."""
    while True:
        peak[0] = max(peak[0], server.rss())
        await trio.sleep(SAMPLE_SECONDS)


def direct(folder: Path, count: int, lines: int, pad: int) -> float:
    """Return the events/s of ``count`` gated fakes read straight from their pipes."""
    gate_path = folder / "direct-gate"
    os.mkfifo(gate_path)
    gate = os.open(gate_path, os.O_RDWR)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(count):
            procs.append(spawn(f"gate {gate_path} {lines} {pad}", folder, close_stdin=True))
        for proc in procs:
            read_first_line(proc)  # its init line: the fake waits on the gate now
        with selectors.DefaultSelector() as selector:
            for proc in procs:
                assert proc.stdout is not None  # noqa: S101 (PIPE)
                selector.register(proc.stdout.fileno(), selectors.EVENT_READ)
            start = time.perf_counter()
            os.close(gate)
            gate = -1
            while selector.get_map():
                for key, _ in selector.select():
                    if not os.read(key.fd, READ_BYTES):
                        selector.unregister(key.fd)
            elapsed = time.perf_counter() - start
    finally:
        if gate >= 0:
            os.close(gate)
        for proc in procs:
            if proc.stdout is not None:
                proc.stdout.close()
            proc.kill()
            proc.wait()
    return count * (lines + 1) / elapsed


async def measure(bench: Bench, count: int) -> list[Row]:
    """Run ``count`` streams at once on a fresh gateway; return the figure's rows."""
    folder = bench.folder / f"parallel-{count}"
    folder.mkdir()
    lines, pad = bench.sizes.parallel_lines, bench.sizes.parallel_pad
    lengths = [len(INIT_LINE % SESSION)]
    lengths += [len(assistant_line(index, pad)) for index in range(lines)]
    lengths.append(len(RESULT_LINE % SESSION))
    message_bytes = message_frames_bytes(lengths, first_id=2)
    gate_path = folder / "gate"
    os.mkfifo(gate_path)
    server = await start_gateway(folder)
    streams = Streams(count)
    gate = os.open(gate_path, os.O_RDWR)  # a writer: the fakes' opens do not block
    try:
        await warm_up(bench, server)
        idle = server.rss()
        peak = [0]
        held, elapsed = idle, 0.0
        request = chat_request(server.address, f"gate {gate_path} {lines} {pad}", bench.workdir)
        opening = trio.CapacityLimiter(OPENING)
        with trio.move_on_after(TIMEOUT_SECONDS) as timeout:
            async with trio.open_nursery() as sampler:
                async with trio.open_nursery() as clients:
                    for _ in range(count):
                        clients.start_soon(
                            partial(
                                one_stream,
                                bench,
                                server,
                                request,
                                message_bytes=message_bytes,
                                streams=streams,
                                opening=opening,
                            )
                        )
                    await streams.all_opened.wait()
                    held = server.rss()
                    peak[0] = held
                    sampler.start_soon(sample_peak, server, peak)
                    start = time.perf_counter()
                    os.close(gate)
                    gate = -1
                elapsed = time.perf_counter() - start
                sampler.cancel_scope.cancel()
        if timeout.cancelled_caught:
            bench.report.fail(f"{count} streams: timed out after {TIMEOUT_SECONDS:g} s")
    finally:
        if gate >= 0:
            os.close(gate)
        await stop(server)
    name = f"{count} streams"
    completed = Row(f"{name}: completed", f"{streams.completed}/{count}", target="all")
    if timeout.cancelled_caught:
        return [completed]
    events = streams.completed * (lines + 1)  # each stream's lines and result, once released
    reference = await trio.to_thread.run_sync(direct, folder, count, lines, pad)
    rate = events / elapsed
    return [
        completed,
        Row(
            f"{name}: events/s",
            f"{rate:,.0f}",
            f"{reference:,.0f} direct",
            ratio(rate, reference),
            "aim 0.9",
        ),
        Row(f"{name}: memory/stream open", kib((held - idle) / count), f"idle RSS {kib(idle)}"),
        Row(
            f"{name}: memory/stream peak", kib((peak[0] - idle) / count), f"{lines} x {pad} B lines"
        ),
    ]


async def warm_up(bench: Bench, server: Server) -> None:
    """Run one short stream, so that what is imported or cached lazily is in the idle RSS."""
    bench.report.runs += 1
    connection = await Connection.open(server.address)
    try:
        await connection.send(chat_request(server.address, "lines 10 100", bench.workdir))
        head = await connection.read_head()
        await connection.body(head).read_all()
        if head.status != 200:
            bench.report.fail(f"parallel warm-up: POST /chat answered {head.status}")
    finally:
        await connection.aclose()


async def run(bench: Bench) -> None:
    """Add the rows of both stream counts."""
    for count in bench.sizes.parallel:
        bench.report.add(*await measure(bench, count))
