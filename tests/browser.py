"""Debian's Chromium, headless and with the network off, for the API docs pages."""

from __future__ import annotations

import shutil
from pathlib import Path

import trio

# The summaries of operations both pages must show once their scripts have run.
OPERATIONS = {
    "Health, CLI version and number of active runs (no auth)",
    "Start a run of the Claude Code CLI and stream it",
    "Cancel a run; answers once its processes are gone",
    "The live runs",
}


async def render(url: str, tmp_path: Path) -> str:
    """Return the DOM of ``url`` after headless Chromium ran its scripts, offline."""
    chromium = shutil.which("chromium")
    assert chromium, "the docs tests need Debian's chromium (./scripts/test installs it)"
    done = await trio.run_process(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            # The network is off: everything but loopback goes to a closed port.
            "--proxy-server=http://127.0.0.1:9",
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=True,
    )
    return done.stdout.decode()
