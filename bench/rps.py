"""Figure 5: requests per second under many keep-alive clients, against a baseline Hypercorn app."""

from __future__ import annotations

import time
from pathlib import Path

import trio

from .client import Address, Connection, ConnectionClosed, build_request
from .common import Bench
from .servers import AUTH, start_baseline, stop
from .table import Row, ratio

OPENING = 50  # connections opened at once: stay under Hypercorn's listen backlog (100)
WARM_UP_PER_CLIENT = 5


class Load:
    """A fixed number of requests, shared out among clients as each becomes free."""

    def __init__(self, request: bytes, total: int) -> None:
        self.request = request
        self.left = total
        self.failures = 0

    async def client(self, connection: Connection) -> None:
        """Send requests one after another on one connection until none are left."""
        while self.left > 0:
            self.left -= 1
            try:
                await connection.send(self.request)
                head = await connection.read_head()
                await connection.body(head).read_all()
            except (OSError, ConnectionClosed, trio.BrokenResourceError):
                self.failures += 1
                return  # this connection is broken; the others finish the work
            if head.status != 200:
                self.failures += 1


async def run_load(connections: list[Connection], request: bytes, total: int) -> Load:
    """Send ``total`` requests over ``connections``, each one at a time, and return the tally."""
    load = Load(request, total)
    async with trio.open_nursery() as nursery:
        for connection in connections:
            nursery.start_soon(load.client, connection)
    return load


async def open_clients(address: Address, count: int) -> list[Connection]:
    """Open ``count`` connections, a few at a time."""
    connections: list[Connection] = []
    opening = trio.CapacityLimiter(OPENING)

    async def one() -> None:
        async with opening:
            connections.append(await Connection.open(address))

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)
    return connections


async def requests_per_second(bench: Bench, address: Address, target: str, label: str) -> float:
    """Return the rate of ``GET target`` on ``address`` under the suite's clients."""
    clients, total = bench.sizes.rps_clients, bench.sizes.rps_requests
    request = build_request("GET", target, address, headers=AUTH)
    connections = await open_clients(address, clients)
    try:
        await run_load(connections, request, clients * WARM_UP_PER_CLIENT)
        start = time.perf_counter()
        load = await run_load(connections, request, total)
        elapsed = time.perf_counter() - start
    finally:
        for connection in connections:
            await connection.aclose()
    bench.report.requests += total
    for _ in range(load.failures):
        bench.report.fail(f"{label}: a request failed or was not answered 200")
    return (total - load.failures) / elapsed


async def run(bench: Bench) -> None:
    """Add the rows of GET /health and GET /processes, each against the baseline app."""
    folder = trio.Path(bench.folder / "baseline")
    await folder.mkdir()
    baseline = await start_baseline(Path(folder))
    try:
        limit = await requests_per_second(bench, baseline.address, "/", "baseline")
    finally:
        await stop(baseline)
    clients = bench.sizes.rps_clients
    for target in ("/health", "/processes"):
        label = f"GET {target}, {clients} clients"
        rate = await requests_per_second(bench, bench.gateway.address, target, label)
        bench.report.add(
            Row(label, f"{rate:,.0f} req/s", f"{limit:,.0f} req/s bare", ratio(rate, limit))
        )
