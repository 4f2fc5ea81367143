"""Figure 7: the store's write backlog at its peak, the most event bytes queued but unwritten.

The gateway says it in ``GET /health`` (``store.backlog_peak_bytes``, the peak since
it started), so each figure that streams with the store on reads it from its own
gateway once its streams are done. A gateway whose ``/health`` does not say it is
read for it in its log once stopped (a line naming the backlog's peak in bytes);
when neither has it, the row says ``unavailable`` and the run fails: no number is
made up.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .client import fetch
from .config import MiB
from .servers import AUTH, Server
from .table import Report, Row, ratio

# Below STORE_BACKLOG_BYTES, left at its default (256 MiB) by the bench's gateways: past
# it the store drops the oldest queued events (their replay says `dropped`).
TARGET = "< 256 MiB bound"
# For instance "backlog peak 1234 bytes", "backlog_peak_bytes=1234".
LOG_LINE = re.compile(rb"backlog[ _]peak(?:[ _]bytes)?\D{0,16}(\d+)")


async def from_health(server: Server) -> int | None:
    """Return ``store.backlog_peak_bytes`` of the server's ``/health``, None if it has none."""
    head, body = await fetch(server.address, "/health", AUTH)
    if head.status != 200:
        return None
    store = json.loads(body).get("store")
    peak = store.get("backlog_peak_bytes") if isinstance(store, dict) else None
    return peak if isinstance(peak, int) and not isinstance(peak, bool) else None


def from_log(log: Path) -> int | None:
    """Return the backlog's peak as a stopped server's log last gave it, None if it did not."""
    found = LOG_LINE.findall(log.read_bytes())
    return int(found[-1]) if found else None


def row(report: Report, figure: str, peak: int | None, streamed: int, what: str) -> Row:
    """Return the row of a peak beside the bytes streamed (``what`` says how they flowed).

    A peak that is None fails the run.
    """
    reference = f"{streamed / MiB:,.0f} MiB {what}"
    if peak is None:
        report.fail(f"{figure}: the gateway's /health and log do not give the store's backlog")
        return Row(figure, "unavailable", reference, target=TARGET)
    return Row(figure, f"{peak / MiB:.1f} MiB", reference, ratio(peak, streamed), TARGET)
