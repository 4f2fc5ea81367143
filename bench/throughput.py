"""Figure 1: bytes of CLI output per second through the gateway, against a plain pipe.

Two gateways of the figure's own take turns, one with the store on and one with it
off (STORE=memory), so that the store's cost is their ratio: each repeat reads the
pipe, then streams through both, in alternating order, each on a quiet machine (the
store's writer done with the last transfer). The pipe row is the store-on side's,
as a gateway runs by default. Beside the rates, the gateway's CPU time per GB, from
a transfer's start until it is quiet again: the store's whole cost, its writer's
catching up included, which a free core hides from the rate.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import trio

from . import backlog
from .common import Bench, stream_chat
from .config import LARGE_LINE, SMALL_LINE
from .fake import DataFile, message_frames_bytes, read_to_end, spawn, write_data_file
from .servers import Server, settle, start_gateway, stop
from .table import Row, paired, rate, ratio

TARGET = "≥ 0.5 (aim 0.8)"
STORE_TARGET = "≥ 0.95"


def through_pipe(data: DataFile, cwd: Path) -> tuple[float, int]:
    """Run the fake directly and read its stdout to EOF; return seconds and bytes read."""
    start = time.perf_counter()
    proc = spawn(f"stream {data.path}", cwd, close_stdin=True)
    total = read_to_end(proc)
    return time.perf_counter() - start, total


async def measure(bench: Bench, on: Server, off: Server, line_bytes: int, figure: str) -> list[Row]:
    """Return the rows of one line size: medians of the pipe and of both gateways."""
    path = bench.folder / f"lines-{line_bytes}.jsonl"
    data = await trio.to_thread.run_sync(
        write_data_file, path, bench.sizes.stream_bytes, line_bytes
    )
    printed = sum(data.stream_lengths()) + len(data.stream_lengths())  # newlines included
    sides = {"on": Side(on), "off": Side(off)}
    pipe: list[float] = []
    try:
        for index in range(bench.sizes.throughput_repeats):
            await quiet(bench, on, off)
            seconds, total = await trio.to_thread.run_sync(through_pipe, data, bench.workdir)
            if total == printed:
                pipe.append(seconds)
            else:
                bench.report.fail(f"throughput: the pipe gave {total} bytes, not {printed}")
            for name in ("on", "off") if index % 2 == 0 else ("off", "on"):
                await sides[name].transfer(bench, index, data, on, off)
    finally:
        path.unlink()
    with_store, without = sides["on"], sides["off"]
    if not with_store.seconds() or not pipe:
        return [Row(figure, "failed", target=TARGET)]
    through = printed / statistics.median(with_store.seconds())
    limit = printed / statistics.median(pipe)
    rows = [Row(figure, rate(through), f"{rate(limit)} pipe", ratio(through, limit), TARGET)]
    pairs = with_store.pairs(without)
    if not pairs:
        return [
            *rows,
            Row(f"{figure}: store on/off", "failed", target=STORE_TARGET),
            Row(f"{figure}: CPU, store on/off", "failed"),
        ]
    rate_off = printed / statistics.median(without.seconds())
    cpu_on, cpu_off = (statistics.median(side.cpu()) / (printed / 1e9) for side in sides.values())
    return [
        *rows,
        Row(
            f"{figure}: store on/off",
            rate(through),
            f"{rate(rate_off)} off",
            paired((off.seconds, on.seconds) for on, off in pairs),  # rates: the inverse
            STORE_TARGET,
        ),
        Row(
            f"{figure}: CPU, store on/off",
            f"{cpu_on:.2f} s/GB",
            f"{cpu_off:.2f} s/GB off",
            paired((on.cpu, off.cpu) for on, off in pairs),
        ),
    ]


@dataclass(frozen=True)
class Transfer:
    """One stream through a gateway."""

    seconds: float  # until the client had all of it
    cpu: float  # the gateway's CPU time, until it was quiet again


class Side:
    """One gateway of the comparison, and its transfers by repeat."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.transfers: dict[int, Transfer | None] = {}  # None: it failed

    def seconds(self) -> list[float]:
        """Return the seconds of the transfers that did not fail."""
        return [done.seconds for done in self.transfers.values() if done is not None]

    def cpu(self) -> list[float]:
        """Return the CPU time of the transfers that did not fail."""
        return [done.cpu for done in self.transfers.values() if done is not None]

    def pairs(self, other: Side) -> list[tuple[Transfer, Transfer]]:
        """Return this side's transfers beside the other's of the same repeat, both done."""
        return [
            (mine, theirs)
            for index, mine in self.transfers.items()
            if mine is not None and (theirs := other.transfers.get(index)) is not None
        ]

    async def transfer(self, bench: Bench, index: int, data: DataFile, *servers: Server) -> None:
        """Stream ``data`` through this gateway, ``servers`` quiet before and after."""
        await quiet(bench, *servers)
        before = self.server.cpu_seconds()
        message_bytes = message_frames_bytes(data.stream_lengths(), first_id=2)
        prompt = f"stream {data.path}"
        streamed = await stream_chat(bench, self.server, prompt, message_bytes, "throughput")
        await quiet(bench, *servers)
        used = self.server.cpu_seconds() - before
        self.transfers[index] = None if streamed is None else Transfer(streamed.seconds, used)


async def quiet(bench: Bench, *servers: Server) -> None:
    """Wait for the servers to be quiet; record a failure if one is not."""
    if not await settle(*servers):
        bench.report.fail("throughput: a gateway was still busy between transfers")


async def run(bench: Bench) -> None:
    """Add the rows of 2 KiB lines (typical messages) and 1 MiB lines (big tool results)."""
    folder = bench.folder / "throughput"
    on = await start_gateway(folder / "store-on", bench.store_on, folder / "data")
    try:
        off = await start_gateway(folder / "store-off", "memory")
        try:
            rows = await measure(bench, on, off, SMALL_LINE, "throughput, 2 KiB lines")
            rows += await measure(bench, on, off, LARGE_LINE, "throughput, 1 MiB lines")
        finally:
            await stop(off)
        peak = await backlog.from_health(on)
    finally:
        await stop(on)
    if peak is None:
        peak = backlog.from_log(on.log)
    figure = "store backlog peak: throughput"
    rows.append(backlog.row(bench.report, figure, peak, bench.sizes.stream_bytes, "per run"))
    # The main rows first, then the store's (row_names orders the table in the end).
    bench.report.add(*rows)
