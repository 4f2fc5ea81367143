"""Figure 6: from a restart to the first, and to the last, replayed event of a long run.

A gateway with the store on streams a run of ``restart_events`` short lines to its
end and is stopped gracefully (SIGTERM: it flushes its store, and must exit 0). New
gateways are then started on the same DATA_DIR, in turns: one is timed from its
spawn to its first answer to ``GET /health`` (what a restart costs anyway: the
reference), the next from its spawn to the first and to the last event of
``GET /chat/{id}/events``, which must replay the whole run: the process event, every
line, the done event, with ids consecutive from 1.
"""

from __future__ import annotations

import re
import statistics
import time
from pathlib import Path

import trio

from . import backlog
from .client import Connection, ConnectionClosed, build_request, fetch
from .common import Bench, Tally, stream_chat
from .fake import message_frames_bytes, write_data_file
from .servers import AUTH, START_SECONDS, Server, start_gateway, stop
from .table import Row, millis, paired

LINE_BYTES = 128  # of each line the CLI prints, newline included: short JSON lines
POLL_SECONDS = 0.001  # how often a new gateway's log, then its /health, is tried
FIRST_TARGET = "≤ 1.1"
EVENT_ID = re.compile(rb"(?:\A|\n\n)id: (\d+)\n")
FIRST, LAST, WHOLE = (
    "restart to first replayed event",
    "restart to last replayed event",
    "restart: replay whole",
)


async def to_health(server: Server) -> float:
    """Return seconds from the server's spawn until its ``/health`` answers 200."""
    with trio.fail_after(START_SECONDS):
        while True:
            head, _ = await fetch(server.address, "/health", AUTH)
            if head.status == 200:
                break
            await trio.sleep(POLL_SECONDS)
    return time.perf_counter() - server.spawned


async def replay(server: Server, run_id: str) -> tuple[float, float, bytes]:
    """Return seconds from the server's spawn to the run's first and last replayed event.

    And the replayed body.

    Raises:
        ValueError: the replay was not answered 200.
    """
    target = f"/chat/{run_id}/events"
    connection = await Connection.open(server.address)
    try:
        await connection.send(build_request("GET", target, server.address, headers=AUTH))
        head = await connection.read_head()
        if head.status != 200:
            raise ValueError(f"GET {target} answered {head.status} after the restart")
        body = connection.body(head)
        pieces = [await body.read_until(b"\n\n")]
        first = time.perf_counter() - server.spawned
        while piece := await body.read():
            pieces.append(piece)
        last = time.perf_counter() - server.spawned
    finally:
        await connection.aclose()
    return first, last, b"".join(pieces)


def replay_problem(body: bytes, events: int, message_bytes: int) -> str | None:
    """Return what is wrong with a replayed run of ``events`` events, None if it is whole."""
    ids = [int(found) for found in EVENT_ID.findall(body)]
    if ids != list(range(1, events + 1)):
        breaks = next((i for i, found in enumerate(ids) if found != i + 1), len(ids))
        where = f"id {ids[breaks]} where {breaks + 1} was due" if breaks < len(ids) else "an end"
        return f"the replay has {len(ids)} events of {events}, {where}"
    tally = Tally()
    tally.add(body)
    return tally.problem(message_bytes)


async def run(bench: Bench) -> None:
    """Add the rows of the restarts, and of the store's backlog while the run streamed."""
    folder = bench.folder / "restart"
    data_dir = folder / "data"
    await trio.Path(folder).mkdir()
    lines = bench.sizes.restart_events
    data = await trio.to_thread.run_sync(
        write_data_file, folder / "lines.jsonl", lines * LINE_BYTES, LINE_BYTES
    )
    lengths = data.stream_lengths()
    message_bytes = message_frames_bytes(lengths, first_id=2)
    events = len(lengths) + 2  # the process event, the CLI's lines, the done event
    server = await start_gateway(folder / "first", bench.store_on, data_dir)
    peak = None
    try:
        prompt = f"stream {data.path}"
        streamed = await stream_chat(bench, server, prompt, message_bytes, "restart")
        if streamed is not None:
            peak = await backlog.from_health(server)
    finally:
        graceful = await stop(server)
    if peak is None:
        peak = backlog.from_log(server.log)
    figure = f"store backlog peak: {lines:,}-line run"
    backlog_row = backlog.row(bench.report, figure, peak, message_bytes, "in the run")
    if streamed is None or not graceful:
        if not graceful:
            bench.report.fail("restart: the gateway did not stop on SIGTERM with exit status 0")
        bench.report.add(
            Row(FIRST, "failed", target=FIRST_TARGET), Row(LAST, "failed"), Row(WHOLE, "failed")
        )
        bench.report.add(backlog_row)
        return
    bench.report.add(*await restarts(bench, data_dir, streamed.run_id, events, message_bytes))
    bench.report.add(backlog_row)


async def restarts(
    bench: Bench, data_dir: Path, run_id: str, events: int, message_bytes: int
) -> list[Row]:
    """Restart on ``data_dir`` in turns, to /health and to the run's replay; return the rows."""
    # By round: each round restarts to /health and to the replay, in alternating order.
    health: dict[int, float] = {}
    firsts: dict[int, float] = {}
    lasts: dict[int, float] = {}
    whole = replayed = 0
    for index in range(bench.sizes.restart_rounds):
        for way in ("health", "replay")[:: 1 - 2 * (index % 2)]:
            folder = data_dir.parent / f"restart-{index}-{way}"
            gateway = await start_gateway(folder, bench.store_on, data_dir, POLL_SECONDS)
            try:
                if way == "health":
                    health[index] = await to_health(gateway)
                    continue
                bench.report.requests += 1
                first, last, body = await replay(gateway, run_id)
                firsts[index], lasts[index] = first, last
                replayed = len(body)
                if problem := replay_problem(body, events, message_bytes):
                    bench.report.fail(f"restart: {problem}")
                else:
                    whole += 1
            except (OSError, ConnectionClosed, trio.BrokenResourceError, ValueError) as error:
                bench.report.fail(f"restart: {error}")
            finally:
                if not await stop(gateway):
                    bench.report.fail("restart: a gateway did not stop on SIGTERM with status 0")
    size = f"{events:,} events, {replayed / 1e6:.0f} MB" if replayed else f"{events:,} events"
    whole_row = Row(WHOLE, f"{whole}/{bench.sizes.restart_rounds} replays", size, target="all")
    if not health or not firsts:
        return [Row(FIRST, "failed", target=FIRST_TARGET), Row(LAST, "failed"), whole_row]
    limit = f"{millis(statistics.median(health.values()))} to /health"
    both = [index for index in firsts if index in health]
    return [
        Row(
            FIRST,
            millis(statistics.median(firsts.values())),
            limit,
            paired((firsts[index], health[index]) for index in both),
            FIRST_TARGET,
        ),
        Row(
            LAST,
            millis(statistics.median(lasts.values())),
            limit,
            paired((lasts[index], health[index]) for index in both),
        ),
        whole_row,
    ]
