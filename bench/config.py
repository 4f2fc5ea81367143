"""Sizes of a run (full or ``--quick``), and the rows the table always has."""

from __future__ import annotations

from dataclasses import dataclass

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True)
class Sizes:
    """How much each figure does."""

    stream_bytes: int  # CLI output per throughput transfer
    throughput_repeats: int  # transfers per line size (the median is reported)
    first_event_runs: int
    parallel: tuple[int, int]  # stream counts of the two parallel figures
    parallel_lines: int  # lines per parallel stream after its gate opens
    parallel_pad: int  # padding bytes per parallel line
    cancel_runs: int  # per way of cancelling
    rps_requests: int  # per endpoint
    # Rounds of the first parallel figure, each on a gateway with the store and on one
    # without, in alternating order (the medians are compared).
    store_rounds: int
    restart_events: int  # lines the CLI prints in the run replayed after a restart
    restart_rounds: int  # restarts timed per way (to /health, to the replay)
    pool_runs: int  # one-turn runs timed per way (pooled, cold, direct)
    # Runs each client of the pool's throughput figure makes back to back, per round;
    # rounds alternate POOL_SIZE=4 and POOL_SIZE=0.
    pool_client_runs: int
    pool_rounds: int  # per pool size
    rps_clients: int = 100


FULL = Sizes(
    stream_bytes=256 * MiB,
    throughput_repeats=5,
    first_event_runs=50,
    parallel=(64, 256),
    parallel_lines=500,
    parallel_pad=1000,
    cancel_runs=20,
    rps_requests=20_000,
    store_rounds=5,
    restart_events=100_000,
    restart_rounds=10,
    pool_runs=20,
    pool_client_runs=10,
    pool_rounds=3,
)

QUICK = Sizes(
    stream_bytes=8 * MiB,
    throughput_repeats=1,
    first_event_runs=10,
    parallel=(8, 16),
    parallel_lines=100,
    parallel_pad=1000,
    cancel_runs=3,
    rps_requests=1_000,
    store_rounds=1,
    restart_events=5_000,
    restart_rounds=1,
    pool_runs=3,
    pool_client_runs=3,
    pool_rounds=1,
)

SMALL_LINE = 2 * KiB
LARGE_LINE = 1 * MiB


def row_names(sizes: Sizes) -> list[str]:
    """Return the figure column of every row the table prints, in order."""
    names = [
        "throughput, 2 KiB lines",
        "throughput, 1 MiB lines",
        "time to first event, overhead",
    ]
    for count in sizes.parallel:
        names += [
            f"{count} streams: completed",
            f"{count} streams: events/s",
            f"{count} streams: memory/stream open",
            f"{count} streams: memory/stream peak",
        ]
    names += [
        "cancel by DELETE: median",
        "cancel by DELETE: worst",
        "cancel by hang-up: median",
        "cancel by hang-up: worst",
        f"GET /health, {sizes.rps_clients} clients",
        f"GET /processes, {sizes.rps_clients} clients",
    ]
    compared = sizes.parallel[0]  # the stream count measured with the store and without
    names += [
        "throughput, 2 KiB lines: store on/off",
        "throughput, 2 KiB lines: CPU, store on/off",
        "throughput, 1 MiB lines: store on/off",
        "throughput, 1 MiB lines: CPU, store on/off",
        f"{compared} streams: events/s, store on/off",
        f"{compared} streams: memory/stream peak, store on/off",
        f"{compared} streams: events/s, key/admin",
        "restart to first replayed event",
        "restart to last replayed event",
        "restart: replay whole",
        "store backlog peak: throughput",
        f"store backlog peak: {compared} streams",
        f"store backlog peak: {sizes.restart_events:,}-line run",
        "pool: first event, pooled",
        "pool: first event, cold",
        "pool: done, pooled",
        "pool: done, cold",
        "pool: runs/s, 4 clients back to back",
        "pool: CPU/run, back to back",
        "pool: runs/s, burst of 4, pool full",
        "pool: memory/waiting CLI",
    ]
    return names
