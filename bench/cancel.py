"""Figure 4: from DELETE, or from the client hanging up, until the CLI and its grandchild are dead.

The fake's ``escape`` starts a grandchild in a session of its own (``setsid sleep``),
as the CLI's Bash tool does, prints both pids and sleeps. The reference is killing
both straight from the benchmark (SIGTERM to the fake's group and the grandchild).
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from .client import Connection, ConnectionClosed, build_request
from .common import Bench, chat_request, done_status
from .fake import spawn
from .servers import AUTH
from .table import Row, millis, ratio

PIDS = re.compile(rb'"cli_pid":(\d+),"child_pid":(\d+)\}')
POLL_SECONDS = 0.0002
DEAD_TIMEOUT_SECONDS = 15.0


def alive(pid: int) -> bool:
    """Return whether ``pid`` runs; a zombie counts as dead."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return data[data.rfind(b")") + 2 : data.rfind(b")") + 3] not in (b"Z", b"X")


async def wait_dead(pids: tuple[int, int]) -> float | None:
    """Return seconds until every pid is dead, polling /proc; None after the timeout."""
    start = time.perf_counter()
    with trio.move_on_after(DEAD_TIMEOUT_SECONDS):
        while any(alive(pid) for pid in pids):  # noqa: ASYNC110 (death has no event to wait on)
            await trio.sleep(POLL_SECONDS)
        return time.perf_counter() - start
    return None


async def cancel_once(bench: Bench, how: str) -> float | None:
    """Start an escaping run, cancel it ``how`` ("DELETE" or "hang-up"); return the seconds."""
    bench.report.runs += 1
    address = bench.gateway.address
    connection = await Connection.open(address)
    control = await Connection.open(address)
    try:
        await connection.send(chat_request(address, "escape", bench.workdir))
        head = await connection.read_head()
        if head.status != 200:
            bench.report.fail(f"cancel by {how}: POST /chat answered {head.status}")
            return None
        body = connection.body(head)
        seen = b""
        while not (found := PIDS.search(seen)):
            seen += await body.read_until(b"\n\n")
        pids = (int(found.group(1)), int(found.group(2)))
        if not all(alive(pid) for pid in pids):
            bench.report.fail(f"cancel by {how}: the fake or its grandchild is not running")
            return None
        if how == "DELETE":
            target = f"/chat/{head.headers['x-process-id']}"
            await control.send(build_request("DELETE", target, address, headers=AUTH))
        else:
            await connection.aclose()
        elapsed = await wait_dead(pids)
        if elapsed is None:
            bench.report.fail(f"cancel by {how}: processes alive {DEAD_TIMEOUT_SECONDS:g} s on")
            return None
        problem = await check_delete(control, body.read_all) if how == "DELETE" else None
    except (OSError, ConnectionClosed, trio.BrokenResourceError) as error:
        problem = f"connection failed: {error!r}"
    finally:
        await connection.aclose()
        await control.aclose()
    if problem is not None:
        bench.report.fail(f"cancel by {how}: {problem}")
        return None
    return elapsed


async def check_delete(control: Connection, rest: Callable[[], Awaitable[bytes]]) -> str | None:
    """Return what is wrong with the DELETE's answer or the stream's end, None if all is right."""
    head = await control.read_head()
    answer = json.loads(await control.body(head).read_all())
    if head.status != 200 or answer.get("status") != "cancelled":
        return f"DELETE answered {head.status} {answer}"
    if (status := done_status(await rest())) != "cancelled":
        return f"the stream ended with done status {status}, not cancelled"
    return None


def direct_kill(cwd: Path) -> float:
    """Run the fake directly and kill it and its grandchild; return seconds until both are dead."""
    proc = spawn("escape", cwd, close_stdin=False)
    assert proc.stdout is not None  # noqa: S101 (PIPE)
    seen = b""
    while not (found := PIDS.search(seen)):
        seen += os.read(proc.stdout.fileno(), 4096)
    cli, child = int(found.group(1)), int(found.group(2))
    start = time.perf_counter()
    os.killpg(cli, signal.SIGTERM)  # the fake and its foreground sleep
    os.kill(child, signal.SIGTERM)
    while alive(cli) or alive(child):
        time.sleep(POLL_SECONDS)
    elapsed = time.perf_counter() - start
    proc.wait()
    proc.stdout.close()
    if proc.stdin is not None:
        proc.stdin.close()
    return elapsed


async def run(bench: Bench) -> None:
    """Add the median and worst rows of both ways of cancelling."""
    reference = statistics.median(
        [await trio.to_thread.run_sync(direct_kill, bench.workdir) for _ in range(5)]
    )
    limit = f"{millis(reference)} kill"
    for how in ("DELETE", "hang-up"):
        times = []
        for _ in range(bench.sizes.cancel_runs):
            if (elapsed := await cancel_once(bench, how)) is not None:
                times.append(elapsed)
        figure = f"cancel by {how}"
        if not times:
            bench.report.add(Row(f"{figure}: median", "failed"), Row(f"{figure}: worst", "failed"))
            continue
        middle, worst = statistics.median(times), max(times)
        bench.report.add(
            Row(f"{figure}: median", millis(middle), limit, ratio(middle, reference)),
            Row(f"{figure}: worst", millis(worst), f"of {len(times)} runs"),
        )
