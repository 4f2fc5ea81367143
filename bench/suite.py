"""Run every figure in one go, against one gateway (figures that compare or restart
gateways, or measure their memory, start their own)."""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from . import cancel, first_event, parallel, pool, restart, rps, throughput
from .common import Bench
from .config import Sizes
from .servers import StoreKind, start_gateway, stop
from .table import Report

FIGURES: tuple[tuple[str, Callable[[Bench], Awaitable[None]]], ...] = (
    ("throughput", throughput.run),
    ("first-event", first_event.run),
    ("parallel", parallel.run),
    ("cancel", cancel.run),
    ("rps", rps.run),
    ("restart", restart.run),
    ("pool", pool.run),
)
# No figure takes near this long; past it, the gateway is stuck.
FIGURE_TIMEOUT_SECONDS = 900.0


async def run_suite(
    sizes: Sizes,
    progress: Callable[[str], None],
    only: frozenset[str] = frozenset(),
    store_on: StoreKind = "sqlite",
) -> Report:
    """Run every figure (or those named in ``only``) and return the report.

    Gateways "with the store on" keep it as ``store_on`` says, in the scratch folder,
    which is removed after.
    """
    report = Report()
    with tempfile.TemporaryDirectory(prefix="cc2api-bench-") as scratch:
        folder = Path(scratch)
        workdir = folder / "work"
        workdir.mkdir()
        gateway = await start_gateway(folder / "gateway", store_on, folder / "gateway" / "data")
        bench = Bench(sizes, folder, workdir, gateway, report, store_on)
        try:
            for name, figure in FIGURES:
                if only and name not in only:
                    continue
                progress(f"running: {name}")
                with trio.move_on_after(FIGURE_TIMEOUT_SECONDS) as timeout:
                    await figure(bench)
                if timeout.cancelled_caught:
                    report.fail(f"{name}: timed out after {FIGURE_TIMEOUT_SECONDS:g} s")
        finally:
            await stop(gateway)
    return report
