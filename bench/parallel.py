"""Figure 3: many streams at once, on a fresh gateway: completion, events/s, memory per stream.

The first stream count is measured in rounds, each on a fresh gateway with the store
on and on one with it off (STORE=memory), in alternating order; its rows are the
store-on rounds' medians, and the store's cost is their ratio to the store-off ones.
Each round with the store on is paired with one whose streams are started with an API
key (Bearer) rather than the admin's Basic credential, on the same kind of gateway: the
cost of authenticating by key is their ratio (with CONFINE_RUNS=off on every gateway,
so that a key's runs are confined no more than the admin's: this measures the
authentication, not confinement). The other count runs once, with the store
on.

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
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import trio

from . import backlog
from .client import Connection, ConnectionClosed
from .common import Bench, Tally, chat_request, key_headers
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
from .servers import Server, StoreKind, start_gateway, stop
from .table import Row, kib, paired, ratio

# Connections opened at once: Hypercorn's listen backlog is 100, and a burst past it
# would measure SYN retransmits rather than the gateway.
OPENING = 64
SAMPLE_SECONDS = 0.02
TIMEOUT_SECONDS = 300.0
STORE_TARGET = "≥ 0.95"
KEY_TARGET = "≥ 0.95"
MEMORY_TARGET = "≤ 1.05"


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


@dataclass(frozen=True)
class Round:
    """One run of ``count`` streams at once, on a fresh gateway."""

    completed: int
    rate: float | None  # events/s once released; None: timed out
    idle: int  # the gateway's RSS before the streams
    held: int  # with every stream open, nothing flowing
    peak: int  # the highest while they flow
    backlog_peak: int | None  # the store's (see bench.backlog); None: not given


async def one_round(
    bench: Bench, count: int, store: StoreKind, folder: Path, *, keyed: bool = False
) -> Round:
    """Run ``count`` streams at once on a fresh gateway with ``store`` in ``folder``
    (started with an API key if ``keyed``, else as the admin)."""
    await trio.Path(folder).mkdir()
    lines, pad = bench.sizes.parallel_lines, bench.sizes.parallel_pad
    gate_path = folder / "gate"
    os.mkfifo(gate_path)
    server = await start_gateway(folder, store, folder / "data")
    streams = Streams(count)
    gate = os.open(gate_path, os.O_RDWR)  # a writer: the fakes' opens do not block
    try:
        await warm_up(bench, server)
        idle = server.rss()
        peak = [0]
        held, elapsed = idle, 0.0
        headers = await key_headers(server.address, "bench") if keyed else None
        prompt = f"gate {gate_path} {lines} {pad}"
        request = chat_request(server.address, prompt, bench.workdir, headers)
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
                                message_bytes=stream_bytes(lines, pad),
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
        backlog_peak = await backlog.from_health(server)
    finally:
        if gate >= 0:
            os.close(gate)
        await stop(server)
    if backlog_peak is None:
        backlog_peak = backlog.from_log(server.log)
    # Each stream's lines and result, once released.
    rate = None if timeout.cancelled_caught else streams.completed * (lines + 1) / elapsed
    return Round(streams.completed, rate, idle, held, peak[0], backlog_peak)


def stream_bytes(lines: int, pad: int) -> int:
    """Return the bytes of ``message`` events of one stream of ``lines`` lines."""
    lengths = [len(INIT_LINE % SESSION)]
    lengths += [len(assistant_line(index, pad)) for index in range(lines)]
    lengths.append(len(RESULT_LINE % SESSION))
    return message_frames_bytes(lengths, first_id=2)


async def measure(bench: Bench, count: int, compared: int) -> list[Row]:
    """Run ``count`` streams at once on fresh gateways; return the figure's rows.

    With the store on once, or ``compared`` times with it on and off in turns.
    """
    sides: list[tuple[str, StoreKind]] = [
        ("on", bench.store_on),
        ("off", "memory"),
        ("key", bench.store_on),
    ]
    plan = [sides[0]]
    if compared:
        # Each kind in turn, starting one later each round, so none always goes first.
        plan = [sides[(index + k) % 3] for index in range(compared) for k in range(3)]
    rounds: dict[str, list[Round]] = {"on": [], "off": [], "key": []}
    for index, (side, store) in enumerate(plan):
        folder = bench.folder / f"parallel-{count}-{index}-{side}"
        keyed = side == "key"
        rounds[side].append(await one_round(bench, count, store, folder, keyed=keyed))
    name = f"{count} streams"
    done = sum(one.completed for side in rounds.values() for one in side)
    completed = Row(f"{name}: completed", f"{done}/{count * len(plan)}", target="all")
    on = [one for one in rounds["on"] if one.rate is not None]
    if not on:
        return [completed]
    lines, pad = bench.sizes.parallel_lines, bench.sizes.parallel_pad
    direct_folder = bench.folder / f"parallel-{count}-direct"
    await trio.Path(direct_folder).mkdir()
    reference = await trio.to_thread.run_sync(direct, direct_folder, count, lines, pad)
    rate = median_of(on, lambda one: one.rate or 0.0)
    peak = median_of(on, lambda one: (one.peak - one.idle) / count)
    rows = [
        completed,
        Row(
            f"{name}: events/s",
            f"{rate:,.0f}",
            f"{reference:,.0f} direct",
            ratio(rate, reference),
            "aim 0.9",
        ),
        Row(
            f"{name}: memory/stream open",
            kib(median_of(on, lambda one: (one.held - one.idle) / count)),
            f"idle RSS {kib(median_of(on, lambda one: one.idle))}",
        ),
        Row(f"{name}: memory/stream peak", kib(peak), f"{lines} x {pad} B lines"),
    ]
    if compared:
        rows += compared_rows(bench, count, rounds["on"], rounds["off"])
        rows.append(key_row(count, rounds["key"], rounds["on"]))
    return rows


def key_row(count: int, keyed: list[Round], admin: list[Round]) -> Row:
    """Return the row of streams started with an API key against the admin's, round by round."""
    name = f"{count} streams: events/s, key/admin"
    pairs = [
        (mine.rate, theirs.rate)
        for mine, theirs in zip(keyed, admin, strict=False)
        if mine.rate is not None and theirs.rate is not None
    ]
    if not pairs:
        return Row(name, "failed", target=KEY_TARGET)
    return Row(
        name,
        f"{statistics.median(mine for mine, _ in pairs):,.0f}",
        f"{statistics.median(theirs for _, theirs in pairs):,.0f} admin",
        paired(pairs),
        KEY_TARGET,
    )


