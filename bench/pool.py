"""Figure 8 (issue 14): the warm pool, with the real CLI, against a cold spawn and a direct one.

The fake CLI starts in a millisecond; the real one takes about half a second, the cost
the pool hides, so this figure runs the pinned CLI (``.cli/``) offline against the
tests' scripted model (``tests/scripted_api.py``, a process of its own, so that it
shares no GIL with the client), on two gateways of its own: ``POOL_SIZE=4`` and
``POOL_SIZE=0``.

Latency: one-turn runs of "hello" are timed in turns from sending ``POST /chat`` to
the first ``message`` event (the CLI's first line) and to the end of the stream (its
``done`` event): on the pooled gateway, each once a CLI waits (a hit, checked in
``/health``), on the cold one, and, as the reference, the same CLI spawned directly,
timed to its first stdout line and to its exit once its input is closed after the
result line (the gateway's ``done`` waits for that exit too). Each run starts on a
quiet machine: the pool's replacement CLI done starting, the last run's teardown done.

Throughput: 4 clients each make ``pool_client_runs`` one-turn runs back to back, ten
times the pool in full mode, so that it must refill as they go: the runs per second
with ``POOL_SIZE=4`` against ``POOL_SIZE=0``, in alternating rounds; the pooled rounds
start with 4 CLIs waiting, started and quiet. Beside it, the CPU per run of each
gateway and all it started, until its pool is full again; and, apart, a burst of one
run per client with the pool full, the most a pool of 4 can give. Last, the memory of
a waiting CLI, as the pool measures it.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import trio

from .client import Connection, ConnectionClosed, fetch
from .common import Bench, chat_request, done_status
from .config import MiB
from .fake import CLI_FLAGS
from .servers import (
    AUTH,
    QUIET_SHARE,
    REPO,
    SETTLE_SECONDS,
    SETTLE_STEP_SECONDS,
    START_SECONDS,
    Server,
    start_gateway,
    stop,
)
from .table import Row, millis, paired

CLI = REPO / ".cli" / "node_modules" / ".bin" / "claude"
SCRIPTED_API = REPO / "tests" / "scripted_api.py"
PROMPT = "hello"
ANSWER = b'"result":"echo: hello"'
USER_LINE = (
    json.dumps(
        {
            "type": "user",
            "message": {"role": "user", "content": PROMPT},
            "parent_tool_use_id": None,
            "session_id": "default",
        }
    ).encode()
    + b"\n"
)
# As the gateway passes them for the admin's runs here (ALLOW_ROOT_FULL_ACCESS).
DIRECT_FLAGS = (*CLI_FLAGS, "--dangerously-skip-permissions")
CLIENTS = 4
POOL_SIZE = 4
# No waiting CLI is retired for its age while the other side is measured: its
# replacement's start-up would land in that side's runs.
MAX_IDLE_SECONDS = 3600
# The pool measures its CLIs' memory about once a second (its sweep).
MEASURED_SECONDS = 1.5
POLL_SECONDS = 0.02
WAIT_SECONDS = 60.0  # for CLIs to wait in the pool; past it, the pool is stuck
RUN_SECONDS = 120.0  # for one run; past it, the CLI or the model is stuck
LOG_LINES = 5  # of the pooled gateway's warnings, in a failure
FIRST_TARGET = "≤ 100 ms"
RATE_TARGET = "≥ 4×"  # noqa: RUF001 (the issue's words)
FIRST_POOLED, FIRST_COLD, DONE_POOLED, DONE_COLD, RATE, CPU, BURST, MEMORY = (
    "pool: first event, pooled",
    "pool: first event, cold",
    "pool: done, pooled",
    "pool: done, cold",
    f"pool: runs/s, {CLIENTS} clients back to back",
    "pool: CPU/run, back to back",
    f"pool: runs/s, burst of {CLIENTS}, pool full",
    "pool: memory/waiting CLI",
)


class PoolError(Exception):
    """The pool did not do what the figure needs of it (no CLI came to wait, say)."""


@dataclass(frozen=True)
class Timed:
    """One one-turn run: seconds to its first line's event and to its end."""

    first: float
    done: float


