"""Figure 1: bytes of CLI output per second through the gateway, against a plain pipe."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import trio

from .client import Connection, ConnectionClosed
from .common import Bench, Tally, chat_request
from .config import LARGE_LINE, SMALL_LINE
from .fake import DataFile, message_frames_bytes, read_to_end, spawn, write_data_file
from .table import Row, rate, ratio

TARGET = "≥ 0.5 (aim 0.8)"


async def through_gateway(bench: Bench, data: DataFile, message_bytes: int) -> float | None:
    """Stream ``data`` through the gateway; return the seconds it took, None if it failed."""
    bench.report.runs += 1
    request = chat_request(bench.gateway.address, f"stream {data.path}", bench.workdir)
    connection = await Connection.open(bench.gateway.address)
    try:
        start = time.perf_counter()
        await connection.send(request)
        head = await connection.read_head()
        if head.status != 200:
            bench.report.fail(f"throughput: POST /chat answered {head.status}")
            return None
        body = connection.body(head)
        tally = Tally()
        while piece := await body.read():
            tally.add(piece)
        elapsed = time.perf_counter() - start
    except (OSError, ConnectionClosed, trio.BrokenResourceError) as error:
        bench.report.fail(f"throughput: connection failed: {error!r}")
        return None
    finally:
        await connection.aclose()
    if problem := tally.problem(message_bytes):
        bench.report.fail(f"throughput: {problem}")
        return None
    return elapsed


def through_pipe(data: DataFile, cwd: Path) -> tuple[float, int]:
    """Run the fake directly and read its stdout to EOF; return seconds and bytes read."""
    start = time.perf_counter()
    proc = spawn(f"stream {data.path}", cwd, close_stdin=True)
    total = read_to_end(proc)
    return time.perf_counter() - start, total


async def measure(bench: Bench, line_bytes: int, figure: str) -> Row:
    """Return the row of one line size: the medians of both ways, side by side."""
    path = bench.folder / f"lines-{line_bytes}.jsonl"
    data = await trio.to_thread.run_sync(
        write_data_file, path, bench.sizes.stream_bytes, line_bytes
    )
    lengths = data.stream_lengths()
    message_bytes = message_frames_bytes(lengths, first_id=2)
    printed = sum(lengths) + len(lengths)  # the fake's stdout, newlines included
    gateway: list[float] = []
    pipe: list[float] = []
    try:
        for _ in range(bench.sizes.throughput_repeats):
            seconds, total = await trio.to_thread.run_sync(through_pipe, data, bench.workdir)
            if total == printed:
                pipe.append(seconds)
            else:
                bench.report.fail(f"throughput: the pipe gave {total} bytes, not {printed}")
            if (elapsed := await through_gateway(bench, data, message_bytes)) is not None:
                gateway.append(elapsed)
    finally:
        path.unlink()
    if not gateway or not pipe:
        return Row(figure, "failed", target=TARGET)
    through = printed / statistics.median(gateway)
    limit = printed / statistics.median(pipe)
    return Row(figure, rate(through), f"{rate(limit)} pipe", ratio(through, limit), TARGET)


async def run(bench: Bench) -> None:
    """Add the rows of 2 KiB lines (typical messages) and 1 MiB lines (big tool results)."""
    bench.report.add(await measure(bench, SMALL_LINE, "throughput, 2 KiB lines"))
    bench.report.add(await measure(bench, LARGE_LINE, "throughput, 1 MiB lines"))