def compared_rows(
    bench: Bench, count: int, rounds_on: list[Round], rounds_off: list[Round]
) -> list[Row]:
    """Return the rows of the store on against off (round by round), and of its backlog."""
    name = f"{count} streams"
    on = [one for one in rounds_on if one.rate is not None]
    off = [one for one in rounds_off if one.rate is not None]
    pairs = [
        (mine, theirs)
        for mine, theirs in zip(rounds_on, rounds_off, strict=False)
        if mine.rate is not None and theirs.rate is not None
    ]
    if pairs:
        rows = [
            Row(
                f"{name}: events/s, store on/off",
                f"{median_of(on, lambda one: one.rate or 0.0):,.0f}",
                f"{median_of(off, lambda one: one.rate or 0.0):,.0f} off",
                paired((mine.rate or 0.0, theirs.rate or 0.0) for mine, theirs in pairs),
                STORE_TARGET,
            ),
            Row(
                f"{name}: memory/stream peak, store on/off",
                kib(median_of(on, lambda one: (one.peak - one.idle) / count)),
                f"{kib(median_of(off, lambda one: (one.peak - one.idle) / count))} off",
                paired(
                    (mine.peak - mine.idle, theirs.peak - theirs.idle) for mine, theirs in pairs
                ),
                MEMORY_TARGET,
            ),
        ]
    else:
        rows = [
            Row(f"{name}: events/s, store on/off", "failed", target=STORE_TARGET),
            Row(f"{name}: memory/stream peak, store on/off", "failed", target=MEMORY_TARGET),
        ]
    peaks = [one.backlog_peak for one in on]
    highest = None if None in peaks else max(peak for peak in peaks if peak is not None)
    streamed = count * stream_bytes(bench.sizes.parallel_lines, bench.sizes.parallel_pad)
    figure = f"store backlog peak: {name}"
    return [*rows, backlog.row(bench.report, figure, highest, streamed, "at once")]


def median_of(rounds: list[Round], value: Callable[[Round], float]) -> float:
    """Return the median of ``value`` over the rounds."""
    return statistics.median(value(one) for one in rounds)


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
    """Add the rows of both stream counts; the first is measured with the store on and off."""
    first, *others = bench.sizes.parallel
    bench.report.add(*await measure(bench, first, bench.sizes.store_rounds))
    for count in others:
        bench.report.add(*await measure(bench, count, 0))