def cli_environment(api_url: str) -> dict[str, str]:
    """Return what the real CLI needs to run offline against the scripted model at ``api_url``."""
    env = {
        "ANTHROPIC_BASE_URL": api_url,
        "ANTHROPIC_API_KEY": "sk-test-not-a-key",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    if os.geteuid() == 0:
        env["IS_SANDBOX"] = "1"  # the CLI refuses full access as root without it
    return env


@contextlib.asynccontextmanager
async def scripted_api(folder: Path) -> AsyncIterator[str]:
    """Run the scripted model in a process of its own; yield its URL."""
    log_path = folder / "scripted-api.log"
    with log_path.open("wb") as log_file:
        proc = await trio.lowlevel.open_process(
            [sys.executable, str(SCRIPTED_API)],
            stdout=subprocess.PIPE,
            stderr=log_file,
            cwd=folder,
        )
    try:
        assert proc.stdout is not None  # noqa: S101 (PIPE)
        line = b""
        with trio.fail_after(START_SECONDS):
            while not line.endswith(b"\n"):
                piece = await proc.stdout.receive_some(1024)
                if not piece:
                    raise RuntimeError(f"the scripted model exited: {log_path.read_text()}")
                line += piece
        yield line.decode().strip()
    finally:
        proc.kill()
        await proc.wait()


async def start_pair(bench: Bench, folder: Path, api_url: str) -> tuple[Server, Server]:
    """Start the gateways with the real CLI, POOL_SIZE=4 and POOL_SIZE=0; return both."""
    servers: list[Server] = []
    try:
        for size in (POOL_SIZE, 0):
            extra = {
                **cli_environment(api_url),
                "CLAUDE_PATH": str(CLI),
                "POOL_SIZE": str(size),
                "POOL_MAX_IDLE_SECONDS": str(MAX_IDLE_SECONDS),
            }
            where = folder / f"pool-{size}"
            servers.append(await start_gateway(where, bench.store_on, where / "data", extra=extra))
    except BaseException:
        for server in servers:
            await stop(server)
        raise
    return servers[0], servers[1]


def run_problem(body: bytes) -> str | None:
    """Return what is wrong with a one-turn run's stream, or None if it answered and completed."""
    if not body.startswith(b"id: 1\nevent: process\n"):
        return "the stream did not start with a process event"
    if (status := done_status(body)) != "completed":
        return f"the run ended with done status {status}, not completed"
    if ANSWER not in body:
        return f"the run's result is not {ANSWER.decode()}"
    return None


async def through_gateway(bench: Bench, server: Server, label: str) -> Timed | None:
    """Time one run on ``server``; None (a failure under ``label``) if it did not complete."""
    bench.report.runs += 1
    request = chat_request(server.address, PROMPT, bench.workdir)
    connection = await Connection.open(server.address)
    try:
        with trio.fail_after(RUN_SECONDS):
            start = time.perf_counter()
            await connection.send(request)
            head = await connection.read_head()
            if head.status != 200:
                bench.report.fail(f"{label}: POST /chat answered {head.status}")
                return None
            body = connection.body(head)
            seen = await body.read_until(b"\nevent: message\n")
            first = time.perf_counter() - start
            seen += await body.read_all()
            done = time.perf_counter() - start
    except (OSError, ConnectionClosed, trio.BrokenResourceError) as error:
        bench.report.fail(f"{label}: connection failed: {error!r}")
        return None
    except trio.TooSlowError:
        bench.report.fail(f"{label}: the run did not end within {RUN_SECONDS:g} s")
        return None
    finally:
        await connection.aclose()
    if problem := run_problem(seen):
        bench.report.fail(f"{label}: {problem}")
        return None
    return Timed(first, done)


def direct(cwd: Path, env: dict[str, str]) -> Timed | str:
    """Time the CLI spawned directly, as the gateway spawns it; what went wrong if it failed."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(CLI), *DIRECT_FLAGS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=cwd,
        env=env,
        start_new_session=True,
    )
    assert proc.stdin is not None  # noqa: S101 (PIPE)
    assert proc.stdout is not None  # noqa: S101 (PIPE)
    # A stuck CLI is killed, its reads end: a thread blocked for good would hold up the bench.
    timer = threading.Timer(RUN_SECONDS, proc.kill)
    timer.start()
    try:
        proc.stdin.write(USER_LINE)
        proc.stdin.flush()
        line = proc.stdout.readline()
        first = time.perf_counter() - start
        while line and b'"type":"result"' not in line:
            line = proc.stdout.readline()
        proc.stdin.close()  # as the gateway does after the result: the CLI exits
        proc.stdout.read()
        code = proc.wait()
        done = time.perf_counter() - start
    except OSError as error:
        return f"the CLI's pipes failed: {error!r}"
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        with contextlib.suppress(OSError):
            proc.stdin.close()
        proc.stdout.close()
    if ANSWER not in line:
        return f"no result {ANSWER.decode()} (exit status {code})"
    if code != 0:
        return f"exit status {code}"
    return Timed(first, done)


async def spawn_directly(bench: Bench, env: dict[str, str]) -> Timed | None:
    """Time one direct spawn off the event loop; None (a failure) if it did not answer."""
    bench.report.runs += 1
    timed = await trio.to_thread.run_sync(direct, bench.workdir, env)
    if isinstance(timed, str):
        bench.report.fail(f"pool, direct spawn: {timed}")
        return None
    return timed


async def pool_state(server: Server) -> dict[str, Any]:
    """Return the ``pool`` object of the server's ``/health``."""
    head, body = await fetch(server.address, "/health", AUTH)
    pool = json.loads(body).get("pool") if head.status == 200 else None
    if not isinstance(pool, dict):
        raise PoolError(f"GET /health answered {head.status} without a pool object: {body!r}")
    return pool


async def wait_idle(server: Server, count: int) -> dict[str, Any]:
    """Return the pool's state once ``count`` CLIs wait in it.

    Raises:
        PoolError: fewer waited after WAIT_SECONDS.
    """
    pool = await pool_state(server)
    with trio.move_on_after(WAIT_SECONDS):
        while pool["idle"] < count:
            await trio.sleep(POLL_SECONDS)
            pool = await pool_state(server)
        return pool
    raise PoolError(f"fewer than {count} CLIs waiting after {WAIT_SECONDS:g} s: {pool}")


def tree_cpu(pid: int) -> dict[int, float]:
    """Return the CPU seconds of a process and of each of its descendants, by pid."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return {}
    used: dict[int, float] = {}
    for proc in tree:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            used[proc.pid] = times.user + times.system
    return used


def spent_cpu(pid: int) -> float:
    """Return the CPU seconds a process and its descendants have used, the ended ones' too."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    spent = 0.0
    for proc in tree:
        with contextlib.suppress(psutil.Error):
            # children_*: the descendants it has reaped (the runs' and retired CLIs').
            times = proc.cpu_times()
            spent += times.user + times.system + times.children_user + times.children_system
    return spent


async def quiet(*servers: Server) -> bool:
    """Return once every server and its CLIs are quiet; False if one is not in time.

    A pooled CLI still starting (or a run's teardown) must not be counted against
    the next run, on this gateway or another.
    """
    with trio.move_on_after(SETTLE_SECONDS):
        for server in servers:
            while True:
                before, start = tree_cpu(server.proc.pid), time.perf_counter()
                await trio.sleep(SETTLE_STEP_SECONDS)
                after = tree_cpu(server.proc.pid)
                used = sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())
                if used < QUIET_SHARE * (time.perf_counter() - start):
                    break
        return True
    return False


