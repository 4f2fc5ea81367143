"""Figure 2: time from POST /chat to the first ``message`` event, less a direct spawn's."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import trio

from .client import Connection, ConnectionClosed
from .common import Bench, chat_request, done_status
from .fake import read_first_line, read_to_end, spawn
from .table import Row, millis, ratio

WARM_UP = 3
SETTLE_SECONDS = 0.05
PROMPT = "hello"  # the fake prints init and result at once


async def through_gateway(bench: Bench) -> float | None:
    """Return seconds from sending the request to the init line's event; None if it failed."""
    bench.report.runs += 1
    request = chat_request(bench.gateway.address, PROMPT, bench.workdir)
    connection = await Connection.open(bench.gateway.address)
    try:
        start = time.perf_counter()
        await connection.send(request)
        head = await connection.read_head()
        if head.status != 200:
            bench.report.fail(f"first event: POST /chat answered {head.status}")
            return None
        body = connection.body(head)
        seen = await body.read_until(b"\nevent: message\n")
        elapsed = time.perf_counter() - start
        rest = seen + await body.read_all()
    except (OSError, ConnectionClosed, trio.BrokenResourceError) as error:
        bench.report.fail(f"first event: connection failed: {error!r}")
        return None
    finally:
        await connection.aclose()
    if (status := done_status(rest)) != "completed":
        bench.report.fail(f"first event: the run ended {status}, not completed")
        return None
    return elapsed


def direct(cwd: Path) -> float:
    """Return seconds from spawning the fake to reading its first line."""
    start = time.perf_counter()
    proc = spawn(PROMPT, cwd, close_stdin=False)
    read_first_line(proc)
    elapsed = time.perf_counter() - start
    read_to_end(proc)
    return elapsed


async def run(bench: Bench) -> None:
    """Add the row: the median overhead, gateway runs and direct spawns taken in turns."""
    gateway: list[float] = []
    spawned: list[float] = []
    for index in range(WARM_UP + bench.sizes.first_event_runs):
        # Each run starts on a quiet machine: what the last one left to do (the
        # gateway's teardown, say) must not be counted against the next.
        await trio.sleep(SETTLE_SECONDS)
        seconds = await trio.to_thread.run_sync(direct, bench.workdir)
        await trio.sleep(SETTLE_SECONDS)
        elapsed = await through_gateway(bench)
        if index >= WARM_UP:
            spawned.append(seconds)
            if elapsed is not None:
                gateway.append(elapsed)
    figure = "time to first event, overhead"
    target = "≤ 10 ms (aim 5)"
    if not gateway:
        bench.report.add(Row(figure, "failed", target=target))
        return
    through, limit = statistics.median(gateway), statistics.median(spawned)
    value = f"{millis(through - limit)} (of {millis(through)})"
    bench.report.add(Row(figure, value, f"{millis(limit)} spawn", ratio(through, limit), target))