async def settled(bench: Bench, *servers: Server) -> None:
    """Wait until the servers are quiet; a failure if they are not in time."""
    if not await quiet(*servers):
        bench.report.fail(f"pool: the gateways were not quiet within {SETTLE_SECONDS:g} s")


async def pooled_run(bench: Bench, server: Server) -> Timed | None:
    """Time one run on the pooled gateway once a CLI waits; it must be a hit.

    Raises:
        PoolError: no CLI came to wait.
    """
    before = await wait_idle(server, 1)
    await settled(bench, server)  # the CLI done starting: it waits, as a warm one does
    timed = await through_gateway(bench, server, "pool, pooled")
    after = await pool_state(server)
    if after["hits"] != before["hits"] + 1:
        bench.report.fail(f"pool: a run with a CLI waiting was not a hit: {before} then {after}")
    return timed


@dataclass(frozen=True)
class Latencies:
    """The one-turn runs of each way, timed in turns."""

    pooled: list[Timed | None]
    cold: list[Timed | None]
    direct: list[Timed | None]


async def latencies(bench: Bench, pooled: Server, cold: Server, env: dict[str, str]) -> Latencies:
    """Time ``pool_runs`` runs of each way, in turns, each starting on a quiet machine."""
    ways: list[tuple[list[Timed | None], Callable[[], Awaitable[Timed | None]]]] = [
        ([], lambda: pooled_run(bench, pooled)),
        ([], lambda: through_gateway(bench, cold, "pool, cold")),
        ([], lambda: spawn_directly(bench, env)),
    ]
    for index in range(bench.sizes.pool_runs):
        # Each way in turn, starting one later each round, so none always goes first.
        for k in range(len(ways)):
            found, one = ways[(index + k) % len(ways)]
            await settled(bench, pooled, cold)
            found.append(await one())
    return Latencies(ways[0][0], ways[1][0], ways[2][0])


def latency_rows(found: Latencies) -> list[Row]:
    """Return the first-event and done rows: medians, and each round's ratio's median."""
    rows = []
    for when, names, target in (
        ("first", (FIRST_POOLED, FIRST_COLD), FIRST_TARGET),
        ("done", (DONE_POOLED, DONE_COLD), None),
    ):
        for name, mine, theirs, label, goal in (
            (names[0], found.pooled, found.cold, "cold", target),
            (names[1], found.cold, found.direct, "direct", None),
        ):
            pairs = [
                (getattr(one, when), getattr(other, when))
                for one, other in zip(mine, theirs, strict=True)
                if one is not None and other is not None
            ]
            if not pairs:
                rows.append(Row(name, "failed", target=goal or "-"))
                continue
            rows.append(
                Row(
                    name,
                    millis(statistics.median(value for value, _ in pairs)),
                    f"{millis(statistics.median(reference for _, reference in pairs))} {label}",
                    paired(pairs),
                    goal or "-",
                )
            )
    return rows


@dataclass(frozen=True)
class Round:
    """Runs from every client at once, each client's back to back."""

    rate: float  # completed runs per second
    completed: int
    # What the pool did meanwhile: runs that took a waiting CLI, runs that found none,
    # and CLIs it ended unused (past its memory bound, say).
    hits: int
    misses: int
    retired: int

    def pool_text(self) -> str:
        """Return what the pool did, for the row's value."""
        return f"{self.hits} hits, {self.misses} misses, {self.retired} retired"


async def clients(bench: Bench, server: Server, label: str, runs: int) -> Round:
    """Make ``runs`` runs back to back from each of CLIENTS clients at once."""
    completed = 0

    async def client() -> None:
        nonlocal completed
        for _ in range(runs):
            if await through_gateway(bench, server, label) is not None:
                completed += 1

    before = await pool_state(server)
    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(CLIENTS):
            nursery.start_soon(client)
    elapsed = time.perf_counter() - start
    after = await pool_state(server)
    return Round(
        completed / elapsed,
        completed,
        after["hits"] - before["hits"],
        after["misses"] - before["misses"],
        sum(after["retired"].values()) - sum(before["retired"].values()),
    )


async def ready(bench: Bench, server: Server, pooled: Server, cold: Server) -> dict[str, Any]:
    """Return the pool's state once the machine is quiet, the pool full if ``server`` has one."""
    await settled(bench, pooled, cold)
    if server is not pooled:
        return {}
    await wait_idle(pooled, POOL_SIZE)
    await settled(bench, pooled, cold)  # every waiting CLI done starting
    return await pool_state(pooled)


def rate_row(name: str, mine: list[Round], theirs: list[Round], target: str) -> Row:
    """Return a runs/s row: the pooled rounds' median against the cold ones', paired."""
    if not any(one.completed for one in mine) or not any(one.completed for one in theirs):
        return Row(name, "failed", target=target)
    total = Round(
        0.0,
        0,
        sum(one.hits for one in mine),
        sum(one.misses for one in mine),
        sum(one.retired for one in mine),
    )
    return Row(
        name,
        f"{statistics.median(one.rate for one in mine):.2f} ({total.pool_text()})",
        f"{statistics.median(one.rate for one in theirs):.2f} POOL_SIZE=0",
        paired((one.rate, other.rate) for one, other in zip(mine, theirs, strict=True)),
        target,
    )


async def throughput(bench: Bench, pooled: Server, cold: Server) -> tuple[list[Row], int]:
    """Return the runs/s and CPU rows, in alternating rounds, and the bytes a waiting CLI holds.

    Each round is a burst (one run per client, the pool full), then the sustained
    figure (``pool_client_runs`` per client): the goal is the sustained one's. Its
    CPU counts until the pool is full again, every CLI done starting.
    """
    bursts: dict[str, list[Round]] = {"pooled": [], "cold": []}
    rounds: dict[str, list[Round]] = {"pooled": [], "cold": []}
    cpu: dict[str, list[float]] = {"pooled": [], "cold": []}
    per_cli = 0
    for index in range(bench.sizes.pool_rounds):
        for side in ("pooled", "cold") if index % 2 == 0 else ("cold", "pooled"):
            server = pooled if side == "pooled" else cold
            label = f"pool, throughput {side}"
            state = await ready(bench, server, pooled, cold)
            if state and not per_cli:
                await trio.sleep(MEASURED_SECONDS)
                state = await pool_state(pooled)
                per_cli = state["rss_bytes"] // max(1, state["idle"])
            bursts[side].append(await clients(bench, server, label, 1))
            await ready(bench, server, pooled, cold)
            before = spent_cpu(server.proc.pid)
            one = await clients(bench, server, label, bench.sizes.pool_client_runs)
            rounds[side].append(one)
            await ready(bench, server, pooled, cold)
            cpu[side].append((spent_cpu(server.proc.pid) - before) / max(1, one.completed))
    if cpu["pooled"] and cpu["cold"]:
        cpu_row = Row(
            CPU,
            f"{statistics.median(cpu['pooled']):.2f} s",
            f"{statistics.median(cpu['cold']):.2f} s POOL_SIZE=0",
            paired(zip(cpu["pooled"], cpu["cold"], strict=True)),
        )
    else:
        cpu_row = Row(CPU, "failed")
    return [
        rate_row(RATE, rounds["pooled"], rounds["cold"], RATE_TARGET),
        cpu_row,
        rate_row(BURST, bursts["pooled"], bursts["cold"], "-"),
    ], per_cli


async def warm_up(bench: Bench, pooled: Server, cold: Server, env: dict[str, str]) -> None:
    """Run once each way, uncounted: the pooled gateway learns the plan (a miss).

    The CLI's first run in a fresh home sets it up, and is slower than any after.

    Raises:
        PoolError: the pooled gateway's run was not a miss.
    """
    await through_gateway(bench, pooled, "pool, warm-up")
    await through_gateway(bench, cold, "pool, warm-up")
    await spawn_directly(bench, env)
    state = await pool_state(pooled)
    if state["misses"] != 1 or state["hits"] != 0:
        raise PoolError(f"the first run was not the pool's one miss: {state}")


def warnings(log: Path) -> str:
    """Return the last warnings and errors of a gateway's log, on one line."""
    lines = [
        line
        for line in log.read_text(errors="replace").splitlines()
        if " WARNING " in line or " ERROR " in line
    ]
    return " | ".join(lines[-LOG_LINES:]) or "no warnings in its log"


def failed_rows() -> list[Row]:
    """Return every row of the figure, failed."""
    return [
        Row(FIRST_POOLED, "failed", target=FIRST_TARGET),
        Row(FIRST_COLD, "failed"),
        Row(DONE_POOLED, "failed"),
        Row(DONE_COLD, "failed"),
        Row(RATE, "failed", target=RATE_TARGET),
        Row(CPU, "failed"),
        Row(BURST, "failed"),
        Row(MEMORY, "failed"),
    ]


async def measure(bench: Bench, pooled: Server, cold: Server, env: dict[str, str]) -> list[Row]:
    """Return the figure's rows, measured on both gateways and directly."""
    await warm_up(bench, pooled, cold, env)
    rows = latency_rows(await latencies(bench, pooled, cold, env))
    rate_rows, per_cli = await throughput(bench, pooled, cold)
    retired = (await pool_state(pooled))["retired"]
    reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(retired.items()))
    memory = Row(
        MEMORY,
        f"{per_cli / MiB:.0f} MiB",
        f"{POOL_SIZE} waiting; retired: {reasons or 'none'}",
    )
    return [*rows, *rate_rows, memory]


async def run(bench: Bench) -> None:
    """Add the pool's rows: latency pooled, cold and direct; throughput pooled and cold."""
    if not CLI.exists():
        bench.report.fail(f"pool: the Claude Code CLI is not installed at {CLI}")
        bench.report.add(*failed_rows())
        return
    folder = bench.folder / "pool"
    await trio.Path(folder).mkdir()
    home = folder / "direct-home"
    await trio.Path(home).mkdir()
    async with scripted_api(folder) as api_url:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(home),
            **cli_environment(api_url),
        }
        pooled, cold = await start_pair(bench, folder, api_url)
        try:
            bench.report.add(*await measure(bench, pooled, cold, env))
        except PoolError as error:
            bench.report.fail(f"pool: {error}; the pooled gateway's log: {warnings(pooled.log)}")
            bench.report.add(*failed_rows())
        finally:
            await stop(pooled)
            await stop(cold)
